package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// DeepLOBLevels is the book depth DeepLOB reads: 10 levels, 40 inputs.
const DeepLOBLevels = 10

// DeepLOBConfig sizes a DeepLOB; zero fields take the paper's values.
type DeepLOBConfig struct {
	Conv      int // channels of the convolutional blocks, default 32
	Inception int // channels of each inception branch, default 64
	Hidden    int // LSTM units, default 64
}

// DeepLOB is the convolutional-LSTM model of Zhang, Zohren and Roberts
// (2019), "DeepLOB: Deep Convolutional Neural Networks for Limit Order
// Books", IEEE Transactions on Signal Processing 67(11), as in the
// authors' Keras code (no batch normalisation; LeakyReLU(0.01) after every
// convolution; 'same' padding along time).
//
// The input is a T×40 image of the 10-level book, each row one event,
// oldest first, the columns interleaved level by level as in FI-2010 and
// the paper: (p_a, v_a, p_b, v_b) of level 1, then of level 2, and so on.
// DeepLOB builds it from gallop's features with a constant gather (Index):
// column 4i+0 is ask_d{i}, 4i+1 ask_q{i}, 4i+2 bid_d{i}, 4i+3 bid_q{i},
// i = 0..9, each normalised by its own mean and std first. gallop's
// "prices" are distances from the mid (ask_d = a_i - mid, bid_d = mid - b_i,
// in ticks) and its volumes log(1 + size), where the paper feeds z-scored
// raw prices and sizes; the architecture is unchanged. With
// C = Conv, I = Inception, H = Hidden channels (32, 64, 64 in the paper),
// and LReLU after every convolution:
//
//	block 1   conv 1×2 stride 1×2 (C)  → T×20×C   pairs (price, volume)
//	          conv 4×1 (C), conv 4×1 (C)
//	block 2   conv 1×2 stride 1×2 (C)  → T×10×C   pairs ask and bid
//	          conv 4×1 (C), conv 4×1 (C)
//	block 3   conv 1×10 (C)            → T×1×C    all levels
//	          conv 4×1 (C), conv 4×1 (C)
//	inception conv 1×1 (I) → conv 3×1 (I)
//	          conv 1×1 (I) → conv 5×1 (I)
//	          max-pool 3×1 stride 1 → conv 1×1 (I)
//	          concatenated             → T×3I
//	LSTM      H units over the T steps, last hidden state
//	dense     H → classes (logits; the paper applies softmax here)
//
// 'same' padding follows TensorFlow: a k×1 kernel sees (k-1)/2 rows before
// and k-1-(k-1)/2 after (1 and 2 for k = 4), zeros for convolutions and
// nothing (−∞) for the max-pool. The convolutions run as matrix products:
// the 1×k stride-k ones are a reshape, the k×1 ones k time-shifted copies
// concatenated along the channels, which on the Go backend is about 30×
// faster than its direct convolution. Kernels are stored as Keras's
// [kh, kw, in, out] (HWIO).
//
// Over variable-length sequences (ForwardSeq) DeepLOB runs on a window per
// position, not once over the sequence: its 'same' convolutions let event
// t see events t+1 and t+2 of its input, which is harmless when only the
// window's last event is predicted but would leak the future into
// per-position outputs computed in one pass. Each labelled position costs
// a whole window's forward (T times a window batch's work for T
// positions), as in training on fixed windows ending at every event.
//
// The LSTM (Hochreiter and Schmidhuber 1997) has no peepholes, gates in the
// order i, f, g, o along the 4H axis and one bias, as Keras's:
//
//	gates = x·wx + h·wh + b
//	c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g),  h' = σ(o) ⊙ tanh(c')
//
// It is unrolled over T in the graph.
type DeepLOB struct {
	W, F, Classes int
	DeepLOBConfig
	// Index lists, for each of the 40 input columns, the position of its
	// feature among the F features.
	Index []int
}

// NewDeepLOB returns a DeepLOB over windows of w events whose features are
// named by names (feature.Names in gallop), sized by cfg, with the given
// number of classes. The names must include ask_d{i}, ask_q{i}, bid_d{i}
// and bid_q{i} for i = 0..9.
func NewDeepLOB(w int, names []string, classes int, cfg DeepLOBConfig) (*DeepLOB, error) {
	if cfg.Conv == 0 {
		cfg.Conv = 32
	}
	if cfg.Inception == 0 {
		cfg.Inception = 64
	}
	if cfg.Hidden == 0 {
		cfg.Hidden = 64
	}
	if w <= 0 || classes <= 1 || cfg.Conv <= 0 || cfg.Inception <= 0 || cfg.Hidden <= 0 {
		return nil, fmt.Errorf("model: deeplob window %d, classes %d, config %+v", w, classes, cfg)
	}
	idx, err := DeepLOBIndex(names)
	if err != nil {
		return nil, err
	}
	return &DeepLOB{W: w, F: len(names), Classes: classes, DeepLOBConfig: cfg, Index: idx}, nil
}

// DeepLOBIndex returns the positions in names of DeepLOB's 40 input columns
// in its order: ask_d{i}, ask_q{i}, bid_d{i}, bid_q{i} for i = 0..9.
func DeepLOBIndex(names []string) ([]int, error) {
	pos := make(map[string]int, len(names))
	for i, n := range names {
		pos[n] = i
	}
	var idx []int
	for i := 0; i < DeepLOBLevels; i++ {
		for _, p := range []string{"ask_d", "ask_q", "bid_d", "bid_q"} {
			n := fmt.Sprintf("%s%d", p, i)
			j, ok := pos[n]
			if !ok {
				return nil, fmt.Errorf("model: deeplob needs feature %q", n)
			}
			idx = append(idx, j)
		}
	}
	return idx, nil
}

func (m *DeepLOB) Arch() string { return "deeplob" }

// convSpec is one convolution: kernel kh×kw from in to out channels.
type convSpec struct {
	name            string
	kh, kw, in, out int
}

// convs lists the convolutions in Params order.
func (m *DeepLOB) convs() []convSpec {
	c, i := m.Conv, m.Inception
	return []convSpec{
		{"conv1a", 1, 2, 1, c}, {"conv1b", 4, 1, c, c}, {"conv1c", 4, 1, c, c},
		{"conv2a", 1, 2, c, c}, {"conv2b", 4, 1, c, c}, {"conv2c", 4, 1, c, c},
		{"conv3a", 1, DeepLOBLevels, c, c}, {"conv3b", 4, 1, c, c}, {"conv3c", 4, 1, c, c},
		{"inc1.conv1x1", 1, 1, c, i}, {"inc1.conv3x1", 3, 1, i, i},
		{"inc2.conv1x1", 1, 1, c, i}, {"inc2.conv5x1", 5, 1, i, i},
		{"inc3.conv1x1", 1, 1, c, i},
	}
}

// Params are, for each convolution in the order of the diagram, <name>.w
// [kh, kw, in, out] and <name>.b [out] (conv1a..conv3c, inc1.conv1x1,
// inc1.conv3x1, inc2.conv1x1, inc2.conv5x1, inc3.conv1x1); then lstm.wx
// [3I, 4H], lstm.wh [H, 4H], lstm.b [4H], out.w [H, C], out.b [C].
func (m *DeepLOB) Params() []Param {
	var ps []Param
	for _, c := range m.convs() {
		ps = append(ps, Param{c.name + ".w", []int{c.kh, c.kw, c.in, c.out}}, Param{c.name + ".b", []int{c.out}})
	}
	h := m.Hidden
	return append(ps,
		Param{"lstm.wx", []int{3 * m.Inception, 4 * h}},
		Param{"lstm.wh", []int{h, 4 * h}},
		Param{"lstm.b", []int{4 * h}},
		Param{"out.w", []int{h, m.Classes}},
		Param{"out.b", []int{m.Classes}})
}

// Init draws the convolution kernels He-normal for LeakyReLU(0.01)
// (std = √(2 / ((1 + 0.01²)·kh·kw·in)), He et al. 2015), the LSTM's wx
// Glorot-uniform per gate and wh orthogonal per gate, its bias zero except
// 1 for the forget gate (Keras's unit_forget_bias; Jozefowicz et al.
// 2015), the output layer Glorot-uniform, and zero biases elsewhere.
func (m *DeepLOB) Init(seed uint64) []*tensors.Tensor {
	r := rand.New(rand.NewPCG(seed, 0x646c6f62))
	var out []*tensors.Tensor
	for _, c := range m.convs() {
		fan := float64(c.kh * c.kw * c.in)
		std := math.Sqrt(2 / ((1 + leak*leak) * fan))
		out = append(out, tensorOf(normal(r, std, c.kh*c.kw*c.in*c.out), c.kh, c.kw, c.in, c.out),
			tensorOf(make([]float64, c.out), c.out))
	}
	in, h := 3*m.Inception, m.Hidden
	wx := gateBlocks(in, h, 4, func() []float64 { return glorotUniform(r, in, h, in*h) })
	wh := gateBlocks(h, h, 4, func() []float64 { return orthogonal(r, h) })
	b := make([]float64, 4*h)
	for i := h; i < 2*h; i++ {
		b[i] = 1
	}
	return append(out,
		tensorOf(wx, in, 4*h),
		tensorOf(wh, h, 4*h),
		tensorOf(b, 4*h),
		tensorOf(glorotUniform(r, h, m.Classes, h*m.Classes), h, m.Classes),
		tensorOf(make([]float64, m.Classes), m.Classes))
}

// leak is the negative slope of DeepLOB's LeakyReLU.
const leak = 0.01

// Forward builds the T×40 book image of each window of x [B, W*F], runs
// the convolutions, the inception module and the LSTM, and returns the
// logits [B, C] of the last hidden state.
func (m *DeepLOB) Forward(params []*Node, mean, std, x *Node) *Node {
	b := x.Shape().Dimensions[0]
	return m.fromImage(params, m.image(Normalize(Reshape(x, b, m.W, m.F), mean, std)))
}

// fromImage runs the network on book images img [N, W, 40, 1]: the
// convolutions and the inception module, the LSTM and the output layer.
// It returns the logits [N, C].
func (m *DeepLOB) fromImage(params []*Node, img *Node) *Node {
	nc := 2 * len(m.convs())
	h := m.lstm(params[nc:nc+3], m.features(params[:nc], img))
	return linear(h, params[nc+3], params[nc+4])
}

// ForwardSeq implements SequenceModel as the MLP does: the window at a
// position is the W events of its own sequence that end there, padding
// inside the sequence skipped, the events before the sequence's start
// zeros after normalisation (each feature at its mean); the logits there
// are Forward's of that window. It runs Forward over B·T windows.
func (m *DeepLOB) ForwardSeq(params []*Node, mean, std, x, segments *Node) *Node {
	d := x.Shape().Dimensions
	b, t := d[0], d[1]
	h := gatherColumns(Normalize(x, mean, std), m.Index) // [B, T, 40]
	win := Stack(seqWindowRows(h, segments, m.W), 2)     // [B, T, W, 40]
	out := m.fromImage(params, Reshape(win, b*t, m.W, len(m.Index), 1))
	return Reshape(out, b, t, out.Shape().Dimensions[1])
}

// image gathers the 40 book columns of x [B, T, F] into [B, T, 40, 1].
func (m *DeepLOB) image(x *Node) *Node {
	d := x.Shape().Dimensions
	return Reshape(gatherColumns(x, m.Index), d[0], d[1], len(m.Index), 1)
}

// gatherColumns returns the columns index of x's last axis, in order:
// [..., F] → [..., len(index)], as one constant gather.
func gatherColumns(x *Node, index []int) *Node {
	d := x.Shape().Dimensions
	f := d[len(d)-1]
	idx := make([]int32, len(index))
	for i, j := range index {
		idx[i] = int32(j)
	}
	cols := Transpose(Reshape(x, x.Shape().Size()/f, f), 0, 1) // [F, rows]
	g := Gather(cols, Const(x.Graph(), tensors.FromFlatDataAndDimensions(idx, len(idx), 1)))
	return Reshape(Transpose(g, 0, 1), append(slices.Clone(d[:len(d)-1]), len(index))...)
}

// features runs the convolution blocks and the inception module over the
// image h [B, T, 40, 1] and returns [B, T, 3I]. params are the
// convolutions' (w, b) pairs in Params order.
func (m *DeepLOB) features(params []*Node, h *Node) *Node {
	next := func() (*Node, *Node) {
		w, b := params[0], params[1]
		params = params[2:]
		return w, b
	}
	for blk := 0; blk < 3; blk++ {
		h = leakyReLU(convLevels(h, next))
		h = leakyReLU(convTime(h, next))
		h = leakyReLU(convTime(h, next))
	}
	i1 := leakyReLU(convTime(leakyReLU(convTime(h, next)), next))
	i2 := leakyReLU(convTime(leakyReLU(convTime(h, next)), next))
	i3 := leakyReLU(convTime(maxPoolTime3(h), next))
	d := h.Shape().Dimensions
	return Reshape(Concatenate([]*Node{i1, i2, i3}, -1), d[0], d[1], 3*m.Inception)
}

// lstm runs the LSTM (params wx, wh, b) over x [B, T, In] from zero state
// and returns the last hidden state [B, H].
func (m *DeepLOB) lstm(params []*Node, x *Node) *Node {
	hd := m.Hidden
	gx := linear(x, params[0], params[2]) // [B, T, 4H]
	h := Zeros(x.Graph(), shapeLike(x, x.Shape().Dimensions[0], hd))
	c := h
	rec := newRecurrentLinear(params[1], nil)
	for _, g := range unstack(gx) {
		gates := Add(g, rec.apply(h))
		part := func(k int) *Node { return Slice(gates, AxisRange(), AxisRange(k*hd, (k+1)*hd)) }
		c = Add(Mul(Sigmoid(part(1)), c), Mul(Sigmoid(part(0)), Tanh(part(2))))
		h = Mul(Sigmoid(part(3)), Tanh(c))
	}
	return h
}

// convLevels is the 1×k stride-1×k convolution (no padding) of h [B, T, L,
// In] with the next (w [1, k, In, Out], b): [B, T, L/k, Out].
func convLevels(h *Node, next func() (*Node, *Node)) *Node {
	w, b := next()
	k, in, out := w.Shape().Dimensions[1], w.Shape().Dimensions[2], w.Shape().Dimensions[3]
	d := h.Shape().Dimensions
	h = Reshape(h, d[0], d[1], d[2]/k, k*in)
	return linear(h, Reshape(w, k*in, out), b)
}

// convTime is the k×1 stride-1 convolution with TensorFlow's 'same' padding
// of h [B, T, L, In] with the next (w [k, 1, In, Out], b): [B, T, L, Out].
func convTime(h *Node, next func() (*Node, *Node)) *Node {
	w, b := next()
	k, in, out := w.Shape().Dimensions[0], w.Shape().Dimensions[2], w.Shape().Dimensions[3]
	if k == 1 {
		return linear(h, Reshape(w, in, out), b)
	}
	d := h.Shape().Dimensions
	t := d[1]
	before := (k - 1) / 2
	after := k - 1 - before
	zeros := func(n int) *Node { return Zeros(h.Graph(), shapeLike(h, d[0], n, d[2], d[3])) }
	parts := []*Node{h}
	if before > 0 {
		parts = append([]*Node{zeros(before)}, parts...)
	}
	if after > 0 {
		parts = append(parts, zeros(after))
	}
	p := Concatenate(parts, 1) // [B, T+k-1, L, In]
	cols := make([]*Node, k)
	for j := range cols {
		if j == before {
			cols[j] = h // the unshifted window: no copy
			continue
		}
		cols[j] = Slice(p, AxisRange(), AxisRange(j, j+t))
	}
	return linear(Concatenate(cols, -1), Reshape(w, k*in, out), b)
}

// maxPoolTime3 is the 3×1 stride-1 max-pool with 'same' padding of h [B, T,
// L, C]: at the edges the missing neighbour is replaced by the position
// itself, which is the same as padding with −∞.
func maxPoolTime3(h *Node) *Node {
	t := h.Shape().Dimensions[1]
	if t == 1 {
		return h
	}
	prev := Concatenate([]*Node{Slice(h, AxisRange(), AxisRange(0, 1)), Slice(h, AxisRange(), AxisRange(0, t-1))}, 1)
	next := Concatenate([]*Node{Slice(h, AxisRange(), AxisRange(1, t)), Slice(h, AxisRange(), AxisRange(t-1, t))}, 1)
	return Max(Max(prev, h), next)
}

// leakyReLU is x·(1 if x > 0 else 0.01). Written as a product with a
// constant-gradient slope, its backward pass is one multiplication (Max's
// takes five full-size operations in GoMLX).
func leakyReLU(x *Node) *Node {
	g := x.Graph()
	pos := GreaterThan(x, ScalarZero(g, x.DType()))
	slope := Where(pos, ScalarOne(g, x.DType()), Scalar(g, x.DType(), leak))
	return Mul(x, StopGradient(slope))
}
