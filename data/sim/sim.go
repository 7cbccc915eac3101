// Package sim is gallop's embedded market: a seeded, deterministic simulator of
// order-level limit-order-book event flow for several instruments.
//
// # Model
//
// Each instrument has a book of up to MaxLevels price levels per side made of
// individual orders. Events arrive as a Poisson process (exponential gaps,
// mean Config.MeanGapNs). Each event is one of, in the spirit of Cont, Stoikov
// and Talreja (2010), "A stochastic model for order book dynamics":
//
//   - a limit order at distance i ticks behind the best quote of its side
//     (i = 0 joins the best queue; inside a wide spread it improves it), with
//     rate proportional to LimitDecay^i;
//   - a cancellation of a uniformly chosen resting order;
//   - a market order that fills resting orders at the best opposite price in
//     time priority (FIFO), possibly walking several levels.
//
// Short-horizon signal: a latent order-flow pressure p in [-1, 1] follows
// p ← ρ·p + (1-ρ)·κ·(r - mid)/tick + σ·ε, where r is a slowly drifting
// reference price (a Gaussian random walk) that the mid reverts to. Pressure
// tilts which side market orders hit ((1+p)/2 of them buy), where limit
// orders arrive and which side cancels more. Because p is persistent, the
// visible consequences of p (queue imbalance, order-flow imbalance, trade
// signs) predict the direction of the next mid moves: a model can learn it,
// and a model that cannot see the book cannot.
//
// Every event is emitted as a book.Event (Add, Cancel, Fill) and applied to a
// book.Book, so downstream code consumes exactly what it consumes from real
// feeds. The same Config and seed always produce the same events.
package sim

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/gallop-dev/gallop/data/book"
)

// MaxLevels is how far (in ticks) behind the best quote limit orders arrive.
const MaxLevels = 10

// Instrument describes one simulated instrument.
type Instrument struct {
	ID        uint32  `toml:"id" json:"id"`
	Symbol    string  `toml:"symbol" json:"symbol"`
	Tick      float64 `toml:"tick" json:"tick"`               // tick size in currency units
	Price     float64 `toml:"price" json:"price"`             // starting mid price
	MeanGapNs float64 `toml:"mean_gap_ns" json:"mean_gap_ns"` // mean time between events
}

// Config is the simulator's full parameter set. Zero fields take the
// defaults of DefaultConfig.
type Config struct {
	Seed        uint64       `toml:"seed" json:"seed"`
	Events      int          `toml:"events" json:"events"` // events per instrument
	Instruments []Instrument `toml:"instruments" json:"instruments"`
	StartNs     int64        `toml:"start_ns" json:"start_ns"`

	LimitRate   float64 `toml:"limit_rate" json:"limit_rate"`   // relative rate of limit orders
	CancelRate  float64 `toml:"cancel_rate" json:"cancel_rate"` // relative rate of cancels
	MarketRate  float64 `toml:"market_rate" json:"market_rate"` // relative rate of market orders
	LimitDecay  float64 `toml:"limit_decay" json:"limit_decay"` // rate ratio between consecutive levels
	MeanSize    float64 `toml:"mean_size" json:"mean_size"`     // mean limit order size (geometric)
	MarketSize  float64 `toml:"market_size" json:"market_size"` // mean market order size (geometric)
	Persistence float64 `toml:"persistence" json:"persistence"` // ρ
	Reversion   float64 `toml:"reversion" json:"reversion"`     // κ, per tick of (r - mid)
	Noise       float64 `toml:"noise" json:"noise"`             // σ
	RefVol      float64 `toml:"ref_vol" json:"ref_vol"`         // reference walk, ticks per sqrt(event)
	Tilt        float64 `toml:"tilt" json:"tilt"`               // how strongly p tilts limit/cancel sides
}

// DefaultConfig is the embedded default market: three instruments with
// different ticks, prices and activity.
func DefaultConfig() Config {
	return Config{
		Seed:   1,
		Events: 700_000,
		Instruments: []Instrument{
			{ID: 1, Symbol: "SIMA", Tick: 0.01, Price: 100, MeanGapNs: 400_000},
			{ID: 2, Symbol: "SIMB", Tick: 0.05, Price: 250, MeanGapNs: 900_000},
			{ID: 3, Symbol: "SIMC", Tick: 0.25, Price: 4200, MeanGapNs: 250_000},
		},
		StartNs:     1_700_000_000_000_000_000,
		LimitRate:   0.50,
		CancelRate:  0.40,
		MarketRate:  0.10,
		LimitDecay:  0.75,
		MeanSize:    5,
		MarketSize:  6,
		Persistence: 0.995,
		Reversion:   0.5,
		Noise:       0.03,
		RefVol:      0.02,
		Tilt:        0.6,
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.Events == 0 {
		c.Events = d.Events
	}
	if len(c.Instruments) == 0 {
		c.Instruments = d.Instruments
	}
	if c.StartNs == 0 {
		c.StartNs = d.StartNs
	}
	f := func(p *float64, v float64) {
		if *p == 0 {
			*p = v
		}
	}
	f(&c.LimitRate, d.LimitRate)
	f(&c.CancelRate, d.CancelRate)
	f(&c.MarketRate, d.MarketRate)
	f(&c.LimitDecay, d.LimitDecay)
	f(&c.MeanSize, d.MeanSize)
	f(&c.MarketSize, d.MarketSize)
	f(&c.Persistence, d.Persistence)
	f(&c.Reversion, d.Reversion)
	f(&c.Noise, d.Noise)
	f(&c.RefVol, d.RefVol)
	f(&c.Tilt, d.Tilt)
}

// Validate reports the first parameter that cannot be simulated.
func (c Config) Validate() error {
	c.fill()
	if c.Events < 0 {
		return fmt.Errorf("sim: events = %d, want > 0", c.Events)
	}
	for _, in := range c.Instruments {
		if in.Tick <= 0 || in.Price <= 100*in.Tick || in.MeanGapNs <= 0 {
			return fmt.Errorf("sim: instrument %q: need tick > 0, price > 100 ticks, mean_gap_ns > 0", in.Symbol)
		}
	}
	if c.Persistence <= 0 || c.Persistence >= 1 {
		return fmt.Errorf("sim: persistence = %g, want in (0, 1)", c.Persistence)
	}
	if c.LimitDecay <= 0 || c.LimitDecay >= 1 {
		return fmt.Errorf("sim: limit_decay = %g, want in (0, 1)", c.LimitDecay)
	}
	return nil
}

type restingOrder struct {
	id   uint64
	side book.Side
	tick int64 // price in ticks
	size int64
	pos  int // index in market.live
}

// market is one instrument's simulation state.
type market struct {
	cfg   *Config
	in    Instrument
	r     *rand.Rand
	book  *book.Book
	unit  int64 // book price units per tick
	ts    int64
	p     float64 // latent pressure
	ref   float64 // reference price in ticks
	next  uint64
	live  []*restingOrder
	queue map[int64][]*restingOrder // FIFO per (signed) tick: bids at +tick, asks at -tick-1
	wts   [MaxLevels]float64
	out   []book.Event
}

func qkey(s book.Side, tick int64) int64 {
	if s == book.Bid {
		return tick
	}
	return -tick - 1
}

func newMarket(cfg *Config, in Instrument, seed uint64) *market {
	m := &market{
		out:   make([]book.Event, 0, cfg.Events+cfg.Events/4+8*MaxLevels),
		cfg:   cfg,
		in:    in,
		r:     rand.New(rand.NewPCG(seed, uint64(in.ID)*0x9e3779b97f4a7c15+1)),
		book:  book.New(),
		unit:  int64(math.Round(in.Tick * book.PriceScale)),
		ts:    cfg.StartNs,
		ref:   math.Round(in.Price / in.Tick),
		next:  uint64(in.ID) << 40,
		queue: make(map[int64][]*restingOrder),
	}
	w := 1.0
	for i := range m.wts {
		m.wts[i] = w
		w *= cfg.LimitDecay
	}
	// Seed a symmetric book: a few orders on each of MaxLevels levels.
	mid := int64(m.ref)
	for i := int64(0); i < MaxLevels; i++ {
		for k := 0; k < 3; k++ {
			m.add(book.Bid, mid-1-i, m.size(cfg.MeanSize))
			m.add(book.Ask, mid+1+i, m.size(cfg.MeanSize))
		}
	}
	return m
}

func (m *market) size(mean float64) int64 {
	// Geometric on {1, 2, ...} with the given mean.
	q := 1 / mean
	return 1 + int64(math.Floor(math.Log(1-m.r.Float64())/math.Log(1-q)))
}

func (m *market) emit(e book.Event) {
	e.TsNs = m.ts
	e.Instrument = m.in.ID
	if err := m.book.Apply(&e); err != nil {
		// The simulator only emits events about orders it tracks.
		panic(fmt.Sprintf("sim: inconsistent book: %v", err))
	}
	m.out = append(m.out, e)
}

func (m *market) add(s book.Side, tick, size int64) {
	m.next++
	o := &restingOrder{id: m.next, side: s, tick: tick, size: size, pos: len(m.live)}
	m.live = append(m.live, o)
	k := qkey(s, tick)
	m.queue[k] = append(m.queue[k], o)
	m.emit(book.Event{OrderID: o.id, Action: book.Add, Side: s, Price: tick * m.unit, Size: size})
}

// remove drops o from the live set and its queue.
func (m *market) remove(o *restingOrder) {
	last := m.live[len(m.live)-1]
	m.live[o.pos] = last
	last.pos = o.pos
	m.live = m.live[:len(m.live)-1]
	k := qkey(o.side, o.tick)
	q := m.queue[k]
	for i, x := range q {
		if x == o {
			q = append(q[:i], q[i+1:]...)
			break
		}
	}
	if len(q) == 0 {
		delete(m.queue, k)
	} else {
		m.queue[k] = q
	}
}

func (m *market) bestTick(s book.Side) (int64, bool) {
	l, ok := m.book.Best(s)
	return l.Price / m.unit, ok
}

func (m *market) midTicks() float64 {
	b, ok1 := m.bestTick(book.Bid)
	a, ok2 := m.bestTick(book.Ask)
	switch {
	case ok1 && ok2:
		return float64(a+b) / 2
	case ok1:
		return float64(b) + 0.5
	case ok2:
		return float64(a) - 0.5
	}
	return m.ref
}

// step produces the next event(s): a market order emits one Fill per resting
// order it touches.
func (m *market) step() {
	c := m.cfg
	m.ts += int64(m.r.ExpFloat64()*m.in.MeanGapNs) + 1
	mid := m.midTicks()
	m.ref += c.RefVol * m.r.NormFloat64()
	m.p = c.Persistence*m.p + (1-c.Persistence)*c.Reversion*(m.ref-mid) + c.Noise*m.r.NormFloat64()
	m.p = math.Max(-0.95, math.Min(0.95, m.p))

	u := m.r.Float64() * (c.LimitRate + c.CancelRate + c.MarketRate)
	switch {
	case u < c.LimitRate || len(m.live) < 4:
		m.limit()
	case u < c.LimitRate+c.CancelRate:
		m.cancel()
	default:
		m.market()
	}
}

func (m *market) limit() {
	// Buying pressure brings more bids, selling pressure more asks.
	s := book.Ask
	if m.r.Float64() < (1+m.cfg.Tilt*m.p)/2 {
		s = book.Bid
	}
	tot := 0.0
	for _, w := range m.wts {
		tot += w
	}
	u := m.r.Float64() * tot
	lvl := 0
	for ; lvl < MaxLevels-1 && u > m.wts[lvl]; lvl++ {
		u -= m.wts[lvl]
	}
	bb, okb := m.bestTick(book.Bid)
	ba, oka := m.bestTick(book.Ask)
	mid := int64(math.Round(m.midTicks()))
	var tick int64
	if s == book.Bid {
		if !okb {
			bb = mid - 1
		}
		tick = bb - int64(lvl)
		if oka && ba-bb > 1 && m.r.Float64() < 0.5 {
			tick = bb + 1 // improve a wide spread
		}
		if oka && tick >= ba {
			tick = ba - 1
		}
	} else {
		if !oka {
			ba = mid + 1
		}
		tick = ba + int64(lvl)
		if okb && ba-bb > 1 && m.r.Float64() < 0.5 {
			tick = ba - 1
		}
		if okb && tick <= bb {
			tick = bb + 1
		}
	}
	m.add(s, tick, m.size(m.cfg.MeanSize))
}

func (m *market) cancel() {
	// Pressure up thins the asks; choose the side first, then an order.
	want := book.Bid
	if m.r.Float64() < (1+m.cfg.Tilt*m.p)/2 {
		want = book.Ask
	}
	var o *restingOrder
	for try := 0; try < 8; try++ {
		c := m.live[m.r.IntN(len(m.live))]
		if c.side == want {
			o = c
			break
		}
	}
	if o == nil {
		return
	}
	// Keep at least one order on each side so the mid is always defined.
	if m.book.Depth(o.side) == 1 {
		if l, _ := m.book.Best(o.side); l.Count == 1 {
			return
		}
	}
	m.remove(o)
	m.emit(book.Event{OrderID: o.id, Action: book.Cancel, Side: o.side, Price: o.tick * m.unit, Size: o.size})
}

func (m *market) market() {
	buy := m.r.Float64() < (1+m.p)/2
	hit := book.Bid
	if buy {
		hit = book.Ask
	}
	need := m.size(m.cfg.MarketSize)
	for need > 0 {
		t, ok := m.bestTick(hit)
		if !ok {
			return
		}
		// Never empty a side completely.
		if l, _ := m.book.Best(hit); m.book.Depth(hit) == 1 && l.Size <= need {
			need = l.Size - 1
			if need <= 0 {
				return
			}
		}
		q := m.queue[qkey(hit, t)]
		o := q[0]
		n := min(need, o.size)
		need -= n
		m.emit(book.Event{OrderID: o.id, Action: book.Fill, Side: hit, Price: o.tick * m.unit, Size: n})
		o.size -= n
		if o.size == 0 {
			m.remove(o)
		}
	}
}

// Run simulates cfg and calls fn with each instrument's events in time
// order, one instrument after another. The slice passed to fn is reused
// between calls.
func Run(cfg Config, fn func(in Instrument, events []book.Event) error) error {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return err
	}
	for i, in := range cfg.Instruments {
		// The seeding adds are part of the stream: a consumer replaying
		// the events rebuilds the same book from empty.
		m := newMarket(&cfg, in, cfg.Seed+uint64(i))
		for len(m.out) < cfg.Events {
			m.step()
		}
		if err := fn(in, m.out); err != nil {
			return err
		}
	}
	return nil
}

// Resolved returns cfg with defaults filled in, as Run uses it.
func Resolved(cfg Config) Config {
	cfg.fill()
	return cfg
}
