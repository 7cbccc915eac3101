package train

import (
	"fmt"
	"time"

	"github.com/gomlx/compute/distributed"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// Parallel runs the rows step (StepRows) data-parallel over n devices of
// one host with XLA's SPMD partitioner: parameters and optimizer state are
// replicated (one copy per device, donated every step), the batch is split
// along a 1-D "data" mesh, and XLA inserts the gradient all-reduce over the
// devices' collectives (NCCL on GPUs) inside the compiled step. Every
// replica applies the same update, so the copies stay identical.
type Parallel struct {
	s    *Stepper
	n    int
	exec *Exec
	// Replicas[d] is device d's copy of the state; Replicas[0] is the
	// caller's State (checkpoints and evaluation use it).
	reps []*State
	data []*DeviceData
}

// NewParallel prepares data parallelism over devices 0..n-1 for s; st is
// replicated to every device and data (the flattened dataset) copied to each.
func NewParallel(s *Stepper, st *State, features []float32, labels []int32, f, window, n int) (*Parallel, error) {
	if n < 2 {
		return nil, fmt.Errorf("train: data parallel needs at least 2 devices, got %d", n)
	}
	if got := s.backend.NumDevices(); got < n {
		return nil, fmt.Errorf("train: data parallel over %d devices, but the backend has %d", n, got)
	}
	if s.accum != 1 {
		return nil, fmt.Errorf("train: data parallel with gradient accumulation is not supported yet")
	}
	mesh, err := distributed.NewDeviceMesh([]int{n}, []string{"data"})
	if err != nil {
		return nil, err
	}
	shard, err := distributed.BuildSpec(mesh).S("data").Done()
	if err != nil {
		return nil, err
	}
	p := &Parallel{s: s, n: n}
	k := 3*s.nParams + 6 // params, m, v, hyper, amp, mean, std, features, labels
	specs := make([]*distributed.ShardingSpec, k+1)
	specs[k] = shard // rows: the batch is split over the devices
	p.exec = MustNewExec(s.backend, s.rowsGraph(window)).WithName("train_step_dp").
		AutoSharding(mesh).WithInputShardingSpecs(specs...).WithOutputShardingSpecs(nil)
	s.fillAux(st)
	p.reps = []*State{st}
	for d := 1; d < n; d++ {
		r := &State{Step: st.Step}
		for _, g := range []struct {
			src []*tensors.Tensor
			dst *[]*tensors.Tensor
		}{{st.Params, &r.Params}, {st.M, &r.M}, {st.V, &r.V}} {
			for _, t := range g.src {
				c, err := t.OnDeviceClone(s.backend, deviceNum(d))
				if err != nil {
					return nil, fmt.Errorf("train: replicating state to device %d: %w", d, err)
				}
				*g.dst = append(*g.dst, c)
			}
		}
		if r.Amp, err = st.Amp.OnDeviceClone(s.backend, deviceNum(d)); err != nil {
			return nil, err
		}
		p.reps = append(p.reps, r)
	}
	for d := 0; d < n; d++ {
		ft := tensors.FromFlatDataAndDimensions(features, len(features)/f, f)
		lt := tensors.FromFlatDataAndDimensions(labels, len(labels))
		for _, t := range []*tensors.Tensor{ft, lt} {
			if err := t.MaterializeOnDevice(s.backend, false, deviceNum(d)); err != nil {
				return nil, fmt.Errorf("train: copying the dataset to device %d: %w", d, err)
			}
			t.FinalizeLocal()
		}
		p.data = append(p.data, &DeviceData{Features: ft, Labels: lt, Window: window})
	}
	return p, nil
}

// Devices is the number of devices.
func (p *Parallel) Devices() int { return p.n }

// Step runs one data-parallel step. rows[d] holds device d's share of the
// batch's global rows (int32 [B/n]). The returned StepOut is device 0's
// (the loss and flags are the global batch's, identical on every device).
func (p *Parallel) Step(lr float64, mean, std []*tensors.Tensor, rows []*tensors.Tensor) (StepOut, error) {
	s := p.s
	st0 := p.reps[0]
	start := time.Now()
	args := make([]any, 0, p.n*(3*s.nParams+7))
	for d, st := range p.reps {
		devArgs, err := s.stateArgs(st, lr, deviceNum(d), 5)
		if err != nil {
			return StepOut{}, err
		}
		args = append(append(args, devArgs...), mean[d], std[d], p.data[d].Features, p.data[d].Labels, rows[d])
	}
	outs, err := p.exec.Call(args...)
	if err != nil {
		return StepOut{}, fmt.Errorf("train: data-parallel step %d: %w", st0.Step, err)
	}
	nout := len(outs) / p.n
	var out StepOut
	for d, st := range p.reps {
		o := s.unpack(st, outs[d*nout:(d+1)*nout], lr, start)
		if d == 0 {
			out = o
		}
	}
	return out, nil
}
