//go:build !(goexperiment.simd && amd64)

package infer

// Without GOEXPERIMENT=simd on amd64 there are no SIMD kernels; see
// kernels_simd.go.

func hasSIMD() bool { return false }

func accumTiles(y, x, tiles []float32) { panic("infer: SIMD kernels not built") }

func accumTilesSparse(y, vals []float32, idx []int32, tiles []float32, in int) {
	panic("infer: SIMD kernels not built")
}

func dotReLU(h, w []float32) float32 { panic("infer: SIMD kernels not built") }
