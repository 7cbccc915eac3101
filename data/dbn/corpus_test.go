package dbn

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// corpusFiles lists the official DBN test corpus copied into testdata.
func corpusFiles(t testing.TB) []string {
	t.Helper()
	var files []string
	for _, pat := range []string{"testdata/*.dbn*", "testdata/*.dbz"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 80 {
		t.Fatalf("found %d corpus files in testdata, want the full corpus", len(files))
	}
	slices.Sort(files)
	return files
}

// schemaOf returns the schema part of a corpus file name:
// "test_data.mbp-10.v2.dbn.zst" -> "mbp-10".
func schemaOf(path string) string {
	base := filepath.Base(path)
	if strings.HasPrefix(base, "multi-frame.") {
		base = strings.TrimPrefix(base, "multi-frame.")
	} else {
		base = strings.TrimPrefix(base, "test_data.")
	}
	schema := base[:strings.IndexByte(base, '.')]
	if strings.Contains(base, ".frag") {
		schema += "-fragment" // different records from the full files
	}
	return schema
}

// Record counts per file as reported by the official dbn CLI (the ohlcv-1d
// files hold metadata only; bbo and status files hold four records).
func wantCount(path string) int {
	base := filepath.Base(path)
	switch {
	case base == "multi-frame.definition.v1.dbn.frag.zst":
		return 8
	case strings.Contains(base, ".ohlcv-1d."):
		return 0
	case strings.Contains(base, ".bbo-1"), strings.Contains(base, ".status."):
		return 4
	}
	return 2
}

func TestCorpusDecodesEveryFile(t *testing.T) {
	for _, f := range corpusFiles(t) {
		recs := decodeFile(t, f)
		if got, want := len(recs), wantCount(f); got != want {
			t.Errorf("%s: %d records, want %d", f, got, want)
		}
	}
}

// normalize clears what legitimately differs between encodings of the same
// records: the header length (layouts grow between versions) and the
// deprecated OHLCV rtype of legacy DBZ files.
func normalize(r Record, schema string) Record {
	r = clone(r)
	h := r.Header()
	h.Length = 0
	if h.RType == RTypeOHLCVDeprecated {
		h.RType = map[string]uint8{"ohlcv-1s": RTypeOHLCV1S, "ohlcv-1m": RTypeOHLCV1M,
			"ohlcv-1h": RTypeOHLCV1H, "ohlcv-1d": RTypeOHLCV1D}[schema]
	}
	if d, ok := r.(*InstrumentDef); ok {
		// Keep the fields every version has.
		*d = InstrumentDef{RecordHeader: d.RecordHeader, TsRecv: d.TsRecv,
			MinPriceIncrement: d.MinPriceIncrement, DisplayFactor: d.DisplayFactor,
			Expiration: d.Expiration, Activation: d.Activation, HighLimitPrice: d.HighLimitPrice,
			StrikePrice: d.StrikePrice, RawInstrumentID: d.RawInstrumentID,
			MinLotSizeRoundLot: d.MinLotSizeRoundLot, ApplID: d.ApplID, ChannelID: d.ChannelID,
			RawSymbol: d.RawSymbol, Group: d.Group, Exchange: d.Exchange, Secsubtype: d.Secsubtype,
			InstrumentClass: d.InstrumentClass, MatchAlgorithm: d.MatchAlgorithm,
			SecurityUpdateAction: d.SecurityUpdateAction, UserDefinedInstrument: d.UserDefinedInstrument,
			TickRule: d.TickRule}
	}
	return r
}

func show(recs []Record) string {
	var sb strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&sb, "%+v\n", reflect.ValueOf(r).Elem().Interface())
	}
	return sb.String()
}

// TestCorpusVersionsAgree checks that the v1, v2, v3, zstd, fragment and
// legacy DBZ encodings of each schema decode to the same records.
func TestCorpusVersionsAgree(t *testing.T) {
	bySchema := map[string][]string{}
	for _, f := range corpusFiles(t) {
		if strings.HasPrefix(filepath.Base(f), "multi-frame") {
			continue
		}
		bySchema[schemaOf(f)] = append(bySchema[schemaOf(f)], f)
	}
	for schema, files := range bySchema {
		if schema == "definition" {
			// The DBZ definitions are of a different day; compare it below.
			files = slices.DeleteFunc(files, func(f string) bool { return strings.HasSuffix(f, ".dbz") })
		}
		var ref []Record
		for i, f := range files {
			var got []Record
			for _, r := range decodeFile(t, f) {
				got = append(got, normalize(r, schema))
			}
			if i == 0 {
				ref = got
				continue
			}
			if !reflect.DeepEqual(got, ref) {
				t.Errorf("%s: records differ from %s:\n got %s\nwant %s", f, files[0], show(got), show(ref))
			}
		}
	}
	if n := len(bySchema); n != 18 {
		t.Errorf("corpus covers %d schemas (and fragments), want 18", n)
	}
}

func TestCorpusMetadata(t *testing.T) {
	for _, tc := range []struct {
		file    string
		version uint8
		cstrLen int
	}{
		{"test_data.mbo.v1.dbn.zst", 1, 22},
		{"test_data.mbo.v2.dbn.zst", 2, 71},
		{"test_data.mbo.dbn", 2, 71},
		{"test_data.mbo.v3.dbn", 3, 71},
		{"test_data.mbo.v3.dbn.zst", 3, 71},
		{"test_data.mbo.dbz", 0, 22},
	} {
		d, err := Open(filepath.Join("testdata", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		m := d.Metadata()
		d.Close()
		day := func(d int) time.Time { return time.Date(2020, 12, d, 0, 0, 0, 0, time.UTC) }
		want := &Metadata{
			Version: tc.version, Dataset: "GLBX.MDP3", Schema: SchemaMBO,
			Start: 1609160400000000000, End: 1609200000000000000, Limit: 2,
			STypeIn: STypeRawSymbol, STypeOut: STypeInstrumentID, SymbolCstrLen: tc.cstrLen,
			Symbols: []string{"ESH1"},
			Mappings: []SymbolMapping{{RawSymbol: "ESH1",
				Intervals: []MappingInterval{{Start: day(28), End: day(29), Symbol: "5482"}}}},
		}
		if !reflect.DeepEqual(m, want) {
			t.Errorf("%s: metadata\n got %+v\nwant %+v", tc.file, m, want)
		}
	}
	// Statistics metadata: no symbols, instrument_id input, open end.
	d, err := Open("testdata/test_data.statistics.v3.dbn.zst")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if m := d.Metadata(); m.Schema != SchemaStatistics || m.STypeIn != STypeInstrumentID ||
		m.End != UndefTimestamp || len(m.Symbols) != 0 || len(m.Mappings) != 0 {
		t.Errorf("statistics metadata: %+v", m)
	}
}

// filesOf returns the corpus files of one schema.
func filesOf(t *testing.T, schema string) []string {
	var out []string
	for _, f := range corpusFiles(t) {
		if schemaOf(f) == schema && !strings.Contains(f, ".frag") {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no corpus files for %s", schema)
	}
	return out
}

// The expected values below are those the official tooling reports for the
// corpus: Databento's dbn CLI (`dbn -J`) output and the assertions of
// Databento's own decoder tests (dbn, databento-cpp) for the same files.
func TestCorpusMBOValues(t *testing.T) {
	want := []MBO{
		{RecordHeader: RecordHeader{Length: 14, RType: RTypeMBO, PublisherID: 1, InstrumentID: 5482,
			TsEvent: 1609160400000429831}, OrderID: 647784973705, Price: 3722750000000, Size: 1,
			Flags: FlagLast, ChannelID: 0, Action: 'C', Side: 'A', TsRecv: 1609160400000704060,
			TsInDelta: 22993, Sequence: 1170352},
		{RecordHeader: RecordHeader{Length: 14, RType: RTypeMBO, PublisherID: 1, InstrumentID: 5482,
			TsEvent: 1609160400000431665}, OrderID: 647784973631, Price: 3723000000000, Size: 1,
			Flags: FlagLast, ChannelID: 0, Action: 'C', Side: 'A', TsRecv: 1609160400000711344,
			TsInDelta: 19621, Sequence: 1170353},
	}
	for _, f := range filesOf(t, "mbo") {
		recs := decodeFile(t, f)
		for i := range want {
			if got := recs[i].(*MBO); *got != want[i] {
				t.Errorf("%s record %d:\n got %+v\nwant %+v", f, i, *got, want[i])
			}
		}
	}
}

func TestCorpusTradesAndTBBOValues(t *testing.T) {
	trades := []Trade{
		{RecordHeader: RecordHeader{Length: 12, RType: RTypeMBP0, PublisherID: 1, InstrumentID: 5482,
			TsEvent: 1609160400098821953}, Price: 3720250000000, Size: 5, Action: 'T', Side: 'A',
			Flags: 129, Depth: 0, TsRecv: 1609160400099150057, TsInDelta: 19251, Sequence: 1170380},
		{RecordHeader: RecordHeader{Length: 12, RType: RTypeMBP0, PublisherID: 1, InstrumentID: 5482,
			TsEvent: 1609160400107665963}, Price: 3720250000000, Size: 21, Action: 'T', Side: 'A',
			Flags: 129, Depth: 0, TsRecv: 1609160400108142648, TsInDelta: 20728, Sequence: 1170414},
	}
	for _, f := range filesOf(t, "trades") {
		for i, r := range decodeFile(t, f) {
			if got := r.(*Trade); *got != trades[i] {
				t.Errorf("%s record %d:\n got %+v\nwant %+v", f, i, *got, trades[i])
			}
		}
	}
	levels := []BidAskPair{
		{BidPx: 3720250000000, AskPx: 3720500000000, BidSz: 26, AskSz: 7, BidCt: 16, AskCt: 6},
		{BidPx: 3720250000000, AskPx: 3720500000000, BidSz: 21, AskSz: 22, BidCt: 13, AskCt: 15},
	}
	for _, f := range filesOf(t, "tbbo") {
		for i, r := range decodeFile(t, f) {
			want := MBP1{Trade: trades[i], Levels: [1]BidAskPair{levels[i]}}
			want.RType, want.Length = RTypeMBP1, 20
			if got := r.(*MBP1); *got != want {
				t.Errorf("%s record %d:\n got %+v\nwant %+v", f, i, *got, want)
			}
		}
	}
}

func TestCorpusMBP1Values(t *testing.T) {
	want := []MBP1{
		{Trade: Trade{RecordHeader: RecordHeader{Length: 20, RType: RTypeMBP1, PublisherID: 1,
			InstrumentID: 5482, TsEvent: 1609160400006001487}, Price: 3720500000000, Size: 1,
			Action: 'A', Side: 'A', Flags: 128, Depth: 0, TsRecv: 1609160400006136329,
			TsInDelta: 17214, Sequence: 1170362},
			Levels: [1]BidAskPair{{BidPx: 3720250000000, AskPx: 3720500000000, BidSz: 24, AskSz: 11, BidCt: 15, AskCt: 9}}},
		{Trade: Trade{RecordHeader: RecordHeader{Length: 20, RType: RTypeMBP1, PublisherID: 1,
			InstrumentID: 5482, TsEvent: 1609160400006146661}, Price: 3720500000000, Size: 1,
			Action: 'A', Side: 'A', Flags: 128, Depth: 0, TsRecv: 1609160400006246513,
			TsInDelta: 18858, Sequence: 1170364},
			Levels: [1]BidAskPair{{BidPx: 3720250000000, AskPx: 3720500000000, BidSz: 24, AskSz: 12, BidCt: 15, AskCt: 10}}},
	}
	for _, f := range filesOf(t, "mbp-1") {
		for i, r := range decodeFile(t, f) {
			if got := r.(*MBP1); *got != want[i] {
				t.Errorf("%s record %d:\n got %+v\nwant %+v", f, i, *got, want[i])
			}
		}
	}
}

func TestCorpusMBP10Values(t *testing.T) {
	for _, f := range filesOf(t, "mbp-10") {
		recs := decodeFile(t, f)
		a, b := recs[0].(*MBP10), recs[1].(*MBP10)
		if a.RType != RTypeMBP10 || a.Length != 92 || a.InstrumentID != 5482 ||
			a.TsEvent != 1609160400000429831 || a.Price != 3722750000000 || a.Size != 1 ||
			a.Action != 'C' || a.Side != 'A' || a.Flags != 128 || a.Depth != 9 ||
			a.TsRecv != 1609160400000704060 || a.TsInDelta != 22993 || a.Sequence != 1170352 {
			t.Errorf("%s record 0: %+v", f, a.Trade)
		}
		wantA := [3]BidAskPair{
			{BidPx: 3720250000000, AskPx: 3720500000000, BidSz: 24, AskSz: 10, BidCt: 15, AskCt: 8},
			{BidPx: 3720000000000, AskPx: 3720750000000, BidSz: 31, AskSz: 34, BidCt: 18, AskCt: 24},
			{BidPx: 3719750000000, AskPx: 3721000000000, BidSz: 32, AskSz: 39, BidCt: 23, AskCt: 25},
		}
		if [3]BidAskPair(a.Levels[:3]) != wantA {
			t.Errorf("%s record 0 levels: %+v", f, a.Levels[:3])
		}
		if b.TsEvent != 1609160400000435673 || b.Price != 3720000000000 || b.Side != 'B' ||
			b.Depth != 1 || b.TsRecv != 1609160400000750544 || b.TsInDelta != 20625 || b.Sequence != 1170356 {
			t.Errorf("%s record 1: %+v", f, b.Trade)
		}
		if l := b.Levels[1]; l != (BidAskPair{BidPx: 3720000000000, AskPx: 3720750000000, BidSz: 30, AskSz: 34, BidCt: 17, AskCt: 24}) {
			t.Errorf("%s record 1 level 1: %+v", f, l)
		}
		// Levels are ordered outward from the top of the book.
		for _, r := range []*MBP10{a, b} {
			for i := 1; i < len(r.Levels); i++ {
				if r.Levels[i].BidPx >= r.Levels[i-1].BidPx || r.Levels[i].AskPx <= r.Levels[i-1].AskPx {
					t.Errorf("%s: level %d out of order: %+v", f, i, r.Levels)
				}
			}
		}
	}
}

func TestCorpusOHLCVValues(t *testing.T) {
	want := map[string][]OHLCV{
		"ohlcv-1s": {
			{RecordHeader: RecordHeader{TsEvent: 1609160400000000000}, Open: 372025000000000, High: 372050000000000, Low: 372025000000000, Close: 372050000000000, Volume: 57},
			{RecordHeader: RecordHeader{TsEvent: 1609160401000000000}, Open: 372050000000000, High: 372050000000000, Low: 372050000000000, Close: 372050000000000, Volume: 13},
		},
		"ohlcv-1m": {
			{RecordHeader: RecordHeader{TsEvent: 1609160400000000000}, Open: 372025000000000, High: 372150000000000, Low: 372025000000000, Close: 372100000000000, Volume: 353},
			{RecordHeader: RecordHeader{TsEvent: 1609160460000000000}, Open: 372100000000000, High: 372150000000000, Low: 372100000000000, Close: 372150000000000, Volume: 152},
		},
		"ohlcv-1h": {
			{RecordHeader: RecordHeader{TsEvent: 1609160400000000000}, Open: 372025000000000, High: 372350000000000, Low: 372025000000000, Close: 372225000000000, Volume: 9385},
			{RecordHeader: RecordHeader{TsEvent: 1609164000000000000}, Open: 372225000000000, High: 372450000000000, Low: 371600000000000, Close: 371950000000000, Volume: 112698},
		},
	}
	rtypes := map[string]uint8{"ohlcv-1s": RTypeOHLCV1S, "ohlcv-1m": RTypeOHLCV1M, "ohlcv-1h": RTypeOHLCV1H}
	for schema, recs := range want {
		for _, f := range filesOf(t, schema) {
			for i, r := range decodeFile(t, f) {
				w := recs[i]
				w.Length, w.PublisherID, w.InstrumentID = 14, 1, 5482
				w.RType = rtypes[schema]
				if strings.HasSuffix(f, ".dbz") {
					w.RType = RTypeOHLCVDeprecated
				}
				if got := r.(*OHLCV); *got != w {
					t.Errorf("%s record %d:\n got %+v\nwant %+v", f, i, *got, w)
				}
			}
		}
	}
}

func TestCorpusBBOValues(t *testing.T) {
	for _, f := range append(filesOf(t, "bbo-1s"), filesOf(t, "bbo-1m")...) {
		r := decodeFile(t, f)[0].(*BBO)
		want := BBO{RecordHeader: RecordHeader{Length: 20, RType: RTypeBBO1S, PublisherID: 1,
			InstrumentID: 5482, TsEvent: 1609113599045849637}, Price: 3702500000000, Size: 2,
			Side: 'A', Flags: 168, TsRecv: 1609113600000000000, Sequence: 145799,
			Levels: [1]BidAskPair{{BidPx: 3702250000000, AskPx: 3702750000000, BidSz: 18, AskSz: 13, BidCt: 10, AskCt: 13}}}
		if schemaOf(f) == "bbo-1m" {
			want.RType = RTypeBBO1M
		}
		if *r != want {
			t.Errorf("%s record 0:\n got %+v\nwant %+v", f, *r, want)
		}
	}
}

func TestCorpusConsolidatedValues(t *testing.T) {
	level := func(askSz uint32) [1]ConsolidatedBidAskPair {
		return [1]ConsolidatedBidAskPair{{BidPx: 3720250000000, AskPx: 3720500000000, BidSz: 24, AskSz: askSz, BidPb: 1, AskPb: 1}}
	}
	for _, f := range filesOf(t, "cmbp-1") {
		recs := decodeFile(t, f)
		want := []CMBP1{
			{RecordHeader: RecordHeader{Length: 20, RType: RTypeCMBP1, PublisherID: 1, InstrumentID: 5482,
				TsEvent: 1609160400006001487}, Price: 3720500000000, Size: 1, Action: 'A', Side: 'A',
				Flags: 128, TsRecv: 1609160400006136329, TsInDelta: 17214, Levels: level(11)},
			{RecordHeader: RecordHeader{Length: 20, RType: RTypeCMBP1, PublisherID: 1, InstrumentID: 5482,
				TsEvent: 1609160400006146661}, Price: 3720500000000, Size: 1, Action: 'A', Side: 'A',
				Flags: 128, TsRecv: 1609160400006246513, TsInDelta: 18858, Levels: level(12)},
		}
		for i := range want {
			if got := recs[i].(*CMBP1); *got != want[i] {
				t.Errorf("%s record %d:\n got %+v\nwant %+v", f, i, *got, want[i])
			}
		}
	}
	for _, f := range filesOf(t, "cbbo-1s") {
		got := decodeFile(t, f)[1].(*CBBO)
		want := CBBO{RecordHeader: RecordHeader{Length: 20, RType: RTypeCBBO1S, PublisherID: 1,
			InstrumentID: 5482, TsEvent: 1609160400006146661}, Price: 3720500000000, Size: 1,
			Side: 'A', Flags: 128, TsRecv: 1609160400006246513, Levels: level(12)}
		if *got != want {
			t.Errorf("%s record 1:\n got %+v\nwant %+v", f, *got, want)
		}
	}
}

func TestCorpusStatisticsValues(t *testing.T) {
	want := []Stat{
		{RecordHeader: RecordHeader{RType: RTypeStatistics, PublisherID: 1, InstrumentID: 146945,
			TsEvent: 1682269536030443135}, TsRecv: 1682269536040124325, TsRef: UndefTimestamp,
			Price: 100000000000, Quantity: UndefStatQuantity, Sequence: 2, TsInDelta: 26961,
			StatType: 7, ChannelID: 13, UpdateAction: 1, StatFlags: 255},
		{RecordHeader: RecordHeader{RType: RTypeStatistics, PublisherID: 1, InstrumentID: 146945,
			TsEvent: 1682269536071497081}, TsRecv: 1682269536121890092, TsRef: UndefTimestamp,
			Price: 100000000000, Quantity: UndefStatQuantity, Sequence: 7, TsInDelta: 28456,
			StatType: 5, ChannelID: 13, UpdateAction: 1, StatFlags: 255},
	}
	for _, f := range filesOf(t, "statistics") {
		d, err := Open(f)
		if err != nil {
			t.Fatal(err)
		}
		length := uint8(sizeStatV1 / 4)
		if d.Metadata().Version == 3 {
			length = sizeStatV3 / 4
		}
		d.Close()
		for i, r := range decodeFile(t, f) {
			w := want[i]
			w.Length = length
			if got := r.(*Stat); *got != w {
				t.Errorf("%s record %d:\n got %+v\nwant %+v", f, i, *got, w)
			}
		}
	}
}

func TestCorpusStatusValues(t *testing.T) {
	type row struct {
		tsEvent, tsRecv              uint64
		action, reason, tradingEvent uint16
		isTrading                    byte
	}
	rows := []row{
		{1609110000000000000, 1609113600000000000, 7, 1, 0, 'Y'},
		{1609190100000000000, 1609190100007055917, 1, 1, 0, 'N'},
		{1609190970000000000, 1609190970068184258, 1, 1, 1, 'N'},
		{1609191000000000000, 1609191000007282029, 6, 1, 0, 'Y'},
	}
	for _, f := range filesOf(t, "status") {
		for i, r := range decodeFile(t, f) {
			w := rows[i]
			want := Status{RecordHeader: RecordHeader{Length: 10, RType: RTypeStatus, PublisherID: 1,
				InstrumentID: 5482, TsEvent: w.tsEvent}, TsRecv: w.tsRecv, Action: w.action,
				Reason: w.reason, TradingEvent: w.tradingEvent, IsTrading: w.isTrading,
				IsQuoting: 'Y', IsShortSellRestricted: '~'}
			if got := r.(*Status); *got != want {
				t.Errorf("%s record %d:\n got %+v\nwant %+v", f, i, *got, want)
			}
		}
	}
}

func TestCorpusImbalanceValues(t *testing.T) {
	want := []Imbalance{
		{RecordHeader: RecordHeader{Length: 28, RType: RTypeImbalance, PublisherID: 2, InstrumentID: 9439,
			TsEvent: 1633353900633854579}, TsRecv: 1633353900633864350, RefPrice: 229430000000,
			TotalImbalanceQty: 2000, AuctionType: 'O', Side: 'B', UnpairedSide: 'N', SignificantImbalance: '~'},
		{RecordHeader: RecordHeader{Length: 28, RType: RTypeImbalance, PublisherID: 2, InstrumentID: 9439,
			TsEvent: 1633353910208114778}, TsRecv: 1633353910208124734, RefPrice: 229990000000,
			PairedQty: 1719, TotalImbalanceQty: 281, AuctionType: 'O', Side: 'B', UnpairedSide: 'N', SignificantImbalance: '~'},
	}
	for _, f := range filesOf(t, "imbalance") {
		for i, r := range decodeFile(t, f) {
			if got := r.(*Imbalance); *got != want[i] {
				t.Errorf("%s record %d:\n got %+v\nwant %+v", f, i, *got, want[i])
			}
		}
	}
}

// TestCorpusDefinitionValues checks the v1, v2 and v3 definition layouts,
// fields present in all versions and the version-specific ones.
func TestCorpusDefinitionValues(t *testing.T) {
	const maxI64, maxI32 = int64(1<<63 - 1), int32(1<<31 - 1)
	for _, f := range filesOf(t, "definition") {
		if strings.HasSuffix(f, ".dbz") {
			continue
		}
		d, err := Open(f)
		if err != nil {
			t.Fatal(err)
		}
		version := d.Metadata().Version
		d.Close()
		recs := decodeFile(t, f)
		for i, r := range recs {
			got := r.(*InstrumentDef)
			ids := []uint32{6819, 6830}
			tsEvent := []uint64{1633331241618018154, 1633417621703109854}
			tsRecv := []uint64{1633331241618029519, 1633417621703120931}
			if got.RType != RTypeInstrumentDef || got.PublisherID != 2 || got.InstrumentID != ids[i] ||
				got.TsEvent != tsEvent[i] || got.TsRecv != tsRecv[i] {
				t.Errorf("%s record %d header: %+v ts_recv %d", f, i, got.RecordHeader, got.TsRecv)
			}
			if got.RawSymbol != "MSFT" || got.Group != "pxnas-1" || got.Exchange != "XNAS" ||
				got.Secsubtype != "Z " || got.Currency != "" || got.Asset != "" ||
				got.InstrumentClass != 'K' || got.MatchAlgorithm != 'F' ||
				got.SecurityUpdateAction != 'A' || got.UserDefinedInstrument != 'N' {
				t.Errorf("%s record %d strings/chars: %+v", f, i, got)
			}
			if got.MinPriceIncrement != maxI64 || got.DisplayFactor != 100000000000000 ||
				got.Expiration != UndefTimestamp || got.Activation != UndefTimestamp ||
				got.HighLimitPrice != maxI64 || got.StrikePrice != maxI64 ||
				got.RawInstrumentID != uint64(maxI32) || got.MinLotSizeRoundLot != 100 ||
				got.MarketSegmentID != 1<<32-1 || got.UnderlyingID != 0 || got.ApplID != 1<<15-1 ||
				got.MaturityYear != 1<<16-1 || got.ChannelID != 0 || got.MainFraction != 255 ||
				got.ContractMultiplierUnit != 127 || got.FlowScheduleType != 127 || got.TickRule != 255 {
				t.Errorf("%s record %d numbers: %+v", f, i, got)
			}
			if version < 3 {
				if got.TradingReferencePrice != maxI64 || got.TradingReferenceDate != 1<<16-1 ||
					got.MDSecurityTradingStatus != 'N' || got.SettlPriceType != 255 || got.LegSide != 0 {
					t.Errorf("%s record %d v1/v2 fields: %+v", f, i, got)
				}
			} else if got.LegPrice != maxI64 || got.LegDelta != maxI64 || got.LegSide != 'N' ||
				got.LegCount != 0 || got.LegRawSymbol != "" || got.TradingReferencePrice != 0 {
				t.Errorf("%s record %d v3 leg fields: %+v", f, i, got)
			}
		}
	}
	// Legacy DBZ definitions (a different day of MSFT) use the v1 layout.
	recs := decodeFile(t, "testdata/test_data.definition.dbz")
	if got := recs[0].(*InstrumentDef); got.RawSymbol != "MSFT" || got.Exchange != "XNAS" ||
		got.InstrumentID != 7236 || got.MinLotSizeRoundLot != 100 {
		t.Errorf("dbz definition: %+v", got)
	}
}

// TestFragments decodes the metadata-less corpus files (CME option
// definitions) with their version given and with the version inferred from
// record lengths.
func TestFragments(t *testing.T) {
	frags := map[string]uint8{
		"testdata/test_data.definition.v1.dbn.frag": 1, "testdata/test_data.definition.v1.dbn.frag.zst": 1,
		"testdata/test_data.definition.v2.dbn.frag": 2, "testdata/test_data.definition.dbn.frag.zst": 2,
		"testdata/test_data.definition.v3.dbn.frag": 3, "testdata/test_data.definition.v3.dbn.frag.zst": 3,
	}
	for f, v := range frags {
		var byVersion [][]Record
		for _, version := range []uint8{v, 0} {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			d, err := NewFragmentDecoder(bytes.NewReader(b), version, false)
			if err != nil {
				t.Fatal(err)
			}
			got, err := readAll(d)
			d.Close()
			if err != nil {
				t.Fatalf("%s v%d: %v", f, version, err)
			}
			byVersion = append(byVersion, got)
		}
		if !reflect.DeepEqual(byVersion[0], byVersion[1]) {
			t.Errorf("%s: inferred layout differs from v%d", f, v)
		}
		recs := byVersion[0]
		if len(recs) != 2 {
			t.Fatalf("%s: %d records", f, len(recs))
		}
		a := recs[0].(*InstrumentDef)
		if a.InstrumentID != 31778 || a.RawSymbol != "GEM3 P9812" || a.Asset != "GE" ||
			a.CFI != "OPAFPS" || a.SecurityType != "OOF" || a.Underlying != "GEM3" ||
			a.Currency != "USD" || a.Exchange != "XCME" || a.Group != "ZE" ||
			a.StrikePrice != 9812500000000 || a.UnderlyingID != 21230 || a.InstrumentClass != 'P' ||
			a.MatchAlgorithm != 'Q' || a.MaturityYear != 2023 || a.MaturityMonth != 6 ||
			a.MinPriceIncrement != 500000000 || a.ApplID != 313 || a.ChannelID != 3 {
			t.Errorf("%s record 0: %+v", f, a)
		}
		if v < 3 && (a.TradingReferencePrice != 2000000000 || a.TradingReferenceDate != 18620) {
			t.Errorf("%s record 0 settlement fields: %+v", f, a)
		}
		if b := recs[1].(*InstrumentDef); b.RawSymbol != "ESH1 P2250" || b.Underlying != "ESH1" ||
			b.UnderlyingID != 5482 || b.StrikePrice != 2250000000000 || b.UnitOfMeasure != "IPNT" {
			t.Errorf("%s record 1: %+v", f, b)
		}
	}
	// Eight v1 definitions spread over several zstd frames.
	recs := decodeFile(t, "testdata/multi-frame.definition.v1.dbn.frag.zst")
	if len(recs) != 8 {
		t.Fatalf("multi-frame: %d records, want 8", len(recs))
	}
	for _, r := range recs {
		if d := r.(*InstrumentDef); d.Exchange == "" || d.RawSymbol == "" {
			t.Errorf("multi-frame record: %+v", d)
		}
	}
	if _, err := NewFragmentDecoder(bytes.NewReader(nil), 4, false); err == nil {
		t.Error("fragment version 4 accepted")
	}
	d, err := NewFragmentDecoder(bytes.NewReader(nil), 2, false)
	if err != nil {
		t.Fatal(err)
	}
	if recs, err := readAll(d); err != nil || len(recs) != 0 {
		t.Errorf("empty fragment: %v %v", recs, err)
	}
}

// TestZstdFramesSplitAnywhere compresses a stream as several zstd frames cut
// at arbitrary bytes (mid-metadata and mid-record) and checks it decodes
// like the raw stream.
func TestZstdFramesSplitAnywhere(t *testing.T) {
	raw, err := os.ReadFile("testdata/test_data.mbo.v3.dbn")
	if err != nil {
		t.Fatal(err)
	}
	want, _, err := decodeBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	for _, cuts := range [][]int{{1}, {50, 380}, {100, 200, 400, 420}, {len(raw) - 3}} {
		var z []byte
		prev := 0
		for _, c := range append(cuts, len(raw)) {
			z = enc.EncodeAll(raw[prev:c], z)
			prev = c
		}
		got, _, err := decodeBytes(z)
		if err != nil {
			t.Fatalf("cuts %v: %v", cuts, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("cuts %v: records differ", cuts)
		}
	}
}
