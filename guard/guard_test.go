package guard

import (
	"errors"
	"math"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"
)

func scalarT(v float32) *tensors.Tensor { return tensors.FromScalar(v) }

// TestStopsWithinLag injects a NaN at step k and checks the loop, which only
// polls Err, learns of it by step k+lag with the right step and batch.
func TestStopsWithinLag(t *testing.T) {
	const k, lag = 37, 3
	w := NewWatcher(lag, 4, nil)
	var seenAt int64 = -1
	for step := int64(0); step < 100; step++ {
		loss, fin := float32(1), float32(1)
		if step == k {
			loss, fin = float32(math.NaN()), 0
		}
		w.Observe(step, scalarT(loss), scalarT(2), scalarT(fin), []int32{int32(step), 1, 2, 3})
		if w.Err() != nil {
			seenAt = step
			break
		}
	}
	err := w.Close()
	var nf *NonFiniteError
	if !errors.As(err, &nf) || nf.Step != k || nf.Samples[0] != k || !math.IsNaN(nf.Loss) {
		t.Fatalf("got %v", err)
	}
	if seenAt < k || seenAt > k+lag+1 {
		t.Fatalf("loop saw the NaN at step %d, injected at %d with lag %d", seenAt, k, lag)
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
