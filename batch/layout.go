package batch

import (
	"context"
	"fmt"
	"sync"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/tensors"
)

// Layout is how a batch of variable-length sequences is arranged in B rows
// of T positions. Both layouts produce the same three host buffers, all
// row-major (position t of row b is element b*T+t, its feature j is
// X[(b*T+t)*F+j]):
//
//	X        float32 [B, T, F]  the features of the event at each position, 0 at padding
//	Segments int32   [B, T]     0 at padding; k > 0 at the positions of the k-th sequence of the row
//	Labels   int32   [B, T]     the series label of the event at each position; -1 at padding
//	                            and where the series has no label
//
// In both layouts each sequence occupies one contiguous run of positions of
// one row, oldest event first; sequences of a row carry ids 1, 2, ... in
// the order they appear, and all padding of a row comes after its last
// sequence. This is the segments contract of model.SequenceModel.ForwardSeq:
// positions attend to / carry state from only positions of their own row
// with the same id, so a sequence gives the same outputs wherever it is
// placed. (model.Transformer clamps position embeddings at its window W:
// keep sequences at most W long for it.)
//
// A sequence longer than the sampler's Len is rejected when the sampler is
// built, never truncated or split there: cut long runs with the maxLen of
// SeqByTime or SeqByGap (which split them into near-equal pieces) first.
type Layout uint8

const (
	// Padded puts one sequence at the start of each row, with segment id 1
	// (row i holds the batch's i-th sequence). B is fixed; T is
	// the batch's longest sequence rounded up to PadMultiple (capped at Len),
	// so it varies from batch to batch unless PadMultiple is Len. Rows
	// beyond the batch's sequences (at the end of an epoch) are all padding.
	Padded Layout = iota
	// Packed concatenates sequences into rows of exactly T = Len positions,
	// placed first-fit-decreasing (longest first, each into the first row
	// with room), so a row holds several sequences and padding only at its
	// end.
	Packed
)

func (l Layout) String() string {
	switch l {
	case Padded:
		return "padded"
	case Packed:
		return "packed"
	}
	return fmt.Sprintf("layout(%d)", uint8(l))
}

// Place is where one sequence sits in a rank's batch: positions
// [Offset, Offset+Len) of row Row, all carrying segment id Segment.
type Place struct {
	Seq     int32 // index into the sampler's sequences
	Row     int32
	Offset  int32
	Len     int32
	Segment int32 // 1 + the sequence's index within its row
}

// RankPlan is one rank's batch of a global step, before its data is read.
type RankPlan struct {
	Rows   int     // B
	T      int     // positions per row
	Tokens int     // positions holding data (the sum of Places' Len)
	Places []Place // sorted by Row, then Offset
}

// StepPlan is one global step: a batch for each data-parallel rank.
type StepPlan struct {
	Epoch int          // the epoch the step belongs to
	State SamplerState // the sampler's state after this step (what a checkpoint stores)
	Ranks []RankPlan
}

// BatchStats counts what one batch holds.
type BatchStats struct {
	Seqs     int // sequences placed
	Tokens   int // positions holding data
	Labelled int // positions with a label (>= 0)
	Slots    int // B*T
}

// PaddingFraction is the share of positions that are padding.
func (s BatchStats) PaddingFraction() float64 {
	if s.Slots == 0 {
		return 0
	}
	return 1 - float64(s.Tokens)/float64(s.Slots)
}

// EpochStats accumulates the plans of an epoch's steps.
type EpochStats struct {
	Steps   int   // global steps
	Batches int   // rank batches (Steps × ranks)
	Seqs    int   // sequences placed (each sample once per epoch)
	Tokens  int64 // positions holding data
	Slots   int64 // positions in all batches, B*T summed
	// StepSlots is, summed over steps, ranks × the largest B*T among the
	// step's rank batches: the work of synchronous data-parallel steps, in
	// which every rank waits for the one with the largest batch.
	StepSlots int64

	imbSum float64
	imbN   int
	imbMax float64
}

// Add accounts for one global step.
func (e *EpochStats) Add(p *StepPlan) {
	e.Steps++
	var mx, sum, slots int
	for i := range p.Ranks {
		r := &p.Ranks[i]
		e.Batches++
		e.Seqs += len(r.Places)
		e.Tokens += int64(r.Tokens)
		e.Slots += int64(r.Rows * r.T)
		mx = max(mx, r.Tokens)
		sum += r.Tokens
		slots = max(slots, r.Rows*r.T)
	}
	e.StepSlots += int64(len(p.Ranks) * slots)
	if sum > 0 {
		imb := float64(mx) * float64(len(p.Ranks)) / float64(sum)
		e.imbSum += imb
		e.imbN++
		e.imbMax = max(e.imbMax, imb)
	}
}

// PaddingFraction is the share of all batch positions that are padding.
func (e *EpochStats) PaddingFraction() float64 {
	if e.Slots == 0 {
		return 0
	}
	return 1 - float64(e.Tokens)/float64(e.Slots)
}

// SyncPaddingFraction is the share of the work of synchronous steps
// (StepSlots) not spent on data: padding, and ranks waiting for a rank with
// a larger batch. With one rank, or the Packed layout, it equals
// PaddingFraction.
func (e *EpochStats) SyncPaddingFraction() float64 {
	if e.StepSlots == 0 {
		return 0
	}
	return 1 - float64(e.Tokens)/float64(e.StepSlots)
}

// TokensPerBatch is the mean number of data positions in a rank's batch.
func (e *EpochStats) TokensPerBatch() float64 {
	if e.Batches == 0 {
		return 0
	}
	return float64(e.Tokens) / float64(e.Batches)
}

// RankImbalance is the mean over steps of max/mean tokens across ranks
// (1 is perfect balance; steps without tokens are left out), and the worst
// step's value.
func (e *EpochStats) RankImbalance() (mean, worst float64) {
	if e.imbN == 0 {
		return 1, 1
	}
	return e.imbSum / float64(e.imbN), e.imbMax
}

func (e EpochStats) String() string {
	m, w := e.RankImbalance()
	return fmt.Sprintf("%d steps, %d batches, %d sequences, padding %.1f%% (%.1f%% with waiting ranks), %.0f tokens/batch, rank imbalance %.3f (worst %.3f)",
		e.Steps, e.Batches, e.Seqs, 100*e.PaddingFraction(), 100*e.SyncPaddingFraction(), e.TokensPerBatch(), m, w)
}

// SeqSource reads the rows of sequences. The loader calls ReadSeq from
// several goroutines at once.
type SeqSource interface {
	// Features is F, the number of features per row.
	Features() int
	// ReadSeq copies the q.Len() rows of q: their features into x
	// (q.Len()*F values) and their labels into y (q.Len() values, -1 for
	// rows without a label).
	ReadSeq(q Seq, x []float32, y []int32) error
}

// SeriesSource reads sequences from in-memory series of F features.
type SeriesSource struct {
	Series []Series
	F      int
}

// Features implements SeqSource.
func (s *SeriesSource) Features() int { return s.F }

// ReadSeq implements SeqSource.
func (s *SeriesSource) ReadSeq(q Seq, x []float32, y []int32) error {
	if int(q.Series) >= len(s.Series) {
		return fmt.Errorf("batch: sequence %+v: no series %d", q, q.Series)
	}
	sr := &s.Series[q.Series]
	if q.End <= q.Start || int(q.End) > sr.Rows() || int(q.End)*s.F > len(sr.Features) {
		return fmt.Errorf("batch: sequence %+v out of range for series %s (%d rows)", q, sr.Symbol, sr.Rows())
	}
	copy(x, sr.Features[int(q.Start)*s.F:int(q.End)*s.F])
	copy(y, sr.Labels[q.Start:q.End])
	return nil
}

// SeqBatch is one rank's batch in host memory, laid out as Layout says.
// X, Segments and Labels are sliced to [B, T, F], [B, T] and [B, T] of this
// batch; their backing arrays are sized for the largest batch and reused.
type SeqBatch struct {
	Layout   Layout
	B, T, F  int
	X        []float32
	Segments []int32
	Labels   []int32
	Places   []Place // where each sequence sits (indices into the sampler's sequences)
	Stats    BatchStats
	Rank     int
	Epoch    int
	State    SamplerState // the sampler's state after this batch's global step
	// OnDevice holds X, Segments and Labels copied to the rank's device
	// when the loader stages batches (SeqLoaderConfig.Backend); nil
	// otherwise. The loader frees them when it reuses the batch.
	OnDevice *StagedSeq

	x    []float32
	seg  []int32
	y    []int32
	n    int64         // loader: batch number
	done chan struct{} // loader: signalled when assembled
	err  error         // loader: why assembly failed
}

// StagedSeq is a sequence batch's tensors on a device: X [B, T, F] float32,
// Segments and Labels [B, T] int32.
type StagedSeq struct {
	X, Segments, Labels *tensors.Tensor
}

// stage copies the batch's buffers to device dev of backend into
// b.OnDevice, freeing the tensors an earlier use of b staged. The copies
// are made when stage returns, so the host buffers may be refilled.
func (b *SeqBatch) stage(backend compute.Backend, dev compute.DeviceNum) error {
	b.unstage()
	b.OnDevice = &StagedSeq{}
	for _, c := range []struct {
		dst   **tensors.Tensor
		flat  any
		shape shapes.Shape
	}{
		{&b.OnDevice.X, b.X, shapes.Make(dtypes.Float32, b.B, b.T, b.F)},
		{&b.OnDevice.Segments, b.Segments, shapes.Make(dtypes.Int32, b.B, b.T)},
		{&b.OnDevice.Labels, b.Labels, shapes.Make(dtypes.Int32, b.B, b.T)},
	} {
		buf, err := backend.BufferFromFlatData(dev, c.flat, c.shape)
		if err == nil {
			*c.dst, err = tensors.FromBuffer(buf)
		}
		if err != nil {
			b.unstage() // what was copied before the failure
			return fmt.Errorf("batch: copying rank %d's batch to device %d: %w", b.Rank, dev, err)
		}
	}
	return nil
}

// unstage frees b.OnDevice. A step still running on those buffers keeps
// them: the backend releases device memory once its readers are done.
func (b *SeqBatch) unstage() {
	if b.OnDevice == nil {
		return
	}
	for _, t := range []*tensors.Tensor{b.OnDevice.X, b.OnDevice.Segments, b.OnDevice.Labels} {
		if t != nil {
			t.FinalizeAll()
		}
	}
	b.OnDevice = nil
}

// NewBatch allocates a batch able to hold any of this sampler's rank
// batches with f features per row.
func (s *SeqSampler) NewBatch(f int) *SeqBatch {
	b, t := s.cfg.Rows, s.cfg.Len
	return &SeqBatch{
		Layout: s.cfg.Layout,
		F:      f,
		x:      make([]float32, b*t*f),
		seg:    make([]int32, b*t),
		y:      make([]int32, b*t),
		Places: make([]Place, 0, s.maxPlaces),
		done:   make(chan struct{}, 1),
	}
}

// Assemble reads the sequences of rp (indices into seqs) from src into the
// batch, in its layout. It fails if src fails or the plan does not fit the
// batch's buffers.
func (b *SeqBatch) Assemble(src SeqSource, seqs []Seq, rp *RankPlan) error {
	if err := b.setPlan(rp); err != nil {
		return err
	}
	_, err := b.fill(src, seqs)
	return err
}

// setPlan copies the rank plan into the batch and slices its buffers.
func (b *SeqBatch) setPlan(rp *RankPlan) error {
	if rp.Rows < 0 || rp.T < 0 || rp.Rows*rp.T > len(b.seg) {
		return fmt.Errorf("batch: plan of %d×%d positions, batch holds %d", rp.Rows, rp.T, len(b.seg))
	}
	b.B, b.T = rp.Rows, rp.T
	b.X, b.Segments, b.Labels = b.x[:b.B*b.T*b.F], b.seg[:b.B*b.T], b.y[:b.B*b.T]
	b.Places = append(b.Places[:0], rp.Places...)
	b.Stats = BatchStats{Seqs: len(rp.Places), Tokens: rp.Tokens, Slots: b.B * b.T}
	return nil
}

// fill reads the batch's places from src and pads the rest. On failure it
// names the stage that failed: "layout" for a plan that does not fit,
// "source" for src.
func (b *SeqBatch) fill(src SeqSource, seqs []Seq) (stage string, err error) {
	f, t := b.F, b.T
	if src.Features() != f {
		return "layout", fmt.Errorf("batch: source has %d features, batch %d", src.Features(), f)
	}
	row, used := 0, 0 // the row being filled and its positions used so far
	pad := func(r, from int) {
		clear(b.X[(r*t+from)*f : (r+1)*t*f])
		clear(b.Segments[r*t+from : (r+1)*t])
		for i := r*t + from; i < (r+1)*t; i++ {
			b.Labels[i] = -1
		}
	}
	b.Stats.Labelled = 0
	for _, p := range b.Places {
		if p.Seq < 0 || int(p.Seq) >= len(seqs) || seqs[p.Seq].Len() != int(p.Len) || p.Segment < 1 ||
			int(p.Row) >= b.B || int(p.Row) < row || int(p.Offset)+int(p.Len) > t {
			return "layout", fmt.Errorf("batch: place %+v does not fit a %d×%d batch of %d sequences", p, b.B, t, len(seqs))
		}
		for ; row < int(p.Row); row++ {
			pad(row, used)
			used = 0
		}
		if int(p.Offset) != used {
			return "layout", fmt.Errorf("batch: place %+v does not follow the %d positions used in its row", p, used)
		}
		at := row*t + used
		n := int(p.Len)
		if err := src.ReadSeq(seqs[p.Seq], b.X[at*f:(at+n)*f], b.Labels[at:at+n]); err != nil {
			return "source", err
		}
		for i := at; i < at+n; i++ {
			b.Segments[i] = p.Segment
			if b.Labels[i] >= 0 {
				b.Stats.Labelled++
			}
		}
		used += n
	}
	for ; row < b.B; row++ {
		pad(row, used)
		used = 0
	}
	return "", nil
}

// roundUp rounds n up to a multiple of m (m >= 1), at least m.
func roundUp(n, m int) int {
	return max(1, (n+m-1)/m) * m
}

// StageError is a loader failure: the stage that failed ("source": the
// SeqSource; "layout": a plan that does not fit the batch; "h2d": the copy
// to the device), the batch it failed at (0-based, counted from the
// loader's start) and the cause.
type StageError struct {
	Stage string
	Batch int64
	Err   error
}

func (e *StageError) Error() string {
	return fmt.Sprintf("batch: loader stage %s, batch %d: %v", e.Stage, e.Batch, e.Err)
}

func (e *StageError) Unwrap() error { return e.Err }

// SeqLoaderConfig configures NewSeqLoader.
type SeqLoaderConfig struct {
	Rank     int // the data-parallel rank whose batches to assemble (0 to the sampler's Ranks-1)
	Prefetch int // batches assembled ahead of the consumer (default 2)
	Workers  int // goroutines assembling batches in parallel (default 1)
	// Backend, when set, makes the workers copy each assembled batch to
	// device Device of this backend (SeqBatch.OnDevice), so the copy of the
	// next batch overlaps the running step instead of happening inside it.
	// Leave it nil for the CPU backend, which reads host memory directly.
	Backend compute.Backend
	Device  compute.DeviceNum
}

// SeqLoader assembles one rank's batches of sequences ahead of the
// consumer. A planner goroutine runs the sampler and hands batches, in
// order, to Workers goroutines that read them from the source into a fixed
// set of reused buffers; Next returns them in the sampler's order, so the
// sequence of batches does not depend on Workers. Nothing is allocated per
// batch in steady state. Back-pressure: the planner waits for a released
// buffer. A failure of a stage reaches Next as a *StageError when the
// consumer gets to the batch that failed (batches before it are delivered);
// it is sticky. Cancelling ctx or Close stops every goroutine; Next then
// returns the context's error instead of waiting.
type SeqLoader struct {
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	free    chan *SeqBatch
	work    chan *SeqBatch
	ordered chan *SeqBatch
	pending *SeqBatch // taken from ordered, not yet assembled when Next gave up
	err     error
	all     []*SeqBatch // every buffer, to free their device copies on Close
}

// NewSeqLoader starts assembling rank cfg.Rank's batches of the steps s
// plans, reading sequences from src. The loader owns s until Close.
func NewSeqLoader(ctx context.Context, src SeqSource, s *SeqSampler, cfg SeqLoaderConfig) (*SeqLoader, error) {
	if cfg.Rank < 0 || cfg.Rank >= s.cfg.Ranks {
		return nil, fmt.Errorf("batch: loader for rank %d of %d", cfg.Rank, s.cfg.Ranks)
	}
	if src.Features() < 1 {
		return nil, fmt.Errorf("batch: source with %d features", src.Features())
	}
	if cfg.Prefetch < 1 {
		cfg.Prefetch = 2
	}
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	n := cfg.Prefetch + cfg.Workers + 1
	ctx, cancel := context.WithCancel(ctx)
	l := &SeqLoader{
		ctx:     ctx,
		cancel:  cancel,
		free:    make(chan *SeqBatch, n),
		work:    make(chan *SeqBatch, n),
		ordered: make(chan *SeqBatch, n),
	}
	for i := 0; i < n; i++ {
		b := s.NewBatch(src.Features())
		b.Rank = cfg.Rank
		l.free <- b
		l.all = append(l.all, b)
	}
	l.wg.Add(1 + cfg.Workers)
	go l.plan(s, cfg.Rank)
	for i := 0; i < cfg.Workers; i++ {
		go l.assemble(src, s.seqs, cfg.Backend, cfg.Device)
	}
	return l, nil
}

// plan runs the sampler and queues each batch, in order, for assembly.
func (l *SeqLoader) plan(s *SeqSampler, rank int) {
	defer l.wg.Done()
	defer close(l.work)
	var p StepPlan
	for n := int64(0); ; n++ {
		var b *SeqBatch
		select {
		case <-l.ctx.Done():
			return
		case b = <-l.free:
		}
		s.Next(&p)
		b.Epoch, b.State, b.err, b.n = p.Epoch, p.State, nil, n
		if err := b.setPlan(&p.Ranks[rank]); err != nil {
			b.err = &StageError{Stage: "layout", Batch: n, Err: err}
		}
		// Both channels hold every buffer, so these sends do not block.
		l.ordered <- b
		l.work <- b
	}
}

// assemble reads queued batches from src and, with a backend, copies them
// to device dev.
func (l *SeqLoader) assemble(src SeqSource, seqs []Seq, backend compute.Backend, dev compute.DeviceNum) {
	defer l.wg.Done()
	for {
		select {
		case <-l.ctx.Done():
			return
		case b, ok := <-l.work:
			if !ok {
				return
			}
			if b.err == nil {
				if stage, err := b.fill(src, seqs); err != nil {
					b.err = &StageError{Stage: stage, Batch: b.n, Err: err}
				} else if backend != nil {
					if err := b.stage(backend, dev); err != nil {
						b.err = &StageError{Stage: "h2d", Batch: b.n, Err: err}
					}
				}
			}
			b.done <- struct{}{}
		}
	}
}

// Next returns the next batch, in the sampler's order. Hand it back with
// Release once the step that reads it no longer needs its buffers. Next
// returns a *StageError (wrapping the cause) if assembling the batch
// failed, ctx's error if ctx ends first, and the loader context's error
// once the loader is cancelled or closed.
func (l *SeqLoader) Next(ctx context.Context) (*SeqBatch, error) {
	if l.err != nil {
		return nil, l.err
	}
	if err := l.ctx.Err(); err != nil {
		return nil, err
	}
	b := l.pending
	l.pending = nil
	if b == nil {
		select {
		case b = <-l.ordered:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-l.ctx.Done():
			return nil, l.ctx.Err()
		}
	}
	select {
	case <-b.done:
	case <-ctx.Done():
		l.pending = b
		return nil, ctx.Err()
	case <-l.ctx.Done():
		l.pending = b
		return nil, l.ctx.Err()
	}
	if b.err != nil {
		l.err = b.err
		return nil, l.err
	}
	return b, nil
}

// Release hands a batch back for reuse.
func (l *SeqLoader) Release(b *SeqBatch) {
	select {
	case l.free <- b:
	default:
	}
}

// Close stops the loader, waits for its goroutines and frees the batches'
// device copies (SeqBatch.OnDevice): batches must not be used after it.
func (l *SeqLoader) Close() {
	l.cancel()
	l.wg.Wait()
	for _, b := range l.all {
		b.unstage()
	}
}
