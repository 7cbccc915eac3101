package serve

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
)

// Prediction is the model's output for one event.
type Prediction struct {
	Instrument uint32
	TsEvent    int64         // the event's exchange timestamp (DBN ts_event), ns since the Unix epoch
	Compute    time.Duration // book update, features and model for this event
	Logits     []float32     // one per class, in the model's class order
	Probs      []float32     // softmax of Logits

	enq int64 // when the event was enqueued, ns since the pipeline started
}

// Format is how predictions are written.
type Format int

const (
	// JSON writes one JSON object per line:
	//
	//	{"instrument":5482,"ts_event":1703401200000123456,"logits":[-0.41,0.93,-0.2],"probs":[0.16,0.6,0.23],"compute_ns":2310}
	JSON Format = iota
	// Binary writes a 16-byte stream header, then one fixed-size
	// little-endian record per prediction; see the package documentation.
	Binary
)

// ParseFormat parses "json" or "bin".
func ParseFormat(s string) (Format, error) {
	switch s {
	case "json", "jsonl":
		return JSON, nil
	case "bin", "binary":
		return Binary, nil
	}
	return 0, fmt.Errorf("serve: format %q: want json or bin", s)
}

func (f Format) String() string {
	if f == Binary {
		return "bin"
	}
	return "json"
}

// Binary layout constants (see the package documentation).
const (
	BinaryMagic      = "GLP" // first three bytes of a binary prediction stream
	BinaryVersion    = 1
	BinaryHeaderSize = 16
	RTypePrediction  = 0xE0 // record type of a prediction record
	binaryFixed      = 24   // record bytes before the logits
	maxBinaryClasses = (255*4 - binaryFixed) / 8
)

// BinaryRecordSize returns the size in bytes of a binary record for a model
// with the given number of classes: 24 + 8·classes, a multiple of 4.
func BinaryRecordSize(classes int) int { return binaryFixed + 8*classes }

func appendBinaryHeader(b []byte, classes int) []byte {
	b = append(b, BinaryMagic...)
	b = append(b, BinaryVersion)
	b = binary.LittleEndian.AppendUint32(b, BinaryHeaderSize-8)
	b = binary.LittleEndian.AppendUint16(b, uint16(classes))
	b = binary.LittleEndian.AppendUint16(b, uint16(BinaryRecordSize(classes)))
	b = binary.LittleEndian.AppendUint32(b, 0)
	return b
}

func appendBinary(b []byte, p *Prediction) []byte {
	le := binary.LittleEndian
	c := len(p.Logits)
	b = append(b, byte(BinaryRecordSize(c)/4), RTypePrediction)
	b = le.AppendUint16(b, uint16(c))
	b = le.AppendUint32(b, p.Instrument)
	b = le.AppendUint64(b, uint64(p.TsEvent))
	b = le.AppendUint32(b, uint32(min(max(p.Compute, 0), math.MaxUint32)))
	b = le.AppendUint32(b, 0)
	for _, v := range p.Logits {
		b = le.AppendUint32(b, math.Float32bits(v))
	}
	for _, v := range p.Probs {
		b = le.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func appendJSON(b []byte, p *Prediction) []byte {
	b = append(b, `{"instrument":`...)
	b = strconv.AppendUint(b, uint64(p.Instrument), 10)
	b = append(b, `,"ts_event":`...)
	b = strconv.AppendInt(b, p.TsEvent, 10)
	b = append(b, `,"logits":`...)
	b = appendFloats(b, p.Logits)
	b = append(b, `,"probs":`...)
	b = appendFloats(b, p.Probs)
	b = append(b, `,"compute_ns":`...)
	b = strconv.AppendInt(b, int64(p.Compute), 10)
	return append(b, "}\n"...)
}

func appendFloats(b []byte, v []float32) []byte {
	b = append(b, '[')
	for i, x := range v {
		if i > 0 {
			b = append(b, ',')
		}
		// Logits are finite (the weights are checked); a non-finite value
		// would not be JSON, so write it as null rather than break the line.
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			b = append(b, "null"...)
			continue
		}
		b = strconv.AppendFloat(b, float64(x), 'g', -1, 32)
	}
	return append(b, ']')
}

// BinaryReader reads a binary prediction stream.
type BinaryReader struct {
	r       *bufio.Reader
	classes int
	rec     []byte
	off     int64
}

// ErrBinaryFormat is returned (wrapped, with the byte offset) for a
// malformed binary prediction stream.
var ErrBinaryFormat = errors.New("not a gallop binary prediction stream")

// NewBinaryReader reads the stream header from r.
func NewBinaryReader(r io.Reader) (*BinaryReader, error) {
	br := &BinaryReader{r: bufio.NewReaderSize(r, 64<<10)}
	var h [BinaryHeaderSize]byte
	if _, err := io.ReadFull(br.r, h[:]); err != nil {
		return nil, fmt.Errorf("serve: binary header: %w", err)
	}
	le := binary.LittleEndian
	if string(h[:3]) != BinaryMagic || h[3] != BinaryVersion || le.Uint32(h[4:]) != BinaryHeaderSize-8 {
		return nil, fmt.Errorf("serve: offset 0: %w (header % x)", ErrBinaryFormat, h[:8])
	}
	br.classes = int(le.Uint16(h[8:]))
	if int(le.Uint16(h[10:])) != BinaryRecordSize(br.classes) || br.classes > maxBinaryClasses {
		return nil, fmt.Errorf("serve: offset 8: %w: %d classes with %d-byte records", ErrBinaryFormat, br.classes, le.Uint16(h[10:]))
	}
	br.rec = make([]byte, BinaryRecordSize(br.classes))
	br.off = BinaryHeaderSize
	return br, nil
}

// Classes returns the number of classes per record.
func (br *BinaryReader) Classes() int { return br.classes }

// Next reads the next record into p, reusing p's slices when they are
// long enough. It returns io.EOF after the last record.
func (br *BinaryReader) Next(p *Prediction) error {
	n, err := io.ReadFull(br.r, br.rec)
	if err == io.EOF {
		return io.EOF
	}
	if err != nil {
		return fmt.Errorf("serve: offset %d: truncated record (%d of %d bytes): %w", br.off, n, len(br.rec), err)
	}
	b, le := br.rec, binary.LittleEndian
	if int(b[0])*4 != len(b) || b[1] != RTypePrediction || int(le.Uint16(b[2:])) != br.classes {
		return fmt.Errorf("serve: offset %d: %w: record header % x", br.off, ErrBinaryFormat, b[:4])
	}
	br.off += int64(len(b))
	c := br.classes
	p.Instrument = le.Uint32(b[4:])
	p.TsEvent = int64(le.Uint64(b[8:]))
	p.Compute = time.Duration(le.Uint32(b[16:]))
	if cap(p.Logits) < c || cap(p.Probs) < c {
		p.Logits, p.Probs = make([]float32, c), make([]float32, c)
	}
	p.Logits, p.Probs = p.Logits[:c], p.Probs[:c]
	for i := range c {
		p.Logits[i] = math.Float32frombits(le.Uint32(b[binaryFixed+4*i:]))
		p.Probs[i] = math.Float32frombits(le.Uint32(b[binaryFixed+4*(c+i):]))
	}
	return nil
}
