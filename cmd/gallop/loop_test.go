package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gallop-dev/gallop/internal/gocpu"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/batch"
	"github.com/gallop-dev/gallop/data/dataset"
	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/data/sim"
	"github.com/gallop-dev/gallop/device"
	"github.com/gallop-dev/gallop/guard"
	"github.com/gallop-dev/gallop/model"
	"github.com/gallop-dev/gallop/profile"
	"github.com/gallop-dev/gallop/train"
)

// loopKit is a real train step over simulated data for loop-level tests and
// benchmarks.
type loopKit struct {
	stepper   *train.Stepper
	st        *train.State
	loader    *batch.Loader
	mean, std *tensors.Tensor
	cancel    context.CancelFunc
}

func newLoopKit(tb testing.TB, batchSize int) *loopKit {
	cfg := sim.DefaultConfig()
	cfg.Events = 20000
	cfg.Instruments = cfg.Instruments[:1]
	series, err := dataset.Simulated(cfg, dataset.Labeling{Horizon: 50, Theta: 0.1})
	if err != nil {
		tb.Fatal(err)
	}
	w := &batch.Windows{Series: series, F: feature.Count, W: 10}
	sp, _ := batch.TimeSplit(series, 10, 50, 50, 0.8)
	nz := batch.FitNormalizer(w, sp.Train)
	be, _ := gocpu.New()
	m, _ := model.NewMLP(10, feature.Count, []int{128, 64}, 3)
	ctx, cancel := context.WithCancel(context.Background())
	ld, err := batch.NewLoader(ctx, w, sp.Train, batch.NewSampler(len(sp.Train), 1, true), batch.LoaderConfig{BatchSize: batchSize, Prefetch: 4})
	if err != nil {
		tb.Fatal(err)
	}
	s := train.NewStepper(be, m, train.DefaultOptimizer())
	return &loopKit{stepper: s, st: s.NewState(1), loader: ld, cancel: cancel,
		mean: tensors.FromFlatDataAndDimensions(nz.Mean, feature.Count), std: tensors.FromFlatDataAndDimensions(nz.Std, feature.Count)}
}

func (k *loopKit) close() { k.cancel(); k.loader.Close() }

// run takes n steps; with rec it profiles them, with w it hands outputs to
// the guard, and with readEveryStep it reads the loss on the loop (a sync).
func (k *loopKit) run(tb testing.TB, n int, rec *profile.Recorder, w *guard.Watcher, readEveryStep bool) {
	ctx := context.Background()
	for i := 0; i < n; i++ {
		step := k.st.Step
		if rec != nil {
			rec.BeginStep(step)
		}
		t := stamp(rec)
		b, err := k.loader.Next(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		t = end(rec, profile.Data, t)
		out, err := k.stepper.Step(k.st, 1e-3, k.mean, k.std, b.X, b.Y)
		if err != nil {
			tb.Fatal(err)
		}
		t = end(rec, profile.Dispatch, t)
		if readEveryStep {
			_ = out.Loss.Value()
			if rec != nil {
				rec.Sync()
			}
			end(rec, profile.Readback, t)
		}
		if w != nil {
			w.Observe(out, b.Index)
		}
		k.loader.Release(b)
		if rec != nil {
			rec.EndStep(len(b.Index), 10*len(b.Index))
		}
	}
}

// TestSyncEveryStepIsFlagged: a loop that reads the loss on the loop every
// step is flagged sync-bound; the same loop with the guard reading it is not.
func TestSyncEveryStepIsFlagged(t *testing.T) {
	k := newLoopKit(t, 64)
	defer k.close()
	rec := profile.New(profile.Config{})
	k.run(t, 60, rec, nil, true)
	if v := rec.Report().Verdict; !strings.Contains(v, "sync-bound") {
		t.Fatalf("verdict %q, want sync-bound", v)
	}
	rec = profile.New(profile.Config{})
	w := guard.NewWatcher(guard.Config{BatchSize: 64})
	k.run(t, 60, rec, w, false)
	w.Close()
	if r := rec.Report(); r.SyncsPerStep != 0 || strings.Contains(r.Verdict, "sync-bound") {
		t.Fatalf("guarded loop: %.2f syncs/step, verdict %q", r.SyncsPerStep, r.Verdict)
	}
}

// BenchmarkLoop measures the cost of profiling and of the guard, side by
// side in one run: steps/s of the same loop bare, profiled, guarded, both.
func BenchmarkLoop(b *testing.B) {
	for _, c := range []struct {
		name           string
		profile, guard bool
	}{{"bare", false, false}, {"profile", true, false}, {"guard", false, true}, {"profile+guard", true, true}} {
		b.Run(c.name, func(b *testing.B) {
			k := newLoopKit(b, 256)
			defer k.close()
			k.run(b, 5, nil, nil, false) // compile
			var rec *profile.Recorder
			var w *guard.Watcher
			if c.profile {
				rec = profile.New(profile.Config{})
			}
			if c.guard {
				w = guard.NewWatcher(guard.Config{BatchSize: 256})
			}
			b.ResetTimer()
			k.run(b, b.N, rec, w, false)
			if w != nil {
				w.Close()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "steps/s")
		})
	}
}

// TestDataParallelWeightGradsFirst checks that train.dp_weight_grads_first
// reaches the MLP on several devices only, and that dataParallel refuses a
// batch that does not split over them.
func TestDataParallelWeightGradsFirst(t *testing.T) {
	for _, c := range []struct {
		ids  []int
		flag bool
		want bool
	}{{[]int{0, 1}, true, true}, {[]int{0}, true, false}, {nil, true, false}, {[]int{0, 1}, false, false}} {
		cfg := DefaultConfig()
		cfg.Train.DPWeightGradsFirst = c.flag
		m, err := buildModel(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := dataParallel(cfg, device.Spec{Kind: "gpu", IDs: c.ids}, m); err != nil {
			t.Fatal(err)
		}
		if got := m.(*model.MLP).WeightGradsFirst; got != c.want {
			t.Errorf("devices %v, dp_weight_grads_first %v: MLP.WeightGradsFirst = %v, want %v", c.ids, c.flag, got, c.want)
		}
	}
	cfg := DefaultConfig()
	cfg.Train.BatchSize = 255
	m, _ := buildModel(cfg)
	if _, _, err := dataParallel(cfg, device.Spec{Kind: "gpu", IDs: []int{0, 1}}, m); err == nil || !strings.Contains(err.Error(), "does not split") {
		t.Errorf("batch 255 over 2 GPUs: err = %v, want a refusal", err)
	}
	// Accumulation on several GPUs, over fixed windows or sequences.
	for _, layout := range []string{"", "packed"} {
		cfg = DefaultConfig()
		cfg.Train.Accumulate, cfg.Model.Layout = 2, layout
		if _, _, err := dataParallel(cfg, device.Spec{Kind: "gpu", IDs: []int{0, 1}}, m); err != nil {
			t.Errorf("accumulation on 2 GPUs, layout %q: %v", layout, err)
		}
	}
}

// TestWaitForDeviceIsChargedToDevice: when the guard's reader, which waits
// for each step's outputs, falls its lag behind (here: a slow reader, as a
// busy GPU makes it), the dispatcher's Observe blocks the loop, and the
// profiler charges that wait to the device phase: the run reads
// device-bound instead of leaving the time unexplained.
func TestWaitForDeviceIsChargedToDevice(t *testing.T) {
	k := newLoopKit(t, 64)
	defer k.close()
	rec := profile.New(profile.Config{})
	// The reader's 40 ms per step is several times a step's own cost even
	// on a slow two-core machine (about 5 ms there), so the wait dominates.
	w := guard.NewWatcher(guard.Config{BatchSize: 64, Lag: 2, OnValue: func(guard.Value) { time.Sleep(40 * time.Millisecond) }})
	d := &dispatcher{stepper: k.stepper, mean: k.mean, std: k.std, loader: k.loader, watcher: w, rec: rec}
	ctx := context.Background()
	for i := 0; i < 24; i++ {
		rec.BeginStep(k.st.Step)
		tm := stamp(rec)
		b, err := k.loader.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tm = end(rec, profile.Data, tm)
		if _, err := d.step(k.st, b, 1e-3, tm); err != nil {
			t.Fatal(err)
		}
		rec.EndStep(64, 640)
	}
	w.Close()
	r := rec.Report()
	dev := 0.0
	for _, p := range r.Phases {
		if p.Phase == "device" {
			dev = p.Share
		}
	}
	if dev < 0.5 || !strings.Contains(r.Verdict, "device-bound") {
		t.Fatalf("device share %.2f, verdict %q; want the wait for the slow reader charged to the device", dev, r.Verdict)
	}
	t.Logf("device share %.2f: %s", dev, r.Verdict)
}
