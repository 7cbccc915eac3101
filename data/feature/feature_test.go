package feature

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gallop-dev/gallop/data/book"
)

func TestLabelsMatchDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	mids := make([]float64, 500)
	m := 1000.0
	for i := range mids {
		m += float64(r.IntN(3) - 1)
		mids[i] = m
	}
	for _, k := range []int{1, 5, 50} {
		dst := make([]int32, len(mids))
		n := Labels(mids, k, 0.3, dst)
		if n != len(mids)-k {
			t.Fatalf("k=%d: %d labels", k, n)
		}
		for i := 0; i < n; i++ {
			var s float64
			for j := 1; j <= k; j++ {
				s += mids[i+j]
			}
			d := s/float64(k) - mids[i]
			want := int32(Flat)
			if d > 0.3 {
				want = Up
			} else if d < -0.3 {
				want = Down
			}
			if dst[i] != want {
				t.Fatalf("k=%d t=%d: label %d want %d (d=%v)", k, i, dst[i], want, d)
			}
		}
	}
}

func TestFeaturesOfAKnownBook(t *testing.T) {
	const tick = 10_000_000 // 0.01
	b := book.New()
	x := NewExtractor(tick)
	dst := make([]float32, Count)
	apply := func(e book.Event) {
		b.Apply(&e)
		x.Update(b, &e, dst)
	}
	apply(book.Event{TsNs: 1000, OrderID: 1, Action: book.Add, Side: book.Bid, Price: 100 * tick, Size: 30})
	apply(book.Event{TsNs: 2000, OrderID: 2, Action: book.Add, Side: book.Ask, Price: 102 * tick, Size: 10})
	if dst[0] != 2 || dst[2] != 0.5 || math.Abs(float64(dst[5])-0.5) > 1e-6 {
		t.Fatalf("spread %v imb1 %v micro %v", dst[0], dst[2], dst[5])
	}
	// A buyer takes 4 from the ask: OFI +4 (ask size fell at the same price), trade sign +1.
	apply(book.Event{TsNs: 3000, OrderID: 2, Action: book.Fill, Side: book.Ask, Price: 102 * tick, Size: 4})
	if dst[8] != 1 || math.Abs(float64(dst[6])-math.Log1p(4)) > 1e-6 || math.Abs(float64(dst[10])-math.Log1p(1)) > 1e-6 {
		t.Fatalf("sign %v ofi %v dt %v", dst[8], dst[6], dst[10])
	}
	if got := dst[11]; got != 1 { // ask_d0 = 102 - 101
		t.Fatalf("ask_d0 %v", got)
	}
	if got := dst[12]; got != 2 { // missing ask level 1: one tick beyond
		t.Fatalf("ask_d1 %v", got)
	}
	if len(Names) != Count || Names[11] != "ask_d0" || Names[Count-1] != "bid_q9" {
		t.Fatalf("names %v", Names)
	}
}
