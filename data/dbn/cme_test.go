package dbn

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/gallop-dev/gallop/data/book"
)

// Real CME Globex files (DBN v1, zstd) from nautilus_trader's test data.
// They are read in place: their licence keeps them out of this repository.
func cmeFile(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(sharedData, "nautilus_trader", "databento", name)
	if _, err := os.Stat(path); err != nil {
		t.Skipf("shared CME data not available: %v", err)
	}
	return path
}

func TestCMERecordCounts(t *testing.T) {
	for _, tc := range []struct {
		file   string
		schema Schema
		rtype  uint8
		count  int
	}{
		{"esh4-glbx-mdp3-20231224.mbo.dbn.zst", SchemaMBO, RTypeMBO, 8725},
		{"orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst", SchemaMBO, RTypeMBO, 13796},
		{"futures_mbp-1_2024-07-01T23-58_2024-07-02T00-02.dbn.zst", SchemaMBP1, RTypeMBP1, 2288},
		{"futures_trades_2024-07-01T23-58_2024-07-02T00-02.dbn.zst", SchemaTrades, RTypeMBP0, 120},
		{"definition-glbx-es-fut.dbn.zst", SchemaDefinition, RTypeInstrumentDef, 2},
		{"futures_definition.dbn.zst", SchemaDefinition, RTypeInstrumentDef, 2},
		{"orderbooks_definition.dbn.zst", SchemaDefinition, RTypeInstrumentDef, 1},
	} {
		d, err := Open(cmeFile(t, tc.file))
		if err != nil {
			t.Fatal(err)
		}
		if m := d.Metadata(); m.Version != 1 || m.Dataset != "GLBX.MDP3" || m.Schema != tc.schema {
			t.Errorf("%s: metadata %+v", tc.file, m)
		}
		recs, err := readAll(d)
		d.Close()
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if len(recs) != tc.count {
			t.Errorf("%s: %d records, want %d", tc.file, len(recs), tc.count)
		}
		for i, r := range recs {
			if r.Header().RType != tc.rtype || r.Header().PublisherID != 1 {
				t.Fatalf("%s record %d: header %+v", tc.file, i, r.Header())
			}
		}
		switch tc.schema {
		case SchemaDefinition:
			for _, r := range recs {
				def := r.(*InstrumentDef)
				if def.Exchange != "XCME" || (def.Asset != "ES" && def.Asset != "NQ") ||
					def.MinPriceIncrement != 250_000_000 && def.Asset == "ES" {
					t.Errorf("%s: definition %s asset %q exchange %q tick %d", tc.file,
						def.RawSymbol, def.Asset, def.Exchange, def.MinPriceIncrement)
				}
			}
		case SchemaMBP1:
			for _, r := range recs {
				l := r.(*MBP1).Levels[0]
				if l.BidPx >= l.AskPx && l.BidPx != UndefPrice && l.AskPx != UndefPrice {
					t.Fatalf("%s: crossed top of book %+v", tc.file, l)
				}
			}
		}
	}
}

// TestCMEBookNeverCrosses rebuilds each instrument's book from the MBO files
// and checks it is never crossed outside snapshots. A Databento MBO file
// starts with a snapshot: a clear ('R') and adds flagged FlagSnapshot, the
// last with FlagLast. While a snapshot is being applied the book may be
// crossed; after it, it must never be.
func TestCMEBookNeverCrosses(t *testing.T) {
	for _, name := range []string{
		"esh4-glbx-mdp3-20231224.mbo.dbn.zst",
		"orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst",
	} {
		d, err := Open(cmeFile(t, name))
		if err != nil {
			t.Fatal(err)
		}
		books := map[uint32]*book.Book{}
		inSnapshot := map[uint32]bool{}
		var ev book.Event
		var n, applied, snapshot, checked, trades int
		for {
			r, err := d.Next()
			if err != nil {
				if err != io.EOF {
					t.Fatalf("%s: %v", name, err)
				}
				break
			}
			n++
			m := r.(*MBO)
			if !MBOEvent(m, &ev) {
				continue
			}
			b := books[ev.Instrument]
			if b == nil {
				b = book.New()
				books[ev.Instrument] = b
			}
			if ev.Flags&FlagSnapshot != 0 {
				inSnapshot[ev.Instrument] = ev.Flags&FlagLast == 0
				snapshot++
			} else {
				inSnapshot[ev.Instrument] = false
			}
			if ev.Action == book.Trade {
				trades++
			}
			if err := b.Apply(&ev); err != nil {
				t.Fatalf("%s record %d (offset %d): %+v: %v", name, n, d.Offset(), *m, err)
			}
			applied++
			if inSnapshot[ev.Instrument] {
				continue
			}
			checked++
			if b.Crossed() {
				bid, _ := b.Best(book.Bid)
				ask, _ := b.Best(book.Ask)
				t.Fatalf("%s record %d (offset %d): book of %d crossed after %+v: bid %+v ask %+v",
					name, n, d.Offset(), ev.Instrument, *m, bid, ask)
			}
		}
		d.Close()
		for id, b := range books {
			bid, okb := b.Best(book.Bid)
			ask, oka := b.Best(book.Ask)
			if !okb || !oka || b.Orders() == 0 {
				t.Errorf("%s: instrument %d ends with an empty side: bid %+v ask %+v", name, id, bid, ask)
			}
			if b.Unmatched != 0 {
				t.Errorf("%s: instrument %d: %d events for orders never added", name, id, b.Unmatched)
			}
			t.Logf("%s: instrument %d: %d orders, %d/%d levels, best %d x %d", name, id,
				b.Orders(), b.Depth(book.Bid), b.Depth(book.Ask), bid.Price, ask.Price)
		}
		t.Logf("%s: %d records, %d applied (%d snapshot, %d trades), %d checked outside snapshots",
			name, n, applied, snapshot, trades, checked)
		if snapshot == 0 || checked == 0 {
			t.Errorf("%s: snapshot %d, checked %d", name, snapshot, checked)
		}
	}
}
