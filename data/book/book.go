// Package book rebuilds limit order books from order-level (market-by-order)
// events and reads aggregated price levels from them.
//
// Prices are fixed-point integers in units of 1e-9 (Databento's convention):
// 1.25 is 1_250_000_000. Every source (DBN, LOBSTER, exchange JSON feeds, the
// embedded simulator) converts into Event before it reaches a Book, so book
// reconstruction and features are written once.
package book

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// PriceScale is the number of price units in 1.0.
const PriceScale = 1_000_000_000

// Side of the book an order rests on.
type Side int8

const (
	None Side = 0
	Bid  Side = 1
	Ask  Side = 2
)

func (s Side) String() string {
	switch s {
	case Bid:
		return "bid"
	case Ask:
		return "ask"
	}
	return "none"
}

// Action says what an Event does to the book.
type Action uint8

const (
	// Add places a new order OrderID of Size at Price on Side.
	Add Action = iota + 1
	// Cancel removes Size from resting order OrderID; the order leaves the
	// book when nothing remains. Size 0 removes the whole order.
	Cancel
	// Modify sets resting order OrderID to Price and Size.
	Modify
	// Fill executes Size of resting order OrderID (LOBSTER and simulator
	// semantics: the book shrinks by Size). Side is the resting order's side.
	Fill
	// Trade is a print with no effect on the book (DBN 'T' and 'F' records,
	// whose book effect arrives as separate cancels). Side is the aggressor's.
	Trade
	// Clear empties the book.
	Clear
	// Set overwrites the aggregated level at Price on Side with Size (size 0
	// removes it), for price-level (L2) feeds such as exchange depth diffs.
	Set
)

var actionNames = [...]string{"?", "add", "cancel", "modify", "fill", "trade", "clear", "set"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", a)
}

// Event is one order-level market event, the common currency of every source.
type Event struct {
	TsNs       int64  // exchange timestamp, ns since the Unix epoch
	OrderID    uint64 // exchange order id; 0 for prints without an order
	Price      int64  // fixed-point, see PriceScale
	Size       int64
	Instrument uint32
	Action     Action
	Side       Side
	Flags      uint8 // source-specific flags (e.g. DBN's F_LAST)
}

// Level is one aggregated price level.
type Level struct {
	Price int64
	Size  int64
	Count int32 // number of orders (0 when unknown)
}

type order struct {
	price int64
	size  int64
	side  Side
}

// ErrUnknownOrder is returned (wrapped) when an event names an order the book
// has never seen and carries no price to fall back on.
var ErrUnknownOrder = errors.New("unknown order")

// Book is a full-depth order book for one instrument. The zero value is not
// usable; call New.
type Book struct {
	orders map[uint64]order
	// levels per side, sorted so the best price is last: bids ascending,
	// asks descending. Activity clusters at the top, so inserts and deletes
	// near the end are cheap.
	bids, asks []Level
	// Unmatched counts cancels and fills of orders the book never saw that
	// were applied to the aggregated level at their price (orders resting
	// before the data started).
	Unmatched int
}

// New returns an empty book.
func New() *Book {
	return &Book{orders: make(map[uint64]order, 1024)}
}

func (b *Book) side(s Side) *[]Level {
	if s == Bid {
		return &b.bids
	}
	return &b.asks
}

// find returns the index of price in the side's slice and whether it exists.
func (b *Book) find(s Side, price int64) (int, bool) {
	lv := *b.side(s)
	if s == Bid {
		return slices.BinarySearchFunc(lv, price, func(l Level, p int64) int { return cmp.Compare(l.Price, p) })
	}
	return slices.BinarySearchFunc(lv, price, func(l Level, p int64) int { return cmp.Compare(p, l.Price) })
}

// adjust adds dsize and dcount to the level at price, creating or removing it.
func (b *Book) adjust(s Side, price, dsize int64, dcount int32) {
	p := b.side(s)
	i, ok := b.find(s, price)
	if !ok {
		if dsize <= 0 {
			return
		}
		*p = slices.Insert(*p, i, Level{Price: price, Size: dsize, Count: dcount})
		return
	}
	l := &(*p)[i]
	l.Size += dsize
	l.Count += dcount
	if l.Size <= 0 {
		*p = slices.Delete(*p, i, i+1)
	}
}

// Apply updates the book with one event. Trade events leave it unchanged.
func (b *Book) Apply(e *Event) error {
	switch e.Action {
	case Add:
		if e.Side != Bid && e.Side != Ask {
			return fmt.Errorf("book: add order %d: side %v", e.OrderID, e.Side)
		}
		if e.Size <= 0 {
			return fmt.Errorf("book: add order %d: size %d", e.OrderID, e.Size)
		}
		if old, ok := b.orders[e.OrderID]; ok {
			// A repeated id replaces the old order (some feeds reuse ids).
			b.adjust(old.side, old.price, -old.size, -1)
		}
		b.orders[e.OrderID] = order{price: e.Price, size: e.Size, side: e.Side}
		b.adjust(e.Side, e.Price, e.Size, 1)
	case Cancel, Fill:
		o, ok := b.orders[e.OrderID]
		if !ok {
			if e.Price == 0 || (e.Side != Bid && e.Side != Ask) {
				return fmt.Errorf("book: %v order %d: %w", e.Action, e.OrderID, ErrUnknownOrder)
			}
			b.Unmatched++
			b.adjust(e.Side, e.Price, -e.Size, 0)
			return nil
		}
		n := e.Size
		if n <= 0 || n >= o.size {
			n = o.size
			delete(b.orders, e.OrderID)
			b.adjust(o.side, o.price, -n, -1)
			return nil
		}
		o.size -= n
		b.orders[e.OrderID] = o
		b.adjust(o.side, o.price, -n, 0)
	case Modify:
		o, ok := b.orders[e.OrderID]
		if !ok {
			// An unseen order modified into existence behaves as an add.
			if e.Side != Bid && e.Side != Ask || e.Size <= 0 {
				return fmt.Errorf("book: modify order %d: %w", e.OrderID, ErrUnknownOrder)
			}
			b.orders[e.OrderID] = order{price: e.Price, size: e.Size, side: e.Side}
			b.adjust(e.Side, e.Price, e.Size, 1)
			return nil
		}
		b.adjust(o.side, o.price, -o.size, -1)
		if e.Size <= 0 {
			delete(b.orders, e.OrderID)
			return nil
		}
		o.price, o.size = e.Price, e.Size
		b.orders[e.OrderID] = o
		b.adjust(o.side, o.price, o.size, 1)
	case Trade:
	case Clear:
		b.Reset()
	case Set:
		if e.Side != Bid && e.Side != Ask {
			return fmt.Errorf("book: set level %d: side %v", e.Price, e.Side)
		}
		b.SetLevel(e.Side, e.Price, e.Size, 0)
	default:
		return fmt.Errorf("book: order %d: unknown action %d", e.OrderID, e.Action)
	}
	return nil
}

// Reset empties the book, keeping its allocations.
func (b *Book) Reset() {
	clear(b.orders)
	b.bids = b.bids[:0]
	b.asks = b.asks[:0]
}

// SetLevel overwrites the aggregated level at price with size and count,
// without order detail (for seeding a book from a snapshot). Size 0 removes it.
func (b *Book) SetLevel(s Side, price, size int64, count int32) {
	p := b.side(s)
	i, ok := b.find(s, price)
	switch {
	case ok && size <= 0:
		*p = slices.Delete(*p, i, i+1)
	case ok:
		(*p)[i] = Level{Price: price, Size: size, Count: count}
	case size > 0:
		*p = slices.Insert(*p, i, Level{Price: price, Size: size, Count: count})
	}
}

// Best returns the best level of a side and whether the side is non-empty.
func (b *Book) Best(s Side) (Level, bool) {
	lv := *b.side(s)
	if len(lv) == 0 {
		return Level{}, false
	}
	return lv[len(lv)-1], true
}

// Depth is the number of price levels on a side.
func (b *Book) Depth(s Side) int { return len(*b.side(s)) }

// Levels writes up to len(dst) levels of a side into dst, best first, and
// returns how many it wrote. It does not allocate.
func (b *Book) Levels(s Side, dst []Level) int {
	lv := *b.side(s)
	n := min(len(dst), len(lv))
	for i := 0; i < n; i++ {
		dst[i] = lv[len(lv)-1-i]
	}
	return n
}

// Level returns the i-th best level of a side (0 is the best).
func (b *Book) Level(s Side, i int) (Level, bool) {
	lv := *b.side(s)
	if i < 0 || i >= len(lv) {
		return Level{}, false
	}
	return lv[len(lv)-1-i], true
}

// Crossed reports whether the best bid is at or above the best ask.
func (b *Book) Crossed() bool {
	bb, ok1 := b.Best(Bid)
	ba, ok2 := b.Best(Ask)
	return ok1 && ok2 && bb.Price >= ba.Price
}

// Orders is the number of resting orders the book knows by id.
func (b *Book) Orders() int { return len(b.orders) }

// OrderSize returns the remaining size of a resting order.
func (b *Book) OrderSize(id uint64) (int64, bool) {
	o, ok := b.orders[id]
	return o.size, ok
}
