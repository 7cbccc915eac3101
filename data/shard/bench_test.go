package shard

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/gallop-dev/gallop/data/book"
	"github.com/gallop-dev/gallop/data/sim"
)

// The read benchmarks compare the two ways a training run can get the
// features of one LOBSTER day (GOOG, 10 levels, 147,916 messages): map the
// shard ingest wrote, or decode the zip and rebuild book, features and labels.

const benchLOBSTER = "LOBSTER_SampleFile_GOOG_2012-06-21_10.zip"

func benchZip(b *testing.B) string {
	p := filepath.Join(sharedData, "lobster", benchLOBSTER)
	if _, err := os.Stat(p); err != nil {
		b.Skipf("shared data not available: %v", err)
	}
	return p
}

// BenchmarkReadShard opens the dataset, maps the shard, gets the series for
// horizon 100 (labels converted to int32) and reads every feature.
func BenchmarkReadShard(b *testing.B) {
	dir := b.TempDir()
	ds, err := Ingest(context.Background(), []string{benchZip(b)}, dir, DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	rows := ds.Manifest.Rows
	ds.Close()
	b.SetBytes(rows * int64(ds.Manifest.Features.Count) * 4)
	b.ResetTimer()
	var sum [8]float32
	for b.Loop() {
		ds, err := Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		series, err := ds.Series(100)
		if err != nil {
			b.Fatal(err)
		}
		for _, s := range series {
			f := s.Features
			for ; len(f) >= 8; f = f[8:] {
				for j := range 8 {
					sum[j] += f[j]
				}
			}
		}
		ds.Close()
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	_ = sum
}

// BenchmarkReadDecodeLOBSTER builds the same series from the zip: CSV
// decoding, book, features and labels for the three horizons, in memory.
func BenchmarkReadDecodeLOBSTER(b *testing.B) {
	in, err := detect(benchZip(b))
	if err != nil {
		b.Fatal(err)
	}
	opt := DefaultOptions()
	opt.fill()
	var rows int64
	for b.Loop() {
		em := &emitter{in: in, opt: &opt, names: map[string]bool{}}
		if err := ingestLOBSTER(context.Background(), in, em); err != nil {
			b.Fatal(err)
		}
		rows = em.mk.Source.Rows
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkBookFeatures is the book rebuild and feature extraction alone,
// on one core: simulator events (SIMA) through dataset.Builder.
func BenchmarkBookFeatures(b *testing.B) {
	cfg := sim.DefaultConfig()
	cfg.Events = 200_000
	cfg.Instruments = cfg.Instruments[:1]
	var evs []book.Event
	var inst Instrument
	sim.Run(cfg, func(in sim.Instrument, e []book.Event) error {
		evs = append(evs, e...)
		inst = Instrument{ID: in.ID, Symbol: in.Symbol, Tick: 10_000_000}
		return nil
	})
	for b.Loop() {
		bd := newBuilder(inst, len(evs))
		for i := range evs {
			if err := bd.add(&evs[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(evs))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkIngest is ingest end to end (detect, hash, decode, book,
// features, labels, Arrow shards written and fsynced, markers, manifest)
// over every shared sample it reads: four LOBSTER days, two CME MBO files
// with a definition file, and three hftbacktest captures.
func BenchmarkIngest(b *testing.B) {
	zips, dbns, defs, spot := realInputs(b)
	inputs := append(append(append([]string{}, zips...), defs), dbns...)
	inputs = append(inputs, spot,
		filepath.Join(sharedData, "hftbacktest", "cm", "btcusd_perp_20240808.gz"),
		filepath.Join(sharedData, "hftbacktest", "hyperliquid", "btcusd_20250126.gz"))
	var size int64
	for _, p := range inputs {
		st, err := os.Stat(p)
		if err != nil {
			b.Skip(err)
		}
		size += st.Size()
	}
	b.SetBytes(size)
	var events, rows int64
	for b.Loop() {
		dir, err := os.MkdirTemp(b.TempDir(), "ds")
		if err != nil {
			b.Fatal(err)
		}
		ds, err := Ingest(context.Background(), inputs, dir, DefaultOptions())
		if err != nil {
			b.Fatal(err)
		}
		events, rows = 0, ds.Manifest.Rows
		for _, s := range ds.Manifest.Sources {
			events += s.Events
		}
		ds.Close()
		os.RemoveAll(dir)
	}
	b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
