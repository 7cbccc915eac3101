package model_test

import (
	"math/rand/v2"
	"testing"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/model"
)

// TestWeightGradsFirst checks that ordering the MLP's backward pass layer
// by layer changes no gradient (bit for bit on the Go backend) and that the
// ordering is really in the graph: one optimization barrier per layer whose
// input gradient is needed (all but the first).
func TestWeightGradsFirst(t *testing.T) {
	be := newBackend(t)
	r := rand.New(rand.NewPCG(3, 3))
	const b, w, f = 6, 4, 5
	d := randBatch(r, b, w, f, 3)
	grads := func(first bool) ([]*tensors.Tensor, int) {
		m, err := model.NewMLP(w, f, []int{16, 8, 8}, 3)
		if err != nil {
			t.Fatal(err)
		}
		m.WeightGradsFirst = first
		barriers := 0
		out, err := CallOnceN(be, func(in []*Node) []*Node {
			ps := in[:len(in)-3]
			logits := m.Forward(ps, in[len(in)-3], in[len(in)-2], in[len(in)-1])
			// A loss whose gradient reaches every logit differently.
			loss := ReduceAllSum(Mul(logits, Sin(logits)))
			gs := Gradient(loss, ps...)
			for _, n := range loss.Graph().Nodes() {
				if n.Type() == NodeTypeOptimizationBarrier {
					barriers++
				}
			}
			return gs
		}, append(anys(m.Init(1)), f32(d.mean, f), f32(d.std, f), f32(d.x, b, w*f))...)
		if err != nil {
			t.Fatal(err)
		}
		return out, barriers
	}
	want, n0 := grads(false)
	got, n1 := grads(true)
	if n0 != 0 || n1 != 3 {
		t.Fatalf("optimization barriers: %d without, %d with WeightGradsFirst; want 0 and 3 (layers 1-3)", n0, n1)
	}
	for i := range want {
		a, g := tensors.MustCopyFlatData[float32](want[i]), tensors.MustCopyFlatData[float32](got[i])
		for j := range a {
			if a[j] != g[j] {
				t.Fatalf("gradient %d[%d]: %g with WeightGradsFirst, %g without", i, j, g[j], a[j])
			}
		}
	}
}
