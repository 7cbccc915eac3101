package train

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/gallop-dev/gallop/internal/gocpu"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/batch"
	"github.com/gallop-dev/gallop/data/dataset"
	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/data/sim"
	"github.com/gallop-dev/gallop/model"
)

type fixture struct {
	w         *batch.Windows
	refs      []batch.Ref
	mean, std *tensors.Tensor
	m         *model.MLP
}

func newFixture(t *testing.T) *fixture {
	cfg := sim.DefaultConfig()
	cfg.Events = 5000
	cfg.Instruments = cfg.Instruments[:1]
	series, err := dataset.Simulated(cfg, dataset.Labeling{Horizon: 20, Theta: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	const W = 5
	w := &batch.Windows{Series: series, F: feature.Count, W: W}
	sp, err := batch.TimeSplit(series, W, 20, 20, 0.8)
	if err != nil {
		t.Fatal(err)
	}
	nz := batch.FitNormalizer(w, sp.Train)
	m, _ := model.NewMLP(W, feature.Count, []int{32, 16}, 3)
	return &fixture{w: w, refs: sp.Train, m: m,
		mean: tensors.FromFlatDataAndDimensions(nz.Mean, feature.Count),
		std:  tensors.FromFlatDataAndDimensions(nz.Std, feature.Count)}
}

// trainSteps runs steps [st.Step, until) with a fresh loader positioned by
// the sampler state.
func (f *fixture) trainSteps(t *testing.T, s *Stepper, st *State, sm *batch.Sampler, until int64) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ld, err := batch.NewLoader(ctx, f.w, f.refs, sm, batch.LoaderConfig{BatchSize: 32, Prefetch: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer ld.Close()
	sched := OneCycle{Max: 1e-2, Total: until}
	for st.Step < until {
		b, err := ld.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Step(st, sched.LR(st.Step), f.mean, f.std, b.X, b.Y); err != nil {
			t.Fatal(err)
		}
		ld.Release(b)
	}
}

func flat(t *testing.T, ts []*tensors.Tensor) [][]float32 {
	var out [][]float32
	for _, x := range ts {
		out = append(out, tensors.MustCopyFlatData[float32](x))
	}
	return out
}

// TestResumeIsBitwiseIdentical trains 2N steps straight, and N steps,
// checkpoint, a fresh process state loaded from it, N more steps; the
// weights and optimizer moments must be equal bit for bit.
func TestResumeIsBitwiseIdentical(t *testing.T) {
	f := newFixture(t)
	be, err := gocpu.New()
	if err != nil {
		t.Fatal(err)
	}
	const N = 15
	s := NewStepper(be, f.m, DefaultOptimizer())

	straight := s.NewState(3)
	f.trainSteps(t, s, straight, batch.NewSampler(len(f.refs), 9, true), 2*N)

	// Stop after N. The loader prefetches ahead, so the sampler's own state
	// is past N batches: the checkpoint must record the state that goes with
	// the last consumed batch, as gallop train does (Batch.State).
	st := s.NewState(3)
	sm := batch.NewSampler(len(f.refs), 9, true)
	ctx, cancel := context.WithCancel(context.Background())
	ld, _ := batch.NewLoader(ctx, f.w, f.refs, sm, batch.LoaderConfig{BatchSize: 32, Prefetch: 3})
	var state batch.SamplerState
	sched := OneCycle{Max: 1e-2, Total: 2 * N}
	for st.Step < N {
		b, err := ld.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Step(st, sched.LR(st.Step), f.mean, f.std, b.X, b.Y); err != nil {
			t.Fatal(err)
		}
		state = b.State
		ld.Release(b)
	}
	cancel()
	ld.Close()
	dir := t.TempDir()
	p, err := SaveCheckpoint(dir, f.m, st, Checkpoint{Sampler: state, Seed: 9}, 0)
	if err != nil {
		t.Fatal(err)
	}

	s2 := NewStepper(be, f.m, DefaultOptimizer())
	st2, ck, err := LoadCheckpoint(p, f.m)
	if err != nil {
		t.Fatal(err)
	}
	sm2 := batch.NewSampler(len(f.refs), ck.Seed, true)
	if err := sm2.Restore(ck.Sampler); err != nil {
		t.Fatal(err)
	}
	f.trainSteps(t, s2, st2, sm2, 2*N)

	for name, pair := range map[string][2][]*tensors.Tensor{
		"params": {straight.Params, st2.Params}, "m": {straight.M, st2.M}, "v": {straight.V, st2.V},
	} {
		a, b := flat(t, pair[0]), flat(t, pair[1])
		for i := range a {
			for j := range a[i] {
				if math.Float32bits(a[i][j]) != math.Float32bits(b[i][j]) {
					t.Fatalf("%s[%d][%d]: straight %v, resumed %v", name, i, j, a[i][j], b[i][j])
				}
			}
		}
	}
}

// TestInterruptedSaveKeepsPreviousCheckpoint simulates a crash in the middle
// of writing a checkpoint (a stray temporary file, no rename) and checks the
// previous one still loads and is the latest.
func TestInterruptedSaveKeepsPreviousCheckpoint(t *testing.T) {
	f := newFixture(t)
	be, _ := gocpu.New()
	s := NewStepper(be, f.m, DefaultOptimizer())
	st := s.NewState(1)
	dir := t.TempDir()
	p, err := SaveCheckpoint(dir, f.m, st, Checkpoint{}, 2)
	if err != nil {
		t.Fatal(err)
	}
	// What a killed writer leaves: a partial temp file beside it.
	os.WriteFile(filepath.Join(dir, ".ckpt-000000005.safetensors.tmp-123"), []byte("partial"), 0o644)
	latest, err := LatestCheckpoint(dir)
	if err != nil || latest != p {
		t.Fatalf("latest = %q, %v; want %q", latest, err, p)
	}
	if _, _, err := LoadCheckpoint(latest, f.m); err != nil {
		t.Fatal(err)
	}
	// keep-last-N.
	for i := 0; i < 3; i++ {
		st.Step++
		if _, err := SaveCheckpoint(dir, f.m, st, Checkpoint{}, 2); err != nil {
			t.Fatal(err)
		}
	}
	all, _ := ListCheckpoints(dir)
	if len(all) != 2 || all[1] != CheckpointPath(dir, 3) {
		t.Fatalf("keep 2: %v", all)
	}
	// A truncated checkpoint is refused with its name.
	os.WriteFile(all[1], []byte("garbage"), 0o644)
	if _, _, err := LoadCheckpoint(all[1], f.m); err == nil {
		t.Fatal("corrupt checkpoint loaded")
	}
}

func TestLossDecreases(t *testing.T) {
	f := newFixture(t)
	be, _ := gocpu.New()
	s := NewStepper(be, f.m, DefaultOptimizer())
	st := s.NewState(1)
	x := tensors.FromShape(shapeF32(64, f.w.SampleSize()))
	y := make([]int32, 64)
	x.MutableFlatData(func(fl any) { f.w.Gather(f.refs[:64], fl.([]float32), y) })
	yt := tensors.FromFlatDataAndDimensions(y, 64)
	var first, last float32
	for i := 0; i < 60; i++ {
		out, err := s.Step(st, 3e-3, f.mean, f.std, x, yt)
		if err != nil {
			t.Fatal(err)
		}
		l := out.Loss.Value().(float32)
		if i == 0 {
			first = l
		}
		last = l
	}
	if !(last < first*0.5) {
		t.Fatalf("overfitting one batch: loss %v → %v", first, last)
	}
}

func TestNonFiniteStepLeavesStateUnchanged(t *testing.T) {
	f := newFixture(t)
	be, _ := gocpu.New()
	s := NewStepper(be, f.m, DefaultOptimizer())
	st := s.NewState(1)
	before := flat(t, st.Params)
	xs := make([]float32, 8*f.w.SampleSize())
	xs[3] = float32(math.NaN())
	out, err := s.Step(st, 1e-2, f.mean, f.std, tensors.FromFlatDataAndDimensions(xs, 8, f.w.SampleSize()), tensors.FromFlatDataAndDimensions(make([]int32, 8), 8))
	if err != nil {
		t.Fatal(err)
	}
	if out.Finite.Value().(float32) != 0 {
		t.Fatal("NaN input not flagged")
	}
	after := flat(t, st.Params)
	for i := range before {
		for j := range before[i] {
			if before[i][j] != after[i][j] {
				t.Fatalf("param %d changed by a non-finite step", i)
			}
		}
	}
}

func TestSchedules(t *testing.T) {
	o := OneCycle{Max: 1, Total: 100}
	if got := o.LR(0); math.Abs(got-1.0/25) > 1e-12 {
		t.Errorf("one-cycle start %v", got)
	}
	if got := o.LR(25); math.Abs(got-1) > 1e-12 {
		t.Errorf("one-cycle peak %v", got)
	}
	if got := o.LR(100); math.Abs(got-1.0/25/1e4) > 1e-12 {
		t.Errorf("one-cycle end %v", got)
	}
	for s := int64(1); s < 100; s++ {
		up := s <= 25
		if (o.LR(s) > o.LR(s-1)) != up && o.LR(s) != o.LR(s-1) {
			t.Fatalf("one-cycle not monotone around step %d", s)
		}
	}
	w := WarmupCosine{Max: 1, Min: 0.1, Warmup: 10, Total: 110}
	if w.LR(9) != 1 || math.Abs(w.LR(110)-0.1) > 1e-12 || w.LR(0) != 0.1 {
		t.Errorf("warmup-cosine %v %v %v", w.LR(0), w.LR(9), w.LR(110))
	}
	if _, err := ParseSchedule("nope", 1, 1); err == nil {
		t.Error("unknown schedule accepted")
	}
}

func TestConfusionMetrics(t *testing.T) {
	c := NewConfusion(3)
	// true\pred: class 0: 3 right, 1 as class 1; class 1: 2 right; class 2: 1 as class 0.
	for _, p := range [][2]int{{0, 0}, {0, 0}, {0, 0}, {0, 1}, {1, 1}, {1, 1}, {2, 0}} {
		c.Add(p[0], p[1])
	}
	if got := c.Accuracy(); math.Abs(got-5.0/7) > 1e-12 {
		t.Errorf("accuracy %v", got)
	}
	f1 := c.F1()
	want := []float64{2 * 3.0 / (6 + 1 + 1), 2 * 2.0 / (4 + 1 + 0), 0}
	for i := range want {
		if math.Abs(f1[i]-want[i]) > 1e-12 {
			t.Errorf("F1[%d] = %v, want %v", i, f1[i], want[i])
		}
	}
	b := c.Majority()
	if b.Accuracy() != 4.0/7 || math.Abs(b.MacroF1()-(2*4.0/(8+3))/3) > 1e-12 {
		t.Errorf("majority %v %v", b.Accuracy(), b.MacroF1())
	}
}
