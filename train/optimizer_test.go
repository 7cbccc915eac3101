package train

import (
	"math"
	"math/rand/v2"
	"testing"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/internal/gocpu"
)

// TestOptimizerUpdateMatchesReference checks the compiled update (clipping,
// Adam, AdamW, SGD with momentum and Nesterov) against a float64 reference
// written from the textbook formulas, at step 5 (bias corrections well
// away from 1) with moments already built up.
func TestOptimizerUpdateMatchesReference(t *testing.T) {
	be, err := gocpu.New()
	if err != nil {
		t.Fatal(err)
	}
	const n, step, lr = 7, 4, 3e-3
	r := rand.New(rand.NewPCG(9, 9))
	draw := func(scale float64, positive bool) []float32 {
		v := make([]float32, n)
		for i := range v {
			x := r.NormFloat64() * scale
			if positive {
				x = math.Abs(x)
			}
			v[i] = float32(x)
		}
		return v
	}
	p0, m0, v0, g0 := draw(1, false), draw(0.1, false), draw(0.01, true), draw(2, false)
	var gsq float64
	for _, g := range g0 {
		gsq += float64(g) * float64(g)
	}
	gnorm := math.Sqrt(gsq)
	for _, o := range []Optimizer{
		DefaultOptimizer(),
		{Name: "adamw", Beta1: 0.8, Beta2: 0.99, Eps: 1e-6, WeightDecay: 0.1},
		{Name: "sgd", Momentum: 0.9, WeightDecay: 0.01, ClipNorm: 0.5},
		{Name: "sgd", Momentum: 0.8, Nesterov: true},
	} {
		s := &Stepper{opt: o, precision: FP32}
		hyper := s.hyper(&State{Step: step}, lr)
		out, err := CallOnceN(be, func(in []*Node) []*Node {
			g := in[0].Graph()
			np, nm, nv, _ := s.update(in[0:1], in[1:2], in[2:3], in[3:4], Const(g, float32(gnorm)), in[4], Const(g, []float32{1, 0}), Const(g, true))
			return []*Node{np[0], nm[0], nv[0]}
		}, tensors.FromValue(p0), tensors.FromValue(m0), tensors.FromValue(v0), tensors.FromValue(g0), hyper)
		if err != nil {
			t.Fatal(err)
		}
		scale := 1.0
		if o.ClipNorm > 0 {
			scale = math.Min(1, o.ClipNorm/(gnorm+1e-6))
		}
		tt := float64(step + 1)
		for i := range p0 {
			p, m, v, g := float64(p0[i]), float64(m0[i]), float64(v0[i]), float64(g0[i])*scale
			var wp, wm, wv float64
			if o.sgd() {
				wm, wv = o.Momentum*m+g, v
				d := wm
				if o.Nesterov {
					d = g + o.Momentum*wm
				}
				wp = p - lr*(d+o.WeightDecay*p)
			} else {
				wm = o.Beta1*m + (1-o.Beta1)*g
				wv = o.Beta2*v + (1-o.Beta2)*g*g
				mh, vh := wm/(1-math.Pow(o.Beta1, tt)), wv/(1-math.Pow(o.Beta2, tt))
				wp = p - lr*(mh/(math.Sqrt(vh)+o.Eps)+o.WeightDecay*p)
			}
			for k, want := range []float64{wp, wm, wv} {
				got := float64(tensors.MustCopyFlatData[float32](out[k])[i])
				if math.Abs(got-want) > 2e-6*(1+math.Abs(want)) {
					t.Errorf("%+v: %s[%d] = %.8g, want %.8g", o, []string{"param", "m", "v"}[k], i, got, want)
				}
			}
		}
	}
}
