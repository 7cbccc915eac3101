package dbn

import (
	"bytes"
	"io"
	"testing"

	"github.com/gallop-dev/gallop/data/book"
	"github.com/klauspost/compress/zstd"
)

const benchRecords = 1 << 20

// mboStream builds an in-memory DBN v3 MBO stream of n records by encoding
// the corpus MBO records over and over with advancing ids and timestamps.
func mboStream(tb testing.TB, n int) []byte {
	tb.Helper()
	header, raw := mboFile(tb)
	d, err := NewFragmentDecoder(bytes.NewReader(raw), 3, false)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl, err := readAll(d)
	if err != nil || len(tmpl) == 0 {
		tb.Fatalf("templates: %v", err)
	}
	out := make([]byte, 0, len(header)+n*sizeMBO)
	out = append(out, header...)
	actions := []byte("ACMTFAC")
	for i := 0; i < n; i++ {
		m := *tmpl[i%len(tmpl)].(*MBO)
		m.OrderID += uint64(i)
		m.TsEvent += uint64(i) * 1000
		m.TsRecv += uint64(i) * 1000
		m.Sequence += uint32(i)
		m.Price += int64(i%16) * 250_000_000
		m.Action = actions[i%len(actions)]
		out = appendMBO(out, &m)
	}
	return out
}

func TestNextMBODoesNotAllocate(t *testing.T) {
	data := mboStream(t, 4096)
	d, err := NewDecoder(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var ev book.Event
	allocs := testing.AllocsPerRun(4000, func() {
		r, err := d.Next()
		if err != nil {
			t.Fatal(err)
		}
		MBOEvent(r.(*MBO), &ev)
	})
	if allocs != 0 {
		t.Errorf("Next+MBOEvent allocates %.2f times per record", allocs)
	}
}

func reportRecords(b *testing.B, perOp int) {
	b.ReportMetric(float64(perOp)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkDecodeMBO decodes a 1M-record uncompressed MBO stream from memory
// with Next, reading every record's price.
func BenchmarkDecodeMBO(b *testing.B) {
	data := mboStream(b, benchRecords)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var sum int64
	for b.Loop() {
		d, err := NewDecoder(bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			r, err := d.Next()
			if err != nil {
				if err != io.EOF {
					b.Fatal(err)
				}
				break
			}
			if m, ok := r.(*MBO); ok {
				sum += m.Price
				n++
			}
		}
		if n != benchRecords {
			b.Fatalf("decoded %d records", n)
		}
	}
	reportRecords(b, benchRecords)
	_ = sum
}

// BenchmarkDecodeMBOToEvent adds the conversion to book.Event.
func BenchmarkDecodeMBOToEvent(b *testing.B) {
	data := mboStream(b, benchRecords)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var ev book.Event
	var sum int64
	for b.Loop() {
		d, err := NewDecoder(bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		for {
			r, err := d.Next()
			if err != nil {
				break
			}
			if MBOEvent(r.(*MBO), &ev) {
				sum += ev.Size
			}
		}
	}
	reportRecords(b, benchRecords)
	_ = sum
}

// BenchmarkIOFloor moves the same bytes through a buffer of the decoder's
// size to io.Discard, with the plain Read calls the decoder makes (the
// wrappers hide bytes.Reader's WriterTo, which would skip the copy).
func BenchmarkIOFloor(b *testing.B) {
	data := mboStream(b, benchRecords)
	b.SetBytes(int64(len(data)))
	buf := make([]byte, defaultBufSize)
	for b.Loop() {
		n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard},
			struct{ io.Reader }{bytes.NewReader(data)}, buf)
		if err != nil || n != int64(len(data)) {
			b.Fatal(n, err)
		}
	}
	reportRecords(b, benchRecords)
}

func zstdStream(b *testing.B) (raw, z []byte) {
	raw = mboStream(b, benchRecords)
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		b.Fatal(err)
	}
	defer enc.Close()
	return raw, enc.EncodeAll(raw, nil)
}

// BenchmarkDecodeMBOZstd decodes the zstd-compressed stream; SetBytes counts
// decompressed bytes.
func BenchmarkDecodeMBOZstd(b *testing.B) {
	raw, z := zstdStream(b)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		d, err := NewDecoder(bytes.NewReader(z))
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := d.Next(); err != nil {
				break
			}
		}
		d.Close()
	}
	reportRecords(b, benchRecords)
}

// BenchmarkZstdFloor only decompresses the same stream to io.Discard.
func BenchmarkZstdFloor(b *testing.B) {
	raw, z := zstdStream(b)
	b.SetBytes(int64(len(raw)))
	buf := make([]byte, defaultBufSize)
	for b.Loop() {
		zr, err := zstd.NewReader(bytes.NewReader(z), zstd.WithDecoderConcurrency(1))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{zr}, buf); err != nil {
			b.Fatal(err)
		}
		zr.Close()
	}
	reportRecords(b, benchRecords)
}
