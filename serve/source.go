package serve

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/gallop-dev/gallop/data/book"
	"github.com/gallop-dev/gallop/data/dbn"
)

// Input is one element of a Source: an order-level event, or an
// instrument's tick size.
type Input struct {
	Event book.Event
	// BookOnly applies Event to the book without features or a
	// prediction, as ingest does inside a snapshot (records flagged
	// F_SNAPSHOT before the one flagged F_LAST).
	BookOnly bool
	// Tick, when positive, makes the Input a definition: the tick size of
	// Event.Instrument in book price units. It carries no event.
	Tick int64
	// Offset locates the input in its source for error messages (for DBN,
	// the record's byte offset in the decompressed stream).
	Offset int64
}

// A Source yields the inputs to serve in arrival order.
type Source interface {
	// Next reads the next input into in. It returns io.EOF after the
	// last one; any other error ends the source.
	Next(in *Input) error
}

// DBN is a Source reading a DBN stream: MBO records become events (see
// dbn.MBOEvent) and instrument definitions give tick sizes; other records
// are skipped.
type DBN struct {
	d    *dbn.Decoder
	name string
	f    *os.File
}

// NewDBN reads the metadata header of a DBN stream (raw or zstd) from r;
// name identifies the stream in errors.
func NewDBN(r io.Reader, name string) (*DBN, error) {
	d, err := dbn.NewDecoder(r)
	if err != nil {
		return nil, nameErr(err, name)
	}
	return &DBN{d: d, name: name}, nil
}

// OpenDBN opens a DBN file.
func OpenDBN(path string) (*DBN, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	s, err := NewDBN(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	s.f = f
	return s, nil
}

// Name returns the name given to NewDBN or OpenDBN.
func (s *DBN) Name() string { return s.name }

// Metadata returns the stream's metadata header.
func (s *DBN) Metadata() *dbn.Metadata { return s.d.Metadata() }

// Next implements Source.
func (s *DBN) Next(in *Input) error {
	for {
		r, err := s.d.Next()
		if err != nil {
			return nameErr(err, s.name)
		}
		switch rec := r.(type) {
		case *dbn.MBO:
			if !dbn.MBOEvent(rec, &in.Event) {
				continue
			}
			f := rec.Flags
			in.BookOnly = f&dbn.FlagSnapshot != 0 && f&dbn.FlagLast == 0
			in.Tick, in.Offset = 0, s.d.Offset()
			return nil
		case *dbn.InstrumentDef:
			if t := rec.MinPriceIncrement; t > 0 && t != dbn.UndefPrice {
				*in = Input{Event: book.Event{Instrument: rec.InstrumentID, TsNs: int64(rec.TsEvent)}, Tick: t, Offset: s.d.Offset()}
				return nil
			}
		}
	}
}

// Close releases the decoder and closes the file opened by OpenDBN.
func (s *DBN) Close() error {
	err := s.d.Close()
	if s.f != nil {
		err = s.f.Close()
	}
	return err
}

// nameErr names the stream in a DBN decode error that does not already.
func nameErr(err error, name string) error {
	var de *dbn.DecodeError
	if errors.As(err, &de) && de.File == "" {
		de.File = name
	}
	return err
}

// ReadTicks reads the instrument definitions of a DBN file into ticks
// (instrument id → tick size in book price units) and returns how many it
// read.
func ReadTicks(path string, ticks map[uint32]int64) (int, error) {
	s, err := OpenDBN(path)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	var in Input
	n := 0
	for {
		switch err := s.Next(&in); {
		case err == io.EOF:
			return n, nil
		case err != nil:
			return n, err
		case in.Tick > 0:
			ticks[in.Event.Instrument] = in.Tick
			n++
		}
	}
}
