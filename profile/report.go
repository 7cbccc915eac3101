package profile

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"runtime/metrics"
	"slices"
	"strings"
	"text/tabwriter"
)

// Report summarises a run. Durations are in milliseconds (fields ending in Ms)
// or seconds (ending in S). It is JSON-serialisable; Load reads it back.
type Report struct {
	// Steps is the number of steady-state steps the statistics describe: those
	// after warm-up, or the warm-up steps if the run never left warm-up.
	Steps     int64  `json:"steps"`
	FirstStep int64  `json:"first_step"`
	LastStep  int64  `json:"last_step"`
	Warmup    Warmup `json:"warmup"`
	// ElapsedS runs from the start of the first to the end of the last step
	// described; WallMs is the sum of their wall times.
	ElapsedS float64     `json:"elapsed_s"`
	WallMs   float64     `json:"wall_ms"`
	StepMs   Quantiles   `json:"step_ms"`
	Phases   []PhaseStat `json:"phases"`

	SyncsPerStep float64 `json:"syncs_per_step"`
	Samples      int64   `json:"samples"`
	Events       int64   `json:"events"`
	SamplesPerS  float64 `json:"samples_per_s"`
	EventsPerS   float64 `json:"events_per_s"`
	// FLOPsPerS and MFU are set when Config.FLOPsPerSample (and PeakFLOPs)
	// are given.
	FLOPsPerS float64 `json:"flops_per_s,omitempty"`
	MFU       float64 `json:"mfu,omitempty"`

	Compiles Compiles `json:"compiles"`
	// SlowSteps lists flagged slow steps in step order (at most 50, those
	// slowest relative to their median); SlowCount counts all of them and
	// SlowBy counts them by what coincided ("none" for nothing).
	SlowSteps []SlowStep     `json:"slow_steps,omitempty"`
	SlowCount int64          `json:"slow_count"`
	SlowBy    map[string]int `json:"slow_by,omitempty"`

	Runtime Runtime     `json:"runtime"`
	Stages  []StageStat `json:"stages,omitempty"`
	// Collectives are the per-step collectives timed on their own (data
	// parallel: the gradient all-reduce).
	Collectives []CollectiveStat `json:"collectives,omitempty"`
	// Devices are the devices of a data-parallel step, each one's share of
	// the step timed on its own (Recorder.Devices), in the order given.
	Devices []DeviceStat `json:"devices,omitempty"`
	// BeyondSlowestMs is the p50 step less the slowest device's share
	// alone: what the step spends beyond its slowest device's own work
	// (collectives not hidden behind computation, the call on several
	// devices); 0 without Devices.
	BeyondSlowestMs float64 `json:"beyond_slowest_ms,omitempty"`

	// Findings are ranked by Cost, the largest first.
	Findings []Finding `json:"findings"`
	Verdict  string    `json:"verdict"`
}

// Warmup describes the warm-up steps.
type Warmup struct {
	Steps     int64   `json:"steps"`
	WallMs    float64 `json:"wall_ms"`
	CompileMs float64 `json:"compile_ms"`
}

// Quantiles of step wall time, in milliseconds (within 0.8%).
type Quantiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Mean float64 `json:"mean"`
	Max  float64 `json:"max"`
}

// PhaseStat is the time spent in one phase. Phase "untracked" is step wall
// time not covered by any phase.
type PhaseStat struct {
	Phase   string  `json:"phase"`
	TotalMs float64 `json:"total_ms"`
	Share   float64 `json:"share"`          // of WallMs
	P50Ms   float64 `json:"p50_ms"`         // per step, over the steps that had the phase
	Steps   int64   `json:"steps,omitzero"` // steps that had the phase
}

// SlowStep is a step flagged as slow.
type SlowStep struct {
	Step       int64    `json:"step"`
	Ms         float64  `json:"ms"`
	MedianMs   float64  `json:"median_ms"`
	Coincident []string `json:"coincident,omitempty"`
	// Planned: the step also evaluated, checkpointed or did other work
	// the loop chose (Recorder.Planned); such steps are not a finding.
	Planned bool `json:"planned,omitempty"`
}

// Compiles counts compilations.
type Compiles struct {
	Count         int64          `json:"count"`
	TotalMs       float64        `json:"total_ms"`
	AfterWarmup   int64          `json:"after_warmup"`
	AfterWarmupMs float64        `json:"after_warmup_ms"`
	First         []CompileEvent `json:"first,omitempty"` // the first 64
}

// CompileEvent is one compilation.
type CompileEvent struct {
	Step int64   `json:"step"`
	Ms   float64 `json:"ms"`
	What string  `json:"what,omitempty"`
}

// Runtime holds Go runtime statistics over the whole recording.
type Runtime struct {
	GCCycles      int64   `json:"gc_cycles"`
	GCPauseMs     float64 `json:"gc_pause_ms"`     // estimated from the pause histogram
	GCPauseMaxMs  float64 `json:"gc_pause_max_ms"` // upper bound
	Goroutines    int64   `json:"goroutines"`
	MaxGoroutines int64   `json:"max_goroutines"`
	RSSBytes      int64   `json:"rss_bytes,omitempty"` // Linux only
	MaxRSSBytes   int64   `json:"max_rss_bytes,omitempty"`
	GoMemBytes    uint64  `json:"go_mem_bytes"` // memory mapped by the Go runtime
}

// StageStat summarises the spans of one Span track.
type StageStat struct {
	Track  string  `json:"track"`
	Spans  int64   `json:"spans"`
	MeanMs float64 `json:"mean_ms"`
	MaxMs  float64 `json:"max_ms"`
	// Busy is the span time divided by the recording time: the average
	// number of spans of the track in flight.
	Busy float64 `json:"busy"`
}

// CollectiveStat is a collective of every step, timed on its own.
type CollectiveStat struct {
	Name    string  `json:"name"`
	Devices int     `json:"devices"`
	Bytes   int64   `json:"bytes"` // contributed by each device
	Ms      float64 `json:"ms"`    // median time of one, alone
	// Share is Ms over the p50 step: what the step has to hide behind
	// computation, or pays.
	Share float64 `json:"share"`
}

// DeviceStat is one device's share of a data-parallel step, timed on its
// own, without the collectives.
type DeviceStat struct {
	Device string  `json:"device"`
	Ms     float64 `json:"ms"` // median over the probes
	MaxMs  float64 `json:"max_ms"`
	Probes int     `json:"probes"`
	// Ratio is Ms over the median device's Ms (with an even number of
	// devices, the lower of the two middle ones).
	Ratio float64 `json:"ratio"`
}

// Finding is the result of a detector that fired.
type Finding struct {
	// Kind is "input-bound", "sync-bound", "comm-bound", "straggler",
	// "slow-steps", "recompile-storm" or "throughput-drift".
	Kind string `json:"kind"`
	// Cost estimates the share of wall time at stake; findings are ranked by it.
	Cost    float64 `json:"cost"`
	Message string  `json:"message"`
}

// Load reads a Report written as JSON (for example profile.json in a run
// directory).
func Load(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := new(Report)
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("profile: %s: %w", path, err)
	}
	return r, nil
}

const ms = 1e6 // nanoseconds

// Report summarises the steps closed so far and runs the detectors.
func (p *Recorder) Report() *Report {
	warm, a := &p.acc[0], &p.acc[1]
	steady := a.steps > 0
	if !steady {
		a = warm
	}
	rep := &Report{
		Steps:        a.steps,
		WallMs:       float64(a.wall) / ms,
		ElapsedS:     float64(a.end-a.start) / 1e9,
		Samples:      a.samples,
		Events:       a.events,
		SyncsPerStep: ratioOf(float64(a.syncs), float64(a.steps)),
		SlowCount:    p.slowCount,
	}
	if steady {
		rep.Warmup = Warmup{Steps: warm.steps, WallMs: float64(warm.wall) / ms, CompileMs: float64(warm.compileNs) / ms}
	}
	if p.n > 0 {
		rep.LastStep = p.nextStep - 1
		switch {
		case len(p.first) > 0:
			rep.FirstStep = p.first[0].step
		case p.warm.steps > 0:
			rep.FirstStep = p.warm.firstStep
		case len(p.tl.b) > 0:
			rep.FirstStep = p.tl.b[0].firstStep
		}
	}
	h := &p.stepHist
	rep.StepMs = Quantiles{P50: h.quantile(.5) / ms, P90: h.quantile(.9) / ms, P99: h.quantile(.99) / ms, Mean: h.mean() / ms, Max: float64(h.max) / ms}
	for ph := range Phase(numPhases) {
		if a.phase[ph] == 0 {
			continue
		}
		rep.Phases = append(rep.Phases, PhaseStat{
			Phase:   ph.String(),
			TotalMs: float64(a.phase[ph]) / ms,
			Share:   ratioOf(float64(a.phase[ph]), float64(a.wall)),
			P50Ms:   p.phaseHist[ph].quantile(.5) / ms,
			Steps:   a.phaseSteps[ph],
		})
	}
	if a.untracked > 0 {
		rep.Phases = append(rep.Phases, PhaseStat{Phase: "untracked", TotalMs: float64(a.untracked) / ms, Share: ratioOf(float64(a.untracked), float64(a.wall))})
	}
	if el := float64(a.end - a.start); el > 0 {
		rep.SamplesPerS = float64(a.samples) / el * 1e9
		rep.EventsPerS = float64(a.events) / el * 1e9
	}
	if p.cfg.FLOPsPerSample > 0 {
		rep.FLOPsPerS = rep.SamplesPerS * p.cfg.FLOPsPerSample
		if p.cfg.PeakFLOPs > 0 {
			rep.MFU = rep.FLOPsPerS / p.cfg.PeakFLOPs
		}
	}

	all := &rep.Compiles
	all.Count = warm.compiles + p.acc[1].compiles
	all.TotalMs = float64(warm.compileNs+p.acc[1].compileNs) / ms
	all.AfterWarmup = p.acc[1].compiles
	all.AfterWarmupMs = float64(p.acc[1].compileNs) / ms
	for _, c := range p.compiles {
		all.First = append(all.First, CompileEvent{Step: c.step, Ms: float64(c.dur) / ms, What: c.what})
	}

	slow := slices.Clone(p.slow)
	slices.SortFunc(slow, func(x, y slowRec) int { return cmp.Compare(x.step, y.step) })
	for _, s := range slow {
		rep.SlowSteps = append(rep.SlowSteps, SlowStep{Step: s.step, Ms: float64(s.wall) / ms, MedianMs: float64(s.median) / ms, Coincident: slices.Clone(s.co[:s.nco]), Planned: s.planned})
	}
	if p.slowCount > 0 {
		rep.SlowBy = make(map[string]int)
		for i := range p.nkinds {
			rep.SlowBy[p.kinds[i]] = int(p.kindCount[i])
		}
		if n := p.kindCount[maxKinds]; n > 0 {
			rep.SlowBy["none"] = int(n)
		}
	}

	rt := &p.rt
	rep.Runtime = Runtime{
		GCCycles:      rt.gc,
		GCPauseMs:     float64(rt.pauseTotal) / ms,
		GCPauseMaxMs:  float64(rt.pauseMax) / ms,
		Goroutines:    rt.goroutines,
		MaxGoroutines: rt.maxGor,
		RSSBytes:      rt.rss,
		MaxRSSBytes:   rt.maxRSS,
	}
	mem := []metrics.Sample{{Name: "/memory/classes/total:bytes"}}
	if metrics.Read(mem); mem[0].Value.Kind() == metrics.KindUint64 {
		rep.Runtime.GoMemBytes = mem[0].Value.Uint64()
	}

	p.mu.Lock()
	run := float64(p.now())
	for track, st := range p.stages {
		rep.Stages = append(rep.Stages, StageStat{
			Track:  track,
			Spans:  st.spans,
			MeanMs: ratioOf(float64(st.total), float64(st.spans)) / ms,
			MaxMs:  float64(st.max) / ms,
			Busy:   ratioOf(float64(st.total), run),
		})
	}
	p.mu.Unlock()
	slices.SortFunc(rep.Stages, func(x, y StageStat) int { return strings.Compare(x.Track, y.Track) })

	for _, c := range p.collectives {
		c.Share = ratioOf(c.Ms, rep.StepMs.P50)
		rep.Collectives = append(rep.Collectives, c)
	}

	rep.Devices = p.deviceStats()
	if len(rep.Devices) > 0 {
		slowest := slices.MaxFunc(rep.Devices, func(x, y DeviceStat) int { return cmp.Compare(x.Ms, y.Ms) })
		rep.BeyondSlowestMs = max(0, rep.StepMs.P50-slowest.Ms)
	}

	if steady {
		rep.Findings = p.detect(rep, a)
	}
	rep.Verdict = verdict(rep, steady)
	return rep
}

// deviceStats summarises the probes recorded by Devices.
func (p *Recorder) deviceStats() []DeviceStat {
	if len(p.devNames) == 0 || len(p.devMs[0]) == 0 {
		return nil
	}
	out := make([]DeviceStat, len(p.devNames))
	meds := make([]float64, len(out))
	for i, name := range p.devNames {
		v := slices.Sorted(slices.Values(p.devMs[i]))
		out[i] = DeviceStat{Device: name, Ms: v[len(v)/2], MaxMs: v[len(v)-1], Probes: len(v)}
		meds[i] = out[i].Ms
	}
	slices.Sort(meds)
	mid := meds[(len(meds)-1)/2]
	for i := range out {
		out[i].Ratio = ratioOf(out[i].Ms, mid)
	}
	return out
}

func ratioOf(x, y float64) float64 {
	if y == 0 {
		return 0
	}
	return x / y
}

func (r *Report) phase(name string) PhaseStat {
	for _, s := range r.Phases {
		if s.Phase == name {
			return s
		}
	}
	return PhaseStat{Phase: name}
}

func (p *Recorder) detect(rep *Report, a *accum) []Finding {
	c := &p.cfg
	var out []Finding
	add := func(kind string, cost float64, format string, args ...any) {
		out = append(out, Finding{Kind: kind, Cost: cost, Message: kind + ": " + fmt.Sprintf(format, args...)})
	}

	if d := rep.phase("data"); c.InputShare > 0 && d.Share > c.InputShare {
		add("input-bound", d.Share, "%s of wall time waiting for data (p50 wait %s); raise --prefetch or use packed batches",
			pct(d.Share), fmtMs(d.P50Ms))
	}

	rb := rep.phase("readback")
	if (c.SyncsPerStep > 0 && rep.SyncsPerStep >= c.SyncsPerStep) || (c.ReadbackShare > 0 && rb.Share > c.ReadbackShare) {
		timed := fmt.Sprintf("%s of wall time in readback", pct(rb.Share))
		if rb.TotalMs == 0 {
			timed = "readback not timed"
		}
		add("sync-bound", rb.Share, "%.1f host reads per step, %s; read metrics every N steps (e.g. 50) instead of every step",
			rep.SyncsPerStep, timed)
	}

	for _, co := range rep.Collectives {
		if c.CommShare > 0 && co.Share > c.CommShare {
			add("comm-bound", co.Share, "the %s over %d devices (%s each) takes %s on its own, %s of the p50 step; all-reduce once per several micro-batches (--accumulate), give each device a larger batch, reduce in bf16 (--dp-reduce bf16), or use fewer devices",
				co.Name, co.Devices, fmtSize(co.Bytes), fmtMs(co.Ms), pct(co.Share))
		}
	}

	if len(rep.Devices) > 1 && c.StragglerRatio > 0 {
		slowest := slices.MaxFunc(rep.Devices, func(x, y DeviceStat) int { return cmp.Compare(x.Ratio, y.Ratio) })
		if slowest.Ratio > c.StragglerRatio {
			mid := slowest.Ms / slowest.Ratio
			wait := slowest.Ms - mid
			add("straggler", ratioOf(wait, rep.StepMs.P50), "%s takes %s for its share of the step on its own, %.2f× the median device's %s, and the others wait for it at every all-reduce (about %s, %s of the p50 step); look for another process on it (nvidia-smi), a lower clock or a hotter card, or run without it",
				slowest.Device, fmtMs(slowest.Ms), slowest.Ratio, fmtMs(mid), fmtMs(wait), pct(ratioOf(wait, rep.StepMs.P50)))
		}
	}

	storm := c.StormCompiles >= 0 && a.compiles > int64(c.StormCompiles)
	if storm {
		var steps []string
		whats := map[string]int{}
		for _, e := range p.compiles {
			if e.idx < int64(c.Warmup) || len(steps) > 8 {
				continue
			}
			steps = append(steps, fmt.Sprint(e.step))
			if e.what != "" {
				whats[e.what]++
			}
		}
		if len(steps) > 8 {
			steps[8] = "..."
		}
		msg := fmt.Sprintf("%d compilations after warm-up taking %s", a.compiles, fmtMs(float64(a.compileNs)/ms))
		if len(steps) > 0 {
			msg += " (steps " + strings.Join(steps, ", ") + ")"
		}
		if len(whats) > 0 {
			msg += "; " + countsText(whats)
		}
		add("recompile-storm", ratioOf(float64(a.compileNs), float64(a.wall)), "%s; pad or bucket shapes so the compiled step is reused", msg)
	}

	// Slow steps explained by a recompilation storm are left to that
	// finding; steps that evaluated or checkpointed did planned work that the
	// eval and checkpoint phases report, so they are listed but not a finding.
	slowN, slowEx, skipCompile := p.slowCount-p.slowPlanN, p.slowExcess-p.slowPlanEx, storm
	if skipCompile {
		slowN -= p.slowCompN
		slowEx -= p.slowCompEx
	}
	if excess := ratioOf(float64(slowEx), float64(a.wall)); slowN > 0 && c.SlowShare > 0 && excess > c.SlowShare {
		var b strings.Builder
		i := 0
		for _, s := range rep.SlowSteps {
			if skipCompile && slices.Contains(s.Coincident, "compile") {
				continue
			}
			if !slices.Contains(s.Coincident, "compile") && s.Planned {
				continue
			}
			if i == 10 {
				fmt.Fprintf(&b, ", ...")
				break
			}
			if i > 0 {
				b.WriteString(", ")
			}
			i++
			fmt.Fprintf(&b, "%d (%s", s.Step, fmtMs(s.Ms))
			if len(s.Coincident) > 0 {
				fmt.Fprintf(&b, ", %s", strings.Join(s.Coincident, "+"))
			}
			b.WriteString(")")
		}
		add("slow-steps", excess, "%d of %d steps over %.1f× the rolling median, %s of wall time beyond it: %s; coinciding: %s",
			slowN, a.steps, c.SlowRatio, pct(excess), b.String(), countsText(rep.SlowBy))
	}

	if first, last, unit, ok := p.drift(); ok && c.DriftDrop > 0 && last < first*(1-c.DriftDrop) {
		drop := 1 - last/first
		add("throughput-drift", drop/2, "%s %s in the last quarter vs %s in the first (%s lower); look for growing queues, memory or caches",
			fmtRate(last), unit, fmtRate(first), pct(drop))
	}

	slices.SortStableFunc(out, func(x, y Finding) int { return cmp.Compare(y.Cost, x.Cost) })
	return out
}

// drift returns the throughput of the first and last quarters of the steady
// steps, in samples/s (steps/s when no samples were counted), leaving out the
// time spent in evaluation, checkpoints and compilation (planned work, not a
// slowdown of the step).
func (p *Recorder) drift() (first, last float64, unit string, ok bool) {
	b := p.tl.b
	var total, samples int64
	for i := range b {
		total += b[i].steps
		samples += b[i].samples
	}
	if total < 20 || len(b) < 4 {
		return 0, 0, "", false
	}
	unit = "samples/s"
	rate := func(bs []bucket) float64 {
		var n int64
		for i := range bs {
			if samples > 0 {
				n += bs[i].samples
			} else {
				n += bs[i].steps
			}
		}
		span := float64(bs[len(bs)-1].end - bs[0].start)
		for i := range bs {
			span -= float64(bs[i].phase[Eval] + bs[i].phase[Checkpoint] + bs[i].phase[Compile])
		}
		return ratioOf(float64(n), span) * 1e9
	}
	if samples == 0 {
		unit = "steps/s"
	}
	i, n := 0, int64(0)
	for ; i < len(b) && n < total/4; i++ {
		n += b[i].steps
	}
	j, n := len(b), int64(0)
	for ; j > 0 && n < total/4; j-- {
		n += b[j-1].steps
	}
	if j < i {
		return 0, 0, "", false
	}
	return rate(b[:i]), rate(b[j:]), unit, true
}

func verdict(r *Report, steady bool) string {
	if r.Steps == 0 {
		return "no steps recorded"
	}
	tail := fmt.Sprintf("p50 step %s, %s", fmtMs(r.StepMs.P50), throughput(r))
	if !steady {
		return fmt.Sprintf("too short to judge: %d steps, all in warm-up (%s)", r.Steps, tail)
	}
	if len(r.Findings) == 0 {
		if dev := r.phase("device"); dev.Share >= 0.5 {
			return fmt.Sprintf("healthy: device-bound, %s of wall time on the device (%s)", pct(dev.Share), tail)
		}
		var top PhaseStat
		for _, s := range r.Phases {
			if s.Share > top.Share {
				top = s
			}
		}
		return fmt.Sprintf("healthy: no bottleneck detected; largest share %s %s (%s)", top.Phase, pct(top.Share), tail)
	}
	var b strings.Builder
	for i, f := range r.Findings {
		switch i {
		case 0:
		case 1:
			b.WriteString(", then ")
		default:
			b.WriteString(", ")
		}
		if i == 0 {
			fmt.Fprintf(&b, "%s (%s of wall time)", f.Kind, pct(f.Cost))
		} else {
			fmt.Fprintf(&b, "%s (%s)", f.Kind, pct(f.Cost))
		}
	}
	fmt.Fprintf(&b, "; %s", tail)
	return b.String()
}

func throughput(r *Report) string {
	s := fmt.Sprintf("%s samples/s", fmtRate(r.SamplesPerS))
	if r.Samples == 0 {
		s = fmt.Sprintf("%s steps/s", fmtRate(ratioOf(float64(r.Steps), r.ElapsedS)))
	}
	if r.MFU > 0 {
		s += fmt.Sprintf(", MFU %s", pct(r.MFU))
	}
	return s
}

// String prints the phase table, throughput, runtime statistics and findings.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "profile: steps %d-%d: ", r.FirstStep, r.LastStep)
	if r.Warmup.Steps > 0 {
		fmt.Fprintf(&b, "%d warm-up (%s), then ", r.Warmup.Steps, fmtMs(r.Warmup.WallMs))
	}
	fmt.Fprintf(&b, "%d measured in %.2f s", r.Steps, r.ElapsedS)
	fmt.Fprintf(&b, "\nstep time: p50 %s  p90 %s  p99 %s  max %s\n", fmtMs(r.StepMs.P50), fmtMs(r.StepMs.P90), fmtMs(r.StepMs.P99), fmtMs(r.StepMs.Max))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "phase\ttotal ms\t%%\tp50/step ms\tsteps\t\n")
	for _, s := range r.Phases {
		p50, steps := "", ""
		if s.Steps > 0 {
			p50, steps = fmt.Sprintf("%.3f", s.P50Ms), fmt.Sprint(s.Steps)
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%s\t%s\t\n", s.Phase, s.TotalMs, 100*s.Share, p50, steps)
	}
	tw.Flush()
	fmt.Fprintf(&b, "throughput: %s samples/s, %s events/s, %.2f host reads/step", fmtRate(r.SamplesPerS), fmtRate(r.EventsPerS), r.SyncsPerStep)
	if r.FLOPsPerS > 0 {
		fmt.Fprintf(&b, ", %s FLOP/s", fmtRate(r.FLOPsPerS))
		if r.MFU > 0 {
			fmt.Fprintf(&b, ", MFU %s", pct(r.MFU))
		}
	}
	rt := r.Runtime
	fmt.Fprintf(&b, "\nruntime: %d GC cycles (pauses %s, max %s), %d goroutines (max %d)",
		rt.GCCycles, fmtMs(rt.GCPauseMs), fmtMs(rt.GCPauseMaxMs), rt.Goroutines, rt.MaxGoroutines)
	if rt.MaxRSSBytes > 0 {
		fmt.Fprintf(&b, ", RSS %s (max %s)", fmtBytes(rt.RSSBytes), fmtBytes(rt.MaxRSSBytes))
	}
	b.WriteString("\n")
	if c := r.Compiles; c.Count > 0 {
		fmt.Fprintf(&b, "compiles: %d (%s), %d after warm-up (%s)\n", c.Count, fmtMs(c.TotalMs), c.AfterWarmup, fmtMs(c.AfterWarmupMs))
	}
	for _, s := range r.Stages {
		fmt.Fprintf(&b, "stage %s: %d spans, mean %s, max %s, busy %.2f\n", s.Track, s.Spans, fmtMs(s.MeanMs), fmtMs(s.MaxMs), s.Busy)
	}
	for _, c := range r.Collectives {
		fmt.Fprintf(&b, "collective %s: %d devices, %s each, %s alone (%s of the p50 step)\n", c.Name, c.Devices, fmtSize(c.Bytes), fmtMs(c.Ms), pct(c.Share))
	}
	if len(r.Devices) > 0 {
		b.WriteString("devices, each one's share of the step alone (median of probes):")
		for _, d := range r.Devices {
			fmt.Fprintf(&b, " %s %s", d.Device, fmtMs(d.Ms))
			if d.Ratio != 1 {
				fmt.Fprintf(&b, " (%.2f×)", d.Ratio)
			}
		}
		fmt.Fprintf(&b, "; the p50 step takes %s beyond the slowest (collectives and synchronisation not hidden)\n", fmtMs(r.BeyondSlowestMs))
	}
	if r.SlowCount > 0 {
		fmt.Fprintf(&b, "slow steps: %d (%s)\n", r.SlowCount, countsText(r.SlowBy))
	}
	for i, f := range r.Findings {
		fmt.Fprintf(&b, "%d. %s\n", i+1, f.Message)
	}
	fmt.Fprintf(&b, "verdict: %s\n", r.Verdict)
	return b.String()
}

func countsText(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y string) int {
		return cmp.Or(cmp.Compare(m[y], m[x]), strings.Compare(x, y))
	})
	for i, k := range keys {
		keys[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(keys, ", ")
}

func pct(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) }

func fmtMs(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.2f s", v/1000)
	case v >= 1:
		return fmt.Sprintf("%.2f ms", v)
	default:
		return fmt.Sprintf("%.1f µs", v*1000)
	}
}

func fmtRate(v float64) string {
	switch {
	case v >= 1e12:
		return fmt.Sprintf("%.2fT", v/1e12)
	case v >= 1e9:
		return fmt.Sprintf("%.2fG", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	default:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
}

// fmtSize prints a byte count in decimal units (network and bus convention).
func fmtSize(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	default:
		return fmt.Sprintf("%d B", n)
	}
}
