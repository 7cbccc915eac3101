package lobster

import (
	"archive/zip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // reference zone rules for TestNewYorkMidnight

	"github.com/gallop-dev/gallop/data/book"
	"github.com/gallop-dev/gallop/internal/shareddata"
)

// sampleDir is shared/data/lobster; the test skips without it.
func sampleDir(t testing.TB) string { return shareddata.Dir(t, "lobster", "*.zip") }

func sampleZips(t testing.TB) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(sampleDir(t), "LOBSTER_SampleFile_*.zip"))
	if err != nil || len(m) == 0 {
		t.Skip("no LOBSTER_SampleFile_*.zip")
	}
	return m
}

func TestParseMessage(t *testing.T) {
	mid := int64(1_000_000_000_000)
	var m Message
	if col, err := parseMessage([]byte("34200.015105074,4,15818974,4,5794000,1"), mid, &m); err != nil {
		t.Fatalf("col %d: %v", col, err)
	}
	want := Message{TsNs: mid + 34200_015105074, Type: ExecuteVisible, OrderID: 15818974, Size: 4, Price: 579_400_000_000, Direction: 1}
	if m != want {
		t.Fatalf("got %+v want %+v", m, want)
	}
	// Short fractions are left-aligned: .05 s is 50 ms.
	if _, err := parseMessage([]byte("34200.05,7,0,0,-1,-1"), 0, &m); err != nil {
		t.Fatal(err)
	}
	if m.TsNs != 34200_050_000_000 || m.Type != Halt || m.Side() != book.Ask {
		t.Fatalf("%+v", m)
	}
	if h, ok := m.Halt(); !ok || h != Halted {
		t.Fatalf("halt %v %v", h, ok)
	}
	// Digits below 1 ns are dropped; integers without decimals are fine.
	for in, ns := range map[string]int64{"1.0000000019": 1_000_000_001, "36000": 36000_000_000_000} {
		if _, err := parseMessage([]byte(in+",1,1,1,1,1"), 0, &m); err != nil || m.TsNs != ns {
			t.Errorf("%s: %d %v", in, m.TsNs, err)
		}
	}
}

func TestParseMessageErrors(t *testing.T) {
	for _, c := range []struct {
		line string
		col  int
		err  error
	}{
		{"", 0, ErrFieldCount},
		{"1,1,1,1,1", 0, ErrFieldCount},
		{"1,1,1,1,1,1,1", 0, ErrFieldCount},
		{"x,1,1,1,1,1", 1, ErrSyntax},
		{".5,1,1,1,1,1", 1, ErrSyntax},
		{"5.,1,1,1,1,1", 1, ErrSyntax},
		{"1.2.3,1,1,1,1,1", 1, ErrSyntax},
		{"1234567890,1,1,1,1,1", 1, ErrRange},
		{"-1,1,1,1,1,1", 1, ErrSyntax},
		{"1,8,1,1,1,1", 2, ErrRange},
		{"1,0,1,1,1,1", 2, ErrRange},
		{"1,1.0,1,1,1,1", 2, ErrSyntax},
		{"1,1,-5,1,1,1", 3, ErrRange},
		{"1,1,1234567890123456789,1,1,1", 3, ErrRange},
		{"1,1,1,,1,1", 4, ErrSyntax},
		{"1,1,1,-1,1,1", 4, ErrRange},
		{"1,1,1,1,1e5,1", 5, ErrSyntax},
		{"1,1,1,1,999999999999999,1", 5, ErrRange},
		{"1,1,1,1,-,1", 5, ErrSyntax},
		{"1,1,1,1,1,0", 6, ErrRange},
		{"1,1,1,1,1,2", 6, ErrRange},
		{"1,1,1,1,1, 1", 6, ErrSyntax},
	} {
		var m Message
		col, err := parseMessage([]byte(c.line), 0, &m)
		if col != c.col || !errors.Is(err, c.err) {
			t.Errorf("%q: col %d err %v; want col %d err %v", c.line, col, err, c.col, c.err)
		}
	}
}

func TestMessageReaderErrorContext(t *testing.T) {
	in := "34200.1,1,1,100,5794000,1\r\n34200.2,1,2,100,5794000,1\n34200.3,1,3,1x0,5794000,1\n34200.4,1,4,100,5794000,1\n"
	r := NewMessageReader(strings.NewReader(in), "X_message_1.csv", 0)
	var m Message
	for i := 0; i < 2; i++ {
		if err := r.Read(&m); err != nil {
			t.Fatal(err)
		}
	}
	err := r.Read(&m)
	var pe *ParseError
	if !errors.As(err, &pe) || pe.File != "X_message_1.csv" || pe.Line != 3 || pe.Column != 4 || pe.Field != "size" || !errors.Is(err, ErrSyntax) {
		t.Fatalf("got %v", err)
	}
	if got := err.Error(); got != "X_message_1.csv:3: column 4 (size): invalid number" {
		t.Fatalf("message %q", got)
	}
	if err2 := r.Read(&m); err2 != err {
		t.Fatalf("error not sticky: %v", err2)
	}

	// A last line without a newline is read; then EOF.
	r = NewMessageReader(strings.NewReader("1,1,1,1,1,1"), "f", 0)
	if err := r.Read(&m); err != nil || m.OrderID != 1 {
		t.Fatal(err)
	}
	if err := r.Read(&m); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}

	// Overlong line.
	r = NewMessageReader(strings.NewReader(strings.Repeat("1", maxLine+10)+"\n"), "f", 0)
	if err := r.Read(&m); !errors.Is(err, ErrLineLength) || !errors.As(err, &pe) || pe.Line != 1 {
		t.Fatalf("got %v", err)
	}
}

func TestOrderbookReader(t *testing.T) {
	in := "5802300,100,5794000,496,5804300,200,-9999999999,0\n" +
		"9999999999,0,5794000,496,9999999999,0,-9999999999,0\n" +
		"5802300,100,5794000,496,5804300,200\n" +
		"5802300,100,5794000,496,5804300,0,5794000,1\n" +
		"5802300,100,-9999999999,0,5804300,200,5793000,1\n"
	r := NewOrderbookReader(strings.NewReader(in), "X_orderbook_2.csv", 2)
	var row Row
	if err := r.Read(&row); err != nil {
		t.Fatal(err)
	}
	if len(row.Asks) != 2 || len(row.Bids) != 1 ||
		row.Asks[1] != (book.Level{Price: 580_430_000_000, Size: 200}) || row.Bids[0] != (book.Level{Price: 579_400_000_000, Size: 496}) {
		t.Fatalf("%+v", row)
	}
	if err := r.Read(&row); err != nil || len(row.Asks) != 0 || len(row.Bids) != 1 {
		t.Fatalf("%+v %v", row, err)
	}
	var pe *ParseError
	if err := r.Read(&row); !errors.Is(err, ErrFieldCount) || !errors.As(err, &pe) || pe.Line != 3 {
		t.Fatalf("short row: %v", err)
	}
	// Errors are sticky; check the remaining lines with fresh readers.
	r = NewOrderbookReader(strings.NewReader("5802300,100,5794000,496,5804300,0,5794000,1\n"), "f", 2)
	if err := r.Read(&row); !errors.As(err, &pe) || pe.Column != 6 || pe.Field != "ask size 2" {
		t.Fatalf("zero size: %v", err)
	}
	r = NewOrderbookReader(strings.NewReader("5802300,100,-9999999999,0,5804300,200,5793000,1\n"), "f", 2)
	if err := r.Read(&row); !errors.Is(err, errHole) || !errors.As(err, &pe) || pe.Line != 1 || !strings.Contains(err.Error(), "column 7 (bid price 2)") {
		t.Fatalf("hole: %v", err)
	}
}

func TestToEvent(t *testing.T) {
	base := Message{TsNs: 7, OrderID: 9, Size: 100, Price: 5, Direction: -1}
	for _, c := range []struct {
		typ    EventType
		ok     bool
		action book.Action
		side   book.Side
	}{
		{Submit, true, book.Add, book.Ask},
		{PartialCancel, true, book.Cancel, book.Ask},
		{Delete, true, book.Cancel, book.Ask},
		{ExecuteVisible, true, book.Fill, book.Ask},
		{ExecuteHidden, true, book.Trade, book.Bid}, // a hidden sell order is hit by a buyer
		{Cross, true, book.Trade, book.None},
		{Halt, false, 0, book.Ask},
		{0, false, 0, book.Ask},
	} {
		m := base
		m.Type = c.typ
		e := book.Event{Instrument: 42}
		ok := ToEvent(&m, &e)
		if ok != c.ok || e.Action != c.action || e.Side != c.side || e.Flags != uint8(c.typ) ||
			e.Instrument != 42 || e.TsNs != 7 || e.OrderID != 9 || e.Size != 100 || e.Price != 5 {
			t.Errorf("%v: ok=%v %+v", c.typ, ok, e)
		}
	}
}

func TestParseName(t *testing.T) {
	n, err := ParseName("dir/GOOG_2012-06-21_34200000_57600000_orderbook_10.csv")
	if err != nil {
		t.Fatal(err)
	}
	want := Name{Ticker: "GOOG", Date: time.Date(2012, 6, 21, 0, 0, 0, 0, time.UTC),
		Start: 9*time.Hour + 30*time.Minute, End: 16 * time.Hour, Kind: "orderbook", Levels: 10}
	if n != want {
		t.Fatalf("%+v", n)
	}
	if n, err := ParseName("BRK_A_2012-06-21_0_1_message_1.csv"); err != nil || n.Ticker != "BRK_A" {
		t.Fatalf("%+v %v", n, err)
	}
	for _, bad := range []string{"", "x.csv", "GOOG_2012-06-21_34200000_57600000_orderbook_10.txt",
		"GOOG_2012-13-21_34200000_57600000_orderbook_10.csv", "GOOG_2012-06-21_5_4_orderbook_10.csv",
		"GOOG_2012-06-21_1_2_book_10.csv", "GOOG_2012-06-21_1_2_message_0.csv", "_2012-06-21_1_2_message_1.csv"} {
		if _, err := ParseName(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestNewYorkMidnight(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip(err)
	}
	for d := time.Date(1988, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() < 2040; d = d.AddDate(0, 0, 1) {
		want := time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, ny).UnixNano()
		if got := NewYorkMidnight(d); got != want {
			t.Fatalf("%s: got %v want %v", d.Format(time.DateOnly), time.Unix(0, got).UTC(), time.Unix(0, want).UTC())
		}
	}
	// 09:30 on the sample day is 13:30 UTC (EDT).
	ts := NewYorkMidnight(time.Date(2012, 6, 21, 0, 0, 0, 0, time.UTC)) + 34200e9
	if got := time.Unix(0, ts).UTC(); got != time.Date(2012, 6, 21, 13, 30, 0, 0, time.UTC) {
		t.Fatal(got)
	}
}

// TestZipReaders reads every sample archive end to end: message and
// orderbook files have the same number of lines, times never go backwards
// and stay inside the requested window, and each row has at most Levels
// levels per side, sorted best first.
func TestZipReaders(t *testing.T) {
	for _, path := range sampleZips(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			z, err := OpenZip(path)
			if err != nil {
				t.Fatal(err)
			}
			defer z.Close()
			mid := NewYorkMidnight(z.Date)
			var m Message
			var row Row
			prev := int64(0)
			n := 0
			types := map[EventType]int{}
			for {
				err1 := z.Messages.Read(&m)
				err2 := z.Orderbook.Read(&row)
				if err1 == io.EOF && err2 == io.EOF {
					break
				}
				if err1 != nil || err2 != nil {
					t.Fatalf("row %d: %v / %v", n+1, err1, err2)
				}
				n++
				types[m.Type]++
				if m.TsNs < prev {
					t.Fatalf("line %d: time goes backwards", n)
				}
				prev = m.TsNs
				if off := time.Duration(m.TsNs - mid); off < z.Start || off > z.End {
					t.Fatalf("line %d: time %v outside [%v, %v]", n, off, z.Start, z.End)
				}
				if len(row.Asks) > z.Levels || len(row.Bids) > z.Levels {
					t.Fatalf("line %d: too many levels", n)
				}
				for i := 1; i < len(row.Asks); i++ {
					if row.Asks[i].Price <= row.Asks[i-1].Price {
						t.Fatalf("line %d: asks not ascending", n)
					}
				}
				for i := 1; i < len(row.Bids); i++ {
					if row.Bids[i].Price >= row.Bids[i-1].Price {
						t.Fatalf("line %d: bids not descending", n)
					}
				}
			}
			t.Logf("%s %s levels=%d: %d messages %v", z.Ticker, z.Date.Format(time.DateOnly), z.Levels, n, types)
		})
	}
}

func writeZip(t *testing.T, files map[string]string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "x.zip")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for name, body := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, body)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOpenZipErrors(t *testing.T) {
	if _, err := OpenZip(filepath.Join(t.TempDir(), "missing.zip")); err == nil {
		t.Fatal("no error")
	}
	const msg = "X_2012-06-21_34200000_57600000_message_1.csv"
	const ob = "X_2012-06-21_34200000_57600000_orderbook_1.csv"
	if _, err := OpenZip(writeZip(t, map[string]string{msg: "", "readme.txt": ""})); err == nil {
		t.Fatal("no orderbook: no error")
	}
	if _, err := OpenZip(writeZip(t, map[string]string{msg: "", "X_2012-06-21_34200000_57600000_orderbook_2.csv": ""})); err == nil {
		t.Fatal("level mismatch: no error")
	}
	path := writeZip(t, map[string]string{
		msg: "34200.1,1,1,100,5794000,1\n34200.2,1,2,100,5794000,7\n",
		ob:  "5802300,100,5794000,100\n5802300,100,5794000,x\n",
	})
	z, err := OpenZip(path)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	if z.Ticker != "X" || z.Levels != 1 || z.MessageFile != msg {
		t.Fatalf("%+v", z)
	}
	var m Message
	var row Row
	if err := z.Messages.Read(&m); err != nil {
		t.Fatal(err)
	}
	if err := z.Orderbook.Read(&row); err != nil {
		t.Fatal(err)
	}
	if err := z.Messages.Read(&m); err == nil || err.Error() != path+"/"+msg+":2: column 6 (direction): value out of range" {
		t.Fatalf("got %v", err)
	}
	if err := z.Orderbook.Read(&row); err == nil || err.Error() != path+"/"+ob+":2: column 4 (bid size 1): invalid number" {
		t.Fatalf("got %v", err)
	}
}
