package model_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/model"
)

func TestNewGRU(t *testing.T) {
	m, err := model.NewGRU(10, 51, 0, 3)
	if err != nil || m.H != model.DefaultGRUHidden {
		t.Fatalf("NewGRU(hidden 0) = %+v, %v", m, err)
	}
	for _, c := range [][4]int{{0, 51, 64, 3}, {10, 0, 64, 3}, {10, 51, -1, 3}, {10, 51, 64, 1}} {
		if _, err := model.NewGRU(c[0], c[1], c[2], c[3]); err == nil {
			t.Errorf("NewGRU%v: no error", c)
		}
	}
}

func TestGRUGradient(t *testing.T) {
	m, _ := model.NewGRU(5, 4, 6, 3)
	gradCheck(t, m, 5, 4)
}

func TestGRUPacking(t *testing.T) {
	m, _ := model.NewGRU(10, 4, 8, 3)
	packingParity(t, m, 4)
}

// TestGRUCellMatchesForward steps Cell over a window by hand and checks the
// logits match Forward's, and that wh is orthogonal per gate.
func TestGRUCellMatchesForward(t *testing.T) {
	be := newBackend(t)
	const w, f, h, b = 6, 4, 5, 3
	m, _ := model.NewGRU(w, f, h, 3)
	r := rand.New(rand.NewPCG(1, 2))
	d := randBatch(r, b, w, f, 3)
	params := m.Init(11)
	n := len(params)
	outs, err := CallOnceN(be, func(in []*Node) []*Node {
		ps, mean, std, x := in[:n], in[n], in[n+1], in[n+2]
		xs := model.Normalize(Reshape(x, b, w, f), mean, std)
		st := Zeros(x.Graph(), shapes.Make(x.DType(), b, h))
		for i := 0; i < w; i++ {
			st = m.Cell(ps, st, Reshape(Slice(xs, AxisRange(), AxisElem(i)), b, f))
		}
		return []*Node{m.Forward(ps, mean, std, x), Add(MatMul(st, ps[4]), ExpandAxes(ps[5], 0))}
	}, append(anys(params), f32(d.mean, f), f32(d.std, f), f32(d.x, b, w*f))...)
	if err != nil {
		t.Fatal(err)
	}
	a, c := tensors.MustCopyFlatData[float32](outs[0]), tensors.MustCopyFlatData[float32](outs[1])
	for i := range a {
		if math.Abs(float64(a[i]-c[i])) > 1e-6 {
			t.Errorf("logit %d: Forward %.7f, Cell %.7f", i, a[i], c[i])
		}
	}
	wh := tensors.MustCopyFlatData[float32](params[1]) // [H, 3H]
	for g := 0; g < 3; g++ {
		for i := 0; i < h; i++ {
			for j := 0; j < h; j++ {
				var dot float64
				for k := 0; k < h; k++ {
					dot += float64(wh[k*3*h+g*h+i]) * float64(wh[k*3*h+g*h+j])
				}
				want := 0.0
				if i == j {
					want = 1
				}
				if math.Abs(dot-want) > 1e-5 {
					t.Fatalf("wh gate %d not orthogonal: column %d·%d = %g", g, i, j, dot)
				}
			}
		}
	}
}
