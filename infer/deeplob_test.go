package infer

import (
	"math/rand/v2"
	"testing"

	"github.com/gallop-dev/gallop/model"
)

// TestDeepLOBParity checks the paper's DeepLOB (Conv 32, Inception 64, LSTM
// 64) with a window of 100 against model.DeepLOB.Forward on GoMLX on the
// window ending at each of 300 events.
func TestDeepLOBParity(t *testing.T) {
	c := deeplobCase(t, 100, model.DeepLOBConfig{}, 3)
	m := c.build(t, 1)
	r := rand.New(rand.NewPCG(7, 8))
	events := seqEvents(r, m, 399)
	want := windowWant(t, c, m, events)
	for kname, simd := range kernelVariants() {
		e, err := newDeepLOB(m, simd)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(kname, func(t *testing.T) {
			worst := streamParity(t, e.NewStream(), events, want, 3, func(i int) bool { return i%3 == 0 })
			t.Logf("%d windows, worst rel err vs GoMLX Forward %.2g", len(events)-m.Window+1, worst)
		})
	}
}

// TestDeepLOBSmall covers windows shorter than the padded positions (1, 5,
// 22: recomputed whole), the shortest split one (23), odd channel counts,
// and Reset.
func TestDeepLOBSmall(t *testing.T) {
	for _, w := range []int{1, 5, 22, 23, 31} {
		c := deeplobCase(t, w, model.DeepLOBConfig{Conv: 3, Inception: 5, Hidden: 7}, 3)
		t.Run(c.name, func(t *testing.T) {
			m := c.build(t, uint64(w))
			r := rand.New(rand.NewPCG(uint64(w), 3))
			n := 2*w + 20
			events := seqEvents(r, m, n)
			cut := w + 7
			want := append(windowWant(t, c, m, events[:cut]), windowWant(t, c, m, events[cut:])...)
			for kname, simd := range kernelVariants() {
				e, err := newDeepLOB(m, simd)
				if err != nil {
					t.Fatal(err)
				}
				t.Run(kname, func(t *testing.T) {
					s := e.NewStream()
					streamParity(t, s, events[:cut], want[:cut], 3, func(i int) bool { return i%2 == 1 })
					s.Push(events[0], make([]float32, 3))
					s.Reset()
					streamParity(t, s, events[cut:], want[cut:], 3, nil)
				})
			}
		})
	}
}

// TestDeepLOBCarriedParity: a DeepLOB stream in ModeCarried yields, from
// the first event since Reset, model.DeepLOB.ForwardSeq's logits over the
// events since Reset as one sequence (the window's events before Reset at
// the features' means), across a Reset, for windows recomputed whole (1,
// 5) and split (23, 31), on both kernel sets.
func TestDeepLOBCarriedParity(t *testing.T) {
	for _, w := range []int{1, 5, 23, 31} {
		c := deeplobCase(t, w, model.DeepLOBConfig{Conv: 3, Inception: 5, Hidden: 7}, 3)
		t.Run(c.name, func(t *testing.T) {
			m := c.build(t, uint64(w)+10)
			r := rand.New(rand.NewPCG(uint64(w), 9))
			events := seqEvents(r, m, 2*w+12)
			cut := w + 5 // the stream is reset before this event
			sm := c.mm.(model.SequenceModel)
			want := append(gomlxSeq(t, sm, m, events[:cut], allOnes(cut)), gomlxSeq(t, sm, m, events[cut:], allOnes(len(events)-cut))...)
			for kname, simd := range kernelVariants() {
				e, err := newDeepLOB(m, simd)
				if err != nil {
					t.Fatal(err)
				}
				s, err := e.NewStreamMode(ModeCarried)
				if err != nil {
					t.Fatal(err)
				}
				if s.Ready() {
					t.Fatal("ready before any event")
				}
				worst := streamParity(t, s, events[:cut], want[:cut], 3, func(i int) bool { return i%2 == 1 })
				s.Reset()
				worst = max(worst, streamParity(t, s, events[cut:], want[cut:], 3, nil))
				t.Logf("%s: %d positions, worst rel err vs GoMLX ForwardSeq %.2g", kname, len(events), worst)
			}
		})
	}
	e, err := NewDeepLOB(deeplobCase(t, 4, model.DeepLOBConfig{Conv: 3, Inception: 5, Hidden: 7}, 3).build(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.NewStreamMode(ModeSegment); err == nil {
		t.Error("DeepLOB stream in segment mode: no error")
	}
}

func TestDeepLOBZeroAllocs(t *testing.T) {
	for _, w := range []int{10, 30} { // recomputed whole, split
		c := deeplobCase(t, w, model.DeepLOBConfig{Conv: 8, Inception: 8, Hidden: 8}, 3)
		m := c.build(t, 3)
		e, err := NewDeepLOB(m)
		if err != nil {
			t.Fatal(err)
		}
		events := seqEvents(rand.New(rand.NewPCG(4, 4)), m, 64)
		logits := make([]float32, 3)
		s := e.NewStream()
		i := 0
		if a := testing.AllocsPerRun(100, func() {
			s.Push(events[i%len(events)], logits)
			i++
		}); a != 0 {
			t.Errorf("window %d: Push: %v allocs per run", w, a)
		}
		sc, _ := e.NewStreamMode(ModeCarried)
		if a := testing.AllocsPerRun(20, func() {
			sc.Reset()
			sc.Push(events[i%len(events)], logits)
			i++
		}); a != 0 {
			t.Errorf("window %d, carried: Reset and Push: %v allocs per run", w, a)
		}
	}
}

// BenchmarkDeepLOBPush measures the paper's DeepLOB with a window of 100.
func BenchmarkDeepLOBPush(b *testing.B) {
	c := deeplobCase(b, 100, model.DeepLOBConfig{}, 3)
	m := c.build(b, 1)
	e, err := NewDeepLOB(m)
	if err != nil {
		b.Fatal(err)
	}
	events := seqEvents(rand.New(rand.NewPCG(1, 1)), m, 256)
	b.Run("deeplob-w100/window", func(b *testing.B) { benchStreamer(b, e.NewStream(), events, 3) })
	// What a new sequence costs in ModeCarried: Reset pushes 99 zero
	// events (columns only), then the first event's logits.
	b.Run("deeplob-w100/carried-reset+push", func(b *testing.B) {
		s, _ := e.NewStreamMode(ModeCarried)
		logits := make([]float32, 3)
		for i := 0; b.Loop(); i++ {
			s.Reset()
			s.Push(events[i%len(events)], logits)
		}
	})
}
