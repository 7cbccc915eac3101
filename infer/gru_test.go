package infer

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/model"
)

// seqEvents returns n raw feature vectors around m's normalisation
// statistics, one in 50 of them far out (±6 std) as market data has.
func seqEvents(r *rand.Rand, m *Model, n int) [][]float32 {
	ev := randomEvents(r, m, n)
	for i := range ev {
		if r.IntN(50) == 0 {
			for j := range ev[i] {
				ev[i][j] = m.Mean[j] + m.Std[j]*float32(r.NormFloat64()*6)
			}
		}
	}
	return ev
}

func allOnes(n int) []int32 {
	s := make([]int32, n)
	for i := range s {
		s[i] = 1
	}
	return s
}

// TestGRUParity checks a GRU-64 over gallop's 51 features with a window of
// 100 against the model package's graphs on GoMLX: ModeWindow against
// Forward on the window ending at each of 300 events, ModeCarried against
// ForwardSeq over the whole stream as one sequence.
func TestGRUParity(t *testing.T) {
	c := gruCase(t, 100, feature.Names, 64, 3)
	m := c.build(t, 1)
	r := rand.New(rand.NewPCG(1, 2))
	events := seqEvents(r, m, 399)
	want := windowWant(t, c, m, events)
	wantSeq := gomlxSeq(t, c.mm.(model.SequenceModel), m, events, allOnes(len(events)))
	for kname, simd := range kernelVariants() {
		g, err := newGRU(m, simd)
		if err != nil {
			t.Fatal(err)
		}
		t.Run("window/"+kname, func(t *testing.T) {
			settle := func(i int) bool { return i%3 == 0 }
			worst := streamParity(t, g.NewStream(ModeWindow), events, want, 3, settle)
			t.Logf("%d windows, worst rel err vs GoMLX Forward %.2g", len(events)-99, worst)
		})
		t.Run("carried/"+kname, func(t *testing.T) {
			worst := streamParity(t, g.NewStream(ModeCarried), events, wantSeq, 3, nil)
			t.Logf("%d positions, worst rel err vs GoMLX ForwardSeq %.2g", len(events), worst)
		})
	}
}

// TestGRUSmall covers odd sizes (remainders of every kernel), windows of 1
// and 2, and Reset.
func TestGRUSmall(t *testing.T) {
	for _, tc := range []struct{ w, f, h int }{{1, 3, 5}, {2, 4, 7}, {7, 5, 19}} {
		c := gruCase(t, tc.w, names("f", tc.f), tc.h, 3)
		t.Run(c.name, func(t *testing.T) {
			m := c.build(t, uint64(tc.w))
			r := rand.New(rand.NewPCG(uint64(tc.h), 3))
			events := seqEvents(r, m, 40)
			// The stream is reset before event 17: compare the two parts
			// with references of their own.
			const cut = 17
			want := append(windowWant(t, c, m, events[:cut]), windowWant(t, c, m, events[cut:])...)
			sm := c.mm.(model.SequenceModel)
			wantSeq := append(gomlxSeq(t, sm, m, events[:cut], allOnes(cut)), gomlxSeq(t, sm, m, events[cut:], allOnes(len(events)-cut))...)
			for kname, simd := range kernelVariants() {
				g, err := newGRU(m, simd)
				if err != nil {
					t.Fatal(err)
				}
				for _, mode := range []Mode{ModeWindow, ModeCarried} {
					s := g.NewStream(mode)
					w := want
					if mode == ModeCarried {
						w = wantSeq
					}
					t.Run(fmt.Sprint(mode, "/", kname), func(t *testing.T) {
						streamParity(t, s, events[:cut], w[:cut], 3, func(i int) bool { return i%2 == 1 })
						s.Push(events[0], make([]float32, 3)) // an event the Reset discards
						s.Reset()
						streamParity(t, s, events[cut:], w[cut:], 3, nil)
					})
				}
			}
		})
	}
}

func TestGRUZeroAllocs(t *testing.T) {
	c := gruCase(t, 20, feature.Names, 64, 3)
	m := c.build(t, 3)
	g, err := NewGRU(m)
	if err != nil {
		t.Fatal(err)
	}
	events := seqEvents(rand.New(rand.NewPCG(4, 4)), m, 64)
	logits := make([]float32, 3)
	for _, mode := range []Mode{ModeWindow, ModeCarried} {
		s := g.NewStream(mode)
		i := 0
		if a := testing.AllocsPerRun(200, func() {
			s.Push(events[i%len(events)], logits)
			i++
		}); a != 0 {
			t.Errorf("%v: Push: %v allocs per run", mode, a)
		}
	}
}

// BenchmarkGRUPush measures a GRU-64 over 40 features (the 10-level book)
// with a window of 100, per mode and kernel set.
func BenchmarkGRUPush(b *testing.B) {
	c := gruCase(b, 100, names("f", 40), 64, 3)
	m := c.build(b, 1)
	events := seqEvents(rand.New(rand.NewPCG(1, 1)), m, 256)
	for name, simd := range benchVariants("gru64-f40-w100") {
		g, err := newGRU(m, simd)
		if err != nil {
			b.Fatal(err)
		}
		for _, mode := range []Mode{ModeCarried, ModeWindow} {
			b.Run(name+"/"+mode.String(), func(b *testing.B) { benchStreamer(b, g.NewStream(mode), events, 3) })
		}
		b.Run(name+"/window-recompute", func(b *testing.B) { benchStreamer(b, newGRURecompute(g), events, 3) })
	}
}

// gruRecompute is the straightforward exact alternative to ModeWindow, for
// the benchmarks: keep the input projections of the last Window events and
// run the Window cell steps from zero on every event, one after another.
type gruRecompute struct {
	g         *GRU
	xn, h, gh []float32
	gx        []float32 // ring of Window projections [Window, 3H]
	n         int
}

func newGRURecompute(g *GRU) *gruRecompute {
	return &gruRecompute{g: g, xn: make([]float32, g.nfeat), h: make([]float32, g.hidden),
		gh: make([]float32, 3*g.hidden), gx: make([]float32, g.window*3*g.hidden)}
}

func (s *gruRecompute) Reset()      { s.n = 0 }
func (s *gruRecompute) Settle()     {}
func (s *gruRecompute) Ready() bool { return s.n >= s.g.window }

func (s *gruRecompute) Push(features, logits []float32) bool {
	g := s.g
	w, n3 := g.window, 3*g.hidden
	normalizeInto(g.simd, s.xn, features, g.mean, g.invStd)
	gx := s.gx[s.n%w*n3 : (s.n%w+1)*n3]
	copy(gx, g.bx)
	g.wx.accum(gx, s.xn)
	s.n++
	if s.n < w {
		return false
	}
	clear(s.h)
	for t := s.n - w; t < s.n; t++ {
		copy(s.gh, g.bh)
		g.wh.accum(s.gh, s.h)
		gruUpdate(g.simd, s.h, s.gx[t%w*n3:(t%w+1)*n3], s.gh)
	}
	denseOut(g.simd, logits, s.h, g.outT, g.outB)
	return true
}

func TestGRURecomputeBaseline(t *testing.T) {
	c := gruCase(t, 9, names("f", 5), 16, 3)
	m := c.build(t, 1)
	g, err := NewGRU(m)
	if err != nil {
		t.Fatal(err)
	}
	events := seqEvents(rand.New(rand.NewPCG(1, 1)), m, 30)
	a, b := g.NewStream(ModeWindow), newGRURecompute(g)
	la, lb := make([]float32, 3), make([]float32, 3)
	for i, ev := range events {
		ra, rb := a.Push(ev, la), b.Push(ev, lb)
		if ra != rb || (ra && relErr(la, lb) > 1e-6) {
			t.Fatalf("push %d: %v %v, recompute %v %v", i, ra, la, rb, lb)
		}
	}
}
