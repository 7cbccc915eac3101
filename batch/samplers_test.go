package batch

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// lenSeqs returns n sequences with lengths drawn log-uniformly in [1, maxLen]
// (a few long, many short, as market activity gives), over one series.
func lenSeqs(n, maxLen int, seed uint64) []Seq {
	r := rand.New(rand.NewPCG(seed, 2))
	out := make([]Seq, n)
	at := uint32(0)
	for i := range out {
		l := uint32(min(maxLen, int(float64(maxLen)/(1+r.ExpFloat64()*4))))
		l = max(l, 1)
		out[i] = Seq{Start: at, End: at + l}
		at += l
	}
	return out
}

// epochPlans runs a sampler to the end of the epoch (the next one if the
// current one is done).
func epochPlans(s *SeqSampler) []StepPlan {
	var out []StepPlan
	for {
		var p StepPlan
		s.Next(&p)
		out = append(out, p)
		if s.Remaining() == 0 {
			return out
		}
	}
}

// placed lists the sequences of plans, rank by rank.
func placed(plans []StepPlan) []int32 {
	var out []int32
	for _, p := range plans {
		for _, r := range p.Ranks {
			for _, pl := range r.Places {
				out = append(out, pl.Seq)
			}
		}
	}
	return out
}

func checkExactlyOnce(t *testing.T, got []int32, n int, what string) {
	t.Helper()
	seen := make([]bool, n)
	for _, i := range got {
		if seen[i] {
			t.Fatalf("%s: sequence %d placed twice", what, i)
		}
		seen[i] = true
	}
	if len(got) != n {
		t.Fatalf("%s: %d of %d sequences placed", what, len(got), n)
	}
}

func TestSeqSamplerEveryConfig(t *testing.T) {
	seqs := lenSeqs(700, 48, 1)
	for _, layout := range []Layout{Padded, Packed} {
		for _, order := range []Order{OrderRandom, OrderBucketed, OrderTime} {
			for _, bal := range []Balance{BalanceNone, BalanceLPT, BalanceKK} {
				for _, ranks := range []int{1, 3, 8} {
					cfg := SeqSamplerConfig{Layout: layout, Rows: 5, Len: 64, Ranks: ranks, Order: order, Balance: bal, Seed: 4, MegaBatch: 4}
					name := fmt.Sprintf("%v/%v/%v/%d", layout, order, bal, ranks)
					s, err := NewSeqSampler(seqs, cfg)
					if err != nil {
						t.Fatal(err)
					}
					e0 := epochPlans(s)
					e1 := epochPlans(s)
					checkExactlyOnce(t, placed(e0), len(seqs), name)
					checkExactlyOnce(t, placed(e1), len(seqs), name+" epoch 1")
					if e0[0].Epoch != 0 || e1[0].Epoch != 1 {
						t.Fatalf("%s: epochs %d, %d", name, e0[0].Epoch, e1[0].Epoch)
					}
					if order != OrderTime && slices.Equal(placed(e0), placed(e1)) {
						t.Fatalf("%s: two epochs in the same order", name)
					}
					for _, p := range e0 {
						for _, r := range p.Ranks {
							if layout == Padded && len(r.Places) > cfg.Rows {
								t.Fatalf("%s: %d sequences in %d rows", name, len(r.Places), cfg.Rows)
							}
						}
					}
					// Deterministic: a second sampler gives the same plans.
					s2, _ := NewSeqSampler(seqs, cfg)
					if again := epochPlans(s2); !plansEqual(again, e0) {
						t.Fatalf("%s: same seed, different plans", name)
					}
				}
			}
		}
	}
}

func plansEqual(a, b []StepPlan) bool {
	return slices.EqualFunc(a, b, func(x, y StepPlan) bool {
		return x.Epoch == y.Epoch && x.State == y.State && slices.EqualFunc(x.Ranks, y.Ranks, func(r, q RankPlan) bool {
			return r.Rows == q.Rows && r.T == q.T && r.Tokens == q.Tokens && slices.Equal(r.Places, q.Places)
		})
	})
}

func TestSeqSamplerTimeOrder(t *testing.T) {
	seqs := lenSeqs(50, 10, 2)
	s, _ := NewSeqSampler(seqs, SeqSamplerConfig{Rows: 4, Len: 10, Order: OrderTime, Seed: 9})
	got := placed(epochPlans(s))
	for i, j := range got {
		if int(j) != i {
			t.Fatalf("time order: position %d holds %d", i, j)
		}
	}
	// The random order is NewSampler's permutation for the same seed.
	s, _ = NewSeqSampler(seqs, SeqSamplerConfig{Rows: 5, Len: 10, Seed: 9})
	want := make([]int32, 50)
	NewSampler(50, 9, true).Next(want)
	if got := placed(epochPlans(s)); !slices.Equal(got, want) {
		t.Fatalf("random order %v, NewSampler %v", got, want)
	}
}

func TestBucketedPadsLess(t *testing.T) {
	seqs := lenSeqs(4000, 256, 3)
	base := SeqSamplerConfig{Layout: Padded, Rows: 32, Len: 256, Seed: 1}
	rnd, _ := MeasureEpoch(seqs, base, 0)
	base.Order = OrderBucketed
	bkt, _ := MeasureEpoch(seqs, base, 0)
	pk, _ := MeasureEpoch(seqs, SeqSamplerConfig{Layout: Packed, Rows: 8, Len: 1024, Seed: 1}, 0)
	t.Logf("padding: random %.1f%%, bucketed %.1f%%, packed %.1f%%", 100*rnd.PaddingFraction(), 100*bkt.PaddingFraction(), 100*pk.PaddingFraction())
	if bkt.PaddingFraction() > rnd.PaddingFraction()/3 || pk.PaddingFraction() > 0.05 {
		t.Fatalf("padding: random %.3f, bucketed %.3f, packed %.3f", rnd.PaddingFraction(), bkt.PaddingFraction(), pk.PaddingFraction())
	}
	// A bucketed batch holds similar lengths: its spread is small.
	s, _ := NewSeqSampler(seqs, base)
	var p StepPlan
	s.Next(&p)
	lo, hi := 1<<30, 0
	for _, pl := range p.Ranks[0].Places {
		lo, hi = min(lo, int(pl.Len)), max(hi, int(pl.Len))
	}
	if hi-lo > 40 {
		t.Fatalf("bucketed batch lengths %d..%d", lo, hi)
	}
}

func TestBalanceRanks(t *testing.T) {
	seqs := lenSeqs(6000, 256, 4)
	for _, layout := range []Layout{Padded, Packed} {
		for _, ranks := range []int{2, 4, 8} {
			imb := map[Balance]float64{}
			for _, bal := range []Balance{BalanceNone, BalanceLPT, BalanceKK} {
				cfg := SeqSamplerConfig{Layout: layout, Rows: 16, Len: 256, Ranks: ranks, Balance: bal, Seed: 2}
				if layout == Packed {
					cfg.Rows, cfg.Len = 4, 1024
				}
				e, err := MeasureEpoch(seqs, cfg, 0)
				if err != nil {
					t.Fatal(err)
				}
				imb[bal], _ = e.RankImbalance()
			}
			t.Logf("%v, %d ranks: imbalance none %.4f, lpt %.4f, kk %.4f", layout, ranks, imb[BalanceNone], imb[BalanceLPT], imb[BalanceKK])
			if imb[BalanceLPT] > 1.05 || imb[BalanceKK] > 1.05 || imb[BalanceKK] >= imb[BalanceNone] {
				t.Errorf("%v, %d ranks: imbalance none %.4f, lpt %.4f, kk %.4f", layout, ranks, imb[BalanceNone], imb[BalanceLPT], imb[BalanceKK])
			}
		}
	}
}

// TestKarmarkarKarp checks the partitioner on small cases with known
// optima.
func TestKarmarkarKarp(t *testing.T) {
	for _, c := range []struct {
		w      []int64
		nr     int
		group  int
		spread int64 // max - min of the subset sums
	}{
		{[]int64{8, 7, 6, 5, 4}, 2, 1, 2},          // KK's classic: {8,6} {7,5,4}, optimum 0 is missed
		{[]int64{10, 10, 10, 10}, 4, 1, 0},         // one each
		{[]int64{9, 8, 7, 3, 2, 1}, 3, 3, 0},       // balanced: {9,1} {8,2} {7,3}
		{[]int64{5, 5, 5, 5, 5, 5, 1, 1}, 2, 2, 0}, // balanced, 4 each
	} {
		var kk kkScratch
		items := make([]int32, len(c.w))
		for i := range items {
			items[i] = int32(i)
		}
		out := make([][]int32, c.nr)
		kk.run(items, func(i int32) int64 { return c.w[i] }, c.nr, c.group, out)
		var lo, hi int64 = 1 << 62, 0
		n := 0
		for _, sub := range out {
			var s int64
			for _, i := range sub {
				s += c.w[i]
			}
			n += len(sub)
			lo, hi = min(lo, s), max(hi, s)
			if c.group > 1 && len(sub) != len(c.w)/c.nr {
				t.Errorf("%v: balanced subset of %d", c.w, len(sub))
			}
		}
		if n != len(c.w) || hi-lo != c.spread {
			t.Errorf("%v into %d: %v, spread %d, want %d", c.w, c.nr, out, hi-lo, c.spread)
		}
	}
}

func TestSeqSamplerRejects(t *testing.T) {
	seqs := lenSeqs(10, 8, 5)
	for _, cfg := range []SeqSamplerConfig{
		{Rows: 0, Len: 8},
		{Rows: 2, Len: 4},
		{Rows: 2, Len: 8, PadMultiple: 9},
		{Rows: 2, Len: 8, Layout: 7},
		{Rows: 2, Len: 8, Ranks: -1},
	} {
		if _, err := NewSeqSampler(seqs, cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	if _, err := NewSeqSampler(nil, SeqSamplerConfig{Rows: 1, Len: 1}); err == nil {
		t.Error("no sequences accepted")
	}
}
