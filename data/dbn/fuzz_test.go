package dbn

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the full-stream and fragment decoders.
// Nothing may panic; every failure must be a *DecodeError that stays put.
// Seeds: every corpus file. Crashers found live in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for _, path := range corpusFiles(f) {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	header, recs := mboFile(f)
	f.Add(cat(header, recs[:sizeMBO], rawRecord(0x99, 24, 1, nil), recs[sizeMBO:]))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := newDecoder(bytes.NewReader(data), "fuzz", minBufSize)
		if err == nil {
			drain(t, d, len(data))
		} else {
			checkFuzzErr(t, err)
		}
		for _, v := range []uint8{0, 1, 3} {
			d, err := NewFragmentDecoder(bytes.NewReader(data), v, v == 1)
			if err != nil {
				checkFuzzErr(t, err)
				continue
			}
			drain(t, d, len(data))
		}
	})
}

func checkFuzzErr(t *testing.T, err error) {
	t.Helper()
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T) is not a *DecodeError", err, err)
	}
	if de.Offset < 0 || de.RType < -1 || de.RType > 255 || de.Error() == "" {
		t.Fatalf("bad DecodeError %+v", de)
	}
}

// drain decodes records with Next and NextRaw alternately.
func drain(t *testing.T, d *Decoder, n int) {
	t.Helper()
	defer d.Close()
	const maxRecords = 1 << 16 // zstd input can expand a lot
	last := int64(-1)
	for i := 0; i < maxRecords; i++ {
		var err error
		if i%2 == 0 {
			var r Record
			r, err = d.Next()
			if err == nil && r.Header().Size() < HeaderSize {
				t.Fatalf("record %d: header %+v", i, r.Header())
			}
		} else {
			var h RecordHeader
			var b []byte
			h, b, err = d.NextRaw()
			if err == nil && (h.Size() != len(b) || len(b) < HeaderSize) {
				t.Fatalf("NextRaw: header %+v with %d bytes", h, len(b))
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			checkFuzzErr(t, err)
			if _, err2 := d.Next(); err2 != err {
				t.Fatalf("error not sticky: %v then %v", err, err2)
			}
			return
		}
		if d.Offset() <= last {
			t.Fatalf("offset went from %d to %d", last, d.Offset())
		}
		last = d.Offset()
	}
}
