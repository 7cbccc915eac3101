package dbn

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"reflect"
	"testing"
	"testing/iotest"

	"github.com/gallop-dev/gallop/data/book"
	"github.com/klauspost/compress/zstd"
)

// rawRecord builds a record of the given rtype and total size with body
// bytes after the header.
func rawRecord(rtype uint8, size int, instrument uint32, body []byte) []byte {
	b := make([]byte, size)
	b[0] = uint8(size / lengthUnit)
	b[1] = rtype
	binary.LittleEndian.PutUint16(b[2:], 1)
	binary.LittleEndian.PutUint32(b[4:], instrument)
	binary.LittleEndian.PutUint64(b[8:], 1700000000000000000)
	copy(b[HeaderSize:], body)
	return b
}

func TestUnknownRecordsAreSkipped(t *testing.T) {
	header, recs := mboFile(t)
	odd := rawRecord(0x99, 24, 7, []byte("unknown!"))
	big := rawRecord(0xFE, MaxRecordSize, 8, bytes.Repeat([]byte{0xA0, 14}, 400))
	stream := cat(header, odd, recs[:sizeMBO], big, big, recs[sizeMBO:], odd)

	d, err := NewDecoder(bytes.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(d)
	if err != nil {
		t.Fatal(err)
	}
	want := decodeFile(t, "testdata/test_data.mbo.v3.dbn")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("records around unknown ones:\n got %s\nwant %s", show(got), show(want))
	}
	if s := d.Skipped(); !reflect.DeepEqual(s, map[uint8]uint64{0x99: 2, 0xFE: 2}) {
		t.Errorf("Skipped() = %v", s)
	}

	// NextRaw returns every record with its offset.
	d, err = NewDecoder(bytes.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	off := int64(len(header))
	var rtypes []uint8
	for {
		h, b, err := d.NextRaw()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if d.Offset() != off || h.Size() != len(b) || !bytes.Equal(b, stream[off:off+int64(len(b))]) {
			t.Fatalf("NextRaw at %d: offset %d header %+v len %d", off, d.Offset(), h, len(b))
		}
		off += int64(len(b))
		rtypes = append(rtypes, h.RType)
	}
	if !bytes.Equal(rtypes, []byte{0x99, 0xA0, 0xFE, 0xFE, 0xA0, 0x99}) {
		t.Errorf("NextRaw rtypes % x", rtypes)
	}
}

// TestAwkwardReaders decodes a long stream through a minimal buffer from
// readers that return one byte, or half of what is asked, at a time.
func TestAwkwardReaders(t *testing.T) {
	data := mboStream(t, 3000)
	want, _, err := decodeBytes(data)
	if err != nil || len(want) != 3000 {
		t.Fatal(len(want), err)
	}
	for name, r := range map[string]func() io.Reader{
		"one byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) },
		"half":     func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) },
		"data+EOF": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data)) },
	} {
		for _, size := range []int{minBufSize, minBufSize + 13, defaultBufSize} {
			d, err := newDecoder(r(), "", size)
			if err != nil {
				t.Fatal(err)
			}
			var got []Record
			var offs []int64
			for {
				rec, err := d.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s/%d: %v", name, size, err)
				}
				got = append(got, clone(rec))
				offs = append(offs, d.Offset())
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s/%d: records differ", name, size)
			}
			for i, o := range offs {
				if o != int64(len(data)-3000*sizeMBO+i*sizeMBO) {
					t.Fatalf("%s/%d: record %d at offset %d", name, size, i, o)
				}
			}
		}
	}
}

func TestTsOut(t *testing.T) {
	header, recs := mboFile(t)
	header = bytes.Clone(header)
	header[8+16+2+24+2] = 1 // ts_out flag after stype_in, stype_out
	var stream []byte
	stream = append(stream, header...)
	for i := 0; i < 2; i++ {
		r := bytes.Clone(recs[i*sizeMBO : (i+1)*sizeMBO])
		r[0] += 2
		r = binary.LittleEndian.AppendUint64(r, 1609160400001000000+uint64(i))
		stream = append(stream, r...)
	}
	d, err := NewDecoder(bytes.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	if !d.Metadata().TsOut {
		t.Fatal("metadata ts_out not set")
	}
	want := decodeFile(t, "testdata/test_data.mbo.v3.dbn")
	for i := range want {
		r, err := d.Next()
		if err != nil {
			t.Fatal(err)
		}
		m := *r.(*MBO)
		if m.Length != 16 || d.TsOut() != 1609160400001000000+uint64(i) {
			t.Errorf("record %d: length %d ts_out %d", i, m.Length, d.TsOut())
		}
		m.Length = 14
		if m != *want[i].(*MBO) {
			t.Errorf("record %d: %+v", i, m)
		}
	}
}

// TestGatewayRecords covers the error, system and symbol-mapping records,
// whose layouts changed between DBN v1 and v2; the corpus has none.
func TestGatewayRecords(t *testing.T) {
	v2Header, _ := mboFile(t) // v3 has the v2 layouts
	zv1, err := os.ReadFile("testdata/test_data.mbo.v1.dbn.zst")
	if err != nil {
		t.Fatal(err)
	}
	zd, _ := zstd.NewReader(nil)
	v1File, err := zd.DecodeAll(zv1, nil)
	zd.Close()
	if err != nil {
		t.Fatal(err)
	}
	v1Header := v1File[:8+binary.LittleEndian.Uint32(v1File[4:])]

	str := func(s string, n int) []byte { b := make([]byte, n); copy(b, s); return b }
	u64 := func(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
	const start, end = 1609113600000000000, 1609200000000000000

	v1 := cat(v1Header,
		rawRecord(RTypeError, sizeErrorV1, 0, str("Auth failed", 64)),
		rawRecord(RTypeSystem, sizeSystemV1, 0, str("Heartbeat", 64)),
		rawRecord(RTypeSymbolMapping, sizeSymMapV1, 5482, cat(str("ESH1", 22), str("5482", 22), make([]byte, 4), u64(start), u64(end))))
	v2 := cat(v2Header,
		rawRecord(RTypeError, sizeErrorV2, 0, cat(str("Auth failed", 302), []byte{3, 1})),
		rawRecord(RTypeSystem, sizeSystemV2, 0, cat(str("Heartbeat", 303), []byte{0})),
		rawRecord(RTypeSymbolMapping, sizeSymMapV2, 5482, cat([]byte{1}, str("ESH1", 71), []byte{0}, str("5482", 71), u64(start), u64(end))))

	for name, stream := range map[string][]byte{"v1": v1, "v3": v2} {
		recs, _, err := decodeBytes(stream)
		if err != nil || len(recs) != 3 {
			t.Fatalf("%s: %d records, %v", name, len(recs), err)
		}
		e, s, m := recs[0].(*ErrorMsg), recs[1].(*SystemMsg), recs[2].(*SymbolMappingMsg)
		if e.Err != "Auth failed" || !e.IsLast || s.Msg != "Heartbeat" || s.Code != 0 ||
			m.STypeInSymbol != "ESH1" || m.STypeOutSymbol != "5482" || m.StartTs != start ||
			m.EndTs != end || m.InstrumentID != 5482 {
			t.Errorf("%s: %+v %+v %+v", name, e, s, m)
		}
		if name == "v3" && (e.Code != 3 || m.STypeIn != STypeRawSymbol || m.STypeOut != STypeInstrumentID) {
			t.Errorf("%s: v2 fields: %+v %+v", name, e, m)
		}
		if name == "v1" && (m.STypeIn != STypeNone || m.STypeOut != STypeNone) {
			t.Errorf("%s: stypes %v %v", name, m.STypeIn, m.STypeOut)
		}
	}
}

// metadataV3 encodes a DBN v3 metadata header listing symbols.
func metadataV3(symbols []string) []byte {
	body := make([]byte, 0, 128+len(symbols)*symbolCstrLenV2)
	body = append(body, []byte("GLBX.MDP3\x00\x00\x00\x00\x00\x00\x00")...)
	body = binary.LittleEndian.AppendUint16(body, uint16(SchemaMBO))
	body = binary.LittleEndian.AppendUint64(body, 1)
	body = binary.LittleEndian.AppendUint64(body, UndefTimestamp)
	body = binary.LittleEndian.AppendUint64(body, 0)
	body = append(body, byte(STypeRawSymbol), byte(STypeInstrumentID), 0)
	body = binary.LittleEndian.AppendUint16(body, symbolCstrLenV2)
	body = append(body, make([]byte, 53)...)
	body = binary.LittleEndian.AppendUint32(body, 0) // schema definition
	body = binary.LittleEndian.AppendUint32(body, uint32(len(symbols)))
	for _, s := range symbols {
		sym := make([]byte, symbolCstrLenV2)
		copy(sym, s)
		body = append(body, sym...)
	}
	body = append(body, make([]byte, 12)...) // partial, not found, mappings
	h := append([]byte("DBN\x03"), binary.LittleEndian.AppendUint32(nil, uint32(len(body)))...)
	return append(h, body...)
}

// TestLargeMetadata reads a metadata header larger than the buffer.
func TestLargeMetadata(t *testing.T) {
	var symbols []string
	for i := 0; i < 500; i++ {
		symbols = append(symbols, "SYM"+string(rune('A'+i%26))+string(rune('A'+i/26)))
	}
	_, recs := mboFile(t)
	stream := cat(metadataV3(symbols), recs)
	if len(stream) < 10*minBufSize {
		t.Fatalf("metadata of %d bytes is not larger than the buffer", len(stream))
	}
	for _, size := range []int{minBufSize, defaultBufSize} {
		d, err := newDecoder(iotest.HalfReader(bytes.NewReader(stream)), "", size)
		if err != nil {
			t.Fatal(err)
		}
		if m := d.Metadata(); !reflect.DeepEqual(m.Symbols, symbols) || m.Schema != SchemaMBO {
			t.Errorf("buffer %d: metadata %+v", size, m)
		}
		got, err := readAll(d)
		if err != nil || len(got) != 2 || d.Offset() != int64(len(stream)-sizeMBO) {
			t.Errorf("buffer %d: %d records, offset %d, %v", size, len(got), d.Offset(), err)
		}
	}
	// The same header cut short.
	_, err := newDecoder(bytes.NewReader(stream[:5000]), "", minBufSize)
	checkErr(t, "cut large metadata", err, ErrTruncated, 5000, -1)
}

func TestMBOEvent(t *testing.T) {
	m := MBO{RecordHeader: RecordHeader{InstrumentID: 42, TsEvent: 1700000000123456789},
		OrderID: 99, Price: 5155500000000, Size: 7, Flags: FlagLast | FlagSnapshot}
	for _, tc := range []struct {
		action, side byte
		ok           bool
		a            book.Action
		s            book.Side
	}{
		{'A', 'B', true, book.Add, book.Bid},
		{'A', 'A', true, book.Add, book.Ask},
		{'C', 'A', true, book.Cancel, book.Ask},
		{'M', 'B', true, book.Modify, book.Bid},
		{'R', 'N', true, book.Clear, book.None},
		{'T', 'B', true, book.Trade, book.Bid},
		{'F', 'A', true, book.Trade, book.Ask},
		{'N', 'N', false, 0, 0},
		{'X', 'B', false, 0, 0},
		{'A', '?', true, book.Add, book.None},
	} {
		m.Action, m.Side = tc.action, tc.side
		var ev book.Event
		ok := MBOEvent(&m, &ev)
		if ok != tc.ok {
			t.Errorf("%c%c: ok %v", tc.action, tc.side, ok)
			continue
		}
		if !ok {
			continue
		}
		want := book.Event{TsNs: 1700000000123456789, OrderID: 99, Price: 5155500000000, Size: 7,
			Instrument: 42, Action: tc.a, Side: tc.s, Flags: FlagLast | FlagSnapshot}
		if ev != want {
			t.Errorf("%c%c: %+v, want %+v", tc.action, tc.side, ev, want)
		}
	}
	// Trades and fills leave the book alone; the cancel that follows moves it.
	b := book.New()
	var ev book.Event
	for _, r := range []MBO{
		{OrderID: 1, Price: 100, Size: 5, Action: 'A', Side: 'A'},
		{OrderID: 2, Price: 100, Size: 3, Action: 'T', Side: 'B'},
		{OrderID: 1, Price: 100, Size: 3, Action: 'F', Side: 'A'},
	} {
		MBOEvent(&r, &ev)
		if err := b.Apply(&ev); err != nil {
			t.Fatal(err)
		}
	}
	if l, _ := b.Best(book.Ask); l.Size != 5 {
		t.Errorf("trade or fill changed the book: %+v", l)
	}
	MBOEvent(&MBO{OrderID: 1, Price: 100, Size: 3, Action: 'C', Side: 'A'}, &ev)
	if err := b.Apply(&ev); err != nil {
		t.Fatal(err)
	}
	if l, _ := b.Best(book.Ask); l.Size != 2 {
		t.Errorf("cancel of 3 from 5 left %+v", l)
	}
}

func TestStringers(t *testing.T) {
	if SchemaMBP10.String() != "mbp-10" || SchemaNone.String() != "none" || Schema(99).String() != "schema(99)" {
		t.Error("Schema.String")
	}
	if STypeParent.String() != "parent" || STypeNone.String() != "none" {
		t.Error("SType.String")
	}
	for rt := 0; rt < 256; rt++ {
		if RTypeName(uint8(rt)) == "" {
			t.Errorf("RTypeName(%d) empty", rt)
		}
	}
}

func TestClose(t *testing.T) {
	d, err := Open("testdata/test_data.mbo.v3.dbn.zst")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Next(); err == nil || err == io.EOF {
		t.Errorf("Next after Close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
