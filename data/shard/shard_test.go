package shard

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/gallop-dev/gallop/batch"
	"github.com/gallop-dev/gallop/data/book"
	"github.com/gallop-dev/gallop/data/dataset"
	"github.com/gallop-dev/gallop/data/sim"
)

// sharedData is ../shared/data seen from the repository root.
var sharedData = filepath.Join("..", "..", "..", "shared", "data")

func simConfig(events int) sim.Config {
	c := sim.DefaultConfig()
	c.Events = events
	return c
}

func ingest(t testing.TB, dir string, opt Options, inputs ...string) *Dataset {
	t.Helper()
	ds, err := Ingest(context.Background(), inputs, dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ds.Close() })
	return ds
}

// equalSeries compares two series bit for bit.
func equalSeries(t *testing.T, what string, got, want batch.Series) {
	t.Helper()
	if got.Instrument != want.Instrument || got.Symbol != want.Symbol {
		t.Fatalf("%s: instrument %d %q, want %d %q", what, got.Instrument, got.Symbol, want.Instrument, want.Symbol)
	}
	if len(got.Features) != len(want.Features) || len(got.Labels) != len(want.Labels) || len(got.TsNs) != len(want.TsNs) {
		t.Fatalf("%s: lengths features %d labels %d ts %d, want %d %d %d", what,
			len(got.Features), len(got.Labels), len(got.TsNs), len(want.Features), len(want.Labels), len(want.TsNs))
	}
	for i := range want.Features {
		if math.Float32bits(got.Features[i]) != math.Float32bits(want.Features[i]) {
			t.Fatalf("%s: feature %d = %v, want %v", what, i, got.Features[i], want.Features[i])
		}
	}
	for i := range want.Labels {
		if got.Labels[i] != want.Labels[i] || got.TsNs[i] != want.TsNs[i] {
			t.Fatalf("%s: row %d: label %d ts %d, want %d %d", what, i, got.Labels[i], got.TsNs[i], want.Labels[i], want.TsNs[i])
		}
	}
}

// TestRoundTripSim: sim:20000 through shards equals dataset.Simulated of the
// same configuration bit for bit, at every horizon; the mid column agrees
// with the dmid feature.
func TestRoundTripSim(t *testing.T) {
	dir := t.TempDir()
	opt := DefaultOptions()
	ds := ingest(t, dir, opt, "sim:20000")
	ds.Close()
	ds, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	if err := ds.Verify(); err != nil {
		t.Fatal(err)
	}
	m := ds.Manifest
	if len(m.Shards) != 3 || len(m.Instruments) != 3 || m.Rows == 0 || m.Sources[0].Format != FormatSim {
		t.Fatalf("manifest: %d shards, %d instruments, %d rows, sources %+v", len(m.Shards), len(m.Instruments), m.Rows, m.Sources)
	}
	for _, h := range opt.Horizons {
		want, err := dataset.Simulated(simConfig(20000), dataset.Labeling{Horizon: h, Theta: opt.Theta})
		if err != nil {
			t.Fatal(err)
		}
		got, err := ds.Series(h)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("horizon %d: %d series, want %d", h, len(got), len(want))
		}
		for i := range want {
			equalSeries(t, want[i].Symbol, got[i], want[i])
		}
	}
	var rows int64
	for i := range m.Shards {
		s, err := ds.Shard(i)
		if err != nil {
			t.Fatal(err)
		}
		rows += int64(s.Rows())
		mid, f := s.Mid(), s.Features()
		for r := 1; r < s.Rows(); r++ {
			if d := float32(mid[r] - mid[r-1]); d != f[r*s.F()+1] {
				t.Fatalf("shard %d row %d: mid change %v, dmid feature %v", i, r, d, f[r*s.F()+1])
			}
		}
		if s.Instruments()[0] != m.Shards[i].Instrument || s.Metadata()["symbol"] != m.Shards[i].Symbol {
			t.Errorf("shard %d: instrument column %d, metadata %v", i, s.Instruments()[0], s.Metadata())
		}
	}
	if rows != m.Rows {
		t.Errorf("shards hold %d rows, manifest %d", rows, m.Rows)
	}
	if _, err := ds.Series(7); err == nil {
		t.Error("Series(7) of a dataset without horizon 7 succeeded")
	}
}

// TestZeroCopy: the features and timestamps handed out lie inside the
// shard's memory mapping.
func TestZeroCopy(t *testing.T) {
	dir := t.TempDir()
	ds := ingest(t, dir, DefaultOptions(), "sim:5000")
	series, err := ds.Series(50)
	if err != nil {
		t.Fatal(err)
	}
	inside := func(data []byte, p unsafe.Pointer, n uintptr) bool {
		lo := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
		return uintptr(p) >= lo && uintptr(p)+n <= lo+uintptr(len(data))
	}
	for i, s := range series {
		sh, _ := ds.Shard(i)
		if len(sh.data) == 0 {
			t.Fatal("shard has no mapping")
		}
		if !inside(sh.data, unsafe.Pointer(unsafe.SliceData(s.Features)), uintptr(len(s.Features))*4) {
			t.Errorf("series %d: features at %p are not inside the mapping", i, unsafe.SliceData(s.Features))
		}
		if !inside(sh.data, unsafe.Pointer(unsafe.SliceData(s.TsNs)), uintptr(len(s.TsNs))*8) {
			t.Errorf("series %d: timestamps are not inside the mapping", i)
		}
		if inside(sh.data, unsafe.Pointer(unsafe.SliceData(s.Labels)), uintptr(len(s.Labels))*4) {
			t.Errorf("series %d: int32 labels inside the int8 mapping?", i)
		}
		// The mapping is the file: the bytes at the features' address are
		// the file's bytes at the same offset.
		off := uintptr(unsafe.Pointer(unsafe.SliceData(s.Features))) - uintptr(unsafe.Pointer(unsafe.SliceData(sh.data)))
		raw, err := os.ReadFile(sh.Path())
		if err != nil {
			t.Fatal(err)
		}
		if got := math.Float32frombits(binary.LittleEndian.Uint32(raw[off:])); got != s.Features[0] {
			t.Errorf("series %d: file holds %v at the features' offset, slice %v", i, got, s.Features[0])
		}
	}
}

// TestShardSplit: a small ShardRows splits a series into parts whose
// concatenation is the whole series.
func TestShardSplit(t *testing.T) {
	dir := t.TempDir()
	opt := DefaultOptions()
	opt.ShardRows = 1500
	ds := ingest(t, dir, opt, "sim:4000")
	want, err := dataset.Simulated(simConfig(4000), dataset.Labeling{Horizon: 10, Theta: opt.Theta})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ds.Series(10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 9 {
		t.Fatalf("%d series, want 3 instruments × 3 parts", len(got))
	}
	for i := range want {
		var cat batch.Series
		cat.Instrument, cat.Symbol = got[3*i].Instrument, got[3*i].Symbol
		for _, g := range got[3*i : 3*i+3] {
			if g.Rows() > 1500 {
				t.Errorf("shard of %d rows", g.Rows())
			}
			cat.Features = append(cat.Features, g.Features...)
			cat.Labels = append(cat.Labels, g.Labels...)
			cat.TsNs = append(cat.TsNs, g.TsNs...)
		}
		equalSeries(t, want[i].Symbol, cat, want[i])
	}
}

func TestOpenShardRejects(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string][]byte{
		"text.arrow":  []byte("not an arrow file at all, just some text"),
		"empty.arrow": nil,
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		if s, err := OpenShard(p); err == nil {
			s.Close()
			t.Errorf("%s: opened", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func TestTickInference(t *testing.T) {
	var g gcdTick
	for _, p := range []int64{4_500_250_000_000, 4_500_000_000_000, 4_501_000_000_000, 4_499_750_000_000} {
		g.add(p)
	}
	if g.tick() != 250_000_000 {
		t.Errorf("gcd tick %d", g.tick())
	}
	d := newDecimalTick()
	for _, p := range []int64{56_012_010_000_000, 56_012_000_000_000, 56_100_000_000_000} {
		d.add(p)
	}
	if d.tick() != 10_000_000 {
		t.Errorf("decimal tick %d", d.tick())
	}
}

// TestLOBSTERResync checks resync sets a side to exactly the row's levels.
func TestLOBSTERResync(t *testing.T) {
	b := book.New()
	b.SetLevel(book.Ask, 101, 5, 1)
	b.SetLevel(book.Ask, 102, 7, 1)
	b.SetLevel(book.Ask, 105, 1, 1)
	resync(b, book.Ask, []book.Level{{Price: 100, Size: 3}, {Price: 102, Size: 8}}, nil)
	var got [4]book.Level
	n := b.Levels(book.Ask, got[:])
	if n != 2 || got[0].Price != 100 || got[0].Size != 3 || got[1].Price != 102 || got[1].Size != 8 {
		t.Errorf("after resync: %v", got[:n])
	}
}
