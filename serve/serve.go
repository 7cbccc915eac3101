// Package serve runs an exported model over order-level event streams as
// they arrive: for every instrument it keeps a book, a feature extractor
// and a stream of the model (infer.Streams: any architecture, in the mode
// Config.Mode), and writes one prediction per event once the stream is
// ready (in window mode, once the instrument's window is full).
//
// # Pipeline
//
// Each Source is read by its own goroutine, which stamps every event with
// its arrival time and hashes its instrument to one of Config.Workers
// workers, so one instrument's events stay in order. Each worker owns a
// bounded input queue and the state of its instruments; it applies the
// event to the book, updates the features, pushes them through the model
// and queues the prediction on one bounded output queue, which a writer
// goroutine encodes and writes, flushing whenever it catches up.
//
// Queues block when full, so by default a slow model or consumer slows the
// readers down (and, over TCP, the sender) and nothing is lost. A reporter
// prints the lag (events queued, age of the oldest one) while it exceeds
// Config.LagAlert. With Config.DropAfter set, a worker whose backlog exceeds
// it still applies every event to the book and the features (which stay
// exact) but skips the model, restarting the instrument's window, and a
// prediction finding the output queue full is dropped; both are counted in
// the reports and the Summary, never silently.
//
// # Binary format
//
// All integers little-endian. A stream starts with a 16-byte header:
//
//	offset size field
//	0      3    magic "GLP"
//	3      1    version (1)
//	4      4    length of the rest of the header (8)
//	8      2    classes C
//	10     2    record size in bytes, 24 + 8·C
//	12     4    reserved (0)
//
// followed by one record per prediction, whose first 16 bytes mirror a DBN
// record header (so readers can skip records by length):
//
//	offset size field
//	0      1    record length in 4-byte words, (24 + 8·C)/4
//	1      1    record type 0xE0 (RTypePrediction)
//	2      2    classes C
//	4      4    instrument id
//	8      8    ts_event of the event, ns since the Unix epoch
//	16     4    compute latency in ns (book, features and model), saturating
//	20     4    reserved (0)
//	24     4·C  logits, float32, in the model's class order
//	24+4·C 4·C  class probabilities (softmax of the logits), float32
//
// For the default 3-class model a record is 48 bytes. BinaryReader reads
// the format.
package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gallop-dev/gallop/data/book"
	"github.com/gallop-dev/gallop/data/dbn"
	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/infer"
)

// Config configures a Server. The zero value serves with the defaults.
type Config struct {
	// Workers is the number of worker goroutines (instrument shards);
	// default GOMAXPROCS.
	Workers int
	// Queue is the capacity, in events, of each worker's input queue and
	// of the output queue; default 8192.
	Queue int
	// DropAfter, when positive, lets the pipeline shed load: a worker with
	// more than DropAfter events queued skips the model for the event (see
	// the package documentation), and a prediction that finds the output
	// queue full is dropped. 0 never drops: queues block instead.
	DropAfter int
	// Pace replays each source at its recorded pace (by ts_event), Pace
	// times as fast: 1 is real time. 0 reads as fast as possible. The
	// clock starts at a source's first event outside a snapshot; snapshot
	// records are not paced.
	Pace float64
	// Tick is the tick size, in book price units, of instruments with no
	// definition in Ticks or in the stream; 0 makes such an instrument an
	// error.
	Tick int64
	// Ticks holds tick sizes by instrument id (see ReadTicks). Definitions
	// in the stream take precedence.
	Ticks map[uint32]int64
	// Format is how predictions are written.
	Format Format
	// Weights is how the model's weights are stored and multiplied
	// (infer.WeightsFloat32, the default, or infer.WeightsInt8, MLPs only).
	Weights infer.Weights
	// Mode is which training forward each instrument's stream reproduces
	// (infer.ModeWindow, the default: Forward on the last Window events;
	// ModeCarried and ModeSegment where the architecture has them, over
	// the instrument's events since the server started as one sequence).
	Mode infer.Mode
	// Report receives lag reports and connection errors; nil discards
	// them.
	Report io.Writer
	// ReportEvery is the lag reporting period; default 1s.
	ReportEvery time.Duration
	// LagAlert is the age of the oldest queued event from which a period
	// is reported as lagging; default 10ms.
	LagAlert time.Duration
}

// Server serves one model. It is safe for concurrent use: each Serve call
// runs its own pipeline and state.
type Server struct {
	model     *infer.Model
	newStream func() infer.Streamer // one per instrument, sharing the engine
	cfg       Config
}

// New returns a Server for m, which must take gallop's book features
// (feature.Names) as input.
func New(m *infer.Model, cfg Config) (*Server, error) {
	if !slices.Equal(m.Features, feature.Names) {
		return nil, fmt.Errorf("serve: the model's %d features are not gallop's %d book features (data/feature)", len(m.Features), feature.Count)
	}
	newStream, err := infer.Streams(m, cfg.Mode, infer.Options{Weights: cfg.Weights})
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	if len(m.Classes) > maxBinaryClasses {
		return nil, fmt.Errorf("serve: %d classes, at most %d are supported", len(m.Classes), maxBinaryClasses)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 8192
	}
	if cfg.ReportEvery <= 0 {
		cfg.ReportEvery = time.Second
	}
	if cfg.LagAlert <= 0 {
		cfg.LagAlert = 10 * time.Millisecond
	}
	switch {
	case cfg.DropAfter < 0:
		return nil, fmt.Errorf("serve: DropAfter %d, want >= 0", cfg.DropAfter)
	case cfg.Pace < 0 || math.IsNaN(cfg.Pace) || math.IsInf(cfg.Pace, 0):
		return nil, fmt.Errorf("serve: Pace %v, want a finite value >= 0", cfg.Pace)
	case cfg.Tick < 0:
		return nil, fmt.Errorf("serve: Tick %d, want >= 0", cfg.Tick)
	}
	return &Server{model: m, newStream: newStream, cfg: cfg}, nil
}

// Serve reads every source concurrently until all reach io.EOF, writing
// predictions to out, and returns once everything read has been written.
// Sources carrying the same instrument interleave in no defined order.
//
// When ctx is done it stops reading, writes what is already queued, and
// returns the Summary with ctx's error. A source's error, an event whose
// instrument has no tick size, or a write error ends the run: the error
// names the source, the offset and the instrument.
func (s *Server) Serve(ctx context.Context, out io.Writer, srcs ...Source) (Summary, error) {
	p := s.start(ctx, out, nil)
	var wg sync.WaitGroup
	for i, src := range srcs {
		wg.Go(func() {
			if err := p.feed(ctx, src, sourceName(src, i)); err != nil && ctx.Err() == nil {
				p.fail(fmt.Errorf("serve: %w", err))
			}
		})
	}
	wg.Wait()
	return p.finish(ctx, nil)
}

// ServeListener accepts connections on ln, each carrying a DBN stream
// (metadata, then records), and serves them concurrently as Serve does its
// sources. It stops accepting after conns connections (0: no limit) or
// when ctx is done, closes ln, and returns when the accepted connections
// have ended and their events are written. A connection that fails (a bad
// stream, a reset) is reported to Config.Report and counted, and does not
// stop the others.
func (s *Server) ServeListener(ctx context.Context, out io.Writer, ln net.Listener, conns int) (Summary, error) {
	lctx, cancel := context.WithCancel(ctx) // also cancelled when the pipeline fails
	defer cancel()
	p := s.start(ctx, out, cancel)
	stop := context.AfterFunc(lctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	var acceptErr error
	for n := 0; conns <= 0 || n < conns; n++ {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil && !p.aborted() {
				acceptErr = fmt.Errorf("serve: accept: %w", err)
			}
			break
		}
		p.conns.Add(1)
		wg.Go(func() {
			defer c.Close()
			unblock := context.AfterFunc(lctx, func() { c.Close() })
			defer unblock()
			name := "tcp " + c.RemoteAddr().String()
			err := p.feedConn(ctx, c, name)
			if err != nil && ctx.Err() == nil && !p.aborted() {
				p.connErrs.Add(1)
				p.report("serve: connection: %v\n", err)
			}
		})
	}
	ln.Close()
	wg.Wait()
	return p.finish(ctx, acceptErr)
}

func (p *pipeline) feedConn(ctx context.Context, c net.Conn, name string) error {
	src, err := NewDBN(c, name)
	if err != nil {
		return err
	}
	defer src.Close()
	return p.feed(ctx, src, name)
}

func sourceName(src Source, i int) string {
	if n, ok := src.(interface{ Name() string }); ok {
		return n.Name()
	}
	return fmt.Sprintf("source %d", i)
}

// Summary describes a finished run.
type Summary struct {
	Events      uint64 // events read
	Predictions uint64 // predictions written
	Instruments int
	Conns       int // connections accepted (ServeListener)
	ConnErrors  int // connections that ended with an error
	// Events that gave no prediction, by reason.
	BookOnly   uint64 // inside a snapshot
	OneSided   uint64 // a side of the book was empty: no features
	Warmup     uint64 // the instrument's window was not yet full
	BookErrors uint64 // the book refused the event (e.g. an unknown order id)
	FirstError string // the first book error, with source, offset and instrument
	// Drops (Config.DropAfter).
	DroppedEvents      uint64        // events whose model step was skipped under backlog
	DroppedPredictions uint64        // predictions dropped on a full output queue
	Elapsed            time.Duration // from the first event's arrival to the last prediction written
	EventsPerSec       float64       // Events / Elapsed
	// EndToEnd is from an event's arrival (read and stamped by its
	// source's goroutine) to its prediction being handed to the output
	// writer's Write; Compute is book, features and model for one event.
	EndToEnd, Compute Latency
	MaxQueued         int           // most events queued at one worker, or predictions on the output queue
	MaxLag            time.Duration // age of the oldest queued event, largest seen by the reporter
}

func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "events      %d from %d instruments", s.Events, s.Instruments)
	if s.Conns > 0 {
		fmt.Fprintf(&b, " over %d connections (%d failed)", s.Conns, s.ConnErrors)
	}
	fmt.Fprintf(&b, ": %d predictions; no prediction: %d warm-up, %d one-sided book, %d in snapshots, %d book errors\n",
		s.Predictions, s.Warmup, s.OneSided, s.BookOnly, s.BookErrors)
	if s.FirstError != "" {
		fmt.Fprintf(&b, "            first book error: %s\n", s.FirstError)
	}
	fmt.Fprintf(&b, "throughput  %.0f events/s over %v from the first event\n", s.EventsPerSec, round(s.Elapsed))
	fmt.Fprintf(&b, "end-to-end  %v\n", s.EndToEnd)
	fmt.Fprintf(&b, "compute     %v\n", s.Compute)
	fmt.Fprintf(&b, "lag         at most %d events in one queue, oldest queued event at most %v old\n", s.MaxQueued, round(s.MaxLag))
	fmt.Fprintf(&b, "drops       %d events (model skipped), %d predictions (output full)\n", s.DroppedEvents, s.DroppedPredictions)
	return b.String()
}

// item is an input on its way to a worker.
type item struct {
	ev   book.Event
	tick int64
	off  int64
	enq  int64 // ns since the pipeline started
	src  *string
	kind uint8
}

const (
	kindEvent uint8 = iota
	kindBookOnly
	kindDefine
)

// pipeline is the state of one Serve call.
type pipeline struct {
	srv     *Server
	cfg     *Config
	start   time.Time
	workers []*worker
	out     *queue[*Prediction]
	preds   sync.Pool
	w       io.Writer
	classes int

	first    atomic.Int64 // arrival of the first event, ns since start (+1)
	read     atomic.Uint64
	written  atomic.Uint64
	conns    atomic.Int64
	connErrs atomic.Int64
	maxLag   atomic.Int64

	errMu sync.Mutex
	err   error // fatal
	stop  atomic.Bool

	e2e      hist
	done     sync.WaitGroup // workers
	writerWG sync.WaitGroup
	repDone  chan struct{}
	repWG    sync.WaitGroup
	unwake   []func() bool
	reportMu sync.Mutex
	onAbort  func() // set before any goroutine may fail
}

func (s *Server) start(ctx context.Context, out io.Writer, onAbort func()) *pipeline {
	p := &pipeline{
		srv: s, cfg: &s.cfg, start: time.Now(), w: out, onAbort: onAbort,
		out:     newQueue[*Prediction](s.cfg.Queue),
		classes: len(s.model.Classes),
		repDone: make(chan struct{}),
	}
	c := p.classes
	p.preds.New = func() any {
		v := make([]float32, 2*c)
		return &Prediction{Logits: v[:c:c], Probs: v[c:]}
	}
	for i := range s.cfg.Workers {
		w := &worker{p: p, id: i, in: newQueue[item](s.cfg.Queue),
			states: map[uint32]*instState{}, ticks: map[uint32]int64{}}
		p.unwake = append(p.unwake, w.in.wakeOn(ctx))
		p.workers = append(p.workers, w)
		p.done.Go(w.run)
	}
	p.writerWG.Go(p.write)
	p.repWG.Go(p.reporter)
	return p
}

func (p *pipeline) now() int64 { return int64(time.Since(p.start)) }

// fail records a fatal error and abandons the pipeline.
func (p *pipeline) fail(err error) {
	p.errMu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.errMu.Unlock()
	p.stop.Store(true)
	if p.onAbort != nil {
		p.onAbort()
	}
	for _, w := range p.workers {
		w.in.stop()
	}
	// The writer still writes what the workers finished, unless writing
	// is what failed.
	p.out.close()
}

func (p *pipeline) aborted() bool { return p.stop.Load() }

func (p *pipeline) report(format string, args ...any) {
	if p.cfg.Report == nil {
		return
	}
	p.reportMu.Lock()
	fmt.Fprintf(p.cfg.Report, format, args...)
	p.reportMu.Unlock()
}

// shard returns the worker owning an instrument.
func (p *pipeline) shard(id uint32) *worker {
	h := id * 0x9E3779B1 // Fibonacci hashing spreads consecutive ids
	return p.workers[uint64(h)*uint64(len(p.workers))>>32]
}

// feed reads src into the workers' queues until io.EOF.
func (p *pipeline) feed(ctx context.Context, src Source, name string) error {
	var in Input
	pc := pacer{speed: p.cfg.Pace}
	defer pc.close()
	for {
		if err := src.Next(&in); err != nil {
			if err == io.EOF {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if de := (*dbn.DecodeError)(nil); errors.As(err, &de) && de.File != "" {
				return err // names the stream and the offset already
			}
			return fmt.Errorf("%s: %w", name, err)
		}
		it := item{ev: in.Event, off: in.Offset, src: &name, kind: kindEvent}
		switch {
		case in.Tick > 0:
			it.kind, it.tick = kindDefine, in.Tick
		case in.BookOnly:
			it.kind = kindBookOnly
		}
		// Snapshot records carry the times their orders were placed, long
		// before the stream: only live events set the pace.
		if pc.speed > 0 && it.kind == kindEvent {
			if err := pc.wait(ctx, in.Event.TsNs); err != nil {
				return err
			}
		}
		it.enq = p.now()
		if p.first.Load() == 0 {
			p.first.CompareAndSwap(0, it.enq+1)
		}
		if !p.shard(in.Event.Instrument).in.push(ctx, &it) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return nil // aborted: the fatal error is reported by finish
		}
		if it.kind != kindDefine {
			p.read.Add(1)
		}
	}
}

// pacer spaces events by their timestamps divided by speed.
type pacer struct {
	speed   float64
	started bool
	ts0     int64
	t0      time.Time
	timer   *time.Timer
}

func (pc *pacer) wait(ctx context.Context, ts int64) error {
	if !pc.started {
		pc.started, pc.ts0, pc.t0 = true, ts, time.Now()
		return nil
	}
	d := time.Until(pc.t0.Add(time.Duration(float64(ts-pc.ts0) / pc.speed)))
	if d <= 0 { // behind, or a timestamp out of order
		return ctx.Err()
	}
	if pc.timer == nil {
		pc.timer = time.NewTimer(d)
	} else {
		pc.timer.Reset(d)
	}
	select {
	case <-pc.timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (pc *pacer) close() {
	if pc.timer != nil {
		pc.timer.Stop()
	}
}

// finish drains the pipeline and builds the Summary.
func (p *pipeline) finish(ctx context.Context, feedErr error) (Summary, error) {
	if _, age := p.lag(p.now()); age > p.maxLag.Load() { // for runs shorter than the reporter's period
		p.maxLag.Store(age)
	}
	for _, u := range p.unwake {
		u()
	}
	for _, w := range p.workers {
		w.in.close()
	}
	p.done.Wait()
	p.out.close()
	p.writerWG.Wait()
	close(p.repDone)
	p.repWG.Wait()

	var s Summary
	var compute hist
	end := p.now()
	if f := p.first.Load(); f != 0 {
		s.Elapsed = time.Duration(end - (f - 1))
	}
	s.Events = p.read.Load()
	s.Predictions = p.written.Load()
	s.Conns, s.ConnErrors = int(p.conns.Load()), int(p.connErrs.Load())
	for _, w := range p.workers {
		s.Instruments += len(w.states)
		s.BookOnly += w.bookOnly
		s.OneSided += w.oneSided
		s.Warmup += w.warmup
		s.BookErrors += w.bookErrs
		if s.FirstError == "" {
			s.FirstError = w.firstErr
		}
		s.DroppedEvents += w.shed.Load()
		s.DroppedPredictions += w.dropped.Load()
		s.MaxQueued = max(s.MaxQueued, w.in.peakDepth())
		compute.merge(&w.compute)
	}
	s.MaxQueued = max(s.MaxQueued, p.out.peakDepth())
	s.MaxLag = time.Duration(p.maxLag.Load())
	if s.Elapsed > 0 {
		s.EventsPerSec = float64(s.Events) / s.Elapsed.Seconds()
	}
	s.EndToEnd, s.Compute = p.e2e.latency(), compute.latency()
	if s.DroppedEvents+s.DroppedPredictions > 0 || s.MaxLag >= p.cfg.LagAlert {
		p.report("serve: end: %d events, %d predictions; lag at most %d queued, oldest %v; dropped %d events, %d predictions\n",
			s.Events, s.Predictions, s.MaxQueued, round(s.MaxLag), s.DroppedEvents, s.DroppedPredictions)
	}

	p.errMu.Lock()
	fatal := p.err
	p.errMu.Unlock()
	switch {
	case fatal != nil:
		return s, fatal
	case ctx.Err() != nil:
		return s, ctx.Err()
	}
	return s, feedErr
}

// lag returns the events queued at the workers and on the output queue
// and the age of the oldest of them (or of an event being processed).
func (p *pipeline) lag(now int64) (queued int, oldest int64) {
	var head int64
	for _, w := range p.workers {
		n := w.in.front(func(it *item) { head = it.enq })
		queued += n
		if c := w.cur.Load(); c != 0 {
			oldest = max(oldest, now-c)
		} else if n > 0 {
			oldest = max(oldest, now-head)
		}
	}
	n := p.out.front(func(pr **Prediction) { head = (*pr).enq })
	queued += n
	if n > 0 {
		oldest = max(oldest, now-head)
	}
	return queued, oldest
}

// reporter samples the lag every 10 ms (or tenth of the report period) and
// reports the periods in which it reached LagAlert or events were dropped.
func (p *pipeline) reporter() {
	every := p.cfg.ReportEvery
	tick := time.NewTicker(min(max(every/10, time.Millisecond), 10*time.Millisecond))
	defer tick.Stop()
	last := time.Now()
	var worstQ int
	var worst int64
	var lastRead, lastShed, lastDropped uint64
	for {
		select {
		case <-p.repDone:
			return
		case <-tick.C:
		}
		q, age := p.lag(p.now())
		worstQ, worst = max(worstQ, q), max(worst, age)
		if age > p.maxLag.Load() {
			p.maxLag.Store(age)
		}
		if time.Since(last) < every {
			continue
		}
		var shed, dropped uint64
		for _, w := range p.workers {
			shed += w.shed.Load()
			dropped += w.dropped.Load()
		}
		read := p.read.Load()
		if time.Duration(worst) >= p.cfg.LagAlert || shed != lastShed || dropped != lastDropped {
			rate := float64(read-lastRead) / time.Since(last).Seconds()
			p.report("serve: lag: up to %d events queued, oldest %v old; %.0f events/s in; dropped %d events, %d predictions so far\n",
				worstQ, round(time.Duration(worst)), rate, shed, dropped)
		}
		last, worstQ, worst = time.Now(), 0, 0
		lastRead, lastShed, lastDropped = read, shed, dropped
	}
}

// write encodes predictions and writes them, flushing when the output
// queue is empty or 64 KiB are buffered.
func (p *pipeline) write() {
	const flushAt = 64 << 10
	buf := make([]byte, 0, flushAt+4096)
	var pend []int64 // arrival times of the predictions in buf
	if p.srv.cfg.Format == Binary {
		buf = appendBinaryHeader(buf, p.classes)
	}
	batch := make([]*Prediction, 256)
	flush := func() bool {
		if len(buf) > 0 {
			if _, err := p.w.Write(buf); err != nil {
				p.fail(fmt.Errorf("serve: write predictions: %w", err))
				return false
			}
		}
		t := p.now()
		for _, e := range pend {
			p.e2e.record(t - e)
		}
		p.written.Add(uint64(len(pend)))
		buf, pend = buf[:0], pend[:0]
		return true
	}
	bin := p.srv.cfg.Format == Binary
	for {
		n := p.out.pop(batch)
		if n == 0 {
			flush()
			return
		}
		for _, pr := range batch[:n] {
			if bin {
				buf = appendBinary(buf, pr)
			} else {
				buf = appendJSON(buf, pr)
			}
			pend = append(pend, pr.enq)
			p.preds.Put(pr)
		}
		if len(buf) >= flushAt || p.out.depth() == 0 {
			if !flush() {
				return
			}
		}
	}
}

// worker owns a shard of the instruments.
type worker struct {
	p      *pipeline
	id     int
	in     *queue[item]
	states map[uint32]*instState
	ticks  map[uint32]int64 // from definitions in the stream
	cur    atomic.Int64     // arrival time of the event being processed, 0 when idle

	shed, dropped                        atomic.Uint64
	bookOnly, oneSided, warmup, bookErrs uint64
	firstErr                             string
	compute                              hist
}

// instState is one instrument's state.
type instState struct {
	book   *book.Book
	feat   *feature.Extractor
	stream infer.Streamer
	tick   int64
	row    []float32
}

func (w *worker) run() {
	batch := make([]item, 64)
	for {
		n := w.in.pop(batch)
		if n == 0 {
			return
		}
		var owed *instState
		for i := range batch[:n] {
			it := &batch[i]
			w.cur.Store(it.enq)
			st, err := w.handle(it, n-1-i)
			if err != nil {
				w.p.fail(err)
				return
			}
			if st != nil {
				owed = st
			}
		}
		w.cur.Store(0)
		// Idle: do the work the last prediction left owed now rather than
		// on the instrument's next event.
		if owed != nil && w.in.depth() == 0 {
			owed.stream.Settle()
		}
	}
}

// handle processes one item; pending is how many items the worker holds
// behind it outside the queue. It returns the instrument's state when a
// prediction was made.
func (w *worker) handle(it *item, pending int) (*instState, error) {
	p := w.p
	id := it.ev.Instrument
	if it.kind == kindDefine {
		w.ticks[id] = it.tick
		if st := w.states[id]; st != nil && st.tick != it.tick {
			// A new tick changes every price feature: start afresh.
			st.tick, st.feat = it.tick, feature.NewExtractor(it.tick)
			st.stream.Reset()
		}
		return nil, nil
	}
	t0 := p.now()
	st := w.states[id]
	if st == nil {
		tick := w.ticks[id]
		if tick == 0 {
			tick = p.cfg.Ticks[id]
		}
		if tick == 0 {
			tick = p.cfg.Tick
		}
		if tick <= 0 {
			return nil, fmt.Errorf("serve: %s offset %d: instrument %d: unknown tick size (the stream has no definition for it; give a default tick or a definitions file)",
				*it.src, it.off, id)
		}
		st = &instState{book: book.New(), feat: feature.NewExtractor(tick), stream: p.srv.newStream(),
			tick: tick, row: make([]float32, feature.Count)}
		w.states[id] = st
	}
	if err := st.book.Apply(&it.ev); err != nil {
		w.bookErrs++
		if w.firstErr == "" {
			w.firstErr = fmt.Sprintf("%s offset %d: instrument %d: %v", *it.src, it.off, id, err)
		}
		return nil, nil
	}
	if it.kind == kindBookOnly {
		w.bookOnly++
		return nil, nil
	}
	if _, ok := st.feat.Update(st.book, &it.ev, st.row); !ok {
		w.oneSided++
		return nil, nil
	}
	if d := p.cfg.DropAfter; d > 0 && pending+w.in.depth() > d {
		st.stream.Reset()
		w.shed.Add(1)
		return nil, nil
	}
	pr := p.preds.Get().(*Prediction)
	if !st.stream.Push(st.row, pr.Logits) {
		p.preds.Put(pr)
		w.warmup++
		return nil, nil
	}
	softmax(pr.Probs, pr.Logits)
	t1 := p.now()
	pr.Instrument, pr.TsEvent, pr.Compute, pr.enq = id, it.ev.TsNs, time.Duration(t1-t0), it.enq
	w.compute.record(t1 - t0)
	if p.cfg.DropAfter > 0 {
		if !p.out.tryPush(&pr) {
			p.preds.Put(pr)
			w.dropped.Add(1)
		}
	} else if !p.out.push(context.Background(), &pr) {
		p.preds.Put(pr)
	}
	return st, nil
}

// softmax writes the softmax of x into dst.
func softmax(dst, x []float32) {
	m := x[0]
	for _, v := range x[1:] {
		m = max(m, v)
	}
	var sum float64
	for _, v := range x {
		sum += math.Exp(float64(v - m))
	}
	for i, v := range x {
		dst[i] = float32(math.Exp(float64(v-m)) / sum)
	}
}
