package dbn

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// sharedData is /work/shared/data seen from this package directory: the
// repository root is ../.., and shared data lives at ../shared/data from it.
var sharedData = filepath.Join("..", "..", "..", "shared", "data")

// clone copies the Decoder-owned record r.
func clone(r Record) Record {
	switch v := r.(type) {
	case *MBO:
		c := *v
		return &c
	case *Trade:
		c := *v
		return &c
	case *MBP1:
		c := *v
		return &c
	case *MBP10:
		c := *v
		return &c
	case *BBO:
		c := *v
		return &c
	case *CMBP1:
		c := *v
		return &c
	case *CBBO:
		c := *v
		return &c
	case *OHLCV:
		c := *v
		return &c
	case *Status:
		c := *v
		return &c
	case *Imbalance:
		c := *v
		return &c
	case *Stat:
		c := *v
		return &c
	case *InstrumentDef:
		c := *v
		return &c
	case *ErrorMsg:
		c := *v
		return &c
	case *SystemMsg:
		c := *v
		return &c
	case *SymbolMappingMsg:
		c := *v
		return &c
	}
	panic("clone: unexpected record type")
}

// readAll decodes every record of d, returning copies and the terminal
// error (nil at a clean end of stream).
func readAll(d *Decoder) ([]Record, error) {
	var out []Record
	for {
		r, err := d.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, clone(r))
	}
}

// openAny opens a corpus file: fragments (".frag" in the name) with the
// version in the name ("v1", "v2", "v3"), or 0 (inferred) without one.
func openAny(t testing.TB, path string) *Decoder {
	t.Helper()
	base := filepath.Base(path)
	if !bytes.Contains([]byte(base), []byte(".frag")) {
		d, err := Open(path)
		if err != nil {
			t.Fatalf("Open(%s): %v", path, err)
		}
		return d
	}
	var version uint8
	for v := uint8(1); v <= 3; v++ {
		if bytes.Contains([]byte(base), []byte{'.', 'v', '0' + v, '.'}) {
			version = v
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	d, err := NewFragmentDecoder(f, version, false)
	if err != nil {
		t.Fatalf("NewFragmentDecoder(%s): %v", path, err)
	}
	return d
}

func decodeFile(t testing.TB, path string) []Record {
	t.Helper()
	d := openAny(t, path)
	defer d.Close()
	recs, err := readAll(d)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if s := d.Skipped(); len(s) != 0 {
		t.Errorf("%s: skipped records %v", path, s)
	}
	return recs
}

// appendMBO encodes m as a 56-byte DBN MBO record.
func appendMBO(dst []byte, m *MBO) []byte {
	var b [sizeMBO]byte
	b[0] = sizeMBO / lengthUnit
	b[1] = RTypeMBO
	binary.LittleEndian.PutUint16(b[2:], m.PublisherID)
	binary.LittleEndian.PutUint32(b[4:], m.InstrumentID)
	binary.LittleEndian.PutUint64(b[8:], m.TsEvent)
	binary.LittleEndian.PutUint64(b[16:], m.OrderID)
	binary.LittleEndian.PutUint64(b[24:], uint64(m.Price))
	binary.LittleEndian.PutUint32(b[32:], m.Size)
	b[36], b[37], b[38], b[39] = m.Flags, m.ChannelID, m.Action, m.Side
	binary.LittleEndian.PutUint64(b[40:], m.TsRecv)
	binary.LittleEndian.PutUint32(b[48:], uint32(m.TsInDelta))
	binary.LittleEndian.PutUint32(b[52:], m.Sequence)
	return append(dst, b[:]...)
}

// mboFile returns the uncompressed v3 MBO corpus file split into its
// metadata header and its record bytes.
func mboFile(t testing.TB) (header, records []byte) {
	t.Helper()
	b, err := os.ReadFile("testdata/test_data.mbo.v3.dbn")
	if err != nil {
		t.Fatal(err)
	}
	n := 8 + int(binary.LittleEndian.Uint32(b[4:]))
	return b[:n:n], b[n:]
}

// decodeBytes decodes a whole in-memory stream.
func decodeBytes(b []byte) ([]Record, *Decoder, error) {
	d, err := NewDecoder(bytes.NewReader(b))
	if err != nil {
		return nil, nil, err
	}
	recs, err := readAll(d)
	d.Close()
	return recs, d, err
}

func asDecodeError(t testing.TB, err error) *DecodeError {
	t.Helper()
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T) is not a *DecodeError", err, err)
	}
	return de
}
