package train

import (
	"fmt"
	"math"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/batch"
)

// EvalResult is the outcome of an evaluation pass.
type EvalResult struct {
	Confusion *Confusion
	LogLoss   float64 // mean negative log-likelihood of the true class
	Samples   int
}

// Evaluator runs a model over fixed samples in batches of one shape (the
// last batch is padded, so evaluation compiles one graph).
type Evaluator struct {
	W         *batch.Windows
	Refs      []batch.Ref
	BatchSize int
	Classes   int
	x         *tensors.Tensor
	y         []int32
	refs      []batch.Ref
}

// Run evaluates st's parameters on every sample of e.Refs.
func (e *Evaluator) Run(s *Stepper, st *State, mean, std *tensors.Tensor) (EvalResult, error) {
	B := e.BatchSize
	if e.x == nil {
		e.x = tensors.FromShape(shapeF32(B, e.W.SampleSize()))
		e.y = make([]int32, B)
		e.refs = make([]batch.Ref, B)
	}
	conf := NewConfusion(e.Classes)
	var nll float64
	for i := 0; i < len(e.Refs); i += B {
		n := min(B, len(e.Refs)-i)
		copy(e.refs, e.Refs[i:i+n])
		for j := n; j < B; j++ {
			e.refs[j] = e.Refs[i] // padding, ignored below
		}
		e.x.MutableFlatData(func(flat any) { e.W.Gather(e.refs, flat.([]float32), e.y) })
		lg, err := s.Predict(st, mean, std, e.x)
		if err != nil {
			return EvalResult{}, fmt.Errorf("train: eval: %w", err)
		}
		tensors.MustConstFlatData(lg, func(l []float32) { nll += Score(l[:n*e.Classes], e.y[:n], conf) })
		lg.FinalizeAll()
	}
	return EvalResult{Confusion: conf, LogLoss: nll / float64(len(e.Refs)), Samples: len(e.Refs)}, nil
}

// Score adds the prediction (argmax) of every logits row whose label is >= 0
// to conf, and returns their summed negative log-likelihood. logits holds
// len(labels) rows of len(conf.Counts) classes.
func Score(logits []float32, labels []int32, conf *Confusion) float64 {
	c := len(conf.Counts)
	var nll float64
	for i, y := range labels {
		if y < 0 {
			continue
		}
		row := logits[i*c : (i+1)*c]
		p, mx := 0, row[0]
		for k := 1; k < c; k++ {
			if row[k] > mx {
				p, mx = k, row[k]
			}
		}
		var z float64
		for _, v := range row {
			z += math.Exp(float64(v - mx))
		}
		nll += math.Log(z) - float64(row[y]-mx)
		conf.Add(int(y), p)
	}
	return nll
}
