package batch_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gallop-dev/gallop/batch"
	"github.com/gallop-dev/gallop/data/book"
	"github.com/gallop-dev/gallop/data/dataset"
	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/data/lobster"
	"github.com/gallop-dev/gallop/data/sim"
	"github.com/gallop-dev/gallop/internal/shareddata"
)

// The benchmarks' data: the LOBSTER samples (../shared/data/lobster, skipped
// when absent) and the embedded simulator, each rebuilt into labelled
// feature series once per test binary.

var labeling = dataset.Labeling{Horizon: 100, Theta: 0.1}

// lobsterTick is the tick of LOBSTER's NASDAQ data, $0.01 in book units.
const lobsterTick = book.PriceScale / 100

// lobsterSeries rebuilds each sample archive's book: seeded from the first
// orderbook row (the book after the first message), then every later message
// applied, one feature row per event with both sides present.
func lobsterSeries(dir string) ([]batch.Series, error) {
	zips, err := filepath.Glob(filepath.Join(dir, "LOBSTER_SampleFile_*.zip"))
	if err != nil || len(zips) == 0 {
		return nil, fmt.Errorf("no LOBSTER samples in %s", dir)
	}
	var out []batch.Series
	for i, path := range zips {
		s, err := lobsterOne(path, uint32(i+1))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func lobsterOne(path string, id uint32) (batch.Series, error) {
	z, err := lobster.OpenZip(path)
	if err != nil {
		return batch.Series{}, err
	}
	defer z.Close()
	bd := dataset.NewBuilder(id, fmt.Sprintf("%s_%d", z.Ticker, z.Levels), lobsterTick, 1<<17)
	var m lobster.Message
	var row lobster.Row
	if err := z.Messages.Read(&m); err != nil {
		return batch.Series{}, err
	}
	if err := z.Orderbook.Read(&row); err != nil {
		return batch.Series{}, err
	}
	for _, l := range row.Asks {
		bd.Book().SetLevel(book.Ask, l.Price, l.Size, 0)
	}
	for _, l := range row.Bids {
		bd.Book().SetLevel(book.Bid, l.Price, l.Size, 0)
	}
	var ev book.Event
	ev.Instrument = id
	for k := 2; ; k++ {
		err := z.Messages.Read(&m)
		if err == io.EOF {
			break
		}
		if err != nil {
			return batch.Series{}, err
		}
		if lobster.ToEvent(&m, &ev) {
			if err := bd.Add(&ev); err != nil {
				return batch.Series{}, fmt.Errorf("%s: message %d: %w", path, k, err)
			}
		}
	}
	return bd.Finish(labeling), nil
}

var (
	realSeries = sync.OnceValues(func() ([]batch.Series, error) {
		d := shareddata.Find("lobster", "*.zip")
		if d == "" {
			return nil, os.ErrNotExist
		}
		return lobsterSeries(d)
	})
	simSeries = sync.OnceValues(func() ([]batch.Series, error) {
		cfg := sim.DefaultConfig()
		cfg.Events = 200_000
		return dataset.Simulated(cfg, labeling)
	})
)

type source struct {
	name   string
	series []batch.Series
	seqs   []batch.Seq
}

// sources returns the benchmark data sets and their variable-length
// sequences: LOBSTER cut at 10-second buckets (a calm stretch holds a few
// events, the open thousands), the simulator cut into bursts (gaps over
// 1 ms); at most maxLen rows each, at least 8.
func sources(tb testing.TB, maxLen int) []source {
	var out []source
	if s, err := realSeries(); err == nil {
		q, err := batch.SeqByTime(s, 10*time.Second, 8, maxLen)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, source{"lobster", s, q})
	} else if !errors.Is(err, os.ErrNotExist) {
		tb.Fatal(err)
	} else {
		tb.Log("LOBSTER samples not found (../shared/data/lobster): real-data cases skipped")
	}
	s, err := simSeries()
	if err != nil {
		tb.Fatal(err)
	}
	q, err := batch.SeqByGap(s, time.Millisecond, 8, maxLen)
	if err != nil {
		tb.Fatal(err)
	}
	return append(out, source{"sim", s, q})
}

func events(series []batch.Series) int {
	n := 0
	for i := range series {
		n += series[i].Rows()
	}
	return n
}

// BenchmarkSeqLoader measures the sequence loader end to end (plan, read
// the series into host buffers, pad) with 1, 2 and all cores, one worker
// per core: batches/s and events/s (data positions delivered).
func BenchmarkSeqLoader(b *testing.B) {
	procs := []int{1, 2, runtime.NumCPU()}
	procs = slices.Compact(procs)
	for _, src := range sources(b, 256) {
		for _, cfg := range []batch.SeqSamplerConfig{
			{Layout: batch.Packed, Rows: 32, Len: 512, Seed: 1},
			{Layout: batch.Padded, Rows: 64, Len: 256, Order: batch.OrderBucketed, Seed: 1},
		} {
			for _, p := range procs {
				b.Run(fmt.Sprintf("%s/%v/procs=%d", src.name, cfg.Layout, p), func(b *testing.B) {
					defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(p))
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					s, err := batch.NewSeqSampler(src.seqs, cfg)
					if err != nil {
						b.Fatal(err)
					}
					ld, err := batch.NewSeqLoader(ctx, &batch.SeriesSource{Series: src.series, F: feature.Count}, s,
						batch.SeqLoaderConfig{Prefetch: 2 * p, Workers: p})
					if err != nil {
						b.Fatal(err)
					}
					defer ld.Close()
					for i := 0; i < 4*p; i++ { // fill the pipeline
						bt, err := ld.Next(ctx)
						if err != nil {
							b.Fatal(err)
						}
						ld.Release(bt)
					}
					b.ReportAllocs()
					b.ResetTimer()
					tokens := 0
					for i := 0; i < b.N; i++ {
						bt, err := ld.Next(ctx)
						if err != nil {
							b.Fatal(err)
						}
						tokens += bt.Stats.Tokens
						ld.Release(bt)
					}
					sec := b.Elapsed().Seconds()
					b.ReportMetric(float64(b.N)/sec, "batches/s")
					b.ReportMetric(float64(tokens)/sec, "events/s")
					b.ReportMetric(float64(tokens)/float64(b.N), "events/batch")
				})
			}
		}
	}
}

// BenchmarkWindowLoader is the existing window loader at the main job's
// shape (batch 256, windows of 10 events), for the ratio to the MLP step.
func BenchmarkWindowLoader(b *testing.B) {
	series, err := simSeries()
	if err != nil {
		b.Fatal(err)
	}
	w := &batch.Windows{Series: series, F: feature.Count, W: 10}
	sp, err := batch.TimeSplit(series, 10, labeling.Horizon, labeling.Horizon, 0.8)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ld, err := batch.NewLoader(ctx, w, sp.Train, batch.NewSampler(len(sp.Train), 1, true), batch.LoaderConfig{BatchSize: 256, Prefetch: 4})
	if err != nil {
		b.Fatal(err)
	}
	defer ld.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bt, err := ld.Next(ctx)
		if err != nil {
			b.Fatal(err)
		}
		ld.Release(bt)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "batches/s")
	b.ReportMetric(float64(b.N*256*10)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkPadding plans an epoch of the variable-length sequences (no data
// read) and reports the share of padding positions: padded (64 rows, T =
// the batch's longest sequence) with a random order, padded with a fixed T
// of 256, padded length-bucketed, and packed (8 rows of 512), for epoch 0.
// ns/op is the planning time of one epoch.
func BenchmarkPadding(b *testing.B) {
	for _, src := range sources(b, 256) {
		for _, c := range []struct {
			name string
			cfg  batch.SeqSamplerConfig
		}{
			{"padded-random", batch.SeqSamplerConfig{Layout: batch.Padded, Rows: 64, Len: 256}},
			{"padded-random-fixedT", batch.SeqSamplerConfig{Layout: batch.Padded, Rows: 64, Len: 256, PadMultiple: 256}},
			{"padded-bucketed", batch.SeqSamplerConfig{Layout: batch.Padded, Rows: 64, Len: 256, Order: batch.OrderBucketed}},
			{"packed", batch.SeqSamplerConfig{Layout: batch.Packed, Rows: 8, Len: 512}},
		} {
			b.Run(src.name+"/"+c.name, func(b *testing.B) {
				var e batch.EpochStats
				for i := 0; i < b.N; i++ {
					var err error
					if e, err = batch.MeasureEpoch(src.seqs, c.cfg, 0); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(100*e.PaddingFraction(), "pad%")
				b.ReportMetric(e.TokensPerBatch(), "events/batch")
				b.ReportMetric(float64(e.Steps), "steps")
			})
		}
	}
}

// BenchmarkRankImbalance plans an epoch split over 2, 4 and 8 ranks and
// reports how far the rank with the most tokens is above the mean (mean
// over steps of max/mean - 1, in %, and the worst step), without balancing
// and with LPT and Karmarkar–Karp, for random order (padded 64×256, packed
// 8×512) and for bucketed padded order with one bucket per global step.
func BenchmarkRankImbalance(b *testing.B) {
	for _, src := range sources(b, 256) {
		for _, kind := range []string{"padded", "padded-bucketed", "packed"} {
			for _, ranks := range []int{2, 4, 8} {
				for _, bal := range []batch.Balance{batch.BalanceNone, batch.BalanceLPT, batch.BalanceKK} {
					cfg := batch.SeqSamplerConfig{Layout: batch.Padded, Rows: 64, Len: 256, Ranks: ranks, Balance: bal}
					switch kind {
					case "padded-bucketed":
						cfg.Order, cfg.Bucket = batch.OrderBucketed, ranks*cfg.Rows
					case "packed":
						cfg.Layout, cfg.Rows, cfg.Len = batch.Packed, 8, 512
					}
					b.Run(fmt.Sprintf("%s/%s/ranks=%d/%v", src.name, kind, ranks, bal), func(b *testing.B) {
						var e batch.EpochStats
						for i := 0; i < b.N; i++ {
							var err error
							if e, err = batch.MeasureEpoch(src.seqs, cfg, 0); err != nil {
								b.Fatal(err)
							}
						}
						mean, worst := e.RankImbalance()
						b.ReportMetric(100*(mean-1), "over%")
						b.ReportMetric(100*(worst-1), "worst%")
						b.ReportMetric(100*e.PaddingFraction(), "pad%")
						b.ReportMetric(100*e.SyncPaddingFraction(), "syncpad%")
					})
				}
			}
		}
	}
}

// TestBenchmarkSources checks that the benchmark data builds: the LOBSTER
// books rebuild without errors, and sequences cover most events.
func TestBenchmarkSources(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the benchmark data")
	}
	for _, src := range sources(t, 256) {
		n, lens := 0, make([]int, 0, len(src.seqs))
		for _, q := range src.seqs {
			n += q.Len()
			lens = append(lens, q.Len())
		}
		slices.Sort(lens)
		t.Logf("%s: %d series, %d events, %d sequences holding %d events; length p10 %d, p50 %d, p90 %d, max %d",
			src.name, len(src.series), events(src.series), len(src.seqs), n,
			lens[len(lens)/10], lens[len(lens)/2], lens[len(lens)*9/10], lens[len(lens)-1])
		if n < events(src.series)/2 {
			t.Errorf("%s: sequences hold %d of %d events", src.name, n, events(src.series))
		}
	}
}
