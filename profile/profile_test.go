package profile

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeClock is a manual clock for deterministic tests.
type fakeClock struct{ t time.Time }

func newClock() *fakeClock                   { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }
func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

// phases of one simulated step; zero durations are not timed.
type phases struct {
	data, h2d, dispatch, device, readback time.Duration
	sync                                  bool
}

// simulate runs steps steps of a loop on clk. spec gives each step's phases;
// hook, if not nil, runs inside the step after the device phase.
func simulate(p *Recorder, clk *fakeClock, steps int, spec func(i int) phases, hook func(i int)) {
	for i := range steps {
		ph := spec(i)
		p.BeginStep(int64(i))
		for _, x := range []struct {
			p Phase
			d time.Duration
		}{{Data, ph.data}, {H2D, ph.h2d}, {Dispatch, ph.dispatch}, {Device, ph.device}} {
			if x.d > 0 {
				t := p.Start()
				clk.Advance(x.d)
				p.End(x.p, t)
			}
		}
		if hook != nil {
			hook(i)
		}
		if ph.readback > 0 || ph.sync {
			t := p.Start()
			clk.Advance(ph.readback)
			p.End(Readback, t)
			if ph.sync {
				p.Sync()
			}
		}
		p.EndStep(32, 3200)
	}
}

func healthy(i int) phases {
	ph := phases{data: 10 * time.Microsecond, h2d: 50 * time.Microsecond, dispatch: 20 * time.Microsecond, device: time.Millisecond}
	if i%100 == 99 {
		ph.readback, ph.sync = 50*time.Microsecond, true
	}
	return ph
}

func kinds(r *Report) []string {
	var k []string
	for _, f := range r.Findings {
		k = append(k, f.Kind)
	}
	return k
}

func TestHealthy(t *testing.T) {
	clk := newClock()
	p := New(Config{Now: clk.Now, FLOPsPerSample: 1e9, PeakFLOPs: 1e14})
	simulate(p, clk, 500, healthy, nil)
	r := p.Report()
	if len(r.Findings) != 0 {
		t.Fatalf("findings %v on a healthy loop:\n%s", kinds(r), r)
	}
	if !strings.HasPrefix(r.Verdict, "healthy: device-bound") {
		t.Errorf("verdict %q", r.Verdict)
	}
	if r.Steps != 490 || r.Warmup.Steps != 10 || r.FirstStep != 0 || r.LastStep != 499 {
		t.Errorf("steps %d warm-up %d range %d-%d", r.Steps, r.Warmup.Steps, r.FirstStep, r.LastStep)
	}
	if got := r.StepMs.P50; math.Abs(got-1.08) > 1e-9 {
		t.Errorf("p50 step %v ms, want 1.08", got)
	}
	// 32 samples per 1.08 ms step (the odd readback adds a little).
	if want := 32 / 1.08e-3; math.Abs(r.SamplesPerS-want)/want > 0.01 {
		t.Errorf("samples/s %.0f, want about %.0f", r.SamplesPerS, want)
	}
	if want := r.SamplesPerS * 1e9 / 1e14; math.Abs(r.MFU-want) > 1e-12 || r.MFU == 0 {
		t.Errorf("MFU %v, want %v", r.MFU, want)
	}
	if dev := r.phase("device"); dev.Steps != 490 || dev.P50Ms != 1 || math.Abs(dev.Share-1/1.08) > 0.002 {
		t.Errorf("device %+v", dev)
	}
}

func TestInputBound(t *testing.T) {
	clk := newClock()
	p := New(Config{Now: clk.Now})
	simulate(p, clk, 100, func(int) phases { return phases{data: 2 * time.Millisecond, device: time.Millisecond} }, nil)
	r := p.Report()
	if got := kinds(r); !slices.Equal(got, []string{"input-bound"}) {
		t.Fatalf("findings %v, want [input-bound]\n%s", got, r)
	}
	want := "input-bound: 67% of wall time waiting for data (p50 wait 2.00 ms); raise --prefetch or use packed batches"
	if r.Findings[0].Message != want {
		t.Errorf("message\n%q, want\n%q", r.Findings[0].Message, want)
	}
	if !strings.HasPrefix(r.Verdict, "input-bound (67% of wall time)") {
		t.Errorf("verdict %q", r.Verdict)
	}
}

func TestSyncBound(t *testing.T) {
	clk := newClock()
	p := New(Config{Now: clk.Now})
	simulate(p, clk, 100, func(int) phases {
		return phases{device: time.Millisecond, readback: 300 * time.Microsecond, sync: true}
	}, nil)
	r := p.Report()
	if got := kinds(r); !slices.Equal(got, []string{"sync-bound"}) {
		t.Fatalf("findings %v, want [sync-bound]\n%s", got, r)
	}
	if msg := r.Findings[0].Message; !strings.HasPrefix(msg, "sync-bound: 1.0 host reads per step, 23% of wall time in readback") {
		t.Errorf("message %q", msg)
	}
	if r.SyncsPerStep != 1 {
		t.Errorf("syncs per step %v", r.SyncsPerStep)
	}

	// Reading back every 50 steps is fine.
	clk = newClock()
	p = New(Config{Now: clk.Now})
	simulate(p, clk, 100, func(i int) phases {
		return phases{device: time.Millisecond, sync: i%50 == 0, readback: 10 * time.Microsecond}
	}, nil)
	if r := p.Report(); len(r.Findings) != 0 {
		t.Errorf("findings %v for a read every 50 steps", kinds(r))
	}
}

func TestSlowSteps(t *testing.T) {
	clk := newClock()
	p := New(Config{Now: clk.Now})
	simulate(p, clk, 300, func(i int) phases {
		ph := phases{data: 20 * time.Microsecond, device: time.Millisecond}
		if i%7 == 0 { // some jitter
			ph.device += 40 * time.Microsecond
		}
		return ph
	}, func(i int) {
		switch i {
		case 40:
			runtime.GC()
			clk.Advance(4 * time.Millisecond)
		case 75:
			p.Mark("checkpoint")
			t := p.Start()
			clk.Advance(3 * time.Millisecond)
			p.End(Checkpoint, t)
		case 120:
			clk.Advance(2 * time.Millisecond)
		}
	})
	r := p.Report()
	var got []int64
	for _, s := range r.SlowSteps {
		got = append(got, s.Step)
	}
	if !slices.Equal(got, []int64{40, 75, 120}) {
		t.Fatalf("slow steps %v, want [40 75 120]\n%s", got, r)
	}
	if r.SlowCount != 3 {
		t.Errorf("slow count %d", r.SlowCount)
	}
	if co := r.SlowSteps[0].Coincident; !slices.Contains(co, "gc") {
		t.Errorf("step 40 coincident %v, want gc", co)
	}
	if co := r.SlowSteps[1].Coincident; !slices.Contains(co, "checkpoint") {
		t.Errorf("step 75 coincident %v, want checkpoint", co)
	}
	if s := r.SlowSteps[1]; math.Abs(s.Ms-4.02) > 1e-9 || math.Abs(s.MedianMs-1.02) > 1e-9 {
		t.Errorf("step 75: %v ms, median %v ms", s.Ms, s.MedianMs)
	}
	if r.SlowBy["checkpoint"] != 1 || r.SlowBy["gc"] < 1 {
		t.Errorf("slow by %v", r.SlowBy)
	}
	if got := kinds(r); !slices.Equal(got, []string{"slow-steps"}) {
		t.Fatalf("findings %v, want [slow-steps]", got)
	}
	// Step 75 checkpointed: listed above, but planned work that the
	// checkpoint phase accounts for, so not part of the finding.
	msg := r.Findings[0].Message
	for _, want := range []string{"2 of 290 steps", "40 (5.02 ms, gc", "120 (3.02 ms"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "75 (") {
		t.Errorf("message %q lists the checkpoint step", msg)
	}
}

// TestPlannedWorkIsNotAFinding: a long checkpoint at the end of an
// otherwise steady run is neither a slow-steps finding nor throughput drift.
func TestPlannedWorkIsNotAFinding(t *testing.T) {
	clk := newClock()
	p := New(Config{Now: clk.Now})
	simulate(p, clk, 400, func(i int) phases {
		return phases{data: 10 * time.Microsecond, device: time.Millisecond}
	}, func(i int) {
		if i == 399 {
			t := p.Start()
			clk.Advance(2 * time.Second)
			p.End(Checkpoint, t)
		}
	})
	r := p.Report()
	if len(r.Findings) != 0 || r.SlowCount != 1 {
		t.Fatalf("findings %v (slow %d), want none for a final checkpoint\n%s", kinds(r), r.SlowCount, r)
	}
}

func TestRecompileStorm(t *testing.T) {
	for _, tc := range []struct {
		at    []int
		storm bool
	}{
		{at: []int{0, 20, 30, 40}, storm: true},
		{at: []int{0, 1, 20, 40}, storm: false}, // two after warm-up is allowed
	} {
		clk := newClock()
		p := New(Config{Now: clk.Now})
		simulate(p, clk, 100, func(int) phases { return phases{device: time.Millisecond} }, func(i int) {
			if slices.Contains(tc.at, i) {
				clk.Advance(50 * time.Millisecond)
				p.Compile(50*time.Millisecond, "train step [32 128]")
			}
		})
		r := p.Report()
		if got := slices.Contains(kinds(r), "recompile-storm"); got != tc.storm {
			t.Errorf("compiles at %v: storm %v, want %v\n%s", tc.at, got, tc.storm, r)
			continue
		}
		if r.Compiles.Count != 4 || math.Abs(r.Compiles.TotalMs-200) > 1e-9 || len(r.Compiles.First) != 4 {
			t.Errorf("compiles %+v", r.Compiles)
		}
		if !tc.storm {
			continue
		}
		if r.Findings[0].Kind != "recompile-storm" {
			t.Errorf("findings %v: storm not first", kinds(r))
		}
		msg := r.Findings[0].Message
		for _, want := range []string{"3 compilations after warm-up taking 150.00 ms", "steps 20, 30, 40", "train step [32 128] 3"} {
			if !strings.Contains(msg, want) {
				t.Errorf("message %q lacks %q", msg, want)
			}
		}
		if r.Compiles.AfterWarmup != 3 {
			t.Errorf("after warm-up %d", r.Compiles.AfterWarmup)
		}
	}
}

func TestThroughputDrift(t *testing.T) {
	clk := newClock()
	p := New(Config{Now: clk.Now})
	// The step time creeps from 1 ms to 1.5 ms: no single step is an outlier.
	simulate(p, clk, 510, func(i int) phases {
		return phases{device: time.Millisecond + time.Duration(i)*time.Microsecond}
	}, nil)
	r := p.Report()
	if got := kinds(r); !slices.Equal(got, []string{"throughput-drift"}) {
		t.Fatalf("findings %v, want [throughput-drift]\n%s", got, r)
	}
	if !strings.Contains(r.Findings[0].Message, "samples/s in the last quarter") {
		t.Errorf("message %q", r.Findings[0].Message)
	}
}

func TestRanking(t *testing.T) {
	clk := newClock()
	p := New(Config{Now: clk.Now})
	simulate(p, clk, 100, func(int) phases {
		return phases{data: 500 * time.Microsecond, device: time.Millisecond, readback: 200 * time.Microsecond, sync: true}
	}, nil)
	r := p.Report()
	if got := kinds(r); !slices.Equal(got, []string{"input-bound", "sync-bound"}) {
		t.Fatalf("findings %v", got)
	}
	if !strings.HasPrefix(r.Verdict, "input-bound (29% of wall time), then sync-bound (12%)") {
		t.Errorf("verdict %q", r.Verdict)
	}
}

// Time recorded between EndStep and BeginStep belongs to the next step;
// BeginStep is optional.
func TestBetweenSteps(t *testing.T) {
	clk := newClock()
	p := New(Config{Now: clk.Now, Warmup: -1})
	for i := range 3 {
		t0 := p.Start()
		clk.Advance(time.Millisecond)
		p.End(Data, t0)
		if i != 1 {
			p.BeginStep(int64(10 + i))
		}
		t0 = p.Start()
		clk.Advance(2 * time.Millisecond)
		p.End(Device, t0)
		p.EndStep(1, 0)
	}
	r := p.Report()
	if r.Steps != 3 || r.FirstStep != 10 || r.LastStep != 12 {
		t.Errorf("steps %d (%d-%d)", r.Steps, r.FirstStep, r.LastStep)
	}
	if r.WallMs != 9 || r.phase("data").TotalMs != 3 || r.phase("untracked").TotalMs != 0 {
		t.Errorf("wall %v ms, phases %+v", r.WallMs, r.Phases)
	}
	if r.StepMs.Max != 3 || r.StepMs.P50 != 3 {
		t.Errorf("step ms %+v", r.StepMs)
	}
}

func TestShortRun(t *testing.T) {
	clk := newClock()
	p := New(Config{Now: clk.Now})
	if r := p.Report(); r.Verdict != "no steps recorded" {
		t.Errorf("empty verdict %q", r.Verdict)
	}
	simulate(p, clk, 5, func(int) phases { return phases{data: 5 * time.Millisecond, device: time.Millisecond} }, nil)
	r := p.Report()
	if r.Steps != 5 || len(r.Findings) != 0 || !strings.HasPrefix(r.Verdict, "too short to judge: 5 steps") {
		t.Errorf("steps %d, findings %v, verdict %q", r.Steps, kinds(r), r.Verdict)
	}
}

func TestReportJSON(t *testing.T) {
	clk := newClock()
	p := New(Config{Now: clk.Now})
	simulate(p, clk, 100, func(int) phases { return phases{data: 2 * time.Millisecond, device: time.Millisecond} }, func(i int) {
		if i == 50 {
			p.Mark("eval")
			clk.Advance(10 * time.Millisecond)
		}
	})
	p.Span("prefetch", "batch", clk.Now().Add(-time.Millisecond), time.Millisecond)
	r := p.Report()
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != r.String() {
		t.Errorf("loaded report differs:\n%s\nwant\n%s", got, r)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("Load of a missing file succeeded")
	}
	s := r.String()
	for _, want := range []string{"phase", "total ms", "p50/step ms", "data", "device", "samples/s", "stage prefetch: 1 spans", "1. input-bound", "slow steps: 1 (eval 1)", "verdict: input-bound"} {
		if !strings.Contains(s, want) {
			t.Errorf("String lacks %q:\n%s", want, s)
		}
	}
}

func TestHistQuantiles(t *testing.T) {
	h := newHist()
	for v := int64(1); v <= 100000; v++ {
		h.add(v * 1000)
	}
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99} {
		want := q * 1e8
		if got := h.quantile(q); math.Abs(got-want)/want > 0.008 {
			t.Errorf("q%v = %v, want %v", q, got, want)
		}
	}
	for v := range int64(1 << 12) {
		lo, hi := histBounds(histIndex(v))
		if float64(v) < lo || float64(v) >= hi {
			t.Fatalf("%d outside bucket [%v, %v)", v, lo, hi)
		}
	}
	if i := histIndex(math.MaxInt64); i >= histBuckets {
		t.Fatalf("index %d of MaxInt64 out of range", i)
	}
}

func TestNoAllocs(t *testing.T) {
	p := New(Config{})
	step := int64(0)
	loop := func() {
		p.BeginStep(step)
		t := p.Start()
		t = p.End(Data, t)
		t = p.End(H2D, t)
		t = p.End(Dispatch, t)
		t = p.End(Device, t)
		p.Sync()
		p.End(Readback, t)
		if step%10 == 0 {
			p.Mark("eval")
		}
		p.EndStep(32, 3200)
		step++
	}
	for range 300 { // past warm-up and the detailed steps
		loop()
	}
	if n := testing.AllocsPerRun(2000, loop); n != 0 {
		t.Errorf("%v allocations per step", n)
	}
	if n := testing.AllocsPerRun(100, func() { runtime.GC(); loop() }); n != 0 {
		t.Errorf("%v allocations per step with a GC cycle", n)
	}
}

func BenchmarkStepOverhead(b *testing.B) {
	p := New(Config{})
	var step int64
	for b.Loop() {
		p.BeginStep(step)
		t := p.Start()
		t = p.End(Data, t)
		t = p.End(H2D, t)
		t = p.End(Dispatch, t)
		p.End(Device, t)
		p.EndStep(32, 3200)
		step++
	}
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(ns/1e6*100, "%of1ms")
}

func BenchmarkSpan(b *testing.B) {
	p := New(Config{})
	now := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.Span("prefetch", "batch", now, time.Millisecond)
		}
	})
}

// TestCommBound: a gradient all-reduce that takes 40% of the step on its
// own is a finding; one at 5% is reported but not flagged.
func TestCommBound(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		flag bool
	}{{400 * time.Microsecond, true}, {50 * time.Microsecond, false}} {
		clk := newClock()
		p := New(Config{Now: clk.Now})
		p.Collective("gradient all-reduce", 2, 218_000_000, c.d)
		simulate(p, clk, 100, func(int) phases { return phases{device: time.Millisecond} }, nil)
		r := p.Report()
		if len(r.Collectives) != 1 || r.Collectives[0].Devices != 2 || r.Collectives[0].Bytes != 218_000_000 {
			t.Fatalf("collectives %+v", r.Collectives)
		}
		if want := float64(c.d) / float64(time.Millisecond); math.Abs(r.Collectives[0].Share-want) > 0.01 {
			t.Errorf("share %v, want %v", r.Collectives[0].Share, want)
		}
		got := kinds(r)
		if c.flag != slices.Contains(got, "comm-bound") {
			t.Errorf("%v all-reduce: findings %v\n%s", c.d, got, r)
		}
		if c.flag {
			want := "comm-bound: the gradient all-reduce over 2 devices (218.0 MB each) takes 400.0 µs on its own, 40% of the p50 step"
			if msg := r.Findings[0].Message; !strings.HasPrefix(msg, want) {
				t.Errorf("message %q, want prefix %q", msg, want)
			}
		}
		if s := r.String(); !strings.Contains(s, "collective gradient all-reduce: 2 devices, 218.0 MB each") {
			t.Errorf("text report lacks the collective:\n%s", s)
		}
	}
}

// TestStraggler: probes of the devices (Recorder.Devices) give each
// device's median; one device 1.6× the median device's is a straggler
// finding that names it, even devices are not, and the steps that ran a
// probe (5 ms of Other each) are planned work, not slow steps.
func TestStraggler(t *testing.T) {
	names := []string{"gpu:0", "gpu:1", "gpu:2", "gpu:3"}
	for _, c := range []struct {
		slow time.Duration // device 2's share alone
		flag bool
	}{{1600 * time.Microsecond, true}, {1040 * time.Microsecond, false}} {
		clk := newClock()
		p := New(Config{Now: clk.Now})
		simulate(p, clk, 200, func(int) phases { return phases{device: 2 * time.Millisecond} }, func(i int) {
			if i%40 != 20 {
				return
			}
			t0 := p.Start()
			clk.Advance(5 * time.Millisecond)
			jitter := time.Duration(i/4) * time.Microsecond
			p.Devices(names, []time.Duration{time.Millisecond + jitter, time.Millisecond, c.slow, 990 * time.Microsecond})
			p.End(Other, t0)
		})
		r := p.Report()
		if len(r.Devices) != 4 || r.Devices[2].Device != "gpu:2" || r.Devices[2].Probes != 5 {
			t.Fatalf("devices %+v", r.Devices)
		}
		if got, want := r.Devices[2].Ms, float64(c.slow)/1e6; math.Abs(got-want) > 1e-9 {
			t.Errorf("gpu:2 median %v ms, want %v", got, want)
		}
		if got := r.Devices[0].MaxMs; math.Abs(got-1.045) > 1e-9 {
			t.Errorf("gpu:0 max %v ms, want 1.045 (the last probe's)", got)
		}
		if want := r.StepMs.P50 - max(1.025, float64(c.slow)/1e6); math.Abs(r.BeyondSlowestMs-want) > 1e-9 || want < 0.3 {
			t.Errorf("beyond the slowest %v ms, want %v", r.BeyondSlowestMs, want)
		}
		got := kinds(r)
		if c.flag != slices.Contains(got, "straggler") || slices.Contains(got, "slow-steps") {
			t.Errorf("gpu:2 at %v: findings %v\n%s", c.slow, got, r)
		}
		if c.flag {
			want := "straggler: gpu:2 takes 1.60 ms for its share of the step on its own, 1.60× the median device's 1.00 ms"
			if msg := r.Findings[0].Message; !strings.HasPrefix(msg, want) {
				t.Errorf("message %q, want prefix %q", msg, want)
			}
		}
		if s := r.String(); !strings.Contains(s, "gpu:2 ") || !strings.Contains(s, "beyond the slowest") {
			t.Errorf("text report lacks the devices:\n%s", s)
		}
	}
}

// TestPlannedSlowSteps: slow steps marked Planned (work the loop chose,
// such as compiling a device probe beside training) are listed with their
// kind but are not a slow-steps finding; the same steps unmarked are.
func TestPlannedSlowSteps(t *testing.T) {
	for _, planned := range []bool{true, false} {
		clk := newClock()
		p := New(Config{Now: clk.Now})
		simulate(p, clk, 200, func(i int) phases {
			if i >= 100 && i < 106 {
				return phases{device: 10 * time.Millisecond}
			}
			return phases{device: time.Millisecond}
		}, func(i int) {
			if planned && i >= 100 && i < 106 {
				p.Planned("probe-compile")
			}
		})
		r := p.Report()
		if r.SlowCount != 6 {
			t.Fatalf("planned %v: %d slow steps, want 6\n%s", planned, r.SlowCount, r)
		}
		s := r.SlowSteps[0]
		if s.Planned != planned || planned != slices.Contains(s.Coincident, "probe-compile") {
			t.Errorf("planned %v: slow step %+v", planned, s)
		}
		if got := slices.Contains(kinds(r), "slow-steps"); got == planned {
			t.Errorf("planned %v: slow-steps finding %v\n%s", planned, got, r)
		}
	}
}
