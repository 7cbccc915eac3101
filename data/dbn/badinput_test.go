package dbn

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// checkErr asserts that err is a *DecodeError wrapping want, at offset off
// (when off >= 0) with record type rtype (unless rtype is anyRType), and
// that its message says so.
func checkErr(t *testing.T, name string, err error, want error, off int64, rtype int) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", name)
	}
	de := asDecodeError(t, err)
	if !errors.Is(err, want) {
		t.Errorf("%s: error %q does not wrap %q", name, err, want)
	}
	msg := err.Error()
	if off >= 0 {
		if de.Offset != off {
			t.Errorf("%s: offset %d, want %d (%s)", name, de.Offset, off, msg)
		}
		if !strings.Contains(msg, fmt.Sprintf("offset %d", off)) {
			t.Errorf("%s: message %q does not name offset %d", name, msg, off)
		}
	}
	if rtype == anyRType {
		t.Logf("%s: %v", name, err)
		return
	}
	if de.RType != rtype {
		t.Errorf("%s: rtype %d, want %d (%s)", name, de.RType, rtype, msg)
	}
	if rtype >= 0 && !strings.Contains(msg, fmt.Sprintf("rtype 0x%02x", rtype)) {
		t.Errorf("%s: message %q does not name rtype 0x%02x", name, msg, rtype)
	}
	t.Logf("%s: %v", name, err)
}

// nextErr decodes b and returns the first error other than a clean EOF, and
// how many records came before it.
func nextErr(b []byte) (int, error) {
	d, err := NewDecoder(bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	defer d.Close()
	for n := 0; ; n++ {
		if _, err := d.Next(); err != nil {
			if err == io.EOF {
				return n, nil
			}
			// Errors are sticky.
			if _, err2 := d.Next(); err2 != err {
				return n, fmt.Errorf("second Next returned %v after %v", err2, err)
			}
			return n, err
		}
	}
}

const anyRType = -2

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestBadMetadata(t *testing.T) {
	header, recs := mboFile(t)
	hl := int64(len(header))
	mod := func(off int, f func(b []byte)) []byte {
		b := cat(header, recs)
		f(b[off:])
		return b
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want error
		off  int64
	}{
		{"empty", nil, ErrTruncated, 0},
		{"short prelude", []byte("DBN\x03\x60"), ErrTruncated, 5},
		{"wrong magic", mod(0, func(b []byte) { copy(b, "XBN") }), ErrBadMagic, 0},
		{"text file", []byte("time,price,size\n1,2,3\n"), ErrBadMagic, 0},
		{"version 0", mod(3, func(b []byte) { b[0] = 0 }), ErrUnsupportedVersion, 3},
		{"version 4", mod(3, func(b []byte) { b[0] = 4 }), ErrUnsupportedVersion, 3},
		{"metadata too short", mod(4, func(b []byte) { binary.LittleEndian.PutUint32(b, 40) }), ErrMetadata, 4},
		{"truncated metadata", header[:200], ErrTruncated, 200},
		{"metadata length past end", mod(4, func(b []byte) { binary.LittleEndian.PutUint32(b, 0x3FFFFFF0) }), ErrTruncated, hl + int64(len(recs))},
		{"metadata length absurd", mod(4, func(b []byte) { binary.LittleEndian.PutUint32(b, 0xFFFFFFF0) }), ErrMetadata, 4},
		{"symbol count lies", mod(8+100+4, func(b []byte) { binary.LittleEndian.PutUint32(b, 0xFFFFFFFF) }), ErrMetadata, 8},
		{"symbol_cstr_len 0", mod(8+16+2+24+3, func(b []byte) { b[0], b[1] = 0, 0 }), ErrMetadata, 8},
		// The header ends with the last interval's dates and symbol, then padding
		// to a multiple of 8 bytes.
		{"bad mapping date", mod(int(hl)-3-71-8, func(b []byte) { binary.LittleEndian.PutUint32(b, 20201332) }), ErrMetadata, 8},
	} {
		_, err := nextErr(tc.in)
		checkErr(t, tc.name, err, tc.want, tc.off, -1)
	}
}

func TestBadRecords(t *testing.T) {
	header, recs := mboFile(t)
	hl := int64(len(header))
	rec1, rec2 := recs[:sizeMBO], recs[sizeMBO:]
	with := func(f func(b []byte)) []byte {
		b := bytes.Clone(rec2)
		f(b)
		return cat(header, rec1, b)
	}
	second := hl + sizeMBO // offset of the second record
	for _, tc := range []struct {
		name   string
		in     []byte
		want   error
		off    int64
		rtype  int
		before int // records decoded before the error
	}{
		{"truncated record", cat(header, rec1, rec2[:30]), ErrTruncated, second, 0xa0, 1},
		{"truncated header", cat(header, rec1, rec2[:10]), ErrTruncated, second, 0xa0, 1},
		{"one byte left", cat(header, rec1, rec2[:1]), ErrTruncated, second, -1, 1},
		{"length 0", with(func(b []byte) { b[0] = 0 }), ErrBadLength, second, 0xa0, 1},
		{"length below header", with(func(b []byte) { b[0] = 3 }), ErrBadLength, second, 0xa0, 1},
		{"length past end", with(func(b []byte) { b[0] = 255 }), ErrTruncated, second, 0xa0, 1},
		{"length 0 unknown rtype", with(func(b []byte) { b[0], b[1] = 0, 0x99 }), ErrBadLength, second, 0x99, 1},
		{"mbo shorter than mbo", with(func(b []byte) { b[0] = 4 }), ErrBadLength, second, 0xa0, 1},
		{"definition shorter than definition", with(func(b []byte) { b[1] = RTypeInstrumentDef }), ErrBadLength, second, 0x13, 1},
		{"mbp-10 shorter than mbp-10", with(func(b []byte) { b[1] = RTypeMBP10 }), ErrBadLength, second, 0x0a, 1},
	} {
		n, err := nextErr(tc.in)
		checkErr(t, tc.name, err, tc.want, tc.off, tc.rtype)
		if n != tc.before {
			t.Errorf("%s: %d records before the error, want %d", tc.name, n, tc.before)
		}
	}
}

// TestErrorsNameTheFile checks that decoders made by Open, and by NewDecoder
// over an *os.File, put the file name in their errors.
func TestErrorsNameTheFile(t *testing.T) {
	header, recs := mboFile(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "cut.mbo.dbn")
	if err := os.WriteFile(bad, cat(header, recs[:sizeMBO+20]), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Open(bad)
	if err != nil {
		t.Fatal(err)
	}
	_, err = readAll(d)
	d.Close()
	checkErr(t, "Open", err, ErrTruncated, int64(len(header)+sizeMBO), 0xa0)
	if !strings.Contains(err.Error(), bad) {
		t.Errorf("error %q does not name %s", err, bad)
	}

	magic := filepath.Join(dir, "notdbn.dbn")
	if err := os.WriteFile(magic, []byte("PK\x03\x04 this is a zip file"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(magic)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = NewDecoder(f)
	checkErr(t, "NewDecoder(*os.File)", err, ErrBadMagic, 0, -1)
	if !strings.Contains(err.Error(), magic) {
		t.Errorf("error %q does not name %s", err, magic)
	}
	if _, err := Open(filepath.Join(dir, "missing.dbn")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing): %v", err)
	}
}

func TestBadZstd(t *testing.T) {
	raw := mboStream(t, 5000)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	if err != nil {
		t.Fatal(err)
	}
	z := enc.EncodeAll(raw, nil)
	enc.Close()
	if n, err := nextErr(z); err != nil || n != 5000 {
		t.Fatalf("intact stream: %d records, %v", n, err)
	}

	// Damage the compressed data at many places: every outcome must be a
	// *DecodeError (a corrupt frame or, when the damage decodes to bytes,
	// a bad record), never a panic or a silent success.
	for _, at := range []int{len(z) / 5, len(z) / 3, len(z) / 2, len(z) - 6, len(z) - 2} {
		b := bytes.Clone(z)
		b[at] ^= 0x5a
		_, err := nextErr(b)
		if err == nil {
			t.Errorf("damage at %d of %d: no error", at, len(z))
			continue
		}
		de := asDecodeError(t, err)
		if !errors.Is(err, ErrCompression) && !errors.Is(err, ErrBadLength) && !errors.Is(err, ErrTruncated) {
			t.Errorf("damage at %d: unexpected error %v", at, err)
		}
		if de.Offset < 0 || de.Offset > int64(len(raw)) {
			t.Errorf("damage at %d: offset %d outside the stream", at, de.Offset)
		}
	}
	// A checksum mismatch is reported as a zstd error with the offset of
	// the decompressed data delivered so far.
	b := bytes.Clone(z)
	b[len(b)-1] ^= 0xff // last byte of the frame checksum
	_, err = nextErr(b)
	checkErr(t, "checksum", err, ErrCompression, -1, anyRType)

	// A compressed stream cut short.
	n, err := nextErr(z[:len(z)*2/3])
	if err == nil || !errors.Is(err, ErrCompression) && !errors.Is(err, ErrTruncated) {
		t.Errorf("cut zstd stream: %d records, %v", n, err)
	} else {
		asDecodeError(t, err)
		t.Logf("cut zstd stream after %d records: %v", n, err)
	}
	// Garbage after the zstd magic.
	_, err = nextErr([]byte("\x28\xb5\x2f\xfd garbage garbage garbage"))
	checkErr(t, "zstd garbage", err, ErrCompression, 0, -1)
}

func TestBadDBZ(t *testing.T) {
	z, err := os.ReadFile("testdata/test_data.mbo.dbz")
	if err != nil {
		t.Fatal(err)
	}
	size := int(binary.LittleEndian.Uint32(z[4:]))
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"cut frame size", z[:6], ErrCompression},
		{"cut metadata frame", z[:8+size/2], ErrTruncated},
		// Not DBZ: the frame is skipped and what follows is not DBN.
		{"not DBZ", cat(z[:8], []byte("XYZ"), z[11:]), ErrBadMagic},
		{"DBZ version 2", cat(z[:11], []byte{2}, z[12:]), ErrUnsupportedVersion},
		{"frame size past end", cat(z[:4], []byte{0xff, 0xff, 0xff, 0x0f}, z[8:]), ErrTruncated},
		{"frame size too big", cat(z[:4], []byte{0xff, 0xff, 0xff, 0xff}, z[8:]), ErrMetadata},
		{"frame size too small", cat(z[:4], []byte{10, 0, 0, 0}, z[8:]), ErrMetadata},
	} {
		_, err := nextErr(tc.in)
		checkErr(t, tc.name, err, tc.want, -1, -1)
	}
}

// TestSkippableFrameBeforeDBN: a zstd-compressed DBN stream may start with a
// skippable frame that is not legacy DBZ metadata.
func TestSkippableFrameBeforeDBN(t *testing.T) {
	z, err := os.ReadFile("testdata/test_data.mbo.v3.dbn.zst")
	if err != nil {
		t.Fatal(err)
	}
	skip := cat([]byte{0x5a, 0x2a, 0x4d, 0x18, 5, 0, 0, 0}, []byte("hello"))
	got, _, err := decodeBytes(cat(skip, z))
	if err != nil {
		t.Fatal(err)
	}
	if want := decodeFile(t, "testdata/test_data.mbo.v3.dbn.zst"); !reflect.DeepEqual(got, want) {
		t.Errorf("records after a skippable frame differ")
	}
}

// errReader fails after delivering its data.
type errReader struct {
	data []byte
	err  error
}

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestReadErrorPropagates(t *testing.T) {
	header, recs := mboFile(t)
	boom := errors.New("disk on fire")
	d, err := NewDecoder(&errReader{data: cat(header, recs[:sizeMBO+8]), err: boom})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Next(); err != nil {
		t.Fatal(err)
	}
	_, err = d.Next()
	if !errors.Is(err, boom) {
		t.Fatalf("error %v does not wrap the reader's error", err)
	}
	de := asDecodeError(t, err)
	if de.Offset != int64(len(header)+sizeMBO+8) || de.RType != int(RTypeMBO) {
		t.Errorf("read error at offset %d rtype %d: %v", de.Offset, de.RType, err)
	}
}

// zstdRawFrame is a zstd frame holding data in one raw block, with the given
// window descriptor byte (window = 2^(10 + wd>>3) for wd&7 == 0).
func zstdRawFrame(wd byte, data []byte) []byte {
	bh := uint32(len(data)<<3 | 1) // raw block, last
	return cat([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, wd, byte(bh), byte(bh >> 8), byte(bh >> 16)}, data)
}

// TestZstdWindowLimit: a tiny file must not make the decoder allocate a huge
// zstd window (found while fuzzing: a 109-byte input asking for a 128 MiB
// window allocated it all).
func TestZstdWindowLimit(t *testing.T) {
	raw, err := os.ReadFile("testdata/test_data.mbo.v3.dbn")
	if err != nil {
		t.Fatal(err)
	}
	// 2 MiB window: fine.
	if n, err := nextErr(zstdRawFrame(11<<3, raw)); err != nil || n != 2 {
		t.Fatalf("2 MiB window: %d records, %v", n, err)
	}
	// 64 MiB and 128 MiB windows: refused before allocating.
	for _, wd := range []byte{16 << 3, 17 << 3} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := nextErr(zstdRawFrame(wd, raw))
		runtime.ReadMemStats(&after)
		checkErr(t, fmt.Sprintf("window descriptor %#x", wd), err, ErrCompression, 0, -1)
		if n := after.TotalAlloc - before.TotalAlloc; n > 8<<20 {
			t.Errorf("window descriptor %#x: %d bytes allocated", wd, n)
		}
	}
}
