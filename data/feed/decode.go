package feed

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"

	"github.com/gallop-dev/gallop/data/book"
)

// The JSON is decoded with encoding/json into the structs below, with small
// Unmarshaler types for the fields: fixed-point decimals, integers and
// booleans that remember whether they were present (encoding/json leaves an
// absent field alone, so "missing" must be recorded by the field), and level
// lists decoded into reused slices.
//
// encoding/json matches keys case-insensitively when no field matches
// exactly, and Binance uses keys differing only in case ("e" event type and
// "E" event time, "t" trade id and "T" trade time, "b"/"B", "m"/"M", ...).
// Every struct therefore names both spellings, ignoring the one it does not
// need, so that no key can land in its case-folded neighbour.

// ignore accepts any JSON value.
type ignore struct{}

func (*ignore) UnmarshalJSON([]byte) error { return nil }

func isNull(b []byte) bool { return string(b) == "null" }

// optInt is a JSON integer (Binance times and ids).
type optInt struct {
	v  int64
	ok bool
}

func (o *optInt) UnmarshalJSON(b []byte) error {
	if isNull(b) {
		return nil
	}
	v, ok := parseInt(b)
	if !ok {
		return fmt.Errorf("%w %s", ErrBadNumber, clip(b))
	}
	o.v, o.ok = v, true
	return nil
}

// ms returns the value, milliseconds, in ns.
func (o optInt) ms() (int64, bool) {
	if !o.ok || o.v < 0 || o.v > math.MaxInt64/1_000_000 {
		return 0, false
	}
	return o.v * 1_000_000, true
}

type optUint struct {
	v  uint64
	ok bool
}

func (o *optUint) UnmarshalJSON(b []byte) error {
	if isNull(b) {
		return nil
	}
	v, ok := parseInt(b)
	if !ok || v < 0 {
		return fmt.Errorf("%w %s", ErrBadNumber, clip(b))
	}
	o.v, o.ok = uint64(v), true
	return nil
}

type optBool struct {
	v, ok bool
}

func (o *optBool) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "true":
		o.v, o.ok = true, true
	case "false":
		o.v, o.ok = false, true
	case "null":
	default:
		return fmt.Errorf("bad boolean %s", clip(b))
	}
	return nil
}

// decimal is a quoted (or bare) decimal number in fixed point with
// scale digits after the point.
type decimal struct {
	v  int64
	ok bool
}

func (d *decimal) set(b []byte, scale int) error {
	if isNull(b) {
		return nil
	}
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		b = b[1 : len(b)-1]
	}
	v, ok := parseDecimal(b, scale)
	if !ok {
		return fmt.Errorf("%w %s", ErrBadNumber, clip(b))
	}
	d.v, d.ok = v, true
	return nil
}

// price is a decimal in book units (9 digits).
type price struct{ decimal }

func (p *price) UnmarshalJSON(b []byte) error { return p.set(b, 9) }

// size is a decimal in SizeScale units (8 digits).
type size struct{ decimal }

func (s *size) UnmarshalJSON(b []byte) error { return s.set(b, 8) }

// levels is a Binance level list [["price","qty"],...], decoded into a
// reused slice.
type levels struct {
	l  []book.Level
	ok bool
}

func (ls *levels) UnmarshalJSON(b []byte) error {
	ls.l = ls.l[:0]
	if isNull(b) {
		return nil
	}
	// encoding/json has validated b as JSON; check its shape as we go.
	p := jsonScanner{b: b}
	if !p.consume('[') {
		return errShape
	}
	if p.consume(']') {
		ls.ok = true
		return p.end()
	}
	for {
		if !p.consume('[') {
			return errShape
		}
		px, ok1 := p.str()
		comma := p.consume(',')
		qty, ok2 := p.str()
		if !ok1 || !comma || !ok2 || !p.consume(']') {
			return errShape
		}
		pv, ok1 := parseDecimal(px, 9)
		qv, ok2 := parseDecimal(qty, 8)
		if !ok1 {
			return fmt.Errorf("%w %s", ErrBadNumber, clip(px))
		}
		if !ok2 {
			return fmt.Errorf("%w %s", ErrBadNumber, clip(qty))
		}
		ls.l = append(ls.l, book.Level{Price: pv, Size: qv})
		if p.consume(']') {
			ls.ok = true
			return p.end()
		}
		if !p.consume(',') {
			return errShape
		}
	}
}

var errShape = fmt.Errorf("%w: level list is not [[\"price\",\"qty\"],...]", ErrBadNumber)

// jsonScanner walks a small, already validated JSON value.
type jsonScanner struct {
	b []byte
	i int
}

func (s *jsonScanner) skipSpace() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *jsonScanner) consume(c byte) bool {
	s.skipSpace()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str returns the contents of a string without escapes.
func (s *jsonScanner) str() ([]byte, bool) {
	if !s.consume('"') {
		return nil, false
	}
	j := bytes.IndexByte(s.b[s.i:], '"')
	if j < 0 {
		return nil, false
	}
	v := s.b[s.i : s.i+j]
	s.i += j + 1
	if bytes.IndexByte(v, '\\') >= 0 {
		return nil, false
	}
	return v, true
}

func (s *jsonScanner) end() error {
	s.skipSpace()
	if s.i != len(s.b) {
		return errShape
	}
	return nil
}

// stream classifies a Binance combined-stream name
// "<symbol>@<stream>[@<speed>]".
type stream struct {
	kind Kind
	set  bool
}

func (st *stream) UnmarshalJSON(b []byte) error {
	if isNull(b) {
		return nil
	}
	st.set = true
	st.kind = KindUnknown
	if len(b) < 2 || b[0] != '"' {
		return fmt.Errorf("stream name %s is not a string", clip(b))
	}
	name := b[1 : len(b)-1]
	at := bytes.IndexByte(name, '@')
	if at < 0 {
		return nil
	}
	switch rest := name[at+1:]; {
	case string(rest) == "depth" || bytes.HasPrefix(rest, []byte("depth@")):
		st.kind = KindDepth
	case string(rest) == "bookTicker":
		st.kind = KindBookTicker
	case string(rest) == "trade":
		st.kind = KindTrade
	}
	return nil
}

// channel classifies a Hyperliquid channel name.
type channel struct {
	kind Kind
	set  bool
}

func (ch *channel) UnmarshalJSON(b []byte) error {
	if isNull(b) {
		return nil
	}
	ch.set = true
	switch string(b) {
	case `"l2Book"`:
		ch.kind = KindL2Book
	case `"trades"`:
		ch.kind = KindTrades
	default:
		ch.kind = KindUnknown
	}
	return nil
}

// hlSide is a Hyperliquid aggressor side, "B" (buy) or "A" (sell).
type hlSide struct {
	side book.Side
}

func (s *hlSide) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case `"B"`:
		s.side = book.Bid
	case `"A"`:
		s.side = book.Ask
	case "null":
	default:
		return fmt.Errorf("bad side %s", clip(b))
	}
	return nil
}

// envelope is the top level of every supported line.
type envelope struct {
	Stream  stream          `json:"stream"`
	Channel channel         `json:"channel"`
	Data    json.RawMessage `json:"data"`
	// A bare REST depth snapshot.
	LastUpdateID optUint `json:"lastUpdateId"`
	Bids         levels  `json:"bids"`
	Asks         levels  `json:"asks"`
	E            optInt  `json:"E"`
	T            optInt  `json:"T"`
	Ev           ignore  `json:"e"`
	Tv           ignore  `json:"t"`
}

type depthMsg struct {
	Ev ignore  `json:"e"`
	E  optInt  `json:"E"`
	T  optInt  `json:"T"`
	Tv ignore  `json:"t"`
	U  optUint `json:"U"`
	Uu optUint `json:"u"`
	PU optUint `json:"pu"`
	B  levels  `json:"b"`
	BB ignore  `json:"B"`
	A  levels  `json:"a"`
	AA ignore  `json:"A"`
}

type tickerMsg struct {
	U  optUint `json:"u"`
	UU ignore  `json:"U"`
	B  price   `json:"b"`
	BQ size    `json:"B"`
	A  price   `json:"a"`
	AQ size    `json:"A"`
	Ev ignore  `json:"e"`
	E  optInt  `json:"E"`
	T  optInt  `json:"T"`
	Tv ignore  `json:"t"`
}

type tradeMsg struct {
	Ev ignore  `json:"e"`
	E  optInt  `json:"E"`
	T  optInt  `json:"T"`
	ID optUint `json:"t"`
	P  price   `json:"p"`
	PP ignore  `json:"P"`
	Q  size    `json:"q"`
	QQ ignore  `json:"Q"`
	M  optBool `json:"m"`
	MM ignore  `json:"M"`
}

type hlLevel struct {
	N  optInt `json:"n"`
	Px price  `json:"px"`
	Sz size   `json:"sz"`
}

type l2Msg struct {
	Levels [][]hlLevel `json:"levels"`
	Time   optInt      `json:"time"`
}

type hlTrade struct {
	Px   price   `json:"px"`
	Sz   size    `json:"sz"`
	Side hlSide  `json:"side"`
	Time optInt  `json:"time"`
	Tid  optUint `json:"tid"`
}

// decoder decodes lines into Messages, reusing its buffers.
type decoder struct {
	env      envelope
	depth    depthMsg
	ticker   tickerMsg
	trade    tradeMsg
	l2       l2Msg
	hlTrades []hlTrade
	bids     []book.Level
	asks     []book.Level
	trades   []Trade
}

func missing(what, field string) error {
	return fmt.Errorf("%s: %w %q", what, ErrMissingField, field)
}

// decode decodes one line, "<recv_ns> <json>", into m.
func (d *decoder) decode(line []byte, m *Message) error {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return fmt.Errorf("%w: want \"<recv_ns> <json>\"", ErrBadLine)
	}
	recv, ok := parseInt(line[:sp])
	if !ok || recv < 0 {
		return fmt.Errorf("%w: receive time %s", ErrBadNumber, clip(line[:sp]))
	}
	*m = Message{RecvNs: recv, Bids: m.Bids[:0], Asks: m.Asks[:0], Trades: m.Trades[:0]}

	e := &d.env
	*e = envelope{Data: e.Data[:0], Bids: levels{l: e.Bids.l}, Asks: levels{l: e.Asks.l}}
	if err := json.Unmarshal(line[sp+1:], e); err != nil {
		return err
	}
	switch {
	case e.Stream.set:
		if e.Stream.kind == KindUnknown {
			return nil
		}
		if len(e.Data) == 0 || isNull(e.Data) {
			return missing(e.Stream.kind.String(), "data")
		}
		m.Kind = e.Stream.kind
		switch m.Kind {
		case KindDepth:
			return d.decodeDepth(m)
		case KindBookTicker:
			return d.decodeTicker(m)
		case KindTrade:
			return d.decodeTrade(m)
		}
	case e.Channel.set:
		if e.Channel.kind == KindUnknown {
			return nil
		}
		if len(e.Data) == 0 || isNull(e.Data) {
			return missing(e.Channel.kind.String(), "data")
		}
		m.Kind = e.Channel.kind
		if m.Kind == KindL2Book {
			return d.decodeL2(m)
		}
		return d.decodeHLTrades(m)
	case e.LastUpdateID.ok:
		m.Kind = KindSnapshot
		if !e.Bids.ok {
			return missing("snapshot", "bids")
		}
		if !e.Asks.ok {
			return missing("snapshot", "asks")
		}
		m.LastID = e.LastUpdateID.v
		m.Bids, m.Asks = e.Bids.l, e.Asks.l
		m.TsNs = exchTime(e.T, e.E)
	}
	return nil
}

// exchTime is the first present of the given ms times, in ns.
func exchTime(ts ...optInt) int64 {
	for _, t := range ts {
		if ns, ok := t.ms(); ok {
			return ns
		}
	}
	return 0
}

func (d *decoder) decodeDepth(m *Message) error {
	x := &d.depth
	*x = depthMsg{B: levels{l: x.B.l}, A: levels{l: x.A.l}}
	if err := json.Unmarshal(d.env.Data, x); err != nil {
		return fmt.Errorf("depthUpdate: %w", err)
	}
	for _, f := range []struct {
		ok   bool
		name string
	}{{x.E.ok, "E"}, {x.U.ok, "U"}, {x.Uu.ok, "u"}, {x.B.ok, "b"}, {x.A.ok, "a"}} {
		if !f.ok {
			return missing("depthUpdate", f.name)
		}
	}
	m.TsNs = exchTime(x.T, x.E)
	if m.TsNs == 0 {
		return fmt.Errorf("depthUpdate: %w: E out of range", ErrBadNumber)
	}
	m.FirstID, m.LastID = x.U.v, x.Uu.v
	m.PrevID, m.HasPrevID = x.PU.v, x.PU.ok
	m.Bids, m.Asks = x.B.l, x.A.l
	return nil
}

func (d *decoder) decodeTicker(m *Message) error {
	x := &d.ticker
	*x = tickerMsg{}
	if err := json.Unmarshal(d.env.Data, x); err != nil {
		return fmt.Errorf("bookTicker: %w", err)
	}
	for _, f := range []struct {
		ok   bool
		name string
	}{{x.U.ok, "u"}, {x.B.ok, "b"}, {x.BQ.ok, "B"}, {x.A.ok, "a"}, {x.AQ.ok, "A"}} {
		if !f.ok {
			return missing("bookTicker", f.name)
		}
	}
	m.TsNs = exchTime(x.T, x.E)
	m.BBO = BBO{UpdateID: x.U.v, BidPrice: x.B.v, BidSize: x.BQ.v, AskPrice: x.A.v, AskSize: x.AQ.v}
	return nil
}

func (d *decoder) decodeTrade(m *Message) error {
	x := &d.trade
	*x = tradeMsg{}
	if err := json.Unmarshal(d.env.Data, x); err != nil {
		return fmt.Errorf("trade: %w", err)
	}
	for _, f := range []struct {
		ok   bool
		name string
	}{{x.P.ok, "p"}, {x.Q.ok, "q"}, {x.T.ok, "T"}, {x.M.ok, "m"}} {
		if !f.ok {
			return missing("trade", f.name)
		}
	}
	ts, ok := x.T.ms()
	if !ok {
		return fmt.Errorf("trade: %w: T out of range", ErrBadNumber)
	}
	side := book.Bid // buyer is taker
	if x.M.v {
		side = book.Ask // buyer is maker: the seller aggressed
	}
	m.TsNs = ts
	m.Trades = append(m.Trades, Trade{TsNs: ts, ID: x.ID.v, Price: x.P.v, Size: x.Q.v, Side: side})
	return nil
}

func (d *decoder) decodeL2(m *Message) error {
	x := &d.l2
	*x = l2Msg{Levels: x.Levels[:0]}
	if err := json.Unmarshal(d.env.Data, x); err != nil {
		return fmt.Errorf("l2Book: %w", err)
	}
	if len(x.Levels) != 2 {
		return missing("l2Book", "levels")
	}
	if !x.Time.ok {
		return missing("l2Book", "time")
	}
	ts, ok := x.Time.ms()
	if !ok {
		return fmt.Errorf("l2Book: %w: time out of range", ErrBadNumber)
	}
	m.TsNs = ts
	d.bids, d.asks = d.bids[:0], d.asks[:0]
	for side, lv := range x.Levels {
		for _, l := range lv {
			if !l.Px.ok {
				return missing("l2Book", "px")
			}
			if !l.Sz.ok {
				return missing("l2Book", "sz")
			}
			if l.N.v < 0 || l.N.v > math.MaxInt32 {
				return fmt.Errorf("l2Book: %w: n %d", ErrBadNumber, l.N.v)
			}
			bl := book.Level{Price: l.Px.v, Size: l.Sz.v, Count: int32(l.N.v)}
			if side == 0 {
				d.bids = append(d.bids, bl)
			} else {
				d.asks = append(d.asks, bl)
			}
		}
	}
	m.Bids, m.Asks = d.bids, d.asks
	return nil
}

func (d *decoder) decodeHLTrades(m *Message) error {
	d.hlTrades = d.hlTrades[:0]
	if err := json.Unmarshal(d.env.Data, &d.hlTrades); err != nil {
		return fmt.Errorf("trades: %w", err)
	}
	for i := range d.hlTrades {
		t := &d.hlTrades[i]
		for _, f := range []struct {
			ok   bool
			name string
		}{{t.Px.ok, "px"}, {t.Sz.ok, "sz"}, {t.Side.side != book.None, "side"}, {t.Time.ok, "time"}} {
			if !f.ok {
				return missing("trades", f.name)
			}
		}
		ts, ok := t.Time.ms()
		if !ok {
			return fmt.Errorf("trades: %w: time out of range", ErrBadNumber)
		}
		m.Trades = append(m.Trades, Trade{TsNs: ts, ID: t.Tid.v, Price: t.Px.v, Size: t.Sz.v, Side: t.Side.side})
		m.TsNs = max(m.TsNs, ts)
	}
	return nil
}

// parseInt parses a JSON integer in (-2^63, 2^63).
func parseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		c -= '0'
		if c > 9 || v > (math.MaxInt64-int64(c))/10 {
			return 0, false
		}
		v = v*10 + int64(c)
	}
	if neg {
		v = -v
	}
	return v, true
}

var pow10 = [...]int64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9}

// parseDecimal parses a non-negative decimal "123.4500" into fixed point with
// scale digits after the point. Digits beyond the scale must be zeros; no
// sign, exponent or empty part is accepted.
func parseDecimal(b []byte, scale int) (int64, bool) {
	i := 0
	var ip int64
	limit := math.MaxInt64 / pow10[scale]
	for ; i < len(b) && b[i] != '.'; i++ {
		c := b[i] - '0'
		if c > 9 {
			return 0, false
		}
		ip = ip*10 + int64(c)
		if ip > limit {
			return 0, false
		}
	}
	if i == 0 {
		return 0, false
	}
	v := ip * pow10[scale]
	if i == len(b) {
		return v, true
	}
	i++ // '.'
	if i == len(b) {
		return 0, false
	}
	var frac int64
	k := 0 // fraction digits kept
	for ; i < len(b); i++ {
		c := b[i] - '0'
		switch {
		case c > 9:
			return 0, false
		case k < scale:
			frac = frac*10 + int64(c)
			k++
		case c != 0:
			return 0, false // more precision than the scale holds
		}
	}
	frac *= pow10[scale-k]
	if v > math.MaxInt64-frac {
		return 0, false
	}
	return v + frac, true
}

// clip quotes b for an error message, shortened.
func clip(b []byte) string {
	const n = 40
	if len(b) > n {
		return fmt.Sprintf("%q...", b[:n])
	}
	return fmt.Sprintf("%q", b)
}
