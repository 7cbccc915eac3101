package batch

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"
)

// Seq names one variable-length sample: rows [Start, End) of series Series
// (half-open, oldest row first). A sequence carries a label at every row
// whose series label is not -1.
type Seq struct {
	Series     uint32
	Start, End uint32
}

// Len is the number of rows in the sequence.
func (q Seq) Len() int { return int(q.End) - int(q.Start) }

// FixedWindows returns the windows of w rows that end every stride rows of
// each series, the first ending at row w-1, as Refs (the sample type of
// Windows and TimeSplit, which use stride 1). Windows ending at a row
// without a label are skipped.
func FixedWindows(series []Series, w, stride int) ([]Ref, error) {
	if w < 1 || stride < 1 {
		return nil, fmt.Errorf("batch: fixed windows of %d rows, stride %d", w, stride)
	}
	var refs []Ref
	for si := range series {
		s := &series[si]
		if err := checkSeries(s, si, false); err != nil {
			return nil, err
		}
		for r := w - 1; r < s.Rows(); r += stride {
			if s.Labels[r] >= 0 {
				refs = append(refs, Ref{Series: uint32(si), Row: uint32(r)})
			}
		}
	}
	return refs, nil
}

// RefSeqs returns the windows of w rows named by refs as sequences:
// Ref{s, r} becomes Seq{s, r-w+1, r+1}. Fed to the sequence layouts, such a
// sequence carries a label at each of its rows, not only at the last.
// Refs must end at row w-1 or later.
func RefSeqs(refs []Ref, w int) []Seq {
	out := make([]Seq, len(refs))
	for i, r := range refs {
		out[i] = Seq{Series: r.Series, Start: r.Row + 1 - uint32(w), End: r.Row + 1}
	}
	return out
}

// SeqByTime cuts every series into sequences at the boundaries of time
// buckets of TsNs: rows whose TsNs fall in the same interval
// [k·bucket, (k+1)·bucket) of Unix time form one run (so one-minute buckets
// are calendar minutes). Runs are then cut by cutRun: a run longer than
// maxLen is split into ⌈n/maxLen⌉ pieces of near-equal length (they differ
// by at most one row), pieces shorter than minLen are dropped, and so are
// pieces without a labelled row. maxLen 0 means no limit. Sequences are
// returned series by series, in time order within each series.
func SeqByTime(series []Series, bucket time.Duration, minLen, maxLen int) ([]Seq, error) {
	if bucket <= 0 {
		return nil, fmt.Errorf("batch: time bucket %v, want > 0", bucket)
	}
	b := int64(bucket)
	return cutSeries(series, minLen, maxLen, func(ts []int64, r int) bool {
		return floorDiv(ts[r], b) != floorDiv(ts[r-1], b)
	})
}

// SeqByGap cuts every series into bursts: a gap between consecutive rows'
// TsNs longer than gap starts a new run. Runs are cut as by SeqByTime.
func SeqByGap(series []Series, gap time.Duration, minLen, maxLen int) ([]Seq, error) {
	if gap < 0 {
		return nil, fmt.Errorf("batch: burst gap %v, want >= 0", gap)
	}
	g := int64(gap)
	return cutSeries(series, minLen, maxLen, func(ts []int64, r int) bool {
		return ts[r]-ts[r-1] > g
	})
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// cutSeries splits each series into runs where brk(ts, r) says row r starts
// a new one, and cuts the runs into sequences.
func cutSeries(series []Series, minLen, maxLen int, brk func(ts []int64, r int) bool) ([]Seq, error) {
	if minLen < 1 {
		minLen = 1
	}
	if maxLen < 0 || (maxLen > 0 && maxLen < minLen) {
		return nil, fmt.Errorf("batch: sequence lengths [%d, %d]", minLen, maxLen)
	}
	var out []Seq
	for si := range series {
		s := &series[si]
		if err := checkSeries(s, si, true); err != nil {
			return nil, err
		}
		n := s.Rows()
		start := 0
		for r := 1; r <= n; r++ {
			if r == n || brk(s.TsNs, r) {
				out = cutRun(out, s, uint32(si), start, r, minLen, maxLen)
				start = r
			}
		}
	}
	return out, nil
}

// cutRun appends the pieces of the run [start, end) of series s.
func cutRun(out []Seq, s *Series, si uint32, start, end, minLen, maxLen int) []Seq {
	n := end - start
	k := 1
	if maxLen > 0 {
		k = (n + maxLen - 1) / maxLen
	}
	for i := 0; i < k; i++ {
		a, b := start+i*n/k, start+(i+1)*n/k
		if b-a < minLen || !slices.ContainsFunc(s.Labels[a:b], func(y int32) bool { return y >= 0 }) {
			continue
		}
		out = append(out, Seq{Series: si, Start: uint32(a), End: uint32(b)})
	}
	return out
}

// checkSeries validates the lengths of s (and, with times, that TsNs is
// non-decreasing).
func checkSeries(s *Series, si int, times bool) error {
	n := s.Rows()
	if n > math.MaxUint32 {
		return fmt.Errorf("batch: series %d (%s) has %d rows, more than 2^32", si, s.Symbol, n)
	}
	if !times {
		return nil
	}
	if len(s.TsNs) != n {
		return fmt.Errorf("batch: series %d (%s): %d timestamps for %d rows", si, s.Symbol, len(s.TsNs), n)
	}
	for r := 1; r < n; r++ {
		if s.TsNs[r] < s.TsNs[r-1] {
			return fmt.Errorf("batch: series %d (%s): time goes back at row %d", si, s.Symbol, r)
		}
	}
	return nil
}

// Select returns the sequences seqs[idx[0]], seqs[idx[1]], ...
func Select(seqs []Seq, idx []int32) []Seq {
	out := make([]Seq, len(idx))
	for i, j := range idx {
		out[i] = seqs[j]
	}
	return out
}

// Fold is one train/validation split of a set of sequences: indices into
// that set, each list in time order (by the TsNs of the first row, then
// series, then row).
type Fold struct {
	Train, Val []int32
	// Cut is the time (TsNs) validation starts at; End is where it stops
	// (exclusive; math.MaxInt64 for the last block).
	Cut, End int64
}

// Purge says how far labels reach and how much to leave out around a cut.
// In every split, for each series, a training sequence is kept only if the
// last row its labels read, End-1+Horizon, lies before the series' first
// row at or after the cut time, and a validation sequence only if it starts
// at least Embargo rows after that row. So no training label reads a row
// that validation sees, and validation starts Embargo rows after the cut
// (the rules of TimeSplit, applied per series at a common time).
type Purge struct {
	Horizon int // rows a label looks ahead (the FI-2010 horizon k)
	Embargo int // rows of each series skipped after the cut
}

// TimeSplitSeqs splits sequences at the time before which trainFrac of all
// rows (summed over sequences, ordered by start time) lie: sequences that
// start before the cut train, those that start after validate, purged and
// embargoed as Purge says.
func TimeSplitSeqs(series []Series, seqs []Seq, trainFrac float64, p Purge) (Fold, error) {
	if trainFrac <= 0 || trainFrac >= 1 {
		return Fold{}, fmt.Errorf("batch: train fraction %g, want in (0, 1)", trainFrac)
	}
	tl, err := newTimeline(series, seqs, p)
	if err != nil {
		return Fold{}, err
	}
	cut := tl.quantile(trainFrac)
	f := tl.fold(math.MinInt64, cut, math.MaxInt64)
	if len(f.Train) == 0 || len(f.Val) == 0 {
		return Fold{}, fmt.Errorf("batch: split left %d train and %d validation sequences", len(f.Train), len(f.Val))
	}
	return f, nil
}

// WalkForward returns folds that move forward in time. The time axis of the
// sequences (by start time) is cut into folds+1 blocks holding equal numbers
// of rows; fold k validates on block k+1 and trains on the blocks before it
// (all of them with window 0, else the last window blocks), purged and
// embargoed at the cut as Purge says. Validation blocks of successive folds
// follow each other without overlap.
func WalkForward(series []Series, seqs []Seq, folds, window int, p Purge) ([]Fold, error) {
	if folds < 1 || window < 0 {
		return nil, fmt.Errorf("batch: walk-forward with %d folds, window %d", folds, window)
	}
	tl, err := newTimeline(series, seqs, p)
	if err != nil {
		return nil, err
	}
	cuts := make([]int64, folds+2)
	cuts[0], cuts[folds+1] = math.MinInt64, math.MaxInt64
	for k := 1; k <= folds; k++ {
		cuts[k] = tl.quantile(float64(k) / float64(folds+1))
	}
	out := make([]Fold, folds)
	for k := range out {
		from := cuts[0]
		if window > 0 && k+1-window > 0 {
			from = cuts[k+1-window]
		}
		out[k] = tl.fold(from, cuts[k+1], cuts[k+2])
		if len(out[k].Train) == 0 || len(out[k].Val) == 0 {
			return nil, fmt.Errorf("batch: walk-forward fold %d has %d train and %d validation sequences", k, len(out[k].Train), len(out[k].Val))
		}
	}
	return out, nil
}

// timeline is the sequences in time order.
type timeline struct {
	series []Series
	seqs   []Seq
	order  []int32 // indices into seqs by (start time, series, start row)
	start  []int64 // start time of seqs[order[i]]
	p      Purge
}

func newTimeline(series []Series, seqs []Seq, p Purge) (*timeline, error) {
	if p.Horizon < 0 || p.Embargo < 0 {
		return nil, fmt.Errorf("batch: purge horizon %d, embargo %d", p.Horizon, p.Embargo)
	}
	if len(seqs) > math.MaxInt32 {
		return nil, fmt.Errorf("batch: %d sequences, more than 2^31", len(seqs))
	}
	for i, q := range seqs {
		if int(q.Series) >= len(series) || q.End <= q.Start || int(q.End) > series[q.Series].Rows() ||
			len(series[q.Series].TsNs) != series[q.Series].Rows() {
			return nil, fmt.Errorf("batch: sequence %d %+v out of range (or its series has no timestamps)", i, q)
		}
	}
	tl := &timeline{series: series, seqs: seqs, order: make([]int32, len(seqs)), p: p}
	ts := func(i int32) int64 { q := seqs[i]; return series[q.Series].TsNs[q.Start] }
	for i := range tl.order {
		tl.order[i] = int32(i)
	}
	slices.SortFunc(tl.order, func(a, b int32) int {
		return cmp.Or(cmp.Compare(ts(a), ts(b)), cmp.Compare(seqs[a].Series, seqs[b].Series),
			cmp.Compare(seqs[a].Start, seqs[b].Start), cmp.Compare(a, b))
	})
	tl.start = make([]int64, len(seqs))
	for i, j := range tl.order {
		tl.start[i] = ts(j)
	}
	return tl, nil
}

// quantile is the start time of the first sequence (in time order) by
// which at least frac of all rows have begun.
func (tl *timeline) quantile(frac float64) int64 {
	total := 0
	for _, q := range tl.seqs {
		total += q.Len()
	}
	want, acc := frac*float64(total), 0
	for i, j := range tl.order {
		if float64(acc) >= want {
			return tl.start[i]
		}
		acc += tl.seqs[j].Len()
	}
	return math.MaxInt64
}

// fold trains on sequences starting in [from, cut) and validates on those
// starting in [cut, end), purged and embargoed at cut.
func (tl *timeline) fold(from, cut, end int64) Fold {
	f := Fold{Cut: cut, End: end}
	// The first row of each series at or after the cut.
	cutRow := make([]int, len(tl.series))
	for si := range tl.series {
		ts := tl.series[si].TsNs
		cutRow[si], _ = slices.BinarySearch(ts, cut)
	}
	for i, j := range tl.order {
		t, q := tl.start[i], tl.seqs[j]
		switch {
		case t >= from && t < cut:
			if int(q.End)-1+tl.p.Horizon < cutRow[q.Series] {
				f.Train = append(f.Train, j)
			}
		case t >= cut && t < end:
			if int(q.Start) >= cutRow[q.Series]+tl.p.Embargo {
				f.Val = append(f.Val, j)
			}
		}
	}
	return f
}
