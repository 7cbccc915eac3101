package infer

import (
	"fmt"
	"sync"
)

// deeplobColumns is the width of DeepLOB's book image: ask_d, ask_q, bid_d,
// bid_q of 10 levels.
const deeplobColumns = 40

// deeplobConvs lists model.DeepLOB's convolutions in Params order: name,
// kernel height (time), kernel width (levels), in and out channels.
func deeplobConvs(s *Spec) []dlConvSpec {
	c, i := s.Conv, s.Inception
	return []dlConvSpec{
		{"conv1a", 1, 2, 1, c}, {"conv1b", 4, 1, c, c}, {"conv1c", 4, 1, c, c},
		{"conv2a", 1, 2, c, c}, {"conv2b", 4, 1, c, c}, {"conv2c", 4, 1, c, c},
		{"conv3a", 1, 10, c, c}, {"conv3b", 4, 1, c, c}, {"conv3c", 4, 1, c, c},
		{"inc1.conv1x1", 1, 1, c, i}, {"inc1.conv3x1", 3, 1, i, i},
		{"inc2.conv1x1", 1, 1, c, i}, {"inc2.conv5x1", 5, 1, i, i},
		{"inc3.conv1x1", 1, 1, c, i},
	}
}

type dlConvSpec struct {
	name            string
	kh, kw, in, out int
}

// deeplobParams are model.DeepLOB's Params for s: <conv>.w [kh, kw, in, out]
// and <conv>.b [out] for each convolution of deeplobConvs, then lstm.wx
// [3I, 4H], lstm.wh [H, 4H], lstm.b [4H], out.w [H, C], out.b [C].
func deeplobParams(s *Spec) []Param {
	var ps []Param
	for _, c := range deeplobConvs(s) {
		ps = append(ps,
			Param{Name: c.name + ".w", Shape: []int{c.kh, c.kw, c.in, c.out}},
			Param{Name: c.name + ".b", Shape: []int{c.out}})
	}
	h := s.Hidden
	return append(ps,
		Param{Name: "lstm.wx", Shape: []int{3 * s.Inception, 4 * h}},
		Param{Name: "lstm.wh", Shape: []int{h, 4 * h}},
		Param{Name: "lstm.b", Shape: []int{4 * h}},
		Param{Name: "out.w", Shape: []int{h, len(s.Classes)}},
		Param{Name: "out.b", Shape: []int{len(s.Classes)}})
}

// dlConv is one convolution's weights as a matrix [kh·kw·in, out]: row
// j·in + c is channel c of tap j (a time offset, or a level within the
// group for the 1×k convolutions).
type dlConv struct {
	w, b    []float32
	k, in   int // taps (kh or kw) and input channels
	out     int
	tapSize int // in·out: the rows of one tap
}

// The DeepLOB stream computes eight nodes per event position. Node k is a
// function of node k-1 at positions p-before .. p+after (see dlSpan; node 1,
// of the event itself), and the convolutions' 'same' padding makes node k's
// first lo[k] and last hi[k] positions of a window depend on the padding.
//
//	node 1  a1 = lrelu(conv1a(x))                           [20, C]
//	node 2  b1 = lrelu(conv1b(a1))                          [20, C]
//	node 3  a2 = lrelu(conv2a(lrelu(conv1c(b1))))           [10, C]
//	node 4  b2 = lrelu(conv2b(a2))                          [10, C]
//	node 5  a3 = lrelu(conv3a(lrelu(conv2c(b2))))           [C]
//	node 6  b3 = lrelu(conv3b(a3))                          [C]
//	node 7  h = lrelu(conv3c(b3)), u1 = lrelu(inc1.conv1x1(h)),
//	        u2 = lrelu(inc2.conv1x1(h))                     [C + 2I]
//	node 8  the LSTM's input projection [i1, i2, i3]·wx + b [4H], with
//	        i1 = lrelu(inc1.conv3x1(u1)), i2 = lrelu(inc2.conv5x1(u2)),
//	        i3 = lrelu(inc3.conv1x1(maxpool3(h)))
//
// Nodes 2 to 7 read node k-1 one position before to two after (4×1
// convolutions: 'same' padding puts 1 row before and 2 after); node 8 two
// before to two after (the 5×1 branch; the 3×1 and max-pool branches read
// one before to one after).
const dlNodes = 8

// dlSpan returns how many positions before and after its own node k reads
// of node k-1.
func dlSpan(k int) (before, after int) {
	switch {
	case k < 2:
		return 0, 0
	case k < dlNodes:
		return 1, 2
	}
	return 2, 2
}

// DeepLOB evaluates a loaded "deeplob" model: model.DeepLOB, the
// convolutional-LSTM model of Zhang, Zohren and Roberts (2019). It holds its
// own copy of the weights and is read-only after NewDeepLOB (but for the
// carried streams' starting state, computed once under a sync.Once): many
// DeepLOBStreams, on many goroutines, may share one DeepLOB.
type DeepLOB struct {
	window, nfeat, conv, inc, hidden, classes int
	index                                     []int     // feature position of each image column
	mean, invStd                              []float32 // of each image column
	convs                                     []dlConv  // in deeplobConvs order
	lstmWx                                    []float32 // [3I, 4H]
	lstmWh                                    mat       // [H, 4H]
	lstmB                                     []float32
	outT, outB                                []float32 // out.w transposed [C, H]; out.b
	width                                     [dlNodes + 1]int
	lo, hi                                    [dlNodes + 1]int // positions of a window that depend on the padding, at each end
	simd                                      bool
	// zeroStart is a settled stream after Window-1 zero events, computed
	// once (on the first carried Reset) and copied by every carried Reset.
	zeroOnce  sync.Once
	zeroStart *DeepLOBStream
}

// Indices into DeepLOB.convs.
const (
	dlC1a = iota
	dlC1b
	dlC1c
	dlC2a
	dlC2b
	dlC2c
	dlC3a
	dlC3b
	dlC3c
	dlI1a
	dlI1b
	dlI2a
	dlI2b
	dlI3
)

// NewDeepLOB prepares m, which must have Arch "deeplob", for evaluation. m
// is validated and copied. Built with GOEXPERIMENT=simd on amd64, it uses
// AVX-512 kernels where the CPU has them.
func NewDeepLOB(m *Model) (*DeepLOB, error) { return newDeepLOB(m, hasSIMD()) }

func newDeepLOB(m *Model, simd bool) (*DeepLOB, error) {
	if err := checkArch("NewDeepLOB", m, ArchDeepLOB); err != nil {
		return nil, err
	}
	cp := func(v []float32) []float32 { return append([]float32(nil), v...) }
	c, i, h := m.Conv, m.Inception, m.Hidden
	e := &DeepLOB{
		window: m.Window, nfeat: len(m.Features), conv: c, inc: i, hidden: h, classes: len(m.Classes),
		index: append([]int(nil), m.BookIndex...),
		simd:  simd,
	}
	for _, j := range e.index {
		e.mean = append(e.mean, m.Mean[j])
		e.invStd = append(e.invStd, 1/m.Std[j])
	}
	p := m.Weights
	for n, cs := range deeplobConvs(&m.Spec) {
		k := cs.kh * cs.kw
		e.convs = append(e.convs, dlConv{w: cp(p[2*n]), b: cp(p[2*n+1]), k: k, in: cs.in, out: cs.out, tapSize: cs.in * cs.out})
	}
	n := 2 * len(e.convs)
	e.lstmWx = cp(p[n])
	e.lstmWh = newMat(p[n+1], h, 4*h, simd)
	e.lstmB = cp(p[n+2])
	e.outT, e.outB = transpose(p[n+3], h, e.classes), cp(p[n+4])
	e.width = [dlNodes + 1]int{0, 20 * c, 20 * c, 10 * c, 10 * c, c, c, c + 2*i, 4 * h}
	for k := 2; k <= dlNodes; k++ {
		b, a := dlSpan(k)
		e.lo[k] = e.lo[k-1] + b
		e.hi[k] = e.hi[k-1] + a
	}
	return e, nil
}

// Window returns the number of events of the training window.
func (e *DeepLOB) Window() int { return e.window }

// NumFeatures returns the length of one event's feature vector.
func (e *DeepLOB) NumFeatures() int { return e.nfeat }

// NumClasses returns the number of logits.
func (e *DeepLOB) NumClasses() int { return e.classes }

// DeepLOBStream runs a DeepLOB over one instrument's events. Once Window
// events are in, each Push yields the logits of model.DeepLOB.Forward on the
// window of the last Window events (the only forward DeepLOB has).
//
// The convolutions along time have TensorFlow's 'same' padding: a k×1
// kernel sees (k-1)/2 rows before and k-1-(k-1)/2 after, zeros beyond the
// window (−∞ for the max-pool). So when the window slides by one event, a
// convolution's output at an absolute event position is unchanged if its
// receptive field lies inside both windows: such values are computed once,
// when their last input arrives, and cached by absolute position. The stack
// (six 4×1 convolutions, then the inception module's 3×1, 5×1 and max-pool
// branches) widens the receptive field, so at the LSTM's input the first 8
// and the last 14 positions of each window depend on its padding: those are
// recomputed for each window, each layer over only its own padded
// positions (1 and 2 at the first 4×1 convolution, up to 8 and 14 at the
// inception module). Each event therefore costs one new column of every
// layer plus the padded positions of one window, instead of the whole
// window.
//
// The LSTM runs over the whole window from a zero state, as in training:
// Window steps per event, with no exact shortcut. With a window of at least
// 23 events, the next window's first 8 positions and its LSTM steps up to
// 15 positions before its end depend only on events already in, and Push
// leaves them owed, for Settle or the next Push: between an event and its
// logits remain one new column per layer, the last 14 positions of the
// window and the last 15 LSTM steps.
//
// The caches take (Window+8)·(63·Conv + 2·Inception + 4·Hidden) floats,
// 1 MB for the paper's sizes and a window of 100.
//
// Push normalises the features as the training graph does, (x-mean)/std, of
// the 40 book columns. A DeepLOBStream is not safe for concurrent use; use
// one per goroutine.
type DeepLOBStream struct {
	e *DeepLOB
	x []float32 // the newest event's book image row [40]
	// ring[k] caches node k's values whose receptive field lies inside the
	// events seen, by absolute position (mod ringLen); edge[k] holds the
	// current window's padded positions of node k: its first lo[k] positions,
	// then its last hi[k] (or all of them, for a short window).
	ring, edge [dlNodes + 1][]float32
	ringLen    int
	tmp        []float32 // a node's intermediate layer [20, C]
	cat        []float32 // the inception module's output [3I] at each position of a zone
	mp         []float32 // max-pool [C]
	h, c, g    []float32 // LSTM state [H], [H] and gates [4H]
	start      int       // the absolute position of the window being computed
	lstmPos    int       // LSTM steps taken in that window
	n          int       // events since Reset (in ModeCarried, with the Window-1 zero events)
	owed       bool      // the next window's first steps are not done
	carried    bool      // ModeCarried
}

// NewStream returns an empty stream over e.
func (e *DeepLOB) NewStream() *DeepLOBStream {
	w := e.window
	s := &DeepLOBStream{
		e: e, x: make([]float32, deeplobColumns), ringLen: w + 8,
		tmp: make([]float32, 20*e.conv), cat: make([]float32, (e.hi[dlNodes]+1)*3*e.inc), mp: make([]float32, e.conv),
		h: make([]float32, e.hidden), c: make([]float32, e.hidden), g: make([]float32, 4*e.hidden),
	}
	for k := 1; k <= dlNodes; k++ {
		s.ring[k] = make([]float32, s.ringLen*e.width[k])
		s.edge[k] = make([]float32, min(w, e.lo[k]+e.hi[k])*e.width[k])
	}
	return s
}

// NewStreamMode returns an empty stream over e in mode: ModeWindow (as
// NewStream) or ModeCarried, in which Push yields logits from the first
// event since Reset: those of model.DeepLOB.ForwardSeq over the events
// since Reset as one sequence, i.e. of the window of the last Window
// events, where the events before Reset are zeros after normalisation
// (each feature at its mean). A carried stream starts from the state after
// Window-1 such events (one new column of every layer each, no LSTM step),
// computed once per engine; each Reset copies that state (about 1 MB for
// the paper's sizes and a window of 100).
func (e *DeepLOB) NewStreamMode(mode Mode) (*DeepLOBStream, error) {
	if mode != ModeWindow && mode != ModeCarried {
		return nil, fmt.Errorf("infer: DeepLOB stream in mode %s: want window or carried", mode)
	}
	s := e.NewStream()
	s.carried = mode == ModeCarried
	s.Reset()
	return s, nil
}

// Reset forgets all events, as if the stream were new.
func (s *DeepLOBStream) Reset() {
	s.n, s.owed = 0, false
	if !s.carried {
		return
	}
	z := s.e.zeroState()
	for k := 1; k <= dlNodes; k++ {
		copy(s.ring[k], z.ring[k])
		copy(s.edge[k], z.edge[k])
	}
	copy(s.h, z.h)
	copy(s.c, z.c)
	s.start, s.lstmPos, s.n = z.start, z.lstmPos, z.n
}

// zeroState returns a stream that has taken Window-1 zero events and is
// settled (owes nothing): where a carried stream starts.
func (e *DeepLOB) zeroState() *DeepLOBStream {
	e.zeroOnce.Do(func() {
		z := e.NewStream()
		for range e.window - 1 {
			z.Settle()
			clear(z.x)
			z.step(nil) // not ready: no logits
		}
		z.Settle()
		e.zeroStart = z
	})
	return e.zeroStart
}

// Ready reports whether Push yields logits: once Window events are in
// since Reset (in ModeCarried, once any is).
func (s *DeepLOBStream) Ready() bool { return s.n >= s.e.window }

// split reports whether a window's first positions and LSTM steps can be
// done before its last event arrives (see DeepLOBStream).
func (e *DeepLOB) split() bool { return e.window >= e.lo[dlNodes]+e.hi[dlNodes]+1 }

// Push adds one event's raw feature vector (length NumFeatures) and, once
// Window events are in since Reset, writes the logits (length NumClasses)
// and returns true; before that it returns false and leaves logits
// untouched. It panics on wrong lengths and does not allocate.
func (s *DeepLOBStream) Push(features, logits []float32) (ready bool) {
	e := s.e
	checkLens("DeepLOBStream.Push", features, logits, e.nfeat, e.classes)
	s.Settle()
	for i, j := range e.index {
		s.x[i] = (features[j] - e.mean[i]) * e.invStd[i]
	}
	return s.step(logits)
}

// step adds the event in s.x (normalised) and, once Window events are in,
// writes the logits.
func (s *DeepLOBStream) step(logits []float32) bool {
	e := s.e
	t := s.n
	s.n++
	s.columns(t)
	w := e.window
	s.owed = e.split() && t >= w-2
	if t < w-1 {
		return false
	}
	s.start = t - w + 1
	if !e.split() {
		s.padded(true, true)
		s.lstmPos = 0
		clear(s.h)
		clear(s.c)
	} else {
		s.padded(false, true)
	}
	s.lstm(w)
	denseOut(e.simd, logits, s.h, e.outT, e.outB)
	return true
}

// Settle does the next window's work that depends only on events already
// in (its first positions and its LSTM steps up to 15 positions before its
// end), which Push leaves owed so that the logits come out sooner. Push
// calls it itself when needed; a caller may call it while waiting for the
// next event. It does nothing when nothing is owed.
func (s *DeepLOBStream) Settle() {
	if !s.owed {
		return
	}
	s.owed = false
	e := s.e
	s.start = s.n - e.window + 1
	s.padded(true, false)
	clear(s.h)
	clear(s.c)
	s.lstmPos = 0
	s.lstm(e.window - e.hi[dlNodes] - 1)
}

// columns computes the node values that event t (absolute) completes: node
// k at position t - hi[k], if its receptive field starts at or after 0.
func (s *DeepLOBStream) columns(t int) {
	e := s.e
	s.node(1, s.at(1, t), nil)
	var nb [5][]float32
	for k := 2; k <= dlNodes; k++ {
		tau := t - e.hi[k]
		if tau < e.lo[k] {
			break // and so for every later node
		}
		b, a := dlSpan(k)
		span := b + 1 + a
		for j := range span {
			nb[j] = s.at(k-1, tau-b+j)
		}
		s.node(k, s.at(k, tau), nb[:span])
	}
}

// at returns node k's cached value at absolute position tau.
func (s *DeepLOBStream) at(k, tau int) []float32 {
	n := s.e.width[k]
	i := tau % s.ringLen * n
	return s.ring[k][i : i+n]
}

// val returns node k's value at position p of the window starting at
// s.start: from edge[k] where it depends on the padding, from the cache
// otherwise.
func (s *DeepLOBStream) val(k, p int) []float32 {
	e := s.e
	w := e.window
	nl := min(e.lo[k], w)
	rs := max(nl, w-e.hi[k])
	n := e.width[k]
	switch {
	case p < nl:
		return s.edge[k][p*n : (p+1)*n]
	case p >= rs:
		i := nl + p - rs
		return s.edge[k][i*n : (i+1)*n]
	}
	return s.at(k, s.start+p)
}

// padded computes the positions of the window starting at s.start that
// depend on its padding, node by node: the first ones (left) and the last
// ones (right).
func (s *DeepLOBStream) padded(left, right bool) {
	e := s.e
	w := e.window
	for k := 2; k <= dlNodes; k++ {
		nl := min(e.lo[k], w)
		rs := max(nl, w-e.hi[k])
		if left {
			s.zone(k, 0, nl)
		}
		if right {
			s.zone(k, rs, w)
		}
	}
}

// zone computes node k at positions from..to-1 of the window starting at
// s.start, all of which depend on the padding (so their edge slots are
// adjacent).
func (s *DeepLOBStream) zone(k, from, to int) {
	e := s.e
	w := e.window
	b, a := dlSpan(k)
	span := b + 1 + a
	var nb [5][]float32
	neighbours := func(p int) [][]float32 {
		for j := range span {
			q := p - b + j
			nb[j] = nil
			if q >= 0 && q < w {
				nb[j] = s.val(k-1, q)
			}
		}
		return nb[:span]
	}
	if k < dlNodes {
		for p := from; p < to; p++ {
			s.node(k, s.val(k, p), neighbours(p))
		}
		return
	}
	// Node 8's costliest part, the LSTM's input projection, as one matrix
	// product over the zone's positions.
	ci, n := 3*e.inc, e.width[k]
	for from < to {
		m := min(to-from, len(s.cat)/ci)
		for q := range m {
			s.inception(s.cat[q*ci:(q+1)*ci], neighbours(from+q))
		}
		dst := s.val(k, from)
		e.lstmIn(dst[:m*n:m*n], s.cat[:m*ci], m)
		from += m
	}
}

// lstm runs the LSTM over positions s.lstmPos..to-1 of the window starting
// at s.start.
func (s *DeepLOBStream) lstm(to int) {
	e := s.e
	for ; s.lstmPos < to; s.lstmPos++ {
		copy(s.g, s.val(dlNodes, s.lstmPos))
		e.lstmWh.accum(s.g, s.h)
		lstmUpdate(e.simd, s.h, s.c, s.g)
	}
}

// node sets dst to node k's value given nb, node k-1's values at positions
// p-before .. p+after (see dlSpan; nil beyond the window: padding). Node 1
// reads the newest event's image row.
func (s *DeepLOBStream) node(k int, dst []float32, nb [][]float32) {
	e := s.e
	cv := e.convs
	c, i := e.conv, e.inc
	switch k {
	case 1:
		e.convLevels(dst, s.x, 20, &cv[dlC1a])
	case 2:
		e.convTime(dst, 20, &cv[dlC1b], nb, 0)
	case 3:
		e.convTime(s.tmp, 20, &cv[dlC1c], nb, 0)
		e.convLevels(dst, s.tmp, 10, &cv[dlC2a])
	case 4:
		e.convTime(dst, 10, &cv[dlC2b], nb, 0)
	case 5:
		e.convTime(s.tmp[:10*c], 10, &cv[dlC2c], nb, 0)
		e.convLevels(dst, s.tmp[:10*c], 1, &cv[dlC3a])
	case 6:
		e.convTime(dst, 1, &cv[dlC3b], nb, 0)
	case 7:
		h := dst[:c]
		e.convTime(h, 1, &cv[dlC3c], nb, 0)
		e.convLevels(dst[c:c+i], h, 1, &cv[dlI1a])
		e.convLevels(dst[c+i:c+2*i], h, 1, &cv[dlI2a])
	case 8:
		cat := s.cat[:3*i]
		s.inception(cat, nb)
		e.lstmIn(dst, cat, 1)
	default:
		panic(fmt.Sprintf("infer: DeepLOB node %d", k))
	}
}

// inception sets cat [3I] to the inception module's output [i1, i2, i3]
// given nb, node 7 at offsets -2..+2: the 3×1 branch reads u1 at -1..+1,
// the 5×1 branch u2 at -2..+2 and the max-pool h at -1..+1.
func (s *DeepLOBStream) inception(cat []float32, nb [][]float32) {
	e := s.e
	cv, c, i := e.convs, e.conv, e.inc
	e.convTime(cat[:i], 1, &cv[dlI1b], nb[1:4], c)
	e.convTime(cat[i:2*i], 1, &cv[dlI2b], nb, c+i)
	copy(s.mp, nb[2][:c])
	for _, v := range [2][]float32{nb[1], nb[3]} {
		if v != nil {
			for j, x := range v[:c] {
				s.mp[j] = max(s.mp[j], x)
			}
		}
	}
	e.convLevels(cat[2*i:3*i], s.mp, 1, &cv[dlI3])
}

// lstmIn sets the m rows of y [m, 4H] to the LSTM's input projection
// x·wx + b of the m rows of x [m, 3I].
func (e *DeepLOB) lstmIn(y, x []float32, m int) {
	h, ci := e.hidden, 3*e.inc
	linearRows(e.simd, y, 4*h, x, ci, m, e.lstmWx, 4*h, ci, 4*h, e.lstmB)
}

// convLevels sets y [groups, out] = lrelu(x·w + b) where x holds groups
// rows of k·in values (a 1×k stride-k convolution over k adjacent levels,
// or a 1×1 one with k = 1).
func (e *DeepLOB) convLevels(y, x []float32, groups int, cv *dlConv) {
	n := cv.k * cv.in
	linearRows(e.simd, y, cv.out, x, n, groups, cv.w, cv.out, n, cv.out, cv.b)
	leakyReLU(e.simd, y[:groups*cv.out])
}

// convTime sets y [rows, out] = lrelu(b + Σ_j nb[j]·w_j), tap j of a k×1
// convolution applied to nb[j] (rows values of in channels each, starting at
// offset off of each nb[j]); nil taps are padding, whose zeros add nothing.
func (e *DeepLOB) convTime(y []float32, rows int, cv *dlConv, nb [][]float32, off int) {
	out, in := cv.out, cv.in
	y = y[:rows*out]
	for r := range rows {
		copy(y[r*out:(r+1)*out], cv.b)
	}
	for j, x := range nb[:cv.k] {
		if x == nil {
			continue
		}
		ld := in
		if rows == 1 {
			x = x[off : off+in]
		}
		gemm(e.simd, y, out, x, ld, rows, cv.w[j*cv.tapSize:(j+1)*cv.tapSize], out, in, out)
	}
	leakyReLU(e.simd, y)
}
