package train

import (
	"math"
	"testing"

	"github.com/gallop-dev/gallop/internal/gocpu"
	"github.com/gomlx/gomlx/core/tensors"
)

func TestValleyAndSteepestOnAKnownCurve(t *testing.T) {
	// Loss falls from lr 1e-5 to 1e-2 (fastest around 1e-3.5), then blows up.
	var lrs, loss []float64
	for i := 0; i < 100; i++ {
		lr := 1e-6 * math.Pow(10, float64(i)/20)
		x := math.Log10(lr)
		l := 2 - 1/(1+math.Exp(-3*(x+3.5)))
		if x > -2 {
			l += math.Pow(x+2, 2) * 3
		}
		lrs, loss = append(lrs, lr), append(loss, l)
	}
	st := steepest(lrs, loss)
	if math.Abs(math.Log10(st)+3.5) > 0.1 {
		t.Errorf("steepest %g, want ~10^-3.5", st)
	}
	// The loss falls from the first point (10^-6) to ~10^-2: the valley
	// is halfway down that stretch in log(lr).
	v := valley(lrs, loss)
	if lv := math.Log10(v); lv < -4.5 || lv > -3.5 {
		t.Errorf("valley %g, want ~10^-4", v)
	}
}

func TestLRFindSweepsAndStopsOnDivergence(t *testing.T) {
	f := newFixture(t)
	be, _ := gocpu.New()
	s := NewStepper(be, f.m, DefaultOptimizer())
	st := s.NewState(1)
	x := tensors.FromShape(shapeF32(64, f.w.SampleSize()))
	y := make([]int32, 64)
	i := 0
	next := func() (*tensors.Tensor, *tensors.Tensor, func(), error) {
		x.MutableFlatData(func(fl any) { s0 := (i * 64) % (len(f.refs) - 64); f.w.Gather(f.refs[s0:s0+64], fl.([]float32), y) })
		i++
		return x, tensors.FromFlatDataAndDimensions(y, 64), nil, nil
	}
	r, err := LRFind(s, st, next, f.mean, f.std, LRFindConfig{Start: 1e-6, End: 100, Steps: 120})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.LR) >= 120 || r.LR[len(r.LR)-1] < 1e-2 {
		t.Errorf("sweep of %d steps ending at %g (%s): want a stop on divergence at a high lr", len(r.LR), r.LR[len(r.LR)-1], r.Stopped)
	}
	if !(r.Valley > 1e-5 && r.Valley < 1) || !(r.Steepest > 1e-6 && r.Steepest < 10) {
		t.Errorf("suggestions valley %g steepest %g", r.Valley, r.Steepest)
	}
	for j := 1; j < len(r.LR); j++ {
		if !(r.LR[j] > r.LR[j-1]) {
			t.Fatal("lr not increasing")
		}
	}
}
