// Package feed reads exchange market-data feeds as captured by hftbacktest's
// collectors: gzip text, one message per line, "<local_recv_ns> <json>".
//
// Supported messages: Binance spot and futures combined streams
// ({"stream":...,"data":...}) for depth diffs (depthUpdate), bookTicker and
// trade, the REST depth snapshots the collector interleaves
// ({"lastUpdateId":...,"bids":...,"asks":...}), and Hyperliquid l2Book and
// trades channels. Other well-formed messages decode as KindUnknown.
//
// Prices become book units (1e-9, book.PriceScale) and sizes units of 1e-8
// (SizeScale), so fractional coin quantities stay integral in book.Event.Size.
// Decimal strings with more digits than that are rejected rather than
// rounded.
package feed

import (
	"errors"
	"fmt"

	"github.com/gallop-dev/gallop/data/book"
)

// SizeScale is the number of size units in 1.0 of quantity (1e-8: Binance
// quantities have at most 8 decimals, Hyperliquid sizes 5; contract counts
// are integers).
const SizeScale = 100_000_000

// Kind is the type of a decoded message.
type Kind uint8

const (
	KindUnknown    Kind = iota // well-formed JSON of a type this package does not decode
	KindDepth                  // Binance depthUpdate: level diffs over update ids FirstID..LastID
	KindSnapshot               // Binance REST depth snapshot as of LastID
	KindBookTicker             // Binance bookTicker: best bid and ask (BBO)
	KindTrade                  // Binance trade (one in Trades)
	KindL2Book                 // Hyperliquid l2Book: snapshot of the top levels
	KindTrades                 // Hyperliquid trades: a batch in Trades
)

const numKinds = KindTrades + 1

var kindNames = [...]string{"unknown", "depth", "snapshot", "bookTicker", "trade", "l2Book", "trades"}

func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Message is one decoded line. Slices are reused by the next Read.
type Message struct {
	RecvNs int64 // local receive time, ns since the Unix epoch (the line's first field)
	Kind   Kind
	// TsNs is the exchange time in ns since the Unix epoch: the transaction
	// time T where the message has one, else the event time E (Binance);
	// time for a Hyperliquid l2Book, the latest trade's for a trades batch;
	// 0 if the message carries none (spot bookTicker and spot snapshots).
	TsNs int64

	// KindDepth, KindSnapshot and KindL2Book: levels best first as sent
	// (Count is Hyperliquid's order count, else 0). Depth diffs carry
	// absolute sizes, 0 removing the level.
	Bids, Asks []book.Level
	// Update ids: U and u of a diff, lastUpdateId of a snapshot (LastID).
	// PrevID is the futures diff's pu (the previous diff's u) when HasPrevID.
	FirstID, LastID, PrevID uint64
	HasPrevID               bool

	BBO    BBO     // KindBookTicker
	Trades []Trade // KindTrade (one) and KindTrades
}

// BBO is a bookTicker record: the best bid and ask after update UpdateID.
// It is not a book event; it lets a consumer check a rebuilt book.
type BBO struct {
	UpdateID          uint64
	BidPrice, BidSize int64
	AskPrice, AskSize int64
}

// Trade is one print. Side is the aggressor's: book.Bid for a buyer-initiated
// trade, book.Ask for a seller-initiated one (Binance m "buyer is maker"
// means the seller aggressed; Hyperliquid side "B" means the buyer did).
type Trade struct {
	TsNs  int64
	ID    uint64
	Price int64
	Size  int64
	Side  book.Side
}

// Flags set on converted events, with DBN's values.
const (
	FlagSnapshot uint8 = 1 << 5 // the event rebuilds the book from a snapshot
	FlagLast     uint8 = 1 << 7 // last event of its message: the book is consistent after it
)

// LineError is a line that could not be decoded.
type LineError struct {
	File string
	Line int // 1-based
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }

func (e *LineError) Unwrap() error { return e.Err }

// Errors wrapped by LineError (besides encoding/json's).
var (
	ErrMissingField = errors.New("missing field")
	ErrBadNumber    = errors.New("bad number")
	ErrBadLine      = errors.New("bad line")
	ErrLineLength   = errors.New("line too long")
)
