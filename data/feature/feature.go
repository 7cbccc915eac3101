// Package feature turns a reconstructed order book into per-event feature
// vectors and mid-price direction labels.
//
// # Features
//
// After every event the Extractor writes len(Names) float32 values. With
// p = price, q = size, a/b = ask/bid, i = level (0 = best), mid = (a0+b0)/2,
// tick = the instrument's tick size, all prices in ticks:
//
//	spread      a0 - b0
//	dmid        mid - mid(previous event)
//	imb1        (qb0 - qa0) / (qb0 + qa0)
//	imb5        (Σ_{i<5} qb_i - Σ_{i<5} qa_i) / Σ_{i<5} (qb_i + qa_i)
//	imb10       the same over 10 levels
//	micro       microprice - mid, microprice = (a0·qb0 + b0·qa0)/(qb0 + qa0)
//	ofi         slog(e_n), e_n the order-flow imbalance of Cont, Kukanov and
//	            Stoikov (2014): 1{b0≥b0'}·qb0 - 1{b0≤b0'}·qb0' - 1{a0≤a0'}·qa0 + 1{a0≥a0'}·qa0'
//	            (primes: before the event); slog(x) = sign(x)·log(1+|x|)
//	ofi_ewma    slog of the exponentially weighted OFI, y ← 0.9·y + e_n
//	trade_sign  +1 buyer-initiated trade, -1 seller-initiated, 0 no trade
//	trade_vol   log(1 + traded size)
//	dt          log(1 + µs since the previous event)
//	ask_d{i}    a_i - mid, i = 0..9 (a missing level counts as one tick beyond the last)
//	bid_d{i}    mid - b_i
//	ask_q{i}    log(1 + qa_i)
//	bid_q{i}    log(1 + qb_i)
//
// # Labels
//
// Label follows the FI-2010 convention (Ntakaris et al. 2018): the mean of the
// next k mid prices m+ = (1/k)·Σ_{j=1..k} mid(t+j) is compared with mid(t);
// the label is Up if (m+ - mid)/tick > θ, Down if it is < -θ, Flat otherwise.
// Dividing by the tick (not the price) keeps θ comparable across
// instruments.
package feature

import (
	"fmt"
	"math"

	"github.com/gallop-dev/gallop/data/book"
)

// Levels is the book depth the features describe.
const Levels = 10

// Names lists the features in the order Extractor writes them.
var Names = func() []string {
	n := []string{"spread", "dmid", "imb1", "imb5", "imb10", "micro", "ofi", "ofi_ewma", "trade_sign", "trade_vol", "dt"}
	for _, p := range []string{"ask_d", "bid_d", "ask_q", "bid_q"} {
		for i := 0; i < Levels; i++ {
			n = append(n, fmt.Sprintf("%s%d", p, i))
		}
	}
	return n
}()

// Count is len(Names).
var Count = len(Names)

// Extractor computes features event by event for one instrument.
type Extractor struct {
	tick             float64 // book price units per tick
	asks, bids       [Levels]book.Level
	prevA, prevB     book.Level
	prevMid          float64
	ofiEWMA          float64
	lastTs           int64
	started, haveTop bool
}

// NewExtractor returns an Extractor for an instrument with the given tick
// size in book price units (book.PriceScale per 1.0).
func NewExtractor(tick int64) *Extractor {
	return &Extractor{tick: float64(tick)}
}

// log1pTable holds float32(log(1+n)) for small integer sizes, which are
// most book sizes: the table gives the same values as the formula, faster.
var log1pTable = func() *[1 << 14]float32 {
	var t [1 << 14]float32
	for i := range t {
		t[i] = float32(math.Log1p(float64(i)))
	}
	return &t
}()

// log1pSize is float32(log(1+n)) for a non-negative size n.
func log1pSize(n int64) float32 {
	if uint64(n) < uint64(len(log1pTable)) {
		return log1pTable[n]
	}
	return float32(math.Log1p(float64(n)))
}

func slog1p(x float64) float64 {
	if x < 0 {
		return -math.Log1p(-x)
	}
	return math.Log1p(x)
}

// Mid returns the current mid in ticks and whether both sides exist.
func (x *Extractor) mid() (float64, bool) {
	if x.asks[0].Size == 0 || x.bids[0].Size == 0 {
		return 0, false
	}
	return (float64(x.asks[0].Price) + float64(x.bids[0].Price)) / 2 / x.tick, true
}

// Update reads b (after e was applied to it) and writes the feature vector
// into dst (len(dst) >= Count). It returns the mid in ticks and false when
// one side of the book is empty, in which case dst is not meaningful.
func (x *Extractor) Update(b *book.Book, e *book.Event, dst []float32) (float64, bool) {
	_ = dst[Count-1]
	na := b.Levels(book.Ask, x.asks[:])
	nb := b.Levels(book.Bid, x.bids[:])
	clear(x.asks[na:])
	clear(x.bids[nb:])
	mid, ok := x.mid()
	if !ok {
		x.haveTop = false
		return 0, false
	}
	a0, b0 := x.asks[0], x.bids[0]
	t := x.tick
	spread := float64(a0.Price-b0.Price) / t
	dmid := 0.0
	if x.started {
		dmid = mid - x.prevMid
	}
	var ofi float64
	if x.haveTop {
		pa, pb := x.prevA, x.prevB
		if b0.Price >= pb.Price {
			ofi += float64(b0.Size)
		}
		if b0.Price <= pb.Price {
			ofi -= float64(pb.Size)
		}
		if a0.Price <= pa.Price {
			ofi -= float64(a0.Size)
		}
		if a0.Price >= pa.Price {
			ofi += float64(pa.Size)
		}
	}
	x.ofiEWMA = 0.9*x.ofiEWMA + ofi
	imb := func(n int) float64 {
		var sb, sa float64
		for i := 0; i < n; i++ {
			sb += float64(x.bids[i].Size)
			sa += float64(x.asks[i].Size)
		}
		return (sb - sa) / (sb + sa)
	}
	qa, qb := float64(a0.Size), float64(b0.Size)
	micro := (float64(a0.Price)*qb+float64(b0.Price)*qa)/(qa+qb)/t - mid
	var sign, vol float64
	switch e.Action {
	case book.Fill:
		sign = 1 // a resting ask was hit: buyer-initiated
		if e.Side == book.Bid {
			sign = -1
		}
		vol = float64(e.Size)
	case book.Trade:
		switch e.Side {
		case book.Bid:
			sign = 1
		case book.Ask:
			sign = -1
		}
		vol = float64(e.Size)
	}
	dt := 0.0
	if x.started {
		dt = math.Log1p(float64(e.TsNs-x.lastTs) / 1e3)
	}
	dst[0] = float32(spread)
	dst[1] = float32(dmid)
	dst[2] = float32(imb(1))
	dst[3] = float32(imb(5))
	dst[4] = float32(imb(10))
	dst[5] = float32(micro)
	if a := int64(ofi); float64(a) == ofi && a >= 0 {
		dst[6] = log1pSize(a) // integral sizes: the table, same values
	} else if float64(a) == ofi {
		dst[6] = -log1pSize(-a)
	} else {
		dst[6] = float32(slog1p(ofi))
	}
	dst[7] = float32(slog1p(x.ofiEWMA))
	dst[8] = float32(sign)
	dst[9] = log1pSize(int64(vol))
	dst[10] = float32(dt)
	const o = 11
	lastA, lastB := mid, mid
	for i := 0; i < Levels; i++ {
		var da, db float64
		if i < na {
			da = float64(x.asks[i].Price)/t - mid
			lastA = da
		} else {
			lastA++
			da = lastA
		}
		if i < nb {
			db = mid - float64(x.bids[i].Price)/t
			lastB = db
		} else {
			lastB++
			db = lastB
		}
		dst[o+i] = float32(da)
		dst[o+Levels+i] = float32(db)
		dst[o+2*Levels+i] = log1pSize(x.asks[i].Size)
		dst[o+3*Levels+i] = log1pSize(x.bids[i].Size)
	}
	x.prevA, x.prevB, x.prevMid, x.lastTs = a0, b0, mid, e.TsNs
	x.started, x.haveTop = true, true
	return mid, true
}

// Label classes in FI-2010 order.
const (
	Down = 0
	Flat = 1
	Up   = 2
)

// ClassNames names the label classes by index.
var ClassNames = []string{"down", "flat", "up"}

// Labels writes the FI-2010 label of every position t of mids (mid prices
// in ticks) for horizon k and threshold theta (in ticks) into dst, and
// returns how many leading positions have a label: the last k have no
// future and are not written.
func Labels(mids []float64, k int, theta float64, dst []int32) int {
	n := len(mids) - k
	if n <= 0 {
		return 0
	}
	var sum float64
	for j := 1; j <= k; j++ {
		sum += mids[j]
	}
	for t := 0; t < n; t++ {
		d := sum/float64(k) - mids[t]
		switch {
		case d > theta:
			dst[t] = Up
		case d < -theta:
			dst[t] = Down
		default:
			dst[t] = Flat
		}
		// Slide the window [t+1, t+k] to [t+2, t+k+1].
		if t+k+1 < len(mids) {
			sum += mids[t+k+1] - mids[t+1]
		}
	}
	return n
}
