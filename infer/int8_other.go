//go:build !amd64

package infer

func hasVNNI() bool { return false }

func vnniGemv(acc *int32, x *byte, w *byte, groups, tiles int) {
	panic("infer: VNNI kernels not built")
}

func maxMask16(src *float32, n int, mask uint32) float32 { panic("infer: VNNI kernels not built") }

func quantReLU16(dst *byte, src *float32, n int, scale float32) {
	panic("infer: VNNI kernels not built")
}

func quantOff16(dst *byte, src *float32, n int, scale float32) {
	panic("infer: VNNI kernels not built")
}

func dequantAdd16(y *float32, acc, corr *int32, scale *float32, n int, sx float32) {
	panic("infer: VNNI kernels not built")
}
