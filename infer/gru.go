package infer

import "fmt"

// gruParams are model.GRU's Params for s: gru.wx [F, 3H], gru.wh [H, 3H],
// gru.bx [3H], gru.bh [3H], out.w [H, C], out.b [C].
func gruParams(s *Spec) []Param {
	f, h, c := len(s.Features), s.Hidden, len(s.Classes)
	return []Param{
		{Name: "gru.wx", Shape: []int{f, 3 * h}},
		{Name: "gru.wh", Shape: []int{h, 3 * h}},
		{Name: "gru.bx", Shape: []int{3 * h}},
		{Name: "gru.bh", Shape: []int{3 * h}},
		{Name: "out.w", Shape: []int{h, c}},
		{Name: "out.b", Shape: []int{c}},
	}
}

// GRU evaluates a loaded "gru" model: model.GRU, a single-layer GRU with
// PyTorch's cell (gates r, z, n; biases bx and bh) and a dense layer on its
// last state. It holds its own copy of the weights and is read-only after
// NewGRU: many GRUStreams, on many goroutines, may share one GRU.
type GRU struct {
	window, nfeat, hidden, classes int
	mean, invStd                   []float32
	wx, wh                         mat       // [F, 3H], [H, 3H] for one row
	whRows                         []float32 // wh row-major [H, 3H], for several
	bx, bh                         []float32
	outT, outB                     []float32 // out.w transposed [C, H]; out.b
	simd                           bool
}

// NewGRU prepares m, which must have Arch "gru", for evaluation. m is
// validated and copied. Built with GOEXPERIMENT=simd on amd64, the GRU uses
// AVX-512 kernels where the CPU has them.
func NewGRU(m *Model) (*GRU, error) { return newGRU(m, hasSIMD()) }

func newGRU(m *Model, simd bool) (*GRU, error) {
	if err := checkArch("NewGRU", m, ArchGRU); err != nil {
		return nil, err
	}
	f, h, c := len(m.Features), m.Hidden, len(m.Classes)
	p := m.Weights
	return &GRU{
		window: m.Window, nfeat: f, hidden: h, classes: c,
		mean:   append([]float32(nil), m.Mean...),
		invStd: inverse(m.Std),
		wx:     newMat(p[0], f, 3*h, simd),
		wh:     newMat(p[1], h, 3*h, simd),
		whRows: append([]float32(nil), p[1]...),
		bx:     append([]float32(nil), p[2]...),
		bh:     append([]float32(nil), p[3]...),
		outT:   transpose(p[4], h, c),
		outB:   append([]float32(nil), p[5]...),
		simd:   simd,
	}, nil
}

// Window returns the number of events of the training window.
func (g *GRU) Window() int { return g.window }

// NumFeatures returns the length of one event's feature vector.
func (g *GRU) NumFeatures() int { return g.nfeat }

// NumClasses returns the number of logits.
func (g *GRU) NumClasses() int { return g.classes }

// GRUStream runs a GRU over one instrument's events, in one of two modes.
//
// ModeWindow equals model.GRU.Forward, the forward the model is trained
// with: once Window events are in, each Push yields the logits of the GRU
// run from a zero state over the last Window events. Every window starts
// from zero, so each event costs Window cell steps: there is no exact
// shortcut. The stream keeps the Window windows in progress, each with its
// own state, and each event advances all of them by one step. Only the step
// that completes the oldest window lies between an event and its logits,
// and even of that step, the recurrent product h·wh + bh is known before
// the event arrives. The rest (advancing the other windows, and the
// recurrent products of all of them, as one matrix product) is left owed by
// Push, for Settle or the next Push.
//
// ModeCarried is one cell step per event with the state carried since
// Reset, ready from the first event: the logits equal those of
// model.GRU.ForwardSeq over all events since Reset as one sequence, the
// forward of a model trained on long sequences. For a model trained on
// windows with Forward they differ from ModeWindow's once more than Window
// events are in. Here too the recurrent product of the state is computed
// ahead, by Settle or the next Push.
//
// ModeWindow keeps 4·Window·H floats of state (100 KB for a GRU-64 with a
// window of 100), ModeCarried 4·H.
//
// Push normalises the features as the training graph does, (x-mean)/std.
// A GRUStream is not safe for concurrent use; use one per goroutine.
type GRUStream struct {
	g    *GRU
	mode Mode
	xn   []float32 // normalised features of the newest event
	gx   []float32 // its x·wx + bx [3H]
	// h holds the carried state [H] (ModeCarried) or the states of the
	// windows in progress [Window, H] (ModeWindow): the window that starts
	// with event s since Reset has slot s mod Window. gh holds, slot by
	// slot, h·wh + bh [3H] once settled.
	h, gh []float32
	n     int  // events since Reset
	owed  bool // the newest event's work beyond its logits is not done
}

// NewStream returns an empty stream over g in mode ModeWindow or
// ModeCarried; it panics on another mode.
func (g *GRU) NewStream(mode Mode) *GRUStream {
	slots := 1
	switch mode {
	case ModeWindow:
		slots = g.window
	case ModeCarried:
	default:
		panic(fmt.Sprintf("infer: GRU.NewStream: mode %v is not supported (window or carried)", mode))
	}
	s := &GRUStream{
		g: g, mode: mode,
		xn: make([]float32, g.nfeat), gx: make([]float32, 3*g.hidden),
		h: make([]float32, slots*g.hidden), gh: make([]float32, slots*3*g.hidden),
	}
	s.Reset()
	return s
}

// Reset forgets all events, as if the stream were new.
func (s *GRUStream) Reset() {
	clear(s.h)
	if s.mode == ModeCarried {
		copy(s.gh, s.g.bh) // h·wh + bh for h = 0
	}
	s.n, s.owed = 0, false
}

// Ready reports whether Push yields logits: in ModeWindow once Window events
// are in since Reset, in ModeCarried once any is.
func (s *GRUStream) Ready() bool {
	if s.mode == ModeCarried {
		return s.n > 0
	}
	return s.n >= s.g.window
}

// Push adds one event's raw feature vector (length NumFeatures) and, when
// the stream is ready (see Ready), writes the logits (length NumClasses) and
// returns true; otherwise it returns false and leaves logits untouched. It
// panics on wrong lengths and does not allocate.
func (s *GRUStream) Push(features, logits []float32) (ready bool) {
	g := s.g
	checkLens("GRUStream.Push", features, logits, g.nfeat, g.classes)
	s.Settle()
	normalizeInto(g.simd, s.xn, features, g.mean, g.invStd)
	copy(s.gx, g.bx)
	g.wx.accum(s.gx, s.xn)
	t := s.n
	s.n++
	hd, w := g.hidden, g.window
	slot := 0
	if s.mode == ModeWindow {
		if t < w-1 {
			s.owed = true
			return false
		}
		// The window that started with event t-w+1 takes its last step.
		slot = (t + 1) % w
		if w == 1 {
			s.startWindow(slot)
		}
	}
	h := s.h[slot*hd : (slot+1)*hd]
	gruUpdate(g.simd, h, s.gx, s.gh[slot*3*hd:(slot+1)*3*hd])
	denseOut(g.simd, logits, h, g.outT, g.outB)
	s.owed = s.mode == ModeCarried || w > 1
	return true
}

// startWindow sets slot's state to zero, with h·wh + bh = bh.
func (s *GRUStream) startWindow(slot int) {
	hd := s.g.hidden
	clear(s.h[slot*hd : (slot+1)*hd])
	copy(s.gh[slot*3*hd:(slot+1)*3*hd], s.g.bh)
}

// Settle does the newest event's work beyond its logits, which Push leaves
// owed so that the logits come out sooner: in ModeWindow the event's steps
// of the windows still in progress, and in both modes the recurrent
// products h·wh + bh that the next event's steps need. Push calls it itself
// when needed; a caller may call it while waiting for the next event. It
// does nothing when nothing is owed.
func (s *GRUStream) Settle() {
	if !s.owed {
		return
	}
	s.owed = false
	g := s.g
	hd := g.hidden
	if s.mode == ModeCarried {
		copy(s.gh, g.bh)
		g.wh.accum(s.gh, s.h)
		return
	}
	w := g.window
	t := s.n - 1
	// The windows that started with events first..t take event t (the one
	// that started with t from a zero state), then their next recurrent
	// products. Their slots run from first mod w, wrapping around at most
	// once.
	first := max(0, t-w+2)
	s.startWindow(t % w)
	for a, m := first%w, t-first+1; m > 0; a = 0 {
		c := min(m, w-a)
		h, gh := s.h[a*hd:(a+c)*hd], s.gh[a*3*hd:(a+c)*3*hd]
		for i := range c {
			gruUpdate(g.simd, h[i*hd:(i+1)*hd], s.gx, gh[i*3*hd:(i+1)*3*hd])
		}
		linearRows(g.simd, gh, 3*hd, h, hd, c, g.whRows, 3*hd, hd, 3*hd, g.bh)
		m -= c
	}
}
