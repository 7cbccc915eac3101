package train

import (
	"math"
	"testing"

	"github.com/gallop-dev/gallop/internal/gocpu"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/batch"
)

// overfit trains one fixed batch and returns the first and last loss.
func overfit(t *testing.T, f *fixture, s *Stepper, steps int, lr float64) (float32, float32, *State) {
	st := s.NewState(1)
	x := tensors.FromShape(shapeF32(64, f.w.SampleSize()))
	y := make([]int32, 64)
	x.MutableFlatData(func(fl any) { f.w.Gather(f.refs[:64], fl.([]float32), y) })
	yt := tensors.FromFlatDataAndDimensions(y, 64)
	var first, last float32
	for i := 0; i < steps; i++ {
		out, err := s.Step(st, lr, f.mean, f.std, x, yt)
		if err != nil {
			t.Fatal(err)
		}
		l := out.Loss.Value().(float32)
		if i == 0 {
			first = l
		}
		last = l
	}
	return first, last, st
}

func TestMixedPrecisionTrains(t *testing.T) {
	f := newFixture(t)
	be, _ := gocpu.New()
	for _, p := range []Precision{BF16, FP16} {
		s := NewStepper(be, f.m, DefaultOptimizer()).WithPrecision(p)
		first, last, st := overfit(t, f, s, 60, 3e-3)
		if !(last < first*0.6) || math.IsNaN(float64(last)) {
			t.Errorf("%s: loss %v → %v", p, first, last)
		}
		// Master weights stay float32.
		if dt := st.Params[0].DType().String(); dt != "Float32" {
			t.Errorf("%s: master weights are %s", p, dt)
		}
	}
}

// TestFP16OverflowSkipsAndRescales starts fp16 at a loss scale that makes
// the scaled gradients overflow: those steps are skipped on the device (the
// weights do not change), the scale halves each time, the guard flag stays
// 1 (an overflow is not a NaN in the model), and training then proceeds.
func TestFP16OverflowSkipsAndRescales(t *testing.T) {
	f := newFixture(t)
	be, _ := gocpu.New()
	s := NewStepper(be, f.m, DefaultOptimizer()).WithPrecision(FP16)
	st := s.NewState(1)
	st.Amp = tensors.FromFlatDataAndDimensions([]float32{1e30, 0}, 2)
	before := tensors.MustCopyFlatData[float32](st.Params[0])
	x := tensors.FromShape(shapeF32(32, f.w.SampleSize()))
	y := make([]int32, 32)
	x.MutableFlatData(func(fl any) { f.w.Gather(f.refs[:32], fl.([]float32), y) })
	yt := tensors.FromFlatDataAndDimensions(y, 32)
	out, err := s.Step(st, 1e-3, f.mean, f.std, x, yt)
	if err != nil {
		t.Fatal(err)
	}
	if out.Skipped.Value().(float32) != 1 || out.Finite.Value().(float32) != 1 {
		t.Fatalf("overflow: skipped %v finite %v", out.Skipped.Value(), out.Finite.Value())
	}
	after := tensors.MustCopyFlatData[float32](st.Params[0])
	for i := range before {
		if before[i] != after[i] {
			t.Fatal("a skipped step changed the weights")
		}
	}
	amp := tensors.MustCopyFlatData[float32](st.Amp)
	if amp[0] != 5e29 {
		t.Fatalf("scale after overflow %v, want halved", amp[0])
	}
	skipped := 1
	for i := 0; i < 200 && skipped < 200; i++ {
		out, _ = s.Step(st, 1e-3, f.mean, f.std, x, yt)
		if out.Skipped.Value().(float32) == 0 {
			break
		}
		skipped++
	}
	if out.Skipped.Value().(float32) != 0 {
		t.Fatal("scale never came down to a usable value")
	}
	t.Logf("%d skipped steps before the scale fit fp16", skipped)
}

// TestAccumulationEqualsLargeBatch: 4 micro-batches of 16 accumulate to the
// same update as one batch of 64.
func TestAccumulationEqualsLargeBatch(t *testing.T) {
	f := newFixture(t)
	be, _ := gocpu.New()
	const B = 64
	x := make([]float32, B*f.w.SampleSize())
	y := make([]int32, B)
	f.w.Gather(f.refs[100:100+B], x, y)
	big := NewStepper(be, f.m, DefaultOptimizer())
	sb := big.NewState(5)
	if _, err := big.Step(sb, 1e-2, f.mean, f.std, tensors.FromFlatDataAndDimensions(x, B, f.w.SampleSize()), tensors.FromFlatDataAndDimensions(y, B)); err != nil {
		t.Fatal(err)
	}
	acc := NewStepper(be, f.m, DefaultOptimizer()).WithAccumulation(4)
	sa := acc.NewState(5)
	n := f.w.SampleSize()
	for k := 0; k < 4; k++ {
		out, err := acc.Step(sa, 1e-2, f.mean, f.std, tensors.FromFlatDataAndDimensions(x[k*16*n:(k+1)*16*n], 16, n), tensors.FromFlatDataAndDimensions(y[k*16:(k+1)*16], 16))
		if err != nil {
			t.Fatal(err)
		}
		if out.Applied != (k == 3) {
			t.Fatalf("micro-batch %d applied=%v", k, out.Applied)
		}
	}
	if sa.Step != 1 || sb.Step != 1 {
		t.Fatalf("steps %d %d", sa.Step, sb.Step)
	}
	for i := range sb.Params {
		a, b := tensors.MustCopyFlatData[float32](sa.Params[i]), tensors.MustCopyFlatData[float32](sb.Params[i])
		for j := range a {
			if math.Abs(float64(a[j]-b[j])) > 1e-5 {
				t.Fatalf("param %d[%d]: accumulated %v, large batch %v", i, j, a[j], b[j])
			}
		}
	}
}

func TestSGDMomentum(t *testing.T) {
	f := newFixture(t)
	be, _ := gocpu.New()
	for _, nesterov := range []bool{false, true} {
		opt := Optimizer{Name: "sgd", Momentum: 0.9, Nesterov: nesterov}
		s := NewStepper(be, f.m, opt)
		first, last, _ := overfit(t, f, s, 80, 0.05)
		if !(last < first*0.6) {
			t.Errorf("sgd nesterov=%v: loss %v → %v", nesterov, first, last)
		}
	}
	if err := (Optimizer{Name: "lion"}).Validate(); err == nil {
		t.Error("unknown optimizer accepted")
	}
}

func TestParsePrecision(t *testing.T) {
	for _, s := range []string{"fp32", "bf16", "fp16", ""} {
		if _, err := ParsePrecision(s); err != nil {
			t.Error(s, err)
		}
	}
	if _, err := ParsePrecision("fp8"); err == nil {
		t.Error("fp8 accepted")
	}
}

// TestStepRowsEqualsStep: gathering windows from a device-resident dataset
// inside the step gives the same update as a batch gathered on the host,
// bit for bit, with and without gradient accumulation (two micro-batches
// a step, the first k-1 calls only accumulating).
func TestStepRowsEqualsStep(t *testing.T) {
	f := newFixture(t)
	be, _ := gocpu.New()
	feats, labels, offs, err := f.w.Flat()
	if err != nil {
		t.Fatal(err)
	}
	type mb struct {
		x       []float32
		y, rows []int32
	}
	var micro []mb
	for _, refs := range [][]batch.Ref{f.refs[200:232], f.refs[232:264]} {
		m := mb{x: make([]float32, len(refs)*f.w.SampleSize()), y: make([]int32, len(refs)), rows: make([]int32, len(refs))}
		f.w.Gather(refs, m.x, m.y)
		batch.GlobalRows(offs, refs, m.rows)
		micro = append(micro, m)
	}
	for _, accum := range []int{1, 2} {
		a := NewStepper(be, f.m, DefaultOptimizer()).WithAccumulation(accum)
		sa := a.NewState(2)
		b := NewStepper(be, f.m, DefaultOptimizer()).WithAccumulation(accum)
		sb := b.NewState(2)
		data, err := b.NewDeviceData(feats, labels, f.w.F, f.w.W)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 6; i++ {
			m := micro[i%2]
			oa, err := a.Step(sa, 1e-3, f.mean, f.std, tensors.FromFlatDataAndDimensions(m.x, len(m.y), f.w.SampleSize()), tensors.FromFlatDataAndDimensions(m.y, len(m.y)))
			if err != nil {
				t.Fatal(err)
			}
			ob, err := b.StepRows(sb, 1e-3, f.mean, f.std, data, tensors.FromFlatDataAndDimensions(m.rows, len(m.rows)))
			if err != nil {
				t.Fatal(err)
			}
			if oa.Loss.Value().(float32) != ob.Loss.Value().(float32) || oa.Applied != ob.Applied {
				t.Fatalf("accumulate %d, call %d: loss %v vs %v, applied %v vs %v", accum, i, oa.Loss.Value(), ob.Loss.Value(), oa.Applied, ob.Applied)
			}
		}
		if sa.Step != int64(6/accum) || sb.Step != sa.Step {
			t.Fatalf("accumulate %d: %d and %d updates after 6 calls", accum, sa.Step, sb.Step)
		}
		for i := range sa.Params {
			pa, pb := tensors.MustCopyFlatData[float32](sa.Params[i]), tensors.MustCopyFlatData[float32](sb.Params[i])
			for j := range pa {
				if pa[j] != pb[j] {
					t.Fatalf("accumulate %d: param %d[%d]: %v vs %v", accum, i, j, pa[j], pb[j])
				}
			}
		}
	}
}

// TestStepRowsNEqualsStepRows: n steps unrolled in one call give, bit for
// bit, the state and per-step losses of n StepRows calls, with a different
// learning rate each step.
func TestStepRowsNEqualsStepRows(t *testing.T) {
	f := newFixture(t)
	be, _ := gocpu.New()
	const n = 3
	a := NewStepper(be, f.m, DefaultOptimizer())
	sa := a.NewState(5)
	b := NewStepper(be, f.m, DefaultOptimizer())
	sb := b.NewState(5)
	data, rows := f.rowBatches(t, a, 100, n, 16)
	lrs := []float64{1e-3, 3e-3, 2e-3}
	var want []float32
	for i := range n {
		o, err := a.StepRows(sa, lrs[i], f.mean, f.std, data, rows[i])
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, o.Value(o.Loss))
	}
	outs, err := b.StepRowsN(sb, lrs, f.mean, f.std, data, rows)
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) != n || sb.Step != int64(n) {
		t.Fatalf("%d outputs, state at step %d; want %d, %d", len(outs), sb.Step, n, n)
	}
	for i, o := range outs {
		if o.Step != int64(i) || o.LR != lrs[i] || o.Value(o.Loss) != want[i] || o.Value(o.Finite) != 1 || o.Value(o.Skipped) != 0 {
			t.Errorf("step %d: %+v loss %v, want loss %v", i, o, o.Value(o.Loss), want[i])
		}
		if flags := o.ParamFiniteFlags(); len(flags) != len(sb.Params) || flags[0] != 1 {
			t.Errorf("step %d: per-parameter flags %v", i, flags)
		}
	}
	for _, g := range [][2][]*tensors.Tensor{{sa.Params, sb.Params}, {sa.M, sb.M}, {sa.V, sb.V}} {
		for i := range g[0] {
			pa, pb := tensors.MustCopyFlatData[float32](g[0][i]), tensors.MustCopyFlatData[float32](g[1][i])
			for j := range pa {
				if pa[j] != pb[j] {
					t.Fatalf("state tensor %d[%d]: %v after %d StepRows, %v after StepRowsN", i, j, pa[j], n, pb[j])
				}
			}
		}
	}
	if _, err := b.StepRowsN(sb, lrs[:2], f.mean, f.std, data, rows); err == nil {
		t.Error("2 learning rates for 3 row sets: no error")
	}
}

// rowBatches puts the fixture's dataset on s's device and returns it with
// n consecutive batches of B row ids, from the fixture's sample from on.
func (f *fixture) rowBatches(t *testing.T, s *Stepper, from, n, B int) (*DeviceData, []*tensors.Tensor) {
	t.Helper()
	feats, labels, offs, err := f.w.Flat()
	if err != nil {
		t.Fatal(err)
	}
	data, err := s.NewDeviceData(feats, labels, f.w.F, f.w.W)
	if err != nil {
		t.Fatal(err)
	}
	var rows []*tensors.Tensor
	for i := range n {
		ids := make([]int32, B)
		batch.GlobalRows(offs, f.refs[from+i*B:from+(i+1)*B], ids)
		rows = append(rows, tensors.FromFlatDataAndDimensions(ids, B))
	}
	return data, rows
}
