package sim

import (
	"math"
	"slices"
	"testing"

	"github.com/gallop-dev/gallop/data/book"
)

func collect(t *testing.T, cfg Config) map[uint32][]book.Event {
	out := map[uint32][]book.Event{}
	if err := Run(cfg, func(in Instrument, evs []book.Event) error {
		out[in.ID] = slices.Clone(evs)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDeterministic(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Events = 20000
	a, b := collect(t, cfg), collect(t, cfg)
	for id := range a {
		if !slices.Equal(a[id], b[id]) {
			t.Fatalf("instrument %d: same seed, different events", id)
		}
	}
	cfg.Seed = 2
	c := collect(t, cfg)
	if slices.Equal(a[1], c[1]) {
		t.Fatal("different seeds, same events")
	}
}

// TestEventsRebuildAValidBook replays the emitted events into a fresh book:
// every event applies, time never goes backwards, the book never crosses or
// empties a side, and trades happen.
func TestEventsRebuildAValidBook(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Events = 50000
	for id, evs := range collect(t, cfg) {
		if len(evs) < cfg.Events {
			t.Fatalf("instrument %d: %d events, want >= %d", id, len(evs), cfg.Events)
		}
		b := book.New()
		var fills, cancels, adds int
		for i := range evs {
			e := &evs[i]
			if i > 0 && e.TsNs < evs[i-1].TsNs {
				t.Fatalf("instrument %d event %d: time %d after %d", id, i, e.TsNs, evs[i-1].TsNs)
			}
			if err := b.Apply(e); err != nil {
				t.Fatalf("instrument %d event %d: %v", id, i, err)
			}
			if i > 6*MaxLevels && (b.Crossed() || b.Depth(book.Bid) == 0 || b.Depth(book.Ask) == 0) {
				t.Fatalf("instrument %d event %d: crossed or one-sided book", id, i)
			}
			switch e.Action {
			case book.Fill:
				fills++
			case book.Cancel:
				cancels++
			case book.Add:
				adds++
			}
		}
		if fills < len(evs)/50 || cancels < len(evs)/5 || adds < len(evs)/4 {
			t.Fatalf("instrument %d: mix adds %d cancels %d fills %d", id, adds, cancels, fills)
		}
	}
}

// TestOrderFlowImbalanceMovesTheMid checks the simulator carries the signal
// it documents: the sign of the order-flow imbalance over a stretch of events
// predicts the sign of the next mid move better than chance.
func TestOrderFlowImbalanceMovesTheMid(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Events = 100000
	cfg.Instruments = cfg.Instruments[:1]
	evs := collect(t, cfg)[1]
	b := book.New()
	var mids []float64
	var flow []float64 // +size for buyer-initiated fills, - for seller
	for i := range evs {
		b.Apply(&evs[i])
		bb, _ := b.Best(book.Bid)
		ba, _ := b.Best(book.Ask)
		mids = append(mids, float64(bb.Price+ba.Price)/2)
		f := 0.0
		if evs[i].Action == book.Fill {
			f = float64(evs[i].Size)
			if evs[i].Side == book.Bid {
				f = -f
			}
		}
		flow = append(flow, f)
	}
	const back, ahead = 200, 200
	agree, total := 0, 0
	for t0 := back; t0+ahead < len(mids); t0 += 50 {
		var of float64
		for j := t0 - back; j < t0; j++ {
			of += flow[j]
		}
		d := mids[t0+ahead] - mids[t0]
		if of == 0 || d == 0 {
			continue
		}
		total++
		if math.Signbit(of) == math.Signbit(d) {
			agree++
		}
	}
	rate := float64(agree) / float64(total)
	if total < 200 || rate < 0.55 {
		t.Fatalf("past trade flow predicts the next mid move %.1f%% of %d times; want >= 55%% (chance is 50%%)", 100*rate, total)
	}
	t.Logf("trade flow → next mid move agreement %.1f%% over %d windows", 100*rate, total)
}

func TestValidate(t *testing.T) {
	bad := DefaultConfig()
	bad.Persistence = 1.5
	if err := bad.Validate(); err == nil {
		t.Error("persistence 1.5 accepted")
	}
	bad = DefaultConfig()
	bad.Instruments = []Instrument{{Symbol: "Z", Tick: 1, Price: 10, MeanGapNs: 1}}
	if err := Run(bad, func(Instrument, []book.Event) error { return nil }); err == nil {
		t.Error("price under 100 ticks accepted")
	}
}
