package dataset

import (
	"math"
	"slices"
	"testing"

	"github.com/gallop-dev/gallop/data/book"
	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/data/sim"
)

func simEvents(tb testing.TB, n int) (sim.Instrument, []book.Event) {
	cfg := sim.DefaultConfig()
	cfg.Events = n
	cfg.Instruments = cfg.Instruments[:1]
	var in sim.Instrument
	var evs []book.Event
	if err := sim.Run(cfg, func(i sim.Instrument, e []book.Event) error {
		in, evs = i, slices.Clone(e)
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	return in, evs
}

func TestSimulatedSeriesAreConsistent(t *testing.T) {
	cfg := sim.DefaultConfig()
	cfg.Events = 5000
	series, err := Simulated(cfg, Labeling{Horizon: 10, Theta: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	if len(series) != 3 {
		t.Fatalf("%d series", len(series))
	}
	for _, s := range series {
		n := s.Rows()
		if len(s.Features) != n*feature.Count || len(s.TsNs) != n || n < 4900 {
			t.Fatalf("%s: %d rows, %d features, %d timestamps", s.Symbol, n, len(s.Features), len(s.TsNs))
		}
		for i := n - 10; i < n; i++ {
			if s.Labels[i] != -1 {
				t.Fatalf("%s: row %d within the horizon of the end has label %d", s.Symbol, i, s.Labels[i])
			}
		}
		for _, v := range s.Features {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%s: non-finite feature", s.Symbol)
			}
		}
	}
	if _, err := Simulated(cfg, Labeling{}); err == nil {
		t.Fatal("horizon 0 accepted")
	}
}

// BenchmarkBookAndFeatures is book reconstruction plus features, per event,
// on one core.
func BenchmarkBookAndFeatures(b *testing.B) {
	in, evs := simEvents(b, 200_000)
	tick := int64(math.Round(in.Tick * book.PriceScale))
	b.ResetTimer()
	n := 0
	for n < b.N {
		bd := NewBuilder(in.ID, in.Symbol, tick, len(evs))
		for i := range evs {
			if n == b.N {
				break
			}
			bd.Add(&evs[i])
			n++
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
