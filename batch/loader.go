package batch

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/core/tensors"
)

// Batch is one training batch, staged as tensors ready to be fed to a
// compiled step. Batches are owned by the Loader and reused: hand each back
// with Loader.Release once the step that used it has been dispatched.
type Batch struct {
	X *tensors.Tensor // float32 [B, W*F] (nil with LoaderConfig.RowOffsets)
	Y *tensors.Tensor // int32 [B] (nil with LoaderConfig.RowOffsets)
	// Rows is int32 [B]: each sample's last row in the flattened dataset
	// (Windows.Flat), set only with LoaderConfig.RowOffsets.
	Rows  *tensors.Tensor
	Index []int32      // positions in the loader's refs, to name samples
	State SamplerState // sampler state after this batch, for checkpoints
	refs  []Ref
}

// Loader assembles batches in a background goroutine, up to Prefetch ahead
// of the consumer, reusing a fixed set of buffers (no allocation in steady
// state). Back-pressure: the producer waits for a released batch.
type Loader struct {
	out     chan *Batch
	free    chan *Batch
	errc    chan error
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	backend compute.Backend
	onBatch func(time.Time, time.Duration)
	offsets []int32
	pool    *gatherPool
	parts   int
	done    sync.WaitGroup
}

// LoaderConfig configures NewLoader.
type LoaderConfig struct {
	BatchSize int
	Prefetch  int // batches staged ahead (>= 1)
	// Backend, when set, makes the producer copy each batch to device 0 of
	// this backend (host-to-device), so the copy of batch n+1 overlaps step
	// n instead of happening inside it. Leave it nil for the CPU backend,
	// which reads host memory directly.
	Backend compute.Backend
	// RowOffsets, when set (from Windows.Flat), makes the loader hand out
	// only each sample's global row (Batch.Rows), for a step that gathers
	// windows from a dataset resident on the device: B int32 cross to the
	// device per step instead of B×W×F floats.
	RowOffsets []int32
	// Workers is the number of goroutines that assemble one batch in
	// parallel (default: 1 below 256 KiB per batch, else up to 4 or
	// GOMAXPROCS).
	Workers int
	// OnBatch, if not nil, is called from the producer goroutine with the
	// time it spent assembling each batch (for the profiler's trace).
	OnBatch func(start time.Time, d time.Duration)
}

// NewLoader starts producing batches of w's samples refs in the order the
// sampler gives. The loader stops when ctx is cancelled or Close is called.
func NewLoader(ctx context.Context, w *Windows, refs []Ref, s *Sampler, cfg LoaderConfig) (*Loader, error) {
	if cfg.BatchSize <= 0 || cfg.BatchSize > len(refs) {
		return nil, fmt.Errorf("batch: batch size %d with %d samples", cfg.BatchSize, len(refs))
	}
	if cfg.Prefetch < 1 {
		cfg.Prefetch = 1
	}
	ctx, cancel := context.WithCancel(ctx)
	l := &Loader{
		out:    make(chan *Batch, cfg.Prefetch),
		free:   make(chan *Batch, cfg.Prefetch+2),
		errc:   make(chan error, 1),
		cancel: cancel,
	}
	n := w.SampleSize()
	for i := 0; i < cfg.Prefetch+2; i++ {
		b := &Batch{Index: make([]int32, cfg.BatchSize), refs: make([]Ref, cfg.BatchSize)}
		if cfg.RowOffsets != nil {
			b.Rows = tensors.FromShape(shapeI32(cfg.BatchSize))
		} else {
			b.X = tensors.FromShape(shapeF32(cfg.BatchSize, n))
			b.Y = tensors.FromShape(shapeI32(cfg.BatchSize))
		}
		l.free <- b
	}
	l.offsets = cfg.RowOffsets
	l.backend, l.onBatch = cfg.Backend, cfg.OnBatch
	workers := cfg.Workers
	if workers <= 0 {
		workers = 1
		if cfg.BatchSize*n*4 >= 256<<10 {
			workers = min(4, runtime.GOMAXPROCS(0))
		}
	}
	if workers > 1 {
		l.pool, l.parts = newGatherPool(workers), workers
	}
	l.wg.Add(1)
	go l.run(ctx, w, refs, s)
	return l, nil
}

func (l *Loader) run(ctx context.Context, w *Windows, refs []Ref, s *Sampler) {
	defer l.wg.Done()
	if l.pool != nil {
		defer l.pool.close()
	}
	defer close(l.out)
	for {
		var b *Batch
		select {
		case <-ctx.Done():
			return
		case b = <-l.free:
		}
		t0 := time.Now()
		s.Next(b.Index)
		for i, j := range b.Index {
			b.refs[i] = refs[j]
		}
		b.State = s.State()
		if err := l.stage(w, b); err != nil {
			l.errc <- err
			return
		}
		if l.onBatch != nil {
			l.onBatch(t0, time.Since(t0))
		}
		select {
		case <-ctx.Done():
			return
		case l.out <- b:
		}
	}
}

// stage fills b's tensors and, with a backend, copies them to the device.
func (l *Loader) stage(w *Windows, b *Batch) error {
	var err error
	if b.Rows != nil {
		if e := b.Rows.MutableFlatData(func(flat any) { GlobalRows(l.offsets, b.refs, flat.([]int32)) }); e != nil {
			return fmt.Errorf("batch: staging batch: %w", e)
		}
		if l.backend != nil {
			if err := b.Rows.MaterializeOnDevice(l.backend, false, 0); err != nil {
				return fmt.Errorf("batch: copying batch to the device: %w", err)
			}
		}
		return nil
	}
	if e := b.X.MutableFlatData(func(flat any) {
		err = b.Y.MutableFlatData(func(fy any) {
			if l.pool != nil {
				l.pool.gather(w, b.refs, flat.([]float32), fy.([]int32), l.parts, &l.done)
			} else {
				w.Gather(b.refs, flat.([]float32), fy.([]int32))
			}
		})
	}); e != nil || err != nil {
		return fmt.Errorf("batch: staging batch: %v %v", e, err)
	}
	if l.backend != nil {
		if err := b.X.MaterializeOnDevice(l.backend, false, 0); err != nil {
			return fmt.Errorf("batch: copying batch to the device: %w", err)
		}
		if err := b.Y.MaterializeOnDevice(l.backend, false, 0); err != nil {
			return fmt.Errorf("batch: copying batch to the device: %w", err)
		}
	}
	return nil
}

// Next returns the next batch. It returns the producer's error, or the
// context's error once the loader is cancelled.
func (l *Loader) Next(ctx context.Context) (*Batch, error) {
	select {
	case b, ok := <-l.out:
		if ok {
			return b, nil
		}
		select {
		case err := <-l.errc:
			return nil, err
		default:
			return nil, context.Canceled
		}
	case err := <-l.errc:
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Release hands a batch back for reuse.
func (l *Loader) Release(b *Batch) {
	select {
	case l.free <- b:
	default:
	}
}

// Close stops the producer and waits for it.
func (l *Loader) Close() {
	l.cancel()
	l.wg.Wait()
}
