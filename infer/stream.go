package infer

import "fmt"

// Stream evaluates an MLP on one instrument's event stream: each Push adds
// one event's feature vector and, once Window events are in, yields the
// logits of the window ending with it, equal (up to float rounding) to
// Forward on that window.
//
// A Stream is not safe for concurrent use; use one per goroutine. Streams
// share their MLP's weights read-only.
//
// Layer 0 dominates the cost (Window*F*H multiply-adds per window). Instead
// of keeping the last Window inputs and multiplying the whole window on each
// event, a Stream keeps, for each of the next Window windows, the partial
// layer-0 sum of the events already seen, and adds each event's contribution
// to all of them once. The work per event is the same, but only the newest
// event's contribution to the current window (F*H) lies between an event and
// its logits: the contributions to later windows can be added after the
// logits are out, by Settle.
type Stream struct {
	m    *MLP
	s    *scratch
	acc  []float32 // Window slots of H partial sums, each starting from layer 0's bias; slot head is the window ending with the next event
	xn   []float32 // normalised features of the newest event
	head int
	n    int  // events seen since Reset, up to Window
	owed bool // xn's contributions to later windows are not yet in acc
	// early: yield logits from the first event (ModeCarried), the events
	// before Reset taken as zeros after normalisation.
	early bool
}

// NewStream returns an empty Stream over m.
func (m *MLP) NewStream() *Stream {
	h := m.layers[0].out
	var qs []*qdense // the int8 layers a Stream runs: all but layer 0, and qahead
	if m.q != nil {
		qs = append(qs, m.q[1:]...)
		qs = append(qs, m.qahead)
	}
	s := &Stream{
		m:   m,
		s:   m.newScratch(0, qs...),
		acc: make([]float32, m.window*h),
		xn:  make([]float32, m.nfeat),
	}
	s.Reset()
	return s
}

// NewStreamMode returns an empty Stream over m in mode: ModeWindow (as
// NewStream) or ModeCarried, where Push yields logits from the first event
// since Reset: those of model.MLP.ForwardSeq over the events since Reset as
// one sequence, the missing earlier events of a window at the features'
// means. The partial sums a Stream keeps start from layer 0's bias, so a
// missing event adds nothing, which is exactly a zero after normalisation.
func (m *MLP) NewStreamMode(mode Mode) (*Stream, error) {
	if mode != ModeWindow && mode != ModeCarried {
		return nil, fmt.Errorf("infer: MLP stream: no %s mode", mode)
	}
	s := m.NewStream()
	s.early = mode == ModeCarried
	return s, nil
}

// Reset forgets all events, as if the Stream were new.
func (s *Stream) Reset() {
	b := s.m.layers[0].b
	for i := 0; i < len(s.acc); i += len(b) {
		copy(s.acc[i:], b)
	}
	s.head, s.n, s.owed = 0, 0, false
}

// Ready reports whether Push yields logits: the Stream has seen a full
// window of events since it was made or Reset (in ModeCarried, one event).
func (s *Stream) Ready() bool { return s.n == s.m.window || (s.early && s.n > 0) }

// Push appends one event's raw feature vector (length NumFeatures) and, once
// the Stream has seen Window events, writes the logits of the window ending
// with it (length NumClasses) and returns true. Before that it returns false
// and leaves logits untouched. Push panics on wrong lengths; it does not
// allocate.
//
// Push first does any work owed by the previous Push (see Settle), then
// computes the logits, and leaves the new event's contributions to later
// windows owed.
func (s *Stream) Push(features, logits []float32) (ready bool) {
	m := s.m
	if len(features) != m.nfeat || len(logits) != m.NumClasses() {
		panic(fmt.Sprintf("infer: Stream.Push: got %d features and %d logits, want %d and %d",
			len(features), len(logits), m.nfeat, m.NumClasses()))
	}
	s.Settle()
	xn := s.xn
	normalizeInto(m.simd, xn, features, m.mean, m.invStd)
	l0 := &m.layers[0]
	h := l0.out
	slot := s.acc[s.head*h : (s.head+1)*h]
	m.last.accum(slot, xn)
	if s.n < m.window {
		s.n++
	}
	ready = s.n == m.window || s.early
	if ready {
		m.tail(s.s, slot, logits)
	}
	// The slot becomes the window that ends Window events from now.
	copy(slot, l0.b)
	s.head++
	if s.head == m.window {
		s.head = 0
	}
	s.owed = true
	return ready
}

// Settle adds the newest event's contributions to the next Window-1 windows,
// which Push leaves owed so that the logits come out sooner. Push calls it
// itself when needed; a caller may call it while waiting for the next event
// to take that work (most of the per-event cost) off the next Push's
// latency. Settle does nothing when nothing is owed.
func (s *Stream) Settle() {
	if !s.owed || s.m.window == 1 {
		s.owed = false
		return
	}
	s.owed = false
	m := s.m
	h := m.layers[0].out
	// The newest event is at position Window-1-d of the window ending d
	// events later, which accumulates in slot head+d-1 (head has moved on).
	if q := m.qahead; q != nil {
		sx, no := q.sums(s.xn, s.s.xq, s.s.acc, s.s.outl)
		slot := s.head
		for d := 1; d < m.window; d++ {
			q.addTo(s.acc[slot*h:(slot+1)*h], s.xn, s.s.acc, (d-1)*m.aheadStride, sx, s.s.outl[:no])
			if slot++; slot == m.window {
				slot = 0
			}
		}
		return
	}
	if m.aheadRows != nil {
		// Slots head.. and then 0.. receive consecutive column ranges.
		n := (m.window - 1) * h
		first := min(n, (m.window-s.head)*h)
		accumDense(s.acc[s.head*h:s.head*h+first], s.xn, m.aheadRows, n, 0)
		if first < n {
			accumDense(s.acc[:n-first], s.xn, m.aheadRows, n, first)
		}
		return
	}
	slot := s.head
	for i := range m.ahead {
		m.ahead[i].accum(s.acc[slot*h:(slot+1)*h], s.xn)
		slot++
		if slot == m.window {
			slot = 0
		}
	}
}
