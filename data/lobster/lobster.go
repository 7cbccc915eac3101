// Package lobster reads LOBSTER message and orderbook files (NASDAQ
// TotalView-ITCH reconstructions from lobsterdata.com) and converts messages
// into book.Event.
//
// A LOBSTER day comes as two CSV files of equal length: the message file, one
// event per line, and the orderbook file, whose row k is the top-N price
// levels of the book after message k. Only events that touch the requested
// N levels appear in the message file, so levels beyond N are never fully
// known; see the conformance test for what that means for reconstruction.
//
// Prices are converted to book units (1e-9): LOBSTER's dollars×10000 times
// 1e5. Times, seconds after midnight New York time, become ns since the Unix
// epoch.
package lobster

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gallop-dev/gallop/data/book"
)

// PriceMult converts a LOBSTER price (dollars×10000) to book units (1e-9).
const PriceMult = book.PriceScale / 10000

// EventType is LOBSTER's message type (column 2 of the message file).
type EventType uint8

const (
	Submit         EventType = 1 // submission of a new limit order
	PartialCancel  EventType = 2 // cancellation (partial deletion) of a limit order
	Delete         EventType = 3 // deletion (total) of a limit order
	ExecuteVisible EventType = 4 // execution of a visible limit order
	ExecuteHidden  EventType = 5 // execution of a hidden limit order
	Cross          EventType = 6 // cross trade, e.g. an auction
	Halt           EventType = 7 // trading halt indicator
)

var typeNames = [...]string{"?", "submit", "cancel", "delete", "execute", "hidden", "cross", "halt"}

func (t EventType) String() string {
	if int(t) < len(typeNames) && t != 0 {
		return typeNames[t]
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// HaltState is what a Halt message announces, from its price column.
type HaltState int8

const (
	Halted  HaltState = -1 // trading halts (price -1)
	Quoting HaltState = 0  // quoting resumes, trading still halted (price 0)
	Resumed HaltState = 1  // trading resumes (price 1)
)

// Message is one line of a message file.
type Message struct {
	TsNs      int64 // ns since the Unix epoch
	Type      EventType
	OrderID   uint64
	Size      int64 // shares
	Price     int64 // book units (LOBSTER price × PriceMult); see Halt for type 7
	Direction int8  // 1 buy limit order, -1 sell limit order
}

// Side is the book side of the order the message is about: Bid for
// direction 1, Ask for -1.
func (m *Message) Side() book.Side {
	switch m.Direction {
	case 1:
		return book.Bid
	case -1:
		return book.Ask
	}
	return book.None
}

// Halt reports whether m is a trading-halt message and, if so, what it
// announces.
func (m *Message) Halt() (HaltState, bool) {
	if m.Type != Halt {
		return 0, false
	}
	switch {
	case m.Price < 0:
		return Halted, true
	case m.Price == 0:
		return Quoting, true
	}
	return Resumed, true
}

// ToEvent converts m into dst and reports whether m is a book event. It
// overwrites every field of dst except Instrument, and sets dst.Flags to the
// LOBSTER EventType, so the original type survives the conversion.
//
//	1 submit          → Add
//	2 partial cancel  → Cancel, Size = shares cancelled
//	3 delete          → Cancel, Size = the shares LOBSTER says were deleted,
//	                    which is the order's whole remaining size; the book
//	                    removes a known order entirely and takes Size off the
//	                    level for orders it never saw (resting before the file)
//	4 visible exec    → Fill, Side = the resting order's side
//	5 hidden exec     → Trade, Side = the aggressor (opposite the hidden order)
//	6 cross           → Trade, Side = None (no aggressor in a cross)
//	7 halt            → ok = false; see Message.Halt
//
// Any other type also gives ok = false.
func ToEvent(m *Message, dst *book.Event) (ok bool) {
	*dst = book.Event{
		TsNs:       m.TsNs,
		OrderID:    m.OrderID,
		Price:      m.Price,
		Size:       m.Size,
		Instrument: dst.Instrument,
		Side:       m.Side(),
		Flags:      uint8(m.Type),
	}
	switch m.Type {
	case Submit:
		dst.Action = book.Add
	case PartialCancel, Delete:
		dst.Action = book.Cancel
	case ExecuteVisible:
		dst.Action = book.Fill
	case ExecuteHidden:
		dst.Action = book.Trade
		switch dst.Side {
		case book.Bid:
			dst.Side = book.Ask
		case book.Ask:
			dst.Side = book.Bid
		}
	case Cross:
		dst.Action = book.Trade
		dst.Side = book.None
	default:
		return false
	}
	return true
}

// Name is what a LOBSTER file name says:
// TICKER_YYYY-MM-DD_START_END_KIND_LEVELS.csv.
type Name struct {
	Ticker     string
	Date       time.Time     // trading day, 00:00 UTC (a calendar date)
	Start, End time.Duration // requested window, after midnight
	Kind       string        // "message" or "orderbook"
	Levels     int
}

// ParseName parses a LOBSTER file name (a directory prefix is ignored).
func ParseName(name string) (Name, error) {
	base := name
	if i := strings.LastIndexAny(base, `/\`); i >= 0 {
		base = base[i+1:]
	}
	bad := func(why string) (Name, error) {
		return Name{}, fmt.Errorf("lobster: file name %q: %s", base, why)
	}
	s, ok := strings.CutSuffix(base, ".csv")
	if !ok {
		return bad("not .csv")
	}
	// The ticker may itself contain '_', so parse from the right.
	parts := strings.Split(s, "_")
	if len(parts) < 6 {
		return bad("want TICKER_DATE_START_END_KIND_LEVELS")
	}
	k := len(parts) - 5
	var n Name
	n.Ticker = strings.Join(parts[:k], "_")
	if n.Ticker == "" {
		return bad("empty ticker")
	}
	d, err := time.Parse(time.DateOnly, parts[k])
	if err != nil {
		return bad("date: " + err.Error())
	}
	n.Date = d
	start, err1 := strconv.ParseInt(parts[k+1], 10, 32)
	end, err2 := strconv.ParseInt(parts[k+2], 10, 32)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return bad("start/end milliseconds")
	}
	n.Start = time.Duration(start) * time.Millisecond
	n.End = time.Duration(end) * time.Millisecond
	n.Kind = parts[k+3]
	if n.Kind != "message" && n.Kind != "orderbook" {
		return bad("kind " + strconv.Quote(n.Kind))
	}
	lv, err := strconv.Atoi(parts[k+4])
	if err != nil || lv < 1 || lv > maxLevels {
		return bad("levels")
	}
	n.Levels = lv
	return n, nil
}

const maxLevels = 1000

// NewYorkMidnight returns 00:00 America/New_York on date's calendar day
// (year, month and day of date as given) in ns since the Unix epoch: the
// base LOBSTER times are added to. It applies the US daylight-saving rules
// by hand (1987–2006: first Sunday of April to last Sunday of October;
// 2007 on: second Sunday of March to first Sunday of November) rather than
// depending on the system's time zone database. The clocks change at 02:00,
// so midnight is never ambiguous.
func NewYorkMidnight(date time.Time) int64 {
	y, mo, d := date.Date()
	day := time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)
	var start, end time.Time
	if y >= 2007 {
		start = nthSunday(y, time.March, 2)
		end = nthSunday(y, time.November, 1)
	} else {
		start = nthSunday(y, time.April, 1)
		end = lastSunday(y, time.October)
	}
	offset := 5 * time.Hour // EST
	if day.After(start) && !day.After(end) {
		offset = 4 * time.Hour // EDT
	}
	return day.Add(offset).UnixNano()
}

func nthSunday(y int, m time.Month, n int) time.Time {
	t := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	t = t.AddDate(0, 0, (7-int(t.Weekday()))%7)
	return t.AddDate(0, 0, 7*(n-1))
}

func lastSunday(y int, m time.Month) time.Time {
	t := time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC) // last day of m
	return t.AddDate(0, 0, -int(t.Weekday()))
}

// ParseError is a malformed line in a message or orderbook file.
type ParseError struct {
	File   string
	Line   int    // 1-based
	Column int    // 1-based CSV column; 0 when the line as a whole is bad
	Field  string // the column's name, e.g. "order id" or "bid size 3"
	Err    error
}

func (e *ParseError) Error() string {
	if e.Column == 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s:%d: column %d (%s): %v", e.File, e.Line, e.Column, e.Field, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// Errors wrapped by ParseError.
var (
	ErrSyntax     = errors.New("invalid number")
	ErrRange      = errors.New("value out of range")
	ErrFieldCount = errors.New("wrong number of columns")
	ErrLineLength = errors.New("line too long")
)
