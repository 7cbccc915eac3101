package lobster

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gallop-dev/gallop/data/book"
)

// Conformance: rebuilding the book from a message file must reproduce
// LOBSTER's own orderbook file.
//
// Seeding. Orderbook row k is the state after message k, and orders resting
// before the first message are unknown. We seed the book with row 1's levels
// (as anonymous aggregated levels) and do not apply message 1, whose effect
// row 1 already contains; rows 2..n are compared, after applying messages
// 2..n. Cancels and executions of orders the book never saw (resting before
// 09:30) carry price and side, so book.Book takes them off the aggregated
// level (book.Book.Unmatched counts them).
//
// What cannot be known. LOBSTER writes a message only when it touches the
// requested N levels, so the file says nothing about the book beyond level N:
// neither the levels that were never visible nor changes to a level while it
// sat beyond level N (a level pushed out by a better one goes stale). When
// the visible window moves outwards (level 1 empties and level N+1 slides
// in), the row shows a level the messages never described. A differing price
// level is classified "unknown-depth" when its price lies strictly beyond the
// previous row's N-th level on a full side (a side showing fewer than N
// levels is complete: nothing lies beyond it). After each row the differing
// levels are set from the row, so the reconstruction always agrees with the
// previous row inside its window and every difference is attributable to
// the one message in between; "unknown-depth" rows are thus exactly the rows
// where outside information entered, and no error can cascade.
//
// Other classes, by the message of a row whose difference lies inside the
// previous window: "halt" (type 7; LOBSTER documents that halt rows
// duplicate the preceding state, and they do), "hidden" (type 5: executions
// of hidden orders, which LOBSTER documents as not changing the visible
// book), and "other", which must be zero: it would be a message applied to a
// fully known part of the book giving a different result from LOBSTER's.
//
// The test also replays each file without taking anything from the rows
// ("free-running") and logs how many rows then match: very few, since a
// level that slides in with an unknown size stays wrong for as long as it
// exists. Reconstruction from messages alone needs the orderbook file (or
// full-depth data) to learn what lies beyond level N.

type diff struct {
	side       book.Side
	price      int64
	ours, want int64
	unknown    bool // beyond the previous row's window
}

func (d diff) String() string {
	s := fmt.Sprintf("%v %s: ours %d lobster %d", d.side, fmtPrice(d.price), d.ours, d.want)
	if d.unknown {
		s += " (beyond previous window)"
	}
	return s
}

func fmtPrice(p int64) string { return fmt.Sprintf("%.4f", float64(p)/book.PriceScale) }

type conformance struct {
	rows, exact                       int // rows compared (2..n) and rows matching exactly
	unknownDepth, hidden, halt, other int
	unknownLevels                     int // levels set from the file in unknown-depth rows
	unknownAbsent                     int // ... of which the book held nothing at that price
	unmatched                         int // book.Book.Unmatched at the end
	messages                          int
	examples                          map[string][]string
}

// better reports whether price a is strictly better than b on side s.
func better(s book.Side, a, b int64) bool {
	if s == book.Bid {
		return a > b
	}
	return a < b
}

// compareSide appends to dst the levels of side s where b differs from the
// row's levels obs, inside the row's window (every price at least as good
// as obs's last level when obs holds n levels; the whole side otherwise).
// prev is the previous row's side, which decides whether a difference lies
// beyond what was known.
func compareSide(dst []diff, b *book.Book, s book.Side, obs, prev []book.Level, n int) []diff {
	full := len(obs) == n
	prevFull := len(prev) == n
	inWindow := func(p int64) bool { return !full || !better(s, obs[n-1].Price, p) }
	beyond := func(p int64) bool { return prevFull && better(s, prev[n-1].Price, p) }
	i, j := 0, 0
	for {
		ol, ok := b.Level(s, i)
		if ok && !inWindow(ol.Price) {
			ok = false
		}
		if !ok && j == len(obs) {
			return dst
		}
		switch {
		case ok && j < len(obs) && ol.Price == obs[j].Price:
			if ol.Size != obs[j].Size {
				dst = append(dst, diff{s, ol.Price, ol.Size, obs[j].Size, beyond(ol.Price)})
			}
			i++
			j++
		case ok && (j == len(obs) || better(s, ol.Price, obs[j].Price)):
			dst = append(dst, diff{s, ol.Price, ol.Size, 0, beyond(ol.Price)})
			i++
		default:
			dst = append(dst, diff{s, obs[j].Price, 0, obs[j].Size, beyond(obs[j].Price)})
			j++
		}
	}
}

// runConformance replays the archive at path. With resync false the
// differing levels are left alone: the book runs free on the messages alone,
// and only rows and exact are meaningful.
func runConformance(t *testing.T, path string, resync bool, convert func(*Message, *book.Event) bool) conformance {
	z, err := OpenZip(path)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	n := z.Levels
	c := conformance{examples: map[string][]string{}}

	var m Message
	var row, prev Row
	if err := z.Messages.Read(&m); err != nil {
		t.Fatal(err)
	}
	if err := z.Orderbook.Read(&prev); err != nil {
		t.Fatal(err)
	}
	c.messages = 1
	b := book.New()
	for _, l := range prev.Asks {
		b.SetLevel(book.Ask, l.Price, l.Size, 0)
	}
	for _, l := range prev.Bids {
		b.SetLevel(book.Bid, l.Price, l.Size, 0)
	}

	var ev book.Event
	var diffs []diff
	for k := 2; ; k++ {
		err1 := z.Messages.Read(&m)
		err2 := z.Orderbook.Read(&row)
		if err1 == io.EOF && err2 == io.EOF {
			break
		}
		if err1 != nil || err2 != nil {
			t.Fatalf("row %d: message %v, orderbook %v", k, err1, err2)
		}
		c.messages++
		if convert(&m, &ev) {
			if err := b.Apply(&ev); err != nil {
				t.Fatalf("row %d: %+v: %v", k, m, err)
			}
		}
		c.rows++
		diffs = compareSide(diffs[:0], b, book.Ask, row.Asks, prev.Asks, n)
		diffs = compareSide(diffs, b, book.Bid, row.Bids, prev.Bids, n)
		if len(diffs) == 0 {
			c.exact++
		} else {
			allUnknown := true
			for _, d := range diffs {
				allUnknown = allUnknown && d.unknown
			}
			class := "other"
			switch {
			case allUnknown:
				class = "unknown-depth"
				c.unknownDepth++
				c.unknownLevels += len(diffs)
				for _, d := range diffs {
					if d.ours == 0 {
						c.unknownAbsent++
					}
				}
			case m.Type == Halt:
				class = "halt"
				c.halt++
			case m.Type == ExecuteHidden:
				class = "hidden"
				c.hidden++
			default:
				c.other++
			}
			if len(c.examples[class]) < 3 {
				ds := make([]string, len(diffs))
				for i, d := range diffs {
					ds[i] = d.String()
				}
				c.examples[class] = append(c.examples[class], fmt.Sprintf("row %d: message %v id=%d size=%d price=%s dir=%d: %s",
					k, m.Type, m.OrderID, m.Size, fmtPrice(m.Price), m.Direction, strings.Join(ds, "; ")))
			}
			// Take the differing levels from the file so that the next row
			// is judged on its own message only.
			for _, d := range diffs {
				if resync {
					b.SetLevel(d.side, d.price, d.want, 0)
				}
			}
		}
		row, prev = prev, row
	}
	c.unmatched = b.Unmatched
	return c
}

func TestConformance(t *testing.T) {
	for _, path := range sampleZips(t) {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "LOBSTER_SampleFile_"), ".zip")
		t.Run(name, func(t *testing.T) {
			c := runConformance(t, path, true, ToEvent)
			free := runConformance(t, path, false, ToEvent)
			t.Logf("%s: rows compared %d, exact %d (%.3f%%), unknown-depth %d (%d levels, %d absent from the book), hidden %d, halt %d, other %d; unmatched cancels/fills %d; free-running (no resync) exact %d (%.3f%%)",
				name, c.rows, c.exact, 100*float64(c.exact)/float64(c.rows),
				c.unknownDepth, c.unknownLevels, c.unknownAbsent, c.hidden, c.halt, c.other, c.unmatched,
				free.exact, 100*float64(free.exact)/float64(free.rows))
			for class, ex := range c.examples {
				for _, s := range ex {
					t.Logf("  %s: %s", class, s)
				}
			}
			if c.rows+1 != c.messages {
				t.Errorf("compared %d rows of %d messages", c.rows, c.messages)
			}
			if c.other != 0 || c.hidden != 0 || c.halt != 0 {
				t.Errorf("%d rows differ inside the known window (other %d, hidden %d, halt %d)",
					c.other+c.hidden+c.halt, c.other, c.hidden, c.halt)
			}
			if c.exact+c.unknownDepth != c.rows {
				t.Errorf("rows do not add up")
			}
		})
	}
}

// TestConformanceDetectsErrors checks that the classification has teeth: a
// converter that ignores visible executions is caught as "other".
func TestConformanceDetectsErrors(t *testing.T) {
	path := filepath.Join(sampleDir(t), "LOBSTER_SampleFile_GOOG_2012-06-21_1.zip")
	broken := func(m *Message, e *book.Event) bool {
		return m.Type != ExecuteVisible && ToEvent(m, e)
	}
	c := runConformance(t, path, true, broken)
	if c.other == 0 {
		t.Fatalf("broken converter not detected: %+v", c)
	}
	t.Logf("broken converter: %d of %d rows classified other", c.other, c.rows)
}
