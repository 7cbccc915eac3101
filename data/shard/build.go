package shard

import (
	"fmt"
	"hash/fnv"
	"math/bits"

	"github.com/gallop-dev/gallop/batch"
	"github.com/gallop-dev/gallop/data/book"
	"github.com/gallop-dev/gallop/data/dataset"
	"github.com/gallop-dev/gallop/data/feature"
)

// builder wraps dataset.Builder for one instrument and keeps the mid of
// every row, which the labels of several horizons and the mid column need.
type builder struct {
	bd     *dataset.Builder
	mids   []float64
	tick   float64
	inst   Instrument
	events int64
}

func newBuilder(in Instrument, sizeHint int) *builder {
	return &builder{
		bd:   dataset.NewBuilder(in.ID, in.Symbol, in.Tick, sizeHint),
		mids: make([]float64, 0, sizeHint),
		tick: float64(in.Tick),
		inst: in,
	}
}

// add applies e and appends a feature row when both sides of the book
// exist (dataset.Builder's rule).
func (b *builder) add(e *book.Event) error {
	b.events++
	if err := b.bd.Add(e); err != nil {
		return err
	}
	// The Extractor appends a row exactly when both sides have a level (a
	// book level never has size <= 0), and its mid is this expression.
	bk := b.bd.Book()
	a, okA := bk.Best(book.Ask)
	bb, okB := bk.Best(book.Bid)
	if okA && okB {
		b.mids = append(b.mids, (float64(a.Price)+float64(bb.Price))/2/b.tick)
	}
	return nil
}

// apply changes the book without a feature row (the inside of a snapshot,
// the non-final events of a multi-event message, LOBSTER resyncs).
func (b *builder) apply(e *book.Event) error {
	b.events++
	return b.bd.Book().Apply(e)
}

// built is a finished instrument series with its mids and labels.
type built struct {
	inst   Instrument
	s      batch.Series
	mids   []float64
	labels [][]int8 // per Options.Horizons
	events int64
}

// finish labels the series for every horizon.
func (b *builder) finish(horizons []int, theta float64) (*built, error) {
	s := b.bd.Finish(dataset.Labeling{Horizon: horizons[0], Theta: theta})
	if len(b.mids) != s.Rows() || len(s.Features) != s.Rows()*feature.Count {
		return nil, fmt.Errorf("instrument %d: %d mids for %d rows", b.inst.ID, len(b.mids), s.Rows())
	}
	out := &built{inst: b.inst, s: s, mids: b.mids, events: b.events}
	out.labels = make([][]int8, len(horizons))
	out.labels[0] = toInt8(s.Labels, nil)
	var scratch []int32
	for i, h := range horizons[1:] {
		if cap(scratch) < len(b.mids) {
			scratch = make([]int32, len(b.mids))
		}
		scratch = scratch[:len(b.mids)]
		n := feature.Labels(b.mids, h, theta, scratch)
		for j := n; j < len(scratch); j++ {
			scratch[j] = -1
		}
		out.labels[i+1] = toInt8(scratch, nil)
	}
	return out, nil
}

func toInt8(v []int32, dst []int8) []int8 {
	dst = append(dst[:0], make([]int8, len(v))...)
	for i, x := range v {
		dst[i] = int8(x)
	}
	return dst
}

// symbolID derives a stable instrument id for sources without one
// (LOBSTER, exchange captures): FNV-1a of "<venue>:<symbol>".
func symbolID(venue, symbol string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(venue + ":" + symbol))
	return h.Sum32()
}

// gcdTick infers a tick size as the greatest common divisor of the
// differences between observed prices. It is the coarsest price grid every
// observed price lies on: the true tick when enough distinct prices were
// seen, a multiple of it when all observed prices happen to be an even
// number of ticks apart. Pass instrument definitions when available.
type gcdTick struct {
	first int64
	g     uint64
	seen  bool
}

func (t *gcdTick) add(p int64) {
	if !t.seen {
		t.first, t.seen = p, true
		return
	}
	d := p - t.first
	if d < 0 {
		d = -d
	}
	t.g = gcd(t.g, uint64(d))
}

func (t *gcdTick) tick() int64 { return int64(t.g) }

func gcd(a, b uint64) uint64 {
	if a == 0 {
		return b
	}
	if b == 0 {
		return a
	}
	// Binary GCD.
	shift := bits.TrailingZeros64(a | b)
	a >>= bits.TrailingZeros64(a)
	for b != 0 {
		b >>= bits.TrailingZeros64(b)
		if a > b {
			a, b = b, a
		}
		b -= a
	}
	return a << shift
}

// decimalTick infers a tick from the decimals of observed prices: the
// finest power of ten (in book units, 1e-9) that some price needs. Exchange
// feeds send prices as decimal strings padded to a fixed number of places
// (Binance: 8), so the string's decimals say nothing; the values do.
type decimalTick struct {
	minPow int // smallest power of ten dividing all prices; -1 before any
}

func newDecimalTick() decimalTick { return decimalTick{minPow: -1} }

var pow10 = [...]int64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9}

func (t *decimalTick) add(p int64) {
	if p == 0 {
		return
	}
	k := 0
	for k < 9 && p%pow10[k+1] == 0 {
		k++
	}
	if t.minPow < 0 || k < t.minPow {
		t.minPow = k
	}
}

func (t *decimalTick) tick() int64 {
	if t.minPow < 0 {
		return 0
	}
	return pow10[t.minPow]
}
