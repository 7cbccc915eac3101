// Package train provides the blocks of a training loop the researcher
// writes: a compiled train step (Adam/AdamW, global-norm clipping and an
// on-device finiteness check), learning-rate schedules, evaluation metrics
// and checkpoints.
package train

import (
	"fmt"
	"math"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/model"
)

// Optimizer configures Adam (AdamW when WeightDecay > 0).
type Optimizer struct {
	Beta1       float64 `toml:"beta1" json:"beta1"`
	Beta2       float64 `toml:"beta2" json:"beta2"`
	Eps         float64 `toml:"eps" json:"eps"`
	WeightDecay float64 `toml:"weight_decay" json:"weight_decay"` // decoupled (AdamW)
	ClipNorm    float64 `toml:"clip_norm" json:"clip_norm"`       // global-norm clip; 0 = off
}

// DefaultOptimizer is Adam with PyTorch's defaults and clipping at 1.
func DefaultOptimizer() Optimizer {
	return Optimizer{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, ClipNorm: 1}
}

// State is the trainable state: parameters and Adam's moments, all resident
// on the backend's device between steps.
type State struct {
	Params, M, V []*tensors.Tensor
	Step         int64 // optimizer steps taken
}

// StepOut is what one step returns. Its tensors stay on the device: reading
// them (Value) synchronises with the step, so the loop hands them to a
// goroutine (see Watcher) instead of reading them itself.
type StepOut struct {
	Step     int64
	LR       float64         // learning rate the step used
	Start    time.Time       // when the step was dispatched
	Loss     *tensors.Tensor // float32 scalar
	GradNorm *tensors.Tensor // float32 scalar, before clipping
	Finite   *tensors.Tensor // float32 scalar, 1 when loss and gradients are finite
	// ParamFinite is float32 [len(params)]: 1 where that parameter's
	// gradient is finite, to name the layer that went bad first.
	ParamFinite *tensors.Tensor
}

// Stepper runs the compiled train step of a model.
type Stepper struct {
	backend compute.Backend
	model   model.Model
	opt     Optimizer
	exec    *Exec
	pred    *Exec
	nParams int
	hyper   []float32
}

// NewStepper compiles (lazily, on the first call) the train and predict
// graphs of m on backend.
func NewStepper(backend compute.Backend, m model.Model, opt Optimizer) *Stepper {
	s := &Stepper{backend: backend, model: m, opt: opt, nParams: len(m.Params()), hyper: make([]float32, 3)}
	s.exec = MustNewExec(backend, s.graph).WithName("train_step")
	s.pred = MustNewExec(backend, s.predictGraph).WithName("predict")
	return s
}

// NewState initialises parameters from seed and zero moments.
func (s *Stepper) NewState(seed uint64) *State {
	st := &State{Params: s.model.Init(seed)}
	for _, p := range st.Params {
		st.M = append(st.M, tensors.FromShape(p.Shape()))
		st.V = append(st.V, tensors.FromShape(p.Shape()))
	}
	return st
}

// graph: inputs are params, m, v (n each), hyper [3] = (lr, 1-β1^t, 1-β2^t),
// mean, std, x, y. Outputs: params, m, v, loss, grad norm, finite.
func (s *Stepper) graph(in []*Node) []*Node {
	n := s.nParams
	ps, ms, vs := in[:n], in[n:2*n], in[2*n:3*n]
	hyper, mean, std, x, y := in[3*n], in[3*n+1], in[3*n+2], in[3*n+3], in[3*n+4]
	g := x.Graph()
	logits := s.model.Forward(ps, mean, std, x)
	loss := model.CrossEntropy(logits, y)
	grads := Gradient(loss, ps...)

	var sq *Node
	perParam := make([]*Node, len(grads))
	for i, gr := range grads {
		t := ReduceAllSum(Square(gr))
		perParam[i] = ConvertDType(IsFinite(t), dtypes.Float32)
		if sq == nil {
			sq = t
		} else {
			sq = Add(sq, t)
		}
	}
	gnorm := Sqrt(sq)
	finite := LogicalAnd(IsFinite(loss), IsFinite(gnorm))
	scale := Const(g, float32(1))
	if s.opt.ClipNorm > 0 {
		clip := Const(g, float32(s.opt.ClipNorm))
		scale = Min(scale, Div(clip, Add(gnorm, Const(g, float32(1e-6)))))
	}
	lr := Slice(hyper, AxisElem(0))
	lr = Reshape(lr)
	bc1 := Reshape(Slice(hyper, AxisElem(1)))
	bc2 := Reshape(Slice(hyper, AxisElem(2)))
	b1, b2 := float32(s.opt.Beta1), float32(s.opt.Beta2)
	eps := Const(g, float32(s.opt.Eps))
	outs := make([]*Node, 0, 3*n+3)
	newP := make([]*Node, n)
	newM := make([]*Node, n)
	newV := make([]*Node, n)
	for i := range ps {
		gr := Mul(grads[i], scale)
		m := Add(MulScalar(ms[i], b1), MulScalar(gr, 1-b1))
		v := Add(MulScalar(vs[i], b2), MulScalar(Square(gr), 1-b2))
		upd := Div(Div(m, bc1), Add(Sqrt(Div(v, bc2)), eps))
		if s.opt.WeightDecay > 0 {
			upd = Add(upd, MulScalar(ps[i], float32(s.opt.WeightDecay)))
		}
		p := Sub(ps[i], Mul(lr, upd))
		// A non-finite step changes nothing: the state stays the last good one.
		newP[i] = Where(finite, p, ps[i])
		newM[i] = Where(finite, m, ms[i])
		newV[i] = Where(finite, v, vs[i])
	}
	outs = append(outs, newP...)
	outs = append(outs, newM...)
	outs = append(outs, newV...)
	return append(outs, loss, gnorm, ConvertDType(finite, dtypes.Float32), Stack(perParam, 0))
}

func (s *Stepper) predictGraph(in []*Node) *Node {
	n := s.nParams
	return s.model.Forward(in[:n], in[n], in[n+1], in[n+2])
}

// Step runs one optimizer step on batch (x, y) with learning rate lr,
// replacing st's tensors by the updated ones (their buffers are donated).
// It does not wait for the device.
func (s *Stepper) Step(st *State, lr float64, mean, std, x, y *tensors.Tensor) (StepOut, error) {
	start := time.Now()
	n := s.nParams
	t := float64(st.Step + 1)
	hyper := tensors.FromFlatDataAndDimensions([]float32{
		float32(lr),
		float32(1 - math.Pow(s.opt.Beta1, t)),
		float32(1 - math.Pow(s.opt.Beta2, t)),
	}, 3)
	args := make([]any, 0, 3*n+5)
	for _, group := range [][]*tensors.Tensor{st.Params, st.M, st.V} {
		for _, p := range group {
			d, err := DonateTensorBuffer(p, s.backend, 0)
			if err != nil {
				return StepOut{}, fmt.Errorf("train: step %d: donating state: %w", st.Step, err)
			}
			args = append(args, d)
		}
	}
	args = append(args, hyper, mean, std, x, y)
	outs, err := s.exec.Call(args...)
	if err != nil {
		return StepOut{}, fmt.Errorf("train: step %d: %w", st.Step, err)
	}
	copy(st.Params, outs[:n])
	copy(st.M, outs[n:2*n])
	copy(st.V, outs[2*n:3*n])
	out := StepOut{Step: st.Step, LR: lr, Start: start, Loss: outs[3*n], GradNorm: outs[3*n+1], Finite: outs[3*n+2], ParamFinite: outs[3*n+3]}
	st.Step++
	return out, nil
}

// Predict returns the logits [B, C] of x.
func (s *Stepper) Predict(st *State, mean, std, x *tensors.Tensor) (*tensors.Tensor, error) {
	args := make([]any, 0, s.nParams+3)
	for _, p := range st.Params {
		args = append(args, p)
	}
	args = append(args, mean, std, x)
	out, err := s.pred.Call1(args...)
	if err != nil {
		return nil, fmt.Errorf("train: predict: %w", err)
	}
	return out, nil
}
