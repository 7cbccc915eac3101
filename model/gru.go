package model

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// SequenceModel is a Model that also runs over padded or packed batches of
// variable-length sequences.
//
// ForwardSeq receives the parameters in Params order, the per-feature
// normalisation (mean, std: [F]), x: [B, T, F] raw features and segments:
// [B, T] int32, where 0 marks padding and k > 0 marks a position of
// sequence k of its row. Sequence k of a row is the positions of that row
// with id k, in order; a row's sequences must not interleave (each one is a
// contiguous run, apart from padding inside it, which is skipped), and two
// adjacent sequences of a row must have different ids. Ids are local to a
// row. ForwardSeq returns logits [B, T, classes] at every position; callers
// pick the positions that carry labels. Outputs at padding positions are
// defined but meaningless.
//
// One sequence gives the same outputs whether it is alone in a padded row
// or packed with others: no sequence can see another.
type SequenceModel interface {
	Model
	ForwardSeq(params []*Node, mean, std, x, segments *Node) *Node
}

// DefaultGRUHidden is the GRU's hidden size when NewGRU is given 0.
const DefaultGRUHidden = 64

// GRU is a single-layer gated recurrent unit (Cho et al. 2014, "Learning
// Phrase Representations using RNN Encoder-Decoder for Statistical Machine
// Translation") over the W events of a window, oldest first. Each event's F
// features are normalised, the GRU runs from a zero state, and the last
// hidden state goes through a dense layer to the class logits.
//
// The cell follows PyTorch's torch.nn.GRU (the reset gate multiplies the
// recurrent projection after its bias), with gates in the order r, z, n
// along the 3H axis of every parameter:
//
//	gx = x·wx + bx,  gh = h·wh + bh               ([B, 3H] each)
//	r  = σ(gx[r] + gh[r])
//	z  = σ(gx[z] + gh[z])
//	n  = tanh(gx[n] + r ⊙ gh[n])
//	h' = (1 - z) ⊙ n + z ⊙ h
//
// A PyTorch GRU's weight_ih_l0, weight_hh_l0 are wx, wh transposed;
// bias_ih_l0, bias_hh_l0 are bx, bh.
type GRU struct {
	W, F, H, Classes int
}

// NewGRU returns a GRU over windows of w events of f features with hidden
// size hidden (DefaultGRUHidden if 0) and the given number of classes.
func NewGRU(w, f, hidden, classes int) (*GRU, error) {
	if hidden == 0 {
		hidden = DefaultGRUHidden
	}
	if w <= 0 || f <= 0 || hidden <= 0 || classes <= 1 {
		return nil, fmt.Errorf("model: gru window %d, features %d, hidden %d, classes %d", w, f, hidden, classes)
	}
	return &GRU{W: w, F: f, H: hidden, Classes: classes}, nil
}

func (m *GRU) Arch() string { return "gru" }

// Params are gru.wx [F, 3H], gru.wh [H, 3H], gru.bx [3H], gru.bh [3H],
// out.w [H, C], out.b [C].
func (m *GRU) Params() []Param {
	h := m.H
	return []Param{
		{"gru.wx", []int{m.F, 3 * h}},
		{"gru.wh", []int{h, 3 * h}},
		{"gru.bx", []int{3 * h}},
		{"gru.bh", []int{3 * h}},
		{"out.w", []int{h, m.Classes}},
		{"out.b", []int{m.Classes}},
	}
}

// Init draws wx Glorot-uniform per gate (fan F → H), wh orthogonal per
// gate (an H×H orthogonal block for each of r, z, n), the output layer
// Glorot-uniform, and zero biases: Keras's GRU defaults.
func (m *GRU) Init(seed uint64) []*tensors.Tensor {
	r := rand.New(rand.NewPCG(seed, 0x677275))
	h := m.H
	wx := gateBlocks(m.F, h, 3, func() []float64 { return glorotUniform(r, m.F, h, m.F*h) })
	wh := gateBlocks(h, h, 3, func() []float64 { return orthogonal(r, h) })
	return []*tensors.Tensor{
		tensorOf(wx, m.F, 3*h),
		tensorOf(wh, h, 3*h),
		tensorOf(make([]float64, 3*h), 3*h),
		tensorOf(make([]float64, 3*h), 3*h),
		tensorOf(glorotUniform(r, h, m.Classes, h*m.Classes), h, m.Classes),
		tensorOf(make([]float64, m.Classes), m.Classes),
	}
}

// Cell is one GRU step as a pure function: params in Params order (only
// the gru.* entries are used), h: [B, H] the previous state, x: [B, F] one
// event's normalised features (see Normalize). It returns the next state
// [B, H]. Forward and ForwardSeq compute exactly this, with x·wx + bx of
// all events batched into one matrix product.
func (m *GRU) Cell(params []*Node, h, x *Node) *Node {
	return m.cell(linear(x, params[0], params[2]), linear(h, params[1], params[3]), h)
}

// cell is Cell given gx = x·wx + bx and gh = h·wh + bh.
func (m *GRU) cell(gx, gh, h *Node) *Node {
	hd := m.H
	part := func(g *Node, i int) *Node { return Slice(g, AxisRange(), AxisRange(i*hd, (i+1)*hd)) }
	r := Sigmoid(Add(part(gx, 0), part(gh, 0)))
	z := Sigmoid(Add(part(gx, 1), part(gh, 1)))
	n := Tanh(Add(part(gx, 2), Mul(r, part(gh, 2))))
	return Add(Mul(OneMinus(z), n), Mul(z, h))
}

// Forward runs the GRU over the window of x [B, W*F] and returns the
// logits [B, C] of its last hidden state.
func (m *GRU) Forward(params []*Node, mean, std, x *Node) *Node {
	b := x.Shape().Dimensions[0]
	xs := Normalize(Reshape(x, b, m.W, m.F), mean, std)
	gx := linear(xs, params[0], params[2]) // [B, W, 3H]
	h := Zeros(x.Graph(), shapeLike(x, b, m.H))
	rec := newRecurrentLinear(params[1], params[3])
	for _, g := range unstack(gx) {
		h = m.cell(g, rec.apply(h), h)
	}
	return linear(h, params[4], params[5])
}

// ForwardSeq implements SequenceModel: the state is reset to zero at the
// first position of each sequence (where the segment id differs from the
// last non-padding id of the row), and padding positions leave it
// unchanged.
func (m *GRU) ForwardSeq(params []*Node, mean, std, x, segments *Node) *Node {
	b, t := x.Shape().Dimensions[0], x.Shape().Dimensions[1]
	gx := linear(Normalize(x, mean, std), params[0], params[2]) // [B, T, 3H]
	h := Zeros(x.Graph(), shapeLike(x, b, m.H))
	zero := ZerosLike(h)
	last := Zeros(x.Graph(), shapeLike(segments, b)) // 0: no sequence yet
	noSeg := ScalarZero(x.Graph(), segments.DType())
	hs := make([]*Node, t)
	rec := newRecurrentLinear(params[1], params[3])
	for i, g := range unstack(gx) {
		s := Reshape(Slice(segments, AxisRange(), AxisElem(i)), b)
		hp := Where(Equal(s, last), h, zero)
		hn := m.cell(g, rec.apply(hp), hp)
		valid := NotEqual(s, noSeg)
		h = Where(valid, hn, h)
		last = Where(valid, s, last)
		hs[i] = h
	}
	return linear(Stack(hs, 1), params[4], params[5])
}

// Normalize returns (x - mean) · (1 / std) for x [..., F] and mean, std
// [F]: the per-feature normalisation every model applies first, in the
// form the inference engine computes (a product by the reciprocal, which
// is also cheaper than a division per element).
func Normalize(x, mean, std *Node) *Node {
	r := x.Rank()
	dims := make([]int, r)
	for i := range dims {
		dims[i] = 1
	}
	dims[r-1] = x.Shape().Dimensions[r-1]
	return Mul(Sub(x, Reshape(mean, dims...)), Reshape(Reciprocal(std), dims...))
}

// linear returns x·w + b for x [..., K], w [K, N], b [N] (b may be nil), as
// one two-dimensional matrix product.
func linear(x, w, b *Node) *Node {
	dims := x.Shape().Dimensions
	k, n := w.Shape().Dimensions[0], w.Shape().Dimensions[1]
	rows := x.Shape().Size() / k
	y := MatMul(Reshape(x, rows, k), w)
	if b != nil {
		y = Add(y, ExpandAxes(b, 0))
	}
	out := append(append([]int(nil), dims[:len(dims)-1]...), n)
	return Reshape(y, out...)
}

// unstack returns x[:, t, :] as [B, N] for each t of x [B, T, N].
//
// It splits x in halves recursively rather than slicing each step from x:
// the gradient of a slice is the incoming gradient padded to the size of
// the sliced input, so T slices of x cost T full-size pads and sums in the
// backward pass (O(T²) copying), where the halving costs about 2·log2(T)
// full-size ones.
func unstack(x *Node) []*Node {
	d := x.Shape().Dimensions
	out := make([]*Node, 0, d[1])
	var split func(x *Node)
	split = func(x *Node) {
		n := x.Shape().Dimensions[1]
		if n == 1 {
			out = append(out, Reshape(x, d[0], d[2]))
			return
		}
		m := n / 2
		split(Slice(x, AxisRange(), AxisRange(0, m)))
		split(Slice(x, AxisRange(), AxisRange(m, n)))
	}
	split(x)
	return out
}

// shapeLike is the shape of x's dtype with the given dimensions.
func shapeLike(x *Node, dims ...int) shapes.Shape {
	return shapes.Make(x.DType(), dims...)
}

// tensorOf returns a float32 tensor of the given dimensions from v.
func tensorOf(v []float64, dims ...int) *tensors.Tensor {
	f := make([]float32, len(v))
	for i, x := range v {
		f[i] = float32(x)
	}
	return tensors.FromFlatDataAndDimensions(f, dims...)
}

// glorotUniform draws n values uniform in ±sqrt(6/(fanIn+fanOut)) (Glorot
// and Bengio 2010).
func glorotUniform(r *rand.Rand, fanIn, fanOut, n int) []float64 {
	lim := math.Sqrt(6 / float64(fanIn+fanOut))
	v := make([]float64, n)
	for i := range v {
		v[i] = (2*r.Float64() - 1) * lim
	}
	return v
}

// normal draws n values from N(0, std²).
func normal(r *rand.Rand, std float64, n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = r.NormFloat64() * std
	}
	return v
}

// orthogonal returns a random n×n orthogonal matrix (row-major): the Q of
// the QR decomposition of a standard normal matrix, with the signs fixed
// so that Q is uniformly distributed (Saxe et al. 2014; Mezzadri 2007).
func orthogonal(r *rand.Rand, n int) []float64 {
	a := normal(r, 1, n*n)
	// Modified Gram-Schmidt over the columns of a: q_j ← a_j minus its
	// projections on q_0..q_{j-1}, normalised; the sign of r_jj is
	// absorbed by normalising with |·|, which is Q·sign(diag R).
	col := func(j int) []float64 {
		c := make([]float64, n)
		for i := range c {
			c[i] = a[i*n+j]
		}
		return c
	}
	q := make([][]float64, n)
	for j := 0; j < n; j++ {
		v := col(j)
		for k := 0; k < j; k++ {
			var d float64
			for i := range v {
				d += q[k][i] * v[i]
			}
			for i := range v {
				v[i] -= d * q[k][i]
			}
		}
		var nrm float64
		for _, x := range v {
			nrm += x * x
		}
		nrm = math.Sqrt(nrm)
		for i := range v {
			v[i] /= nrm
		}
		q[j] = v
	}
	out := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			out[i*n+j] = q[j][i]
		}
	}
	return out
}

// gateBlocks lays out g blocks of rows×cols (each drawn by draw, row-major)
// side by side as one rows×(g·cols) matrix.
func gateBlocks(rows, cols, g int, draw func() []float64) []float64 {
	out := make([]float64, rows*g*cols)
	for k := 0; k < g; k++ {
		blk := draw()
		for i := 0; i < rows; i++ {
			copy(out[i*g*cols+k*cols:i*g*cols+(k+1)*cols], blk[i*cols:(i+1)*cols])
		}
	}
	return out
}
