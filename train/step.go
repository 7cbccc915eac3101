// Package train provides the blocks of a training loop the researcher
// writes: a compiled train step (Adam/AdamW or SGD with momentum,
// global-norm clipping, bf16/fp16 mixed precision with fp32 master weights
// and dynamic loss scaling, gradient accumulation, and an on-device
// finiteness check), learning-rate schedules, evaluation metrics and
// checkpoints.
package train

import (
	"fmt"
	"math"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/model"
)

// Optimizer configures the update rule.
type Optimizer struct {
	// Name is "adam" (AdamW when WeightDecay > 0; the default) or "sgd"
	// (with Momentum, optionally Nesterov).
	Name        string  `toml:"name" json:"name"`
	Beta1       float64 `toml:"beta1" json:"beta1"`
	Beta2       float64 `toml:"beta2" json:"beta2"`
	Eps         float64 `toml:"eps" json:"eps"`
	Momentum    float64 `toml:"momentum" json:"momentum"`
	Nesterov    bool    `toml:"nesterov" json:"nesterov"`
	WeightDecay float64 `toml:"weight_decay" json:"weight_decay"` // decoupled (AdamW; SGD: p ← p - lr·wd·p)
	ClipNorm    float64 `toml:"clip_norm" json:"clip_norm"`       // global-norm clip; 0 = off
}

// DefaultOptimizer is Adam with PyTorch's defaults and clipping at 1.
func DefaultOptimizer() Optimizer {
	return Optimizer{Name: "adam", Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Momentum: 0.9, ClipNorm: 1}
}

// Validate reports an unusable optimizer setting.
func (o Optimizer) Validate() error {
	switch o.Name {
	case "", "adam", "adamw", "sgd":
	default:
		return fmt.Errorf("train: optimizer %q: want adam, adamw or sgd", o.Name)
	}
	if o.ClipNorm < 0 || o.WeightDecay < 0 || o.Momentum < 0 || o.Momentum >= 1 {
		return fmt.Errorf("train: optimizer %+v: clip_norm, weight_decay >= 0 and momentum in [0, 1)", o)
	}
	return nil
}

func (o Optimizer) sgd() bool { return o.Name == "sgd" }

// Precision is the compute precision of the forward and backward pass.
// Master weights and optimizer state are always float32.
type Precision string

const (
	FP32 Precision = "fp32"
	BF16 Precision = "bf16" // bfloat16 compute, no loss scaling needed
	FP16 Precision = "fp16" // float16 compute with dynamic loss scaling
)

// ParsePrecision reads "fp32", "bf16" or "fp16".
func ParsePrecision(s string) (Precision, error) {
	switch p := Precision(s); p {
	case FP32, BF16, FP16:
		return p, nil
	case "":
		return FP32, nil
	}
	return "", fmt.Errorf("train: precision %q: want fp32, bf16 or fp16", s)
}

func (p Precision) dtype() dtypes.DType {
	switch p {
	case BF16:
		return dtypes.BFloat16
	case FP16:
		return dtypes.Float16
	}
	return dtypes.Float32
}

// Dynamic loss scaling for fp16 (as in PyTorch's GradScaler): the loss is
// multiplied by the scale before the backward pass; a step whose gradients
// overflow is skipped and halves the scale; GrowthInterval good steps in a
// row double it. All of it happens on the device: no host sync decides a
// skip.
const (
	InitLossScale  = 65536
	GrowthInterval = 2000
)

// State is the trainable state, resident on the backend's device between
// steps: parameters, optimizer moments (M: Adam's first moment or SGD's
// velocity; V: Adam's second moment), the loss-scaling state and, with
// gradient accumulation, the gradient sums.
type State struct {
	Params, M, V []*tensors.Tensor
	// Amp is float32 [2]: (loss scale, good steps since the last change).
	Amp *tensors.Tensor
	// Acc are the gradient sums of the micro-batches since the last
	// update, and AccOK is float32 [] (1 while all of them were finite).
	Acc   []*tensors.Tensor
	AccOK *tensors.Tensor
	Step  int64 // optimizer steps taken
	Micro int   // micro-batches accumulated towards the next step
}

// StepOut is what one call of Step returns. Its tensors stay on the device:
// reading them (Value) synchronises with the step, so the loop hands them
// to a goroutine (see package guard) instead of reading them itself.
type StepOut struct {
	Step     int64
	LR       float64         // learning rate the step used
	Start    time.Time       // when the step was dispatched
	Applied  bool            // false for a micro-batch that only accumulated
	Loss     *tensors.Tensor // float32 scalar (unscaled)
	GradNorm *tensors.Tensor // float32 scalar, before clipping (this micro-batch's, when accumulating)
	// Finite is float32 scalar: 1 unless the loss, or (except in fp16,
	// where overflow is routine and handled by loss scaling) the gradients,
	// are NaN or Inf. The guard stops on 0.
	Finite *tensors.Tensor
	// ParamFinite is float32 [len(params)]: 1 where that parameter's
	// gradient is finite, to name the layer that went bad first.
	ParamFinite *tensors.Tensor
	// Skipped is float32 scalar: 1 when the update was skipped (non-finite
	// gradients, e.g. an fp16 overflow). Nil for accumulate-only calls.
	Skipped *tensors.Tensor
	// Index is this step's entry in the tensors above when one call ran
	// several steps (StepRowsN): Loss, GradNorm, Finite and Skipped are
	// then [N] and ParamFinite [N, len(params)], shared by the N StepOuts.
	// 0, with scalars, otherwise.
	Index int
}

// Value returns element Index of t, one of the StepOut's per-step tensors
// (Loss, GradNorm, Finite, Skipped), reading it from the device if needed.
// It panics if the read fails; see Read.
func (o StepOut) Value(t *tensors.Tensor) float32 {
	v, err := o.Read(t)
	if err != nil {
		panic(err)
	}
	return v
}

// Read is Value returning the error of a failed read: on a GPU the step
// runs after its call returns, and a failure on the device is reported
// when its outputs are read.
func (o StepOut) Read(t *tensors.Tensor) (float32, error) {
	var v float32
	err := tensors.ConstFlatData(t, func(f []float32) { v = f[o.Index] })
	return v, err
}

// ParamFiniteFlags returns the per-parameter finiteness flags of this step
// (1 finite), reading them from the device if needed.
func (o StepOut) ParamFiniteFlags() []float32 {
	var out []float32
	tensors.MustConstFlatData(o.ParamFinite, func(f []float32) {
		n := len(f)
		if o.ParamFinite.Rank() == 2 {
			n = o.ParamFinite.Shape().Dimensions[1]
		}
		out = append(out, f[o.Index*n:(o.Index+1)*n]...)
	})
	return out
}

// Stepper runs the compiled train step of a model.
type Stepper struct {
	backend   compute.Backend
	model     model.Model
	opt       Optimizer
	precision Precision
	accum     int
	exec      *Exec         // fused step (accum == 1)
	accExec   *Exec         // accumulate one micro-batch
	applyExec *Exec         // apply the accumulated update
	rowsExec  *Exec         // fused step over a device-resident dataset
	rowsAcc   *Exec         // accumulate one micro-batch of it
	rowsNExec map[int]*Exec // StepRowsN, by number of steps
	seqExec   *Exec         // step over padded or packed sequences
	seqNExec  map[int]*Exec // StepSeqN, by number of steps
	seqAcc    *Exec         // accumulate one micro-batch of sequences
	seqApply  *Exec         // apply their accumulated update
	seqPred   *Exec
	pred      *Exec
	nParams   int
}

// NewStepper returns a Stepper for m on backend, in fp32 without gradient
// accumulation; the graphs compile on first use.
func NewStepper(backend compute.Backend, m model.Model, opt Optimizer) *Stepper {
	if opt.Name == "" {
		opt.Name = "adam"
	}
	s := &Stepper{backend: backend, model: m, opt: opt, precision: FP32, accum: 1, nParams: len(m.Params())}
	s.exec = MustNewExec(backend, s.fusedGraph).WithName("train_step")
	s.accExec = MustNewExec(backend, s.accumulateGraph).WithName("accumulate")
	s.pred = MustNewExec(backend, s.predictGraph).WithName("predict")
	return s
}

// WithPrecision sets the compute precision (before the first step).
func (s *Stepper) WithPrecision(p Precision) *Stepper {
	s.precision = p
	return s
}

// WithAccumulation makes every k calls of Step one optimizer update on the
// mean gradient of k micro-batches (before the first step).
func (s *Stepper) WithAccumulation(k int) *Stepper {
	s.accum = max(1, k)
	return s
}

// Precision returns the compute precision.
func (s *Stepper) Precision() Precision { return s.precision }

// NewState initialises parameters from seed, zero optimizer state, the
// initial loss scale and, with accumulation, zero gradient sums.
func (s *Stepper) NewState(seed uint64) *State {
	st := &State{Params: s.model.Init(seed)}
	for _, p := range st.Params {
		st.M = append(st.M, tensors.FromShape(p.Shape()))
		st.V = append(st.V, tensors.FromShape(p.Shape()))
	}
	s.fillAux(st)
	return st
}

// fillAux adds the loss-scale and accumulation state a State lacks.
func (s *Stepper) fillAux(st *State) {
	if st.Amp == nil {
		st.Amp = tensors.FromFlatDataAndDimensions([]float32{InitLossScale, 0}, 2)
	}
	if s.accum > 1 && st.Acc == nil {
		for _, p := range st.Params {
			st.Acc = append(st.Acc, tensors.FromShape(p.Shape()))
		}
		st.AccOK = tensors.FromScalar(float32(1))
	}
}

// forwardBackward computes the loss and the unscaled float32 gradients of
// the master weights ps, running the model in the compute precision.
func (s *Stepper) forwardBackward(ps []*Node, amp, mean, std, x, y *Node) (loss *Node, grads []*Node, lossOK, gradsOK, gnorm, perParam *Node) {
	return s.backward(ps, amp, func(cps []*Node, cmean, cstd, cx *Node) *Node {
		return model.CrossEntropy(ConvertDType(s.model.Forward(cps, cmean, cstd, cx), dtypes.Float32), y)
	}, mean, std, x)
}

// backward casts the master weights, normalisation and input to the compute
// precision, evaluates lossOf on them (a float32 scalar), and returns the
// loss and the unscaled float32 gradients with their finiteness.
func (s *Stepper) backward(ps []*Node, amp *Node, lossOf func(cps []*Node, cmean, cstd, cx *Node) *Node, mean, std, x *Node) (loss *Node, grads []*Node, lossOK, gradsOK, gnorm, perParam *Node) {
	dt := s.precision.dtype()
	cps, cmean, cstd, cx := ps, mean, std, x
	if dt != dtypes.Float32 {
		cps = make([]*Node, len(ps))
		for i, p := range ps {
			cps[i] = ConvertDType(p, dt)
		}
		cmean, cstd, cx = ConvertDType(mean, dt), ConvertDType(std, dt), ConvertDType(x, dt)
	}
	loss = lossOf(cps, cmean, cstd, cx)
	if s.precision == FP16 {
		scale := Reshape(Slice(amp, AxisElem(0)))
		grads = Gradient(Mul(loss, scale), ps...)
		inv := Inverse(scale)
		for i := range grads {
			grads[i] = Mul(grads[i], inv)
		}
	} else {
		grads = Gradient(loss, ps...)
	}
	gradsOK, gnorm, perParam = gradStats(grads)
	return loss, grads, IsFinite(loss), gradsOK, gnorm, perParam
}

// gradStats returns whether all of grads are finite, their global norm and
// the per-parameter finiteness (float32 [len(grads)], 1 finite).
func gradStats(grads []*Node) (ok, gnorm, perParam *Node) {
	var sq *Node
	pp := make([]*Node, len(grads))
	for i, gr := range grads {
		t := ReduceAllSum(Square(gr))
		pp[i] = ConvertDType(IsFinite(t), dtypes.Float32)
		if sq == nil {
			sq = t
		} else {
			sq = Add(sq, t)
		}
	}
	gnorm = Sqrt(sq)
	return IsFinite(gnorm), gnorm, Stack(pp, 0)
}

// guardFlag is what StepOut.Finite reports.
func (s *Stepper) guardFlag(lossOK, gradsOK *Node) *Node {
	if s.precision == FP16 {
		return ConvertDType(lossOK, dtypes.Float32)
	}
	return ConvertDType(LogicalAnd(lossOK, gradsOK), dtypes.Float32)
}

// update applies clipping (by gnorm, the gradients' global norm, see
// gradStats) and the optimizer to grads when ok, and advances the loss
// scale. It returns new params, m, v and the new amp state.
func (s *Stepper) update(ps, ms, vs, grads []*Node, gnorm, hyper, amp, ok *Node) (np, nm, nv []*Node, namp *Node) {
	g := hyper.Graph()
	scale := Const(g, float32(1))
	if s.opt.ClipNorm > 0 {
		scale = Min(scale, Div(Const(g, float32(s.opt.ClipNorm)), Add(gnorm, Const(g, float32(1e-6)))))
	}
	lr := Reshape(Slice(hyper, AxisElem(0)))
	bc1 := Reshape(Slice(hyper, AxisElem(1)))
	bc2 := Reshape(Slice(hyper, AxisElem(2)))
	stepSize, invSqrtBC2 := Div(lr, bc1), Rsqrt(bc2)
	np, nm, nv = make([]*Node, len(ps)), make([]*Node, len(ps)), make([]*Node, len(ps))
	for i := range ps {
		gr := Mul(grads[i], scale)
		var p, m, v *Node
		if s.opt.sgd() {
			mu := float32(s.opt.Momentum)
			m = Add(MulScalar(ms[i], mu), gr)
			step := m
			if s.opt.Nesterov {
				step = Add(gr, MulScalar(m, mu))
			}
			if s.opt.WeightDecay > 0 {
				step = Add(step, MulScalar(ps[i], float32(s.opt.WeightDecay)))
			}
			p, v = Sub(ps[i], Mul(step, lr)), vs[i]
		} else {
			b1, b2 := float32(s.opt.Beta1), float32(s.opt.Beta2)
			m = Add(MulScalar(ms[i], b1), MulScalar(gr, 1-b1))
			v = Add(MulScalar(vs[i], b2), MulScalar(Square(gr), 1-b2))
			// PyTorch's form: lr/(1-β1^t) · m / (√v/√(1-β2^t) + ε), the
			// bias corrections folded into two scalars.
			upd := Div(m, AddScalar(Mul(Sqrt(v), invSqrtBC2), s.opt.Eps))
			if s.opt.WeightDecay > 0 {
				// Decoupled (AdamW): lr·wd·p, not scaled by the correction.
				p = Sub(ps[i], Add(Mul(upd, stepSize), Mul(MulScalar(ps[i], float32(s.opt.WeightDecay)), lr)))
			} else {
				p = Sub(ps[i], Mul(upd, stepSize))
			}
		}
		// A skipped step changes nothing: the state stays the last good one.
		np[i], nm[i], nv[i] = Where(ok, p, ps[i]), Where(ok, m, ms[i]), Where(ok, v, vs[i])
	}
	namp = amp
	if s.precision == FP16 {
		ls, good := Reshape(Slice(amp, AxisElem(0))), Reshape(Slice(amp, AxisElem(1)))
		good1 := AddScalar(good, 1)
		grow := GreaterOrEqual(good1, Const(g, float32(GrowthInterval)))
		newScale := Where(ok, Where(grow, MulScalar(ls, 2), ls), MulScalar(ls, 0.5))
		newGood := Where(ok, Where(grow, ZerosLike(good), good1), ZerosLike(good))
		namp = Concatenate([]*Node{Reshape(newScale, 1), Reshape(newGood, 1)}, 0)
	}
	return np, nm, nv, namp
}

// fusedGraph inputs: params, m, v (n each), hyper [3] = (lr, 1-β1^t,
// 1-β2^t), amp, mean, std, x, y. Outputs: params, m, v, amp, loss, grad
// norm, finite, per-parameter finite, skipped.
func (s *Stepper) fusedGraph(in []*Node) []*Node {
	n := s.nParams
	ps, ms, vs := in[:n], in[n:2*n], in[2*n:3*n]
	hyper, amp, mean, std, x, y := in[3*n], in[3*n+1], in[3*n+2], in[3*n+3], in[3*n+4], in[3*n+5]
	loss, grads, lossOK, gradsOK, gnorm, perParam := s.forwardBackward(ps, amp, mean, std, x, y)
	return s.applyTail(ps, ms, vs, grads, hyper, amp, loss, lossOK, gradsOK, gnorm, perParam)
}

// applyTail updates the state with grads (when they and the loss are
// finite) and returns fusedGraph's outputs.
func (s *Stepper) applyTail(ps, ms, vs, grads []*Node, hyper, amp, loss, lossOK, gradsOK, gnorm, perParam *Node) []*Node {
	n := s.nParams
	ok := LogicalAnd(lossOK, gradsOK)
	np, nm, nv, namp := s.update(ps, ms, vs, grads, gnorm, hyper, amp, ok)
	outs := append(append(append(make([]*Node, 0, 3*n+6), np...), nm...), nv...)
	return append(outs, namp, loss, gnorm, s.guardFlag(lossOK, gradsOK), perParam, ConvertDType(LogicalNot(ok), dtypes.Float32))
}

// accumulateGraph inputs: params, acc (n each), accOK, amp, mean, std, x,
// y. Outputs: acc, accOK, loss, grad norm, finite, per-parameter finite.
func (s *Stepper) accumulateGraph(in []*Node) []*Node {
	n := s.nParams
	ps, acc := in[:n], in[n:2*n]
	accOK, amp, mean, std, x, y := in[2*n], in[2*n+1], in[2*n+2], in[2*n+3], in[2*n+4], in[2*n+5]
	loss, grads, lossOK, gradsOK, gnorm, perParam := s.forwardBackward(ps, amp, mean, std, x, y)
	return s.accumulateTail(acc, accOK, grads, loss, lossOK, gradsOK, gnorm, perParam)
}

// accumulateTail adds a micro-batch's gradients to the sums acc (when they
// and the loss are finite) and returns accumulateGraph's outputs.
func (s *Stepper) accumulateTail(acc []*Node, accOK *Node, grads []*Node, loss, lossOK, gradsOK, gnorm, perParam *Node) []*Node {
	n := s.nParams
	ok := LogicalAnd(lossOK, gradsOK)
	outs := make([]*Node, 0, n+5)
	for i := range acc {
		// Keep the sums finite: a bad micro-batch already voids the step.
		outs = append(outs, Add(acc[i], Where(ok, grads[i], ZerosLike(grads[i]))))
	}
	nok := Mul(accOK, ConvertDType(ok, dtypes.Float32))
	return append(outs, nok, loss, gnorm, s.guardFlag(lossOK, gradsOK), perParam)
}

// applyGraph inputs: params, m, v, acc (n each), accOK, hyper, amp.
// Outputs: params, m, v, zeroed acc, accOK reset, amp, grad norm, skipped.
// The gradient is the sums times scale: 1/k for the mean of k micro-batches'
// mean losses, 1 when each micro-batch's loss was already divided by the
// whole step's count (sequences).
func (s *Stepper) applyGraph(scale float32) func(in []*Node) []*Node {
	return func(in []*Node) []*Node { return s.applyAccumulated(in, scale) }
}

func (s *Stepper) applyAccumulated(in []*Node, scale float32) []*Node {
	n := s.nParams
	ps, ms, vs, acc := in[:n], in[n:2*n], in[2*n:3*n], in[3*n:4*n]
	accOK, hyper, amp := in[4*n], in[4*n+1], in[4*n+2]
	grads := make([]*Node, n)
	for i := range acc {
		grads[i] = acc[i]
		if scale != 1 {
			grads[i] = MulScalar(acc[i], scale)
		}
	}
	ok := GreaterOrEqual(accOK, ScalarOne(accOK.Graph(), dtypes.Float32))
	_, gnorm, _ := gradStats(grads)
	np, nm, nv, namp := s.update(ps, ms, vs, grads, gnorm, hyper, amp, ok)
	outs := append(append(append(make([]*Node, 0, 4*n+4), np...), nm...), nv...)
	for i := range acc {
		outs = append(outs, ZerosLike(acc[i]))
	}
	return append(outs, OnesLike(accOK), namp, gnorm, ConvertDType(LogicalNot(ok), dtypes.Float32))
}

func (s *Stepper) predictGraph(in []*Node) *Node {
	n := s.nParams
	return s.model.Forward(in[:n], in[n], in[n+1], in[n+2])
}

func (s *Stepper) donate(args []any, step int64, ts ...*tensors.Tensor) ([]any, error) {
	return s.donateOn(args, step, 0, ts...)
}

func deviceNum(d int) compute.DeviceNum { return compute.DeviceNum(d) }

// DeviceNum converts a device index for the backend.
func DeviceNum(d int) compute.DeviceNum { return compute.DeviceNum(d) }

// stagesInputs reports whether loaders should copy batches to the device
// ahead of the step: on XLA (GPUs), not on GoMLX's Go backend, which runs
// on host memory (its Name is "Go Backend", XLA's "xla").
func (s *Stepper) stagesInputs() bool { return s.backend.Name() == "xla" }

// Backend returns the stepper's backend.
func (s *Stepper) Backend() compute.Backend { return s.backend }

func (s *Stepper) donateOn(args []any, step int64, dev compute.DeviceNum, ts ...*tensors.Tensor) ([]any, error) {
	for _, t := range ts {
		d, err := DonateTensorBuffer(t, s.backend, dev)
		if err != nil {
			return nil, fmt.Errorf("train: step %d: donating state: %w", step, err)
		}
		args = append(args, d)
	}
	return args, nil
}

func (s *Stepper) hyper(st *State, lr float64) *tensors.Tensor {
	return tensors.FromFlatDataAndDimensions(s.appendHyper(nil, st.Step, lr), 3)
}

// appendHyper appends the hyperparameters of step (0-based) at learning
// rate lr to h: lr and Adam's bias corrections 1-β1^t, 1-β2^t for t =
// step+1.
func (s *Stepper) appendHyper(h []float32, step int64, lr float64) []float32 {
	t := float64(step + 1)
	return append(h, float32(lr), float32(1-math.Pow(s.opt.Beta1, t)), float32(1-math.Pow(s.opt.Beta2, t)))
}

// Step runs one training step on batch (x, y) with learning rate lr,
// replacing st's tensors by the updated ones (their buffers are donated).
// With accumulation over k micro-batches, k calls make one update: the
// first k-1 only accumulate (StepOut.Applied false). It does not wait for
// the device.
func (s *Stepper) Step(st *State, lr float64, mean, std, x, y *tensors.Tensor) (StepOut, error) {
	start := time.Now()
	s.fillAux(st)
	if s.accum == 1 {
		return s.runFused(s.exec, st, lr, start, mean, std, x, y)
	}
	return s.accumulate(st, lr, start, s.accExec, s.meanApply(), mean, std, x, y)
}

// meanApply returns the Exec that applies the mean of k micro-batches'
// gradients (their losses each a micro-batch mean).
func (s *Stepper) meanApply() *Exec {
	if s.applyExec == nil {
		s.applyExec = MustNewExec(s.backend, s.applyGraph(1/float32(s.accum))).WithName("apply")
	}
	return s.applyExec
}

// accumulate runs one micro-batch: acc, an accumulate graph (inputs params,
// acc, accOK, amp, then tail; outputs as accumulateGraph), adds its
// gradients to st's sums, and after the k-th micro-batch apply (an
// applyGraph) updates st with them.
func (s *Stepper) accumulate(st *State, lr float64, start time.Time, acc, apply *Exec, tail ...any) (StepOut, error) {
	n := s.nParams
	args := make([]any, 0, 2*n+2+len(tail))
	for _, p := range st.Params {
		args = append(args, p)
	}
	args, err := s.donate(args, st.Step, append(append([]*tensors.Tensor{}, st.Acc...), st.AccOK)...)
	if err != nil {
		return StepOut{}, err
	}
	args = append(append(args, st.Amp), tail...)
	outs, err := acc.Call(args...)
	if err != nil {
		return StepOut{}, fmt.Errorf("train: step %d micro-batch %d: %w", st.Step, st.Micro, err)
	}
	copy(st.Acc, outs[:n])
	st.AccOK = outs[n]
	out := StepOut{Step: st.Step, LR: lr, Start: start, Loss: outs[n+1], GradNorm: outs[n+2], Finite: outs[n+3], ParamFinite: outs[n+4]}
	st.Micro++
	if st.Micro < s.accum {
		return out, nil
	}
	// Apply the accumulated gradient.
	args, err = s.donate(make([]any, 0, 4*n+3), st.Step, concat(st.Params, st.M, st.V, st.Acc, []*tensors.Tensor{st.AccOK})...)
	if err != nil {
		return StepOut{}, err
	}
	ampArg, err := s.donate(nil, st.Step, st.Amp)
	if err != nil {
		return StepOut{}, err
	}
	args = append(args, s.hyper(st, lr), ampArg[0])
	outs, err = apply.Call(args...)
	if err != nil {
		return StepOut{}, fmt.Errorf("train: step %d: apply: %w", st.Step, err)
	}
	copy(st.Params, outs[:n])
	copy(st.M, outs[n:2*n])
	copy(st.V, outs[2*n:3*n])
	copy(st.Acc, outs[3*n:4*n])
	st.AccOK, st.Amp = outs[4*n], outs[4*n+1]
	out.Applied, out.Skipped = true, outs[4*n+3]
	st.Micro = 0
	st.Step++
	return out, nil
}

// stateArgs donates st's state on device dev and returns the leading
// arguments of every fused step graph: params, m, v, hyper, amp.
func (s *Stepper) stateArgs(st *State, lr float64, dev compute.DeviceNum, extra int) ([]any, error) {
	return s.stateArgsWith(st, s.hyper(st, lr), dev, extra)
}

// stateArgsWith is stateArgs with the hyperparameter tensor given.
func (s *Stepper) stateArgsWith(st *State, hyper *tensors.Tensor, dev compute.DeviceNum, extra int) ([]any, error) {
	args, err := s.donateOn(make([]any, 0, 3*s.nParams+2+extra), st.Step, dev, concat(st.Params, st.M, st.V, []*tensors.Tensor{st.Amp})...)
	if err != nil {
		return nil, err
	}
	amp := args[len(args)-1] // donated last; the graphs take it after hyper
	return append(args[:len(args)-1], hyper, amp), nil
}

// unpack moves a fused step's outputs (params, m, v, amp, loss, grad norm,
// finite, per-parameter finite, skipped) into st and returns the StepOut.
func (s *Stepper) unpack(st *State, outs []*tensors.Tensor, lr float64, start time.Time) StepOut {
	n := s.setState(st, outs)
	out := StepOut{Step: st.Step, LR: lr, Start: start, Applied: true, Loss: outs[3*n+1], GradNorm: outs[3*n+2],
		Finite: outs[3*n+3], ParamFinite: outs[3*n+4], Skipped: outs[3*n+5]}
	st.Step++
	return out
}

// setState moves a fused step's leading outputs (params, m, v, amp) into
// st and returns the number of parameters.
func (s *Stepper) setState(st *State, outs []*tensors.Tensor) int {
	n := s.nParams
	copy(st.Params, outs[:n])
	copy(st.M, outs[n:2*n])
	copy(st.V, outs[2*n:3*n])
	st.Amp = outs[3*n]
	return n
}

// runFused runs one of the fused step graphs (plain, rows, sequences) on
// device 0: state arguments, then tail.
func (s *Stepper) runFused(exec *Exec, st *State, lr float64, start time.Time, tail ...any) (StepOut, error) {
	args, err := s.stateArgs(st, lr, 0, len(tail))
	if err != nil {
		return StepOut{}, err
	}
	outs, err := exec.Call(append(args, tail...)...)
	if err != nil {
		return StepOut{}, fmt.Errorf("train: step %d: %w", st.Step, err)
	}
	return s.unpack(st, outs, lr, start), nil
}

func concat(groups ...[]*tensors.Tensor) []*tensors.Tensor {
	var out []*tensors.Tensor
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// Predict returns the logits [B, C] of x, computed in float32 from the
// master weights.
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

// DeviceData is a dataset resident on the device: a row-major feature
// matrix [rows, F] and labels [rows], from batch.Windows.Flat, copied once.
type DeviceData struct {
	Features, Labels *tensors.Tensor
	Window           int
}

// NewDeviceData copies the flattened dataset to device 0 of the stepper's
// backend.
func (s *Stepper) NewDeviceData(features []float32, labels []int32, f, window int) (*DeviceData, error) {
	ft := tensors.FromFlatDataAndDimensions(features, len(features)/f, f)
	lt := tensors.FromFlatDataAndDimensions(labels, len(labels))
	for _, t := range []*tensors.Tensor{ft, lt} {
		if err := t.MaterializeOnDevice(s.backend, false, 0); err != nil {
			return nil, fmt.Errorf("train: copying the dataset to the device: %w", err)
		}
		t.FinalizeLocal()
	}
	return &DeviceData{Features: ft, Labels: lt, Window: window}, nil
}

// rowsGraph is fusedGraph with x and y gathered on the device: its last
// inputs are the dataset's features [N, F], labels [N] and the samples'
// last rows [B].
func (s *Stepper) rowsGraph(window int) func(in []*Node) []*Node {
	return func(in []*Node) []*Node {
		k := len(in)
		x, y := gatherWindows(in[k-3], in[k-2], in[k-1], window)
		return s.fusedGraph(append(in[:k-3:k-3], x, y))
	}
}

// rowsAccumulateGraph is accumulateGraph with x and y gathered on the
// device, as rowsGraph.
func (s *Stepper) rowsAccumulateGraph(window int) func(in []*Node) []*Node {
	return func(in []*Node) []*Node {
		k := len(in)
		x, y := gatherWindows(in[k-3], in[k-2], in[k-1], window)
		return s.accumulateGraph(append(in[:k-3:k-3], x, y))
	}
}

// gatherWindows returns the batch of windows ending at rows (int32 [B]) of
// the dataset's features [N, F] as x [B, window*F], and their labels y [B].
func gatherWindows(feats, labels, rows *Node, window int) (x, y *Node) {
	b, f := rows.Shape().Dimensions[0], feats.Shape().Dimensions[1]
	// Row ids of each window, oldest first: rows - (W-1) + [0..W).
	offs := AddScalar(Iota(rows.Graph(), shapes.Make(dtypes.Int32, 1, window), 1), float64(1-window))
	idx := Add(Reshape(rows, b, 1), offs)
	x = Reshape(Gather(feats, Reshape(idx, b, window, 1)), b, window*f)
	y = Reshape(Gather(Reshape(labels, labels.Shape().Dimensions[0], 1), Reshape(rows, b, 1)), b)
	return x, y
}

// rowsGraphN chains n rows steps in one graph (unrolled): its inputs are
// fusedGraph's state (params, m, v), hyper [n, 3], amp, mean, std, the
// dataset's features and labels, then n row-id vectors [B]; its outputs the
// final state (params, m, v, amp), then each per-step output stacked over
// the steps: loss, grad norm, finite, skipped [n] and per-parameter finite
// [n, params].
func (s *Stepper) rowsGraphN(window, steps int) func(in []*Node) []*Node {
	return s.chainSteps(s.rowsGraph(window), steps, 4, 1)
}

// chainSteps chains steps calls of step, a fused step graph (inputs:
// params, m, v, hyper [3], amp, then shared inputs every step reads, then
// per inputs of the step's own; outputs as fusedGraph's). The chained
// graph's inputs are params, m, v, hyper [steps, 3], amp, the shared
// inputs, then each step's per inputs in turn; its outputs are as
// rowsGraphN describes.
func (s *Stepper) chainSteps(step func(in []*Node) []*Node, steps, shared, per int) func(in []*Node) []*Node {
	return func(in []*Node) []*Node {
		n := s.nParams
		state := in[:3*n]
		hyper, amp := in[3*n], in[3*n+1]
		common := in[3*n+2 : 3*n+2+shared]
		own := in[3*n+2+shared:]
		var loss, gnorm, finite, perParam, skipped []*Node
		for i := range steps {
			h := Reshape(Slice(hyper, AxisElem(i)), 3)
			args := append(append(append(make([]*Node, 0, 3*n+2+shared+per), state...), h, amp), common...)
			outs := step(append(args, own[i*per:(i+1)*per]...))
			state, amp = outs[:3*n], outs[3*n]
			loss, gnorm, finite = append(loss, outs[3*n+1]), append(gnorm, outs[3*n+2]), append(finite, outs[3*n+3])
			perParam, skipped = append(perParam, outs[3*n+4]), append(skipped, outs[3*n+5])
		}
		return append(append(make([]*Node, 0, 3*n+6), state...), amp,
			Stack(loss, 0), Stack(gnorm, 0), Stack(finite, 0), Stack(perParam, 0), Stack(skipped, 0))
	}
}

// hyperN returns the hyperparameters [k, 3] of the k steps from st.Step
// on at learning rates lrs.
func (s *Stepper) hyperN(st *State, lrs []float64) *tensors.Tensor {
	h := make([]float32, 0, 3*len(lrs))
	for i, lr := range lrs {
		h = s.appendHyper(h, st.Step+int64(i), lr)
	}
	return tensors.FromFlatDataAndDimensions(h, len(lrs), 3)
}

// unpackN moves a chained call's outputs (see rowsGraphN) into st, which
// advances len(lrs) steps, and returns one StepOut per step.
func (s *Stepper) unpackN(st *State, outs []*tensors.Tensor, lrs []float64, start time.Time) []StepOut {
	n := s.setState(st, outs)
	res := make([]StepOut, len(lrs))
	for i := range res {
		res[i] = StepOut{Step: st.Step + int64(i), LR: lrs[i], Start: start, Applied: true, Index: i,
			Loss: outs[3*n+1], GradNorm: outs[3*n+2], Finite: outs[3*n+3], ParamFinite: outs[3*n+4], Skipped: outs[3*n+5]}
	}
	st.Step += int64(len(lrs))
	return res
}

// StepRowsN runs len(lrs) consecutive StepRows in one call of one compiled
// graph, the steps unrolled: step i uses learning rate lrs[i] and the
// samples ending at rows[i]. It returns one StepOut per step (sharing
// stacked tensors, see StepOut.Index); the state after the last step is in
// st, as after as many StepRows calls, which it equals. A call costs the
// host about what one StepRows call costs, so small models that are bound
// by the host's per-call work (launch, buffers, synchronisation) run up to
// len(lrs) times faster; each distinct len(lrs) compiles once.
func (s *Stepper) StepRowsN(st *State, lrs []float64, mean, std *tensors.Tensor, data *DeviceData, rows []*tensors.Tensor) ([]StepOut, error) {
	k := len(lrs)
	if k == 0 || len(rows) != k {
		return nil, fmt.Errorf("train: StepRowsN: %d learning rates and %d row sets, want the same number, at least 1", k, len(rows))
	}
	if s.accum != 1 {
		return nil, fmt.Errorf("train: StepRowsN does not support gradient accumulation")
	}
	tail := append(make([]any, 0, 4+k), mean, std, data.Features, data.Labels)
	for _, r := range rows {
		tail = append(tail, r)
	}
	return s.runN(&s.rowsNExec, "train_steps", "steps", func() func([]*Node) []*Node { return s.rowsGraphN(data.Window, k) }, st, lrs, tail)
}

// runN runs len(lrs) chained steps of st (see chainSteps) in one call of
// the Exec that cache holds for that number of steps, built on first use
// from graph and named name_k: the state arguments, hyperN's, then tail.
// It moves the outputs into st and returns one StepOut per step (unpackN);
// what names the steps in an error.
func (s *Stepper) runN(cache *map[int]*Exec, name, what string, graph func() func([]*Node) []*Node, st *State, lrs []float64, tail []any) ([]StepOut, error) {
	k := len(lrs)
	start := time.Now()
	s.fillAux(st)
	if *cache == nil {
		*cache = map[int]*Exec{}
	}
	exec := (*cache)[k]
	if exec == nil {
		exec = MustNewExec(s.backend, graph()).WithName(fmt.Sprintf("%s_%d", name, k))
		(*cache)[k] = exec
	}
	args, err := s.stateArgsWith(st, s.hyperN(st, lrs), 0, len(tail))
	if err != nil {
		return nil, err
	}
	outs, err := exec.Call(append(args, tail...)...)
	if err != nil {
		return nil, fmt.Errorf("train: %s %d-%d: %w", what, st.Step, st.Step+int64(k)-1, err)
	}
	return s.unpackN(st, outs, lrs, start), nil
}

// StepRows is Step for a dataset resident on the device: rows (int32 [B],
// ideally already on the device) names each sample's last row, and the
// windows and labels are gathered inside the compiled step. With
// accumulation over k micro-batches, k calls make one update, as Step.
func (s *Stepper) StepRows(st *State, lr float64, mean, std *tensors.Tensor, data *DeviceData, rows *tensors.Tensor) (StepOut, error) {
	start := time.Now()
	s.fillAux(st)
	if s.accum != 1 {
		if s.rowsAcc == nil {
			s.rowsAcc = MustNewExec(s.backend, s.rowsAccumulateGraph(data.Window)).WithName("accumulate_rows")
		}
		return s.accumulate(st, lr, start, s.rowsAcc, s.meanApply(), mean, std, data.Features, data.Labels, rows)
	}
	if s.rowsExec == nil {
		s.rowsExec = MustNewExec(s.backend, s.rowsGraph(data.Window)).WithName("train_step_rows")
	}
	return s.runFused(s.rowsExec, st, lr, start, mean, std, data.Features, data.Labels, rows)
}
