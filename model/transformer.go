package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// TransformerConfig sizes a Transformer; zero fields take the defaults.
type TransformerConfig struct {
	D      int // model width, default 64
	Layers int // blocks, default 2
	Heads  int // attention heads, default 4; must divide D
	FF     int // MLP hidden width, default 4·D
}

// Transformer is a small causal (decoder-only) transformer over the W events
// of a window, in the pre-LN arrangement of GPT-2 (Radford et al. 2019;
// Xiong et al. 2020, "On Layer Normalization in the Transformer
// Architecture"), after Vaswani et al. 2017:
//
//	h   = norm(x)·in.w + in.b + pos[t]           pos: learned, W×D
//	h  += Attn(LN1(h))                           per block, causal
//	h  += W2·GELU(W1·LN2(h) + b1) + b2           per block
//	out = LNf(h[last])·out.w + out.b
//
// Attention is multi-head (D/Heads per head, scaled by 1/√(D/Heads)) with
// one fused QKV projection (columns q | k | v, heads contiguous within
// each); GELU is the exact erf form; layer norms use ε = 1e-5. ForwardSeq
// takes rows of any length, but W position embeddings bound each sequence
// to at most W events.
type Transformer struct {
	W, F, Classes int
	TransformerConfig
}

// NewTransformer returns a causal transformer over windows of w events of
// f features, sized by cfg, with the given number of classes.
func NewTransformer(w, f, classes int, cfg TransformerConfig) (*Transformer, error) {
	if cfg.D == 0 {
		cfg.D = 64
	}
	if cfg.Layers == 0 {
		cfg.Layers = 2
	}
	if cfg.Heads == 0 {
		cfg.Heads = 4
	}
	if cfg.FF == 0 {
		cfg.FF = 4 * cfg.D
	}
	if w <= 0 || f <= 0 || classes <= 1 || cfg.D <= 0 || cfg.Layers <= 0 || cfg.Heads <= 0 || cfg.FF <= 0 || cfg.D%cfg.Heads != 0 {
		return nil, fmt.Errorf("model: transformer window %d, features %d, classes %d, config %+v", w, f, classes, cfg)
	}
	return &Transformer{W: w, F: f, Classes: classes, TransformerConfig: cfg}, nil
}

func (m *Transformer) Arch() string { return "transformer" }

// Per-block parameter offsets within Params, after the 3 input entries.
const (
	tLN1G = iota
	tLN1B
	tQKVW
	tQKVB
	tOW
	tOB
	tLN2G
	tLN2B
	tW1
	tB1
	tW2
	tB2
	tBlock // entries per block
)

// Params are in.w [F, D], in.b [D], pos [W, D]; per block l:
// l.ln1.g, l.ln1.b [D], l.attn.wqkv [D, 3D], l.attn.bqkv [3D],
// l.attn.wo [D, D], l.attn.bo [D], l.ln2.g, l.ln2.b [D],
// l.mlp.w1 [D, FF], l.mlp.b1 [FF], l.mlp.w2 [FF, D], l.mlp.b2 [D];
// then lnf.g, lnf.b [D], out.w [D, C], out.b [C].
func (m *Transformer) Params() []Param {
	d := m.D
	ps := []Param{{"in.w", []int{m.F, d}}, {"in.b", []int{d}}, {"pos", []int{m.W, d}}}
	for l := 0; l < m.Layers; l++ {
		p := func(n string, dims ...int) Param { return Param{fmt.Sprintf("%d.%s", l, n), dims} }
		ps = append(ps,
			p("ln1.g", d), p("ln1.b", d),
			p("attn.wqkv", d, 3*d), p("attn.bqkv", 3*d),
			p("attn.wo", d, d), p("attn.bo", d),
			p("ln2.g", d), p("ln2.b", d),
			p("mlp.w1", d, m.FF), p("mlp.b1", m.FF),
			p("mlp.w2", m.FF, d), p("mlp.b2", d))
	}
	return append(ps, Param{"lnf.g", []int{d}}, Param{"lnf.b", []int{d}},
		Param{"out.w", []int{d, m.Classes}}, Param{"out.b", []int{m.Classes}})
}

// Init follows GPT-2: weights N(0, 0.02²), the residual projections
// (attn.wo, mlp.w2) scaled by 1/√(2·Layers), position embeddings
// N(0, 0.02²), layer-norm gains 1 and all biases 0; the input projection and
// the output layer are Glorot-uniform, since the input is a handful of
// normalised features rather than a token embedding.
func (m *Transformer) Init(seed uint64) []*tensors.Tensor {
	r := rand.New(rand.NewPCG(seed, 0x74726e))
	var out []*tensors.Tensor
	for _, p := range m.Params() {
		n := 1
		for _, d := range p.Shape {
			n *= d
		}
		var v []float64
		name := p.Name
		if name[0] >= '0' && name[0] <= '9' { // "<block>.<name>"
			_, name, _ = strings.Cut(name, ".")
		}
		switch name {
		case "in.w":
			v = glorotUniform(r, m.F, m.D, n)
		case "out.w":
			v = glorotUniform(r, m.D, m.Classes, n)
		case "pos", "attn.wqkv", "mlp.w1":
			v = normal(r, 0.02, n)
		case "attn.wo", "mlp.w2":
			v = normal(r, 0.02/math.Sqrt(2*float64(m.Layers)), n)
		case "ln1.g", "ln2.g", "lnf.g":
			v = make([]float64, n)
			for i := range v {
				v[i] = 1
			}
		default: // biases
			v = make([]float64, n)
		}
		out = append(out, tensorOf(v, p.Shape...))
	}
	return out
}

// Forward runs the transformer over the window of x [B, W*F] with a causal
// mask and returns the logits [B, C] of the last position.
func (m *Transformer) Forward(params []*Node, mean, std, x *Node) *Node {
	b := x.Shape().Dimensions[0]
	g := x.Graph()
	h := linear(Normalize(Reshape(x, b, m.W, m.F), mean, std), params[0], params[1])
	h = Add(h, ExpandAxes(params[2], 0))
	mask := BroadcastToDims(Reshape(LowerTriangular(g, m.W), 1, 1, m.W, m.W), b, m.Heads, m.W, m.W)
	h = m.blocks(params, h, mask)
	h = Reshape(Slice(h, AxisRange(), AxisElem(m.W-1)), b, m.D)
	return m.head(params, h)
}

// ForwardSeq implements SequenceModel: position q attends to position k
// only if k ≤ q and both carry the same segment id, and each position's
// embedding is that of its index within its own sequence (clamped to W-1,
// which only padding can reach when sequences are at most W long).
func (m *Transformer) ForwardSeq(params []*Node, mean, std, x, segments *Node) *Node {
	d := x.Shape().Dimensions
	b, t := d[0], d[1]
	mask, pos := causalSegments(segments)
	pos = ClipScalar(pos, 0, float64(m.W-1))
	h := linear(Normalize(x, mean, std), params[0], params[1])
	h = Add(h, Gather(params[2], ExpandAxes(pos, -1)))
	h = m.blocks(params, h, BroadcastToDims(ExpandAxes(mask, 1), b, m.Heads, t, t))
	return m.head(params, h)
}

// blocks runs the transformer blocks over h [B, T, D] with mask [B, Heads,
// T, T] (true: may attend).
func (m *Transformer) blocks(params []*Node, h, mask *Node) *Node {
	d := h.Shape().Dimensions
	b, t := d[0], d[1]
	nh, dh := m.Heads, m.D/m.Heads
	neg := Scalar(h.Graph(), h.DType(), -1e9)
	for l := 0; l < m.Layers; l++ {
		p := params[3+l*tBlock : 3+(l+1)*tBlock]
		a := layerNorm(h, p[tLN1G], p[tLN1B])
		qkv := linear(a, p[tQKVW], p[tQKVB]) // [B, T, 3D]
		part := func(i int) *Node {
			return Reshape(Slice(qkv, AxisRange(), AxisRange(), AxisRange(i*m.D, (i+1)*m.D)), b, t, nh, dh)
		}
		qh, kh, vh := part(0), part(1), part(2)
		s := MulScalar(Einsum("bqhd,bkhd->bhqk", qh, kh), 1/math.Sqrt(float64(dh)))
		s = Where(mask, s, neg)
		att := Einsum("bhqk,bkhd->bqhd", Softmax(s, -1), vh)
		h = Add(h, linear(Reshape(att, b, t, m.D), p[tOW], p[tOB]))
		a = layerNorm(h, p[tLN2G], p[tLN2B])
		h = Add(h, linear(gelu(linear(a, p[tW1], p[tB1])), p[tW2], p[tB2]))
	}
	return h
}

// head returns the logits of h [..., D]: final layer norm and the dense
// output layer.
func (m *Transformer) head(params []*Node, h *Node) *Node {
	n := len(params)
	return linear(layerNorm(h, params[n-4], params[n-3]), params[n-2], params[n-1])
}

// layerNorm normalises x [..., D] over its last axis (ε = 1e-5) and applies
// the gain g and bias b [D].
func layerNorm(x, g, b *Node) *Node {
	r := x.Rank()
	mu := ReduceAndKeep(x, ReduceMean, -1)
	c := Sub(x, mu)
	v := ReduceAndKeep(Square(c), ReduceMean, -1)
	y := Div(c, Sqrt(AddScalar(v, 1e-5)))
	dims := make([]int, r)
	for i := range dims {
		dims[i] = 1
	}
	dims[r-1] = x.Shape().Dimensions[r-1]
	return Add(Mul(y, Reshape(g, dims...)), Reshape(b, dims...))
}

// gelu is the exact GELU, x·Φ(x) = x/2·(1 + erf(x/√2)).
func gelu(x *Node) *Node {
	return Mul(MulScalar(x, 0.5), OnePlus(Erf(MulScalar(x, 1/math.Sqrt2))))
}
