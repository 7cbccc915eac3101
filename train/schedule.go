package train

import (
	"fmt"
	"math"
)

// Schedule gives the learning rate at a step (0-based).
type Schedule interface {
	LR(step int64) float64
}

// Constant is a fixed learning rate.
type Constant float64

func (c Constant) LR(int64) float64 { return float64(c) }

// OneCycle is fastai's one-cycle policy (Smith 2018): the rate rises from
// Max/DivFactor to Max over the first PctStart of Total steps along a cosine,
// then anneals along a cosine to Max/(DivFactor·FinalDiv).
type OneCycle struct {
	Max       float64
	Total     int64
	PctStart  float64 // default 0.25
	DivFactor float64 // default 25
	FinalDiv  float64 // default 1e4
}

func cosAnneal(start, end, pct float64) float64 {
	return end + (start-end)/2*(1+math.Cos(math.Pi*pct))
}

func (o OneCycle) LR(step int64) float64 {
	pctStart, div, final := o.PctStart, o.DivFactor, o.FinalDiv
	if pctStart <= 0 {
		pctStart = 0.25
	}
	if div <= 0 {
		div = 25
	}
	if final <= 0 {
		final = 1e4
	}
	lo, hi, end := o.Max/div, o.Max, o.Max/(div*final)
	warm := float64(o.Total) * pctStart
	s := float64(step)
	if s < warm {
		return cosAnneal(lo, hi, s/warm)
	}
	p := (s - warm) / math.Max(1, float64(o.Total)-warm)
	return cosAnneal(hi, end, math.Min(1, p))
}

// WarmupCosine rises linearly from 0 to Max over Warmup steps, then follows
// a cosine to Min at Total.
type WarmupCosine struct {
	Max, Min      float64
	Warmup, Total int64
}

func (w WarmupCosine) LR(step int64) float64 {
	if step < w.Warmup {
		return w.Max * float64(step+1) / float64(w.Warmup)
	}
	p := float64(step-w.Warmup) / math.Max(1, float64(w.Total-w.Warmup))
	return cosAnneal(w.Max, w.Min, math.Min(1, p))
}

// ParseSchedule builds a schedule by name: "onecycle", "cosine" or
// "constant".
func ParseSchedule(name string, max float64, total int64) (Schedule, error) {
	switch name {
	case "onecycle", "one-cycle":
		return OneCycle{Max: max, Total: total}, nil
	case "cosine":
		return WarmupCosine{Max: max, Min: max / 100, Warmup: max64(1, total/20), Total: total}, nil
	case "constant":
		return Constant(max), nil
	}
	return nil, fmt.Errorf("train: unknown schedule %q (want onecycle, cosine or constant)", name)
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}
