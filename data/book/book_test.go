package book

import (
	"errors"
	"math/rand/v2"
	"testing"
)

func TestApplyAggregatesLevels(t *testing.T) {
	b := New()
	ev := []Event{
		{OrderID: 1, Action: Add, Side: Bid, Price: 100, Size: 5},
		{OrderID: 2, Action: Add, Side: Bid, Price: 100, Size: 3},
		{OrderID: 3, Action: Add, Side: Bid, Price: 99, Size: 7},
		{OrderID: 4, Action: Add, Side: Ask, Price: 102, Size: 4},
		{OrderID: 5, Action: Add, Side: Ask, Price: 101, Size: 1},
		{OrderID: 1, Action: Fill, Size: 2},
		{OrderID: 5, Action: Cancel},
		{OrderID: 3, Action: Modify, Side: Bid, Price: 98, Size: 6},
		{Action: Trade, Side: Ask, Price: 100, Size: 9},
	}
	for i := range ev {
		if err := b.Apply(&ev[i]); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	var dst [3]Level
	n := b.Levels(Bid, dst[:])
	want := []Level{{100, 6, 2}, {98, 6, 1}}
	if n != 2 || dst[0] != want[0] || dst[1] != want[1] {
		t.Fatalf("bids %v", dst[:n])
	}
	if a, _ := b.Best(Ask); a != (Level{102, 4, 1}) {
		t.Fatalf("best ask %v", a)
	}
	if b.Crossed() {
		t.Fatal("crossed")
	}
	err := b.Apply(&Event{OrderID: 77, Action: Cancel})
	if !errors.Is(err, ErrUnknownOrder) {
		t.Fatalf("want ErrUnknownOrder, got %v", err)
	}
	if err := b.Apply(&Event{OrderID: 78, Action: Cancel, Side: Ask, Price: 102, Size: 1}); err != nil {
		t.Fatal(err)
	}
	if a, _ := b.Best(Ask); a.Size != 3 || b.Unmatched != 1 {
		t.Fatalf("anonymous cancel: %v unmatched=%d", a, b.Unmatched)
	}
}

// TestAgainstNaive replays random order flow into the book and into a
// brute-force model (a map of orders summed at read time) and compares every
// level after every event.
func TestAgainstNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	b := New()
	live := map[uint64]order{}
	var ids []uint64
	next := uint64(1)
	for step := 0; step < 20000; step++ {
		var e Event
		switch k := r.IntN(10); {
		case k < 5 || len(ids) == 0:
			s := Bid
			p := int64(90 + r.IntN(10))
			if r.IntN(2) == 0 {
				s, p = Ask, int64(100+r.IntN(10))
			}
			e = Event{OrderID: next, Action: Add, Side: s, Price: p, Size: int64(1 + r.IntN(9))}
			live[next] = order{p, e.Size, s}
			ids = append(ids, next)
			next++
		default:
			j := r.IntN(len(ids))
			id := ids[j]
			o := live[id]
			switch k {
			case 5, 6:
				e = Event{OrderID: id, Action: Cancel, Size: int64(r.IntN(int(o.size) + 1))}
			case 7, 8:
				e = Event{OrderID: id, Action: Fill, Size: int64(1 + r.IntN(int(o.size)))}
			default:
				np := o.price + int64(r.IntN(3)-1)
				if (o.side == Bid && np >= 100) || (o.side == Ask && np < 100) {
					np = o.price
				}
				e = Event{OrderID: id, Action: Modify, Side: o.side, Price: np, Size: int64(1 + r.IntN(9))}
			}
			switch {
			case e.Action == Modify:
				o.price, o.size = e.Price, e.Size
				live[id] = o
			case e.Size == 0 || e.Size >= o.size:
				delete(live, id)
				ids[j] = ids[len(ids)-1]
				ids = ids[:len(ids)-1]
			default:
				o.size -= e.Size
				live[id] = o
			}
		}
		if err := b.Apply(&e); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		for _, s := range []Side{Bid, Ask} {
			agg := map[int64]Level{}
			for _, o := range live {
				if o.side == s {
					l := agg[o.price]
					l.Price, l.Size, l.Count = o.price, l.Size+o.size, l.Count+1
					agg[o.price] = l
				}
			}
			if b.Depth(s) != len(agg) {
				t.Fatalf("step %d %v: depth %d want %d", step, s, b.Depth(s), len(agg))
			}
			for i := 0; i < b.Depth(s); i++ {
				l, _ := b.Level(s, i)
				if agg[l.Price] != l {
					t.Fatalf("step %d %v level %d: %v want %v", step, s, i, l, agg[l.Price])
				}
				if i > 0 {
					prev, _ := b.Level(s, i-1)
					if (s == Bid) != (prev.Price > l.Price) {
						t.Fatalf("step %d %v: levels out of order", step, s)
					}
				}
			}
		}
	}
}

func BenchmarkApply(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	bk := New()
	evs := make([]Event, 1<<16)
	for i := range evs {
		id := uint64(i/2 + 1)
		if i%2 == 0 {
			evs[i] = Event{OrderID: id, Action: Add, Side: Side(1 + r.IntN(2)), Price: int64(100 + r.IntN(20)), Size: 5}
		} else {
			evs[i] = Event{OrderID: id, Action: Cancel}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bk.Apply(&evs[i&(len(evs)-1)])
	}
}
