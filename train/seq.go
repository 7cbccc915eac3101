package train

import (
	"fmt"
	"time"

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
	c := logits.Shape().Dimensions[2]
	ls := LogSoftmax(logits, -1)
	mask := GreaterOrEqual(labels, ZerosLike(labels))
	safe := Where(mask, labels, ZerosLike(labels))
	nll := Neg(ReduceSum(Mul(ls, OneHot(safe, c, ls.DType())), -1))
	m := ConvertDType(mask, ls.DType())
	return Div(ReduceAllSum(Mul(nll, m)), Max(ReduceAllSum(m), ScalarOne(ls.Graph(), ls.DType())))
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

// StepSeq runs one optimizer step on a padded or packed sequence batch.
func (s *Stepper) StepSeq(st *State, lr float64, mean, std, x, seg, y *tensors.Tensor) (StepOut, error) {
	if _, err := s.seqModel(); err != nil {
		return StepOut{}, err
	}
	if s.accum != 1 {
		return StepOut{}, fmt.Errorf("train: sequence batches with gradient accumulation are not supported yet")
	}
	start := time.Now()
	n := s.nParams
	s.fillAux(st)
	if s.seqExec == nil {
		s.seqExec = MustNewExec(s.backend, s.seqGraph).WithName("train_step_seq")
		s.seqPred = MustNewExec(s.backend, func(in []*Node) *Node {
			sm, _ := s.seqModel()
			return sm.ForwardSeq(in[:n], in[n], in[n+1], in[n+2], in[n+3])
		}).WithName("predict_seq")
	}
	return s.runFused(s.seqExec, st, lr, start, mean, std, x, seg, y)
}

// PredictSeq returns the logits [B, T, C] of a sequence batch.
func (s *Stepper) PredictSeq(st *State, mean, std, x, seg *tensors.Tensor) (*tensors.Tensor, error) {
	if s.seqPred == nil {
		return nil, fmt.Errorf("train: PredictSeq before the first StepSeq")
	}
	args := make([]any, 0, s.nParams+4)
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
