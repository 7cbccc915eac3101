package train

import (
	"fmt"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/model"
)

// Sequence batches (padded or packed, see batch.SeqSampler): x float32
// [B, T, F], segments int32 [B, T] (0 = padding, k > 0 = the k-th sequence
// of its row) and labels int32 [B, T] (-1 where a position has no label).
// The loss is the mean cross-entropy over the labelled positions; the model
// must be a model.SequenceModel, which never lets a sequence see another.

func (s *Stepper) seqModel() (model.SequenceModel, error) {
	sm, ok := s.model.(model.SequenceModel)
	if !ok {
		return nil, fmt.Errorf("train: %s does not run over padded or packed sequences", s.model.Arch())
	}
	return sm, nil
}

// maskedCE is the mean cross-entropy of logits [B, T, C] over positions
// whose label [B, T] is >= 0 (0 when there are none).
func maskedCE(logits, labels *Node) *Node {
	return Div(maskedNLL(logits, labels), Max(labelledCount(labels), ScalarOne(logits.Graph(), logits.DType())))
}

// maskedNLL is the summed cross-entropy of logits [B, T, C] over positions
// whose label [B, T] is >= 0.
func maskedNLL(logits, labels *Node) *Node {
	c := logits.Shape().Dimensions[2]
	ls := LogSoftmax(logits, -1)
	mask := GreaterOrEqual(labels, ZerosLike(labels))
	safe := Where(mask, labels, ZerosLike(labels))
	nll := Neg(ReduceSum(Mul(ls, OneHot(safe, c, ls.DType())), -1))
	return ReduceAllSum(Mul(nll, ConvertDType(mask, ls.DType())))
}

// labelledCount is the number of labels [B, T] that are >= 0, in float32.
func labelledCount(labels *Node) *Node {
	return ReduceAllSum(ConvertDType(GreaterOrEqual(labels, ZerosLike(labels)), dtypes.Float32))
}

// seqGraph inputs: params, m, v, hyper, amp, mean, std, x, segments, labels.
func (s *Stepper) seqGraph(in []*Node) []*Node {
	n := s.nParams
	sm, _ := s.seqModel()
	ps, ms, vs := in[:n], in[n:2*n], in[2*n:3*n]
	hyper, amp, mean, std, x, seg, y := in[3*n], in[3*n+1], in[3*n+2], in[3*n+3], in[3*n+4], in[3*n+5], in[3*n+6]
	loss, grads, lossOK, gradsOK, gnorm, perParam := s.backward(ps, amp, func(cps []*Node, cmean, cstd, cx *Node) *Node {
		return maskedCE(ConvertDType(sm.ForwardSeq(cps, cmean, cstd, cx, seg), dtypes.Float32), y)
	}, mean, std, x)
	return s.applyTail(ps, ms, vs, grads, hyper, amp, loss, lossOK, gradsOK, gnorm, perParam)
}

// seqReplicasGraph is seqGraph on one device's batch, one of n (Strategy
// Replicas). Ranks' batches hold different numbers of labelled positions,
// so a mean of the devices' means would weigh positions unequally; instead
// the devices first all-reduce their counts (one scalar, before the
// forward pass), each divides its summed loss by the global count, and the
// sums over the devices of those losses and of their gradients are the
// global batch's mean loss and its gradients, as on one device. With
// n == 1 there is no collective.
func (s *Stepper) seqReplicasGraph(n int, o ParallelOptions) func(in []*Node) []*Node {
	return func(in []*Node) []*Node {
		np := s.nParams
		sm, _ := s.seqModel()
		ps, ms, vs := in[:np], in[np:2*np], in[2*np:3*np]
		hyper, amp, mean, std, x, seg, y := in[3*np], in[3*np+1], in[3*np+2], in[3*np+3], in[3*np+4], in[3*np+5], in[3*np+6]
		count := labelledCount(y)
		if n > 1 {
			count = x.Graph().Distributed().AllReduceOne(count, compute.ReduceOpSum)
		}
		denom := Max(count, ScalarOne(x.Graph(), dtypes.Float32))
		loss, grads, _, _, _, _ := s.backward(ps, amp, func(cps []*Node, cmean, cstd, cx *Node) *Node {
			return Div(maskedNLL(ConvertDType(sm.ForwardSeq(cps, cmean, cstd, cx, seg), dtypes.Float32), y), denom)
		}, mean, std, x)
		loss, grads = allReduce(loss, grads, n, o, 1)
		gradsOK, gnorm, perParam := gradStats(grads)
		return s.applyTail(ps, ms, vs, grads, hyper, amp, loss, IsFinite(loss), gradsOK, gnorm, perParam)
	}
}

// seqAccumulateGraph inputs: params, acc (n each), accOK, amp, mean, std,
// x, segments, labels, labelled (float32 scalar: the labelled positions of
// all the optimizer step's micro-batches). The micro-batch's summed loss is
// divided by labelled, so the sums of the micro-batches' gradients are the
// gradients of the whole step's mean loss, each position weighted equally
// however the micro-batches split them. Outputs as accumulateGraph, with
// the micro-batch's own mean loss.
func (s *Stepper) seqAccumulateGraph(in []*Node) []*Node {
	n := s.nParams
	sm, _ := s.seqModel()
	ps, acc := in[:n], in[n:2*n]
	accOK, amp, mean, std, x, seg, y, labelled := in[2*n], in[2*n+1], in[2*n+2], in[2*n+3], in[2*n+4], in[2*n+5], in[2*n+6], in[2*n+7]
	denom := Max(labelled, ScalarOne(x.Graph(), dtypes.Float32))
	part, grads, lossOK, gradsOK, gnorm, perParam := s.backward(ps, amp, func(cps []*Node, cmean, cstd, cx *Node) *Node {
		return Div(maskedNLL(ConvertDType(sm.ForwardSeq(cps, cmean, cstd, cx, seg), dtypes.Float32), y), denom)
	}, mean, std, x)
	loss := Div(Mul(part, denom), Max(labelledCount(y), ScalarOne(x.Graph(), dtypes.Float32)))
	return s.accumulateTail(acc, accOK, grads, loss, lossOK, gradsOK, gnorm, perParam)
}

// StepSeqMicro runs one micro-batch of an accumulated optimizer step (see
// WithAccumulation) on a sequence batch: labelled is the number of
// labelled positions of all the step's micro-batches (their
// batch.BatchStats.Labelled), by which the micro-batch's summed loss is
// divided, so that after the k-th call the update follows the gradient of
// the mean loss over all of them, as one batch holding them all would.
// The first k-1 calls only accumulate (StepOut.Applied false); each
// StepOut's loss is its micro-batch's own mean. SeqRunner.Accumulate
// counts labelled for the caller.
func (s *Stepper) StepSeqMicro(st *State, lr float64, mean, std, x, seg, y *tensors.Tensor, labelled int) (StepOut, error) {
	if _, err := s.seqModel(); err != nil {
		return StepOut{}, err
	}
	if s.accum == 1 {
		return StepOut{}, fmt.Errorf("train: StepSeqMicro without gradient accumulation (use StepSeq)")
	}
	start := time.Now()
	s.fillAux(st)
	if s.seqAcc == nil {
		s.seqAcc = MustNewExec(s.backend, s.seqAccumulateGraph).WithName("accumulate_seq")
		s.seqApply = MustNewExec(s.backend, s.applyGraph(1)).WithName("apply_seq")
	}
	return s.accumulate(st, lr, start, s.seqAcc, s.seqApply, mean, std, x, seg, y, tensors.FromScalar(float32(labelled)))
}

// StepSeq runs one optimizer step on a padded or packed sequence batch.
// With gradient accumulation use StepSeqMicro (or SeqRunner.Accumulate),
// which need the step's labelled count.
func (s *Stepper) StepSeq(st *State, lr float64, mean, std, x, seg, y *tensors.Tensor) (StepOut, error) {
	if _, err := s.seqModel(); err != nil {
		return StepOut{}, err
	}
	if s.accum != 1 {
		return StepOut{}, fmt.Errorf("train: StepSeq with gradient accumulation over %d micro-batches: use StepSeqMicro or SeqRunner.Accumulate, which weigh the micro-batches by their labelled positions", s.accum)
	}
	start := time.Now()
	s.fillAux(st)
	if s.seqExec == nil {
		s.seqExec = MustNewExec(s.backend, s.seqGraph).WithName("train_step_seq")
	}
	return s.runFused(s.seqExec, st, lr, start, mean, std, x, seg, y)
}

// StepSeqN runs len(lrs) consecutive StepSeq in one call of one compiled
// graph, the steps unrolled, as StepRowsN does for windows: step i uses
// learning rate lrs[i] and the batch x[i], seg[i], y[i] (one shape for
// all of them). It returns one StepOut per step (sharing stacked tensors,
// see StepOut.Index); the state after the last step equals that after as
// many StepSeq calls. Each distinct len(lrs) compiles once.
func (s *Stepper) StepSeqN(st *State, lrs []float64, mean, std *tensors.Tensor, x, seg, y []*tensors.Tensor) ([]StepOut, error) {
	k := len(lrs)
	if k == 0 || len(x) != k || len(seg) != k || len(y) != k {
		return nil, fmt.Errorf("train: StepSeqN: %d learning rates and %d/%d/%d batch tensors, want the same number, at least 1", k, len(x), len(seg), len(y))
	}
	if _, err := s.seqModel(); err != nil {
		return nil, err
	}
	if s.accum != 1 {
		return nil, fmt.Errorf("train: StepSeqN does not support gradient accumulation")
	}
	tail := append(make([]any, 0, 2+3*k), mean, std)
	for i := range k {
		tail = append(tail, x[i], seg[i], y[i])
	}
	return s.runN(&s.seqNExec, "train_steps_seq", "sequence steps", func() func([]*Node) []*Node { return s.chainSteps(s.seqGraph, k, 2, 3) }, st, lrs, tail)
}

// PredictSeq returns the logits [B, T, C] of a sequence batch.
func (s *Stepper) PredictSeq(st *State, mean, std, x, seg *tensors.Tensor) (*tensors.Tensor, error) {
	if _, err := s.seqModel(); err != nil {
		return nil, err
	}
	n := s.nParams
	if s.seqPred == nil {
		s.seqPred = MustNewExec(s.backend, func(in []*Node) *Node {
			sm, _ := s.seqModel()
			return sm.ForwardSeq(in[:n], in[n], in[n+1], in[n+2], in[n+3])
		}).WithName("predict_seq")
	}
	args := make([]any, 0, n+4)
	for _, p := range st.Params {
		args = append(args, p)
	}
	args = append(args, mean, std, x, seg)
	out, err := s.seqPred.Call1(args...)
	if err != nil {
		return nil, fmt.Errorf("train: predict: %w", err)
	}
	return out, nil
}
