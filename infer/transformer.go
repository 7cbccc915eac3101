package infer

import (
	"fmt"
	"math"
	"strconv"
)

// Per-block parameters of model.Transformer, in Params order.
const (
	tfLN1G = iota
	tfLN1B
	tfQKVW
	tfQKVB
	tfOW
	tfOB
	tfLN2G
	tfLN2B
	tfW1
	tfB1
	tfW2
	tfB2
	tfBlock // entries per block
)

// transformerParams are model.Transformer's Params for s: in.w [F, D],
// in.b [D], pos [W, D]; per block l, l.ln1.g, l.ln1.b [D], l.attn.wqkv
// [D, 3D], l.attn.bqkv [3D], l.attn.wo [D, D], l.attn.bo [D], l.ln2.g,
// l.ln2.b [D], l.mlp.w1 [D, FF], l.mlp.b1 [FF], l.mlp.w2 [FF, D],
// l.mlp.b2 [D]; then lnf.g, lnf.b [D], out.w [D, C], out.b [C].
func transformerParams(s *Spec) []Param {
	d, ff := s.DModel, s.FF
	ps := []Param{
		{Name: "in.w", Shape: []int{len(s.Features), d}},
		{Name: "in.b", Shape: []int{d}},
		{Name: "pos", Shape: []int{s.Window, d}},
	}
	for l := range s.Blocks {
		p := func(n string, dims ...int) Param { return Param{Name: strconv.Itoa(l) + "." + n, Shape: dims} }
		ps = append(ps,
			p("ln1.g", d), p("ln1.b", d),
			p("attn.wqkv", d, 3*d), p("attn.bqkv", 3*d),
			p("attn.wo", d, d), p("attn.bo", d),
			p("ln2.g", d), p("ln2.b", d),
			p("mlp.w1", d, ff), p("mlp.b1", ff),
			p("mlp.w2", ff, d), p("mlp.b2", d))
	}
	return append(ps,
		Param{Name: "lnf.g", Shape: []int{d}}, Param{Name: "lnf.b", Shape: []int{d}},
		Param{Name: "out.w", Shape: []int{d, len(s.Classes)}}, Param{Name: "out.b", Shape: []int{len(s.Classes)}})
}

// Transformer evaluates a loaded "transformer" model: model.Transformer, a
// pre-LN causal transformer with learned positions. It holds its own copy of
// the weights and is read-only after NewTransformer: many
// TransformerStreams, on many goroutines, may share one Transformer.
type Transformer struct {
	window, nfeat, d, heads, ff, classes int
	mean, invStd                         []float32
	inW, inB, pos                        []float32
	blocks                               [][][]float32 // blocks[l][tfLN1G...tfB2]
	lnfG, lnfB, outT, outB               []float32     // outT: out.w transposed [C, D]
	simd                                 bool
}

// NewTransformer prepares m, which must have Arch "transformer", for
// evaluation. m is validated and copied. Built with GOEXPERIMENT=simd on
// amd64, it uses AVX-512 kernels where the CPU has them.
func NewTransformer(m *Model) (*Transformer, error) { return newTransformer(m, hasSIMD()) }

func newTransformer(m *Model, simd bool) (*Transformer, error) {
	if err := checkArch("NewTransformer", m, ArchTransformer); err != nil {
		return nil, err
	}
	cp := func(v []float32) []float32 { return append([]float32(nil), v...) }
	p := m.Weights
	e := &Transformer{
		window: m.Window, nfeat: len(m.Features), d: m.DModel, heads: m.Heads, ff: m.FF, classes: len(m.Classes),
		mean: cp(m.Mean), invStd: inverse(m.Std),
		inW: cp(p[0]), inB: cp(p[1]), pos: cp(p[2]),
		simd: simd,
	}
	for l := range m.Blocks {
		b := make([][]float32, tfBlock)
		for i := range b {
			b[i] = cp(p[3+l*tfBlock+i])
		}
		e.blocks = append(e.blocks, b)
	}
	n := len(p)
	e.lnfG, e.lnfB = cp(p[n-4]), cp(p[n-3])
	e.outT, e.outB = transpose(p[n-2], e.d, e.classes), cp(p[n-1])
	return e, nil
}

// Window returns the number of events of the training window (and of
// learned positions).
func (e *Transformer) Window() int { return e.window }

// NumFeatures returns the length of one event's feature vector.
func (e *Transformer) NumFeatures() int { return e.nfeat }

// NumClasses returns the number of logits.
func (e *Transformer) NumClasses() int { return e.classes }

// TransformerStream runs a Transformer over one instrument's events, in one
// of two modes.
//
// ModeWindow equals model.Transformer.Forward, the forward the model is
// trained with: once Window events are in, each Push yields the logits of
// the last position of the window of the last Window events, numbered 0 to
// Window-1 for the learned positions. As the window slides, every event
// changes position, and so do every key and value, in every block: a
// key-value cache cannot carry over from one window to the next, and each
// window costs a full forward over its Window events. But attention is
// causal, so a window's first k positions do not depend on its later
// events: the stream keeps the Window windows in progress, each with its
// own key-value cache, and each event adds one position to each of them.
// Only the position that completes the oldest window lies between an event
// and its logits; the others are left owed by Push, for Settle or the next
// Push. (Of the last block, those need only their keys and values.)
//
// ModeSegment is a key-value cache over one sequence at a time, one
// position per event: it equals model.Transformer.ForwardSeq over the events
// since Reset cut into consecutive sequences of Window events (the first
// Window events, the next Window, ...), each position numbered within its
// sequence, and yields logits from the first event. The context therefore
// grows from 1 to Window events and then starts again: the KV cache is
// exact only because a sequence never exceeds Window events, the number of
// learned positions. For a model trained on windows with Forward, it equals
// ModeWindow at every Window-th event only.
//
// The key-value caches take 2·Window·D·Blocks floats per sequence: Window
// sequences in ModeWindow (2.6 MB for the default model with a window of
// 50), one in ModeSegment.
//
// Push normalises the features as the training graph does, (x-mean)/std.
// A TransformerStream is not safe for concurrent use; use one per
// goroutine.
type TransformerStream struct {
	e    *Transformer
	mode Mode
	xn   []float32 // normalised features of the newest event
	emb  []float32 // its x·in.w + in.b [D]
	// kv holds each sequence's keys and values: slot, block, then K
	// [Window, D] and V [Window, D]. In ModeWindow the window that starts
	// with event s since Reset has slot s mod Window; ModeSegment has one.
	kv []float32
	// Working memory for up to Window rows (sequences) at once.
	h, a, o []float32 // [rows, D]
	qkv     []float32 // [rows, 3D]
	u       []float32 // [rows, FF]
	att     []float32 // [Window]
	rows    []tfRow
	n       int  // events since Reset
	owed    bool // the newest event's positions of the other windows are not done
}

// tfRow is one sequence taking a position.
type tfRow struct{ slot, pos int }

// NewStream returns an empty stream over e in mode ModeWindow or
// ModeSegment; it panics on another mode.
func (e *Transformer) NewStream(mode Mode) *TransformerStream {
	slots := 1
	switch mode {
	case ModeWindow:
		slots = e.window
	case ModeSegment:
	default:
		panic(fmt.Sprintf("infer: Transformer.NewStream: mode %v is not supported (window or segment)", mode))
	}
	w, d := e.window, e.d
	return &TransformerStream{
		e: e, mode: mode,
		xn: make([]float32, e.nfeat), emb: make([]float32, d),
		kv:   make([]float32, slots*len(e.blocks)*2*w*d),
		h:    make([]float32, slots*d),
		a:    make([]float32, slots*d),
		o:    make([]float32, slots*d),
		qkv:  make([]float32, slots*3*d),
		u:    make([]float32, slots*e.ff),
		att:  make([]float32, w),
		rows: make([]tfRow, 0, slots),
	}
}

// Reset forgets all events, as if the stream were new.
func (s *TransformerStream) Reset() { s.n, s.owed = 0, false }

// Ready reports whether Push yields logits: in ModeWindow once Window events
// are in since Reset, in ModeSegment once any is.
func (s *TransformerStream) Ready() bool {
	if s.mode == ModeSegment {
		return s.n > 0
	}
	return s.n >= s.e.window
}

// Push adds one event's raw feature vector (length NumFeatures) and, when
// the stream is ready (see Ready), writes the logits (length NumClasses) and
// returns true; otherwise it returns false and leaves logits untouched. It
// panics on wrong lengths and does not allocate.
func (s *TransformerStream) Push(features, logits []float32) (ready bool) {
	e := s.e
	checkLens("TransformerStream.Push", features, logits, e.nfeat, e.classes)
	s.Settle()
	normalizeInto(e.simd, s.xn, features, e.mean, e.invStd)
	linearRows(e.simd, s.emb, e.d, s.xn, e.nfeat, 1, e.inW, e.d, e.nfeat, e.d, e.inB)
	t := s.n
	s.n++
	w := e.window
	if s.mode == ModeSegment {
		s.rows = append(s.rows[:0], tfRow{0, t % w})
		s.forward(logits)
		return true
	}
	s.owed = w > 1
	if t < w-1 {
		return false
	}
	// The window that started with event t-w+1 takes its last position.
	s.rows = append(s.rows[:0], tfRow{(t + 1) % w, w - 1})
	s.forward(logits)
	return true
}

// Settle adds the newest event's positions to the windows still in progress
// (ModeWindow), which Push leaves owed so that the logits come out sooner.
// Push calls it itself when needed; a caller may call it while waiting for
// the next event. It does nothing when nothing is owed and in ModeSegment.
func (s *TransformerStream) Settle() {
	if !s.owed {
		return
	}
	s.owed = false
	w, t := s.e.window, s.n-1
	s.rows = s.rows[:0]
	for start := max(0, t-w+2); start <= t; start++ {
		s.rows = append(s.rows, tfRow{start % w, t - start})
	}
	s.forward(nil)
}

// forward runs the newest event (s.emb) through the blocks as position
// r.pos of the sequence in slot r.slot, for each r of s.rows, adding its
// keys and values to each sequence's cache. With logits (one row only), it
// writes the row's logits; without, the last block stops at the keys and
// values.
func (s *TransformerStream) forward(logits []float32) {
	e := s.e
	d, w, ff, simd := e.d, e.window, e.ff, e.simd
	m := len(s.rows)
	h, a, o, qkv, u := s.h[:m*d], s.a[:m*d], s.o[:m*d], s.qkv[:m*3*d], s.u[:m*ff]
	for i, r := range s.rows {
		hi, p := h[i*d:(i+1)*d], e.pos[r.pos*d:(r.pos+1)*d]
		for j, v := range s.emb[:d] {
			hi[j] = v + p[j]
		}
	}
	nb := len(e.blocks)
	for l, b := range e.blocks {
		for i := range m {
			layerNormInto(simd, a[i*d:(i+1)*d], h[i*d:(i+1)*d], b[tfLN1G], b[tfLN1B])
		}
		last := l == nb-1 && logits == nil
		if last {
			// Keys and values only: columns D..3D of the projection.
			linearRows(simd, qkv[d:], 3*d, a, d, m, b[tfQKVW][d:], 3*d, d, 2*d, b[tfQKVB][d:])
		} else {
			linearRows(simd, qkv, 3*d, a, d, m, b[tfQKVW], 3*d, d, 3*d, b[tfQKVB])
		}
		for i, r := range s.rows {
			kv := s.cache(r.slot, l)
			for j, v := range qkv[i*3*d+d : i*3*d+2*d] {
				kv[j*w+r.pos] = v // keys transposed
			}
			copy(kv[(w+r.pos)*d:(w+r.pos+1)*d], qkv[i*3*d+2*d:i*3*d+3*d])
		}
		if last {
			return
		}
		for i, r := range s.rows {
			s.attend(o[i*d:(i+1)*d], qkv[i*3*d:i*3*d+d], s.cache(r.slot, l), r.pos)
		}
		// h += o·wo + bo; h += gelu(LN2(h)·w1 + b1)·w2 + b2.
		addRows(h, d, m, b[tfOB])
		gemm(simd, h, d, o, d, m, b[tfOW], d, d, d)
		for i := range m {
			layerNormInto(simd, a[i*d:(i+1)*d], h[i*d:(i+1)*d], b[tfLN2G], b[tfLN2B])
		}
		linearRows(simd, u, ff, a, d, m, b[tfW1], ff, d, ff, b[tfB1])
		geluInPlace(simd, u)
		addRows(h, d, m, b[tfB2])
		gemm(simd, h, d, u, ff, m, b[tfW2], d, ff, d)
	}
	layerNormInto(simd, a[:d], h[:d], e.lnfG, e.lnfB)
	denseOut(simd, logits, a[:d], e.outT, e.outB)
}

// cache returns the keys and values of block l of slot's sequence: the
// keys transposed [D, Window] (position-contiguous, so that a head's scores
// over all positions are one matrix product), then the values [Window, D].
func (s *TransformerStream) cache(slot, l int) []float32 {
	n := 2 * s.e.window * s.e.d
	i := (slot*len(s.e.blocks) + l) * n
	return s.kv[i : i+n]
}

// attend sets o [D] to the causal multi-head attention of the query q [D]
// at position pos over the keys and values kv (see cache) of positions
// 0..pos: per head, softmax(q·kⱼ/√dₕ) weighting vⱼ.
func (s *TransformerStream) attend(o, q, kv []float32, pos int) {
	e := s.e
	d, w, nh, simd := e.d, e.window, e.heads, e.simd
	dh := d / nh
	scale := float32(1 / math.Sqrt(float64(dh)))
	att := s.att[:pos+1]
	clear(o)
	for hd := range nh {
		c := hd * dh
		clear(att)
		gemm(simd, att, 0, q[c:c+dh], 0, 1, kv[c*w:], w, dh, pos+1)
		for j := range att {
			att[j] *= scale
		}
		softmaxInPlace(simd, att)
		gemm(simd, o[c:c+dh], 0, att, 0, 1, kv[w*d+c:], d, pos+1, dh)
	}
}

// addRows adds b [n] to each of m rows of y (row stride n).
func addRows(y []float32, n, m int, b []float32) {
	b = b[:n]
	for i := range m {
		r := y[i*n : (i+1)*n]
		for j, v := range b {
			r[j] += v
		}
	}
}
