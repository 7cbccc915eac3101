package train

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/batch"
)

// ProbeDevices times each device's share of a step on its own and returns
// each device's median over reps rounds: the step compiled for one device
// without its collectives (the forward pass, backward pass and update of
// the Replicas strategy on the device's own rows of batch rows), launched
// on every device at once (each round from the next device) and timed on
// each from its call to its result. A warm-up round comes first, which
// also waits out the steps already queued on the devices. st is read, not
// changed; it must be the State the Runner steps (see SetState).
//
// In a data-parallel step the devices meet at the gradient all-reduce, so
// the host sees one completion for all of them: the slowest device's time
// is what every step waits for, and a device much slower than the others
// (another process on it, a lower clock) is a straggler that only a probe
// of the devices apart can name. The probe's graph compiles on first use
// (or ahead, on another goroutine, with CompileProbe) and each probe costs
// about reps+1 steps and a wait for the devices.
func (r *Runner) ProbeDevices(st *State, rows *tensors.Tensor, reps int) ([]time.Duration, error) {
	states, args, done, err := r.probeArgs(st, rows)
	if err != nil {
		return nil, err
	}
	defer done()
	return r.s.probeDevices(r.probe, states, reps, args)
}

// CompileProbe compiles ProbeDevices' graph for batches shaped like rows
// on another goroutine and returns a channel that receives the
// compilation's error (nil once compiled): a loop can go on training
// meanwhile and probe once it is done. A ProbeDevices call before then
// waits for the compilation.
func (r *Runner) CompileProbe(st *State, rows *tensors.Tensor) <-chan error {
	_, args, done, err := r.probeArgs(st, rows)
	if err != nil {
		return failed(err)
	}
	defer done()
	return compileProbe(r.probe, args(0))
}

// probeArgs returns the replicas the probe reads, each device's inputs
// after its state (rows split over the devices), and a function that
// frees the split; it makes the probe's Exec on first use.
func (r *Runner) probeArgs(st *State, rows *tensors.Tensor) ([]*State, func(d int) []any, func(), error) {
	shards := []*tensors.Tensor{rows}
	states, o, data := []*State{st}, ParallelOptions{Reduce: dtypes.Float32}, []*DeviceData{r.data}
	done := func() {}
	if r.p != nil {
		if err := checkReplica(st, r.st, "Runner"); err != nil {
			return nil, nil, nil, err
		}
		var err error
		if shards, err = r.split(rows); err != nil {
			return nil, nil, nil, err
		}
		states, o, data = r.p.reps, r.p.o, r.p.data
		done = func() {
			for _, t := range shards {
				t.FinalizeAll()
			}
		}
	}
	if r.probe == nil {
		r.probe = MustNewExec(r.s.backend, r.s.replicasGraph(data[0].Window, 1, o)).WithName("device_probe")
	}
	return states, func(d int) []any {
		return r.s.probeInputs(states[d], r.mean[d], r.std[d], data[d].Features, data[d].Labels, shards[d])
	}, done, nil
}

// ProbeDevices times each device's share of a sequence step on its own,
// device d on rank d's batch bs[d] (see Runner.ProbeDevices).
func (r *SeqRunner) ProbeDevices(st *State, bs []*batch.SeqBatch, reps int) ([]time.Duration, error) {
	states, args, err := r.probeArgs(st, bs)
	if err != nil {
		return nil, err
	}
	return r.s.probeDevices(r.probe, states, reps, args)
}

// CompileProbe compiles ProbeDevices' graph for batches shaped like bs on
// another goroutine (see Runner.CompileProbe).
func (r *SeqRunner) CompileProbe(st *State, bs []*batch.SeqBatch) <-chan error {
	_, args, err := r.probeArgs(st, bs)
	if err != nil {
		return failed(err)
	}
	return compileProbe(r.probe, args(0))
}

// probeArgs returns the replicas the probe reads and each device's inputs
// after its state; it makes the probe's Exec on first use.
func (r *SeqRunner) probeArgs(st *State, bs []*batch.SeqBatch) ([]*State, func(d int) []any, error) {
	if len(bs) != r.n {
		return nil, nil, fmt.Errorf("train: a probe of %d devices given %d batches", r.n, len(bs))
	}
	states, o := []*State{st}, ParallelOptions{Reduce: dtypes.Float32}
	if r.p != nil {
		if err := checkReplica(st, r.st, "SeqRunner"); err != nil {
			return nil, nil, err
		}
		states, o = r.p.reps, r.p.o
	}
	if r.probe == nil {
		r.probe = MustNewExec(r.s.backend, r.s.seqReplicasGraph(1, o)).WithName("device_probe_seq")
	}
	return states, func(d int) []any {
		x, seg, y := seqTensors(bs[d])
		return r.s.probeInputs(states[d], r.mean[d], r.std[d], x, seg, y)
	}, nil
}

// probeInputs returns a probe's inputs for one device: st's parameters
// and optimizer state (not donated), the hyperparameters, then tail.
func (s *Stepper) probeInputs(st *State, tail ...*tensors.Tensor) []any {
	a := make([]any, 0, 3*s.nParams+2+len(tail))
	for _, t := range concat(st.Params, st.M, st.V, []*tensors.Tensor{s.hyper(st, 0), st.Amp}, tail) {
		a = append(a, t)
	}
	return a
}

// compileProbe compiles exec for the shapes of args (tensors) on another
// goroutine; the channel receives the outcome.
func compileProbe(exec *Exec, args []any) <-chan error {
	sh := make([]shapes.Shape, len(args))
	for i, a := range args {
		sh[i] = a.(*tensors.Tensor).Shape()
	}
	ch := make(chan error, 1)
	go func() {
		_, err := exec.Compile(sh...)
		ch <- err
	}()
	return ch
}

// failed returns a channel holding err.
func failed(err error) <-chan error {
	ch := make(chan error, 1)
	ch <- err
	return ch
}

// probeDevices runs exec, a one-device step graph, on device d with
// inputs(d) (probeInputs) for every d of states at once, reps+1 rounds, and
// returns each device's median time from its call to its loss being
// readable, the first round left out. Nothing is donated, and the outputs
// are dropped.
func (s *Stepper) probeDevices(exec *Exec, states []*State, reps int, inputs func(d int) []any) ([]time.Duration, error) {
	n, reps := len(states), max(reps, 1)
	args := make([][]any, n)
	for d := range states {
		args[d] = inputs(d)
		defer args[d][3*s.nParams].(*tensors.Tensor).FinalizeAll() // the hyperparameters
	}
	loss := 3*s.nParams + 1 // the outputs: params, m, v, amp, loss, ...
	times := make([][]time.Duration, n)
	errs := make([]error, n)
	for round := range reps + 1 {
		var wg sync.WaitGroup
		// Each round launches from the next device, so no device is always
		// the first (or last) to start.
		for i := range n {
			d := (i + round) % n
			start := time.Now()
			outs, _, err := exec.CallWithGraphOnDevice(deviceNum(d), args[d]...)
			if err != nil {
				wg.Wait()
				return nil, fmt.Errorf("train: probing device %d: %w", d, err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				// The call returns once the step is queued; reading its loss
				// (4 bytes) waits until device d has run it.
				errs[d] = outs[loss].ConstFlatData(func(any) {})
				if round > 0 {
					times[d] = append(times[d], time.Since(start))
				}
				for _, o := range outs {
					o.FinalizeAll()
				}
			}()
		}
		wg.Wait()
		for d, err := range errs {
			if err != nil {
				return nil, fmt.Errorf("train: probing device %d: %w", d, err)
			}
		}
	}
	med := make([]time.Duration, n)
	for d, ts := range times {
		slices.Sort(ts)
		med[d] = ts[len(ts)/2]
	}
	return med, nil
}
