package train

import (
	"fmt"
	"math"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/batch"
	"github.com/gallop-dev/gallop/internal/gocpu"
)

// TestReplicasStepOnOneDevice: the replicas strategy's step, built for one
// device (no collective), equals StepRows bit for bit with a float32
// reduction; with a bfloat16 reduction the first loss is the same, the
// update is close but not identical (the gradients were rounded).
func TestReplicasStepOnOneDevice(t *testing.T) {
	f := newFixture(t)
	be, _ := gocpu.New()
	const steps = 3
	ref := NewStepper(be, f.m, DefaultOptimizer())
	sr := ref.NewState(7)
	data, rows := f.rowBatches(t, ref, 300, steps, 16)
	var want []float32
	for i := range steps {
		o, err := ref.StepRows(sr, 1e-3, f.mean, f.std, data, rows[i])
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, o.Value(o.Loss))
	}
	for _, reduce := range []dtypes.DType{dtypes.Float32, dtypes.BFloat16} {
		s := NewStepper(be, f.m, DefaultOptimizer())
		st := s.NewState(7)
		s.fillAux(st)
		exec := MustNewExec(be, s.replicasGraph(f.w.W, 1, ParallelOptions{Reduce: reduce, BucketBytes: 4096}))
		for i := range steps {
			o, err := s.runFused(exec, st, 1e-3, time.Time{}, f.mean, f.std, data.Features, data.Labels, rows[i])
			if err != nil {
				t.Fatal(err)
			}
			got := o.Value(o.Loss)
			switch {
			case reduce == dtypes.Float32 && got != want[i]:
				t.Errorf("float32, step %d: loss %v, StepRows %v", i, got, want[i])
			case i == 0 && got != want[0]:
				t.Errorf("%s, step 0: loss %v, StepRows %v", reduce, got, want[0])
			case math.Abs(float64(got-want[i])) > 1e-3:
				t.Errorf("%s, step %d: loss %v, StepRows %v", reduce, i, got, want[i])
			}
		}
		var maxDiff float64
		for i := range st.Params {
			a, b := tensors.MustCopyFlatData[float32](sr.Params[i]), tensors.MustCopyFlatData[float32](st.Params[i])
			for j := range a {
				maxDiff = max(maxDiff, math.Abs(float64(a[j]-b[j])))
			}
		}
		if reduce == dtypes.Float32 && maxDiff != 0 {
			t.Errorf("float32 reduction: parameters differ from StepRows by up to %g", maxDiff)
		}
		// Adam's steps are about lr = 1e-3 each; rounding the gradients to
		// bf16 moves them by a small fraction of that.
		if reduce == dtypes.BFloat16 && (maxDiff == 0 || maxDiff > 3e-4) {
			t.Errorf("bfloat16 reduction: parameters differ from StepRows by %g, want (0, 3e-4]", maxDiff)
		}
	}
}

func TestParallelOptions(t *testing.T) {
	o, err := ParallelOptions{}.withDefaults()
	if err != nil || o.Strategy != Sharding || o.Reduce != dtypes.Float32 {
		t.Errorf("defaults: %+v, %v", o, err)
	}
	for _, bad := range []ParallelOptions{
		{Strategy: "ring"},
		{Strategy: Sharding, Reduce: dtypes.BFloat16},
		{Strategy: Replicas, Reduce: dtypes.Float16},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if o, err := ParseParallelOptions("replicas", "bf16"); err != nil || o != (ParallelOptions{Strategy: Replicas, Reduce: dtypes.BFloat16}) {
		t.Error(o, err)
	}
	if o, err := ParseParallelOptions("sharding", "fp32"); err != nil || o != (ParallelOptions{Strategy: Sharding, Reduce: dtypes.Float32}) {
		t.Error(o, err)
	}
	for _, bad := range [][2]string{{"sharding", "bf16"}, {"replicas", "fp8"}, {"ring", "fp32"}} {
		if _, err := ParseParallelOptions(bad[0], bad[1]); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	be, _ := gocpu.New()
	f := newFixture(t)
	s := NewStepper(be, f.m, DefaultOptimizer())
	if _, err := NewParallel(s, s.NewState(1), nil, nil, 1, 1, 2, ParallelOptions{}); err == nil {
		t.Error("2 devices on a 1-device backend: no error")
	}
}

// TestGradBuckets: gradients are grouped last layer first into buckets of
// at least the cap (in the reduction's dtype), and all of them once.
func TestGradBuckets(t *testing.T) {
	be, _ := gocpu.New()
	g := NewGraph(be, "buckets")
	var grads []*Node
	for i, n := range []int{100, 10, 300, 50, 50} { // float32: 400, 40, 1200, 200, 200 bytes
		grads = append(grads, Parameter(g, fmt.Sprint("g", i), shapes.Make(dtypes.Float32, n)))
	}
	for _, c := range []struct {
		dt   dtypes.DType
		cap  int64
		want [][]int
	}{
		{dtypes.Float32, 0, [][]int{{4, 3, 2, 1, 0}}},
		{dtypes.Float32, 400, [][]int{{4, 3}, {2}, {1, 0}}},
		{dtypes.BFloat16, 400, [][]int{{4, 3, 2}, {1, 0}}},
		{dtypes.Float32, 1, [][]int{{4}, {3}, {2}, {1}, {0}}},
	} {
		if got := gradBuckets(grads, c.dt, c.cap); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s, cap %d: %v, want %v", c.dt, c.cap, got, c.want)
		}
	}
}

// TestReplicasStepsChained: k replicas steps chained in one call, as
// Parallel.StepN compiles them (here for one device, no collective), equal
// StepRowsN bit for bit.
func TestReplicasStepsChained(t *testing.T) {
	f := newFixture(t)
	be, _ := gocpu.New()
	const k = 3
	lrs := []float64{1e-3, 2e-3, 5e-4}
	ref := NewStepper(be, f.m, DefaultOptimizer())
	sr := ref.NewState(9)
	data, rows := f.rowBatches(t, ref, 500, k, 16)
	want, err := ref.StepRowsN(sr, lrs, f.mean, f.std, data, rows)
	if err != nil {
		t.Fatal(err)
	}
	s := NewStepper(be, f.m, DefaultOptimizer())
	st := s.NewState(9)
	s.fillAux(st)
	exec := MustNewExec(be, s.chainSteps(s.replicasGraph(f.w.W, 1, ParallelOptions{Reduce: dtypes.Float32, BucketBytes: 1}), k, 4, 1))
	args, err := s.stateArgsWith(st, s.hyperN(st, lrs), 0, 4+k)
	if err != nil {
		t.Fatal(err)
	}
	args = append(args, f.mean, f.std, data.Features, data.Labels)
	for _, r := range rows {
		args = append(args, r)
	}
	outs, err := exec.Call(args...)
	if err != nil {
		t.Fatal(err)
	}
	got := s.unpackN(st, outs, lrs, time.Time{})
	for i := range k {
		if a, b := got[i].Value(got[i].Loss), want[i].Value(want[i].Loss); a != b || got[i].Step != want[i].Step {
			t.Errorf("step %d: loss %v (step %d), StepRowsN %v (step %d)", i, a, got[i].Step, b, want[i].Step)
		}
	}
	if st.Step != sr.Step {
		t.Fatalf("state at step %d, StepRowsN's at %d", st.Step, sr.Step)
	}
	for _, g := range [][2][]*tensors.Tensor{{sr.Params, st.Params}, {sr.M, st.M}, {sr.V, st.V}} {
		for i := range g[0] {
			a, b := tensors.MustCopyFlatData[float32](g[0][i]), tensors.MustCopyFlatData[float32](g[1][i])
			for j := range a {
				if a[j] != b[j] {
					t.Fatalf("state tensor %d[%d]: StepRowsN %v, chained replicas %v", i, j, a[j], b[j])
				}
			}
		}
	}
}

// TestReplicasAccumulationOnOneDevice: an accumulated data-parallel step
// (Parallel.Step with WithAccumulation, its graphs built for one device,
// no collective) trains bit for bit as StepRows accumulating on one
// device: the same losses for every micro-batch, the same state after
// each update, and the sums back at zero.
func TestReplicasAccumulationOnOneDevice(t *testing.T) {
	f := newFixture(t)
	be, _ := gocpu.New()
	const k, updates = 3, 2
	lrs := []float64{1e-3, 2e-3}
	ref := NewStepper(be, f.m, DefaultOptimizer()).WithAccumulation(k)
	sr := ref.NewState(5)
	data, rows := f.rowBatches(t, ref, 200, k*updates, 16)
	var want []float32
	var applied []bool
	for i := range k * updates {
		o, err := ref.StepRows(sr, lrs[i/k], f.mean, f.std, data, rows[i])
		if err != nil {
			t.Fatal(err)
		}
		want, applied = append(want, o.Value(o.Loss)), append(applied, o.Applied)
	}
	for _, bucket := range []int64{0, 4096} {
		s := NewStepper(be, f.m, DefaultOptimizer()).WithAccumulation(k)
		st := s.NewState(5)
		s.fillAux(st)
		o := ParallelOptions{Strategy: Replicas, Reduce: dtypes.Float32, BucketBytes: bucket}
		p := &Parallel{s: s, n: 1, o: o, reps: []*State{st}, data: []*DeviceData{data}, window: f.w.W,
			accRows: accExecs{micro: MustNewExec(be, s.accumulateMicroGraph(s.rowsMicro(f.w.W, 1))),
				last: MustNewExec(be, s.accumulateLastGraph(s.rowsMicro(f.w.W, 1), 1, o, 1/float32(k)))}}
		for i := range k * updates {
			out, err := p.Step(lrs[i/k], []*tensors.Tensor{f.mean}, []*tensors.Tensor{f.std}, []*tensors.Tensor{rows[i]})
			if err != nil {
				t.Fatal(err)
			}
			if got := out.Value(out.Loss); got != want[i] || out.Applied != applied[i] {
				t.Errorf("bucket %d, micro-batch %d: loss %v applied %v, StepRows %v applied %v", bucket, i, got, out.Applied, want[i], applied[i])
			}
			if out.Applied && out.Value(out.Skipped) != 0 {
				t.Errorf("bucket %d, micro-batch %d: update skipped", bucket, i)
			}
		}
		if st.Step != updates || st.Micro != 0 {
			t.Fatalf("bucket %d: state at step %d micro-batch %d, want %d and 0", bucket, st.Step, st.Micro, updates)
		}
		for _, g := range [][2][]*tensors.Tensor{{sr.Params, st.Params}, {sr.M, st.M}, {sr.V, st.V}} {
			for i := range g[0] {
				a, b := tensors.MustCopyFlatData[float32](g[0][i]), tensors.MustCopyFlatData[float32](g[1][i])
				for j := range a {
					if a[j] != b[j] {
						t.Fatalf("bucket %d: state tensor %d[%d]: StepRows %v, accumulated replicas %v", bucket, i, j, a[j], b[j])
					}
				}
			}
		}
		for i, a := range st.Acc {
			for _, v := range tensors.MustCopyFlatData[float32](a) {
				if v != 0 {
					t.Fatalf("bucket %d: gradient sum %d not reset after the update", bucket, i)
				}
			}
		}
	}
}

// TestParallelAccumulationEqualsOneDevice runs on the devices named by
// $GALLOP_TEST_DEVICES (e.g. "gpu:0,1"; skipped when unset, as GoMLX's Go
// backend has one device): an accumulated data-parallel step, each device
// summing its own micro-batches' gradients and all-reducing them once per
// update, trains like one device accumulating the same global
// micro-batches, under either strategy.
func TestParallelAccumulationEqualsOneDevice(t *testing.T) {
	be, n := testDevices(t)
	f := newFixture(t)
	const k, updates, B = 3, 4, 32 // B global rows per micro-batch
	opt := Optimizer{Name: "sgd", Momentum: 0.9, ClipNorm: 1}
	ref := NewStepper(be, f.m, opt).WithAccumulation(k)
	sr := ref.NewState(3)
	data, rows := f.rowBatches(t, ref, 100, k*updates, B)
	var want []float32
	for i := range k * updates {
		o, err := ref.StepRows(sr, 0.05, f.mean, f.std, data, rows[i])
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, o.Value(o.Loss))
	}
	norm := batch.Normalizer{Mean: tensors.MustCopyFlatData[float32](f.mean), Std: tensors.MustCopyFlatData[float32](f.std)}
	for _, strat := range []Strategy{Sharding, Replicas} {
		s := NewStepper(be, f.m, opt).WithAccumulation(k)
		st := s.NewState(3)
		r, err := NewRunner(s, st, f.w, norm, n, ParallelOptions{Strategy: strat, BucketBytes: 1024})
		if err != nil {
			t.Fatal(err)
		}
		for i := range k * updates {
			o, err := r.Step(st, 0.05, rows[i])
			if err != nil {
				t.Fatal(err)
			}
			if got := o.Value(o.Loss); !lossNear(got, want[i]) || o.Applied != ((i+1)%k == 0) {
				t.Errorf("%s, micro-batch %d: loss %v applied %v, one device %v", strat, i, got, o.Applied, want[i])
			}
		}
		if st.Step != updates {
			t.Fatalf("%s: %d updates, want %d", strat, st.Step, updates)
		}
		paramsNear(t, fmt.Sprintf("%s on %d devices, after %d updates", strat, n, updates), sr, st)
	}
}

// TestRunnerSetStateRestarts: a Runner given a checkpoint's State by
// SetState (a rollback) takes the steps the uninterrupted run took from
// there; on the devices of $GALLOP_TEST_DEVICES (data parallel, every
// replica restarted) within the multi-GPU tolerance, and refusing to step
// the State it had before; without it, on one CPU device, bit for bit.
func TestRunnerSetStateRestarts(t *testing.T) {
	be, n := compute.Backend(nil), 1
	if os.Getenv("GALLOP_TEST_DEVICES") != "" {
		be, n = testDevices(t)
	} else {
		be, _ = gocpu.New()
	}
	f := newFixture(t)
	const B = 32
	s := NewStepper(be, f.m, Optimizer{Name: "sgd", Momentum: 0.9})
	_, rows := f.rowBatches(t, s, 100, 4, B)
	norm := batch.Normalizer{Mean: tensors.MustCopyFlatData[float32](f.mean), Std: tensors.MustCopyFlatData[float32](f.std)}
	for _, strat := range []Strategy{Sharding, Replicas} {
		st := s.NewState(3)
		r, err := NewRunner(s, st, f.w, norm, n, ParallelOptions{Strategy: strat})
		if err != nil {
			t.Fatal(err)
		}
		var ckpt string
		var want []float32
		for i := range 4 {
			if i == 2 {
				if ckpt, err = SaveCheckpoint(t.TempDir(), f.m, st, Checkpoint{}, 1); err != nil {
					t.Fatal(err)
				}
			}
			o, err := r.Step(st, 0.05, rows[i])
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, o.Value(o.Loss))
		}
		ns, _, err := LoadCheckpoint(ckpt, f.m)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.SetState(ns); err != nil {
			t.Fatal(err)
		}
		for i := 2; i < 4; i++ {
			o, err := r.Step(ns, 0.05, rows[i])
			if err != nil {
				t.Fatal(err)
			}
			if got := o.Value(o.Loss); !lossNear(got, want[i]) || (n == 1 && got != want[i]) {
				t.Errorf("%s, step %d after SetState: loss %v, uninterrupted %v", strat, i, got, want[i])
			}
		}
		if d := maxParamDiff(st, ns); n == 1 && d != 0 {
			t.Errorf("one device, restarted at step 2: parameters differ by up to %g", d)
		}
		paramsNear(t, fmt.Sprintf("%s on %d devices, restarted at step 2", strat, n), st, ns)
		if _, err := r.Step(st, 0.05, rows[0]); n > 1 && err == nil {
			t.Errorf("%s: stepping the State replaced by SetState: no error", strat)
		}
	}
}
