package infer

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/data/shard"
	"github.com/gallop-dev/gallop/internal/shareddata"
	"github.com/gallop-dev/gallop/model"
)

// lobsterEvents ingests LOBSTER's GOOG 10-level sample (real NASDAQ events
// through book reconstruction and features) and returns n consecutive
// feature rows from the middle of the day, plus their mean and std.
func lobsterEvents(t *testing.T, n int) (events [][]float32, mean, std []float32) {
	zip := filepath.Join(shareddata.Dir(t, "lobster", "LOBSTER_SampleFile_GOOG_2012-06-21_10.zip"), "LOBSTER_SampleFile_GOOG_2012-06-21_10.zip")
	ds, err := shard.Ingest(t.Context(), []string{zip}, t.TempDir(), shard.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ds.Close() })
	series, err := ds.Series(10)
	if err != nil {
		t.Fatal(err)
	}
	s := series[0]
	F := feature.Count
	start := s.Rows() / 2
	mean, std = make([]float32, F), make([]float32, F)
	var sum, sq [64]float64
	for i := 0; i < n; i++ {
		row := s.Features[(start+i)*F : (start+i+1)*F]
		events = append(events, row)
		for j, v := range row {
			sum[j] += float64(v)
			sq[j] += float64(v) * float64(v)
		}
	}
	for j := 0; j < F; j++ {
		m := sum[j] / float64(n)
		mean[j] = float32(m)
		std[j] = float32(math.Sqrt(math.Max(sq[j]/float64(n)-m*m, 0)))
		if std[j] < 1e-6 {
			std[j] = 1
		}
	}
	return events, mean, std
}

// TestSequenceEnginesOnLOBSTER streams real LOBSTER events (book → features)
// through the GRU, transformer and DeepLOB engines and checks every output
// against the GoMLX batch forward of the same window within 1e-5 relative.
func TestSequenceEnginesOnLOBSTER(t *testing.T) {
	if raceEnabled {
		t.Skip("GoMLX's Go backend fails checkptr under the race detector")
	}
	events, mean, std := lobsterEvents(t, 260)
	cases := map[string]seqCase{
		"gru":         gruCase(t, 100, feature.Names, 64, 3),
		"transformer": transformerCase(t, 50, len(feature.Names), model.TransformerConfig{}, 3),
		"deeplob":     deeplobCase(t, 100, model.DeepLOBConfig{}, 3),
	}
	for name, c := range cases {
		c.spec.Features = feature.Names
		m := c.build(t, 3)
		m.Mean, m.Std = mean, std
		want := windowWant(t, c, m, events)
		s, err := NewStreamer(m, ModeWindow)
		if err != nil {
			t.Fatal(err)
		}
		worst := streamParity(t, s, events, want, 3, func(i int) bool { return i%5 == 0 })
		t.Logf("%s: %d real windows, worst relative difference vs GoMLX %.2g", name, len(events)-m.Window+1, worst)
	}
}
