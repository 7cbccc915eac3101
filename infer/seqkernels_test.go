package infer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// applyAct runs one of the sequence kernels' nonlinearities over xs through
// the kernel variant simd and returns the results.
func applyAct(name string, simd bool, xs []float32) []float32 {
	n := len(xs)
	out := make([]float32, n)
	switch name {
	case "exp":
		// softmax's exp: e^(x-0) summed; read back the exps.
		copy(out, xs)
		if simd {
			expSubSumSIMD(out, 0)
		} else {
			for i, v := range out {
				out[i] = expf(v)
			}
		}
	case "sigmoid":
		// The GRU update with z = σ(·) and r irrelevant: with gx_n = gh_n = 0
		// and h = 1 the state becomes (1-z)·0 + z·1 = z.
		for i, v := range xs {
			h := []float32{1}
			gruUpdate(simd, h, []float32{0, v, 0}, []float32{0, 0, 0})
			out[i] = h[0]
		}
		if simd { // and on 16 lanes at once
			h := make([]float32, n)
			gx, gh := make([]float32, 3*n), make([]float32, 3*n)
			for i, v := range xs {
				h[i], gx[n+i] = 1, v
			}
			gruUpdate(true, h, gx, gh)
			copy(out, h)
		}
	case "tanh":
		// The GRU update with z = σ(-∞) = 0: h' = tanh(gx_n + r·gh_n) = tanh(gx_n).
		h := make([]float32, n)
		gx, gh := make([]float32, 3*n), make([]float32, 3*n)
		for i, v := range xs {
			gx[n+i], gx[2*n+i] = -1e30, v
		}
		gruUpdate(simd, h, gx, gh)
		copy(out, h)
	case "gelu":
		copy(out, xs)
		geluInPlace(simd, out)
	}
	return out
}

func TestSeqActivations(t *testing.T) {
	var xs []float32
	for x := -30.0; x <= 30; x += 0.00731 {
		xs = append(xs, float32(x))
	}
	xs = append(xs, 0, 1e-8, -1e-8, 80, 88, -87, -100, 100)
	for kname, simd := range kernelVariants() {
		for _, tc := range []struct {
			name string
			ref  func(float64) float64
			rel  bool
			tol  float64
		}{
			{"exp", math.Exp, true, 2e-7},
			{"sigmoid", func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }, true, 2e-7},
			{"tanh", math.Tanh, false, 2e-7},
			{"gelu", func(x float64) float64 { return x / 2 * (1 + math.Erf(x/math.Sqrt2)) }, false, 1e-6},
		} {
			got := applyAct(tc.name, simd, xs)
			var worst float64
			for i, x := range xs {
				want := tc.ref(float64(x))
				if tc.name == "exp" && want > math.MaxFloat32 {
					continue
				}
				d := math.Abs(float64(got[i]) - want)
				if tc.rel {
					d /= max(want, 1e-30)
				} else if tc.name == "gelu" {
					d /= max(1, math.Abs(want))
				}
				if tc.name == "exp" && want < 1.2e-38 { // below float32's normal range
					d = math.Abs(float64(got[i]) - want)
				}
				worst = max(worst, d)
				if d > tc.tol {
					t.Fatalf("%s %s(%v) = %v, want %v (err %.3g)", kname, tc.name, x, got[i], want, d)
				}
			}
			t.Logf("%s %s: worst err %.3g", kname, tc.name, worst)
		}
		// NaN propagates, ±Inf saturates.
		nan, inf := float32(math.NaN()), float32(math.Inf(1))
		for _, name := range []string{"exp", "sigmoid", "tanh", "gelu"} {
			got := applyAct(name, simd, []float32{nan, inf, -inf, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14})
			if !math.IsNaN(float64(got[0])) {
				t.Errorf("%s %s(NaN) = %v", kname, name, got[0])
			}
			want := map[string][2]float64{"exp": {math.Inf(1), 0}, "sigmoid": {1, 0}, "tanh": {1, -1}}[name]
			if name != "gelu" && (float64(got[1]) != want[0] || float64(got[2]) != want[1]) {
				t.Errorf("%s %s(±Inf) = %v, %v, want %v", kname, name, got[1], got[2], want)
			}
		}
	}
}

func TestLSTMAndLeakyReLU(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for kname, simd := range kernelVariants() {
		for _, n := range []int{1, 7, 16, 19, 64} {
			g := randVec(r, 4*n)
			h, c := randVec(r, n), randVec(r, n)
			c0 := append([]float32(nil), c...)
			lstmUpdate(simd, h, c, g)
			sig := func(x float32) float64 { return 1 / (1 + math.Exp(-float64(x))) }
			for i := range n {
				wc := sig(g[n+i])*float64(c0[i]) + sig(g[i])*math.Tanh(float64(g[2*n+i]))
				wh := sig(g[3*n+i]) * math.Tanh(wc)
				if math.Abs(float64(c[i])-wc) > 1e-6 || math.Abs(float64(h[i])-wh) > 1e-6 {
					t.Fatalf("%s lstm n=%d unit %d: h, c = %v, %v, want %v, %v", kname, n, i, h[i], c[i], wh, wc)
				}
			}
			x := randVec(r, 3*n)
			x[0] = float32(math.NaN())
			y := append([]float32(nil), x...)
			leakyReLU(simd, y)
			for i, v := range x {
				want := v
				if !(v > 0) {
					want = v * 0.01
				}
				if math.Float32bits(y[i]) != math.Float32bits(want) && !(math.IsNaN(float64(v)) && math.IsNaN(float64(y[i]))) {
					t.Fatalf("%s leakyReLU(%v) = %v, want %v", kname, v, y[i], want)
				}
			}
		}
	}
}

func TestGemm(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for kname, simd := range kernelVariants() {
		for _, m := range []int{1, 3, 4, 5, 9} {
			for _, k := range []int{1, 2, 3, 17, 64} {
				for _, n := range []int{1, 15, 16, 32, 48, 64, 80, 96, 192, 200} {
					t.Run(fmt.Sprint(kname, m, k, n), func(t *testing.T) {
						ldx, ldy, ldw, off := k+3, n+5, n+7, 2
						x, w := randVec(r, m*ldx), randVec(r, k*ldw)
						y := randVec(r, m*ldy)
						y0 := append([]float32(nil), y...)
						gemm(simd, y, ldy, x, ldx, m, w[off:], ldw, k, n)
						for i := range m {
							for j := range ldy {
								want := float64(y0[i*ldy+j])
								if j < n {
									for kk := range k {
										want += float64(x[i*ldx+kk]) * float64(w[off+kk*ldw+j])
									}
								}
								if math.Abs(float64(y[i*ldy+j])-want) > 1e-4*(1+math.Abs(want)) {
									t.Fatalf("y[%d,%d] = %v, want %v", i, j, y[i*ldy+j], want)
								}
							}
						}
					})
				}
			}
		}
	}
}

func TestSoftmaxDot(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for kname, simd := range kernelVariants() {
		for _, n := range []int{1, 5, 16, 17, 50} {
			x := randVec(r, n)
			s := append([]float32(nil), x...)
			softmaxInPlace(simd, s)
			mx := math.Inf(-1)
			for _, v := range x {
				mx = max(mx, float64(v))
			}
			var z float64
			for _, v := range x {
				z += math.Exp(float64(v) - mx)
			}
			for i, v := range x {
				if want := math.Exp(float64(v)-mx) / z; math.Abs(float64(s[i])-want) > 1e-6 {
					t.Fatalf("%s softmax n=%d [%d] = %v, want %v", kname, n, i, s[i], want)
				}
			}
			y := randVec(r, n)
			var d float64
			for i := range x {
				d += float64(x[i]) * float64(y[i])
			}
			if got := dotf(simd, x, y); math.Abs(float64(got)-d) > 1e-5*(1+math.Abs(d)) {
				t.Fatalf("%s dot n=%d = %v, want %v", kname, n, got, d)
			}
		}
	}
}
