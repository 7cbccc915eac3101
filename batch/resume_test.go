package batch

import (
	"context"
	"fmt"
	"slices"
	"testing"
)

// rankBatches runs one loader per rank of cfg, restored to st, for steps
// global steps (or to the end of st's epoch if steps < 0), and returns each
// step's batches, rank by rank, as deep copies.
func rankBatches(t *testing.T, src SeqSource, seqs []Seq, cfg SeqSamplerConfig, st SamplerState, steps int) [][]SeqBatch {
	t.Helper()
	ctx := context.Background()
	loaders := make([]*SeqLoader, cfg.Ranks)
	for r := range loaders {
		s, err := NewSeqSampler(seqs, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Restore(st); err != nil {
			t.Fatal(err)
		}
		loaders[r], err = NewSeqLoader(ctx, src, s, SeqLoaderConfig{Rank: r, Workers: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer loaders[r].Close()
	}
	var out [][]SeqBatch
	for step := 0; step != steps; step++ {
		var row []SeqBatch
		for _, ld := range loaders {
			b, err := ld.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			c := *b
			c.X, c.Segments, c.Labels, c.Places = slices.Clone(b.X), slices.Clone(b.Segments), slices.Clone(b.Labels), slices.Clone(b.Places)
			row = append(row, c)
			ld.Release(b)
		}
		out = append(out, row)
		if steps < 0 && row[0].State.Pos == len(seqs) {
			break
		}
	}
	return out
}

func batchSeqs(steps [][]SeqBatch) []int32 {
	var out []int32
	for _, row := range steps {
		for _, b := range row {
			for _, p := range b.Places {
				out = append(out, p.Seq)
			}
		}
	}
	return out
}

func sameBatch(a, b *SeqBatch) bool {
	return a.B == b.B && a.T == b.T && a.State == b.State && a.Epoch == b.Epoch && a.Stats == b.Stats &&
		slices.Equal(a.X, b.X) && slices.Equal(a.Segments, b.Segments) && slices.Equal(a.Labels, b.Labels) &&
		slices.Equal(a.Places, b.Places)
}

// TestResumeRankChange saves at an arbitrary step of a 4-rank run and
// resumes with 4, 2 and 3 ranks: with 4 the batches are bit for bit those
// of the uninterrupted run; with any count, every sequence is seen exactly
// once in the epoch.
func TestResumeRankChange(t *testing.T) {
	series, seqs := loaderFixture(t)
	src := &SeriesSource{Series: series, F: 4}
	for _, cfg := range []SeqSamplerConfig{
		{Layout: Padded, Rows: 6, Len: 64, Ranks: 4, Order: OrderBucketed, Balance: BalanceKK, Seed: 21, MegaBatch: 5},
		{Layout: Packed, Rows: 3, Len: 128, Ranks: 4, Balance: BalanceKK, Seed: 22},
		{Layout: Padded, Rows: 5, Len: 64, Ranks: 4, Balance: BalanceNone, Seed: 23},
	} {
		t.Run(fmt.Sprintf("%v-%v-%v", cfg.Layout, cfg.Order, cfg.Balance), func(t *testing.T) {
			start := SamplerState{Seed: cfg.Seed}
			full := rankBatches(t, src, seqs, cfg, start, -1)
			checkExactlyOnce(t, batchSeqs(full), len(seqs), "uninterrupted")
			save := len(full) * 2 / 5 // an arbitrary step, mid-epoch
			t.Logf("%d sequences, %d steps, saved after step %d", len(seqs), len(full), save)
			st := full[save-1][0].State
			for r := range full[save-1] {
				if full[save-1][r].State != st {
					t.Fatal("ranks disagree on the state")
				}
			}
			before := batchSeqs(full[:save])
			if st.Pos != len(before) {
				t.Fatalf("state %+v after %d sequences", st, len(before))
			}
			// Same rank count: bit for bit.
			again := rankBatches(t, src, seqs, cfg, st, -1)
			if len(again) != len(full)-save {
				t.Fatalf("resumed run has %d steps, want %d", len(again), len(full)-save)
			}
			for i := range again {
				for r := range again[i] {
					if !sameBatch(&again[i][r], &full[save+i][r]) {
						t.Fatalf("resumed step %d rank %d differs", save+i, r)
					}
				}
			}
			// Other rank counts: the rest of the epoch exactly once.
			for _, ranks := range []int{2, 3} {
				c := cfg
				c.Ranks = ranks
				rest := rankBatches(t, src, seqs, c, st, -1)
				checkExactlyOnce(t, slices.Concat(before, batchSeqs(rest)), len(seqs), fmt.Sprintf("4 → %d ranks", ranks))
				for _, row := range rest {
					if len(row) != ranks || row[0].Epoch != st.Epoch {
						t.Fatalf("%d ranks: step of %d batches in epoch %d", ranks, len(row), row[0].Epoch)
					}
					for r := range row {
						checkBatch(t, &row[r], series, seqs)
					}
				}
				// The next epoch does not depend on the rank count of the last.
				s2, _ := NewSeqSampler(seqs, c)
				s2.Restore(rest[len(rest)-1][0].State)
				s4, _ := NewSeqSampler(seqs, c)
				s4.Restore(full[len(full)-1][0].State)
				if !plansEqual(epochPlans(s2), epochPlans(s4)) {
					t.Fatalf("%d ranks: next epoch depends on the past rank count", ranks)
				}
			}
		})
	}
}

// TestResumeAcrossEpochs resumes from every step of two epochs of a plan
// (cheap without data) and checks the continuation.
func TestResumeAcrossEpochs(t *testing.T) {
	seqs := lenSeqs(300, 40, 6)
	for _, cfg := range []SeqSamplerConfig{
		{Layout: Padded, Rows: 7, Len: 40, Ranks: 4, Order: OrderBucketed, Balance: BalanceLPT, Seed: 5, MegaBatch: 3},
		{Layout: Packed, Rows: 2, Len: 80, Ranks: 4, Balance: BalanceKK, Seed: 6},
	} {
		s, _ := NewSeqSampler(seqs, cfg)
		all := slices.Concat(epochPlans(s), epochPlans(s))
		for k := range all[:len(all)-1] {
			r, _ := NewSeqSampler(seqs, cfg)
			if err := r.Restore(all[k].State); err != nil {
				t.Fatal(err)
			}
			var p StepPlan
			r.Next(&p)
			if !plansEqual([]StepPlan{p}, all[k+1:k+2]) {
				t.Fatalf("%v: resuming after step %d differs", cfg.Layout, k)
			}
		}
	}
	s, _ := NewSeqSampler(seqs, SeqSamplerConfig{Rows: 2, Len: 40})
	if err := s.Restore(SamplerState{Pos: len(seqs) + 1}); err == nil {
		t.Fatal("out-of-range state accepted")
	}
}
