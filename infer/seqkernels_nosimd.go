//go:build !(goexperiment.simd && amd64)

package infer

// Without GOEXPERIMENT=simd on amd64 there are no SIMD sequence kernels; see
// seqkernels_simd.go.

func gruUpdateSIMD(h, gx, gh []float32)            { panic("infer: SIMD kernels not built") }
func lstmUpdateSIMD(h, c, g []float32)             { panic("infer: SIMD kernels not built") }
func leakyReLUSIMD(x []float32)                    { panic("infer: SIMD kernels not built") }
func geluSIMD(x []float32)                         { panic("infer: SIMD kernels not built") }
func expSubSumSIMD(x []float32, m float32) float32 { panic("infer: SIMD kernels not built") }
func dotSIMD(a, b []float32) float32               { panic("infer: SIMD kernels not built") }

func gemmSIMD(y []float32, ldy int, x []float32, ldx, m int, w []float32, ldw, k, n int) {
	panic("infer: SIMD kernels not built")
}

func normalizeSIMD(dst, x, mean, invStd []float32) { panic("infer: SIMD kernels not built") }

func layerNormSIMD(y, x, g, b []float32) { panic("infer: SIMD kernels not built") }
