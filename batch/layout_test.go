package batch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// checkBatch checks a batch against the layout contract: every place holds
// its sequence's rows and labels under one segment id, ids run 1, 2, ... in
// each row, and every other position is padding (x 0, segment 0, label -1).
func checkBatch(t *testing.T, b *SeqBatch, series []Series, seqs []Seq) {
	t.Helper()
	f, tt := b.F, b.T
	if len(b.X) != b.B*tt*f || len(b.Segments) != b.B*tt || len(b.Labels) != b.B*tt {
		t.Fatalf("buffers %d, %d, %d for %d×%d×%d", len(b.X), len(b.Segments), len(b.Labels), b.B, tt, f)
	}
	covered := make([]bool, b.B*tt)
	tokens, labelled := 0, 0
	for i, p := range b.Places {
		q := seqs[p.Seq]
		s := &series[q.Series]
		if b.Layout == Padded && (p.Offset != 0 || int(p.Row) != i || p.Segment != 1) {
			t.Fatalf("padded place %+v (index %d)", p, i)
		}
		for k := 0; k < int(p.Len); k++ {
			at := int(p.Row)*tt + int(p.Offset) + k
			row := int(q.Start) + k
			if covered[at] {
				t.Fatalf("position %d used twice", at)
			}
			covered[at] = true
			if b.Segments[at] != p.Segment || b.Labels[at] != s.Labels[row] ||
				!slices.Equal(b.X[at*f:(at+1)*f], s.Features[row*f:(row+1)*f]) {
				t.Fatalf("place %+v position %d: segment %d label %d x %v", p, k, b.Segments[at], b.Labels[at], b.X[at*f:(at+1)*f])
			}
			tokens++
			if s.Labels[row] >= 0 {
				labelled++
			}
		}
	}
	for r := 0; r < b.B; r++ {
		last, padding := int32(0), false
		for k := 0; k < tt; k++ {
			at := r*tt + k
			seg := b.Segments[at]
			switch {
			case !covered[at]:
				if seg != 0 || b.Labels[at] != -1 || slices.ContainsFunc(b.X[at*f:(at+1)*f], func(v float32) bool { return v != 0 }) {
					t.Fatalf("row %d position %d is not padding", r, k)
				}
				padding = true
			case padding:
				t.Fatalf("row %d: data after padding at %d", r, k)
			case seg != last && seg != last+1:
				t.Fatalf("row %d: segment %d after %d", r, seg, last)
			default:
				last = seg
			}
		}
	}
	if b.Stats.Tokens != tokens || b.Stats.Labelled != labelled || b.Stats.Seqs != len(b.Places) || b.Stats.Slots != b.B*tt {
		t.Fatalf("stats %+v, counted %d tokens, %d labelled", b.Stats, tokens, labelled)
	}
}

func TestLayouts(t *testing.T) {
	series := seqSeries(2, 400, 3, 5, 3)
	seqs, err := SeqByGap(series, 500*time.Millisecond, 1, 20)
	if err != nil {
		t.Fatal(err)
	}
	src := &SeriesSource{Series: series, F: 3}
	for _, cfg := range []SeqSamplerConfig{
		{Layout: Padded, Rows: 4, Len: 20},
		{Layout: Padded, Rows: 4, Len: 20, PadMultiple: 8},
		{Layout: Padded, Rows: 4, Len: 20, PadMultiple: 20, Order: OrderBucketed, MegaBatch: 3},
		{Layout: Packed, Rows: 3, Len: 32},
		{Layout: Packed, Rows: 2, Len: 20, Ranks: 3, Balance: BalanceKK},
	} {
		s, err := NewSeqSampler(seqs, cfg)
		if err != nil {
			t.Fatal(err)
		}
		b := s.NewBatch(3)
		var p StepPlan
		var e EpochStats
		for s.Remaining() > 0 {
			s.Next(&p)
			e.Add(&p)
			for r := range p.Ranks {
				if err := b.Assemble(src, seqs, &p.Ranks[r]); err != nil {
					t.Fatal(err)
				}
				checkBatch(t, b, series, seqs)
				if cfg.Layout == Padded {
					want := 0
					for _, pl := range b.Places {
						want = max(want, int(pl.Len))
					}
					if want = min(roundUp(want, s.cfg.PadMultiple), cfg.Len); b.T != want {
						t.Fatalf("%+v: T %d, want %d", cfg, b.T, want)
					}
				} else if b.T != cfg.Len {
					t.Fatalf("packed T %d", b.T)
				}
			}
		}
		total := 0
		for _, q := range seqs {
			total += q.Len()
		}
		if e.Seqs != len(seqs) || e.Tokens != int64(total) {
			t.Fatalf("%+v: epoch placed %d sequences, %d tokens; want %d, %d", cfg, e.Seqs, e.Tokens, len(seqs), total)
		}
		t.Logf("%v %v: %v", cfg.Layout, cfg.Order, e.String())
	}
}

func TestLayoutHandExample(t *testing.T) {
	s := tsSeries(0, 1, 2, 3, 4, 5, 6, 7)
	for i := range s.Features {
		s.Features[i] = float32(i + 1)
	}
	s.Labels[2] = -1
	series := []Series{s}
	seqs := []Seq{{0, 0, 3}, {0, 3, 5}, {0, 5, 8}, {0, 7, 8}}
	// Packed into 2 rows of 4 in time order. The first 8 tokens of the order
	// (3+2+3) fit 2×4 in total, but first-fit decreasing of {3,3,2} leaves
	// the 2 out, so the step shrinks to seqs 0 and 1; the next step packs
	// seqs 2 and 3 into one row.
	sm, err := NewSeqSampler(seqs, SeqSamplerConfig{Layout: Packed, Rows: 2, Len: 4, Order: OrderTime})
	if err != nil {
		t.Fatal(err)
	}
	var p StepPlan
	sm.Next(&p)
	b := sm.NewBatch(1)
	if err := b.Assemble(&SeriesSource{Series: series, F: 1}, seqs, &p.Ranks[0]); err != nil {
		t.Fatal(err)
	}
	wantX := []float32{1, 2, 3, 0, 4, 5, 0, 0}
	wantSeg := []int32{1, 1, 1, 0, 1, 1, 0, 0}
	wantY := []int32{0, 0, -1, -1, 0, 0, -1, -1}
	if !slices.Equal(b.X, wantX) || !slices.Equal(b.Segments, wantSeg) || !slices.Equal(b.Labels, wantY) {
		t.Fatalf("packed\nx   %v\nseg %v\ny   %v", b.X, b.Segments, b.Labels)
	}
	sm.Next(&p)
	if err := b.Assemble(&SeriesSource{Series: series, F: 1}, seqs, &p.Ranks[0]); err != nil {
		t.Fatal(err)
	}
	wantX = []float32{6, 7, 8, 8, 0, 0, 0, 0}
	wantSeg = []int32{1, 1, 1, 2, 0, 0, 0, 0}
	if !slices.Equal(b.X, wantX) || !slices.Equal(b.Segments, wantSeg) || b.Stats.PaddingFraction() != 0.5 {
		t.Fatalf("packed step 2\nx   %v\nseg %v", b.X, b.Segments)
	}
	// Padded, 2 rows: T = 3, then T = 3 again.
	sm, _ = NewSeqSampler(seqs, SeqSamplerConfig{Layout: Padded, Rows: 2, Len: 4, Order: OrderTime})
	sm.Next(&p)
	if err := b.Assemble(&SeriesSource{Series: series, F: 1}, seqs, &p.Ranks[0]); err != nil {
		t.Fatal(err)
	}
	wantX = []float32{1, 2, 3, 4, 5, 0}
	wantSeg = []int32{1, 1, 1, 1, 1, 0}
	wantY = []int32{0, 0, -1, 0, 0, -1}
	if b.T != 3 || !slices.Equal(b.X, wantX) || !slices.Equal(b.Segments, wantSeg) || !slices.Equal(b.Labels, wantY) {
		t.Fatalf("padded T %d\nx   %v\nseg %v\ny   %v", b.T, b.X, b.Segments, b.Labels)
	}
	if _, err := NewSeqSampler(seqs, SeqSamplerConfig{Layout: Packed, Rows: 2, Len: 2}); err == nil {
		t.Fatal("sequence longer than Len accepted")
	}
}

// failingSource fails to read one sequence.
type failingSource struct {
	SeriesSource
	bad   Seq
	reads atomic.Int64
}

var errInjected = errors.New("injected read failure")

func (f *failingSource) ReadSeq(q Seq, x []float32, y []int32) error {
	f.reads.Add(1)
	if q == f.bad {
		return errInjected
	}
	return f.SeriesSource.ReadSeq(q, x, y)
}

func loaderFixture(t *testing.T) ([]Series, []Seq) {
	t.Helper()
	series := seqSeries(3, 3000, 4, 10, 5)
	seqs, err := SeqByTime(series, 2*time.Second, 2, 64)
	if err != nil {
		t.Fatal(err)
	}
	return series, seqs
}

func TestSeqLoaderOrderAllocsAndCancel(t *testing.T) {
	series, seqs := loaderFixture(t)
	src := &SeriesSource{Series: series, F: 4}
	for _, cfg := range []SeqSamplerConfig{
		{Layout: Padded, Rows: 8, Len: 64, Ranks: 2, Balance: BalanceKK, Seed: 3},
		{Layout: Packed, Rows: 4, Len: 128, Ranks: 2, Balance: BalanceLPT, Seed: 3},
	} {
		t.Run(cfg.Layout.String(), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			sm, _ := NewSeqSampler(seqs, cfg)
			ld, err := NewSeqLoader(ctx, src, sm, SeqLoaderConfig{Rank: 1, Prefetch: 2, Workers: 3})
			if err != nil {
				t.Fatal(err)
			}
			defer ld.Close()
			ref, _ := NewSeqSampler(seqs, cfg)
			var p StepPlan
			for i := 0; i < 60; i++ { // more than an epoch
				b, err := ld.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				ref.Next(&p)
				if !slices.Equal(b.Places, p.Ranks[1].Places) || b.State != p.State || b.Epoch != p.Epoch || b.Rank != 1 {
					t.Fatalf("batch %d differs from the sampler's plan", i)
				}
				checkBatch(t, b, series, seqs)
				ld.Release(b)
			}
			allocs := testingAllocs(func() {
				b, err := ld.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				ld.Release(b)
			})
			if allocs > 0 {
				t.Errorf("%.2f allocations per batch in steady state", allocs)
			}
			// The consumer stops releasing: the producer waits, nothing is lost.
			var held []*SeqBatch
			for i := 0; i < 3; i++ {
				b, err := ld.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				held = append(held, b)
			}
			short, c2 := context.WithTimeout(ctx, 50*time.Millisecond)
			for {
				b, err := ld.Next(short)
				if err != nil {
					if !errors.Is(err, context.DeadlineExceeded) {
						t.Fatalf("waiting on a full pipeline: %v", err)
					}
					break
				}
				held = append(held, b)
			}
			c2()
			for _, b := range held {
				ld.Release(b)
			}
			if _, err := ld.Next(ctx); err != nil {
				t.Fatalf("after back-pressure: %v", err)
			}
			cancel()
			if _, err := ld.Next(context.Background()); !errors.Is(err, context.Canceled) {
				t.Fatalf("after cancel: %v", err)
			}
		})
	}
	sm, _ := NewSeqSampler(seqs, SeqSamplerConfig{Rows: 2, Len: 64})
	if _, err := NewSeqLoader(context.Background(), src, sm, SeqLoaderConfig{Rank: 1}); err == nil {
		t.Fatal("rank 1 of 1 accepted")
	}
}

func TestSeqLoaderStageError(t *testing.T) {
	series, seqs := loaderFixture(t)
	cfg := SeqSamplerConfig{Layout: Padded, Rows: 4, Len: 64, Order: OrderTime}
	const failAt = 5 // in time order with 4 rows, batch 5 starts with sequence 20
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprint("workers", workers), func(t *testing.T) {
			src := &failingSource{SeriesSource: SeriesSource{Series: series, F: 4}, bad: seqs[failAt*4]}
			sm, _ := NewSeqSampler(seqs, cfg)
			ld, err := NewSeqLoader(context.Background(), src, sm, SeqLoaderConfig{Prefetch: 3, Workers: workers})
			if err != nil {
				t.Fatal(err)
			}
			defer ld.Close()
			for i := 0; ; i++ {
				b, err := ld.Next(context.Background())
				if err == nil {
					if i >= failAt {
						t.Fatalf("batch %d delivered after the failure", i)
					}
					ld.Release(b)
					continue
				}
				var se *StageError
				if !errors.As(err, &se) || se.Stage != "source" || se.Batch != failAt || !errors.Is(err, errInjected) {
					t.Fatalf("batch %d: %v (%#v)", i, err, se)
				}
				if i != failAt {
					t.Fatalf("failure reached Next at batch %d, want %d", i, failAt)
				}
				t.Log(err)
				break
			}
			if _, err := ld.Next(context.Background()); !errors.Is(err, errInjected) {
				t.Fatalf("error not sticky: %v", err)
			}
		})
	}
}

// TestSeqLoaderWorkersSameBatches: the batches do not depend on the number
// of workers.
func TestSeqLoaderWorkersSameBatches(t *testing.T) {
	series, seqs := loaderFixture(t)
	src := &SeriesSource{Series: series, F: 4}
	cfg := SeqSamplerConfig{Layout: Packed, Rows: 4, Len: 96, Ranks: 3, Balance: BalanceKK, Seed: 11}
	run := func(workers int) [][]float32 {
		sm, _ := NewSeqSampler(seqs, cfg)
		ld, err := NewSeqLoader(context.Background(), src, sm, SeqLoaderConfig{Rank: 2, Workers: workers})
		if err != nil {
			t.Fatal(err)
		}
		defer ld.Close()
		var out [][]float32
		for i := 0; i < 30; i++ {
			b, err := ld.Next(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, slices.Clone(b.X))
			ld.Release(b)
		}
		return out
	}
	a, b := run(1), run(4)
	for i := range a {
		if !slices.Equal(a[i], b[i]) {
			t.Fatalf("batch %d differs between 1 and 4 workers", i)
		}
	}
}

func TestSeqLoaderCloseWhileWaiting(t *testing.T) {
	series, seqs := loaderFixture(t)
	src := &SeriesSource{Series: series, F: 4}
	sm, _ := NewSeqSampler(seqs, SeqSamplerConfig{Rows: 4, Len: 64})
	ld, _ := NewSeqLoader(context.Background(), src, sm, SeqLoaderConfig{Prefetch: 1})
	var held []*SeqBatch
	for i := 0; i < 3; i++ { // exhaust the buffers without releasing
		b, err := ld.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, b)
	}
	done := make(chan error)
	go func() {
		_, err := ld.Next(context.Background())
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	ld.Close()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Next after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next hangs after Close")
	}
	_ = held
}
