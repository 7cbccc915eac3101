package main

import (
	"fmt"
	"time"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/batch"
	"github.com/gallop-dev/gallop/guard"
	"github.com/gallop-dev/gallop/profile"
	"github.com/gallop-dev/gallop/train"
)

// dispatcher runs a training loop's micro-batches on the path the run set
// up: the dataset resident on one or several devices (runner), one step
// per call or perCall steps per call, or batches gathered on the host. It
// hands every step's outputs to the watcher and each batch back to the
// loader once the step that used it is dispatched.
type dispatcher struct {
	stepper   *train.Stepper
	runner    *train.Runner
	mean, std *tensors.Tensor
	loader    *batch.Loader
	watcher   *guard.Watcher
	rec       *profile.Recorder
	perCall   int
	probe     *deviceProbe // nil: no device probes

	calls   int
	pending []*batch.Batch // queued for the next StepRowsN call
	lrs     []float64
	rows    []*tensors.Tensor
}

// step runs micro-batch b at learning rate lr on st, or, with several
// steps per call, queues it and runs the call once perCall are queued. t is
// the profiler's stamp when b was ready; step returns the stamp after the
// work. The call is charged to dispatch, or to compilation for the first
// one. Handing the outputs to the watcher is charged to the device: on a
// GPU calls return before the device has run them, and Observe blocks
// when the watcher, which waits for each step's outputs, is the guard's
// lag behind, so that wait is the loop waiting for the device.
func (d *dispatcher) step(st *train.State, b *batch.Batch, lr float64, t profile.Stamp) (profile.Stamp, error) {
	if d.perCall > 1 {
		d.pending, d.lrs = append(d.pending, b), append(d.lrs, lr)
		if len(d.pending) < d.perCall {
			return t, nil
		}
		d.rows = d.rows[:0]
		for _, pb := range d.pending {
			d.rows = append(d.rows, pb.Rows)
		}
		var err error
		if t, err = d.probeDevices(st, d.rows[0], t); err != nil {
			return t, err
		}
		outs, err := d.runner.StepN(st, d.lrs, d.rows)
		if err != nil {
			return t, err
		}
		t = d.charge(t, fmt.Sprintf("train_steps_%d", d.perCall))
		for i, o := range outs {
			d.watcher.Observe(o, d.pending[i].Index)
		}
		d.drop()
		return end(d.rec, profile.Device, t), nil
	}
	var out train.StepOut
	var err error
	if d.runner != nil {
		if t, err = d.probeDevices(st, b.Rows, t); err != nil {
			return t, err
		}
		out, err = d.runner.Step(st, lr, b.Rows)
	} else {
		out, err = d.stepper.Step(st, lr, d.mean, d.std, b.X, b.Y)
	}
	if err != nil {
		return t, err
	}
	t = d.charge(t, "train_step")
	d.watcher.Observe(out, b.Index)
	d.loader.Release(b)
	return end(d.rec, profile.Device, t), nil
}

// probeDevices times each device's share of the step on rows when a
// probe is due (see deviceProbe), before the step runs.
func (d *dispatcher) probeDevices(st *train.State, rows *tensors.Tensor, t profile.Stamp) (profile.Stamp, error) {
	return d.probe.take(st.Step, t,
		func() <-chan error { return d.runner.CompileProbe(st, rows) },
		func() ([]time.Duration, error) { return d.runner.ProbeDevices(st, rows, probeReps) })
}

// charge records the time since t as dispatch, or as compilation of graph
// on the first call, which compiles it.
func (d *dispatcher) charge(t profile.Stamp, graph string) profile.Stamp {
	if d.calls++; d.calls == 1 && d.rec != nil {
		d.rec.Compile(time.Duration(d.rec.Start()-t), graph)
		return d.rec.Start()
	}
	return end(d.rec, profile.Dispatch, t)
}

// drop returns the queued batches to the loader unused (after a rollback)
// or used (after their call).
func (d *dispatcher) drop() {
	for _, b := range d.pending {
		d.loader.Release(b)
	}
	d.pending, d.lrs = d.pending[:0], d.lrs[:0]
}
