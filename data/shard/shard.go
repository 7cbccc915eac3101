// Package shard stores labelled feature series as columnar shards in the
// Arrow IPC file format, described by a dataset manifest, and reads them back
// memory-mapped and without copying.
//
// A dataset is a directory:
//
//	dataset.json                       the manifest (see Manifest)
//	<input>-<hash>.<symbol>.<part>.arrow  one shard per (input, instrument, part)
//	.ingest/<input>-<hash>.json        per-input completion markers (resumable ingest)
//
// Each shard holds one record batch with the columns
//
//	ts_ns       int64                       event time, ns since the Unix epoch
//	instrument  uint32                      instrument id
//	features    fixed_size_list<float32>[F] the feature row (F = len(feature.Names))
//	mid         float64                     mid price in ticks
//	label_k<h>  int8                        FI-2010 label at horizon h (0 down,
//	                                        1 flat, 2 up; -1 where the row has no label)
//
// so the values of features are one contiguous row-major [rows, F] float32
// block. OpenShard maps the file and hands out slices that point into the
// mapping: they are valid until the shard (or the Dataset that opened it)
// is closed, and touching them after that faults.
//
// Ingest builds a dataset from market-data files (DBN MBO, LOBSTER zips,
// hftbacktest Binance and Hyperliquid captures, the embedded simulator);
// Open and Dataset.Series read it for training.
//
// # Ticks
//
// Prices in the mid column and the tick-denominated features are in ticks.
// A DBN instrument's tick is min_price_increment from its definition (a
// DBN definition file given as an input, or a definition record in the
// data file); without one it is inferred as the greatest common divisor of
// the differences between the instrument's observed order prices, which is
// the true tick once enough distinct prices were seen (else a multiple of
// it). LOBSTER's tick is $0.01. An exchange capture's tick is the finest
// decimal place its prices use (Binance pads price strings to 8 decimals, so
// the values, not the strings, decide). The manifest records each tick and
// where it came from.
package shard

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/gallop-dev/gallop/batch"
	"github.com/gallop-dev/gallop/internal/atomicfile"
)

// Column names of a shard.
const (
	ColTs         = "ts_ns"
	ColInstrument = "instrument"
	ColFeatures   = "features"
	ColMid        = "mid"
	labelPrefix   = "label_k"
)

// LabelColumn is the name of the label column for horizon h.
func LabelColumn(h int) string { return labelPrefix + strconv.Itoa(h) }

// schemaFor is the Arrow schema of a shard with f features and the given
// label horizons.
func schemaFor(f int, horizons []int, md map[string]string) *arrow.Schema {
	fields := []arrow.Field{
		{Name: ColTs, Type: arrow.PrimitiveTypes.Int64},
		{Name: ColInstrument, Type: arrow.PrimitiveTypes.Uint32},
		{Name: ColFeatures, Type: arrow.FixedSizeListOfNonNullable(int32(f), arrow.PrimitiveTypes.Float32)},
		{Name: ColMid, Type: arrow.PrimitiveTypes.Float64},
	}
	for _, h := range horizons {
		fields = append(fields, arrow.Field{Name: LabelColumn(h), Type: arrow.PrimitiveTypes.Int8})
	}
	var meta *arrow.Metadata
	if len(md) > 0 {
		m := arrow.MetadataFrom(md)
		meta = &m
	}
	return arrow.NewSchema(fields, meta)
}

// columns describes the columns of a shard with f features and the given
// horizons, as the manifest records them.
func columns(f int, horizons []int) []Column {
	s := schemaFor(f, horizons, nil)
	cols := make([]Column, s.NumFields())
	for i, fd := range s.Fields() {
		cols[i] = Column{Name: fd.Name, Type: fd.Type.String()}
	}
	return cols
}

// shardData is what one shard file holds.
type shardData struct {
	instrument uint32
	ts         []int64
	features   []float32 // len(ts) * f
	f          int
	mid        []float64
	horizons   []int
	labels     [][]int8 // per horizon, len(ts) each
	meta       map[string]string
}

// bytesOf views a slice of fixed-size numbers as bytes, without copying.
func bytesOf[T int8 | uint32 | int64 | float32 | float64](v []T) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), len(v)*int(unsafe.Sizeof(v[0])))
}

// viewOf views bytes as a slice of fixed-size numbers, without copying; b
// must be aligned for T (Arrow IPC buffers are 8-byte aligned).
func viewOf[T int8 | uint32 | int64 | float32 | float64](b []byte) []T {
	var z T
	n := len(b) / int(unsafe.Sizeof(z))
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

func primitive(dt arrow.DataType, b []byte, n int) arrow.ArrayData {
	return array.NewData(dt, n, []*memory.Buffer{nil, memory.NewBufferBytes(b)}, nil, 0, 0)
}

// record builds an Arrow record over d's slices without copying them.
func (d *shardData) record() arrow.RecordBatch {
	n := len(d.ts)
	inst := make([]uint32, n)
	for i := range inst {
		inst[i] = d.instrument
	}
	schema := schemaFor(d.f, d.horizons, d.meta)
	datas := []arrow.ArrayData{
		primitive(arrow.PrimitiveTypes.Int64, bytesOf(d.ts), n),
		primitive(arrow.PrimitiveTypes.Uint32, bytesOf(inst), n),
		array.NewData(schema.Field(2).Type, n, []*memory.Buffer{nil},
			[]arrow.ArrayData{primitive(arrow.PrimitiveTypes.Float32, bytesOf(d.features), n*d.f)}, 0, 0),
		primitive(arrow.PrimitiveTypes.Float64, bytesOf(d.mid), n),
	}
	for _, l := range d.labels {
		datas = append(datas, primitive(arrow.PrimitiveTypes.Int8, bytesOf(l), n))
	}
	cols := make([]arrow.Array, len(datas))
	for i, ad := range datas {
		cols[i] = array.MakeFromData(ad)
		ad.Release()
	}
	rec := array.NewRecordBatch(schema, cols, int64(n))
	for _, c := range cols {
		c.Release()
	}
	return rec
}

// hashWriter counts and hashes what passes through it.
type hashWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (hw *hashWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	hw.n += int64(n)
	return n, err
}

// writeShard writes d to path atomically (temporary file, fsync, rename)
// and returns the file's size and SHA-256.
func writeShard(path string, d *shardData) (size int64, sum string, err error) {
	if len(d.ts) == 0 {
		return 0, "", fmt.Errorf("shard: %s: no rows", path)
	}
	rec := d.record()
	defer rec.Release()
	var hw *hashWriter
	err = atomicfile.Write(path, 0o644, func(w io.Writer) error {
		hw = &hashWriter{w: w, h: sha256.New()}
		bw := bufio.NewWriterSize(hw, 1<<20)
		fw, err := ipc.NewFileWriter(bw, ipc.WithSchema(rec.Schema()))
		if err != nil {
			return err
		}
		if err := fw.Write(rec); err != nil {
			fw.Close()
			return err
		}
		if err := fw.Close(); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return 0, "", fmt.Errorf("shard: %w", err)
	}
	return hw.n, hex.EncodeToString(hw.h.Sum(nil)), nil
}

// Shard is an open, memory-mapped shard file. Its slices point into the
// mapping and are valid until Close.
type Shard struct {
	path     string
	data     []byte // the mapping
	unmap    func() error
	rows     int
	f        int
	ts       []int64
	inst     []uint32
	features []float32
	mid      []float64
	horizons []int
	labels   [][]int8
	meta     map[string]string
}

// OpenShard maps the shard file at path and checks its schema. The Arrow
// reader slices its buffers straight out of the mapping (ipc's mapped file
// reader), so opening costs the footer and metadata parse, whatever the
// size; OpenShard fails if any column does not lie inside the mapping.
func OpenShard(path string) (*Shard, error) {
	data, unmap, err := mapFile(path)
	if err != nil {
		return nil, fmt.Errorf("shard: %w", err)
	}
	s := &Shard{path: path, data: data, unmap: unmap}
	if err := s.load(); err != nil {
		s.Close()
		return nil, fmt.Errorf("shard: %s: %w", path, err)
	}
	return s, nil
}

var errNotShard = errors.New("not a gallop shard")

func (s *Shard) load() (err error) {
	defer func() {
		// The Arrow footer and metadata are flatbuffers: a corrupt file can
		// make their accessors index out of range.
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: corrupt Arrow file: %v", errNotShard, p)
		}
	}()
	r, err := ipc.NewMappedFileReader(s.data)
	if err != nil {
		return err
	}
	defer r.Close()
	if n := r.NumRecords(); n != 1 {
		return fmt.Errorf("%w: %d record batches, want 1", errNotShard, n)
	}
	rec, err := r.RecordBatchAt(0)
	if err != nil {
		return err
	}
	defer rec.Release()
	sc := rec.Schema()
	if sc.NumFields() < 4 {
		return fmt.Errorf("%w: %d columns", errNotShard, sc.NumFields())
	}
	s.rows = int(rec.NumRows())
	fsl, ok := sc.Field(2).Type.(*arrow.FixedSizeListType)
	if !ok || fsl.Elem().ID() != arrow.FLOAT32 {
		return fmt.Errorf("%w: column 3 is %v, want fixed_size_list<float32>", errNotShard, sc.Field(2).Type)
	}
	s.f = int(fsl.Len())
	want := schemaFor(s.f, nil, nil)
	for i := 0; i < 4; i++ {
		if g, w := sc.Field(i), want.Field(i); g.Name != w.Name || !arrow.TypeEqual(g.Type, w.Type) {
			return fmt.Errorf("%w: column %d is %s %v, want %s %v", errNotShard, i+1, g.Name, g.Type, w.Name, w.Type)
		}
	}
	for i := 4; i < sc.NumFields(); i++ {
		fd := sc.Field(i)
		h, err := strconv.Atoi(strings.TrimPrefix(fd.Name, labelPrefix))
		if !strings.HasPrefix(fd.Name, labelPrefix) || err != nil || h <= 0 || fd.Type.ID() != arrow.INT8 {
			return fmt.Errorf("%w: column %d is %s %v, want label_k<h> int8", errNotShard, i+1, fd.Name, fd.Type)
		}
		s.horizons = append(s.horizons, h)
	}
	s.meta = map[string]string{}
	md := sc.Metadata()
	for i, k := range md.Keys() {
		s.meta[k] = md.Values()[i]
	}
	// Every column is non-null, starts at offset 0 and is taken as the raw
	// values buffer of the mapping.
	col := func(i int, width int) ([]byte, error) {
		d := rec.Column(i).Data()
		if rec.Column(i).NullN() != 0 {
			return nil, fmt.Errorf("column %s has nulls", sc.Field(i).Name)
		}
		if i == 2 {
			d = d.Children()[0]
		}
		bufs := d.Buffers()
		n := d.Len()
		if len(bufs) < 2 || bufs[1] == nil && n > 0 {
			return nil, fmt.Errorf("column %s: no values buffer", sc.Field(i).Name)
		}
		if n == 0 {
			return nil, nil
		}
		b := bufs[1].Bytes()
		lo, hi := d.Offset()*width, (d.Offset()+n)*width
		if hi > len(b) {
			return nil, fmt.Errorf("column %s: buffer of %d bytes, want %d", sc.Field(i).Name, len(b), hi)
		}
		b = b[lo:hi]
		if !s.inMapping(b) {
			return nil, fmt.Errorf("column %s was copied out of the mapping", sc.Field(i).Name)
		}
		return b, nil
	}
	b, err := col(0, 8)
	if err != nil {
		return err
	}
	s.ts = viewOf[int64](b)
	if b, err = col(1, 4); err != nil {
		return err
	}
	s.inst = viewOf[uint32](b)
	if b, err = col(2, 4); err != nil {
		return err
	}
	s.features = viewOf[float32](b)
	if len(s.features) != s.rows*s.f {
		return fmt.Errorf("features: %d values for %d rows of %d", len(s.features), s.rows, s.f)
	}
	if b, err = col(3, 8); err != nil {
		return err
	}
	s.mid = viewOf[float64](b)
	for i := range s.horizons {
		if b, err = col(4+i, 1); err != nil {
			return err
		}
		s.labels = append(s.labels, viewOf[int8](b))
	}
	for _, l := range s.labels {
		for j, v := range l {
			if v < -1 || v > 2 {
				return fmt.Errorf("row %d: label %d out of range", j, v)
			}
		}
	}
	return nil
}

// inMapping reports whether b lies inside the shard's mapping.
func (s *Shard) inMapping(b []byte) bool {
	if len(b) == 0 || len(s.data) == 0 {
		return len(b) == 0
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(s.data)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return p >= lo && p+uintptr(len(b)) <= lo+uintptr(len(s.data))
}

// Path is the shard's file name as opened.
func (s *Shard) Path() string { return s.path }

// Rows is the number of rows.
func (s *Shard) Rows() int { return s.rows }

// F is the number of features per row.
func (s *Shard) F() int { return s.f }

// Features is the row-major [Rows, F] feature block, inside the mapping.
func (s *Shard) Features() []float32 { return s.features }

// TsNs is the event time of each row, inside the mapping.
func (s *Shard) TsNs() []int64 { return s.ts }

// Mid is the mid price in ticks of each row, inside the mapping.
func (s *Shard) Mid() []float64 { return s.mid }

// Instruments is the instrument id of each row, inside the mapping.
func (s *Shard) Instruments() []uint32 { return s.inst }

// Horizons lists the label horizons the shard holds.
func (s *Shard) Horizons() []int { return s.horizons }

// Labels returns the labels for horizon h (inside the mapping), or nil if
// the shard has none for h.
func (s *Shard) Labels(h int) []int8 {
	for i, x := range s.horizons {
		if x == h {
			return s.labels[i]
		}
	}
	return nil
}

// Metadata returns the shard's schema metadata (instrument, symbol, tick,
// source).
func (s *Shard) Metadata() map[string]string { return s.meta }

// Series returns the shard as a batch.Series for horizon h. Features and
// TsNs alias the mapping (valid until Close); Labels are converted to int32
// and so copied.
func (s *Shard) Series(h int) (batch.Series, error) {
	l := s.Labels(h)
	if l == nil {
		return batch.Series{}, fmt.Errorf("shard: %s: no labels for horizon %d (have %v)", s.path, h, s.horizons)
	}
	ser := batch.Series{
		Symbol:   s.meta["symbol"],
		Features: s.features,
		Labels:   make([]int32, len(l)),
		TsNs:     s.ts,
	}
	if len(s.inst) > 0 {
		ser.Instrument = s.inst[0]
	}
	for i, v := range l {
		ser.Labels[i] = int32(v)
	}
	return ser, nil
}

// Close unmaps the shard. Slices obtained from it must not be used after.
func (s *Shard) Close() error {
	if s.unmap == nil {
		return nil
	}
	err := s.unmap()
	s.unmap, s.data = nil, nil
	s.ts, s.inst, s.features, s.mid, s.labels = nil, nil, nil, nil, nil
	if err != nil {
		return fmt.Errorf("shard: unmap %s: %w", s.path, err)
	}
	return nil
}
