// Package batch turns per-event feature series into training batches:
// windowed samples, time-ordered splits, deterministic resumable samplers
// and a prefetching loader that reuses its buffers.
package batch

import (
	"fmt"
	"math"
)

// Series is one instrument's events: a row-major feature matrix with F
// columns and one label per row (-1 where a row has no label).
type Series struct {
	Instrument uint32
	Symbol     string
	Features   []float32 // len = Rows()*F
	Labels     []int32
	TsNs       []int64
}

// Rows is the number of events in the series.
func (s *Series) Rows() int { return len(s.Labels) }

// Ref names one sample: the window of W rows of series Series ending at Row.
type Ref struct {
	Series uint32
	Row    uint32
}

// Windows is a set of windowed samples over several series.
type Windows struct {
	Series []Series
	F, W   int
	Refs   []Ref
}

// SampleSize is the length of one flattened sample, W*F.
func (w *Windows) SampleSize() int { return w.W * w.F }

// Gather writes the samples named by refs into x (len(refs)*W*F floats,
// oldest row first within each sample) and their labels into y.
func (w *Windows) Gather(refs []Ref, x []float32, y []int32) {
	n := w.SampleSize()
	for i, r := range refs {
		s := &w.Series[r.Series]
		end := (int(r.Row) + 1) * w.F
		copy(x[i*n:(i+1)*n], s.Features[end-n:end])
		y[i] = s.Labels[r.Row]
	}
}

// Split holds the train, validation and (optionally) test samples of a
// time-ordered split.
type Split struct {
	Train, Val, Test []Ref
}

// TimeSplit splits every series at the same fraction of its rows: samples
// before the cut train, samples after validate. Training samples whose
// label horizon (the next horizon rows) reaches past the cut are dropped
// (purged), and embargo more rows after the cut are skipped, so no label on
// one side depends on prices the other side sees. Rows without a label and
// rows with fewer than W-1 predecessors are never sampled.
func TimeSplit(series []Series, w, horizon, embargo int, trainFrac float64) (Split, error) {
	return TimeSplit3(series, w, horizon, embargo, trainFrac, 0)
}

// TimeSplit3 is TimeSplit with a test block: the first trainFrac of each
// series trains, the next valFrac validates (model selection) and the rest
// tests; both cuts are purged and embargoed. valFrac 0 is TimeSplit.
func TimeSplit3(series []Series, w, horizon, embargo int, trainFrac, valFrac float64) (Split, error) {
	if trainFrac <= 0 || trainFrac >= 1 || valFrac < 0 || trainFrac+valFrac >= 1 {
		return Split{}, fmt.Errorf("batch: train fraction %g, validation %g: want 0 < train, 0 <= val, train+val < 1", trainFrac, valFrac)
	}
	var sp Split
	for si := range series {
		s := &series[si]
		n := s.Rows()
		if n > math.MaxUint32 {
			return Split{}, fmt.Errorf("batch: series %s has %d rows, more than 2^32", s.Symbol, n)
		}
		cut := int(float64(n) * trainFrac)
		cut2 := n + horizon + embargo // no test block
		if valFrac > 0 {
			cut2 = int(float64(n) * (trainFrac + valFrac))
		}
		for r := w - 1; r < n; r++ {
			if s.Labels[r] < 0 {
				continue
			}
			ref := Ref{Series: uint32(si), Row: uint32(r)}
			switch {
			case r+horizon < cut:
				sp.Train = append(sp.Train, ref)
			case r >= cut+embargo && r+horizon < cut2:
				sp.Val = append(sp.Val, ref)
			case r >= cut2+embargo:
				sp.Test = append(sp.Test, ref)
			}
		}
	}
	if len(sp.Train) == 0 || len(sp.Val) == 0 || (valFrac > 0 && len(sp.Test) == 0) {
		return Split{}, fmt.Errorf("batch: split left %d train, %d validation and %d test samples", len(sp.Train), len(sp.Val), len(sp.Test))
	}
	return sp, nil
}

// Normalizer holds per-feature mean and standard deviation.
type Normalizer struct {
	Mean, Std []float32
	// NonFinite counts NaN/Inf values that were left out of the fit; the
	// samples that hold them still reach the model (where the guard
	// catches them) unless the caller drops them.
	NonFinite int
}

// FitNormalizer computes per-feature mean and standard deviation over the
// rows the given samples end at (each training row once), in float64,
// skipping non-finite values. A feature with zero variance gets std 1.
func FitNormalizer(w *Windows, refs []Ref) Normalizer {
	sum := make([]float64, w.F)
	sq := make([]float64, w.F)
	cnt := make([]float64, w.F)
	nz := Normalizer{Mean: make([]float32, w.F), Std: make([]float32, w.F)}
	for _, r := range refs {
		row := w.Series[r.Series].Features[int(r.Row)*w.F : (int(r.Row)+1)*w.F]
		for j, v := range row {
			f := float64(v)
			if math.IsNaN(f) || math.IsInf(f, 0) {
				nz.NonFinite++
				continue
			}
			sum[j] += f
			sq[j] += f * f
			cnt[j]++
		}
	}
	for j := range sum {
		n := max(cnt[j], 1)
		m := sum[j] / n
		v := sq[j]/n - m*m
		nz.Mean[j] = float32(m)
		nz.Std[j] = 1
		if v > 1e-12 {
			nz.Std[j] = float32(math.Sqrt(v))
		}
	}
	return nz
}

// Flat concatenates every series into one row-major feature matrix
// [rows, F] and one label vector, for keeping a whole dataset resident on
// an accelerator, and returns the offset of each series' first row. A
// sample's global row is Offsets[ref.Series] + ref.Row (see GlobalRows).
func (w *Windows) Flat() (features []float32, labels []int32, offsets []int32, err error) {
	total := 0
	offsets = make([]int32, len(w.Series))
	for i := range w.Series {
		offsets[i] = int32(total)
		total += w.Series[i].Rows()
		if total > math.MaxInt32 {
			return nil, nil, nil, fmt.Errorf("batch: %d rows do not fit int32 row ids", total)
		}
	}
	features = make([]float32, 0, total*w.F)
	labels = make([]int32, 0, total)
	for i := range w.Series {
		features = append(features, w.Series[i].Features...)
		labels = append(labels, w.Series[i].Labels...)
	}
	return features, labels, offsets, nil
}

// GlobalRows writes the global row (see Flat) of each ref into dst.
func GlobalRows(offsets []int32, refs []Ref, dst []int32) {
	for i, r := range refs {
		dst[i] = offsets[r.Series] + int32(r.Row)
	}
}
