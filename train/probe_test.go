package train

import (
	"context"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/batch"
	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/internal/gocpu"
	"github.com/gallop-dev/gallop/model"
)

// TestProbeDevicesLeavesTraining: probing the devices between steps
// (Runner.ProbeDevices, SeqRunner.ProbeDevices) times each device's step
// and changes nothing: the run with probes trains bit for bit as the one
// without, for rows and for sequences.
func TestProbeDevicesLeavesTraining(t *testing.T) {
	f := newFixture(t)
	be, _ := gocpu.New()
	ctx := context.Background()
	norm := batch.Normalizer{Mean: tensors.MustCopyFlatData[float32](f.mean), Std: tensors.MustCopyFlatData[float32](f.std)}
	const steps = 4
	rowsRun := func(probe bool) (*State, []float32) {
		s := NewStepper(be, f.m, DefaultOptimizer())
		st := s.NewState(4)
		r, err := NewRunner(s, st, f.w, norm, 1, ParallelOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cfg := r.LoaderConfig(batch.LoaderConfig{})
		cfg.BatchSize, cfg.Prefetch = 16, 2
		refs := f.refs[:200]
		l, err := batch.NewLoader(ctx, f.w, refs, batch.NewSampler(len(refs), 5, true), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		var losses []float32
		var compiled <-chan error
		for i := range steps {
			b, err := l.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if probe && i == 0 {
				// Compiled on another goroutine while step 0 runs.
				compiled = r.CompileProbe(st, b.Rows)
			}
			if probe && i == 1 {
				if err := <-compiled; err != nil {
					t.Fatal(err)
				}
			}
			if probe && i%2 == 1 {
				times, err := r.ProbeDevices(st, b.Rows, 2)
				if err != nil {
					t.Fatal(err)
				}
				if len(times) != 1 || times[0] <= 0 {
					t.Fatalf("step %d: probe times %v, want one positive", i, times)
				}
			}
			o, err := r.Step(st, 1e-2, b.Rows)
			if err != nil {
				t.Fatal(err)
			}
			losses = append(losses, o.Value(o.Loss))
			l.Release(b)
		}
		return st, losses
	}
	sameRun(t, "rows", rowsRun)

	gru, _ := model.NewGRU(4, feature.Count, 8, 3)
	seqSteps := f.seqSteps(t, batch.Packed, 1, 6, steps)
	seqRun := func(probe bool) (*State, []float32) {
		s := NewStepper(be, gru, DefaultOptimizer())
		st := s.NewState(4)
		r, err := NewSeqRunner(s, st, norm, 1, ParallelOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var losses []float32
		for i, bs := range seqSteps {
			if probe && i == 1 {
				if err := <-r.CompileProbe(st, bs); err != nil {
					t.Fatal(err)
				}
			}
			if probe {
				times, err := r.ProbeDevices(st, bs, 1)
				if err != nil {
					t.Fatal(err)
				}
				if len(times) != 1 || times[0] <= 0 {
					t.Fatalf("sequence step %d: probe times %v, want one positive", i, times)
				}
			}
			o, err := r.Step(st, 1e-2, bs)
			if err != nil {
				t.Fatal(err)
			}
			losses = append(losses, o.Value(o.Loss))
		}
		return st, losses
	}
	sameRun(t, "sequences", seqRun)
	s := NewStepper(be, gru, DefaultOptimizer())
	r, _ := NewSeqRunner(s, s.NewState(4), norm, 1, ParallelOptions{})
	if _, err := r.ProbeDevices(s.NewState(4), seqSteps[0][:0], 1); err == nil {
		t.Error("a probe of one device given no batch: no error")
	}
	if err := <-r.CompileProbe(s.NewState(4), nil); err == nil {
		t.Error("compiling a probe of one device given no batch: no error")
	}
}

// sameRun fails t unless run(true), with probes, ends in the state and
// with the losses of run(false), bit for bit, at the same step.
func sameRun(t *testing.T, what string, run func(probe bool) (*State, []float32)) {
	t.Helper()
	ref, want := run(false)
	got, have := run(true)
	for i := range want {
		if have[i] != want[i] {
			t.Errorf("%s, step %d: loss %v with probes, %v without", what, i, have[i], want[i])
		}
	}
	if d := maxParamDiff(ref, got); d != 0 || got.Step != ref.Step {
		t.Errorf("%s: with probes at step %d (without, %d), parameters differ by up to %g", what, got.Step, ref.Step, d)
	}
}
