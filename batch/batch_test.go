package batch

import (
	"context"
	"errors"
	"slices"
	"testing"
)

func synthetic(rows, f int) []Series {
	s := Series{Symbol: "X", Features: make([]float32, rows*f), Labels: make([]int32, rows)}
	for r := 0; r < rows; r++ {
		for j := 0; j < f; j++ {
			s.Features[r*f+j] = float32(r*100 + j)
		}
		s.Labels[r] = int32(r % 3)
	}
	s.Labels[rows-1] = -1
	return []Series{s}
}

func TestTimeSplitPurgesAndEmbargoes(t *testing.T) {
	series := synthetic(1000, 2)
	sp, err := TimeSplit(series, 4, 10, 5, 0.8)
	if err != nil {
		t.Fatal(err)
	}
	maxTrain, minVal := uint32(0), uint32(1<<31)
	for _, r := range sp.Train {
		maxTrain = max(maxTrain, r.Row)
	}
	for _, r := range sp.Val {
		minVal = min(minVal, r.Row)
		if r.Row == 999 {
			t.Fatal("unlabelled row sampled")
		}
	}
	// Cut at 800: train labels (t+10) stay below 800, validation starts at 805.
	if maxTrain != 789 || minVal != 805 || sp.Train[0].Row != 3 {
		t.Fatalf("train ends at %d, validation starts at %d, first train row %d", maxTrain, minVal, sp.Train[0].Row)
	}
}

func TestGatherWindows(t *testing.T) {
	series := synthetic(50, 3)
	w := &Windows{Series: series, F: 3, W: 4}
	x := make([]float32, 2*12)
	y := make([]int32, 2)
	w.Gather([]Ref{{0, 3}, {0, 10}}, x, y)
	if x[0] != 0 || x[11] != 302 || x[12] != 700 || x[23] != 1002 || y[0] != 0 || y[1] != 1 {
		t.Fatalf("x=%v y=%v", x, y)
	}
}

func TestSamplerDeterministicAndResumable(t *testing.T) {
	a := NewSampler(100, 7, true)
	b := NewSampler(100, 7, true)
	da, db := make([]int32, 30), make([]int32, 30)
	var seq [][]int32
	for i := 0; i < 10; i++ {
		a.Next(da)
		b.Next(db)
		if !slices.Equal(da, db) {
			t.Fatal("same seed, different order")
		}
		seq = append(seq, slices.Clone(da))
	}
	// Each epoch (3 batches of 30 out of 100) has no repeats.
	seen := map[int32]bool{}
	for _, v := range slices.Concat(seq[0], seq[1], seq[2]) {
		if seen[v] {
			t.Fatalf("sample %d twice in one epoch", v)
		}
		seen[v] = true
	}
	if slices.Equal(seq[0], seq[3]) {
		t.Fatal("epochs share an order")
	}
	// Resume from the state after batch 4.
	c := NewSampler(100, 7, true)
	for i := 0; i < 4; i++ {
		c.Next(da)
	}
	st := c.State()
	d := NewSampler(100, 0, true)
	if err := d.Restore(st); err != nil {
		t.Fatal(err)
	}
	for i := 4; i < 10; i++ {
		d.Next(da)
		if !slices.Equal(da, seq[i]) {
			t.Fatalf("resumed batch %d differs", i)
		}
	}
	if err := d.Restore(SamplerState{Pos: 101}); err == nil {
		t.Fatal("out-of-range state accepted")
	}
}

func TestLoaderOrderReuseAndCancel(t *testing.T) {
	series := synthetic(500, 2)
	w := &Windows{Series: series, F: 2, W: 3}
	sp, _ := TimeSplit(series, 3, 1, 0, 0.5)
	ctx, cancel := context.WithCancel(context.Background())
	ld, err := NewLoader(ctx, w, sp.Train, NewSampler(len(sp.Train), 1, true), LoaderConfig{BatchSize: 16, Prefetch: 2})
	if err != nil {
		t.Fatal(err)
	}
	ref := NewSampler(len(sp.Train), 1, true)
	idx := make([]int32, 16)
	for i := 0; i < 40; i++ {
		b, err := ld.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ref.Next(idx)
		if !slices.Equal(idx, b.Index) || b.State != ref.State() {
			t.Fatalf("batch %d: loader order differs from the sampler's", i)
		}
		ld.Release(b)
	}
	// Steady state allocates nothing per batch.
	allocs := testingAllocs(func() {
		b, err := ld.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ld.Release(b)
	})
	if allocs > 0 {
		t.Errorf("%.1f allocations per batch in steady state", allocs)
	}
	cancel()
	for {
		_, err := ld.Next(context.Background())
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("after cancel: %v", err)
			}
			break
		}
	}
	ld.Close()
	if _, err := NewLoader(context.Background(), w, sp.Train, NewSampler(1, 1, true), LoaderConfig{BatchSize: 0}); err == nil {
		t.Fatal("batch size 0 accepted")
	}
}

func TestLoaderParallelGatherMatchesSerial(t *testing.T) {
	series := synthetic(3000, 64)
	w := &Windows{Series: series, F: 64, W: 8}
	sp, _ := TimeSplit(series, 8, 1, 0, 0.9)
	ctx := context.Background()
	mk := func(workers int) *Loader {
		ld, err := NewLoader(ctx, w, sp.Train, NewSampler(len(sp.Train), 3, true), LoaderConfig{BatchSize: 256, Prefetch: 2, Workers: workers})
		if err != nil {
			t.Fatal(err)
		}
		return ld
	}
	a, b := mk(1), mk(4)
	defer a.Close()
	defer b.Close()
	for i := 0; i < 10; i++ {
		ba, _ := a.Next(ctx)
		bb, _ := b.Next(ctx)
		xa, xb := ba.X.Value().([][]float32), bb.X.Value().([][]float32)
		for r := range xa {
			if !slices.Equal(xa[r], xb[r]) {
				t.Fatalf("batch %d row %d differs between 1 and 4 workers", i, r)
			}
		}
		if !slices.Equal(ba.Y.Value().([]int32), bb.Y.Value().([]int32)) {
			t.Fatal("labels differ")
		}
		a.Release(ba)
		b.Release(bb)
	}
	allocs := testingAllocs(func() {
		bb, _ := b.Next(ctx)
		b.Release(bb)
	})
	if allocs > 0 {
		t.Errorf("%.1f allocations per batch with 4 workers", allocs)
	}
}

func TestLoaderRowsMode(t *testing.T) {
	series := synthetic(400, 3)
	series = append(series, synthetic(300, 3)...)
	w := &Windows{Series: series, F: 3, W: 4}
	sp, _ := TimeSplit(series, 4, 1, 0, 0.8)
	feats, labels, offs, err := w.Flat()
	if err != nil || len(feats) != 700*3 || len(labels) != 700 || offs[1] != 400 {
		t.Fatalf("flat: %d %d %v %v", len(feats), len(labels), offs, err)
	}
	ctx := context.Background()
	ld, err := NewLoader(ctx, w, sp.Train, NewSampler(len(sp.Train), 5, true), LoaderConfig{BatchSize: 8, RowOffsets: offs})
	if err != nil {
		t.Fatal(err)
	}
	defer ld.Close()
	ref := NewSampler(len(sp.Train), 5, true)
	idx := make([]int32, 8)
	for i := 0; i < 20; i++ {
		b, err := ld.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ref.Next(idx)
		rows := b.Rows.Value().([]int32)
		for k, j := range idx {
			r := sp.Train[j]
			if rows[k] != offs[r.Series]+int32(r.Row) || b.X != nil {
				t.Fatalf("batch %d sample %d: row %d, want %d", i, k, rows[k], offs[r.Series]+int32(r.Row))
			}
			// The flat row holds the same features as the series row.
			if feats[int(rows[k])*3] != series[r.Series].Features[int(r.Row)*3] {
				t.Fatal("flat features misaligned")
			}
		}
		ld.Release(b)
	}
}

func TestTimeSplit3(t *testing.T) {
	series := synthetic(1000, 2)
	sp, err := TimeSplit3(series, 4, 10, 5, 0.6, 0.2)
	if err != nil {
		t.Fatal(err)
	}
	last := func(r []Ref) uint32 { return r[len(r)-1].Row }
	// Cuts at 600 and 800: train < 590, validation 605..789, test from 805.
	if last(sp.Train) != 589 || sp.Val[0].Row != 605 || last(sp.Val) != 789 || sp.Test[0].Row != 805 {
		t.Fatalf("train ..%d, val %d..%d, test %d..", last(sp.Train), sp.Val[0].Row, last(sp.Val), sp.Test[0].Row)
	}
	if _, err := TimeSplit3(series, 4, 10, 5, 0.6, 0.4); err == nil {
		t.Fatal("train+val = 1 accepted")
	}
}
