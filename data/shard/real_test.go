package shard

import (
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/gallop-dev/gallop/data/dbn"
	"github.com/gallop-dev/gallop/data/lobster"
)

// realInputs lists the shared real-data samples ingest reads: the four
// LOBSTER days, the two CME MBO files with the ES definition file, and the
// Binance spot capture. It skips the test when they are absent.
func realInputs(tb testing.TB) (lobsterZips, dbnFiles []string, defs, spot string) {
	tb.Helper()
	for _, z := range []string{"AMZN_2012-06-21_1", "GOOG_2012-06-21_1", "GOOG_2012-06-21_5", "GOOG_2012-06-21_10"} {
		lobsterZips = append(lobsterZips, filepath.Join(sharedData, "lobster", "LOBSTER_SampleFile_"+z+".zip"))
	}
	db := filepath.Join(sharedData, "nautilus_trader", "databento")
	dbnFiles = []string{
		filepath.Join(db, "esh4-glbx-mdp3-20231224.mbo.dbn.zst"),
		filepath.Join(db, "orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst"),
	}
	defs = filepath.Join(db, "orderbooks_definition.dbn.zst")
	spot = filepath.Join(sharedData, "hftbacktest", "spot", "btcusdt_20240808.gz")
	for _, p := range append(append(append([]string{}, lobsterZips...), dbnFiles...), defs, spot) {
		if _, err := os.Stat(p); err != nil {
			tb.Skipf("shared data not available: %v", err)
		}
	}
	return
}

// lobsterRows counts what ingest must make of a LOBSTER archive: one row
// per book-event message (types 1-6) whose orderbook row has both sides.
func lobsterRows(t *testing.T, path string) int64 {
	z, err := lobster.OpenZip(path)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	var m lobster.Message
	var row lobster.Row
	var n int64
	for {
		err := z.Messages.Read(&m)
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := z.Orderbook.Read(&row); err != nil {
			t.Fatal(err)
		}
		if m.Type >= lobster.Submit && m.Type <= lobster.Cross && len(row.Asks) > 0 && len(row.Bids) > 0 {
			n++
		}
	}
}

// dbnRows counts what ingest must make of a single-instrument DBN MBO file:
// one row per record outside snapshots and one at the end of each snapshot
// (every record of these files comes when the book has both sides).
func dbnRows(t *testing.T, path string) (records, rows int64) {
	d, err := dbn.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for {
		r, err := d.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		m := r.(*dbn.MBO)
		records++
		if m.Action != 'R' && (m.Flags&dbn.FlagSnapshot == 0 || m.Flags&dbn.FlagLast != 0) {
			rows++
		}
	}
}

func TestRealData(t *testing.T) {
	zips, dbns, defs, spot := realInputs(t)
	dir := t.TempDir()
	inputs := append(append(append([]string{}, zips...), defs), dbns...)
	inputs = append(inputs, spot)
	ds := ingest(t, dir, DefaultOptions(), inputs...)
	m := ds.Manifest
	if err := ds.Verify(); err != nil {
		t.Fatal(err)
	}
	bySource := map[string]Source{}
	for _, s := range m.Sources {
		bySource[s.Name] = s
		t.Logf("source %-60s %-14s %9d events %9d rows", s.Name, s.Format, s.Events, s.Rows)
	}
	for _, in := range m.Instruments {
		t.Logf("instrument %10d %-10s tick %d (%s) rows %d", in.ID, in.Symbol, in.Tick, in.TickSource, in.Rows)
	}
	// LOBSTER: every book-event message after the first is a row (the
	// book always has both sides on these days).
	for _, z := range zips {
		want := lobsterRows(t, z)
		if got := bySource[filepath.Base(z)].Rows; got != want {
			t.Errorf("%s: %d rows, want %d", filepath.Base(z), got, want)
		}
	}
	// CME: 8,725 and 13,796 MBO records, nearly all of them the opening
	// snapshot. ESM4 has a definition among the inputs, ESH4 does not.
	for _, tc := range []struct {
		file       string
		records    int64
		id         uint32
		symbol     string
		tickSource string
	}{
		{dbns[0], 8725, 17077, "ESH4", "inferred-gcd"},
		{dbns[1], 13796, 5602, "ESM4", "definition"},
	} {
		s := bySource[filepath.Base(tc.file)]
		records, rows := dbnRows(t, tc.file)
		if s.Events != tc.records || records != tc.records || s.Rows != rows {
			t.Errorf("%s: %d events, %d rows; want %d events and %d rows", s.Name, s.Events, s.Rows, tc.records, rows)
		}
		found := false
		for _, in := range m.Instruments {
			if in.ID == tc.id {
				found = true
				if in.Symbol != tc.symbol || in.Tick != 250_000_000 || in.TickSource != tc.tickSource {
					t.Errorf("%s: instrument %+v, want %s with tick 0.25 (%s)", s.Name, in, tc.symbol, tc.tickSource)
				}
			}
		}
		if !found {
			t.Errorf("%s: no instrument %d", s.Name, tc.id)
		}
	}
	if s := bySource[filepath.Base(defs)]; s.Format != FormatDefinition || s.Events != 1 {
		t.Errorf("definition source %+v", s)
	}
	sp := bySource[filepath.Base(spot)]
	if sp.Format != FormatFeed || sp.Rows < 10_000 {
		t.Errorf("spot capture: %+v", sp)
	}
	for _, in := range m.Instruments {
		if in.Symbol == "BTCUSDT" && (in.Tick != 10_000_000 || in.TickSource != "decimals") {
			t.Errorf("BTCUSDT tick %d (%s), want 0.01 from decimals", in.Tick, in.TickSource)
		}
	}
	var rows int64
	for _, s := range m.Sources {
		rows += s.Rows
	}
	if rows != m.Rows || m.StartNs >= m.EndNs {
		t.Errorf("manifest rows %d, sources %d; time %s .. %s", m.Rows, rows, m.Start, m.End)
	}
	series, err := ds.Series(100)
	if err != nil {
		t.Fatal(err)
	}
	var srows int64
	for _, s := range series {
		srows += int64(s.Rows())
		if len(s.Features) != s.Rows()*m.Features.Count {
			t.Fatalf("%s: %d features for %d rows", s.Symbol, len(s.Features), s.Rows())
		}
	}
	if srows != m.Rows {
		t.Errorf("series hold %d rows, manifest %d", srows, m.Rows)
	}

	// The LOBSTER book is LOBSTER's own: the spread and best sizes of each
	// row are those of its orderbook row.
	checkLOBSTERBook(t, ds, zips[3])

	// Flip one byte of one shard: Verify names exactly that shard.
	ds.Close()
	victim := m.Shards[len(m.Shards)/2].File
	p := filepath.Join(dir, victim)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/3] ^= 1
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	err = ds.Verify()
	var ve *VerifyError
	if !errors.As(err, &ve) || len(ve.Changed) != 1 || ve.Changed[0] != victim || len(ve.Missing) != 0 {
		t.Fatalf("after flipping a byte of %s: Verify %v", victim, err)
	}
}

// TestRealDBNTickInference: without its definition file, the tick inferred
// from ESM4's order prices is the definition's 0.25.
func TestRealDBNTickInference(t *testing.T) {
	_, dbns, _, _ := realInputs(t)
	ds := ingest(t, t.TempDir(), DefaultOptions(), dbns[1])
	in := ds.Manifest.Instruments
	if len(in) != 1 || in[0].Tick != 250_000_000 || in[0].TickSource != "inferred-gcd" {
		t.Errorf("instruments %+v; want ESM4 with an inferred tick of 0.25", in)
	}
}

func checkLOBSTERBook(t *testing.T, ds *Dataset, path string) {
	var sh *Shard
	for i, info := range ds.Manifest.Shards {
		if info.Source == filepath.Base(path) {
			var err error
			if sh, err = ds.Shard(i); err != nil {
				t.Fatal(err)
			}
		}
	}
	if sh == nil {
		t.Fatalf("no shard of %s", path)
	}
	z, err := lobster.OpenZip(path)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	var m lobster.Message
	var row lobster.Row
	f, F := sh.Features(), sh.F()
	r := 0
	for z.Messages.Read(&m) == nil && z.Orderbook.Read(&row) == nil {
		if m.Type < lobster.Submit || m.Type > lobster.Cross {
			continue
		}
		a, b := row.Asks[0], row.Bids[0]
		spread := float32(float64(a.Price-b.Price) / LOBSTERTick)
		if f[r*F] != spread || f[r*F+31] != float32(math.Log1p(float64(a.Size))) || f[r*F+41] != float32(math.Log1p(float64(b.Size))) {
			t.Fatalf("%s row %d: spread %v ask_q0 %v bid_q0 %v; orderbook row: %v / %v", filepath.Base(path), r, f[r*F], f[r*F+31], f[r*F+41], a, b)
		}
		if sh.TsNs()[r] != m.TsNs {
			t.Fatalf("row %d: time %d, message %d", r, sh.TsNs()[r], m.TsNs)
		}
		r++
	}
	if r != sh.Rows() {
		t.Errorf("%d rows checked of %d", r, sh.Rows())
	}
}
