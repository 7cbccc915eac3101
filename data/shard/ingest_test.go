package shard

import (
	"archive/zip"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gallop-dev/gallop/data/book"
	"github.com/gallop-dev/gallop/data/dbn"
	"github.com/gallop-dev/gallop/data/sim"
)

// synthDBN writes an uncompressed DBN v3 MBO file: the metadata header of
// the conformance corpus's mbo file (instrument 5482 = ESH1) followed by
// the simulator's events for one instrument, encoded as MBO records (a
// fill becomes a trade print and a cancel, as in Databento's MBO).
func synthDBN(t testing.TB, path string, events int) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "dbn", "testdata", "test_data.mbo.v3.dbn"))
	if err != nil {
		t.Fatal(err)
	}
	n := 8 + int(binary.LittleEndian.Uint32(b[4:]))
	out := append([]byte(nil), b[:n]...)
	cfg := simConfig(events)
	cfg.Instruments = cfg.Instruments[:1]
	side := map[book.Side]byte{book.Bid: 'B', book.Ask: 'A', book.None: 'N'}
	rec := func(e *book.Event, action, s byte) {
		var r [56]byte
		r[0], r[1] = 56/4, 0xA0
		binary.LittleEndian.PutUint16(r[2:], 1)
		binary.LittleEndian.PutUint32(r[4:], 5482)
		binary.LittleEndian.PutUint64(r[8:], uint64(e.TsNs))
		binary.LittleEndian.PutUint64(r[16:], e.OrderID)
		binary.LittleEndian.PutUint64(r[24:], uint64(e.Price))
		binary.LittleEndian.PutUint32(r[32:], uint32(e.Size))
		r[36], r[38], r[39] = dbn.FlagLast, action, s
		binary.LittleEndian.PutUint64(r[40:], uint64(e.TsNs))
		out = append(out, r[:]...)
	}
	err = sim.Run(cfg, func(_ sim.Instrument, evs []book.Event) error {
		for i := range evs {
			e := &evs[i]
			switch e.Action {
			case book.Add:
				rec(e, 'A', side[e.Side])
			case book.Cancel:
				rec(e, 'C', side[e.Side])
			case book.Fill:
				aggr := book.Bid
				if e.Side == book.Bid {
					aggr = book.Ask
				}
				rec(e, 'T', side[aggr])
				rec(e, 'C', side[e.Side])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if path != "" {
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// tempFiles lists files under dir that look like temporaries.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var tmp []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), ".tmp-") {
			tmp = append(tmp, p)
		}
		return nil
	})
	return tmp
}

func TestIngestDBNInfersTick(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(t.TempDir(), "synth.mbo.dbn")
	synthDBN(t, in, 3000)
	ds := ingest(t, filepath.Join(dir, "ds"), DefaultOptions(), in)
	m := ds.Manifest
	if len(m.Instruments) != 1 {
		t.Fatalf("instruments %+v", m.Instruments)
	}
	inst := m.Instruments[0]
	if inst.ID != 5482 || inst.Symbol != "ESH1" || inst.Tick != 10_000_000 || inst.TickSource != "inferred-gcd" {
		t.Errorf("instrument %+v; want 5482 ESH1, tick 0.01 inferred", inst)
	}
	if m.Rows < 3000 || m.Sources[0].Format != FormatDBN || m.Sources[0].Events < m.Rows {
		t.Errorf("rows %d, source %+v", m.Rows, m.Sources[0])
	}
}

// TestResume: an ingest whose second input fails keeps the first input's
// shards and marker and leaves no temporary file; after the input is fixed,
// a rerun skips the first input (its files untouched) and completes.
func TestResume(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ds")
	bad := filepath.Join(t.TempDir(), "feed.mbo.dbn")
	full := synthDBN(t, "", 2000)
	if err := os.WriteFile(bad, full[:len(full)-30], 0o644); err != nil { // cut inside the last record
		t.Fatal(err)
	}
	var mu sync.Mutex
	var done, skipped []string
	opt := DefaultOptions()
	opt.Workers = 2
	opt.Progress = func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		if p.Skipped {
			skipped = append(skipped, p.Input)
		} else if p.Err == nil {
			done = append(done, p.Input)
		}
	}
	_, err := Ingest(context.Background(), []string{"sim:3000", bad}, dir, opt)
	if err == nil {
		t.Fatal("ingest of a truncated DBN file succeeded")
	}
	if !strings.Contains(err.Error(), bad) || !errors.Is(err, dbn.ErrTruncated) {
		t.Errorf("error %q does not name %s or is not ErrTruncated", err, bad)
	}
	t.Logf("first run: %v", err)
	if _, err := os.Stat(filepath.Join(dir, ManifestFile)); !os.IsNotExist(err) {
		t.Errorf("manifest written after a failed input: %v", err)
	}
	if tmp := tempFiles(t, dir); len(tmp) > 0 {
		t.Errorf("temporary files visible: %v", tmp)
	}
	markers, _ := filepath.Glob(filepath.Join(dir, markerDir, "sim-3000-*.json"))
	shards, _ := filepath.Glob(filepath.Join(dir, "sim-3000-*.arrow"))
	if len(markers) != 1 || len(shards) != 3 {
		t.Fatalf("after the failed run: markers %v, shards %v", markers, shards)
	}
	if all, _ := filepath.Glob(filepath.Join(dir, "*.arrow")); len(all) != 3 {
		t.Errorf("shards of the failed input are visible: %v", all)
	}
	mtimes := map[string]time.Time{}
	for _, p := range append(markers, shards...) {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		mtimes[p] = st.ModTime()
	}
	// A temporary file as a killed run would leave it is cleaned up.
	stale := filepath.Join(dir, ".x.arrow.tmp-123")
	if err := os.WriteFile(stale, []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(bad, full, 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // a rewrite would get a later mtime
	done, skipped = nil, nil
	ds := ingest(t, dir, opt, "sim:3000", bad)
	if len(skipped) != 1 || skipped[0] != "sim:3000" || len(done) != 1 || done[0] != bad {
		t.Errorf("rerun: skipped %v, done %v; want sim:3000 skipped and the DBN file done", skipped, done)
	}
	for p, mt := range mtimes {
		st, err := os.Stat(p)
		if err != nil || !st.ModTime().Equal(mt) {
			t.Errorf("%s rewritten by the rerun (%v)", p, err)
		}
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary file survived: %v", err)
	}
	if len(ds.Manifest.Sources) != 2 || len(ds.Manifest.Shards) != 4 || ds.Manifest.Sources[1].Format != FormatDBN {
		t.Errorf("manifest: sources %+v, %d shards", ds.Manifest.Sources, len(ds.Manifest.Shards))
	}
	if err := ds.Verify(); err != nil {
		t.Error(err)
	}
	// A third run with everything done skips both and rewrites only the
	// manifest.
	done, skipped = nil, nil
	ingest(t, dir, opt, "sim:3000", bad)
	if len(skipped) != 2 || len(done) != 0 {
		t.Errorf("third run: skipped %v, done %v", skipped, done)
	}
	// Other options make the markers stale: the inputs are redone.
	done, skipped = nil, nil
	opt2 := opt
	opt2.Theta = 0.5
	ds2 := ingest(t, dir, opt2, "sim:3000")
	if len(done) != 1 || ds2.Manifest.Labels.Theta != 0.5 {
		t.Errorf("changed theta: done %v, skipped %v", done, skipped)
	}
}

// TestVerifyNamesShard: a flipped byte makes Verify name the shard; a
// deleted shard is named missing; OpenShard survives corrupt metadata.
func TestVerifyNamesShard(t *testing.T) {
	dir := t.TempDir()
	ds := ingest(t, dir, DefaultOptions(), "sim:3000")
	ds.Close()
	sh := ds.Manifest.Shards
	p := filepath.Join(dir, sh[1].File)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, sh[2].File)); err != nil {
		t.Fatal(err)
	}
	err = ds.Verify()
	var ve *VerifyError
	if !errors.As(err, &ve) || len(ve.Changed) != 1 || ve.Changed[0] != sh[1].File || len(ve.Missing) != 1 || ve.Missing[0] != sh[2].File {
		t.Fatalf("Verify: %v", err)
	}
	if !strings.Contains(err.Error(), sh[1].File) {
		t.Errorf("error %q does not name %s", err, sh[1].File)
	}
	if st := ds.Check(); st[0] != ShardOK || st[1] != ShardChanged || st[2] != ShardMissing {
		t.Errorf("Check: %v", st)
	}
	// Corrupting the footer or the schema must give an error, not a panic.
	orig, _ := os.ReadFile(filepath.Join(dir, sh[0].File))
	q := filepath.Join(t.TempDir(), "c.arrow")
	for _, off := range []int{8, 16, 40, 64, 100, 200, len(orig) - 9, len(orig) - 12, len(orig) - 40, len(orig) - 100, len(orig) - 200} {
		c := append([]byte(nil), orig...)
		c[off] ^= 0xff
		os.WriteFile(q, c, 0o644)
		if s, err := OpenShard(q); err == nil {
			s.Close()
		}
	}
}

func TestBadInput(t *testing.T) {
	tmp := t.TempDir()
	text := filepath.Join(tmp, "notes.csv")
	os.WriteFile(text, []byte("time,price\n1,2\n"), 0o644)
	empty := filepath.Join(tmp, "empty.dbn")
	os.WriteFile(empty, nil, 0o644)
	zipPath := filepath.Join(tmp, "other.zip")
	f, _ := os.Create(zipPath)
	zw := zip.NewWriter(f)
	w, _ := zw.Create("readme.txt")
	w.Write([]byte("hello"))
	zw.Close()
	f.Close()
	missing := filepath.Join(tmp, "missing.dbn.zst")
	mbp1 := filepath.Join("..", "dbn", "testdata", "test_data.mbp-1.dbn")
	notDBN := filepath.Join(tmp, "x.zst")
	os.WriteFile(notDBN, []byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0}, 0o644)

	for _, tc := range []struct {
		input string
		want  string // in the error
		is    error
	}{
		{text, "notes.csv", ErrUnknownFormat},
		{empty, "empty.dbn", ErrUnknownFormat},
		{zipPath, "other.zip", ErrUnknownFormat},
		{tmp, tmp, ErrUnknownFormat},
		{missing, "missing.dbn.zst", os.ErrNotExist},
		{mbp1, "test_data.mbp-1.dbn", nil},
		{notDBN, "x.zst", nil},
		{"sim:many", "sim:many", nil},
	} {
		dir := filepath.Join(t.TempDir(), "ds")
		_, err := Ingest(context.Background(), []string{"sim:1000", tc.input}, dir, DefaultOptions())
		if err == nil {
			t.Errorf("%s: no error", tc.input)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%s: error %q, want it to name %q (and be %v)", tc.input, err, tc.want, tc.is)
		}
		t.Logf("%v", err)
		// Detection fails before any work.
		if ents, _ := os.ReadDir(dir); len(ents) > 0 {
			t.Errorf("%s: ingest wrote %d entries before failing", tc.input, len(ents))
		}
	}
	if _, err := Ingest(context.Background(), []string{"sim:1000", "sim:1000"}, t.TempDir(), DefaultOptions()); err == nil {
		t.Error("an input given twice was accepted")
	}
	opt := DefaultOptions()
	opt.Horizons = []int{10, 0}
	if _, err := Ingest(context.Background(), []string{"sim:1000"}, t.TempDir(), opt); err == nil {
		t.Error("horizon 0 accepted")
	}
	if _, err := Open(t.TempDir()); err == nil {
		t.Error("Open of a directory without a manifest succeeded")
	}
}

func TestIngestCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Ingest(ctx, []string{"sim:100000"}, t.TempDir(), DefaultOptions())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled ingest: %v", err)
	}
}

// TestFailedInputLeavesNothing: an input that fails after writing some of
// its shards (here its second instrument) takes them back.
func TestFailedInputLeavesNothing(t *testing.T) {
	b := synthDBN(t, "", 2000)
	var r [56]byte
	r[0], r[1] = 56/4, 0xA0
	binary.LittleEndian.PutUint32(r[4:], 9999)
	binary.LittleEndian.PutUint64(r[16:], 1)
	binary.LittleEndian.PutUint64(r[24:], 100_000_000_000)
	r[36], r[38], r[39] = dbn.FlagLast, 'A', 'B' // an add of size 0: the book refuses it
	in := filepath.Join(t.TempDir(), "two.dbn")
	if err := os.WriteFile(in, append(b, r[:]...), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, err := Ingest(context.Background(), []string{in}, dir, DefaultOptions())
	if err == nil || !strings.Contains(err.Error(), "instrument 9999") || !strings.Contains(err.Error(), in) {
		t.Fatalf("ingest: %v", err)
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, "*.arrow")); len(ents) != 0 {
		t.Errorf("a failed input left %v", ents)
	}
	if tmp := tempFiles(t, dir); len(tmp) > 0 {
		t.Errorf("temporary files visible: %v", tmp)
	}
}

// TestSameContentTwice: two paths with one base name and one content would
// write the same shard files; the second is refused.
func TestSameContentTwice(t *testing.T) {
	a := filepath.Join(t.TempDir(), "x.dbn")
	b := filepath.Join(t.TempDir(), "x.dbn")
	synthDBN(t, a, 500)
	synthDBN(t, b, 500)
	_, err := Ingest(context.Background(), []string{a, b}, t.TempDir(), DefaultOptions())
	if err == nil || !strings.Contains(err.Error(), "same file name and content") {
		t.Fatalf("ingest of one file under two paths: %v", err)
	}
}
