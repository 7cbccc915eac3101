package dbn

import "github.com/gallop-dev/gallop/data/book"

// mboActions maps DBN MBO action bytes to book actions; 0 means no event.
var mboActions = [256]book.Action{
	'A': book.Add,
	'C': book.Cancel,
	'M': book.Modify,
	'R': book.Clear,
	'T': book.Trade,
	'F': book.Trade,
}

// mboSides maps DBN side bytes to book sides; anything else is None.
var mboSides = [256]book.Side{'B': book.Bid, 'A': book.Ask}

// MBOEvent converts an MBO record into a book event and reports whether the
// record maps to one ('N' records and unknown actions do not). Actions map as
// 'A' Add, 'C' Cancel (Size is the canceled size), 'M' Modify, 'R' Clear,
// and 'T' and 'F' Trade: in Databento MBO the book effect of a fill arrives
// as a separate cancel or modify, so prints must not change the book. Sides
// map 'B' Bid, 'A' Ask, anything else None. TsNs is ts_event; Flags keeps
// the DBN flags (FlagLast, FlagSnapshot, ...).
func MBOEvent(m *MBO, dst *book.Event) bool {
	a := mboActions[m.Action]
	if a == 0 {
		return false
	}
	*dst = book.Event{
		TsNs:       int64(m.TsEvent),
		OrderID:    m.OrderID,
		Price:      m.Price,
		Size:       int64(m.Size),
		Instrument: m.InstrumentID,
		Action:     a,
		Side:       mboSides[m.Side],
		Flags:      m.Flags,
	}
	return true
}
