package infer

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/model"
)

// segmentIDs numbers n positions as consecutive sequences of w: 1 for the
// first w, 2 for the next w, ...
func segmentIDs(n, w int) []int32 {
	s := make([]int32, n)
	for i := range s {
		s[i] = int32(i/w + 1)
	}
	return s
}

// TestTransformerParity checks the default transformer (D 64, 2 blocks, 4
// heads, FF 256) over gallop's 51 features with a window of 50 against the
// model package's graphs on GoMLX: ModeWindow against Forward on the window
// ending at each of 300 events, ModeSegment against ForwardSeq over the
// stream cut into sequences of 50.
func TestTransformerParity(t *testing.T) {
	c := transformerCase(t, 50, len(feature.Names), model.TransformerConfig{}, 3)
	c.spec.Features = feature.Names
	m := c.build(t, 1)
	r := rand.New(rand.NewPCG(5, 6))
	events := seqEvents(r, m, 349)
	want := windowWant(t, c, m, events)
	wantSeq := gomlxSeq(t, c.mm.(model.SequenceModel), m, events, segmentIDs(len(events), m.Window))
	for kname, simd := range kernelVariants() {
		e, err := newTransformer(m, simd)
		if err != nil {
			t.Fatal(err)
		}
		t.Run("window/"+kname, func(t *testing.T) {
			worst := streamParity(t, e.NewStream(ModeWindow), events, want, 3, func(i int) bool { return i%3 == 0 })
			t.Logf("%d windows, worst rel err vs GoMLX Forward %.2g", len(events)-m.Window+1, worst)
		})
		t.Run("segment/"+kname, func(t *testing.T) {
			worst := streamParity(t, e.NewStream(ModeSegment), events, wantSeq, 3, nil)
			t.Logf("%d positions, worst rel err vs GoMLX ForwardSeq %.2g", len(events), worst)
		})
	}
}

// TestTransformerSmall covers odd sizes, one block, windows of 1 and 2, and
// Reset.
func TestTransformerSmall(t *testing.T) {
	for _, tc := range []struct {
		w, f int
		cfg  model.TransformerConfig
	}{
		{1, 3, model.TransformerConfig{D: 6, Heads: 2, Layers: 1, FF: 5}},
		{2, 4, model.TransformerConfig{D: 8, Heads: 1, Layers: 2, FF: 17}},
		{7, 5, model.TransformerConfig{D: 36, Heads: 3, Layers: 3, FF: 40}},
	} {
		c := transformerCase(t, tc.w, tc.f, tc.cfg, 3)
		t.Run(c.name, func(t *testing.T) {
			m := c.build(t, uint64(tc.w))
			r := rand.New(rand.NewPCG(uint64(tc.f), 3))
			events := seqEvents(r, m, 40)
			const cut = 17
			want := append(windowWant(t, c, m, events[:cut]), windowWant(t, c, m, events[cut:])...)
			sm := c.mm.(model.SequenceModel)
			wantSeq := append(gomlxSeq(t, sm, m, events[:cut], segmentIDs(cut, tc.w)),
				gomlxSeq(t, sm, m, events[cut:], segmentIDs(len(events)-cut, tc.w))...)
			for kname, simd := range kernelVariants() {
				e, err := newTransformer(m, simd)
				if err != nil {
					t.Fatal(err)
				}
				for _, mode := range []Mode{ModeWindow, ModeSegment} {
					s := e.NewStream(mode)
					w := want
					if mode == ModeSegment {
						w = wantSeq
					}
					t.Run(fmt.Sprint(mode, "/", kname), func(t *testing.T) {
						streamParity(t, s, events[:cut], w[:cut], 3, func(i int) bool { return i%2 == 1 })
						s.Push(events[0], make([]float32, 3))
						s.Reset()
						streamParity(t, s, events[cut:], w[cut:], 3, nil)
					})
				}
			}
		})
	}
}

func TestTransformerZeroAllocs(t *testing.T) {
	c := transformerCase(t, 20, 11, model.TransformerConfig{}, 3)
	m := c.build(t, 3)
	e, err := NewTransformer(m)
	if err != nil {
		t.Fatal(err)
	}
	events := seqEvents(rand.New(rand.NewPCG(4, 4)), m, 64)
	logits := make([]float32, 3)
	for _, mode := range []Mode{ModeWindow, ModeSegment} {
		s := e.NewStream(mode)
		i := 0
		if a := testing.AllocsPerRun(100, func() {
			s.Push(events[i%len(events)], logits)
			i++
		}); a != 0 {
			t.Errorf("%v: Push: %v allocs per run", mode, a)
		}
	}
}

// BenchmarkTransformerPush measures the default transformer (D 64, 2
// blocks, 4 heads, FF 256) over 51 features with a window of 50, per mode.
func BenchmarkTransformerPush(b *testing.B) {
	c := transformerCase(b, 50, len(feature.Names), model.TransformerConfig{}, 3)
	m := c.build(b, 1)
	e, err := NewTransformer(m)
	if err != nil {
		b.Fatal(err)
	}
	events := seqEvents(rand.New(rand.NewPCG(1, 1)), m, 256)
	for _, mode := range []Mode{ModeWindow, ModeSegment} {
		b.Run("transformer-d64-l2-w50/"+mode.String(), func(b *testing.B) { benchStreamer(b, e.NewStream(mode), events, 3) })
	}
}
