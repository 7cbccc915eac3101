package lobster

import (
	"archive/zip"
	"bytes"
	"io"
	"math"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/gallop-dev/gallop/data/book"
)

// loadMember returns the uncompressed archive member of the given kind
// ("message" or "orderbook") of a sample zip.
func loadMember(tb testing.TB, zipName, kind string) ([]byte, Name) {
	tb.Helper()
	zr, err := zip.OpenReader(filepath.Join(sampleDir(tb), zipName))
	if err != nil {
		tb.Skip(err)
	}
	defer zr.Close()
	for _, f := range zr.File {
		n, err := ParseName(path.Base(f.Name))
		if err != nil || n.Kind != kind {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			tb.Fatal(err)
		}
		defer rc.Close()
		data, err := io.ReadAll(rc)
		if err != nil {
			tb.Fatal(err)
		}
		return data, n
	}
	tb.Fatalf("%s: no %s file", zipName, kind)
	return nil, Name{}
}

const benchZip = "LOBSTER_SampleFile_GOOG_2012-06-21_10.zip"

func BenchmarkMessageReader(b *testing.B) {
	data, _ := loadMember(b, benchZip, "message")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var m Message
	n := 0
	for b.Loop() {
		r := NewMessageReader(bytes.NewReader(data), "bench", 0)
		for r.Read(&m) == nil {
			n++
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkMessageReaderStrconv is the same loop with the strconv-based
// reference parser, for comparison with the hand-written one.
func BenchmarkMessageReaderStrconv(b *testing.B) {
	data, _ := loadMember(b, benchZip, "message")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var m Message
	n := 0
	for b.Loop() {
		var lr lineReader
		lr.init(bytes.NewReader(data), "bench")
		for {
			line, err := lr.next()
			if err != nil {
				break
			}
			if _, err := parseMessageStrconv(line, 0, &m); err != nil {
				b.Fatal(err)
			}
			n++
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkOrderbookReader(b *testing.B) {
	data, name := loadMember(b, benchZip, "orderbook")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var row Row
	n := 0
	for b.Loop() {
		r := NewOrderbookReader(bytes.NewReader(data), "bench", name.Levels)
		for r.Read(&row) == nil {
			n++
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkReconstruct measures book reconstruction: parse each message,
// convert it, apply it and read the top 10 levels of both sides.
func BenchmarkReconstruct(b *testing.B) {
	data, _ := loadMember(b, benchZip, "message")
	b.ReportAllocs()
	var m Message
	var ev book.Event
	var top [10]book.Level
	n := 0
	var sink int64
	for b.Loop() {
		r := NewMessageReader(bytes.NewReader(data), "bench", 0)
		bk := book.New()
		for r.Read(&m) == nil {
			if ToEvent(&m, &ev) {
				_ = bk.Apply(&ev) // pre-sample orders: applied to their level
			}
			k := bk.Levels(book.Bid, top[:])
			k += bk.Levels(book.Ask, top[:])
			sink += int64(k)
			n++
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	_ = sink
}

// BenchmarkZipReplay is end to end from the archive: inflate and parse both
// files, apply, read the top 10 levels.
func BenchmarkZipReplay(b *testing.B) {
	zpath := filepath.Join(sampleDir(b), benchZip)
	b.ReportAllocs()
	var m Message
	var row Row
	var ev book.Event
	var top [10]book.Level
	n := 0
	for b.Loop() {
		z, err := OpenZip(zpath)
		if err != nil {
			b.Fatal(err)
		}
		bk := book.New()
		for z.Messages.Read(&m) == nil && z.Orderbook.Read(&row) == nil {
			if ToEvent(&m, &ev) {
				_ = bk.Apply(&ev)
			}
			bk.Levels(book.Bid, top[:])
			bk.Levels(book.Ask, top[:])
			n++
		}
		z.Close()
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}

// The reference parser: regular expressions for the accepted syntax and
// strconv for the values. It defines the same language as parseMessage and
// serves as the fuzzing oracle.
var (
	refInt  = regexp.MustCompile(`^-?[0-9]{1,18}$`)
	refTime = regexp.MustCompile(`^([0-9]{1,9})(?:\.([0-9]+))?$`)
)

func refParseInt(s []byte) (int64, error) {
	if !refInt.Match(s) {
		if len(s) > 18 && regexp.MustCompile(`^-?[0-9]+$`).Match(s) {
			return 0, ErrRange
		}
		return 0, ErrSyntax
	}
	return strconv.ParseInt(string(s), 10, 64)
}

func parseMessageStrconv(line []byte, midnight int64, m *Message) (int, error) {
	f := bytes.Split(line, []byte{','})
	if len(f) != 6 {
		return 0, ErrFieldCount
	}
	tm := refTime.FindSubmatch(f[0])
	if tm == nil {
		if regexp.MustCompile(`^[0-9]{10,}(\.[0-9]+)?$`).Match(f[0]) {
			return 1, ErrRange
		}
		return 1, ErrSyntax
	}
	sec, _ := strconv.ParseInt(string(tm[1]), 10, 64)
	frac := string(tm[2])
	if len(frac) > 9 {
		frac = frac[:9]
	}
	for len(frac) < 9 {
		frac += "0"
	}
	fr, _ := strconv.ParseInt(frac, 10, 64)
	var v [5]int64
	for i := range v {
		x, err := refParseInt(f[i+1])
		if err != nil {
			return i + 2, err
		}
		v[i] = x
		var bad bool
		switch i {
		case 0:
			bad = x < 1 || x > 7
		case 1, 2:
			bad = x < 0
		case 3:
			bad = x > math.MaxInt64/PriceMult || x < -math.MaxInt64/PriceMult
		case 4:
			bad = x != 1 && x != -1
		}
		if bad {
			return i + 2, ErrRange
		}
	}
	*m = Message{TsNs: midnight + sec*1e9 + fr, Type: EventType(v[0]), OrderID: uint64(v[1]),
		Size: v[2], Price: v[3] * PriceMult, Direction: int8(v[4])}
	return 0, nil
}

// parseMessageStrconvFast is what the parser would be with strconv on byte
// slices (string(b) conversions, ParseFloat for the time), for the
// benchmark only.
func parseMessageStrconvFast(line []byte, midnight int64, m *Message) error {
	var f [6][]byte
	rest, more := line, true
	for i := range f {
		if !more {
			return ErrFieldCount
		}
		f[i], rest, more = nextField(rest)
	}
	if more {
		return ErrFieldCount
	}
	sec, err := strconv.ParseFloat(string(f[0]), 64)
	if err != nil {
		return err
	}
	var v [5]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(string(f[i+1]), 10, 64); err != nil {
			return err
		}
	}
	*m = Message{TsNs: midnight + int64(math.Round(sec*1e9)), Type: EventType(v[0]), OrderID: uint64(v[1]),
		Size: v[2], Price: v[3] * PriceMult, Direction: int8(v[4])}
	return nil
}

func BenchmarkMessageReaderStrconvFast(b *testing.B) {
	data, _ := loadMember(b, benchZip, "message")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var m, want Message
	// Untimed: the float time parse still gives the exact ns here.
	for line := range bytes.Lines(data) {
		line = bytes.TrimSuffix(line, []byte("\n"))
		if err := parseMessageStrconvFast(line, 0, &m); err != nil {
			b.Fatal(err)
		}
		parseMessage(line, 0, &want)
		if m != want {
			b.Fatalf("%q: %+v vs %+v", line, m, want)
		}
	}
	n := 0
	for b.Loop() {
		var lr lineReader
		lr.init(bytes.NewReader(data), "bench")
		for {
			line, err := lr.next()
			if err != nil {
				break
			}
			if err := parseMessageStrconvFast(line, 0, &m); err != nil {
				b.Fatal(err)
			}
			n++
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}
