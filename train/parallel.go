package train

import (
	"fmt"
	"slices"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/distributed"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// Parallel runs the rows step (StepRows) data-parallel over n devices of
// one host: parameters and optimizer state are replicated (one copy per
// device, donated every step), the batch is split over the devices, the
// gradients are averaged over them by a collective (NCCL on GPUs) inside
// the compiled step, and every replica applies the same update, so the
// copies stay identical. ParallelOptions.Strategy picks who places the
// collective: XLA's SPMD partitioner or gallop.
type Parallel struct {
	s    *Stepper
	n    int
	o    ParallelOptions
	exec *Exec
	// Replicas[d] is device d's copy of the state; Replicas[0] is the
	// caller's State (checkpoints and evaluation use it).
	reps   []*State
	data   []*DeviceData
	mesh   *distributed.DeviceMesh
	window int
	execN  map[int]*Exec // StepN, by number of steps
	seq    *Exec         // StepSeq
	seqN   map[int]*Exec // StepSeqN, by number of steps
	// With gradient accumulation (Stepper.WithAccumulation), of rows and
	// of sequences (see Parallel.Step).
	accRows, accSeq accExecs
}

// accExecs are the graphs of an accumulated data-parallel step: a
// micro-batch that only accumulates, and the step's last one, which also
// all-reduces the sums and updates.
type accExecs struct{ micro, last *Exec }

// Strategy is how Parallel splits the step over the devices.
type Strategy string

const (
	// Sharding compiles the whole-batch step with XLA's SPMD partitioner
	// (Shardy) over a 1-D "data" mesh, the batch sharded: XLA splits the
	// forward and backward pass and inserts the all-reduces where the
	// gradients are made.
	Sharding Strategy = "sharding"
	// Replicas compiles the step as explicit SPMD, the scheme of PyTorch's
	// DistributedDataParallel: each device computes the loss and gradients
	// of its own rows, gallop's all-reduces (in buckets of
	// ParallelOptions.BucketBytes, in ParallelOptions.Reduce) average them,
	// and every device applies the averaged update.
	Replicas Strategy = "replicas"
)

// ParseStrategy parses "sharding" or "replicas".
func ParseStrategy(s string) (Strategy, error) {
	switch Strategy(s) {
	case Sharding, Replicas:
		return Strategy(s), nil
	}
	return "", fmt.Errorf("train: unknown data-parallel strategy %q (want sharding or replicas)", s)
}

// ParallelOptions configures Parallel.
type ParallelOptions struct {
	Strategy Strategy // default Sharding
	// Reduce is the dtype the Replicas strategy all-reduces the gradients
	// in: Float32 (default) or BFloat16, which halves the bytes on the
	// wire; each device's gradient is rounded to bf16 (8 bits of mantissa)
	// before the sum. The loss is always reduced in float32.
	Reduce dtypes.DType
	// BucketBytes groups the Replicas strategy's gradients into all-reduces
	// of about this many bytes (in Reduce), last layer first, the order the
	// backward pass makes them in, so that XLA can run a bucket's
	// collective while earlier layers' gradients are still being computed
	// (PyTorch DDP's bucket_cap_mb). 0: one all-reduce for all of them.
	BucketBytes int64
}

// ParseParallelOptions parses a strategy ("replicas" or "sharding") and a
// reduction precision ("fp32" or "bf16").
func ParseParallelOptions(strategy, reduce string) (ParallelOptions, error) {
	st, err := ParseStrategy(strategy)
	if err != nil {
		return ParallelOptions{}, err
	}
	o := ParallelOptions{Strategy: st}
	switch reduce {
	case "fp32", "":
		o.Reduce = dtypes.Float32
	case "bf16":
		o.Reduce = dtypes.BFloat16
	default:
		return o, fmt.Errorf("train: gradient all-reduce precision %q, want fp32 or bf16", reduce)
	}
	return o.withDefaults()
}

func (o ParallelOptions) withDefaults() (ParallelOptions, error) {
	if o.Strategy == "" {
		o.Strategy = Sharding
	}
	if o.Reduce == dtypes.InvalidDType {
		o.Reduce = dtypes.Float32
	}
	if _, err := ParseStrategy(string(o.Strategy)); err != nil {
		return o, err
	}
	if o.Reduce != dtypes.Float32 && o.Reduce != dtypes.BFloat16 {
		return o, fmt.Errorf("train: gradient all-reduce in %s, want float32 or bfloat16", o.Reduce)
	}
	if o.Reduce != dtypes.Float32 && o.Strategy != Replicas {
		return o, fmt.Errorf("train: a %s gradient all-reduce needs the replicas strategy (XLA places sharding's in float32)", o.Reduce)
	}
	return o, nil
}

// NewParallel prepares data parallelism over devices 0..n-1 for s; st is
// replicated to every device and data (the flattened dataset) copied to each.
func NewParallel(s *Stepper, st *State, features []float32, labels []int32, f, window, n int, o ParallelOptions) (*Parallel, error) {
	p, err := newParallel(s, st, n, o)
	if err != nil {
		return nil, err
	}
	p.window = window
	p.exec = p.compileSteps(0)
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

// NewSeqParallel prepares data parallelism over devices 0..n-1 for
// sequence batches (StepSeq): st is replicated to every device, and each
// step brings every device its own data-parallel rank's batch. s's model
// must be a model.SequenceModel.
func NewSeqParallel(s *Stepper, st *State, n int, o ParallelOptions) (*Parallel, error) {
	if _, err := s.seqModel(); err != nil {
		return nil, err
	}
	return newParallel(s, st, n, o)
}

// newParallel checks the options and replicates st over devices 0..n-1.
func newParallel(s *Stepper, st *State, n int, o ParallelOptions) (*Parallel, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if n < 2 {
		return nil, fmt.Errorf("train: data parallel needs at least 2 devices, got %d", n)
	}
	if got := s.backend.NumDevices(); got < n {
		return nil, fmt.Errorf("train: data parallel over %d devices, but the backend has %d", n, got)
	}
	mesh, err := distributed.NewDeviceMesh([]int{n}, []string{"data"})
	if err != nil {
		return nil, err
	}
	p := &Parallel{s: s, n: n, o: o, mesh: mesh, execN: map[int]*Exec{}}
	if err := p.replicate(st); err != nil {
		return nil, err
	}
	return p, nil
}

// SetState makes st replica 0 and copies it to the other devices in place
// of their replicas, keeping the compiled steps: after a rollback to a
// checkpoint, say. The State given before it must not be stepped again.
func (p *Parallel) SetState(st *State) error {
	return p.replicate(st)
}

// replicate makes st replica 0 and copies it to devices 1..n-1 as the
// other replicas.
func (p *Parallel) replicate(st *State) error {
	s := p.s
	s.fillAux(st)
	reps := []*State{st}
	for d := 1; d < p.n; d++ {
		r := &State{Step: st.Step}
		for _, g := range []struct {
			src []*tensors.Tensor
			dst *[]*tensors.Tensor
		}{{st.Params, &r.Params}, {st.M, &r.M}, {st.V, &r.V}} {
			for _, t := range g.src {
				c, err := t.OnDeviceClone(s.backend, deviceNum(d))
				if err != nil {
					return fmt.Errorf("train: replicating state to device %d: %w", d, err)
				}
				*g.dst = append(*g.dst, c)
			}
		}
		var err error
		if r.Amp, err = st.Amp.OnDeviceClone(s.backend, deviceNum(d)); err != nil {
			return err
		}
		// Each device sums its own micro-batches' gradients (zero between
		// steps, when checkpoints are taken).
		for _, t := range st.Acc {
			c, err := t.OnDeviceClone(s.backend, deviceNum(d))
			if err != nil {
				return fmt.Errorf("train: gradient sums to device %d: %w", d, err)
			}
			r.Acc = append(r.Acc, c)
		}
		if st.AccOK != nil {
			if r.AccOK, err = st.AccOK.OnDeviceClone(s.backend, deviceNum(d)); err != nil {
				return err
			}
		}
		r.Micro = st.Micro
		reps = append(reps, r)
	}
	p.reps = reps
	return nil
}

// compileSteps returns the Exec of the data-parallel step (k == 0) or of
// k steps chained in one call (see Stepper.rowsGraphN).
func (p *Parallel) compileSteps(k int) *Exec {
	s, name := p.s, "train_step"
	var graph func([]*Node) []*Node
	if p.o.Strategy == Replicas {
		graph = s.replicasGraph(p.window, p.n, p.o)
	} else {
		graph = s.rowsGraph(p.window)
	}
	if k > 0 {
		graph, name = s.chainSteps(graph, k, 4, 1), fmt.Sprintf("train_steps_%d", k)
	}
	exec := MustNewExec(s.backend, graph).WithName(fmt.Sprintf("%s_%s", name, p.o.Strategy))
	if p.o.Strategy == Replicas {
		return exec.SPMD(p.mesh)
	}
	// Sharding: everything replicated but the rows, which are split over
	// the devices (the last input, or the last k).
	// Inputs: params, m, v, hyper, amp, mean, std, features, labels, rows.
	return p.shardLast(exec, 3*s.nParams+6+max(k, 1), max(k, 1))
}

// compileSeq returns the Exec of the data-parallel sequence step.
func (p *Parallel) compileSeq() *Exec {
	s := p.s
	if p.o.Strategy == Replicas {
		return MustNewExec(s.backend, s.seqReplicasGraph(p.n, p.o)).WithName("train_step_seq_replicas").SPMD(p.mesh)
	}
	// Inputs: params, m, v, hyper, amp, mean, std, x, segments, labels; the
	// global batch is the devices' batches stacked along the rows.
	exec := MustNewExec(s.backend, s.seqGraph).WithName("train_step_seq_sharding")
	return p.shardLast(exec, 3*s.nParams+7, 3)
}

// shardLast has XLA's partitioner compile exec, whose ninputs inputs are
// replicated but for the last nsharded, split over the devices along
// their first axis.
func (p *Parallel) shardLast(exec *Exec, ninputs, nsharded int) *Exec {
	shard, err := distributed.BuildSpec(p.mesh).S("data").Done()
	if err != nil {
		panic(err) // a 1-D mesh named "data" always has an axis "data"
	}
	specs := make([]*distributed.ShardingSpec, ninputs)
	for i := ninputs - nsharded; i < ninputs; i++ {
		specs[i] = shard
	}
	return exec.AutoSharding(p.mesh).WithInputShardingSpecs(specs...).WithOutputShardingSpecs(nil)
}

// StepN runs len(lrs) data-parallel steps in one call of one compiled
// graph, as Stepper.StepRowsN does on one device: step i uses learning
// rate lrs[i], and rows[i][d] holds device d's share of its rows. It
// returns device 0's StepOuts.
func (p *Parallel) StepN(lrs []float64, mean, std []*tensors.Tensor, rows [][]*tensors.Tensor) ([]StepOut, error) {
	k := len(lrs)
	if k == 0 || len(rows) != k {
		return nil, fmt.Errorf("train: StepN: %d learning rates and %d row sets, want the same number, at least 1", k, len(rows))
	}
	exec := p.execN[k]
	if exec == nil {
		exec = p.compileSteps(k)
		p.execN[k] = exec
	}
	return p.stepN(exec, "steps", lrs, func(d int) []any {
		tail := []any{mean[d], std[d], p.data[d].Features, p.data[d].Labels}
		for i := range rows {
			tail = append(tail, rows[i][d])
		}
		return tail
	})
}

// stepN runs exec, len(lrs) chained steps (see Stepper.chainSteps), on
// every replica, device d's inputs after its state being tail(d), and
// returns device 0's StepOuts; what names the steps in an error.
func (p *Parallel) stepN(exec *Exec, what string, lrs []float64, tail func(d int) []any) ([]StepOut, error) {
	start := time.Now()
	outs, err := p.call(exec, func(st *State) *tensors.Tensor { return p.s.hyperN(st, lrs) }, tail)
	if err != nil {
		return nil, fmt.Errorf("train: data-parallel %s %d-%d: %w", what, p.reps[0].Step, p.reps[0].Step+int64(len(lrs))-1, err)
	}
	var res []StepOut
	for d, st := range p.reps {
		if o := p.s.unpackN(st, outs[d], lrs, start); d == 0 {
			res = o
		}
	}
	return res, nil
}

// call donates every replica's state and calls exec with, for each device
// d, that state, hyper of it and tail(d); it returns each device's outputs.
func (p *Parallel) call(exec *Exec, hyper func(*State) *tensors.Tensor, tail func(d int) []any) ([][]*tensors.Tensor, error) {
	var args []any
	for d, st := range p.reps {
		t := tail(d)
		devArgs, err := p.s.stateArgsWith(st, hyper(st), deviceNum(d), len(t))
		if err != nil {
			return nil, err
		}
		args = append(append(args, devArgs...), t...)
	}
	outs, err := exec.Call(args...)
	if err != nil {
		return nil, err
	}
	nout := len(outs) / p.n
	per := make([][]*tensors.Tensor, p.n)
	for d := range per {
		per[d] = outs[d*nout : (d+1)*nout]
	}
	return per, nil
}

// replicasGraph is rowsGraph on one device's rows with the gradients and
// the loss averaged over n devices (Strategy Replicas) as o says. With
// n == 1 there is no collective.
func (s *Stepper) replicasGraph(window, n int, o ParallelOptions) func(in []*Node) []*Node {
	return func(in []*Node) []*Node {
		k, np := len(in), s.nParams
		x, y := gatherWindows(in[k-3], in[k-2], in[k-1], window)
		ps, ms, vs := in[:np], in[np:2*np], in[2*np:3*np]
		hyper, amp, mean, std := in[3*np], in[3*np+1], in[3*np+2], in[3*np+3]
		loss, grads, _, _, _, _ := s.forwardBackward(ps, amp, mean, std, x, y)
		loss, grads = allReduce(loss, grads, n, o, 1/float32(n))
		gradsOK, gnorm, perParam := gradStats(grads)
		return s.applyTail(ps, ms, vs, grads, hyper, amp, loss, IsFinite(loss), gradsOK, gnorm, perParam)
	}
}

// microBody computes one device's share of a micro-batch of an
// accumulated data-parallel step from the master weights ps, amp, the
// normalisation and the device's inputs: the gradients of the device's
// part of the loss, and the micro-batch's loss and finiteness as every
// device agrees on them (see agree).
type microBody func(ps []*Node, amp, mean, std *Node, inputs []*Node) (loss *Node, grads []*Node, lossOK, gradsOK, gnorm, perParam *Node)

// rowsMicro is the microBody of fixed windows: inputs are the dataset's
// features and labels and the device's rows; each device's loss is the
// mean over its rows, and the micro-batch's the mean over the devices.
func (s *Stepper) rowsMicro(window, n int) microBody {
	return func(ps []*Node, amp, mean, std *Node, in []*Node) (*Node, []*Node, *Node, *Node, *Node, *Node) {
		x, y := gatherWindows(in[0], in[1], in[2], window)
		loss, grads, lossOK, gradsOK, gnorm, perParam := s.forwardBackward(ps, amp, mean, std, x, y)
		sums, lossOK, gradsOK, perParam := agree(n, []*Node{loss}, lossOK, gradsOK, perParam)
		if n > 1 {
			loss = MulScalar(sums[0], 1/float32(n))
		}
		return loss, grads, lossOK, gradsOK, gnorm, perParam
	}
}

// seqMicro is the microBody of sequence batches: inputs are the device's
// x, segments and labels and the labelled positions of the whole step
// (every micro-batch on every device), by which each device divides its
// summed loss, so that the gradients' sum over devices and micro-batches
// is the gradient of the step's mean loss; the micro-batch's loss is the
// mean over its labelled positions on all the devices.
func (s *Stepper) seqMicro(n int) microBody {
	return func(ps []*Node, amp, mean, std *Node, in []*Node) (*Node, []*Node, *Node, *Node, *Node, *Node) {
		sm, _ := s.seqModel()
		x, seg, y, labelled := in[0], in[1], in[2], in[3]
		one := ScalarOne(x.Graph(), dtypes.Float32)
		denom := Max(labelled, one)
		part, grads, lossOK, gradsOK, gnorm, perParam := s.backward(ps, amp, func(cps []*Node, cmean, cstd, cx *Node) *Node {
			return Div(maskedNLL(ConvertDType(sm.ForwardSeq(cps, cmean, cstd, cx, seg), dtypes.Float32), y), denom)
		}, mean, std, x)
		sums, lossOK, gradsOK, perParam := agree(n, []*Node{Mul(part, denom), labelledCount(y)}, lossOK, gradsOK, perParam)
		return Div(sums[0], Max(sums[1], one)), grads, lossOK, gradsOK, gnorm, perParam
	}
}

// accumulateMicroGraph is a micro-batch of an accumulated data-parallel
// step that only accumulates: body's gradients are added to the device's
// own sums, and nothing but body's agreement crosses the devices. Inputs:
// params, acc (n each), accOK, amp, mean, std, then body's inputs.
// Outputs as accumulateGraph.
func (s *Stepper) accumulateMicroGraph(body microBody) func(in []*Node) []*Node {
	return func(in []*Node) []*Node {
		np := s.nParams
		ps, acc := in[:np], in[np:2*np]
		accOK, amp, mean, std := in[2*np], in[2*np+1], in[2*np+2], in[2*np+3]
		loss, grads, lossOK, gradsOK, gnorm, perParam := body(ps, amp, mean, std, in[2*np+4:])
		return s.accumulateTail(acc, accOK, grads, loss, lossOK, gradsOK, gnorm, perParam)
	}
}

// accumulateLastGraph is the last micro-batch of an accumulated
// data-parallel step: accumulateMicroGraph's, then the sums all-reduced
// over the n devices as o says and multiplied by scale, and the update.
// Inputs: params, m, v, hyper, amp, acc (n each), accOK, mean, std, then
// body's inputs. Outputs: rowsGraph's (the loss, finite and
// per-parameter flags the micro-batch's, the grad norm the update's),
// then the zeroed sums and accOK reset.
func (s *Stepper) accumulateLastGraph(body microBody, n int, o ParallelOptions, scale float32) func(in []*Node) []*Node {
	return func(in []*Node) []*Node {
		np := s.nParams
		ps, ms, vs := in[:np], in[np:2*np], in[2*np:3*np]
		hyper, amp, acc, accOK := in[3*np], in[3*np+1], in[3*np+2:4*np+2], in[4*np+2]
		mean, std := in[4*np+3], in[4*np+4]
		loss, grads, lossOK, gradsOK, gnorm, perParam := body(ps, amp, mean, std, in[4*np+5:])
		t := s.accumulateTail(acc, accOK, grads, loss, lossOK, gradsOK, gnorm, perParam)
		_, grads = allReduce(nil, t[:np], n, o, scale)
		ok := GreaterOrEqual(t[np], ScalarOne(hyper.Graph(), dtypes.Float32))
		_, gnorm, _ = gradStats(grads)
		nps, nms, nvs, namp := s.update(ps, ms, vs, grads, gnorm, hyper, amp, ok)
		outs := append(append(append(make([]*Node, 0, 4*np+7), nps...), nms...), nvs...)
		outs = append(outs, namp, loss, gnorm, t[np+3], t[np+4], ConvertDType(LogicalNot(ok), dtypes.Float32))
		for i := range acc {
			outs = append(outs, ZerosLike(acc[i]))
		}
		return append(outs, OnesLike(accOK))
	}
}

// agree all-reduces, in one small collective, sums (float32 scalars) to
// their sums over the n devices and a micro-batch's finiteness flags to
// whether they hold on every device, so that every replica sees the same
// and takes the same decisions; n == 1 returns them as they are.
func agree(n int, sums []*Node, lossOK, gradsOK, perParam *Node) ([]*Node, *Node, *Node, *Node) {
	if n == 1 {
		return sums, lossOK, gradsOK, perParam
	}
	g, f32 := perParam.Graph(), dtypes.Float32
	parts := make([]*Node, 0, len(sums)+3)
	for _, x := range sums {
		parts = append(parts, Reshape(x, 1))
	}
	parts = append(parts, Reshape(ConvertDType(lossOK, f32), 1), Reshape(ConvertDType(gradsOK, f32), 1), perParam)
	v := g.Distributed().AllReduceOne(Concatenate(parts, 0), compute.ReduceOpSum)
	out := make([]*Node, len(sums))
	for i := range out {
		out[i] = Reshape(Slice(v, AxisElem(i)))
	}
	all := func(x *Node) *Node { return GreaterOrEqual(x, Const(g, float32(n)-0.5)) }
	k := len(sums)
	return out, all(Reshape(Slice(v, AxisElem(k)))), all(Reshape(Slice(v, AxisElem(k+1)))),
		ConvertDType(all(Slice(v, AxisRange(k+2))), f32)
}

// allReduce sums the loss and the gradients over n devices and multiplies
// the sums by scale (1/n: the mean), the gradients carried in o.Reduce and
// grouped into buckets of o.BucketBytes (the loss travels with the first
// bucket, in float32; a nil loss is none). Every device gets the same
// sums, so every replica takes the same decisions (skip, clip).
func allReduce(loss *Node, grads []*Node, n int, o ParallelOptions, scale float32) (*Node, []*Node) {
	var mean *Node
	out := make([]*Node, len(grads))
	for bi, b := range gradBuckets(grads, o.Reduce, o.BucketBytes) {
		ops := make([]*Node, 0, len(b)+1)
		for _, i := range b {
			ops = append(ops, ConvertDType(grads[i], o.Reduce))
		}
		if bi == 0 && loss != nil {
			ops = append(ops, loss)
		}
		if n > 1 {
			ops = ops[0].Graph().Distributed().AllReduce(ops, compute.ReduceOpSum)
		}
		for j, i := range b {
			out[i] = MulScalar(ConvertDType(ops[j], dtypes.Float32), scale)
		}
		if bi == 0 && loss != nil {
			mean = MulScalar(ops[len(b)], scale)
		}
	}
	return mean, out
}

// gradBuckets splits the indices of grads, last first, into groups of at
// least capBytes in dtype dt (the last group may be smaller); capBytes <= 0
// gives one group.
func gradBuckets(grads []*Node, dt dtypes.DType, capBytes int64) [][]int {
	var out [][]int
	var cur []int
	var size int64
	for i := len(grads) - 1; i >= 0; i-- {
		cur = append(cur, i)
		size += int64(grads[i].Shape().Size() * dt.Size())
		if capBytes > 0 && size >= capBytes {
			out, cur, size = append(out, cur), nil, 0
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// AllReduceProbe is what ProbeAllReduce measured.
type AllReduceProbe struct {
	Bytes int64 // each device's gradient bytes, in the reduction's dtype
	// Collective is the median time of a call of a program that only
	// all-reduces tensors shaped like the parameters (bucketed and typed as
	// the Replicas step does; for Sharding, whose collectives XLA places
	// and combines itself, the same bytes in float32) minus that of the
	// same program without the collective: the all-reduce's own time,
	// without the host's cost of a call.
	Collective time.Duration
	// Call is the median time of a whole call of the all-reduce program.
	Call time.Duration
}

// ProbeAllReduce times the step's gradient all-reduce on its own (see
// AllReduceProbe), over reps calls of each program after two warm-up
// calls, alternating. The step may hide part of the all-reduce behind
// computation; the probe measures what there is to hide.
func (p *Parallel) ProbeAllReduce(reps int) (AllReduceProbe, error) {
	s, reps := p.s, max(reps, 1)
	var r AllReduceProbe
	args := make([]any, 0, p.n*s.nParams)
	for d, st := range p.reps {
		for _, t := range st.Params {
			args = append(args, t)
			if d == 0 {
				r.Bytes += int64(t.Shape().Size() * p.o.Reduce.Size())
			}
		}
	}
	var execs [2]*Exec // without, with the collective
	for i := range execs {
		n := 1 + i*(p.n-1)
		e, err := NewExec(s.backend, func(in []*Node) []*Node {
			g := in[0].Graph()
			_, grads := allReduce(Const(g, float32(0)), in, n, p.o, 1/float32(n))
			// One element of each keeps the collectives live without
			// copying their results back.
			for i, x := range grads {
				grads[i] = Slice(Reshape(x, x.Shape().Size()), AxisRange(0, 1))
			}
			return grads
		})
		if err != nil {
			return r, err
		}
		defer e.Finalize()
		execs[i] = e.WithName(fmt.Sprintf("allreduce_probe_%d", i)).SPMD(p.mesh)
	}
	var times [2][]time.Duration
	for k := range reps + 2 {
		for i, e := range execs {
			start := time.Now()
			outs, err := e.Call(args...)
			if err != nil {
				return r, fmt.Errorf("train: all-reduce probe: %w", err)
			}
			// Execution is asynchronous: reading each device's first
			// output (4 bytes) waits until every device is done.
			for d := range p.n {
				tensors.MustConstFlatData(outs[d*len(outs)/p.n], func([]float32) {})
			}
			for _, o := range outs {
				o.FinalizeAll()
			}
			if k >= 2 {
				times[i] = append(times[i], time.Since(start))
			}
		}
	}
	for i := range times {
		slices.Sort(times[i])
	}
	r.Call = times[1][reps/2]
	r.Collective = max(0, r.Call-times[0][reps/2])
	return r, nil
}

// Devices is the number of devices.
func (p *Parallel) Devices() int { return p.n }

// Step runs one data-parallel step. rows[d] holds device d's share of the
// batch's global rows (int32 [B/n]). The returned StepOut is device 0's
// (the loss and flags are the global batch's, identical on every device).
//
// With gradient accumulation over k micro-batches (the Stepper's
// WithAccumulation), k calls make one update, as Stepper.StepRows: each
// device adds its rows' gradients to its own sums, and only the k-th call
// all-reduces them (in ParallelOptions' buckets and dtype) and applies the
// mean of the k·n micro-batch gradients, PyTorch DDP's no_sync, so the
// gradients cross the devices once per update rather than once per
// micro-batch. A micro-batch's loss and finiteness flags (a few floats)
// are all-reduced at every call, so StepOut.Loss is the global
// micro-batch's mean and every replica takes the same skip decision; its
// GradNorm is device 0's own micro-batch gradient's norm, except in the
// k-th call, where it is the norm of the averaged gradient that was
// applied. Accumulation uses these explicit per-device graphs whatever
// the Strategy: XLA's partitioner would all-reduce every micro-batch.
func (p *Parallel) Step(lr float64, mean, std []*tensors.Tensor, rows []*tensors.Tensor) (StepOut, error) {
	tail := func(d int) []any {
		return []any{mean[d], std[d], p.data[d].Features, p.data[d].Labels, rows[d]}
	}
	if s := p.s; s.accum > 1 {
		return p.accumulate(lr, &p.accRows, "rows", func() (microBody, float32) {
			return s.rowsMicro(p.window, p.n), 1 / float32(p.n*s.accum)
		}, tail)
	}
	return p.step(p.exec, "step", lr, tail)
}

// accumulate runs one micro-batch of an accumulated data-parallel step
// (see Step) with e's graphs, compiled on first use from body (the
// micro-batch and the scale of the summed gradients); device d's inputs
// after its state are tail(d).
func (p *Parallel) accumulate(lr float64, e *accExecs, name string, body func() (microBody, float32), tail func(d int) []any) (StepOut, error) {
	s, np, st0 := p.s, p.s.nParams, p.reps[0]
	start := time.Now()
	if e.micro == nil {
		b, scale := body()
		e.micro = MustNewExec(s.backend, s.accumulateMicroGraph(b)).WithName("accumulate_" + name + "_replicas").SPMD(p.mesh)
		e.last = MustNewExec(s.backend, s.accumulateLastGraph(b, p.n, p.o, scale)).WithName("accumulate_apply_" + name + "_replicas").SPMD(p.mesh)
	}
	if st0.Micro+1 < s.accum {
		var args []any
		for d, st := range p.reps {
			for _, t := range st.Params {
				args = append(args, t)
			}
			var err error
			if args, err = s.donateOn(args, st.Step, deviceNum(d), append(slices.Clone(st.Acc), st.AccOK)...); err != nil {
				return StepOut{}, err
			}
			args = append(append(args, st.Amp), tail(d)...)
		}
		outs, err := e.micro.Call(args...)
		if err != nil {
			return StepOut{}, fmt.Errorf("train: data-parallel step %d micro-batch %d: %w", st0.Step, st0.Micro, err)
		}
		nout := len(outs) / p.n
		var out StepOut
		for d, st := range p.reps {
			o := outs[d*nout : (d+1)*nout]
			copy(st.Acc, o[:np])
			st.AccOK = o[np]
			if d == 0 {
				out = StepOut{Step: st.Step, LR: lr, Start: start, Loss: o[np+1], GradNorm: o[np+2], Finite: o[np+3], ParamFinite: o[np+4]}
			}
			st.Micro++
		}
		return out, nil
	}
	var derr error
	outs, err := p.call(e.last, func(st *State) *tensors.Tensor { return s.hyper(st, lr) }, func(d int) []any {
		st := p.reps[d]
		args, err := s.donateOn(nil, st.Step, deviceNum(d), append(slices.Clone(st.Acc), st.AccOK)...)
		if err != nil {
			derr = err
		}
		return append(args, tail(d)...)
	})
	if derr != nil {
		return StepOut{}, derr
	}
	if err != nil {
		return StepOut{}, fmt.Errorf("train: data-parallel step %d, last micro-batch: %w", st0.Step, err)
	}
	var out StepOut
	for d, st := range p.reps {
		o := outs[d]
		if u := s.unpack(st, o, lr, start); d == 0 {
			out = u
		}
		copy(st.Acc, o[3*np+6:4*np+6])
		st.AccOK, st.Micro = o[4*np+6], 0
	}
	return out, nil
}

// step runs one step of exec at learning rate lr, device d's inputs after
// its state being tail(d), and returns device 0's StepOut.
func (p *Parallel) step(exec *Exec, what string, lr float64, tail func(d int) []any) (StepOut, error) {
	start := time.Now()
	outs, err := p.call(exec, func(st *State) *tensors.Tensor { return p.s.hyper(st, lr) }, tail)
	if err != nil {
		return StepOut{}, fmt.Errorf("train: data-parallel %s %d: %w", what, p.reps[0].Step, err)
	}
	var out StepOut
	for d, st := range p.reps {
		if o := p.s.unpack(st, outs[d], lr, start); d == 0 {
			out = o
		}
	}
	return out, nil
}

// StepSeq runs one data-parallel step on sequence batches: x[d], seg[d]
// and y[d] are data-parallel rank d's batch (see Stepper.StepSeq), the
// same shape on every device. The loss is the mean over the labelled
// positions of all the devices' batches together, as Stepper.StepSeq's on
// those batches stacked along the rows (however unevenly they are split);
// the returned StepOut is device 0's.
func (p *Parallel) StepSeq(lr float64, mean, std, x, seg, y []*tensors.Tensor) (StepOut, error) {
	if err := p.checkSeq(x, seg, y, mean, std); err != nil {
		return StepOut{}, err
	}
	if p.s.accum > 1 {
		return StepOut{}, fmt.Errorf("train: StepSeq with gradient accumulation over %d micro-batches: use StepSeqMicro or SeqRunner.Accumulate, which weigh the micro-batches by their labelled positions", p.s.accum)
	}
	if p.seq == nil {
		p.seq = p.compileSeq()
	}
	return p.step(p.seq, "sequence step", lr, func(d int) []any {
		return []any{mean[d], std[d], x[d], seg[d], y[d]}
	})
}

// StepSeqN runs len(lrs) data-parallel sequence steps in one call of one
// compiled graph, as Stepper.StepSeqN does on one device: step i uses
// learning rate lrs[i], and x[i][d], seg[i][d], y[i][d] are rank d's batch
// of it (see StepSeq). It returns device 0's StepOuts.
func (p *Parallel) StepSeqN(lrs []float64, mean, std []*tensors.Tensor, x, seg, y [][]*tensors.Tensor) ([]StepOut, error) {
	s, k := p.s, len(lrs)
	if k == 0 || len(x) != k || len(seg) != k || len(y) != k {
		return nil, fmt.Errorf("train: StepSeqN: %d learning rates and %d/%d/%d steps of batches, want the same number, at least 1", k, len(x), len(seg), len(y))
	}
	for i := range k {
		if err := p.checkSeq(x[i], seg[i], y[i], mean, std); err != nil {
			return nil, err
		}
	}
	if s.accum != 1 {
		return nil, fmt.Errorf("train: StepSeqN does not support gradient accumulation")
	}
	if p.seqN == nil {
		p.seqN = map[int]*Exec{}
	}
	exec := p.seqN[k]
	if exec == nil {
		name := fmt.Sprintf("train_steps_seq_%d_%s", k, p.o.Strategy)
		if p.o.Strategy == Replicas {
			exec = MustNewExec(s.backend, s.chainSteps(s.seqReplicasGraph(p.n, p.o), k, 2, 3)).WithName(name).SPMD(p.mesh)
		} else {
			// Inputs: params, m, v, hyper, amp, mean, std, then each step's
			// x, segments and labels, the devices' batches stacked.
			exec = p.shardLast(MustNewExec(s.backend, s.chainSteps(s.seqGraph, k, 2, 3)).WithName(name), 3*s.nParams+4+3*k, 3*k)
		}
		p.seqN[k] = exec
	}
	return p.stepN(exec, "sequence steps", lrs, func(d int) []any {
		tail := []any{mean[d], std[d]}
		for i := range k {
			tail = append(tail, x[i][d], seg[i][d], y[i][d])
		}
		return tail
	})
}

// checkSeq refuses a sequence step's inputs unless there is one of each
// per device and every device's x, seg and y have device 0's shapes.
func (p *Parallel) checkSeq(x, seg, y, mean, std []*tensors.Tensor) error {
	for _, a := range [][]*tensors.Tensor{mean, std, x, seg, y} {
		if len(a) != p.n {
			return fmt.Errorf("train: data-parallel sequence step over %d devices given %d tensors for one of its inputs", p.n, len(a))
		}
	}
	for d := 1; d < p.n; d++ {
		for i, a := range [][]*tensors.Tensor{x, seg, y} {
			if !a[d].Shape().Equal(a[0].Shape()) {
				return fmt.Errorf("train: data-parallel sequence step %d: device %d's %s is %s, device 0's %s: every rank's batch must have one shape (set the sampler's PadMultiple to Len)",
					p.reps[0].Step, d, []string{"x", "segments", "labels"}[i], a[d].Shape(), a[0].Shape())
			}
		}
	}
	return nil
}

// StepSeqMicro runs one micro-batch of an accumulated data-parallel step
// on sequence batches (device d on rank d's x[d], seg[d], y[d], as
// StepSeq), as Stepper.StepSeqMicro does on one device: labelled is the
// number of labelled positions of the whole step, every micro-batch on
// every device. Each device sums its own gradients, and the k-th call
// all-reduces them and updates (see Step), so the update follows the mean
// loss over all the step's labelled positions; each StepOut's loss is its
// micro-batch's mean over the positions of all the devices.
func (p *Parallel) StepSeqMicro(lr float64, mean, std, x, seg, y []*tensors.Tensor, labelled int) (StepOut, error) {
	if err := p.checkSeq(x, seg, y, mean, std); err != nil {
		return StepOut{}, err
	}
	s := p.s
	if s.accum == 1 {
		return StepOut{}, fmt.Errorf("train: StepSeqMicro without gradient accumulation (use StepSeq)")
	}
	return p.accumulate(lr, &p.accSeq, "seq", func() (microBody, float32) { return s.seqMicro(p.n), 1 }, func(d int) []any {
		// One host tensor per device: a tensor the call moved to one
		// device is not moved on to another.
		return []any{mean[d], std[d], x[d], seg[d], y[d], tensors.FromScalar(float32(labelled))}
	})
}
