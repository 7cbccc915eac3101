// Package model holds gallop's reference models as GoMLX graph functions
// over explicit parameter lists, so the training step owns every variable.
package model

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// Param is one named trainable tensor.
type Param struct {
	Name  string
	Shape []int
}

// Model is a reference model: its parameters, how to initialise them and
// its forward graph. Forward receives the parameters in Params order, the
// per-feature normalisation (mean, std: [F]) and x: [B, W*F] raw features,
// and returns logits [B, classes].
type Model interface {
	Arch() string
	Params() []Param
	Init(seed uint64) []*tensors.Tensor
	Forward(params []*Node, mean, std, x *Node) *Node
}

// MLP is a multi-layer perceptron over a flattened window of W feature
// vectors of F features: hidden layers are relu(x·w + b), the last layer is
// linear. Layers[0] must equal W*F, or W*len(Index) when Index is set.
type MLP struct {
	W, F   int
	Layers []int
	// Index, when set, lists the feature columns the MLP sees (of the F it
	// is given), in order, e.g. DeepLOBIndex's 40 book columns; nil means
	// all F.
	Index []int
	// WeightGradsFirst orders the backward pass layer by layer: each
	// layer's weight gradient is computed before the input gradient goes on
	// to the layer below (see weightGradFirst). The values are the same;
	// on several GPUs it is meant to let each weight gradient's all-reduce
	// overlap the rest of the backward pass, but XLA's scheduler still
	// waits for each one after the next gemm (BENCHMARKS.md), so gallop
	// sets it only when asked (train.dp_weight_grads_first).
	WeightGradsFirst bool
}

// NewMLPOn is NewMLP over the feature columns index (of f) only.
func NewMLPOn(w, f int, index []int, hidden []int, classes int) (*MLP, error) {
	if len(index) == 0 {
		return nil, fmt.Errorf("model: mlp over no feature columns")
	}
	for _, j := range index {
		if j < 0 || j >= f {
			return nil, fmt.Errorf("model: mlp feature column %d out of [0, %d)", j, f)
		}
	}
	m, err := NewMLP(w, len(index), hidden, classes)
	if err != nil {
		return nil, err
	}
	m.F, m.Index = f, append([]int(nil), index...)
	return m, nil
}

// inputs returns the number of feature columns the MLP sees per event.
func (m *MLP) inputs() int {
	if m.Index != nil {
		return len(m.Index)
	}
	return m.F
}

// Dense0Full returns layer 0's weights w [W*len(Index), H] spread to the
// full input [W*F, H], with zero rows for the columns the MLP does not see:
// the same function of the full window, for engines that take every
// feature (infer). Without Index it returns w.
func (m *MLP) Dense0Full(w []float32) []float32 {
	if m.Index == nil {
		return w
	}
	n, h := len(m.Index), m.Layers[1]
	out := make([]float32, m.W*m.F*h)
	for t := range m.W {
		for i, j := range m.Index {
			copy(out[(t*m.F+j)*h:(t*m.F+j+1)*h], w[(t*n+i)*h:(t*n+i+1)*h])
		}
	}
	return out
}

// NewMLP returns an MLP over windows of w rows of f features with the given
// hidden sizes and number of classes.
func NewMLP(w, f int, hidden []int, classes int) (*MLP, error) {
	if w <= 0 || f <= 0 || classes <= 1 {
		return nil, fmt.Errorf("model: mlp window %d, features %d, classes %d", w, f, classes)
	}
	layers := append([]int{w * f}, hidden...)
	layers = append(layers, classes)
	for _, h := range layers {
		if h <= 0 {
			return nil, fmt.Errorf("model: mlp layer sizes %v", layers)
		}
	}
	return &MLP{W: w, F: f, Layers: layers}, nil
}

func (m *MLP) Arch() string { return "mlp" }

func (m *MLP) Params() []Param {
	var ps []Param
	for i := 0; i+1 < len(m.Layers); i++ {
		ps = append(ps,
			Param{fmt.Sprintf("dense%d.w", i), []int{m.Layers[i], m.Layers[i+1]}},
			Param{fmt.Sprintf("dense%d.b", i), []int{m.Layers[i+1]}})
	}
	return ps
}

// Init draws weights with He (Kaiming) normal initialisation for the relu
// layers, scaled down for the output layer, and zero biases.
func (m *MLP) Init(seed uint64) []*tensors.Tensor {
	r := rand.New(rand.NewPCG(seed, 0x6d6c70))
	var out []*tensors.Tensor
	for i := 0; i+1 < len(m.Layers); i++ {
		in, o := m.Layers[i], m.Layers[i+1]
		std := math.Sqrt(2 / float64(in))
		if i+2 == len(m.Layers) {
			std = math.Sqrt(1 / float64(in))
		}
		w := make([]float32, in*o)
		for j := range w {
			w[j] = float32(r.NormFloat64() * std)
		}
		out = append(out, tensors.FromFlatDataAndDimensions(w, in, o),
			tensors.FromFlatDataAndDimensions(make([]float32, o), o))
	}
	return out
}

func (m *MLP) Forward(params []*Node, mean, std, x *Node) *Node {
	b := x.Shape().Dimensions[0]
	// Normalise each feature of each window row: [B, W, F].
	h := Normalize(Reshape(x, b, m.W, m.F), mean, std)
	if m.Index != nil {
		h = gatherColumns(h, m.Index)
	}
	return m.dense(params, Reshape(h, b, m.W*m.inputs()))
}

// relu is max(x, 0) (NaN stays NaN) as a Where, whose gradient is one
// pass, Where(x <= 0, 0, v), where autodiff of Max builds six elementwise
// passes (a difference, two signs, an add and two products).
func relu(x *Node) *Node {
	zeros := ZerosLike(x)
	return Where(LessOrEqual(x, zeros), zeros, x)
}

// dense runs the layers over h [N, W*inputs] and returns the logits [N, C].
func (m *MLP) dense(params []*Node, h *Node) *Node {
	for i := 0; i < len(params); i += 2 {
		x, w := h, params[i]
		if m.WeightGradsFirst {
			x, w = weightGradFirst(x, w)
		}
		h = Add(MatMul(x, w), ExpandAxes(params[i+1], 0))
		if i+2 < len(params) {
			h = relu(h)
		}
	}
	return h
}

// ForwardSeq implements SequenceModel: the window at a position is the W
// events of its own sequence that end there, oldest first, padding inside
// the sequence skipped; where the sequence has fewer than W events so far,
// the missing ones are zeros after normalisation (each feature at its
// mean). From a sequence's W-th event on, a position's logits are Forward's
// of that window (see seqWindowRows).
func (m *MLP) ForwardSeq(params []*Node, mean, std, x, segments *Node) *Node {
	d := x.Shape().Dimensions
	b, t := d[0], d[1]
	h := Normalize(x, mean, std) // [B, T, F]
	if m.Index != nil {
		h = gatherColumns(h, m.Index)
	}
	n := m.W * m.inputs()
	out := m.dense(params, Reshape(Concatenate(seqWindowRows(h, segments, m.W), -1), b*t, n))
	return Reshape(out, b, t, m.Layers[len(m.Layers)-1])
}

// seqWindowRows returns, for h [B, T, F'] and segments [B, T] (see
// SequenceModel), the W rows of every position's window, oldest first, each
// [B, T, F']: row W-1-j holds the event j events before the position in its
// own sequence (padding inside the sequence skipped), or zeros where the
// sequence has fewer events so far. Positions are ranked among the row's
// events (padding skipped) and each window row is gathered by rank: one
// [B, T, T] comparison gives each position's index within its sequence,
// the rest is O(W·B·T).
func seqWindowRows(h, segments *Node, w int) []*Node {
	d := h.Shape().Dimensions
	b, t := d[0], d[1]
	g := h.Graph()
	i32 := dtypes.Int32
	_, pos := causalSegments(segments)
	// rank: the position's rank among its row's events; at[r] the position
	// of the row's r-th event.
	event := ConvertDType(NotEqual(segments, ZerosLike(segments)), i32)
	rank := AddScalar(CumSum(event, 1), -1)
	rowIDs := Iota(g, shapes.Make(i32, b, t, 1), 0)
	index := func(col *Node) *Node { return Concatenate([]*Node{rowIDs, ExpandAxes(col, -1)}, -1) } // [B, T, 2]
	at := ScatterSum(Zeros(g, shapes.Make(i32, b, t)), index(MaxScalar(rank, 0)),
		Mul(Iota(g, shapes.Make(i32, b, t), 1), event), false, false)
	rows := make([]*Node, w)
	for j := range w {
		k := Gather(at, index(MaxScalar(AddScalar(rank, float64(-j)), 0))) // [B, T]
		has := ConvertDType(GreaterOrEqual(pos, Scalar(g, i32, j)), h.DType())
		rows[w-1-j] = Mul(Gather(h, index(k)), ExpandAxes(has, -1))
	}
	return rows
}

// causalSegments returns, for segments [B, T] (see SequenceModel), mask
// [B, T, T]: position k is position q or an earlier one with q's id; and
// pos [B, T] int32: each position's index within its sequence (how many
// positions up to it carry its id, minus one).
func causalSegments(segments *Node) (mask, pos *Node) {
	d := segments.Shape().Dimensions
	b, t := d[0], d[1]
	bt := func(n *Node, axis int) *Node { return BroadcastToDims(ExpandAxes(n, axis), b, t, t) }
	causal := BroadcastToDims(ExpandAxes(LowerTriangular(segments.Graph(), t), 0), b, t, t)
	mask = LogicalAnd(Equal(bt(segments, 2), bt(segments, 1)), causal)
	pos = AddScalar(ReduceSum(ConvertDType(mask, dtypes.Int32), -1), -1)
	return mask, pos
}

// CrossEntropy is the mean softmax cross-entropy of logits [B, C] against
// integer labels [B].
func CrossEntropy(logits, labels *Node) *Node {
	c := logits.Shape().Dimensions[1]
	ls := LogSoftmax(logits, -1)
	oh := OneHot(labels, c, ls.DType())
	return Neg(ReduceAllMean(ReduceSum(Mul(ls, oh), -1)))
}

// Count returns the number of scalar parameters.
func Count(ps []Param) int {
	n := 0
	for _, p := range ps {
		k := 1
		for _, d := range p.Shape {
			k *= d
		}
		n += k
	}
	return n
}
