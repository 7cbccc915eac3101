package train

import (
	"fmt"
	"math"

	"github.com/gomlx/gomlx/core/tensors"
)

// LRFindConfig configures LRFind; zero fields take the defaults in
// brackets.
type LRFindConfig struct {
	Start, End float64 // learning-rate range, swept exponentially [1e-7, 10]
	Steps      int     // [100]
	Smooth     float64 // EWMA factor of the plotted loss [0.98]
	Divergence float64 // stop when the smoothed loss exceeds this × its minimum [4]
}

// LRFindResult is the sweep and the suggestions.
type LRFindResult struct {
	LR, Loss, Smoothed []float64
	// Valley is fastai's "valley" suggestion: the point halfway along the
	// longest stretch of falling loss (its longest decreasing subsequence). Steepest is where the
	// smoothed loss falls fastest against log(lr). MinLoss10 is a tenth of
	// the learning rate with the lowest smoothed loss.
	Valley, Steepest, MinLoss10 float64
	Stopped                     string
}

// Batch supplies the finder's batches; release, if not nil, is called once
// the step that used the batch was dispatched.
type Batch func() (x, y *tensors.Tensor, release func(), err error)

// LRFind trains from st (which it changes: pass a state you can discard)
// with a learning rate rising exponentially from cfg.Start to cfg.End, one
// batch per step, reading the loss after every step (the finder is a
// diagnostic, not the hot path).
func LRFind(s *Stepper, st *State, next Batch, mean, std *tensors.Tensor, cfg LRFindConfig) (*LRFindResult, error) {
	if cfg.Start <= 0 {
		cfg.Start = 1e-7
	}
	if cfg.End <= cfg.Start {
		cfg.End = 10
	}
	if cfg.Steps < 10 {
		cfg.Steps = 100
	}
	if cfg.Smooth <= 0 || cfg.Smooth >= 1 {
		cfg.Smooth = 0.98
	}
	if cfg.Divergence <= 1 {
		cfg.Divergence = 4
	}
	r := &LRFindResult{Stopped: fmt.Sprintf("reached lr %g", cfg.End)}
	ratio := math.Pow(cfg.End/cfg.Start, 1/float64(cfg.Steps-1))
	var avg, best float64 = 0, math.Inf(1)
	for i := 0; i < cfg.Steps; i++ {
		lr := cfg.Start * math.Pow(ratio, float64(i))
		x, y, release, err := next()
		if err != nil {
			return nil, err
		}
		out, err := s.Step(st, lr, mean, std, x, y)
		if release != nil {
			release()
		}
		if err != nil {
			return nil, err
		}
		var loss float64
		tensors.MustConstFlatData(out.Loss, func(f []float32) { loss = float64(f[0]) })
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			r.Stopped = fmt.Sprintf("loss became %v at lr %.3g", loss, lr)
			break
		}
		avg = cfg.Smooth*avg + (1-cfg.Smooth)*loss
		sm := avg / (1 - math.Pow(cfg.Smooth, float64(i+1)))
		r.LR, r.Loss, r.Smoothed = append(r.LR, lr), append(r.Loss, loss), append(r.Smoothed, sm)
		best = math.Min(best, sm)
		if i > 10 && sm > cfg.Divergence*best {
			r.Stopped = fmt.Sprintf("loss diverged (%.3g > %g × min) at lr %.3g", sm, cfg.Divergence, lr)
			break
		}
	}
	if len(r.LR) < 5 {
		return r, fmt.Errorf("train: lr-find: only %d steps before the loss failed (%s); lower the start", len(r.LR), r.Stopped)
	}
	r.Valley = valley(r.LR, r.Smoothed)
	r.Steepest = steepest(r.LR, r.Smoothed)
	mi := 0
	for i, v := range r.Smoothed {
		if v < r.Smoothed[mi] {
			mi = i
		}
	}
	r.MinLoss10 = r.LR[mi] / 10
	return r, nil
}

// valley follows fastai: find the longest decreasing subsequence of the
// loss and take the point at 1/3 + 1/6 of its length.
func valley(lrs, losses []float64) float64 {
	n := len(losses)
	lds := make([]int, n)
	for i := range lds {
		lds[i] = 1
	}
	maxStart, maxEnd := 0, 0
	for i := 1; i < n; i++ {
		for j := 0; j < i; j++ {
			if losses[i] < losses[j] && lds[i] < lds[j]+1 {
				lds[i] = lds[j] + 1
			}
		}
		if lds[maxEnd] < lds[i] {
			maxEnd = i
			maxStart = maxEnd - lds[maxEnd]
		}
	}
	sections := float64(maxEnd-maxStart) / 3
	idx := maxStart + int(sections) + int(sections/2)
	return lrs[min(max(idx, 0), n-1)]
}

// steepest returns the learning rate where d(loss)/d(log lr) is lowest.
func steepest(lrs, losses []float64) float64 {
	best, at := math.Inf(1), lrs[0]
	for i := 1; i < len(losses); i++ {
		g := (losses[i] - losses[i-1]) / (math.Log(lrs[i]) - math.Log(lrs[i-1]))
		if g < best {
			best, at = g, lrs[i]
		}
	}
	return at
}
