// Package guard watches training steps for non-finite loss or gradients
// without stalling the loop: the step computes a finiteness flag on the
// device, and a goroutine reads it (and the loss) a few steps later while the
// loop keeps dispatching.
package guard

import (
	"fmt"
	"math"
	"sync"

	"github.com/gomlx/gomlx/core/tensors"
)

// NonFiniteError reports the first step whose loss or gradient norm was NaN
// or Inf, and the samples of its batch.
type NonFiniteError struct {
	Step     int64
	Loss     float64
	GradNorm float64
	Samples  []int32
}

func (e *NonFiniteError) Error() string {
	return fmt.Sprintf("non-finite values at step %d (loss %v, gradient norm %v); batch samples %s",
		e.Step, e.Loss, e.GradNorm, short(e.Samples))
}

func short(s []int32) string {
	if len(s) <= 8 {
		return fmt.Sprint(s)
	}
	return fmt.Sprintf("%v … (%d samples)", s[:8], len(s))
}

// Value is one step's scalars as read back by the Watcher.
type Value struct {
	Step     int64
	Loss     float64
	GradNorm float64
	Finite   bool
}

type item struct {
	step                int64
	loss, gnorm, finite *tensors.Tensor
	samples             []int32
}

// Watcher reads step outputs in its own goroutine. Observe never reads a
// device value; it blocks only when the reader falls more than Lag steps
// behind, which bounds how late a bad step is detected.
type Watcher struct {
	ch      chan item
	pool    chan []int32
	onValue func(Value)
	wg      sync.WaitGroup
	mu      sync.Mutex
	err     *NonFiniteError
	last    Value
}

// NewWatcher starts a watcher that lets the loop run up to lag steps ahead
// of the read-back, for batches of batchSize samples. onValue, if not nil,
// is called from the watcher's goroutine with every step's values.
func NewWatcher(lag, batchSize int, onValue func(Value)) *Watcher {
	if lag < 1 {
		lag = 1
	}
	w := &Watcher{ch: make(chan item, lag), pool: make(chan []int32, lag+2), onValue: onValue}
	for i := 0; i < lag+2; i++ {
		w.pool <- make([]int32, batchSize)
	}
	w.wg.Add(1)
	go w.run()
	return w
}

// Observe queues a step's outputs for reading. samples names the batch's
// samples; it is copied.
func (w *Watcher) Observe(step int64, loss, gnorm, finite *tensors.Tensor, samples []int32) {
	s := <-w.pool
	s = append(s[:0], samples...)
	w.ch <- item{step: step, loss: loss, gnorm: gnorm, finite: finite, samples: s}
}

func scalar(t *tensors.Tensor) float64 {
	var v float64
	tensors.MustConstFlatData(t, func(f []float32) { v = float64(f[0]) })
	return v
}

func (w *Watcher) run() {
	defer w.wg.Done()
	for it := range w.ch {
		v := Value{Step: it.step, Loss: scalar(it.loss), GradNorm: scalar(it.gnorm), Finite: scalar(it.finite) == 1}
		w.mu.Lock()
		w.last = v
		if !v.Finite && w.err == nil {
			w.err = &NonFiniteError{Step: v.Step, Loss: v.Loss, GradNorm: v.GradNorm, Samples: append([]int32(nil), it.samples...)}
		}
		w.mu.Unlock()
		w.pool <- it.samples
		if w.onValue != nil {
			w.onValue(v)
		}
	}
}

// Err returns the first non-finite step seen so far, or nil. It does not
// block.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		return nil
	}
	return w.err
}

// Last returns the latest values read back.
func (w *Watcher) Last() Value {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// Close waits for every queued step to be read and returns Err.
func (w *Watcher) Close() error {
	close(w.ch)
	w.wg.Wait()
	return w.Err()
}

// SpikeDetector flags losses more than Z standard deviations above an
// exponentially weighted mean (a warning, not a stop).
type SpikeDetector struct {
	Z, Alpha   float64
	mean, vari float64
	n          int
}

// Observe returns the z-score of loss and whether it is a spike.
func (d *SpikeDetector) Observe(loss float64) (float64, bool) {
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return math.Inf(1), true
	}
	a := d.Alpha
	if a == 0 {
		a = 0.02
	}
	d.n++
	if d.n == 1 {
		d.mean = loss
		return 0, false
	}
	sd := math.Sqrt(d.vari)
	z := 0.0
	if sd > 0 {
		z = (loss - d.mean) / sd
	}
	diff := loss - d.mean
	d.mean += a * diff
	d.vari = (1 - a) * (d.vari + a*diff*diff)
	zt := d.Z
	if zt == 0 {
		zt = 6
	}
	return z, d.n > 20 && z > zt
}
