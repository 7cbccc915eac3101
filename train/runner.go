package train

import (
	"fmt"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/batch"
)

// Runner runs a Stepper's fused step over a dataset resident on the first
// n devices of its backend: on one device through StepRows and StepRowsN,
// on several data parallel through Parallel. A loop written against it is
// the same for any n: batches of row ids from a loader configured with
// LoaderConfig, then Step (or StepN) for each.
type Runner struct {
	s         *Stepper
	st        *State // replica 0 when n > 1
	n         int
	rows, f   int // the resident dataset's rows and features
	offs      []int32
	data      *DeviceData // n == 1
	p         *Parallel   // n > 1
	mean, std []*tensors.Tensor
	host      []int32
	probe     *Exec // ProbeDevices'
}

// NewRunner copies w's samples (Windows.Flat) and the normalisation to
// each of n devices of s's backend and returns a Runner that trains st on
// them; with n > 1, o chooses the data-parallel strategy, and st becomes
// replica 0 (see Parallel).
func NewRunner(s *Stepper, st *State, w *batch.Windows, norm batch.Normalizer, n int, o ParallelOptions) (*Runner, error) {
	if got := s.backend.NumDevices(); n < 1 || n > got {
		return nil, fmt.Errorf("train: a runner over %d devices, but the backend has %d", n, got)
	}
	feats, labels, offs, err := w.Flat()
	if err != nil {
		return nil, err
	}
	r := &Runner{s: s, st: st, n: n, rows: len(labels), f: w.F, offs: offs}
	if r.mean, r.std, err = normOnDevices(s, norm, n); err != nil {
		return nil, err
	}
	if n == 1 {
		r.data, err = s.NewDeviceData(feats, labels, w.F, w.W)
	} else {
		r.p, err = NewParallel(s, st, feats, labels, w.F, w.W, n, o)
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

// Devices is the number of devices the Runner trains on.
func (r *Runner) Devices() int { return r.n }

// Resident returns the rows and features of the dataset on each device.
func (r *Runner) Resident() (rows, features int) { return r.rows, r.f }

// Parallel is the data-parallel step when the Runner has several devices,
// else nil.
func (r *Runner) Parallel() *Parallel { return r.p }

// LoaderConfig returns cfg set to hand out each sample's global row
// (Batch.Rows) for this Runner's resident dataset. With one device on a
// device backend (XLA) the rows are staged on it ahead of the step; with
// several they are split over the devices on the host, and on the Go
// backend, which reads host memory directly, the loader stages nothing.
func (r *Runner) LoaderConfig(cfg batch.LoaderConfig) batch.LoaderConfig {
	cfg.RowOffsets, cfg.Backend = r.offs, nil
	if r.n == 1 && r.s.stagesInputs() {
		cfg.Backend = r.s.backend
	}
	return cfg
}

// Step runs one optimizer step of st at learning rate lr on the samples
// whose global rows are rows (int32 [B], Batch.Rows; B a multiple of
// Devices). With several devices st must be the State the Runner was made
// with or last given by SetState.
func (r *Runner) Step(st *State, lr float64, rows *tensors.Tensor) (StepOut, error) {
	if r.p == nil {
		return r.s.StepRows(st, lr, r.mean[0], r.std[0], r.data, rows)
	}
	if err := checkReplica(st, r.st, "Runner"); err != nil {
		return StepOut{}, err
	}
	shards, err := r.split(rows)
	if err != nil {
		return StepOut{}, err
	}
	return r.p.Step(lr, r.mean, r.std, shards)
}

// StepN runs len(lrs) steps of st in one call of one compiled graph, step
// i at lrs[i] on rows[i] (see Stepper.StepRowsN and Parallel.StepN).
func (r *Runner) StepN(st *State, lrs []float64, rows []*tensors.Tensor) ([]StepOut, error) {
	if r.p == nil {
		return r.s.StepRowsN(st, lrs, r.mean[0], r.std[0], r.data, rows)
	}
	if err := checkReplica(st, r.st, "Runner"); err != nil {
		return nil, err
	}
	shards := make([][]*tensors.Tensor, len(rows))
	for i, rs := range rows {
		var err error
		if shards[i], err = r.split(rs); err != nil {
			return nil, err
		}
	}
	return r.p.StepN(lrs, r.mean, r.std, shards)
}

// SetState makes st the State the Runner trains, in place of the one it
// was made with, keeping its compiled steps and resident data: after a
// rollback to a checkpoint, say. With several devices st is copied to
// each (Parallel.SetState), and the State given before must not be
// stepped again.
func (r *Runner) SetState(st *State) error {
	return setState(&r.st, r.p, st)
}

// setState sets *cur to st and, with several devices (p), replicates it.
func setState(cur **State, p *Parallel, st *State) error {
	if p != nil {
		if err := p.SetState(st); err != nil {
			return err
		}
	}
	*cur = st
	return nil
}

// checkReplica refuses a State other than want, the replica 0 a
// data-parallel runner of kind what was made with.
func checkReplica(st, want *State, what string) error {
	if st != want {
		return fmt.Errorf("train: a data-parallel %s steps the State it was made with or was last given by SetState (e.g. one restored from a checkpoint)", what)
	}
	return nil
}

// split splits rows (int32 [B]) into Devices equal shards, one per device.
func (r *Runner) split(rows *tensors.Tensor) ([]*tensors.Tensor, error) {
	r.host = r.host[:0]
	tensors.MustConstFlatData(rows, func(v []int32) { r.host = append(r.host, v...) })
	if len(r.host)%r.n != 0 {
		return nil, fmt.Errorf("train: a batch of %d rows does not split over %d devices", len(r.host), r.n)
	}
	per := len(r.host) / r.n
	shards := make([]*tensors.Tensor, r.n)
	for d := range shards {
		shards[d] = tensors.FromFlatDataAndDimensions(r.host[d*per:(d+1)*per], per)
	}
	return shards, nil
}

// normOnDevices copies the normalisation's mean and std to each of the
// first n devices of s's backend.
func normOnDevices(s *Stepper, norm batch.Normalizer, n int) (mean, std []*tensors.Tensor, err error) {
	for d := range n {
		m := tensors.FromFlatDataAndDimensions(norm.Mean, len(norm.Mean))
		sd := tensors.FromFlatDataAndDimensions(norm.Std, len(norm.Std))
		for _, t := range []*tensors.Tensor{m, sd} {
			if err := t.MaterializeOnDevice(s.backend, false, deviceNum(d)); err != nil {
				return nil, nil, fmt.Errorf("train: normalisation to device %d: %w", d, err)
			}
		}
		mean, std = append(mean, m), append(std, sd)
	}
	return mean, std, nil
}

// SeqRunner runs a Stepper's step over sequence batches (batch.SeqBatch,
// padded or packed) on the first n devices of its backend: on one device
// through Stepper.StepSeq, on several data parallel through
// Parallel.StepSeq, device d taking data-parallel rank d's batch. A loop
// written against it is the same for any n: a batch.SeqSampler with Ranks
// n and one batch.SeqLoader per rank, then Step with the ranks' batches.
type SeqRunner struct {
	s         *Stepper
	st        *State // replica 0 when n > 1
	n         int
	p         *Parallel // n > 1
	mean, std []*tensors.Tensor
	x, seg, y []*tensors.Tensor
	outs      []StepOut // Accumulate's
	probe     *Exec     // ProbeDevices'
}

// NewSeqRunner copies the normalisation to each of n devices of s's
// backend and returns a SeqRunner that trains st; with n > 1, o chooses
// the data-parallel strategy, and st becomes replica 0 (see Parallel).
func NewSeqRunner(s *Stepper, st *State, norm batch.Normalizer, n int, o ParallelOptions) (*SeqRunner, error) {
	if got := s.backend.NumDevices(); n < 1 || n > got {
		return nil, fmt.Errorf("train: a runner over %d devices, but the backend has %d", n, got)
	}
	if _, err := s.seqModel(); err != nil {
		return nil, err
	}
	r := &SeqRunner{s: s, st: st, n: n, x: make([]*tensors.Tensor, n), seg: make([]*tensors.Tensor, n), y: make([]*tensors.Tensor, n)}
	var err error
	if r.mean, r.std, err = normOnDevices(s, norm, n); err != nil {
		return nil, err
	}
	if n > 1 {
		if r.p, err = NewSeqParallel(s, st, n, o); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// LoaderConfig returns cfg for rank cfg.Rank's batch.SeqLoader: on a
// device backend (XLA) the loader copies each batch to the rank's device,
// the one that runs its share of the step, while the previous step runs;
// on the Go backend, which reads host memory directly, it stages nothing.
func (r *SeqRunner) LoaderConfig(cfg batch.SeqLoaderConfig) batch.SeqLoaderConfig {
	cfg.Backend, cfg.Device = nil, 0
	if r.s.stagesInputs() {
		cfg.Backend, cfg.Device = r.s.backend, deviceNum(cfg.Rank)
	}
	return cfg
}

// SetState makes st the State the SeqRunner trains (see Runner.SetState).
func (r *SeqRunner) SetState(st *State) error {
	return setState(&r.st, r.p, st)
}

// Devices is the number of devices the SeqRunner trains on.
func (r *SeqRunner) Devices() int { return r.n }

// Parallel is the data-parallel step when the SeqRunner has several
// devices, else nil.
func (r *SeqRunner) Parallel() *Parallel { return r.p }

// Step runs one optimizer step of st at learning rate lr on bs, one batch
// per device (bs[d] is rank d's; all of one shape when n > 1). The loss is
// the mean over the labelled positions of all of them. With several
// devices st must be the State the SeqRunner was made with.
func (r *SeqRunner) Step(st *State, lr float64, bs []*batch.SeqBatch) (StepOut, error) {
	if len(bs) != r.n {
		return StepOut{}, fmt.Errorf("train: a sequence step over %d devices given %d batches", r.n, len(bs))
	}
	for d, b := range bs {
		r.inputs(d, b)
	}
	if r.p == nil {
		return r.s.StepSeq(st, lr, r.mean[0], r.std[0], r.x[0], r.seg[0], r.y[0])
	}
	if err := checkReplica(st, r.st, "SeqRunner"); err != nil {
		return StepOut{}, err
	}
	return r.p.StepSeq(lr, r.mean, r.std, r.x, r.seg, r.y)
}

// inputs sets device d's step inputs to batch b (see seqTensors).
func (r *SeqRunner) inputs(d int, b *batch.SeqBatch) {
	r.x[d], r.seg[d], r.y[d] = seqTensors(b)
}

// seqTensors returns batch b's x, segments and labels: the tensors the
// loader staged on the device, or new ones over its host buffers.
func seqTensors(b *batch.SeqBatch) (x, seg, y *tensors.Tensor) {
	if on := b.OnDevice; on != nil {
		return on.X, on.Segments, on.Labels
	}
	return tensors.FromFlatDataAndDimensions(b.X, b.B, b.T, b.F),
		tensors.FromFlatDataAndDimensions(b.Segments, b.B, b.T),
		tensors.FromFlatDataAndDimensions(b.Labels, b.B, b.T)
}

// StepN runs len(lrs) optimizer steps of st in one call of one compiled
// graph (Stepper.StepSeqN on one device, Parallel.StepSeqN on several):
// step i at lrs[i] on bs[i*n+d] for each device d (n the devices), every
// batch of one shape. Small models whose step is the host's per-call work
// run up to len(lrs) times faster; each distinct len(lrs) compiles once.
func (r *SeqRunner) StepN(st *State, lrs []float64, bs []*batch.SeqBatch) ([]StepOut, error) {
	k := len(lrs)
	if k == 0 || len(bs) != k*r.n {
		return nil, fmt.Errorf("train: a sequence call of %d steps over %d devices given %d batches", k, r.n, len(bs))
	}
	x, seg, y := make([][]*tensors.Tensor, k), make([][]*tensors.Tensor, k), make([][]*tensors.Tensor, k)
	for i := range k {
		x[i], seg[i], y[i] = make([]*tensors.Tensor, r.n), make([]*tensors.Tensor, r.n), make([]*tensors.Tensor, r.n)
		for d := range r.n {
			x[i][d], seg[i][d], y[i][d] = seqTensors(bs[i*r.n+d])
		}
	}
	if r.p == nil {
		col := func(a [][]*tensors.Tensor) []*tensors.Tensor {
			out := make([]*tensors.Tensor, k)
			for i := range a {
				out[i] = a[i][0]
			}
			return out
		}
		return r.s.StepSeqN(st, lrs, r.mean[0], r.std[0], col(x), col(seg), col(y))
	}
	if err := checkReplica(st, r.st, "SeqRunner"); err != nil {
		return nil, err
	}
	return r.p.StepSeqN(lrs, r.mean, r.std, x, seg, y)
}

// Accumulate runs one optimizer step of st at learning rate lr over k
// micro-batches, k the Stepper's accumulation (WithAccumulation), each
// one batch per device: micro[i*n+d] is micro-batch i of rank d (n the
// devices). The gradients are summed on each device (and all-reduced
// once, after the last micro-batch, on several), and the update follows
// the gradient of the mean loss over the labelled positions of all of
// them, every position weighted equally however the micro-batches and
// ranks split them (their counts, batch.BatchStats.Labelled, are known
// before the first one runs; a mean of the micro-batches' means would not
// be). It returns one StepOut per micro-batch, each with its micro-batch's
// own mean loss (over all the devices), the last the update's (Applied);
// the slice is reused by the next call.
func (r *SeqRunner) Accumulate(st *State, lr float64, micro []*batch.SeqBatch) ([]StepOut, error) {
	k := r.s.accum
	if len(micro) != k*r.n || st.Micro != 0 {
		return nil, fmt.Errorf("train: Accumulate given %d batches at micro-batch %d of a step, want %d (%d micro-batches × %d devices) from its start", len(micro), st.Micro, k*r.n, k, r.n)
	}
	if r.p != nil {
		if err := checkReplica(st, r.st, "SeqRunner"); err != nil {
			return nil, err
		}
	}
	labelled := 0
	for _, b := range micro {
		labelled += b.Stats.Labelled
	}
	r.outs = r.outs[:0]
	for i := range k {
		for d := range r.n {
			r.inputs(d, micro[i*r.n+d])
		}
		var o StepOut
		var err error
		if r.p == nil {
			o, err = r.s.StepSeqMicro(st, lr, r.mean[0], r.std[0], r.x[0], r.seg[0], r.y[0], labelled)
		} else {
			o, err = r.p.StepSeqMicro(lr, r.mean, r.std, r.x, r.seg, r.y, labelled)
		}
		if err != nil {
			return nil, err
		}
		r.outs = append(r.outs, o)
	}
	return r.outs, nil
}

// Predict returns the logits [B, T, C] of a sequence batch, computed on
// the first device with st's parameters.
func (r *SeqRunner) Predict(st *State, b *batch.SeqBatch) (*tensors.Tensor, error) {
	return r.s.PredictSeq(st, r.mean[0], r.std[0], tensors.FromFlatDataAndDimensions(b.X, b.B, b.T, b.F),
		tensors.FromFlatDataAndDimensions(b.Segments, b.B, b.T))
}
