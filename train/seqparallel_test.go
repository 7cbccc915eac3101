package train

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/batch"
	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/device"
	"github.com/gallop-dev/gallop/internal/gocpu"
	"github.com/gallop-dev/gallop/model"
)

// seqSteps plans steps global steps of the fixture's series cut into
// sequences of 2 to 24 events (lengths drawn at random), over ranks
// data-parallel ranks of rows rows each, and assembles every rank's batch:
// out[step][rank].
func (f *fixture) seqSteps(t *testing.T, layout batch.Layout, ranks, rows, steps int) [][]*batch.SeqBatch {
	t.Helper()
	var seqs []batch.Seq
	r := rand.New(rand.NewPCG(2, 3))
	for at, n := 0, f.w.Series[0].Rows(); ; {
		l := 2 + r.IntN(23)
		if at+l > n {
			break
		}
		seqs = append(seqs, batch.Seq{Start: uint32(at), End: uint32(at + l)})
		at += l
	}
	sm, err := batch.NewSeqSampler(seqs, batch.SeqSamplerConfig{Layout: layout, Rows: rows, Len: 24, PadMultiple: 24,
		Ranks: ranks, Bucket: ranks * rows, Order: batch.OrderRandom, Balance: batch.BalanceKK, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	src := &batch.SeriesSource{Series: f.w.Series, F: feature.Count}
	var out [][]*batch.SeqBatch
	var plan batch.StepPlan
	for range steps {
		sm.Next(&plan)
		var bs []*batch.SeqBatch
		for r := range ranks {
			b := sm.NewBatch(feature.Count)
			if err := b.Assemble(src, sm.Seqs(), &plan.Ranks[r]); err != nil {
				t.Fatal(err)
			}
			bs = append(bs, b)
		}
		out = append(out, bs)
	}
	return out
}

// stack is the one-device batch of bs stacked along the rows.
func stack(bs []*batch.SeqBatch) (x, seg, y *tensors.Tensor) {
	var xs []float32
	var ss, ys []int32
	rows := 0
	for _, b := range bs {
		xs, ss, ys = append(xs, b.X...), append(ss, b.Segments...), append(ys, b.Labels...)
		rows += b.B
	}
	b := bs[0]
	return tensors.FromFlatDataAndDimensions(xs, rows, b.T, b.F), tensors.FromFlatDataAndDimensions(ss, rows, b.T),
		tensors.FromFlatDataAndDimensions(ys, rows, b.T)
}

// TestSeqReplicasStepOnOneDevice: the replicas strategy's sequence step,
// built for one device (no collective), equals StepSeq bit for bit with a
// float32 reduction, padded and packed; with bfloat16 it stays close.
func TestSeqReplicasStepOnOneDevice(t *testing.T) {
	f := newFixture(t)
	be, _ := gocpu.New()
	m, _ := model.NewGRU(4, feature.Count, 8, 3)
	const steps = 3
	for _, layout := range []batch.Layout{batch.Padded, batch.Packed} {
		batches := f.seqSteps(t, layout, 1, 6, steps)
		ref := NewStepper(be, m, DefaultOptimizer())
		sr := ref.NewState(7)
		var want []float32
		for i := range steps {
			x, seg, y := stack(batches[i])
			o, err := ref.StepSeq(sr, 1e-2, f.mean, f.std, x, seg, y)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, o.Value(o.Loss))
		}
		for _, reduce := range []dtypes.DType{dtypes.Float32, dtypes.BFloat16} {
			s := NewStepper(be, m, DefaultOptimizer())
			st := s.NewState(7)
			s.fillAux(st)
			exec := MustNewExec(be, s.seqReplicasGraph(1, ParallelOptions{Reduce: reduce, BucketBytes: 1024}))
			for i := range steps {
				x, seg, y := stack(batches[i])
				o, err := s.runFused(exec, st, 1e-2, time.Time{}, f.mean, f.std, x, seg, y)
				if err != nil {
					t.Fatal(err)
				}
				got := o.Value(o.Loss)
				switch {
				case reduce == dtypes.Float32 && got != want[i]:
					t.Errorf("%s, float32, step %d: loss %v, StepSeq %v", layout, i, got, want[i])
				case math.Abs(float64(got-want[i])) > 1e-2*math.Abs(float64(want[i])):
					t.Errorf("%s, %s, step %d: loss %v, StepSeq %v", layout, reduce, i, got, want[i])
				}
			}
			d := maxParamDiff(sr, st)
			if reduce == dtypes.Float32 && d != 0 {
				t.Errorf("%s, float32: parameters differ from StepSeq's by up to %g", layout, d)
			}
			if reduce == dtypes.BFloat16 && (d == 0 || d > 1e-2) {
				t.Errorf("%s, bfloat16: parameters differ from StepSeq's by %g, want small but nonzero (rounded gradients)", layout, d)
			}
		}
	}
}

// lossNear reports whether a loss on several devices is within 1e-5,
// relative, of one device's: the multi-GPU tests' tolerance for fp32
// sums taken in another order.
func lossNear(got, want float32) bool {
	return math.Abs(float64(got-want)) <= 1e-5*math.Abs(float64(want))
}

// paramsNear fails t unless st's parameters are within 1e-5 of ref's, the
// one-device run's (the multi-GPU tests' tolerance), and logs how close
// they came; what names the case.
func paramsNear(t *testing.T, what string, ref, st *State) {
	t.Helper()
	if d := maxParamDiff(ref, st); d > 1e-5 {
		t.Errorf("%s: parameters differ from one device's by up to %g", what, d)
	} else {
		t.Logf("%s: losses within 1e-5 relative, parameters within %.1e of one device's", what, d)
	}
}

func maxParamDiff(a, b *State) float64 {
	var d float64
	for i := range a.Params {
		x, y := tensors.MustCopyFlatData[float32](a.Params[i]), tensors.MustCopyFlatData[float32](b.Params[i])
		for j := range x {
			d = max(d, math.Abs(float64(x[j]-y[j])))
		}
	}
	return d
}

// TestSeqParallelEqualsStacked runs on the devices named by
// $GALLOP_TEST_DEVICES (e.g. "gpu:0,1"; skipped when unset, since GoMLX's
// Go backend has one device): a data-parallel sequence step, each device
// on its own rank's batch, under both strategies, trains like one device
// on the ranks' batches stacked, although KK balancing leaves the ranks
// with different numbers of labelled positions.
func TestSeqParallelEqualsStacked(t *testing.T) {
	be, n := testDevices(t)
	f := newFixture(t)
	const steps = 4
	// SGD: a parameter's difference is the learning rate times its
	// gradients' (Adam's update would turn rounding noise in a near-zero
	// gradient into a step of up to the learning rate).
	opt := Optimizer{Name: "sgd", Momentum: 0.9, ClipNorm: 1}
	gru, _ := model.NewGRU(4, feature.Count, 16, 3)
	tf, _ := model.NewTransformer(24, feature.Count, 3, model.TransformerConfig{D: 16, Heads: 2, Layers: 1, FF: 32})
	for _, m := range []model.Model{gru, tf} {
		for _, layout := range []batch.Layout{batch.Padded, batch.Packed} {
			batches := f.seqSteps(t, layout, n, 8, steps)
			uneven := false
			for _, bs := range batches {
				uneven = uneven || bs[0].Stats.Labelled != bs[1].Stats.Labelled
			}
			if !uneven {
				t.Fatalf("%s %s: every step's ranks hold equal labelled positions; the test needs uneven ones", m.Arch(), layout)
			}
			ref := NewStepper(be, m, opt)
			sr := ref.NewState(3)
			var want []float32
			for i := range steps {
				x, seg, y := stack(batches[i])
				o, err := ref.StepSeq(sr, 0.05, f.mean, f.std, x, seg, y)
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, o.Value(o.Loss))
			}
			for _, strat := range []Strategy{Sharding, Replicas} {
				s := NewStepper(be, m, opt)
				st := s.NewState(3)
				r, err := NewSeqRunner(s, st, batch.Normalizer{Mean: tensors.MustCopyFlatData[float32](f.mean), Std: tensors.MustCopyFlatData[float32](f.std)},
					n, ParallelOptions{Strategy: strat})
				if err != nil {
					t.Fatal(err)
				}
				for i := range steps {
					o, err := r.Step(st, 0.05, batches[i])
					if err != nil {
						t.Fatal(err)
					}
					if got := o.Value(o.Loss); !lossNear(got, want[i]) {
						t.Errorf("%s %s %s, step %d: loss %v, one device %v", m.Arch(), layout, strat, i, got, want[i])
					}
				}
				paramsNear(t, fmt.Sprintf("%s %s %s on %d devices, after %d steps", m.Arch(), layout, strat, n, steps), sr, st)
			}
		}
	}
}

// TestSeqRunnerReadsStagedBatches: a batch the loader staged on the device
// (SeqBatch.OnDevice) is what SeqRunner.Step trains on: with the host
// buffers cleared after staging, the losses and parameters are bit for bit
// those of the host batches.
func TestSeqRunnerReadsStagedBatches(t *testing.T) {
	f := newFixture(t)
	be, _ := gocpu.New()
	m, _ := model.NewGRU(4, feature.Count, 8, 3)
	norm := batch.Normalizer{Mean: tensors.MustCopyFlatData[float32](f.mean), Std: tensors.MustCopyFlatData[float32](f.std)}
	const steps = 3
	batches := f.seqSteps(t, batch.Packed, 1, 6, steps)
	run := func(staged bool) ([]float32, *State) {
		s := NewStepper(be, m, DefaultOptimizer())
		st := s.NewState(7)
		r, err := NewSeqRunner(s, st, norm, 1, ParallelOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if lc := r.LoaderConfig(batch.SeqLoaderConfig{Backend: be}); lc.Backend != nil {
			t.Fatal("LoaderConfig stages batches for the Go backend, which reads host memory")
		}
		var losses []float32
		for i := range steps {
			b := *batches[i][0]
			if staged {
				x, seg, y := stack([]*batch.SeqBatch{&b})
				b.OnDevice = &batch.StagedSeq{X: x, Segments: seg, Labels: y}
				b.X, b.Segments, b.Labels = make([]float32, len(b.X)), make([]int32, len(b.Segments)), make([]int32, len(b.Labels))
			}
			o, err := r.Step(st, 1e-2, []*batch.SeqBatch{&b})
			if err != nil {
				t.Fatal(err)
			}
			losses = append(losses, o.Value(o.Loss))
		}
		return losses, st
	}
	want, sw := run(false)
	got, sg := run(true)
	if !slices.Equal(got, want) {
		t.Fatalf("losses on staged batches %v, on host batches %v", got, want)
	}
	if d := maxParamDiff(sw, sg); d != 0 {
		t.Fatalf("parameters differ by up to %g", d)
	}
}

// TestSeqAccumulateEqualsOneBatch: an optimizer step accumulated over two
// micro-batches of sequences (SeqRunner.Accumulate) trains like one step on
// the two stacked, although they hold different numbers of labelled
// positions: each position weighs the same, not each micro-batch's mean.
// Every micro-batch's StepOut carries its own mean loss, and their
// count-weighted mean is the stacked batch's loss.
func TestSeqAccumulateEqualsOneBatch(t *testing.T) {
	f := newFixture(t)
	be, _ := gocpu.New()
	m, _ := model.NewGRU(4, feature.Count, 8, 3)
	norm := batch.Normalizer{Mean: tensors.MustCopyFlatData[float32](f.mean), Std: tensors.MustCopyFlatData[float32](f.std)}
	opt := Optimizer{Name: "sgd", Momentum: 0.9, ClipNorm: 1}
	const steps = 4
	for _, layout := range []batch.Layout{batch.Padded, batch.Packed} {
		micro := f.seqSteps(t, layout, 2, 6, steps) // two "ranks" per step: the step's two micro-batches
		ref := NewStepper(be, m, opt)
		sr := ref.NewState(3)
		acc := NewStepper(be, m, opt).WithAccumulation(2)
		sa := acc.NewState(3)
		r, err := NewSeqRunner(acc, sa, norm, 1, ParallelOptions{})
		if err != nil {
			t.Fatal(err)
		}
		uneven := false
		for i := range steps {
			c0, c1 := micro[i][0].Stats.Labelled, micro[i][1].Stats.Labelled
			uneven = uneven || c0 != c1
			x, seg, y := stack(micro[i])
			want, err := ref.StepSeq(sr, 0.05, f.mean, f.std, x, seg, y)
			if err != nil {
				t.Fatal(err)
			}
			outs, err := r.Accumulate(sa, 0.05, micro[i])
			if err != nil {
				t.Fatal(err)
			}
			if len(outs) != 2 || outs[0].Applied || !outs[1].Applied || sa.Step != int64(i+1) {
				t.Fatalf("%s step %d: %d outs, applied %v/%v, state at step %d", layout, i, len(outs), outs[0].Applied, outs[len(outs)-1].Applied, sa.Step)
			}
			l0, l1, lw := outs[0].Value(outs[0].Loss), outs[1].Value(outs[1].Loss), want.Value(want.Loss)
			if got := (float64(l0)*float64(c0) + float64(l1)*float64(c1)) / float64(c0+c1); math.Abs(got-float64(lw)) > 1e-5*math.Abs(float64(lw)) {
				t.Errorf("%s step %d: micro-batch losses %v (%d labels), %v (%d) weigh to %v, stacked batch %v", layout, i, l0, c0, l1, c1, got, lw)
			}
		}
		if !uneven {
			t.Fatalf("%s: every step's micro-batches hold equal labelled positions; the test needs uneven ones", layout)
		}
		if d := maxParamDiff(sr, sa); d > 1e-6 {
			t.Errorf("%s: after %d steps the parameters differ from the stacked batches' by up to %g", layout, steps, d)
		} else {
			t.Logf("%s: parameters within %.1e of the stacked batches' after %d steps", layout, d, steps)
		}
	}
}

// TestSeqReplicasAccumulationOnOneDevice: an accumulated data-parallel
// sequence step (Parallel.StepSeqMicro, its graphs built for one device,
// no collective) trains bit for bit as SeqRunner.Accumulate on one device.
func TestSeqReplicasAccumulationOnOneDevice(t *testing.T) {
	f := newFixture(t)
	be, _ := gocpu.New()
	m, _ := model.NewGRU(4, feature.Count, 8, 3)
	norm := batch.Normalizer{Mean: tensors.MustCopyFlatData[float32](f.mean), Std: tensors.MustCopyFlatData[float32](f.std)}
	const k, updates = 2, 3
	for _, layout := range []batch.Layout{batch.Padded, batch.Packed} {
		micro := f.seqSteps(t, layout, k, 6, updates) // an update's k micro-batches
		ref := NewStepper(be, m, DefaultOptimizer()).WithAccumulation(k)
		sr := ref.NewState(3)
		rr, err := NewSeqRunner(ref, sr, norm, 1, ParallelOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s := NewStepper(be, m, DefaultOptimizer()).WithAccumulation(k)
		st := s.NewState(3)
		s.fillAux(st)
		o := ParallelOptions{Strategy: Replicas, Reduce: dtypes.Float32}
		p := &Parallel{s: s, n: 1, o: o, reps: []*State{st},
			accSeq: accExecs{micro: MustNewExec(be, s.accumulateMicroGraph(s.seqMicro(1))),
				last: MustNewExec(be, s.accumulateLastGraph(s.seqMicro(1), 1, o, 1))}}
		for u := range updates {
			want, err := rr.Accumulate(sr, 0.01, micro[u])
			if err != nil {
				t.Fatal(err)
			}
			labelled := micro[u][0].Stats.Labelled + micro[u][1].Stats.Labelled
			for i, b := range micro[u] {
				x, seg, y := stack([]*batch.SeqBatch{b})
				got, err := p.StepSeqMicro(0.01, []*tensors.Tensor{f.mean}, []*tensors.Tensor{f.std}, []*tensors.Tensor{x}, []*tensors.Tensor{seg}, []*tensors.Tensor{y}, labelled)
				if err != nil {
					t.Fatal(err)
				}
				if a, b := got.Value(got.Loss), want[i].Value(want[i].Loss); a != b || got.Applied != want[i].Applied {
					t.Errorf("%s update %d micro-batch %d: loss %v applied %v, SeqRunner.Accumulate %v applied %v", layout, u, i, a, got.Applied, b, want[i].Applied)
				}
			}
		}
		if st.Step != updates || st.Micro != 0 {
			t.Fatalf("%s: state at step %d micro-batch %d, want %d and 0", layout, st.Step, st.Micro, updates)
		}
		if d := maxParamDiff(sr, st); d != 0 {
			t.Errorf("%s: parameters differ from SeqRunner.Accumulate's by up to %g", layout, d)
		}
	}
}

// TestSeqParallelAccumulationEqualsStacked runs on the devices named by
// $GALLOP_TEST_DEVICES (skipped when unset): an accumulated data-parallel
// sequence step (SeqRunner.Accumulate on n devices: each sums its own
// micro-batches' gradients, one all-reduce per update) trains like one
// device accumulating the ranks' batches stacked, every labelled position
// weighted equally.
func TestSeqParallelAccumulationEqualsStacked(t *testing.T) {
	be, n := testDevices(t)
	f := newFixture(t)
	norm := batch.Normalizer{Mean: tensors.MustCopyFlatData[float32](f.mean), Std: tensors.MustCopyFlatData[float32](f.std)}
	opt := Optimizer{Name: "sgd", Momentum: 0.9, ClipNorm: 1}
	const k, updates = 2, 3
	m, _ := model.NewGRU(4, feature.Count, 16, 3)
	for _, layout := range []batch.Layout{batch.Padded, batch.Packed} {
		batches := f.seqSteps(t, layout, n, 8, k*updates) // [micro-batch][rank]
		ref := NewStepper(be, m, opt).WithAccumulation(k)
		sr := ref.NewState(3)
		s := NewStepper(be, m, opt).WithAccumulation(k)
		st := s.NewState(3)
		r, err := NewSeqRunner(s, st, norm, n, ParallelOptions{Strategy: Replicas, BucketBytes: 1024})
		if err != nil {
			t.Fatal(err)
		}
		for u := range updates {
			labelled := 0
			var flat []*batch.SeqBatch
			for i := range k {
				for _, b := range batches[u*k+i] {
					labelled += b.Stats.Labelled
					flat = append(flat, b)
				}
			}
			var want []float32
			for i := range k {
				x, seg, y := stack(batches[u*k+i])
				o, err := ref.StepSeqMicro(sr, 0.05, f.mean, f.std, x, seg, y, labelled)
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, o.Value(o.Loss))
			}
			outs, err := r.Accumulate(st, 0.05, flat)
			if err != nil {
				t.Fatal(err)
			}
			for i, o := range outs {
				if got := o.Value(o.Loss); !lossNear(got, want[i]) {
					t.Errorf("%s update %d micro-batch %d: loss %v, one device %v", layout, u, i, got, want[i])
				}
			}
		}
		paramsNear(t, fmt.Sprintf("%s on %d devices, after %d updates", layout, n, updates), sr, st)
	}
}

// testDevices opens the devices named by $GALLOP_TEST_DEVICES (e.g.
// "gpu:0,1") for the data-parallel tests, which skip when it is unset:
// GoMLX's Go backend has one device. Matmuls are full float32: with TF32
// a one-device run on a stacked batch and the devices' runs on its parts
// round differently (by ~1e-3).
func testDevices(t *testing.T) (compute.Backend, int) {
	t.Helper()
	name := os.Getenv("GALLOP_TEST_DEVICES")
	if name == "" {
		t.Skip("set GALLOP_TEST_DEVICES=gpu:0,1 to run on several devices")
	}
	spec, err := device.Parse(name)
	if err != nil {
		t.Fatal(err)
	}
	be, _, err := device.Open(spec, device.Options{NoTF32: true})
	if err != nil {
		t.Fatal(err)
	}
	return be, len(spec.IDs)
}

// TestSeqStepNEqualsSteps: k sequence steps in one call (SeqRunner.StepN,
// Stepper.StepSeqN) train bit for bit as k calls of SeqRunner.Step, for
// the GRU and the transformer, padded and packed; and the replicas step
// chained for one device (as Parallel.StepSeqN compiles it, without the
// collective) equals them too.
func TestSeqStepNEqualsSteps(t *testing.T) {
	f := newFixture(t)
	be, _ := gocpu.New()
	norm := batch.Normalizer{Mean: tensors.MustCopyFlatData[float32](f.mean), Std: tensors.MustCopyFlatData[float32](f.std)}
	const k = 3
	lrs := []float64{1e-2, 2e-2, 5e-3}
	gru, _ := model.NewGRU(4, feature.Count, 8, 3)
	tf, _ := model.NewTransformer(24, feature.Count, 3, model.TransformerConfig{D: 16, Heads: 2, Layers: 1, FF: 32})
	for _, m := range []model.Model{gru, tf} {
		for _, layout := range []batch.Layout{batch.Padded, batch.Packed} {
			steps := f.seqSteps(t, layout, 1, 6, k)
			var flat []*batch.SeqBatch
			for _, bs := range steps {
				flat = append(flat, bs...)
			}
			ref := NewStepper(be, m, DefaultOptimizer())
			sr := ref.NewState(4)
			rr, err := NewSeqRunner(ref, sr, norm, 1, ParallelOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var want []float32
			for i := range k {
				o, err := rr.Step(sr, lrs[i], steps[i])
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, o.Value(o.Loss))
			}
			s := NewStepper(be, m, DefaultOptimizer())
			st := s.NewState(4)
			r, err := NewSeqRunner(s, st, norm, 1, ParallelOptions{})
			if err != nil {
				t.Fatal(err)
			}
			outs, err := r.StepN(st, lrs, flat)
			if err != nil {
				t.Fatal(err)
			}
			for i, o := range outs {
				if got := o.Value(o.Loss); got != want[i] || o.Step != int64(i) {
					t.Errorf("%s %s step %d: loss %v (step %d), one step per call %v", m.Arch(), layout, i, got, o.Step, want[i])
				}
			}
			if st.Step != k {
				t.Fatalf("%s %s: state at step %d, want %d", m.Arch(), layout, st.Step, k)
			}
			if d := maxParamDiff(sr, st); d != 0 {
				t.Errorf("%s %s: parameters differ from one step per call by up to %g", m.Arch(), layout, d)
			}
			// The replicas step for one device, chained.
			s2 := NewStepper(be, m, DefaultOptimizer())
			st2 := s2.NewState(4)
			s2.fillAux(st2)
			exec := MustNewExec(be, s2.chainSteps(s2.seqReplicasGraph(1, ParallelOptions{Reduce: dtypes.Float32}), k, 2, 3))
			args, err := s2.stateArgsWith(st2, s2.hyperN(st2, lrs), 0, 2+3*k)
			if err != nil {
				t.Fatal(err)
			}
			args = append(args, f.mean, f.std)
			for i := range k {
				x, seg, y := stack(steps[i])
				args = append(args, x, seg, y)
			}
			res, err := exec.Call(args...)
			if err != nil {
				t.Fatal(err)
			}
			for i, o := range s2.unpackN(st2, res, lrs, time.Time{}) {
				if got := o.Value(o.Loss); got != want[i] {
					t.Errorf("%s %s step %d: chained replicas loss %v, one step per call %v", m.Arch(), layout, i, got, want[i])
				}
			}
			if d := maxParamDiff(sr, st2); d != 0 {
				t.Errorf("%s %s: chained replicas parameters differ by up to %g", m.Arch(), layout, d)
			}
		}
	}
}

// TestSeqParallelStepNEqualsStacked runs on $GALLOP_TEST_DEVICES (skipped
// when unset): k data-parallel sequence steps in one call
// (SeqRunner.StepN over n devices, either strategy) train like one device
// stepping on the ranks' batches stacked.
func TestSeqParallelStepNEqualsStacked(t *testing.T) {
	be, n := testDevices(t)
	f := newFixture(t)
	norm := batch.Normalizer{Mean: tensors.MustCopyFlatData[float32](f.mean), Std: tensors.MustCopyFlatData[float32](f.std)}
	opt := Optimizer{Name: "sgd", Momentum: 0.9, ClipNorm: 1}
	const k = 3
	lrs := []float64{0.05, 0.04, 0.03}
	m, _ := model.NewGRU(4, feature.Count, 16, 3)
	for _, layout := range []batch.Layout{batch.Padded, batch.Packed} {
		steps := f.seqSteps(t, layout, n, 8, k)
		var flat []*batch.SeqBatch
		for _, bs := range steps {
			flat = append(flat, bs...)
		}
		ref := NewStepper(be, m, opt)
		sr := ref.NewState(3)
		var want []float32
		for i := range k {
			x, seg, y := stack(steps[i])
			o, err := ref.StepSeq(sr, lrs[i], f.mean, f.std, x, seg, y)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, o.Value(o.Loss))
		}
		for _, strat := range []Strategy{Sharding, Replicas} {
			s := NewStepper(be, m, opt)
			st := s.NewState(3)
			r, err := NewSeqRunner(s, st, norm, n, ParallelOptions{Strategy: strat})
			if err != nil {
				t.Fatal(err)
			}
			outs, err := r.StepN(st, lrs, flat)
			if err != nil {
				t.Fatal(err)
			}
			for i, o := range outs {
				if got := o.Value(o.Loss); !lossNear(got, want[i]) {
					t.Errorf("%s %s step %d: loss %v, one device %v", layout, strat, i, got, want[i])
				}
			}
			paramsNear(t, fmt.Sprintf("%s %s on %d devices, after %d steps in one call", layout, strat, n, k), sr, st)
		}
	}
}
