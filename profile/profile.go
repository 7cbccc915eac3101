// Package profile records where the time of a training loop goes, step by
// step, and says in plain words what limits it.
//
// A Recorder is driven by the training loop: BeginStep opens a step, Start and
// End time its phases (waiting for data, host-to-device copies, dispatch,
// device execution, host reads of device values, ...), Sync counts host reads,
// Compile and Mark note coincident events and EndStep closes the step with its
// throughput counters. Other goroutines (prefetch workers, writers) record
// their own spans with Span. Report summarises the run: phase shares, step-time
// percentiles, throughput, runtime statistics (Go GC, goroutines, RSS) and the
// findings of a few detectors (input-bound, sync-bound, slow steps,
// recompilation storm, throughput drift) ranked into a verdict. WriteTrace
// writes a Chrome trace-event file for Perfetto or chrome://tracing.
//
// # Steady state
//
// The first Config.Warmup steps (default 10) are warm-up: they are counted in
// Report.Warmup but excluded from the shares, percentiles, throughput and
// detectors, which describe the steady state. Time recorded between EndStep and
// the next BeginStep (an eval run after EndStep, say) belongs to the next step,
// whose wall time then starts at the earliest recorded span.
//
// # Bounds
//
// Memory does not grow with run length: about 1 MiB with the defaults
// (log-linear histograms for percentiles, a ring of recent step records, a
// fixed number of summary buckets, a ring of stage spans). The trace keeps full
// per-phase detail for the first Config.DetailSteps steps (default 200) and for
// the Config.SlowContext steps (default 5) either side of flagged slow steps,
// up to Config.SlowDetailSteps such steps (default 352, the most recent kept);
// every step is also folded into at most Config.Buckets summary events
// (default 256), and the last Config.SpanCapacity stage spans (default 4096)
// are kept. A step draws at most 24 phase spans. With the defaults and short
// names a trace stays under about 3 MB whatever the run length; a loop timing
// four phases per step with a busy prefetch track leaves about 0.8 MB.
//
// # Concurrency
//
// BeginStep, Start, End, Sync, Compile, Mark, EndStep, Report and WriteTrace
// must be called from one goroutine (the loop), or with external
// synchronisation. Span is safe for concurrent use.
package profile

import (
	"slices"
	"sync"
	"time"
)

// Phase is a part of a training step.
type Phase uint8

// Phases of a step.
const (
	Data       Phase = iota // waiting for the next batch
	H2D                     // host-to-device copies
	Dispatch                // launching the compiled step
	Device                  // waiting until the outputs are ready
	Readback                // host reads of device values (sync points)
	Eval                    // evaluation
	Checkpoint              // writing checkpoints
	Compile                 // compiling a new graph or shape
	Other                   // anything else the loop wants timed

	numPhases = iota
)

// String returns the lower-case name of the phase ("data", "h2d", ...).
func (ph Phase) String() string {
	if int(ph) >= numPhases {
		return "phase?"
	}
	return [numPhases]string{"data", "h2d", "dispatch", "device", "readback", "eval", "checkpoint", "compile", "other"}[ph]
}

// Stamp is a reading of the Recorder's monotonic clock: nanoseconds since New.
type Stamp int64

// Config holds the detector thresholds and the memory and trace bounds. The
// zero Config is usable: a zero field takes the default given in its comment.
// A negative threshold disables its detector; a negative bound means zero.
type Config struct {
	// Now is the clock; default time.Now. Tests inject a fake clock here.
	Now func() time.Time

	// Warmup is the number of leading steps excluded from steady-state
	// statistics and detectors. Default 10.
	Warmup int

	// InputShare flags the loop input-bound when the Data phase takes more
	// than this share of steady-state wall time. Default 0.10.
	InputShare float64
	// SyncsPerStep flags the loop sync-bound when the average number of Sync
	// calls per step is at least this. Default 1.
	SyncsPerStep float64
	// ReadbackShare also flags the loop sync-bound when the Readback phase
	// takes more than this share of wall time. Default 0.10.
	ReadbackShare float64

	// SlowWindow is the number of preceding steady steps whose median and
	// median absolute deviation (MAD) a step is compared with. Default 50.
	SlowWindow int
	// A step is slow when it takes longer than median + SlowMADs*MAD and
	// longer than SlowRatio*median. Defaults 5 and 1.5.
	SlowMADs  float64
	SlowRatio float64
	// SlowShare: slow steps become a finding when the time they take beyond
	// the median exceeds this share of wall time; flagged steps are listed in
	// Report.SlowSteps either way. Default 0.01.
	SlowShare float64

	// StormCompiles flags a recompilation storm when more than this many
	// compilations happen after warm-up. Default 2.
	StormCompiles int
	// DriftDrop flags throughput drift when samples/s (steps/s if no samples
	// are counted) of the last quarter of the steady steps is lower than that
	// of the first quarter by more than this fraction. Default 0.20.
	DriftDrop float64

	// DetailSteps is the number of leading steps kept in full detail for the
	// trace. Default 200.
	DetailSteps int
	// SlowContext is the number of steps kept in detail on either side of a
	// slow step. Default 5.
	SlowContext int
	// SlowDetailSteps bounds the steps kept in detail around slow steps; the
	// most recent are kept. Default 32*(2*SlowContext+1).
	SlowDetailSteps int
	// Buckets is the number of summary buckets all steady steps are folded
	// into (adjacent buckets merge when full). Default 256.
	Buckets int
	// SpanCapacity is the number of most recent Span records kept for the
	// trace. Default 4096.
	SpanCapacity int
	// RuntimeEvery samples goroutines and RSS every this many steps (GC cycles
	// are checked every step). Default 50.
	RuntimeEvery int

	// CommShare flags the loop communication-bound when a collective timed
	// on its own (see Recorder.Collective) takes more than this share of the
	// p50 step. Default 0.20.
	CommShare float64
	// StragglerRatio flags a straggler when a device's share of a
	// data-parallel step, timed alone (see Recorder.Devices), takes more
	// than this times the median device's. Default 1.10.
	StragglerRatio float64

	// FLOPsPerSample and PeakFLOPs (FLOP/s of the device), when set, add
	// achieved FLOP/s and model FLOPs utilisation (MFU) to the report.
	FLOPsPerSample float64
	PeakFLOPs      float64
}

const (
	maxSpans      = 24 // spans drawn per step; more merge into the last of their phase
	maxMarks      = 4  // distinct marks per step
	maxSlowListed = 50 // slow steps listed in the report (the largest ratio to the median)
	maxCompileLog = 64 // compilations listed (the first)
	maxStages     = 64 // distinct Span tracks with statistics
	maxKinds      = 16 // distinct coincident kinds counted for slow steps
	minSlowWindow = 8  // steady steps needed before slow-step detection starts
)

func (c Config) withDefaults() Config {
	ints := func(v *int, def int) {
		if *v == 0 {
			*v = def
		} else if *v < 0 {
			*v = 0
		}
	}
	ints(&c.Warmup, 10)
	ints(&c.SlowWindow, 50)
	ints(&c.DetailSteps, 200)
	ints(&c.SlowContext, 5)
	ints(&c.SlowDetailSteps, 32*(2*c.SlowContext+1))
	ints(&c.Buckets, 256)
	ints(&c.SpanCapacity, 4096)
	ints(&c.RuntimeEvery, 50)
	if c.Buckets < 2 {
		c.Buckets = 2
	}
	c.Buckets += c.Buckets % 2
	if c.StormCompiles == 0 {
		c.StormCompiles = 2
	}
	floats := func(v *float64, def float64) {
		if *v == 0 {
			*v = def
		}
	}
	floats(&c.InputShare, 0.10)
	floats(&c.SyncsPerStep, 1)
	floats(&c.ReadbackShare, 0.10)
	floats(&c.SlowMADs, 5)
	floats(&c.SlowRatio, 1.5)
	floats(&c.SlowShare, 0.01)
	floats(&c.DriftDrop, 0.20)
	floats(&c.CommShare, 0.20)
	floats(&c.StragglerRatio, 1.10)
	return c
}

type span struct {
	start   Stamp
	dur     int64
	phase   Phase
	compile bool // recorded by Recorder.Compile
}

// stepRec is everything known about one step.
type stepRec struct {
	idx, step  int64 // index among closed steps; caller's step number
	begin, end Stamp
	first      Stamp // earliest span start, valid when hasFirst
	hasFirst   bool
	began      bool
	closed     bool
	detail     bool // keep for the trace
	slow       bool
	planned    bool // marked by Planned
	nspans     uint8
	nmarks     uint8
	syncs      int32
	compiles   int32
	gc         int32
	samples    int64
	events     int64
	gcPause    int64
	median     int64 // rolling median when flagged slow
	phase      [numPhases]int64
	marks      [maxMarks]string
	spans      [maxSpans]span
}

func (r *stepRec) reset() {
	r.hasFirst, r.began, r.closed, r.detail, r.slow, r.planned = false, false, false, false, false, false
	r.nspans, r.syncs, r.compiles, r.gc = 0, 0, 0, 0
	r.samples, r.events, r.gcPause, r.median = 0, 0, 0, 0
	r.phase = [numPhases]int64{}
	for i := range r.nmarks {
		r.marks[i] = ""
	}
	r.nmarks = 0
}

// coincident fills out with what coincided with the step: "gc", "compile",
// "eval", "checkpoint" and the marks, without duplicates.
func (r *stepRec) coincident(out *[maxMarks + 4]string) int {
	n := 0
	add := func(s string) {
		for _, have := range out[:n] {
			if have == s {
				return
			}
		}
		out[n] = s
		n++
	}
	if r.gc > 0 {
		add("gc")
	}
	if r.compiles > 0 || r.phase[Compile] > 0 {
		add("compile")
	}
	if r.phase[Eval] > 0 {
		add("eval")
	}
	if r.phase[Checkpoint] > 0 {
		add("checkpoint")
	}
	for _, m := range r.marks[:r.nmarks] {
		add(m)
	}
	return n
}

// accum accumulates totals over a range of steps.
type accum struct {
	steps      int64
	wall       int64
	untracked  int64
	phase      [numPhases]int64
	phaseSteps [numPhases]int64
	syncs      int64
	samples    int64
	events     int64
	compiles   int64
	compileNs  int64
	gc         int64
	gcPause    int64
	start, end Stamp
}

type slowRec struct {
	step, wall, median int64
	planned            bool // evaluated, checkpointed or marked Planned
	nco                int
	co                 [maxMarks + 4]string
}

type compileRec struct {
	idx  int64 // index of the step
	step int64
	end  Stamp
	dur  int64
	what string
}

type stageSpan struct {
	track, name string
	start       Stamp
	dur         int64
}

type stageStat struct {
	spans, total, max int64
}

// Recorder records the steps of one training run. Create it with New.
type Recorder struct {
	cfg   Config
	nowFn func() time.Time // nil: monotonic time.Since(base)
	base  time.Time

	n        int64 // closed steps
	nextStep int64
	lastEnd  Stamp

	ring      []stepRec // recent records; cur is ring[n%len]
	cur       *stepRec
	first     []stepRec // detail of the first DetailSteps steps
	win       []stepRec // ring of detail records around slow steps
	winPos    int
	winDrop   int64
	keepUntil int64

	acc       [2]accum // warm-up, steady
	stepHist  hist
	phaseHist [numPhases]hist
	warm      bucket
	tl        timeline
	roll      rolling

	slow       []slowRec
	slowCount  int64
	slowExcess int64
	slowCompN  int64 // slow steps with a compilation, and their excess
	slowCompEx int64
	// slow steps that did planned work (eval, checkpoint), which their own
	// phases account for, and their excess
	slowPlanN  int64
	slowPlanEx int64
	kinds      [maxKinds]string
	kindCount  [maxKinds + 1]int64 // last: slow steps with nothing coincident
	nkinds     int

	compiles []compileRec
	compileN int64

	rt runtimeSampler

	collectives []CollectiveStat
	devNames    []string
	devMs       [][]float64 // by device, one per probe

	mu        sync.Mutex // guards the fields below
	spans     []stageSpan
	spanPos   int
	spanTotal int64
	stages    map[string]*stageStat
}

// New returns a Recorder with the given configuration.
func New(cfg Config) *Recorder {
	cfg = cfg.withDefaults()
	p := &Recorder{cfg: cfg, nowFn: cfg.Now, keepUntil: -1}
	if p.nowFn == nil {
		p.base = time.Now()
	} else {
		p.base = p.nowFn()
	}
	p.ring = make([]stepRec, cfg.SlowContext+1)
	p.cur = &p.ring[0]
	p.first = make([]stepRec, 0, cfg.DetailSteps)
	p.win = make([]stepRec, 0, cfg.SlowDetailSteps)
	p.stepHist = newHist()
	for i := range p.phaseHist {
		p.phaseHist[i] = newHist()
	}
	p.tl = timeline{b: make([]bucket, 0, cfg.Buckets), width: 1}
	p.roll = newRolling(max(cfg.SlowWindow, 1))
	p.slow = make([]slowRec, 0, maxSlowListed)
	p.compiles = make([]compileRec, 0, maxCompileLog)
	p.spans = make([]stageSpan, 0, cfg.SpanCapacity)
	p.stages = make(map[string]*stageStat)
	p.rt.init(cfg.RuntimeEvery)
	return p
}

func (p *Recorder) now() Stamp {
	if p.nowFn == nil {
		return Stamp(time.Since(p.base))
	}
	return Stamp(p.nowFn().Sub(p.base))
}

// BeginStep opens step number step. If a step is still open it is closed
// first, as by EndStep(0, 0). Calling BeginStep is optional: without it a step
// starts where the previous one ended and is numbered one after it.
func (p *Recorder) BeginStep(step int64) {
	if p.cur.began {
		p.EndStep(0, 0)
	}
	r := p.cur
	r.began = true
	r.step = step
	r.begin = p.now()
}

// Start reads the clock, to be passed to End.
func (p *Recorder) Start() Stamp { return p.now() }

// End adds the time since t to phase ph of the current step and returns the
// end time, so that consecutive phases can be chained:
//
//	t := p.Start()
//	t = p.End(profile.Data, t)
//	t = p.End(profile.H2D, t)
func (p *Recorder) End(ph Phase, t Stamp) Stamp {
	now := p.now()
	p.add(ph, t, int64(now-t), false)
	return now
}

func (p *Recorder) add(ph Phase, start Stamp, d int64, compile bool) {
	if ph >= numPhases {
		ph = Other
	}
	if d < 0 {
		d = 0
	}
	r := p.cur
	r.phase[ph] += d
	if !r.hasFirst || start < r.first {
		r.first, r.hasFirst = start, true
	}
	if int(r.nspans) < maxSpans {
		r.spans[r.nspans] = span{start: start, dur: d, phase: ph, compile: compile}
		r.nspans++
		return
	}
	for i := maxSpans - 1; i >= 0; i-- {
		if r.spans[i].phase == ph {
			r.spans[i].dur += d
			return
		}
	}
}

// Sync counts one host read of a device value (a synchronisation point) in
// the current step. Time the read itself with End(Readback, t).
func (p *Recorder) Sync() { p.cur.syncs++ }

// Compile records a compilation of duration d that ended now. d is added to
// the Compile phase of the current step, so do not time the same interval
// with End as well. what names the graph or shape; it is kept for the first
// compilations only.
func (p *Recorder) Compile(d time.Duration, what string) {
	now := p.now()
	p.add(Compile, now-Stamp(d), int64(d), true)
	p.cur.compiles++
	if len(p.compiles) < cap(p.compiles) {
		step := p.cur.step
		if !p.cur.began {
			step = p.nextStep
		}
		p.compiles = append(p.compiles, compileRec{idx: p.n, step: step, end: now, dur: int64(d), what: what})
	}
}

// Mark attaches an event kind ("eval", "checkpoint", ...) to the current
// step; it is named when the step is slow. Up to 4 distinct kinds are kept per
// step. Steps in which a GC cycle ended, a compilation happened or Eval or
// Checkpoint time was recorded are marked "gc", "compile", "eval" and
// "checkpoint" automatically.
func (p *Recorder) Mark(kind string) {
	r := p.cur
	for _, m := range r.marks[:r.nmarks] {
		if m == kind {
			return
		}
	}
	if int(r.nmarks) < maxMarks {
		r.marks[r.nmarks] = kind
		r.nmarks++
	}
}

// EndStep closes the current step; samples and events are the numbers of
// training samples and market events it consumed.
func (p *Recorder) EndStep(samples, events int) {
	now := p.now()
	r := p.cur
	if !r.began {
		r.step = p.nextStep
		switch {
		case p.n > 0:
			r.begin = p.lastEnd
		case r.hasFirst:
			r.begin = r.first
		default:
			r.begin = now
		}
	}
	if r.hasFirst && r.first < r.begin {
		r.begin = r.first
	}
	r.end = now
	r.idx = p.n
	r.samples, r.events = int64(samples), int64(events)
	r.closed = true
	r.gc, r.gcPause = p.rt.step(p.n)
	wall := int64(r.end - r.begin)
	if wall < 0 {
		wall = 0
	}

	steady := r.idx >= int64(p.cfg.Warmup)
	if steady && r.idx == int64(p.cfg.Warmup) && r.idx > 0 {
		// First steady step: percentiles describe the steady state only.
		p.stepHist.reset()
		for i := range p.phaseHist {
			p.phaseHist[i].reset()
		}
	}
	a := &p.acc[0]
	if steady {
		a = &p.acc[1]
	}
	a.add(r, wall)
	p.stepHist.add(wall)
	for ph, d := range r.phase {
		if d > 0 {
			p.phaseHist[ph].add(d)
		}
	}
	if steady {
		p.tl.add(r, wall, p.rt.rss, p.rt.goroutines)
		p.detectSlow(r, wall)
	} else {
		p.warm.add(r, wall, p.rt.rss, p.rt.goroutines)
	}
	if r.idx < int64(p.cfg.DetailSteps) || r.idx <= p.keepUntil {
		r.detail = true
	}

	p.lastEnd = now
	p.nextStep = r.step + 1
	p.n++
	next := &p.ring[p.n%int64(len(p.ring))]
	if next.closed && next.detail {
		p.commit(next)
	}
	next.reset()
	p.cur = next
}

func (a *accum) add(r *stepRec, wall int64) {
	if a.steps == 0 {
		a.start = r.begin
	}
	a.end = r.end
	a.steps++
	a.wall += wall
	var sum int64
	for ph, d := range r.phase {
		a.phase[ph] += d
		sum += d
		if d > 0 {
			a.phaseSteps[ph]++
		}
	}
	if wall > sum {
		a.untracked += wall - sum
	}
	a.syncs += int64(r.syncs)
	a.samples += r.samples
	a.events += r.events
	a.compiles += int64(r.compiles)
	a.compileNs += r.phase[Compile]
	a.gc += int64(r.gc)
	a.gcPause += r.gcPause
}

// detectSlow compares a steady step with the rolling window of the steps
// before it, then adds it to the window.
func (p *Recorder) detectSlow(r *stepRec, wall int64) {
	w := &p.roll
	if p.cfg.SlowWindow > 0 && p.cfg.SlowRatio > 0 && p.cfg.SlowMADs >= 0 && len(w.sorted) >= min(minSlowWindow, len(w.ring)) {
		med := w.median()
		if float64(wall) > p.cfg.SlowRatio*float64(med) && float64(wall) > float64(med)+p.cfg.SlowMADs*float64(w.mad(med)) {
			p.flagSlow(r, wall, med)
		}
	}
	w.push(wall)
}

func (p *Recorder) flagSlow(r *stepRec, wall, med int64) {
	r.slow, r.median = true, med
	p.slowCount++
	p.slowExcess += wall - med
	if r.compiles > 0 || r.phase[Compile] > 0 {
		p.slowCompN++
		p.slowCompEx += wall - med
	} else if r.phase[Eval] > 0 || r.phase[Checkpoint] > 0 || r.planned {
		p.slowPlanN++
		p.slowPlanEx += wall - med
	}
	p.tl.last().slow++

	var s slowRec
	s.step, s.wall, s.median = r.step, wall, med
	s.planned = r.phase[Eval] > 0 || r.phase[Checkpoint] > 0 || r.planned
	s.nco = r.coincident(&s.co)
	p.countKinds(s.co[:s.nco])
	if len(p.slow) < cap(p.slow) {
		p.slow = append(p.slow, s)
	} else {
		// Keep the largest ratios to the median.
		lo := 0
		for i := range p.slow {
			if ratio(p.slow[i]) < ratio(p.slow[lo]) {
				lo = i
			}
		}
		if ratio(s) > ratio(p.slow[lo]) {
			p.slow[lo] = s
		}
	}

	// Keep the steps around it in detail.
	if p.cfg.SlowDetailSteps > 0 {
		for i := 1; i <= p.cfg.SlowContext && int64(i) <= r.idx; i++ {
			q := &p.ring[(r.idx-int64(i))%int64(len(p.ring))]
			if q.closed && q.idx == r.idx-int64(i) {
				q.detail = true
			}
		}
		p.keepUntil = r.idx + int64(p.cfg.SlowContext)
	}
}

func ratio(s slowRec) float64 { return float64(s.wall) / float64(max(s.median, 1)) }

func (p *Recorder) countKinds(co []string) {
	if len(co) == 0 {
		p.kindCount[maxKinds]++
		return
	}
outer:
	for _, k := range co {
		for i := range p.nkinds {
			if p.kinds[i] == k {
				p.kindCount[i]++
				continue outer
			}
		}
		if p.nkinds < maxKinds {
			p.kinds[p.nkinds] = k
			p.kindCount[p.nkinds] = 1
			p.nkinds++
		}
	}
}

// commit moves a closed detail record out of the recent ring.
func (p *Recorder) commit(r *stepRec) {
	switch {
	case r.idx < int64(p.cfg.DetailSteps):
		p.first = append(p.first, *r)
	case cap(p.win) == 0:
	case len(p.win) < cap(p.win):
		p.win = append(p.win, *r)
	default:
		p.win[p.winPos] = *r
		p.winPos = (p.winPos + 1) % len(p.win)
		p.winDrop++
	}
}

// Collective records a collective operation of every step (the gradient
// all-reduce of data-parallel training) timed on its own, outside the step:
// devices take part, each contributing bytes, and one takes d. The report
// gives it as a share of the p50 step and flags the run
// communication-bound above Config.CommShare. The step can hide part of it
// behind computation, so the share is what there is to hide, an upper
// bound on what the collective costs the step.
func (p *Recorder) Collective(name string, devices int, bytes int64, d time.Duration) {
	p.collectives = append(p.collectives, CollectiveStat{Name: name, Devices: devices, Bytes: bytes, Ms: float64(d) / ms})
}

// Planned marks the current step with kind, as Mark does, as work the
// loop chose to do beside the step (a device probe, its compilation on
// another goroutine): a slow step so marked is listed with kind but left
// out of the slow-steps finding, as one that evaluated or checkpointed.
func (p *Recorder) Planned(kind string) {
	p.Mark(kind)
	p.cur.planned = true
}

// Devices records a probe of the devices of a data-parallel step: d[i] is
// device names[i]'s share of the step timed on its own, without the
// collectives (see train.Runner.ProbeDevices). The report gives each
// device's median over the probes and flags a device slower than
// Config.StragglerRatio times the median device's: in the step the others
// wait for it at every all-reduce. Devices marks the current step Planned
// "probe"; time the probe itself with End(Other, t). Every call must name
// the same devices.
func (p *Recorder) Devices(names []string, d []time.Duration) {
	p.Planned("probe")
	if len(p.devNames) == 0 {
		p.devNames = slices.Clone(names)
		p.devMs = make([][]float64, len(names))
	}
	for i := range min(len(d), len(p.devMs)) {
		p.devMs[i] = append(p.devMs[i], float64(d[i])/ms)
	}
}

// Span records a span of work done by another goroutine (a prefetch worker,
// a writer) on the named track, for the trace and the per-track statistics in
// Report.Stages. start must come from the same clock as Config.Now. Span is
// safe for concurrent use; the most recent Config.SpanCapacity spans are kept.
func (p *Recorder) Span(track, name string, start time.Time, d time.Duration) {
	s := stageSpan{track: track, name: name, start: Stamp(start.Sub(p.base)), dur: max(int64(d), 0)}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.spanTotal++
	if cap(p.spans) > 0 {
		if len(p.spans) < cap(p.spans) {
			p.spans = append(p.spans, s)
		} else {
			p.spans[p.spanPos] = s
			p.spanPos = (p.spanPos + 1) % len(p.spans)
		}
	}
	st := p.stages[track]
	if st == nil {
		if len(p.stages) >= maxStages {
			return
		}
		st = new(stageStat)
		p.stages[track] = st
	}
	st.spans++
	st.total += s.dur
	st.max = max(st.max, s.dur)
}
