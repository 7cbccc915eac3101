package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/internal/gocpu"
)

// TestRecurrentLinearGradient compares the gradients of a recurrence
// h ← tanh(x_t + h·w + b) built with recurrentLinear against plain autodiff
// of the same loop, for the weights, the bias and the inputs, including a
// step whose output reaches the loss through a later step only and one
// step whose output is unused.
func TestRecurrentLinearGradient(t *testing.T) {
	be, err := gocpu.New()
	if err != nil {
		t.Fatal(err)
	}
	const s, b, h = 7, 3, 5
	r := rand.New(rand.NewPCG(5, 5))
	draw := func(dims ...int) *tensors.Tensor {
		n := 1
		for _, d := range dims {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * 0.5)
		}
		return tensors.FromFlatDataAndDimensions(v, dims...)
	}
	w, bias, x := draw(h, h), draw(h), draw(s, b, h)
	grads := func(batched bool) []*tensors.Tensor {
		out, err := CallOnceN(be, func(in []*Node) []*Node {
			w, bias, x := in[0], in[1], in[2]
			var step func(h *Node) *Node
			if batched {
				rec := newRecurrentLinear(w, bias)
				step = rec.apply
			} else {
				step = func(h *Node) *Node { return Add(MatMul(h, w), ExpandAxes(bias, 0)) }
			}
			hs := Zeros(x.Graph(), shapes.Make(x.DType(), b, h))
			var loss *Node
			for i := range s {
				xi := Reshape(Slice(x, AxisElem(i)), b, h)
				y := step(hs)
				if i == s-1 {
					break // the last step's product goes unused
				}
				hs = Tanh(Add(xi, y))
				if i%3 == 0 {
					term := ReduceAllSum(Mul(hs, Cos(hs)))
					if loss == nil {
						loss = term
					} else {
						loss = Add(loss, term)
					}
				}
			}
			loss = Add(loss, ReduceAllSum(Sin(hs)))
			return Gradient(loss, w, bias, x)
		}, w, bias, x)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	want, got := grads(false), grads(true)
	for i, name := range []string{"w", "b", "x"} {
		a, g := tensors.MustCopyFlatData[float32](want[i]), tensors.MustCopyFlatData[float32](got[i])
		for j := range a {
			if math.Abs(float64(a[j]-g[j])) > 1e-5*(1+math.Abs(float64(a[j]))) {
				t.Fatalf("gradient of %s[%d]: %g with recurrentLinear, %g by plain autodiff", name, j, g[j], a[j])
			}
		}
	}
}

// TestReLU checks relu's values (NaN kept, as Max keeps it, so the guard
// sees it) and its one-pass gradient.
func TestReLU(t *testing.T) {
	be, err := gocpu.New()
	if err != nil {
		t.Fatal(err)
	}
	nan := float32(math.NaN())
	out, err := CallOnceN(be, func(x *Node) []*Node {
		y := relu(x)
		return []*Node{y, Gradient(ReduceAllSum(Mul(y, Iota(x.Graph(), x.Shape(), 0))), x)[0]}
	}, []float32{-1, 0, 2, nan, 3})
	if err != nil {
		t.Fatal(err)
	}
	y, g := tensors.MustCopyFlatData[float32](out[0]), tensors.MustCopyFlatData[float32](out[1])
	want := []float32{0, 0, 2, nan, 3}
	wantG := []float32{0, 0, 2, 3, 4}
	for i := range want {
		same := y[i] == want[i] || (math.IsNaN(float64(y[i])) && math.IsNaN(float64(want[i])))
		if !same || g[i] != wantG[i] {
			t.Errorf("relu at %d: value %g, gradient %g; want %g, %g", i, y[i], g[i], want[i], wantG[i])
		}
	}
}
