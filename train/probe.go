package train

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/batch"
)

// ProbeDevices times each device's share of a step on its own and returns
// each device's median over reps rounds: the step compiled for one device
// without its collectives (the forward pass, backward pass and update of
// the Replicas strategy on the device's own rows of batch rows), launched
// on every device at once and timed on each from its call to its result.
// A warm-up round comes first, which also waits out the steps already
// queued on the devices. st is read, not changed; it must be the State
// the Runner was made with.
//
// In a data-parallel step the devices meet at the gradient all-reduce, so
// the host sees one completion for all of them: the slowest device's time
// is what every step waits for, and a device much slower than the others
// (another process on it, a lower clock) is a straggler that only a probe
// of the devices apart can name. The probe compiles once and costs about
// reps+1 steps and a wait for the devices each time it runs.
func (r *Runner) ProbeDevices(st *State, rows *tensors.Tensor, reps int) ([]time.Duration, error) {
	shards := []*tensors.Tensor{rows}
	states, o, data := []*State{st}, ParallelOptions{Reduce: dtypes.Float32}, []*DeviceData{r.data}
	if r.p != nil {
		if err := checkReplica(st, r.st, "Runner"); err != nil {
			return nil, err
		}
		var err error
		if shards, err = r.split(rows); err != nil {
			return nil, err
		}
		states, o, data = r.p.reps, r.p.o, r.p.data
	}
	if r.probe == nil {
		r.probe = MustNewExec(r.s.backend, r.s.replicasGraph(data[0].Window, 1, o)).WithName("device_probe")
	}
	times, err := r.s.probeDevices(r.probe, states, reps, func(d int) []any {
		return []any{r.mean[d], r.std[d], data[d].Features, data[d].Labels, shards[d]}
	})
	if r.p != nil {
		for _, t := range shards {
			t.FinalizeAll()
		}
	}
	return times, err
}

// ProbeDevices times each device's share of a sequence step on its own,
// device d on rank d's batch bs[d] (see Runner.ProbeDevices).
func (r *SeqRunner) ProbeDevices(st *State, bs []*batch.SeqBatch, reps int) ([]time.Duration, error) {
	if len(bs) != r.n {
		return nil, fmt.Errorf("train: a probe of %d devices given %d batches", r.n, len(bs))
	}
	states, o := []*State{st}, ParallelOptions{Reduce: dtypes.Float32}
	if r.p != nil {
		if err := checkReplica(st, r.st, "SeqRunner"); err != nil {
			return nil, err
		}
		states, o = r.p.reps, r.p.o
	}
	if r.probe == nil {
		r.probe = MustNewExec(r.s.backend, r.s.seqReplicasGraph(1, o)).WithName("device_probe_seq")
	}
	return r.s.probeDevices(r.probe, states, reps, func(d int) []any {
		x, seg, y := seqTensors(bs[d])
		return []any{r.mean[d], r.std[d], x, seg, y}
	})
}

// probeDevices runs exec, a one-device step graph (inputs: params, m, v,
// hyper, amp, then tail(d)), on device d with states[d] for every d at
// once, reps+1 rounds, and returns each device's median time from its
// call to its loss being readable, the first round left out. Nothing is
// donated, and the outputs are dropped.
func (s *Stepper) probeDevices(exec *Exec, states []*State, reps int, tail func(d int) []any) ([]time.Duration, error) {
	n, reps := len(states), max(reps, 1)
	args := make([][]any, n)
	for d, st := range states {
		a := make([]any, 0, 3*s.nParams+7)
		for _, t := range concat(st.Params, st.M, st.V) {
			a = append(a, t)
		}
		h := s.hyper(st, 0)
		defer h.FinalizeAll()
		args[d] = append(append(a, h, st.Amp), tail(d)...)
	}
	loss := 3*s.nParams + 1 // the outputs: params, m, v, amp, loss, ...
	times := make([][]time.Duration, n)
	errs := make([]error, n)
	for round := range reps + 1 {
		var wg sync.WaitGroup
		for d := range n {
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
