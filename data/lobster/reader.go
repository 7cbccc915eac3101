package lobster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/gallop-dev/gallop/data/book"
)

// Dummy prices LOBSTER writes for unoccupied levels (with size 0).
const (
	DummyAsk = 9999999999
	DummyBid = -9999999999
)

const maxLine = 64 << 10

// lineReader hands out lines without copying them; a line is valid until
// the next call. Errors are sticky.
type lineReader struct {
	br   *bufio.Reader
	name string
	line int
	err  error
}

func (lr *lineReader) init(r io.Reader, name string) {
	lr.br = bufio.NewReaderSize(r, maxLine)
	lr.name = name
}

func (lr *lineReader) next() ([]byte, error) {
	if lr.err != nil {
		return nil, lr.err
	}
	b, err := lr.br.ReadSlice('\n')
	switch {
	case err == nil:
	case err == io.EOF && len(b) > 0: // last line without a newline
	case err == io.EOF:
		lr.err = io.EOF
		return nil, io.EOF
	case errors.Is(err, bufio.ErrBufferFull):
		lr.line++
		lr.err = &ParseError{File: lr.name, Line: lr.line, Err: ErrLineLength}
		return nil, lr.err
	default:
		lr.err = fmt.Errorf("%s:%d: %w", lr.name, lr.line+1, err)
		return nil, lr.err
	}
	lr.line++
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b, nil
}

func (lr *lineReader) fail(col int, field string, err error) error {
	lr.err = &ParseError{File: lr.name, Line: lr.line, Column: col, Field: field, Err: err}
	return lr.err
}

// MessageReader reads a LOBSTER message file line by line. It does not
// allocate per line.
type MessageReader struct {
	lr       lineReader
	midnight int64
}

// NewMessageReader reads messages from r. name is used in errors; times are
// added to midnightNs (see NewYorkMidnight).
func NewMessageReader(r io.Reader, name string, midnightNs int64) *MessageReader {
	mr := &MessageReader{midnight: midnightNs}
	mr.lr.init(r, name)
	return mr
}

// Read reads the next message into m. It returns io.EOF at the end of the
// file and a *ParseError for a malformed line; errors are sticky.
func (r *MessageReader) Read(m *Message) error {
	line, err := r.lr.next()
	if err != nil {
		return err
	}
	if col, err := parseMessage(line, r.midnight, m); err != nil {
		return r.lr.fail(col, messageFields[max(col-1, 0)], err)
	}
	return nil
}

// Line is the number of lines read so far: the 1-based line number of the
// last message returned.
func (r *MessageReader) Line() int { return r.lr.line }

var messageFields = [...]string{"time", "type", "order id", "size", "price", "direction"}

// nextField splits the first comma-separated field off s.
func nextField(s []byte) (field, rest []byte, more bool) {
	if i := bytes.IndexByte(s, ','); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, nil, false
}

// parseMessage parses one message line. On error it returns the 1-based
// column at fault (0 for the column count).
func parseMessage(line []byte, midnight int64, m *Message) (col int, err error) {
	var f [6][]byte
	rest := line
	more := true
	n := 0
	for more {
		if n == len(f) {
			return 0, ErrFieldCount
		}
		f[n], rest, more = nextField(rest)
		n++
	}
	if n != len(f) {
		return 0, ErrFieldCount
	}
	ns, err := parseTime(f[0])
	if err != nil {
		return 1, err
	}
	typ, err := parseInt(f[1])
	if err != nil {
		return 2, err
	}
	if typ < int64(Submit) || typ > int64(Halt) {
		return 2, ErrRange
	}
	id, err := parseInt(f[2])
	if err != nil {
		return 3, err
	}
	if id < 0 {
		return 3, ErrRange
	}
	size, err := parseInt(f[3])
	if err != nil {
		return 4, err
	}
	if size < 0 {
		return 4, ErrRange
	}
	price, err := parsePrice(f[4])
	if err != nil {
		return 5, err
	}
	dir, err := parseInt(f[5])
	if err != nil {
		return 6, err
	}
	if dir != 1 && dir != -1 {
		return 6, ErrRange
	}
	*m = Message{
		TsNs:      midnight + ns,
		Type:      EventType(typ),
		OrderID:   uint64(id),
		Size:      size,
		Price:     price,
		Direction: int8(dir),
	}
	return 0, nil
}

// maxDigits keeps every accepted integer below 10^18 < MaxInt64.
const maxDigits = 18

// parseInt parses an optionally negative decimal integer of at most
// maxDigits digits.
func parseInt(b []byte) (int64, error) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg = true
		b = b[1:]
	}
	if len(b) == 0 {
		return 0, ErrSyntax
	}
	if len(b) > maxDigits {
		return 0, ErrRange
	}
	var v int64
	for _, c := range b {
		c -= '0'
		if c > 9 {
			return 0, ErrSyntax
		}
		v = v*10 + int64(c)
	}
	if neg {
		v = -v
	}
	return v, nil
}

// parsePrice parses a LOBSTER price and converts it to book units.
func parsePrice(b []byte) (int64, error) {
	p, err := parseInt(b)
	if err != nil {
		return 0, err
	}
	if p > math.MaxInt64/PriceMult || p < -math.MaxInt64/PriceMult {
		return 0, ErrRange
	}
	return p * PriceMult, nil
}

// parseTime parses seconds after midnight with up to 9 integer digits and
// any number of decimals (digits past the ninth, below 1 ns, are dropped)
// into ns, exactly: no floating point.
func parseTime(b []byte) (int64, error) {
	i := 0
	var sec int64
	for ; i < len(b) && b[i] != '.'; i++ {
		c := b[i] - '0'
		if c > 9 {
			return 0, ErrSyntax
		}
		if i == 9 {
			return 0, ErrRange
		}
		sec = sec*10 + int64(c)
	}
	if i == 0 {
		return 0, ErrSyntax
	}
	ns := sec * 1_000_000_000
	if i == len(b) {
		return ns, nil
	}
	i++ // '.'
	if i == len(b) {
		return 0, ErrSyntax
	}
	scale := int64(100_000_000)
	for ; i < len(b); i++ {
		c := b[i] - '0'
		if c > 9 {
			return 0, ErrSyntax
		}
		ns += int64(c) * scale
		scale /= 10
	}
	return ns, nil
}

// Row is one orderbook row: the occupied levels of each side, best first.
// LOBSTER's dummy levels (price ±9999999999, size 0) are left out, so a side
// may hold fewer than the file's level count. Count is 0 (LOBSTER has no
// order counts).
type Row struct {
	Asks, Bids []book.Level
}

// OrderbookReader reads a LOBSTER orderbook file. It does not allocate per
// row once the Row's slices have grown to the level count.
type OrderbookReader struct {
	lr     lineReader
	levels int
}

// NewOrderbookReader reads rows of the given number of levels from r. name is
// used in errors.
func NewOrderbookReader(r io.Reader, name string, levels int) *OrderbookReader {
	or := &OrderbookReader{levels: levels}
	or.lr.init(r, name)
	return or
}

// Levels is the number of levels per side in each row.
func (r *OrderbookReader) Levels() int { return r.levels }

// Line is the number of lines read so far: the 1-based line number of the
// last row returned.
func (r *OrderbookReader) Line() int { return r.lr.line }

// Read reads the next row into row, reusing its slices. It returns io.EOF at
// the end of the file and a *ParseError for a malformed line; errors are
// sticky.
func (r *OrderbookReader) Read(row *Row) error {
	line, err := r.lr.next()
	if err != nil {
		return err
	}
	if col, err := parseRow(line, r.levels, row); err != nil {
		return r.lr.fail(col, orderbookField(col), err)
	}
	return nil
}

func orderbookField(col int) string {
	if col < 1 {
		return ""
	}
	names := [...]string{"ask price", "ask size", "bid price", "bid size"}
	return fmt.Sprintf("%s %d", names[(col-1)%4], (col-1)/4+1)
}

// errHole is an occupied level after an empty (dummy) one.
var errHole = errors.New("occupied level after an empty one")

func parseRow(line []byte, levels int, row *Row) (col int, err error) {
	row.Asks, row.Bids = row.Asks[:0], row.Bids[:0]
	askDone, bidDone := false, false
	rest := line
	more := true
	for i := 0; i < levels; i++ {
		var f [4][]byte
		for j := range f {
			if !more {
				return 0, ErrFieldCount
			}
			f[j], rest, more = nextField(rest)
		}
		c := 4*i + 1
		ap, err := parseInt(f[0])
		if err != nil {
			return c, err
		}
		as, err := parseInt(f[1])
		if err != nil {
			return c + 1, err
		}
		bp, err := parseInt(f[2])
		if err != nil {
			return c + 2, err
		}
		bs, err := parseInt(f[3])
		if err != nil {
			return c + 3, err
		}
		if col, err := addLevel(&row.Asks, &askDone, ap, as, DummyAsk, c); err != nil {
			return col, err
		}
		if col, err := addLevel(&row.Bids, &bidDone, bp, bs, DummyBid, c+2); err != nil {
			return col, err
		}
	}
	if more {
		return 0, ErrFieldCount
	}
	return 0, nil
}

// addLevel appends an occupied level or notes an empty one; c is the price's
// column.
func addLevel(dst *[]book.Level, done *bool, price, size, dummy int64, c int) (int, error) {
	if size == 0 && price == dummy {
		*done = true
		return 0, nil
	}
	switch {
	case size <= 0:
		return c + 1, ErrRange
	case price <= 0 || price > math.MaxInt64/PriceMult:
		return c, ErrRange
	case *done:
		return c, errHole
	}
	*dst = append(*dst, book.Level{Price: price * PriceMult, Size: size})
	return 0, nil
}
