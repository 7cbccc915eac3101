package infer

import (
	"fmt"
	"sync"
)

// rowsMinOut is the layer width from which a dense layer is evaluated row by
// row (y += x[i]·w[i,:], which also skips inactive ReLU units) instead of as
// one dot product per output over transposed weights. Below it, the rows
// are too short to amortise the per-row overhead: at 64 inputs, dot products
// win by 30% for 8 outputs and lose by 12% for 16 (see BenchmarkLayer).
const rowsMinOut = 16

// dense is one affine layer, laid out for its kernel.
type dense struct {
	in, out int
	byRows  bool
	m       mat       // the weights, when byRows
	wt      []float32 // the transposed weights [out, in], when not byRows
	b       []float32
}

// MLP evaluates a loaded "mlp" model. It holds its own copy of the weights,
// laid out for the kernels, and is read-only after NewMLP: Forward may be
// called from many goroutines at once, and many Streams may share one MLP.
type MLP struct {
	window, nfeat int
	mean, invStd  []float32
	layers        []dense
	maxWidth      int
	// Layer 0's weights rearranged for Streams. An event contributes to
	// the window ending d events after it through the weights of position
	// Window-1-d. last holds them for d = 0, [F, H]. For d = 1..Window-1,
	// either ahead[d-1] holds them, [F, H] each (SIMD kernels), or aheadRows
	// holds all of them, [F, (Window-1)*H], row f listing d = 1, 2, ... in
	// turn (long rows suit the scalar kernels: about 13% faster).
	last      mat
	ahead     []mat
	aheadRows []float32
	simd      bool
	scratch   sync.Pool // *scratch for Forward
}

// scratch is the working memory of one evaluation.
type scratch struct {
	xn     []float32 // normalised input
	h0, h1 []float32 // layer outputs, ping-ponged
	vals   []float32 // active units of the previous layer
	idx    []int32
}

func (m *MLP) newScratch(inputLen int) *scratch {
	return &scratch{
		xn:   make([]float32, inputLen),
		h0:   make([]float32, m.maxWidth),
		h1:   make([]float32, m.maxWidth),
		vals: make([]float32, m.maxWidth),
		idx:  make([]int32, m.maxWidth),
	}
}

// NewMLP prepares m for evaluation. m must have Arch "mlp"; it is validated
// and copied, so later changes to m do not affect the MLP.
//
// Built with GOEXPERIMENT=simd on amd64, the MLP uses AVX-512 kernels where
// the CPU has them; otherwise, and by default, portable scalar kernels.
func NewMLP(m *Model) (*MLP, error) {
	return newMLP(m, hasSIMD())
}

func newMLP(m *Model, simd bool) (*MLP, error) {
	if m.Arch != ArchMLP {
		return nil, fmt.Errorf("infer: NewMLP: model arch is %q, not %q", m.Arch, ArchMLP)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("infer: NewMLP: %w", err)
	}
	e := &MLP{
		window: m.Window,
		nfeat:  len(m.Features),
		mean:   append([]float32(nil), m.Mean...),
		invStd: make([]float32, len(m.Std)),
		simd:   simd,
	}
	for i, s := range m.Std {
		e.invStd[i] = 1 / s
	}
	for l := range m.W {
		in, out := m.Layers[l], m.Layers[l+1]
		d := dense{in: in, out: out, b: append([]float32(nil), m.B[l]...), byRows: out >= rowsMinOut}
		if d.byRows {
			d.m = newMat(m.W[l], in, out, simd)
		} else {
			d.wt = transpose(m.W[l], in, out)
		}
		e.layers = append(e.layers, d)
		if l > 0 {
			e.maxWidth = max(e.maxWidth, in)
		}
		e.maxWidth = max(e.maxWidth, out)
	}
	// Row t*F+f of layer 0 is feature f at window position t.
	f, h, w0 := e.nfeat, m.Layers[1], m.W[0]
	pos := func(t int) []float32 { return w0[t*f*h : (t+1)*f*h] }
	e.last = newMat(pos(e.window-1), f, h, simd)
	if simd && h >= tileNarrow {
		for d := 1; d < e.window; d++ {
			e.ahead = append(e.ahead, newMat(pos(e.window-1-d), f, h, true))
		}
	} else {
		n := (e.window - 1) * h
		e.aheadRows = make([]float32, f*n)
		for d := 1; d < e.window; d++ {
			p := pos(e.window - 1 - d)
			for fi := range f {
				copy(e.aheadRows[fi*n+(d-1)*h:][:h], p[fi*h:][:h])
			}
		}
	}
	e.scratch.New = func() any { return e.newScratch(e.window * e.nfeat) }
	return e, nil
}

func transpose(w []float32, rows, cols int) []float32 {
	t := make([]float32, len(w))
	for r := range rows {
		for c := range cols {
			t[c*rows+r] = w[r*cols+c]
		}
	}
	return t
}

// Window returns the number of events in the model's input window.
func (m *MLP) Window() int { return m.window }

// NumFeatures returns the length of one event's feature vector.
func (m *MLP) NumFeatures() int { return m.nfeat }

// NumClasses returns the number of logits the model outputs.
func (m *MLP) NumClasses() int { return m.layers[len(m.layers)-1].out }

// Forward computes the logits for one window. x holds the window's raw
// (unnormalised) feature vectors, oldest first, flattened so that x[t*F+f] is
// feature f of event t; Forward normalises it as the training graph does.
// It panics unless len(x) == Window()*NumFeatures() and
// len(logits) == NumClasses(). It does not allocate, once warm: its working
// memory comes from a pool.
func (m *MLP) Forward(x, logits []float32) {
	if len(x) != m.window*m.nfeat || len(logits) != m.NumClasses() {
		panic(fmt.Sprintf("infer: MLP.Forward: got %d inputs and %d logits, want %d and %d",
			len(x), len(logits), m.window*m.nfeat, m.NumClasses()))
	}
	s := m.scratch.Get().(*scratch)
	xn := s.xn[:len(x)]
	mean, inv := m.mean, m.invStd
	for t := 0; t < len(xn); t += len(mean) {
		xt, nt := x[t:t+len(mean)], xn[t:t+len(mean)]
		inv := inv[:len(xt)]
		for f, v := range mean {
			nt[f] = (xt[f] - v) * inv[f]
		}
	}
	l0 := &m.layers[0]
	h := s.h0[:l0.out]
	if l0.byRows {
		copy(h, l0.b)
		l0.m.accum(h, xn)
	} else {
		matVecT(h, xn, l0.wt, l0.b)
	}
	m.tail(s, h, logits)
	m.scratch.Put(s)
}

// tail runs layers 1.. given layer 0's output h (pre-activation) and writes
// the last layer's output to logits. h must be s.h0[:Layers[1]].
func (m *MLP) tail(s *scratch, h, logits []float32) {
	if len(m.layers) == 1 {
		copy(logits, h)
		return
	}
	next, spare := s.h1, s.h0
	for l := 1; l < len(m.layers); l++ {
		d := &m.layers[l]
		y := next[:d.out]
		if l == len(m.layers)-1 {
			y = logits
		}
		n := compactReLU(h, s.vals, s.idx)
		if d.byRows {
			copy(y, d.b)
			d.m.accumSparse(y, s.vals[:n], s.idx[:n])
		} else {
			matVecTSparse(y, s.vals[:n], s.idx[:n], d.wt, d.b, d.in)
		}
		h, next, spare = y, spare, next
	}
}
