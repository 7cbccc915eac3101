package infer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func randVec(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func TestKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	close := func(a, b float32) bool { return math.Abs(float64(a-b)) <= 1e-4*(1+math.Abs(float64(b))) }
	for _, in := range []int{0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 44, 257} {
		for _, out := range []int{1, 2, 3, 4, 5, 8, 13, 64} {
			x, b := randVec(r, in), randVec(r, out)
			// accumDense on a column window [off, off+out) of a wider matrix.
			stride, off := out+5, 3
			w := randVec(r, in*stride)
			y := append([]float32(nil), b...)
			accumDense(y, x, w, stride, off)
			for j := range out {
				want := b[j]
				for i := range in {
					want += x[i] * w[i*stride+off+j]
				}
				if !close(y[j], want) {
					t.Fatalf("accumDense %dx%d: y[%d] = %v, want %v", in, out, j, y[j], want)
				}
			}
			// compactReLU + accumSparse against relu(x) @ w.
			w = randVec(r, in*out)
			vals, idx := make([]float32, in), make([]int32, in)
			n := compactReLU(x, vals, idx)
			y = append(y[:0], b...)
			accumSparse(y, vals[:n], idx[:n], w, out, 0)
			active := 0
			for j := range out {
				want := b[j]
				for i := range in {
					want += max(x[i], 0) * w[i*out+j]
				}
				if !close(y[j], want) {
					t.Fatalf("accumSparse %dx%d: y[%d] = %v, want %v", in, out, j, y[j], want)
				}
			}
			for _, v := range x {
				if v > 0 {
					active++
				}
			}
			if n != active {
				t.Fatalf("compactReLU kept %d of %d active", n, active)
			}
			// matVecTSparse: the same product from transposed weights.
			wt := transpose(w, in, out)
			matVecTSparse(y, vals[:n], idx[:n], wt, b, in)
			for j := range out {
				want := b[j]
				for i := range in {
					want += max(x[i], 0) * w[i*out+j]
				}
				if !close(y[j], want) {
					t.Fatalf("matVecTSparse %dx%d: y[%d] = %v, want %v", in, out, j, y[j], want)
				}
			}
			// matVecT with transposed weights.
			matVecT(y, x, wt, b)
			for j := range out {
				want := b[j]
				for i := range in {
					want += x[i] * w[i*out+j]
				}
				if !close(y[j], want) {
					t.Fatalf("matVecT %dx%d: y[%d] = %v, want %v", in, out, j, y[j], want)
				}
			}
		}
	}
}

// TestMat checks mat's kernels, SIMD tiles included where built and
// supported, against the plain definition.
func TestMat(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 10))
	for _, simd := range []bool{false, hasSIMD()} {
		for _, in := range []int{1, 2, 3, 44, 257} {
			for _, out := range []int{8, 63, 64, 65, 128, 200, 256} {
				x, w := randVec(r, in), randVec(r, in*out)
				for i := range x {
					if r.IntN(2) == 0 {
						x[i] = 0
					}
				}
				m := newMat(w, in, out, simd)
				want := make([]float32, out)
				for j := range out {
					for i := range in {
						want[j] += x[i] * w[i*out+j]
					}
				}
				y := make([]float32, out+3) // y may be longer than out
				m.accum(y, x)
				if err := relErr(y[:out], want); err > 1e-5 || y[out] != 0 {
					t.Fatalf("simd %v, %dx%d: accum rel err %.2g", simd, in, out, err)
				}
				vals, idx := make([]float32, in), make([]int32, in)
				n := compactReLU(x, vals, idx)
				clear(y)
				m.accumSparse(y, vals[:n], idx[:n])
				for j := range out {
					want[j] = 0
					for i := range in {
						want[j] += max(x[i], 0) * w[i*out+j]
					}
				}
				if err := relErr(y[:out], want); err > 1e-5 || y[out] != 0 {
					t.Fatalf("simd %v, %dx%d: accumSparse rel err %.2g", simd, in, out, err)
				}
			}
		}
	}
}

// Alternatives the kernels were measured against (BenchmarkLayer).

// rowsAxpy4 is accumDense with four rows per pass instead of eight.
func rowsAxpy4(y, x, w []float32) {
	n := len(y)
	i := 0
	for ; i+4 <= len(x); i += 4 {
		axpy4(y, w[i*n:], w[(i+1)*n:], w[(i+2)*n:], w[(i+3)*n:], x[i], x[i+1], x[i+2], x[i+3])
	}
	for ; i < len(x); i++ {
		axpy1(y, w[i*n:], x[i])
	}
}

// BenchmarkLayer compares kernels on one layer y = b + x @ w. "dense" inputs
// are all non-zero (layer 0); "relu" inputs are half zero, as after a ReLU.
// rows8/rows4: y += x[i]·w[i,:] over 8/4 rows per pass; dot4: dot products
// over transposed weights, 4 outputs per pass; sparse-*: skipping inactive
// units first; simd: the AVX-512 tile kernels (GOEXPERIMENT=simd builds).
// Measured and dropped: one row per pass (1.7-2.5x slower than rows8) and one
// 8-accumulator dot product per output (1.5-2x slower than dot4 except for
// single outputs, where it is the remainder kernel).
func BenchmarkLayer(b *testing.B) {
	for _, sh := range [][2]int{{880, 64}, {64, 256}, {256, 256}, {64, 16}, {64, 8}, {64, 3}} {
		in, out := sh[0], sh[1]
		r := rand.New(rand.NewPCG(1, 2))
		x, w, bias := randVec(r, in), randVec(r, in*out), randVec(r, out)
		xr := make([]float32, in)
		for i, v := range x {
			xr[i] = max(v, 0)
		}
		wt := transpose(w, in, out)
		y := make([]float32, out)
		vals, idx := make([]float32, in), make([]int32, in)
		name := fmt.Sprintf("%dx%d", in, out)
		b.Run(name+"/dense/rows8", func(b *testing.B) {
			for b.Loop() {
				copy(y, bias)
				accumDense(y, x, w, out, 0)
			}
		})
		b.Run(name+"/dense/rows4", func(b *testing.B) {
			for b.Loop() {
				copy(y, bias)
				rowsAxpy4(y, x, w)
			}
		})
		b.Run(name+"/dense/dot4", func(b *testing.B) {
			for b.Loop() {
				matVecT(y, x, wt, bias)
			}
		})
		b.Run(name+"/relu/sparse-rows8", func(b *testing.B) {
			for b.Loop() {
				n := compactReLU(x, vals, idx)
				copy(y, bias)
				accumSparse(y, vals[:n], idx[:n], w, out, 0)
			}
		})
		b.Run(name+"/relu/rows8", func(b *testing.B) {
			for b.Loop() {
				copy(y, bias)
				accumDense(y, xr, w, out, 0)
			}
		})
		b.Run(name+"/relu/dot4", func(b *testing.B) {
			for b.Loop() {
				matVecT(y, xr, wt, bias)
			}
		})
		b.Run(name+"/relu/sparse-dot4", func(b *testing.B) {
			for b.Loop() {
				n := compactReLU(x, vals, idx)
				matVecTSparse(y, vals[:n], idx[:n], wt, bias, in)
			}
		})
		q, err := newQDense(w, bias, in, out, false, hasVNNI())
		if err != nil {
			b.Fatal(err)
		}
		yq, xq, acc := make([]float32, q.tiles*64), make([]byte, q.groups*4), make([]int32, q.tiles*64)
		b.Run(name+"/relu/int8", func(b *testing.B) {
			for b.Loop() {
				q.apply(yq, x, xq, acc, nil)
			}
		})
		if hasVNNI() {
			b.Run(name+"/relu/int8-gemv-only", func(b *testing.B) {
				for b.Loop() {
					vnniGemv(&acc[0], &xq[0], &q.w[0], q.groups, q.tiles)
				}
			})
		}
		if !hasSIMD() || out < tileNarrow {
			continue
		}
		m := newMat(w, in, out, true)
		b.Run(name+"/dense/simd", func(b *testing.B) {
			for b.Loop() {
				copy(y, bias)
				m.accum(y, x)
			}
		})
		b.Run(name+"/relu/sparse-simd", func(b *testing.B) {
			for b.Loop() {
				n := compactReLU(x, vals, idx)
				copy(y, bias)
				m.accumSparse(y, vals[:n], idx[:n])
			}
		})
	}
}
