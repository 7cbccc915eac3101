// Package dataset builds labelled feature series from order-level events:
// events → book → features → FI-2010 labels, one series per instrument.
package dataset

import (
	"fmt"
	"math"

	"github.com/gallop-dev/gallop/batch"
	"github.com/gallop-dev/gallop/data/book"
	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/data/sim"
)

// Labeling chooses the FI-2010 label: horizon k events and threshold θ in
// ticks (see package feature).
type Labeling struct {
	Horizon int     `toml:"horizon" json:"horizon"`
	Theta   float64 `toml:"theta" json:"theta"`
}

// Builder accumulates one instrument's events into a labelled series.
type Builder struct {
	b    *book.Book
	x    *feature.Extractor
	row  []float32
	s    batch.Series
	mids []float64
}

// NewBuilder starts a series for an instrument whose tick is tick (in book
// price units).
func NewBuilder(instrument uint32, symbol string, tick int64, sizeHint int) *Builder {
	return &Builder{
		b:    book.New(),
		x:    feature.NewExtractor(tick),
		row:  make([]float32, feature.Count),
		s:    batch.Series{Instrument: instrument, Symbol: symbol, Features: make([]float32, 0, sizeHint*feature.Count), TsNs: make([]int64, 0, sizeHint)},
		mids: make([]float64, 0, sizeHint),
	}
}

// Add applies one event and, when both sides of the book exist, appends a
// feature row.
func (bd *Builder) Add(e *book.Event) error {
	if err := bd.b.Apply(e); err != nil {
		return err
	}
	mid, ok := bd.x.Update(bd.b, e, bd.row)
	if !ok {
		return nil
	}
	bd.s.Features = append(bd.s.Features, bd.row...)
	bd.s.TsNs = append(bd.s.TsNs, e.TsNs)
	bd.mids = append(bd.mids, mid)
	return nil
}

// Book returns the book being rebuilt.
func (bd *Builder) Book() *book.Book { return bd.b }

// Finish labels the rows and returns the series. Rows in the last Horizon
// positions get label -1.
func (bd *Builder) Finish(l Labeling) batch.Series {
	bd.s.Labels = make([]int32, len(bd.mids))
	n := feature.Labels(bd.mids, l.Horizon, l.Theta, bd.s.Labels)
	for i := n; i < len(bd.s.Labels); i++ {
		bd.s.Labels[i] = -1
	}
	return bd.s
}

// Simulated runs the embedded simulator and builds one series per
// instrument.
func Simulated(cfg sim.Config, l Labeling) ([]batch.Series, error) {
	if l.Horizon <= 0 {
		return nil, fmt.Errorf("dataset: horizon %d, want > 0", l.Horizon)
	}
	var out []batch.Series
	err := sim.Run(cfg, func(in sim.Instrument, evs []book.Event) error {
		bd := NewBuilder(in.ID, in.Symbol, int64(math.Round(in.Tick*book.PriceScale)), len(evs))
		for i := range evs {
			if err := bd.Add(&evs[i]); err != nil {
				return fmt.Errorf("dataset: %s event %d: %w", in.Symbol, i, err)
			}
		}
		out = append(out, bd.Finish(l))
		return nil
	})
	return out, err
}

// ClassCounts counts the labels of the samples refs name.
func ClassCounts(series []batch.Series, refs []batch.Ref, classes int) []int64 {
	c := make([]int64, classes)
	for _, r := range refs {
		c[series[r.Series].Labels[r.Row]]++
	}
	return c
}
