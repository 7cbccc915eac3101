package feed

import (
	"github.com/gallop-dev/gallop/data/book"
)

// AppendEvents appends the book events of m to dst and returns the result:
//
//	KindDepth                one Set per level, bids then asks (size 0 removes)
//	KindSnapshot, KindL2Book a Clear, then one Set per level, all with FlagSnapshot
//	KindTrade, KindTrades    one Trade per print, Side the aggressor's
//	KindBookTicker           nothing: the BBO is a check, not a book change
//
// The last event of a message carries FlagLast (a depth diff may cross the
// book half way through). Events take m.TsNs, or m.RecvNs when the message
// has no exchange time; trades take their own time. Instrument is left 0.
func AppendEvents(dst []book.Event, m *Message) []book.Event {
	ts := m.TsNs
	if ts == 0 {
		ts = m.RecvNs
	}
	n := len(dst)
	var flags uint8
	switch m.Kind {
	case KindSnapshot, KindL2Book:
		flags = FlagSnapshot
		dst = append(dst, book.Event{TsNs: ts, Action: book.Clear, Flags: flags})
		fallthrough
	case KindDepth:
		for _, l := range m.Bids {
			dst = append(dst, book.Event{TsNs: ts, Price: l.Price, Size: l.Size, Action: book.Set, Side: book.Bid, Flags: flags})
		}
		for _, l := range m.Asks {
			dst = append(dst, book.Event{TsNs: ts, Price: l.Price, Size: l.Size, Action: book.Set, Side: book.Ask, Flags: flags})
		}
	case KindTrade, KindTrades:
		for _, t := range m.Trades {
			dst = append(dst, book.Event{TsNs: t.TsNs, Price: t.Price, Size: t.Size, Action: book.Trade, Side: t.Side})
		}
	}
	if len(dst) > n {
		dst[len(dst)-1].Flags |= FlagLast
	}
	return dst
}

// maxPending bounds the diffs DepthBook holds while waiting for a snapshot.
const maxPending = 1 << 14

// DepthBook keeps a book.Book in step with an exchange depth feed.
//
// For Binance it follows the exchange's procedure for a local order book:
// diffs are held until a REST snapshot arrives (the collector records the
// snapshot after the first diffs); then diffs the snapshot already contains
// are dropped, the first one applied must straddle the snapshot's id, and
// each later one must continue the id chain (spot: U = previous u + 1;
// futures: pu = previous u). A break is counted in Gaps and the book waits,
// unsynced, for the next snapshot. Hyperliquid l2Book messages are
// snapshots and replace the book each time.
type DepthBook struct {
	// Book is the rebuilt book, to read (writing to it breaks the sync).
	Book *book.Book
	// Gaps counts breaks in the update-id chain.
	Gaps int
	// Stale counts diffs dropped because the snapshot already held them.
	Stale int
	// Overflow counts diffs discarded because too many were held unsynced.
	Overflow int

	synced  bool
	first   bool // the next diff is the first after a snapshot
	lastID  uint64
	pending []pendingDiff
	np      int // pending entries in use (the rest keep their buffers)
	evs     []book.Event
}

type pendingDiff struct {
	m Message // Bids and Asks owned by the entry
}

// NewDepthBook returns an empty, unsynced DepthBook.
func NewDepthBook() *DepthBook {
	return &DepthBook{Book: book.New()}
}

// Synced reports whether the book reflects a snapshot and every diff since.
func (d *DepthBook) Synced() bool { return d.synced }

// LastUpdateID is the update id the book is at (Binance; 0 before a
// snapshot and for Hyperliquid).
func (d *DepthBook) LastUpdateID() uint64 { return d.lastID }

// Apply feeds one message to the book and reports whether the book changed.
// Messages other than depth diffs and snapshots are ignored.
func (d *DepthBook) Apply(m *Message) bool {
	switch m.Kind {
	case KindSnapshot:
		d.apply(m)
		d.synced, d.first, d.lastID = true, true, m.LastID
		// Replay the held diffs. A diff that breaks the chain is held
		// again, compacting in place: entry j <= i is rewritten only after
		// entry i has been read.
		n := d.np
		d.np = 0
		for i := 0; i < n; i++ {
			d.diff(&d.pending[i].m)
		}
		return true
	case KindL2Book:
		d.apply(m)
		d.synced, d.first, d.lastID = true, false, 0
		return true
	case KindDepth:
		if !d.synced {
			d.hold(m)
			return false
		}
		return d.diff(m)
	}
	return false
}

// diff applies a diff to a synced book, checking the id chain.
func (d *DepthBook) diff(m *Message) bool {
	if !d.synced {
		d.hold(m)
		return false
	}
	if d.first {
		if m.HasPrevID {
			// Futures: drop u < lastUpdateId; the first has U <= lastUpdateId <= u.
			if m.LastID < d.lastID {
				d.Stale++
				return false
			}
			if m.FirstID > d.lastID {
				return d.gap(m)
			}
		} else {
			// Spot: drop u <= lastUpdateId; the first has U <= lastUpdateId+1 <= u.
			if m.LastID <= d.lastID {
				d.Stale++
				return false
			}
			if m.FirstID > d.lastID+1 {
				return d.gap(m)
			}
		}
		d.first = false
	} else if m.HasPrevID && m.PrevID != d.lastID || !m.HasPrevID && m.FirstID != d.lastID+1 {
		return d.gap(m)
	}
	d.apply(m)
	d.lastID = m.LastID
	return true
}

func (d *DepthBook) gap(m *Message) bool {
	d.Gaps++
	d.synced = false
	d.hold(m)
	return false
}

// hold keeps a copy of a diff until the next snapshot.
func (d *DepthBook) hold(m *Message) {
	if d.np == maxPending {
		// Drop the oldest, keeping its buffers for reuse.
		old := d.pending[0]
		copy(d.pending, d.pending[1:d.np])
		d.pending[d.np-1] = old
		d.np--
		d.Overflow++
	}
	if d.np == len(d.pending) {
		d.pending = append(d.pending, pendingDiff{})
	}
	p := &d.pending[d.np]
	d.np++
	bids := append(p.m.Bids[:0], m.Bids...)
	asks := append(p.m.Asks[:0], m.Asks...)
	p.m = *m
	p.m.Bids, p.m.Asks, p.m.Trades = bids, asks, nil
}

func (d *DepthBook) apply(m *Message) {
	d.evs = AppendEvents(d.evs[:0], m)
	for i := range d.evs {
		// Set and Clear events always have a side or need none: Apply
		// cannot fail on them.
		_ = d.Book.Apply(&d.evs[i])
	}
}
