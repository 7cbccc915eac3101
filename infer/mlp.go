package infer

import (
	"cmp"
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
	// meanW and invStdW repeat mean and invStd for each event of a window,
	// so that Forward normalises a window in one pass.
	meanW, invStdW []float32
	layers         []dense
	maxWidth       int
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
	// q[l] is layer l in int8 (see int8.go) for an MLP built with
	// WeightsInt8, else nil; q is nil for float32 weights. Every layer but
	// the last is int8; Streams use q[0] only through qahead (an event's
	// own contribution to the window it completes stays float32, in last).
	q []*qdense
	// qahead, with int8 weights, holds the ahead weights of every d as one
	// signed int8 layer [F, (Window-1)*aheadStride]: position d's H
	// columns start at (d-1)*aheadStride, a multiple of 64.
	qahead      *qdense
	aheadStride int
	weights     Weights
	scratch     sync.Pool // *scratch for Forward
}

// Weights selects how an engine stores and multiplies its weights.
type Weights string

const (
	// WeightsFloat32 keeps the trained float32 weights: outputs equal the
	// training graph's within float rounding (1e-5 relative). The default.
	WeightsFloat32 Weights = "float32"
	// WeightsInt8 stores every layer of an MLP but the output layer as
	// int8 with per-column scales and multiplies them in integers (int8.go):
	// smaller and faster, at a bounded cost in accuracy (measured in
	// BENCHMARKS.md; TestInt8Accuracy asserts the bound). Only MLPs.
	WeightsInt8 Weights = "int8"
)

// ParseWeights returns the Weights named s ("float32" or "int8").
func ParseWeights(s string) (Weights, error) {
	if err := Weights(s).check(); err != nil {
		return "", fmt.Errorf("infer: %w", err)
	}
	return Weights(s), nil
}

func (w Weights) check() error {
	if w != WeightsFloat32 && w != WeightsInt8 {
		return fmt.Errorf("weights %q, want %q or %q", string(w), WeightsFloat32, WeightsInt8)
	}
	return nil
}

// Options tune how an engine is prepared. The zero value is the default.
type Options struct {
	Weights Weights // "" means WeightsFloat32

	noVNNI bool // tests: the portable int8 kernels even where VNNI runs
}

// scratch is the working memory of one evaluation.
type scratch struct {
	xn     []float32 // normalised input
	h0, h1 []float32 // layer outputs, ping-ponged
	vals   []float32 // active units of the previous layer
	idx    []int32
	xq     []byte  // quantised input of an int8 layer; zero past the layer's inputs
	acc    []int32 // int32 sums of an int8 layer
	outl   []int32 // outlier inputs of a signed int8 layer
}

// newScratch returns working memory for inputs of inputLen (0 for Streams,
// which normalise into their own) and for the int8 layers qs.
func (m *MLP) newScratch(inputLen int, qs ...*qdense) *scratch {
	s := &scratch{
		xn:   make([]float32, inputLen),
		h0:   make([]float32, m.maxWidth),
		h1:   make([]float32, m.maxWidth),
		vals: make([]float32, m.maxWidth),
		idx:  make([]int32, m.maxWidth),
	}
	for _, q := range qs {
		if q != nil {
			s.xq = make([]byte, max(len(s.xq), q.groups*4))
			s.acc = make([]int32, max(len(s.acc), q.tiles*64))
			s.outl = make([]int32, max(len(s.outl), q.in))
		}
	}
	return s
}

// NewMLP prepares m for evaluation. m must have Arch "mlp"; it is validated
// and copied, so later changes to m do not affect the MLP.
//
// Built with GOEXPERIMENT=simd on amd64, the MLP uses AVX-512 kernels where
// the CPU has them; otherwise, and by default, portable scalar kernels.
func NewMLP(m *Model) (*MLP, error) {
	return newMLP(m, hasSIMD(), Options{})
}

// NewMLPWith is NewMLP with options: Options{Weights: WeightsInt8} gives the
// int8 engine.
func NewMLPWith(m *Model, o Options) (*MLP, error) {
	return newMLP(m, hasSIMD(), o)
}

func newMLP(m *Model, simd bool, o Options) (*MLP, error) {
	if m.Arch != ArchMLP {
		return nil, fmt.Errorf("infer: NewMLP: model arch is %q, not %q", m.Arch, ArchMLP)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("infer: NewMLP: %w", err)
	}
	e := &MLP{
		window:  m.Window,
		nfeat:   len(m.Features),
		mean:    append([]float32(nil), m.Mean...),
		invStd:  make([]float32, len(m.Std)),
		simd:    simd,
		weights: cmp.Or(o.Weights, WeightsFloat32),
	}
	if err := e.weights.check(); err != nil {
		return nil, fmt.Errorf("infer: NewMLP: %w", err)
	}
	vnni := hasVNNI() && !o.noVNNI
	if e.weights == WeightsInt8 {
		e.q = make([]*qdense, len(m.W))
	}
	for i, s := range m.Std {
		e.invStd[i] = 1 / s
	}
	for range m.Window {
		e.meanW = append(e.meanW, e.mean...)
		e.invStdW = append(e.invStdW, e.invStd...)
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
		if e.q != nil && l < len(m.W)-1 {
			q, err := newQDense(m.W[l], m.B[l], in, out, l == 0, vnni)
			if err != nil {
				return nil, fmt.Errorf("infer: NewMLP: layer %d: %w", l, err)
			}
			e.q[l] = q
			e.maxWidth = max(e.maxWidth, q.tiles*64)
		}
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
	if e.q != nil && e.window > 1 {
		// int8 Streams: the contributions of an event to the next Window-1
		// windows as one int8 product, the event's features quantised with
		// their own scale.
		e.aheadStride = (h + 63) / 64 * 64
		n := (e.window - 1) * e.aheadStride
		wa := make([]float32, f*n)
		for d := 1; d < e.window; d++ {
			p := pos(e.window - 1 - d)
			for fi := range f {
				copy(wa[fi*n+(d-1)*e.aheadStride:][:h], p[fi*h:][:h])
			}
		}
		q, err := newQDense(wa, nil, f, n, true, vnni)
		if err != nil {
			return nil, fmt.Errorf("infer: NewMLP: layer 0 of streams: %w", err)
		}
		e.qahead = q
	}
	e.scratch.New = func() any { return e.newScratch(e.window*e.nfeat, e.q...) }
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

// Weights returns how the MLP stores its weights.
func (m *MLP) Weights() Weights { return m.weights }

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
	normalizeInto(m.simd, xn, x, m.meanW, m.invStdW)
	l0 := &m.layers[0]
	h := s.h0[:l0.out]
	if m.q != nil && m.q[0] != nil {
		m.q[0].apply(s.h0, xn, s.xq, s.acc, s.outl)
	} else if l0.byRows {
		copy(h, l0.b)
		l0.m.accum(h, xn)
	} else {
		matVecT(h, xn, l0.wt, l0.b)
	}
	m.tail(s, h, logits)
	m.scratch.Put(s)
}

// tail runs layers 1.. given layer 0's output h (pre-activation) and writes
// the last layer's output to logits. h is s.h0[:Layers[1]] or memory of the
// caller's; tail does not write to it.
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
		if m.q != nil && m.q[l] != nil {
			m.q[l].apply(next, h, s.xq, s.acc, s.outl)
			h, next, spare = y, spare, next
			continue
		}
		if !d.byRows && m.simd && d.in >= 32 {
			for o := range y {
				y[o] = d.b[o] + dotReLU(h, d.wt[o*d.in:(o+1)*d.in])
			}
			h, next, spare = y, spare, next
			continue
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
