// Package guard watches training steps for non-finite loss or gradients
// without stalling the loop: the step computes finiteness flags on the
// device, and a goroutine reads them (and the loss) a few steps later while
// the loop keeps dispatching.
package guard

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/gallop-dev/gallop/train"
)

// NonFiniteError reports the first step whose loss or gradient norm was NaN
// or Inf, the samples of its batch and the parameters whose gradient was
// not finite.
type NonFiniteError struct {
	Step      int64
	Loss      float64
	GradNorm  float64
	Samples   []int32
	BadParams []string // in backward order: the layer nearest the loss first
}

func (e *NonFiniteError) Error() string {
	s := fmt.Sprintf("non-finite values at step %d (loss %v, gradient norm %v); batch samples %s",
		e.Step, e.Loss, e.GradNorm, short(e.Samples))
	if len(e.BadParams) > 0 {
		s += "; non-finite gradients: " + strings.Join(e.BadParams, ", ")
	}
	return s
}

func short(s []int32) string {
	if len(s) <= 8 {
		return fmt.Sprint(s)
	}
	return fmt.Sprintf("%v … (%d samples)", s[:8], len(s))
}

// ReadError is a failure to read a step's outputs back from the device.
// Steps are dispatched asynchronously on GPUs, so this is where a program
// that failed on the device (an NCCL error, a lost GPU) shows up. Unlike a
// NonFiniteError it is not cleared by Reset: the run cannot go on.
type ReadError struct {
	Step int64
	Err  error
}

func (e *ReadError) Error() string {
	return fmt.Sprintf("reading step %d's outputs from the device: %v", e.Step, e.Err)
}

func (e *ReadError) Unwrap() error { return e.Err }

// Value is one step's scalars as read back by the Watcher.
type Value struct {
	Step     int64
	LR       float64
	Start    time.Time // when the step was dispatched
	Ready    time.Time // when its outputs had been read back
	Loss     float64
	GradNorm float64
	Finite   bool
	Z        float64 // loss z-score against its running mean (SpikeDetector)
	Spike    bool
}

type item struct {
	gen     int64
	out     train.StepOut
	samples []int32
}

// Config configures a Watcher.
type Config struct {
	// Lag is how many steps the loop may run ahead of the read-back; it
	// bounds how late a bad step is detected. Default 4.
	Lag int
	// BatchSize is the number of sample indices per step.
	BatchSize int
	// ParamNames names the parameters in StepOut.ParamFinite order.
	ParamNames []string
	// SpikeZ is the loss z-score that counts as a spike (a warning);
	// default 6, negative disables.
	SpikeZ float64
	// OnValue, if not nil, is called from the watcher's goroutine with every
	// step's values, in step order.
	OnValue func(Value)
}

// Watcher reads step outputs in its own goroutine. Observe never reads a
// device value; it blocks only when the reader falls more than Lag steps
// behind.
type Watcher struct {
	cfg    Config
	ch     chan item
	pool   chan []int32
	wg     sync.WaitGroup
	mu     sync.Mutex
	gen    int64
	err    *NonFiniteError
	rerr   *ReadError // sticky (Reset keeps it)
	bad    int64
	spikes int64
	last   Value
	spike  SpikeDetector
}

// NewWatcher starts a watcher.
func NewWatcher(cfg Config) *Watcher {
	if cfg.Lag < 1 {
		cfg.Lag = 4
	}
	w := &Watcher{cfg: cfg, ch: make(chan item, cfg.Lag), pool: make(chan []int32, cfg.Lag+2)}
	w.spike.Z = cfg.SpikeZ
	for i := 0; i < cfg.Lag+2; i++ {
		w.pool <- make([]int32, cfg.BatchSize)
	}
	w.wg.Add(1)
	go w.run()
	return w
}

// Observe queues a step's outputs for reading. samples names the batch's
// samples; it is copied.
func (w *Watcher) Observe(out train.StepOut, samples []int32) {
	s := <-w.pool
	s = append(s[:0], samples...)
	w.mu.Lock()
	gen := w.gen
	w.mu.Unlock()
	w.ch <- item{gen: gen, out: out, samples: s}
}

func (w *Watcher) run() {
	defer w.wg.Done()
	failed := false // a read failed: drain the queue so Observe never blocks
	for it := range w.ch {
		o := it.out
		if failed {
			w.pool <- it.samples
			continue
		}
		v := Value{Step: o.Step, LR: o.LR, Start: o.Start}
		var loss, gnorm, finite float32
		var err error
		if loss, err = o.Read(o.Loss); err == nil {
			if gnorm, err = o.Read(o.GradNorm); err == nil {
				finite, err = o.Read(o.Finite)
			}
		}
		if err != nil {
			failed = true
			w.mu.Lock()
			w.rerr = &ReadError{Step: o.Step, Err: err}
			w.mu.Unlock()
			w.pool <- it.samples
			continue
		}
		v.Loss, v.GradNorm, v.Finite = float64(loss), float64(gnorm), finite == 1
		v.Ready = time.Now()
		if v.Finite && w.cfg.SpikeZ >= 0 {
			v.Z, v.Spike = w.spike.Observe(v.Loss)
		}
		w.mu.Lock()
		w.last = v
		if v.Spike {
			w.spikes++
		}
		if !v.Finite {
			w.bad++
			if w.err == nil && it.gen == w.gen {
				e := &NonFiniteError{Step: v.Step, Loss: v.Loss, GradNorm: v.GradNorm, Samples: append([]int32(nil), it.samples...)}
				if o.ParamFinite != nil {
					f := o.ParamFiniteFlags()
					for i := len(f) - 1; i >= 0; i-- {
						if f[i] != 1 {
							e.BadParams = append(e.BadParams, w.name(i))
						}
					}
				}
				w.err = e
			}
		}
		w.mu.Unlock()
		w.pool <- it.samples
		if w.cfg.OnValue != nil {
			w.cfg.OnValue(v)
		}
	}
}

func (w *Watcher) name(i int) string {
	if i < len(w.cfg.ParamNames) {
		return w.cfg.ParamNames[i]
	}
	return fmt.Sprintf("param%d", i)
}

// Err returns a *ReadError if reading a step back failed, else the first
// non-finite step seen since the last Reset (a *NonFiniteError), or nil.
// It does not block.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.rerr != nil:
		return w.rerr
	case w.err != nil:
		return w.err
	}
	return nil
}

// Reset forgets the current non-finite error, and those of steps observed
// before the call (a loop that rolled back does not want to hear about
// them again). A ReadError stays.
func (w *Watcher) Reset() {
	w.mu.Lock()
	w.err = nil
	w.gen++
	w.mu.Unlock()
}

// Counts returns how many non-finite steps and loss spikes were read.
func (w *Watcher) Counts() (nonFinite, spikes int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bad, w.spikes
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
