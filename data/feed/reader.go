package feed

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
)

// MaxLineLength bounds a line (REST snapshots of 1000 levels run to ~64 KiB).
const MaxLineLength = 16 << 20

// Reader reads a captured feed line by line.
type Reader struct {
	br    *bufio.Reader
	name  string
	line  int
	long  []byte // lines longer than the bufio buffer are assembled here
	dec   decoder
	err   error
	close []io.Closer
}

// NewReader reads uncompressed feed text from r. name is used in errors.
func NewReader(r io.Reader, name string) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 256<<10), name: name}
}

// Open opens a feed file, gzip-compressed (detected by its magic bytes) or
// plain. Close it when done.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("feed: %w", err)
	}
	br := bufio.NewReaderSize(f, 256<<10)
	var src io.Reader = br
	closers := []io.Closer{f}
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("feed: %s: %w", path, err)
		}
		src = zr
		closers = append(closers, zr)
	}
	r := NewReader(src, path)
	r.close = closers
	return r, nil
}

// Close closes the file Open opened.
func (r *Reader) Close() error {
	var errs []error
	for i := len(r.close) - 1; i >= 0; i-- {
		errs = append(errs, r.close[i].Close())
	}
	r.close = nil
	return errors.Join(errs...)
}

// Line is the number of lines read: the 1-based line of the last message.
func (r *Reader) Line() int { return r.line }

// Read decodes the next line into m, reusing m's slices. It returns io.EOF
// at the end, and a *LineError naming the file and line for a line it
// cannot decode; decoding errors are not sticky (the next Read goes on with
// the next line), read errors are. Empty lines are skipped.
func (r *Reader) Read(m *Message) error {
	for {
		line, err := r.next()
		if err != nil {
			return err
		}
		if len(line) == 0 {
			continue
		}
		if err := r.dec.decode(line, m); err != nil {
			return &LineError{File: r.name, Line: r.line, Err: err}
		}
		return nil
	}
}

func (r *Reader) next() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	r.long = r.long[:0]
	for {
		b, err := r.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			r.long = append(r.long, b...)
			if len(r.long) > MaxLineLength {
				r.line++
				r.err = &LineError{File: r.name, Line: r.line, Err: ErrLineLength}
				return nil, r.err
			}
			continue
		}
		if len(r.long) > 0 {
			r.long = append(r.long, b...)
			b = r.long
		}
		switch {
		case err == nil:
		case err == io.EOF && len(b) > 0:
		case err == io.EOF:
			r.err = io.EOF
			return nil, io.EOF
		default:
			r.err = &LineError{File: r.name, Line: r.line + 1, Err: err}
			return nil, r.err
		}
		r.line++
		b = bytes.TrimSuffix(b, []byte{'\n'})
		b = bytes.TrimSuffix(b, []byte{'\r'})
		return b, nil
	}
}
