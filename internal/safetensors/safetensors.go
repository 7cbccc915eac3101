// Package safetensors reads and writes the safetensors tensor file format.
//
// A safetensors file is an 8-byte little-endian header length N, a JSON
// header of N bytes, then the raw little-endian tensor data. The header maps
// each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}, with
// offsets relative to the start of the data; the optional "__metadata__" key
// holds string-to-string metadata.
//
// Headers of any standard dtype can be parsed and validated with Parse; the
// tensor data can be decoded only for F32 so far.
package safetensors

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"

	"github.com/gallop-dev/gallop/internal/atomicfile"
)

// DType is a tensor element type as spelled in the header ("F32", "BF16", ...).
type DType string

// Element types defined by the safetensors format.
const (
	BOOL    DType = "BOOL"
	U8      DType = "U8"
	I8      DType = "I8"
	F8E4M3  DType = "F8_E4M3"
	F8E5M2  DType = "F8_E5M2"
	I16     DType = "I16"
	U16     DType = "U16"
	F16     DType = "F16"
	BF16    DType = "BF16"
	I32     DType = "I32"
	U32     DType = "U32"
	F32     DType = "F32"
	F64     DType = "F64"
	I64     DType = "I64"
	U64     DType = "U64"
	metaKey       = "__metadata__"
)

// Size returns the size in bytes of one element, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case BOOL, U8, I8, F8E4M3, F8E5M2:
		return 1
	case I16, U16, F16, BF16:
		return 2
	case I32, U32, F32:
		return 4
	case F64, I64, U64:
		return 8
	}
	return 0
}

// MaxHeaderSize bounds the JSON header, as the reference implementation does.
const MaxHeaderSize = 100 << 20

// Info describes one tensor of a file as given by its header.
type Info struct {
	Name  string
	DType DType
	Shape []int
	// Begin and End are byte offsets of the tensor data within the file
	// (not relative to the data section).
	Begin, End int64
}

// Header is a parsed and validated header.
type Header struct {
	Metadata map[string]string
	// Tensors are ordered by their position in the file.
	Tensors []Info
	// DataStart is the file offset of the data section.
	DataStart int64
}

// Tensor is an F32 tensor: Data holds the elements in row-major order.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// File is the decoded content of a safetensors file.
type File struct {
	Metadata map[string]string
	// Tensors are ordered by their position in the file.
	Tensors []Tensor
}

// Tensor returns the tensor called name, or nil.
func (f *File) Tensor(name string) *Tensor {
	for i := range f.Tensors {
		if f.Tensors[i].Name == name {
			return &f.Tensors[i]
		}
	}
	return nil
}

// FormatError reports an invalid file. Offset is the byte offset in the file
// where the problem lies, or -1; Tensor is empty when the problem is not about
// one tensor.
type FormatError struct {
	File   string
	Tensor string
	Offset int64
	Msg    string
}

func (e *FormatError) Error() string {
	s := "safetensors: " + e.File
	if e.Tensor != "" {
		s += ": tensor " + strconv.Quote(e.Tensor)
	}
	if e.Offset >= 0 {
		s += " at byte " + strconv.FormatInt(e.Offset, 10)
	}
	return s + ": " + e.Msg
}

// numElements returns the product of shape, or an error for a negative
// dimension or a product beyond math.MaxInt64/8 elements.
func numElements(shape []int) (int64, error) {
	if slices.Contains(shape, 0) {
		return 0, nil
	}
	const limit = math.MaxInt64 / 8
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
		if n > limit/int64(d) {
			return 0, fmt.Errorf("shape %v is too large", shape)
		}
		n *= int64(d)
	}
	return n, nil
}

// Parse parses and validates the header of the safetensors file held in data.
// It checks that the header length lies within the data, that the header is
// a JSON object with well-formed entries of known dtypes, and that the
// tensors' byte ranges are in range, do not overlap, leave no gaps, cover the
// data section exactly and match shape × dtype size. name is used in errors.
func Parse(data []byte, name string) (*Header, error) {
	ferr := func(tensor string, off int64, format string, args ...any) error {
		return &FormatError{File: name, Tensor: tensor, Offset: off, Msg: fmt.Sprintf(format, args...)}
	}
	if len(data) < 8 {
		return nil, ferr("", 0, "file is %d bytes, too short for the 8-byte header length", len(data))
	}
	n := binary.LittleEndian.Uint64(data)
	if n > MaxHeaderSize {
		return nil, ferr("", 0, "header length %d exceeds the limit of %d bytes", n, MaxHeaderSize)
	}
	if n > uint64(len(data)-8) {
		return nil, ferr("", 0, "header length %d exceeds the %d bytes that follow it", n, len(data)-8)
	}
	hdr := data[8 : 8+n]
	dataStart := int64(8 + n)
	dataLen := int64(len(data)) - dataStart

	entries, err := parseObject(hdr)
	if err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, ferr("", 8+se.Offset, "invalid JSON header: %v", err)
		}
		return nil, ferr("", 8, "invalid JSON header: %v", err)
	}

	h := &Header{DataStart: dataStart}
	type rawInfo struct {
		DType       *DType   `json:"dtype"`
		Shape       *[]int   `json:"shape"`
		DataOffsets *[]int64 `json:"data_offsets"`
	}
	for _, e := range entries {
		if e.key == metaKey {
			if err := json.Unmarshal(e.value, &h.Metadata); err != nil {
				return nil, ferr("", 8+e.offset, "__metadata__ is not an object of strings: %v", err)
			}
			continue
		}
		off := 8 + e.offset
		var ri rawInfo
		dec := json.NewDecoder(bytes.NewReader(e.value))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ri); err != nil {
			return nil, ferr(e.key, off, "invalid header entry: %v", err)
		}
		if ri.DType == nil || ri.Shape == nil || ri.DataOffsets == nil {
			return nil, ferr(e.key, off, `header entry needs "dtype", "shape" and "data_offsets"`)
		}
		size := ri.DType.Size()
		if size == 0 {
			return nil, ferr(e.key, off, "unknown dtype %q", *ri.DType)
		}
		if len(*ri.DataOffsets) != 2 {
			return nil, ferr(e.key, off, "data_offsets %v must be [begin, end]", *ri.DataOffsets)
		}
		b, en := (*ri.DataOffsets)[0], (*ri.DataOffsets)[1]
		if b < 0 || en < b || en > dataLen {
			return nil, ferr(e.key, off, "data_offsets [%d, %d] out of range: the data section is %d bytes", b, en, dataLen)
		}
		nel, err := numElements(*ri.Shape)
		if err != nil {
			return nil, ferr(e.key, off, "%v", err)
		}
		if nel*int64(size) != en-b {
			return nil, ferr(e.key, dataStart+b, "shape %v of %s needs %d bytes but data_offsets [%d, %d] span %d",
				*ri.Shape, *ri.DType, nel*int64(size), b, en, en-b)
		}
		h.Tensors = append(h.Tensors, Info{
			Name: e.key, DType: *ri.DType, Shape: *ri.Shape,
			Begin: dataStart + b, End: dataStart + en,
		})
	}

	slices.SortStableFunc(h.Tensors, func(a, b Info) int {
		if a.Begin != b.Begin {
			return cmp.Compare(a.Begin, b.Begin)
		}
		return cmp.Compare(a.End, b.End)
	})
	pos := dataStart
	for i, t := range h.Tensors {
		switch {
		case t.Begin < pos:
			return nil, ferr(t.Name, t.Begin, "data [%d, %d) overlaps tensor %q ending at byte %d",
				t.Begin, t.End, h.Tensors[i-1].Name, pos)
		case t.Begin > pos:
			return nil, ferr(t.Name, pos, "%d unused bytes before the tensor's data at byte %d", t.Begin-pos, t.Begin)
		}
		pos = t.End
	}
	if pos != int64(len(data)) {
		return nil, ferr("", pos, "%d trailing bytes after the last tensor", int64(len(data))-pos)
	}
	return h, nil
}

type entry struct {
	key    string
	value  json.RawMessage
	offset int64 // offset of the key within the header
}

// parseObject splits a JSON object into its entries in order, refusing
// duplicate keys (which encoding/json would silently merge).
func parseObject(hdr []byte) ([]entry, error) {
	dec := json.NewDecoder(bytes.NewReader(hdr))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("header is not a JSON object")
	}
	var out []entry
	seen := map[string]bool{}
	for dec.More() {
		off := dec.InputOffset()
		for off < int64(len(hdr)) && bytes.IndexByte([]byte(" \t\r\n,"), hdr[off]) >= 0 {
			off++ // point at the key, not at the separator before it
		}
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("at offset %d: expected a key", off)
		}
		if seen[key] {
			return nil, fmt.Errorf("duplicate key %q at offset %d", key, off)
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, entry{key: key, value: v, offset: off})
	}
	if _, err := dec.Token(); err != nil { // closing '}'
		return nil, err
	}
	// Only padding may follow the object.
	rest := hdr[dec.InputOffset():]
	if len(bytes.TrimRight(rest, " \t\r\n")) != 0 {
		return nil, &json.SyntaxError{Offset: dec.InputOffset()}
	}
	return out, nil
}

// Read decodes the safetensors file held in data. All tensors must be F32;
// name is used in errors.
func Read(data []byte, name string) (*File, error) {
	h, err := Parse(data, name)
	if err != nil {
		return nil, err
	}
	f := &File{Metadata: h.Metadata, Tensors: make([]Tensor, len(h.Tensors))}
	for i, t := range h.Tensors {
		if t.DType != F32 {
			return nil, &FormatError{File: name, Tensor: t.Name, Offset: t.Begin,
				Msg: fmt.Sprintf("dtype %s is not supported (only F32 for now)", t.DType)}
		}
		raw := data[t.Begin:t.End]
		v := make([]float32, len(raw)/4)
		for j := range v {
			v[j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:]))
		}
		f.Tensors[i] = Tensor{Name: t.Name, Shape: t.Shape, Data: v}
	}
	return f, nil
}

// ReadFile reads and decodes the safetensors file at path.
func ReadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	return Read(data, path)
}

// Marshal encodes tensors and metadata as a safetensors file. Tensors are
// written in the given order; the header is padded with spaces so that the
// data starts at a multiple of 8 bytes.
func Marshal(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	var hdr bytes.Buffer
	hdr.WriteByte('{')
	if len(metadata) > 0 {
		m, err := json.Marshal(metadata) // keys sorted: deterministic
		if err != nil {
			return nil, fmt.Errorf("safetensors: metadata: %w", err)
		}
		hdr.WriteString(`"` + metaKey + `":`)
		hdr.Write(m)
	}
	seen := map[string]bool{metaKey: true}
	var off int64
	for i, t := range tensors {
		if seen[t.Name] {
			return nil, fmt.Errorf("safetensors: tensor %q: duplicate or reserved name", t.Name)
		}
		seen[t.Name] = true
		nel, err := numElements(t.Shape)
		if err != nil {
			return nil, fmt.Errorf("safetensors: tensor %q: %w", t.Name, err)
		}
		if nel != int64(len(t.Data)) {
			return nil, fmt.Errorf("safetensors: tensor %q: shape %v needs %d elements, have %d", t.Name, t.Shape, nel, len(t.Data))
		}
		if i > 0 || len(metadata) > 0 {
			hdr.WriteByte(',')
		}
		name, _ := json.Marshal(t.Name)
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		sh, _ := json.Marshal(shape)
		fmt.Fprintf(&hdr, `%s:{"dtype":"F32","shape":%s,"data_offsets":[%d,%d]}`, name, sh, off, off+4*nel)
		off += 4 * nel
	}
	hdr.WriteByte('}')
	for hdr.Len()%8 != 0 {
		hdr.WriteByte(' ')
	}

	out := make([]byte, 8, 8+int64(hdr.Len())+off)
	binary.LittleEndian.PutUint64(out, uint64(hdr.Len()))
	out = append(out, hdr.Bytes()...)
	for _, t := range tensors {
		for _, v := range t.Data {
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
		}
	}
	return out, nil
}

// Write encodes tensors and metadata to w; see Marshal.
func Write(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	b, err := Marshal(tensors, metadata)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// WriteFile writes tensors and metadata to path atomically: a reader, or a
// crash at any point, sees either the old file or the complete new one.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) error {
	b, err := Marshal(tensors, metadata)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b, 0o644)
}
