package guard

import (
	"errors"
	"math"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/train"
)

func out(step int64, loss, fin float32, params ...float32) train.StepOut {
	return train.StepOut{Step: step, Loss: tensors.FromScalar(loss), GradNorm: tensors.FromScalar(float32(2)),
		Finite: tensors.FromScalar(fin), ParamFinite: tensors.FromFlatDataAndDimensions(params, len(params))}
}

// TestStopsWithinLag injects a NaN at step k and checks the loop, which only
// polls Err, learns of it by step k+lag with the right step, batch and layer.
func TestStopsWithinLag(t *testing.T) {
	const k, lag = 37, 3
	w := NewWatcher(Config{Lag: lag, BatchSize: 4, ParamNames: []string{"w0", "b0", "w1", "b1"}})
	var seenAt int64 = -1
	for step := int64(0); step < 100; step++ {
		o := out(step, 1, 1, 1, 1, 1, 1)
		if step == k {
			o = out(step, float32(math.NaN()), 0, 1, 1, 0, 1)
		}
		w.Observe(o, []int32{int32(step), 1, 2, 3})
		if w.Err() != nil {
			seenAt = step
			break
		}
	}
	err := w.Close()
	var nf *NonFiniteError
	if !errors.As(err, &nf) || nf.Step != k || nf.Samples[0] != k || !math.IsNaN(nf.Loss) || len(nf.BadParams) != 1 || nf.BadParams[0] != "w1" {
		t.Fatalf("got %v", err)
	}
	if seenAt < k || seenAt > k+lag+1 {
		t.Fatalf("loop saw the NaN at step %d, injected at %d with lag %d", seenAt, k, lag)
	}
}

func TestResetIgnoresEarlierSteps(t *testing.T) {
	w := NewWatcher(Config{Lag: 8, BatchSize: 1})
	w.Observe(out(0, 1, 0), []int32{0})
	w.Reset() // rolled back: step 0 may be read after this and must not re-arm
	w.Observe(out(1, 1, 1), []int32{1})
	if err := w.Close(); err != nil {
		t.Fatalf("error from before Reset: %v", err)
	}
	if bad, _ := w.Counts(); bad != 1 {
		t.Fatalf("non-finite count %d", bad)
	}
}

func TestSpikeDetector(t *testing.T) {
	d := SpikeDetector{Z: 6}
	for i := 0; i < 200; i++ {
		if _, spike := d.Observe(1 + 0.01*math.Sin(float64(i))); spike {
			t.Fatalf("spike at %d on a flat loss", i)
		}
	}
	if z, spike := d.Observe(5); !spike || z < 6 {
		t.Fatalf("jump not flagged: z=%v", z)
	}
}

// TestReadErrorIsStickyAndDoesNotBlock: a step whose outputs cannot be read
// back (on a GPU: a program that failed on the device) becomes a
// *ReadError naming the step; Reset does not clear it, later steps are
// drained without reading, so Observe never blocks the loop, and Close
// returns it.
func TestReadErrorIsStickyAndDoesNotBlock(t *testing.T) {
	const bad, lag = 5, 2
	w := NewWatcher(Config{Lag: lag, BatchSize: 1})
	for step := int64(0); step < 50; step++ { // far more than lag steps after the failure
		o := out(step, 1, 1)
		if step == bad {
			o.Loss.FinalizeAll() // its read fails
		}
		w.Observe(o, []int32{int32(step)})
	}
	w.Reset()
	err := w.Close()
	var re *ReadError
	if !errors.As(err, &re) || re.Step != bad || re.Err == nil {
		t.Fatalf("got %v, want a ReadError at step %d", err, bad)
	}
	var nf *NonFiniteError
	if errors.As(err, &nf) {
		t.Fatalf("a read failure reported as non-finite: %v", err)
	}
	if last := w.Last(); last.Step != bad-1 {
		t.Fatalf("last value read is step %d, want %d (nothing read after the failure)", last.Step, bad-1)
	}
	t.Log(err)
}
