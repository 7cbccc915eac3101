package batch

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// seqSeries returns ns series of about rows rows each, f features, with
// bursty timestamps: runs of events 1 ms apart separated by gaps of 1 to
// 10 s, so buckets and bursts give sequences of very different lengths.
// Feature j of row r of series s is s*1e6 + r*8 + j; every row is labelled
// r%3 except the last horizon rows of each series (-1).
func seqSeries(ns, rows, f, horizon int, seed uint64) []Series {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]Series, ns)
	for s := range out {
		n := rows + r.IntN(rows/2+1)
		sr := Series{Instrument: uint32(s + 1), Symbol: string(rune('A' + s)), Features: make([]float32, n*f),
			Labels: make([]int32, n), TsNs: make([]int64, n)}
		t := int64(1_700_000_000_000_000_000) + int64(s)*int64(time.Second)
		for i := 0; i < n; i++ {
			if r.IntN(40) == 0 {
				t += int64(time.Second) * int64(1+r.IntN(10))
			} else {
				t += int64(time.Millisecond) * int64(1+r.IntN(3))
			}
			sr.TsNs[i] = t
			for j := 0; j < f; j++ {
				sr.Features[i*f+j] = float32(s*1_000_000 + i*8 + j)
			}
			sr.Labels[i] = int32(i % 3)
			if i >= n-horizon {
				sr.Labels[i] = -1
			}
		}
		out[s] = sr
	}
	return out
}

// tsSeries is one series with the given timestamps, all rows labelled.
func tsSeries(ts ...int64) Series {
	return Series{Symbol: "T", Features: make([]float32, len(ts)), Labels: make([]int32, len(ts)), TsNs: ts}
}

func TestSeqByTimeAndGap(t *testing.T) {
	s := tsSeries(0, 1, 2, 10, 11, 12, 13, 14, 15, 16, 17, 30, 31, 32)
	s.Labels[11], s.Labels[12] = -1, -1
	series := []Series{s}
	// Buckets of 10 ns: [0,3) [3,11) [11,14).
	got, err := SeqByTime(series, 10, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []Seq{{0, 0, 3}, {0, 3, 11}, {0, 11, 14}}
	if !slices.Equal(got, want) {
		t.Fatalf("by time: %v, want %v", got, want)
	}
	// maxLen 3 cuts the 8-row bucket into 2+3+3.
	got, _ = SeqByTime(series, 10, 1, 3)
	want = []Seq{{0, 0, 3}, {0, 3, 5}, {0, 5, 8}, {0, 8, 11}, {0, 11, 14}}
	if !slices.Equal(got, want) {
		t.Fatalf("by time, maxLen 3: %v, want %v", got, want)
	}
	// maxLen 2 cuts the last into 1+2, and the first piece has no label.
	got, _ = SeqByTime(series, 10, 1, 2)
	want = []Seq{{0, 0, 1}, {0, 1, 3}, {0, 3, 5}, {0, 5, 7}, {0, 7, 9}, {0, 9, 11}, {0, 12, 14}}
	if !slices.Equal(got, want) {
		t.Fatalf("by time, maxLen 2: %v, want %v", got, want)
	}
	// minLen 3 drops the short pieces.
	got, _ = SeqByTime(series, 10, 3, 3)
	want = []Seq{{0, 0, 3}, {0, 5, 8}, {0, 8, 11}, {0, 11, 14}}
	if !slices.Equal(got, want) {
		t.Fatalf("by time, lengths [3, 3]: %v, want %v", got, want)
	}
	// Gaps longer than 5 ns: the same runs; longer than 10 ns: one fewer.
	got, _ = SeqByGap(series, 5, 1, 0)
	want = []Seq{{0, 0, 3}, {0, 3, 11}, {0, 11, 14}}
	if !slices.Equal(got, want) {
		t.Fatalf("by gap 5: %v, want %v", got, want)
	}
	got, _ = SeqByGap(series, 10, 1, 0)
	want = []Seq{{0, 0, 11}, {0, 11, 14}}
	if !slices.Equal(got, want) {
		t.Fatalf("by gap 10: %v, want %v", got, want)
	}
	// Negative times bucket by floor: -1 and 0 differ.
	got, _ = SeqByTime([]Series{tsSeries(-11, -1, 0, 9)}, 10, 1, 0)
	if want := []Seq{{0, 0, 1}, {0, 1, 2}, {0, 2, 4}}; !slices.Equal(got, want) {
		t.Fatalf("negative times: %v, want %v", got, want)
	}
	if _, err := SeqByTime([]Series{tsSeries(0, 2, 1)}, 10, 1, 0); err == nil {
		t.Fatal("time going back accepted")
	}
	if _, err := SeqByTime(series, 0, 1, 0); err == nil {
		t.Fatal("bucket 0 accepted")
	}
	if _, err := SeqByGap(series, 5, 4, 3); err == nil {
		t.Fatal("minLen > maxLen accepted")
	}
}

func TestFixedWindows(t *testing.T) {
	series := synthetic(20, 2) // row 19 unlabelled
	refs, err := FixedWindows(series, 4, 5)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Ref{{0, 3}, {0, 8}, {0, 13}, {0, 18}}; !slices.Equal(refs, want) {
		t.Fatalf("windows %v, want %v", refs, want)
	}
	if got := RefSeqs(refs[:2], 4); !slices.Equal(got, []Seq{{0, 0, 4}, {0, 5, 9}}) {
		t.Fatalf("as sequences: %v", got)
	}
	all, _ := FixedWindows(series, 4, 1)
	sp, _ := TimeSplit(series, 4, 0, 0, 0.5)
	if len(all) != len(sp.Train)+len(sp.Val) {
		t.Fatalf("stride 1 gives %d windows, TimeSplit %d", len(all), len(sp.Train)+len(sp.Val))
	}
}

// checkPurged checks the purge and embargo rules of a fold.
func checkPurged(t *testing.T, series []Series, seqs []Seq, f Fold, p Purge) {
	t.Helper()
	start := func(i int32) int64 { q := seqs[i]; return series[q.Series].TsNs[q.Start] }
	for _, side := range [][]int32{f.Train, f.Val} {
		if !slices.IsSortedFunc(side, func(a, b int32) int { return int(start(a) - start(b)) }) {
			t.Fatal("fold not in time order")
		}
	}
	for _, i := range f.Train {
		q := seqs[i]
		ts := series[q.Series].TsNs
		if start(i) >= f.Cut {
			t.Fatalf("train sequence %v starts after the cut", q)
		}
		// The last row its labels read must be before the cut.
		if last := int(q.End) - 1 + p.Horizon; last < len(ts) && ts[last] >= f.Cut {
			t.Fatalf("train sequence %v reads row %d at or after the cut", q, last)
		}
		for _, j := range f.Val {
			v := seqs[j]
			if v.Series == q.Series && int(q.End)-1+p.Horizon+p.Embargo >= int(v.Start) {
				t.Fatalf("train %v and validation %v closer than horizon %d + embargo %d", q, v, p.Horizon, p.Embargo)
			}
		}
	}
	for _, j := range f.Val {
		if s := start(j); s < f.Cut || s >= f.End {
			t.Fatalf("validation sequence %v outside [cut, end)", seqs[j])
		}
	}
}

func TestTimeSplitSeqsPurges(t *testing.T) {
	series := seqSeries(3, 3000, 2, 20, 1)
	seqs, err := SeqByTime(series, time.Second, 2, 64)
	if err != nil {
		t.Fatal(err)
	}
	p := Purge{Horizon: 20, Embargo: 7}
	f, err := TimeSplitSeqs(series, seqs, 0.7, p)
	if err != nil {
		t.Fatal(err)
	}
	checkPurged(t, series, seqs, f, p)
	loose, _ := TimeSplitSeqs(series, seqs, 0.7, Purge{})
	if len(loose.Train) <= len(f.Train) || len(loose.Val) <= len(f.Val) {
		t.Fatalf("purge removed nothing: %d/%d vs %d/%d", len(f.Train), len(f.Val), len(loose.Train), len(loose.Val))
	}
	rows := 0
	for _, i := range slices.Concat(f.Train, f.Val) {
		rows += seqs[i].Len()
	}
	total := 0
	for _, q := range seqs {
		total += q.Len()
	}
	if rows < total*8/10 {
		t.Fatalf("split kept %d of %d rows", rows, total)
	}
}

func TestWalkForward(t *testing.T) {
	series := seqSeries(3, 4000, 2, 10, 2)
	seqs, err := SeqByGap(series, 500*time.Millisecond, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	p := Purge{Horizon: 10, Embargo: 3}
	folds, err := WalkForward(series, seqs, 4, 0, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(folds) != 4 {
		t.Fatalf("%d folds", len(folds))
	}
	seenVal := map[int32]bool{}
	for k, f := range folds {
		checkPurged(t, series, seqs, f, p)
		if k > 0 {
			prev := folds[k-1]
			if f.Cut != prev.End || len(f.Train) <= len(prev.Train) {
				t.Fatalf("fold %d does not move forward: cut %d after end %d, train %d after %d", k, f.Cut, prev.End, len(f.Train), len(prev.Train))
			}
		}
		for _, i := range f.Val {
			if seenVal[i] {
				t.Fatalf("sequence %d validates in two folds", i)
			}
			seenVal[i] = true
		}
	}
	// Rolling window of 1 block: fold k trains only on block k.
	roll, err := WalkForward(series, seqs, 4, 1, p)
	if err != nil {
		t.Fatal(err)
	}
	for k := 1; k < 4; k++ {
		q := seqs[roll[k].Train[0]]
		if series[q.Series].TsNs[q.Start] < folds[k-1].Cut {
			t.Fatalf("rolling fold %d trains before block %d", k, k)
		}
		if !slices.Equal(roll[k].Val, folds[k].Val) {
			t.Fatalf("rolling fold %d validates differently", k)
		}
	}
	if _, err := WalkForward(series, seqs, 0, 0, p); err == nil {
		t.Fatal("0 folds accepted")
	}
	if _, err := WalkForward(series, seqs[:3], 5, 0, p); err == nil {
		t.Fatal("empty folds accepted")
	}
}
