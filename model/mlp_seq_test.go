package model_test

import (
	"math"
	"math/rand/v2"
	"testing"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/model"
)

func TestMLPPacking(t *testing.T) {
	m, _ := model.NewMLP(3, 4, []int{8}, 3)
	packingParity(t, m, 4)
	on, err := model.NewMLPOn(3, 4, []int{3, 1}, []int{8}, 3)
	if err != nil {
		t.Fatal(err)
	}
	packingParity(t, on, 4)
}

// TestMLPForwardSeqIsForward: over one sequence (with padding inside it and
// after it), ForwardSeq's logits at each position equal Forward's over the
// window of the sequence's events ending there, the events before the
// sequence's start taken at the features' means.
func TestMLPForwardSeqIsForward(t *testing.T) {
	m, _ := model.NewMLP(4, 3, []int{6}, 3)
	forwardSeqIsForward(t, m, 4, 3)
}

// TestDeepLOBForwardSeqIsForward: the same for DeepLOB, whose ForwardSeq
// runs a window per position.
func TestDeepLOBForwardSeqIsForward(t *testing.T) {
	dl, err := model.NewDeepLOB(5, feature.Names, 3, model.DeepLOBConfig{Conv: 3, Inception: 2, Hidden: 4})
	if err != nil {
		t.Fatal(err)
	}
	forwardSeqIsForward(t, dl, 5, feature.Count)
}

func forwardSeqIsForward(t *testing.T, m interface {
	model.SequenceModel
	model.Model
}, w, f int) {
	t.Helper()
	be := newBackend(t)
	const tt = 10
	r := rand.New(rand.NewPCG(3, 4))
	mean, std := make([]float64, f), make([]float64, f)
	for j := range f {
		mean[j], std[j] = r.NormFloat64(), 0.5+r.Float64()
	}
	// Positions 0-3 and 5-7 are the sequence's 7 events; 4, 8 and 9 padding.
	seg := []int32{1, 1, 1, 1, 0, 1, 1, 1, 0, 0}
	x := make([]float64, tt*f)
	for i := range x {
		x[i] = mean[i%f] + std[i%f]*r.NormFloat64()
	}
	var events []int // positions of the sequence's events, in order
	for p, s := range seg {
		if s != 0 {
			events = append(events, p)
		}
	}
	win := make([]float64, len(events)*w*f)
	for e := range events {
		for i := range w { // window row i holds event e-(w-1)+i
			src := e - (w - 1) + i
			for j := range f {
				v := mean[j]
				if src >= 0 {
					v = x[events[src]*f+j]
				}
				win[(e*w+i)*f+j] = v
			}
		}
	}
	params := m.Init(5)
	n := len(params)
	outs, err := CallOnceN(be, func(in []*Node) []*Node {
		ps, mn, sd := in[:n], in[n], in[n+1]
		return []*Node{m.ForwardSeq(ps, mn, sd, in[n+2], in[n+3]), m.Forward(ps, mn, sd, in[n+4])}
	}, append(anys(params), f32(mean, f), f32(std, f), f32(x, 1, tt, f),
		tensors.FromFlatDataAndDimensions(seg, 1, tt), f32(win, len(events), w*f))...)
	if err != nil {
		t.Fatal(err)
	}
	seq, ref := tensors.MustCopyFlatData[float32](outs[0]), tensors.MustCopyFlatData[float32](outs[1])
	for e, p := range events {
		for c := range 3 {
			if a, b := seq[p*3+c], ref[e*3+c]; math.Abs(float64(a-b)) > 1e-5 {
				t.Errorf("event %d (position %d), class %d: ForwardSeq %v, Forward %v", e, p, c, a, b)
			}
		}
	}
}

func TestDeepLOBPacking(t *testing.T) {
	dl, err := model.NewDeepLOB(4, feature.Names, 3, model.DeepLOBConfig{Conv: 3, Inception: 2, Hidden: 4})
	if err != nil {
		t.Fatal(err)
	}
	packingParity(t, dl, feature.Count)
}
