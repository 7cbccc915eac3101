package dbn

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
)

const (
	defaultBufSize = 256 << 10 // decompressed bytes buffered per refill
	minBufSize     = 2 * MaxRecordSize
	maxDBZFrame    = 1 << 28 // largest legacy DBZ metadata frame accepted
	maxMetadataLen = 1 << 30 // largest DBN metadata header accepted
	tsOutSize      = 8
)

// Decoder reads records from a DBN stream. It buffers a fixed amount of
// decompressed data, so memory use does not grow with the stream. A Decoder
// is not safe for concurrent use.
type Decoder struct {
	src     io.Reader     // decompressed stream
	zr      *zstd.Decoder // set when the input is compressed
	closer  io.Closer     // file opened by Open
	name    string        // file name for errors, may be empty
	meta    *Metadata
	version uint8 // record layout version; 0 infers it from record lengths
	tsOut   bool

	buf      []byte
	pos, end int   // unread data is buf[pos:end]
	base     int64 // stream offset of buf[0]
	rerr     error // sticky error from src
	err      error // sticky decoding error (or io.EOF)

	recOff    int64
	lastTsOut uint64
	skipped   map[uint8]uint64

	mbo    MBO
	trade  Trade
	mbp1   MBP1
	mbp10  MBP10
	bbo    BBO
	cmbp1  CMBP1
	cbbo   CBBO
	ohlcv  OHLCV
	status Status
	imb    Imbalance
	stat   Stat
	def    InstrumentDef
	errMsg ErrorMsg
	sys    SystemMsg
	symMap SymbolMappingMsg
}

// NewDecoder reads the metadata header of a DBN stream from r and returns a
// Decoder positioned at the first record. The stream may be uncompressed or
// zstd-compressed (detected by its magic bytes, any number of frames), or a
// legacy DBZ file. If r has a Name method (like *os.File), errors name it.
// Call Close to release the decompressor.
func NewDecoder(r io.Reader) (*Decoder, error) {
	return newDecoder(r, nameOf(r), defaultBufSize)
}

// Open opens a DBN file, compressed or not, and reads its metadata. Close
// closes the file.
func Open(path string) (*Decoder, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dbn: %w", err)
	}
	d, err := newDecoder(f, path, defaultBufSize)
	if err != nil {
		f.Close()
		return nil, err
	}
	d.closer = f
	return d, nil
}

// NewFragmentDecoder returns a Decoder for a DBN fragment: records without a
// metadata header, raw or zstd-compressed. version is the DBN version of the
// records (1 to 3), or 0 to tell the layout of version-dependent records by
// their length. tsOut says whether every record carries a trailing send
// timestamp. Metadata returns a placeholder holding version and tsOut.
func NewFragmentDecoder(r io.Reader, version uint8, tsOut bool) (*Decoder, error) {
	name := nameOf(r)
	if version > maxVersion {
		return nil, &DecodeError{File: name, RType: -1,
			Err: fmt.Errorf("%w: %d (decodes 1 to %d)", ErrUnsupportedVersion, version, maxVersion)}
	}
	d := &Decoder{name: name, version: version, tsOut: tsOut, buf: make([]byte, defaultBufSize)}
	src, kind, _, err := d.detect(r, false)
	if err != nil {
		return nil, err
	}
	if err := d.setSource(src, kind); err != nil {
		return nil, err
	}
	d.meta = &Metadata{Version: version, Schema: SchemaNone, STypeIn: STypeNone,
		STypeOut: STypeNone, End: UndefTimestamp, TsOut: tsOut,
		SymbolCstrLen: symbolCstrLenV2}
	if version == 1 {
		d.meta.SymbolCstrLen = symbolCstrLenV1
	}
	return d, nil
}

func nameOf(r io.Reader) string {
	if n, ok := r.(interface{ Name() string }); ok {
		return n.Name()
	}
	return ""
}

func newDecoder(r io.Reader, name string, bufSize int) (*Decoder, error) {
	d := &Decoder{name: name, buf: make([]byte, max(bufSize, minBufSize))}
	src, kind, magic, err := d.detect(r, true)
	if err != nil {
		return nil, err
	}
	if kind == kindDBZ {
		if err := d.readDBZ(magic, src); err != nil {
			d.Close()
			return nil, err
		}
		return d, nil
	}
	if err := d.setSource(src, kind); err != nil {
		return nil, err
	}
	if err := d.readMetadata(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

const (
	kindRaw = iota
	kindZstd
	kindDBZ
)

// detect reads the first four bytes of r to tell a raw stream from a zstd
// one (or, with allowDBZ, one starting with a skippable frame, as legacy DBZ
// files do). The returned reader yields the whole stream, except for kindDBZ,
// where it starts after the returned magic bytes.
func (d *Decoder) detect(r io.Reader, allowDBZ bool) (io.Reader, int, []byte, error) {
	magic := make([]byte, 4)
	n, err := io.ReadFull(r, magic)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, 0, nil, &DecodeError{File: d.name, RType: -1, Err: err}
	}
	magic = magic[:n]
	src := io.MultiReader(&byteReader{b: magic}, r)
	if n < 4 {
		return src, kindRaw, magic, nil
	}
	switch m := le.Uint32(magic); {
	case m == zstdMagic:
		return src, kindZstd, magic, nil
	case m&zstdSkippableMask == zstdSkippableBase:
		if allowDBZ {
			return r, kindDBZ, magic, nil
		}
		return src, kindZstd, magic, nil
	}
	return src, kindRaw, magic, nil
}

func (d *Decoder) setSource(src io.Reader, kind int) error {
	if kind != kindZstd {
		d.src = src
		return nil
	}
	if _, ok := src.(io.ByteReader); !ok {
		src = bufio.NewReaderSize(src, 64<<10)
	}
	zr, err := zstd.NewReader(src,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxWindow(maxZstdWindow))
	if err != nil {
		return &DecodeError{File: d.name, RType: -1, Err: fmt.Errorf("%w: %w", ErrCompression, err)}
	}
	d.zr = zr
	d.src = zr
	return nil
}

// readDBZ handles a stream starting with a zstd skippable frame; r is
// positioned after the frame magic. A legacy DBZ file keeps its metadata in
// that frame, followed by zstd-compressed records in DBN v1 layouts. Any
// other skippable frame is left for the zstd decoder to skip, and the
// stream is read as zstd-compressed DBN.
func (d *Decoder) readDBZ(magic []byte, r io.Reader) error {
	fail := func(off int64, err error) error {
		return &DecodeError{File: d.name, Offset: off, RType: -1, Err: err}
	}
	var pre [8]byte // frame size and the first four bytes of the frame
	n, err := io.ReadFull(r, pre[:])
	if err != nil || string(pre[4:7]) != "DBZ" {
		src := io.MultiReader(&byteReader{b: append(magic, pre[:n]...)}, r)
		if err := d.setSource(src, kindZstd); err != nil {
			return err
		}
		return d.readMetadata()
	}
	if pre[7] != 1 {
		return fail(7, fmt.Errorf("%w: DBZ version %d", ErrUnsupportedVersion, pre[7]))
	}
	size := le.Uint32(pre[:4])
	if size < 96 || size > maxDBZFrame {
		return fail(4, fmt.Errorf("%w: DBZ metadata frame of %d bytes", ErrMetadata, size))
	}
	rest, err := io.ReadAll(io.LimitReader(r, int64(size)-4))
	if err != nil {
		return fail(12, err)
	}
	frame := append(pre[4:], rest...)
	if len(frame) < int(size) {
		return fail(8+int64(len(frame)), fmt.Errorf("%w: DBZ metadata frame has %d of %d bytes",
			ErrTruncated, len(frame), size))
	}
	m, err := parseDBZMetadata(frame, func(b []byte) ([]byte, error) {
		zd, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(maxDBZFrame), zstd.WithDecoderMaxWindow(maxZstdWindow))
		if err != nil {
			return nil, err
		}
		defer zd.Close()
		return zd.DecodeAll(b, nil)
	})
	if err != nil {
		return fail(8, err)
	}
	d.meta, d.version, d.base = m, 1, 8+int64(size)
	return d.setSource(r, kindZstd)
}

// readMetadata decodes the DBN metadata header.
func (d *Decoder) readMetadata() error {
	fail := func(off int64, err error) error {
		d.err = &DecodeError{File: d.name, Offset: off, RType: -1, Err: err}
		return d.err
	}
	if !d.fill(8) {
		return fail(d.base+int64(d.end), d.readErr(ErrTruncated, "metadata prelude", 8))
	}
	p := d.buf[d.pos : d.pos+8]
	if string(p[:3]) != dbnMagic {
		return fail(0, fmt.Errorf("%w: stream starts with %q, want %q", ErrBadMagic, p[:3], dbnMagic))
	}
	version := p[3]
	if version == 0 || version > maxVersion {
		return fail(3, fmt.Errorf("%w: %d (decodes 1 to %d)", ErrUnsupportedVersion, version, maxVersion))
	}
	n := int(le.Uint32(p[4:]))
	if n < metadataFixedLen || n > maxMetadataLen {
		return fail(4, fmt.Errorf("%w: length %d outside [%d, %d]", ErrMetadata, n, metadataFixedLen, maxMetadataLen))
	}
	d.pos += 8
	var body []byte
	if n <= len(d.buf) {
		if !d.fill(n) {
			return fail(d.base+int64(d.end), d.readErr(ErrTruncated, "metadata", n))
		}
		body = d.buf[d.pos : d.pos+n]
		d.pos += n
	} else {
		// Larger than the buffer: read it separately, growing with the data
		// actually present rather than trusting the length field.
		body = append([]byte(nil), d.buf[d.pos:d.end]...)
		more, err := io.ReadAll(io.LimitReader(d.src, int64(n-len(body))))
		body = append(body, more...)
		d.base += int64(d.end + len(more))
		d.pos, d.end = 0, 0
		if err != nil {
			d.rerr = err
			return fail(d.base, d.readErr(ErrTruncated, "metadata", n))
		}
		if len(body) < n {
			return fail(d.base, fmt.Errorf("%w: metadata needs %d bytes, stream has %d", ErrTruncated, n, len(body)))
		}
	}
	m, err := parseMetadata(version, body)
	if err != nil {
		return fail(8, err)
	}
	d.meta, d.version, d.tsOut = m, version, m.TsOut
	return nil
}

// fill tries to buffer at least n unread bytes (n <= len(d.buf)) and
// reports whether it did.
func (d *Decoder) fill(n int) bool {
	if d.end-d.pos >= n {
		return true
	}
	if len(d.buf)-d.pos < n {
		k := copy(d.buf, d.buf[d.pos:d.end])
		d.base += int64(d.pos)
		d.pos, d.end = 0, k
	}
	for empty := 0; d.end-d.pos < n && d.rerr == nil; {
		k, err := d.src.Read(d.buf[d.end:])
		d.end += k
		switch {
		case err != nil:
			d.rerr = err
		case k == 0:
			if empty++; empty >= 100 {
				d.rerr = io.ErrNoProgress
			}
		}
	}
	return d.end-d.pos >= n
}

// readErr explains why fill(need) failed: a clean end of input becomes
// short (with what was needed), anything else is a read or zstd error.
func (d *Decoder) readErr(short error, what string, need int) error {
	if d.rerr == io.EOF {
		return fmt.Errorf("%w: %s needs %d bytes, %d remain", short, what, need, d.end-d.pos)
	}
	if d.zr != nil {
		return fmt.Errorf("%w: %w", ErrCompression, d.rerr)
	}
	return d.rerr
}

// NextRaw returns the next record, whatever its type, as its header and its
// bytes (header and any ts_out included). The bytes are valid until the next
// call. It returns io.EOF at the end of the stream.
func (d *Decoder) NextRaw() (RecordHeader, []byte, error) {
	var h RecordHeader
	b, err := d.nextRaw()
	if err != nil {
		return h, nil, err
	}
	h.decode(b)
	return h, b, nil
}

func (d *Decoder) nextRaw() ([]byte, error) {
	if d.err != nil {
		return nil, d.err
	}
	if d.end-d.pos < HeaderSize && !d.fill(HeaderSize) {
		if d.rerr == io.EOF && d.end == d.pos {
			d.err = io.EOF
			return nil, io.EOF
		}
		rtype := -1
		if d.end-d.pos >= 2 {
			rtype = int(d.buf[d.pos+1])
		}
		off := d.base + int64(d.pos)
		if d.rerr != io.EOF {
			off = d.base + int64(d.end)
		}
		return nil, d.fail(off, rtype, d.readErr(ErrTruncated, "record header", HeaderSize))
	}
	n := int(d.buf[d.pos]) * lengthUnit
	if n < HeaderSize {
		return nil, d.fail(d.base+int64(d.pos), int(d.buf[d.pos+1]),
			fmt.Errorf("%w: %d bytes is shorter than the %d-byte record header", ErrBadLength, n, HeaderSize))
	}
	if d.end-d.pos < n && !d.fill(n) {
		off := d.base + int64(d.pos)
		if d.rerr != io.EOF {
			off = d.base + int64(d.end)
		}
		return nil, d.fail(off, int(d.buf[d.pos+1]),
			d.readErr(ErrTruncated, fmt.Sprintf("record of length %d", n), n))
	}
	b := d.buf[d.pos : d.pos+n : d.pos+n]
	d.recOff = d.base + int64(d.pos)
	d.pos += n
	return b, nil
}

func (d *Decoder) fail(off int64, rtype int, err error) error {
	d.err = &DecodeError{File: d.name, Offset: off, RType: rtype, Err: err}
	return d.err
}

// short reports a record too short for its type.
func (d *Decoder) short(b []byte, need int) error {
	return d.fail(d.recOff, int(b[1]), fmt.Errorf("%w: %d bytes is shorter than a %s record (%d bytes)",
		ErrBadLength, len(b), RTypeName(b[1]), need))
}

// layout picks the layout version of a version-dependent record: the
// stream's version, or, for fragments of unknown version, the one implied by
// the record length (sizes grow with each version).
func (d *Decoder) layout(n, sizeV2, sizeV3 int) uint8 {
	if d.version != 0 {
		return d.version
	}
	switch {
	case n < sizeV2:
		return 1
	case n < sizeV3:
		return 2
	}
	return 3
}

// Next decodes the next record of a known type into a Decoder-owned value
// and returns a pointer to it, valid until the next call (*MBO, *MBP1,
// *Trade, ...). Records of unknown types are skipped by their length and
// counted (see Skipped). It returns io.EOF at the end of the stream; other
// errors are *DecodeError and stop decoding.
func (d *Decoder) Next() (Record, error) {
	for {
		// Fast path: a whole, well-formed record is buffered.
		var b []byte
		if p := d.pos; d.err == nil && d.end-p >= HeaderSize {
			if n := int(d.buf[p]) * lengthUnit; n >= HeaderSize && d.end-p >= n {
				b = d.buf[p : p+n : p+n]
				d.recOff = d.base + int64(p)
				d.pos = p + n
			}
		}
		if b == nil {
			var err error
			if b, err = d.nextRaw(); err != nil {
				return nil, err
			}
		}
		if d.tsOut {
			if len(b) < HeaderSize+tsOutSize {
				return nil, d.short(b, HeaderSize+tsOutSize)
			}
			d.lastTsOut = le.Uint64(b[len(b)-tsOutSize:])
			b = b[:len(b)-tsOutSize]
		}
		switch b[1] {
		case RTypeMBO:
			if len(b) < sizeMBO {
				return nil, d.short(b, sizeMBO)
			}
			d.mbo.decode(b)
			return &d.mbo, nil
		case RTypeMBP0:
			if len(b) < sizeTrade {
				return nil, d.short(b, sizeTrade)
			}
			d.trade.decode(b)
			return &d.trade, nil
		case RTypeMBP1:
			if len(b) < sizeMBP1 {
				return nil, d.short(b, sizeMBP1)
			}
			d.mbp1.decode(b)
			return &d.mbp1, nil
		case RTypeMBP10:
			if len(b) < sizeMBP10 {
				return nil, d.short(b, sizeMBP10)
			}
			d.mbp10.decode(b)
			return &d.mbp10, nil
		case RTypeBBO1S, RTypeBBO1M:
			if len(b) < sizeBBO {
				return nil, d.short(b, sizeBBO)
			}
			d.bbo.decode(b)
			return &d.bbo, nil
		case RTypeCMBP1, RTypeTCBBO:
			if len(b) < sizeCMBP1 {
				return nil, d.short(b, sizeCMBP1)
			}
			d.cmbp1.decode(b)
			return &d.cmbp1, nil
		case RTypeCBBO1S, RTypeCBBO1M:
			if len(b) < sizeCBBO {
				return nil, d.short(b, sizeCBBO)
			}
			d.cbbo.decode(b)
			return &d.cbbo, nil
		case RTypeOHLCV1S, RTypeOHLCV1M, RTypeOHLCV1H, RTypeOHLCV1D, RTypeOHLCVEOD, RTypeOHLCVDeprecated:
			if len(b) < sizeOHLCV {
				return nil, d.short(b, sizeOHLCV)
			}
			d.ohlcv.decode(b)
			return &d.ohlcv, nil
		case RTypeStatus:
			if len(b) < sizeStatus {
				return nil, d.short(b, sizeStatus)
			}
			d.status.decode(b)
			return &d.status, nil
		case RTypeImbalance:
			if len(b) < sizeImbalance {
				return nil, d.short(b, sizeImbalance)
			}
			d.imb.decode(b)
			return &d.imb, nil
		case RTypeStatistics:
			if d.layout(len(b), sizeStatV3, sizeStatV3) < 3 {
				if len(b) < sizeStatV1 {
					return nil, d.short(b, sizeStatV1)
				}
				d.stat.decodeV1(b)
			} else {
				if len(b) < sizeStatV3 {
					return nil, d.short(b, sizeStatV3)
				}
				d.stat.decodeV3(b)
			}
			return &d.stat, nil
		case RTypeInstrumentDef:
			switch d.layout(len(b), sizeDefV2, sizeDefV3) {
			case 1:
				if len(b) < sizeDefV1 {
					return nil, d.short(b, sizeDefV1)
				}
				d.def.decodeV1(b)
			case 2:
				if len(b) < sizeDefV2 {
					return nil, d.short(b, sizeDefV2)
				}
				d.def.decodeV2(b)
			default:
				if len(b) < sizeDefV3 {
					return nil, d.short(b, sizeDefV3)
				}
				d.def.decodeV3(b)
			}
			return &d.def, nil
		case RTypeError:
			if d.layout(len(b), sizeErrorV2, sizeErrorV2) == 1 {
				if len(b) < sizeErrorV1 {
					return nil, d.short(b, sizeErrorV1)
				}
				d.errMsg.decodeV1(b)
			} else {
				if len(b) < sizeErrorV2 {
					return nil, d.short(b, sizeErrorV2)
				}
				d.errMsg.decodeV2(b)
			}
			return &d.errMsg, nil
		case RTypeSystem:
			if d.layout(len(b), sizeSystemV2, sizeSystemV2) == 1 {
				if len(b) < sizeSystemV1 {
					return nil, d.short(b, sizeSystemV1)
				}
				d.sys.decodeV1(b)
			} else {
				if len(b) < sizeSystemV2 {
					return nil, d.short(b, sizeSystemV2)
				}
				d.sys.decodeV2(b)
			}
			return &d.sys, nil
		case RTypeSymbolMapping:
			if d.layout(len(b), sizeSymMapV2, sizeSymMapV2) == 1 {
				if len(b) < sizeSymMapV1 {
					return nil, d.short(b, sizeSymMapV1)
				}
				d.symMap.decodeV1(b)
			} else {
				if len(b) < sizeSymMapV2 {
					return nil, d.short(b, sizeSymMapV2)
				}
				d.symMap.decodeV2(b)
			}
			return &d.symMap, nil
		}
		if d.skipped == nil {
			d.skipped = make(map[uint8]uint64)
		}
		d.skipped[b[1]]++
	}
}

// Metadata returns the stream's metadata header.
func (d *Decoder) Metadata() *Metadata { return d.meta }

// Offset returns the byte offset, in the decompressed stream, of the record
// last returned by Next or NextRaw.
func (d *Decoder) Offset() int64 { return d.recOff }

// TsOut returns the gateway send timestamp of the record last returned by
// Next, when Metadata().TsOut is set.
func (d *Decoder) TsOut() uint64 { return d.lastTsOut }

// Skipped returns how many records Next skipped, by record type, because it
// does not know their type.
func (d *Decoder) Skipped() map[uint8]uint64 {
	out := make(map[uint8]uint64, len(d.skipped))
	for k, v := range d.skipped {
		out[k] = v
	}
	return out
}

// Close releases the decompressor and closes the file opened by Open.
func (d *Decoder) Close() error {
	if d.zr != nil {
		d.zr.Close()
		d.zr = nil
	}
	if d.err == nil {
		d.err = fmt.Errorf("dbn: decoder closed: %w", os.ErrClosed)
	}
	var err error
	if d.closer != nil {
		err = d.closer.Close()
		d.closer = nil
	}
	return err
}

// byteReader is a minimal bytes.Reader.
type byteReader struct{ b []byte }

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}
