//go:build amd64

package infer

import "golang.org/x/sys/cpu"

// hasVNNI reports whether the CPU runs the AVX-512 VNNI int8 kernels of
// int8_amd64.s (which also need AVX-512 F and BW).
func hasVNNI() bool { return cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VNNI }

//go:noescape
func vnniGemv(acc *int32, x *byte, w *byte, groups, tiles int)

//go:noescape
func maxMask16(src *float32, n int, mask uint32) float32

//go:noescape
func quantReLU16(dst *byte, src *float32, n int, scale float32)

//go:noescape
func quantOff16(dst *byte, src *float32, n int, scale float32)

//go:noescape
func dequantAdd16(y *float32, acc, corr *int32, scale *float32, n int, sx float32)
