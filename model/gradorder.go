package model

import . "github.com/gomlx/gomlx/core/graph"

// weightGradFirst returns x and w unchanged, for use as the operands of a
// product x·w, so that in the backward pass the gradient flowing back to x
// (and so to every earlier layer) is released only once w's gradient has
// been computed: both pass through one optimization barrier.
//
// Left to itself, XLA schedules a stack of dense layers' backward pass as
// the whole chain of input gradients first and every weight gradient
// last. On several GPUs that leaves each weight gradient's all-reduce
// almost nothing to overlap with. With the barrier, layer l's weight
// gradient is ready before layer l-1's backward starts, so its all-reduce
// can run under the rest of the backward pass.
//
// It relies on GoMLX's reverse-mode pass visiting nodes in reverse order of
// creation: w's identity is created after x's, so its gradient is known when
// x's is asked for. Were it not, x's gradient goes out without the barrier,
// which is only a lost ordering, never a wrong value.
func weightGradFirst(x, w *Node) (*Node, *Node) {
	var dw *Node
	xs := IdentityWithCustomGradient(x, func(_, v *Node) *Node {
		if dw == nil {
			return v
		}
		return OptimizationBarriers(v, dw)[0]
	})
	ws := IdentityWithCustomGradient(w, func(_, v *Node) *Node {
		dw = v
		return v
	})
	return xs, ws
}

// recurrentLinear computes h·w + b for each step of a recurrence, with the
// gradients of w and b formed once over all the steps: one product
// contracting the steps and the batch, [B, S, H]·[B, S, N] → [H, N], and one
// sum, where autodiff of the unrolled loop makes S products
// [H, B]·[B, N], S sums over the batch and 2(S-1) additions, each a small
// kernel of its own on a GPU.
//
// Each step uses w and b through identities whose gradients are zero (so
// the per-step weight products are dead code the compiler removes), and
// records its input h and the gradient that arrives at its output. The
// roots' custom gradients, asked for after every step's (GoMLX's reverse
// pass visits nodes in reverse order of creation, and the roots come
// first), add the whole sums.
type recurrentLinear struct {
	w, b   *Node // the roots (b may be nil)
	hs, vs []*Node
	ys     []*Node
}

// newRecurrentLinear starts a recurrence over w [H, N] and b [N] (b may be
// nil for no bias).
func newRecurrentLinear(w, b *Node) *recurrentLinear {
	r := &recurrentLinear{}
	r.w = IdentityWithCustomGradient(w, func(_, v *Node) *Node {
		h, g := r.stacked()
		return Add(v, Einsum("bsh,bsn->hn", h, g))
	})
	if b != nil {
		r.b = IdentityWithCustomGradient(b, func(_, v *Node) *Node {
			_, g := r.stacked()
			return Add(v, ReduceSum(g, 0, 1))
		})
	}
	return r
}

// apply returns h·w + b for one step's h [B, H].
func (r *recurrentLinear) apply(h *Node) *Node {
	zero := func(_, v *Node) *Node { return ZerosLike(v) }
	y := MatMul(h, IdentityWithCustomGradient(r.w, zero))
	if r.b != nil {
		y = Add(y, ExpandAxes(IdentityWithCustomGradient(r.b, zero), 0))
	}
	i := len(r.ys)
	r.hs, r.vs, r.ys = append(r.hs, h), append(r.vs, nil), append(r.ys, y)
	return IdentityWithCustomGradient(y, func(_, v *Node) *Node {
		r.vs[i] = v
		return v
	})
}

// stacked returns every step's h and output gradient stacked on a new
// axis after the batch: [B, S, H] and [B, S, N]. The batch axis stays
// first: under data parallelism XLA shards it, and stacking along it
// (concatenating the steps' rows) would make the partitioner move the
// data between devices; contracting it is the all-reduce the gradient
// needs anyway. A step whose output got no gradient counts as a zero one.
func (r *recurrentLinear) stacked() (h, g *Node) {
	vs := make([]*Node, len(r.vs))
	for i, v := range r.vs {
		if v == nil {
			v = ZerosLike(r.ys[i])
		}
		vs[i] = v
	}
	return Stack(r.hs, 1), Stack(vs, 1)
}
