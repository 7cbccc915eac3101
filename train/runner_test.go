package train

import (
	"context"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/batch"
	"github.com/gallop-dev/gallop/internal/gocpu"
)

// TestRunnerEqualsHostSteps: a loop of Runner.Step on row batches from a
// loader configured by Runner.LoaderConfig trains, bit for bit, as
// Stepper.Step on the same batches gathered on the host; StepN as Step.
func TestRunnerEqualsHostSteps(t *testing.T) {
	f := newFixture(t)
	be, _ := gocpu.New()
	ctx := context.Background()
	const steps, B = 6, 16
	refs := f.refs[:400]
	loader := func(cfg batch.LoaderConfig) *batch.Loader {
		cfg.BatchSize, cfg.Prefetch = B, 2
		l, err := batch.NewLoader(ctx, f.w, refs, batch.NewSampler(len(refs), 3, true), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Close)
		return l
	}
	host := NewStepper(be, f.m, DefaultOptimizer())
	sh := host.NewState(4)
	hl := loader(batch.LoaderConfig{})
	var want []float32
	for i := range steps {
		b, err := hl.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		o, err := host.Step(sh, 1e-3*float64(i+1), f.mean, f.std, b.X, b.Y)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, o.Value(o.Loss))
		hl.Release(b)
	}
	norm := batch.Normalizer{Mean: tensors.MustCopyFlatData[float32](f.mean), Std: tensors.MustCopyFlatData[float32](f.std)}
	for _, perCall := range []int{1, 3} {
		s := NewStepper(be, f.m, DefaultOptimizer())
		st := s.NewState(4)
		r, err := NewRunner(s, st, f.w, norm, 1, ParallelOptions{})
		if err != nil {
			t.Fatal(err)
		}
		l := loader(r.LoaderConfig(batch.LoaderConfig{}))
		var got []float32
		for i := 0; i < steps; i += perCall {
			var lrs []float64
			var rows []*tensors.Tensor
			var bs []*batch.Batch
			for j := range perCall {
				b, err := l.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				lrs, rows, bs = append(lrs, 1e-3*float64(i+j+1)), append(rows, b.Rows), append(bs, b)
			}
			var outs []StepOut
			if perCall == 1 {
				o, err := r.Step(st, lrs[0], rows[0])
				if err != nil {
					t.Fatal(err)
				}
				outs = []StepOut{o}
			} else if outs, err = r.StepN(st, lrs, rows); err != nil {
				t.Fatal(err)
			}
			for j, o := range outs {
				got = append(got, o.Value(o.Loss))
				l.Release(bs[j])
			}
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%d per call, step %d: loss %v, host batches %v", perCall, i, got[i], want[i])
			}
		}
		for i := range sh.Params {
			a, b := tensors.MustCopyFlatData[float32](sh.Params[i]), tensors.MustCopyFlatData[float32](st.Params[i])
			for j := range a {
				if a[j] != b[j] {
					t.Fatalf("%d per call: param %d[%d] %v, host batches %v", perCall, i, j, b[j], a[j])
				}
			}
		}
	}
	two := NewStepper(be, f.m, DefaultOptimizer())
	if _, err := NewRunner(two, two.NewState(1), f.w, norm, 2, ParallelOptions{}); err == nil || !strings.Contains(err.Error(), "2 devices, but the backend has 1") {
		t.Errorf("a runner over 2 devices on a 1-device backend: %v", err)
	}
	// With accumulation a Runner steps micro-batches (StepRows); several
	// steps per call do not combine with it.
	acc := NewStepper(be, f.m, DefaultOptimizer()).WithAccumulation(2)
	sa := acc.NewState(1)
	ra, err := NewRunner(acc, sa, f.w, norm, 1, ParallelOptions{})
	if err != nil {
		t.Fatalf("a runner with gradient accumulation: %v", err)
	}
	la := loader(ra.LoaderConfig(batch.LoaderConfig{}))
	for i := range 2 {
		b, err := la.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		o, err := ra.Step(sa, 1e-3, b.Rows)
		if err != nil || o.Applied != (i == 1) {
			t.Fatalf("micro-batch %d: applied %v, %v", i, o.Applied, err)
		}
		la.Release(b)
	}
	if sa.Step != 1 {
		t.Fatalf("two micro-batches of two made %d updates", sa.Step)
	}
	if _, err := ra.StepN(sa, []float64{1e-3, 1e-3}, []*tensors.Tensor{nil, nil}); err == nil {
		t.Error("several steps per call with accumulation: no error")
	}
}
