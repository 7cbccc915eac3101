package profile

import (
	"bytes"
	"encoding/json"
	"math"
	"sync"
	"testing"
	"time"
)

// traceFile is the Chrome trace-event format.
type traceFile struct {
	TraceEvents     []traceEvent   `json:"traceEvents"`
	DisplayTimeUnit string         `json:"displayTimeUnit"`
	OtherData       map[string]any `json:"otherData"`
}

type traceEvent struct {
	Name string         `json:"name"`
	Cat  string         `json:"cat"`
	Ph   string         `json:"ph"`
	Ts   float64        `json:"ts"`
	Dur  *float64       `json:"dur"`
	Pid  int            `json:"pid"`
	Tid  int            `json:"tid"`
	Args map[string]any `json:"args"`
}

func parseTrace(t *testing.T, p *Recorder) (*traceFile, int) {
	t.Helper()
	var buf bytes.Buffer
	if err := p.WriteTrace(&buf); err != nil {
		t.Fatal(err)
	}
	var tf traceFile
	if err := json.Unmarshal(buf.Bytes(), &tf); err != nil {
		t.Fatalf("trace is not valid JSON: %v", err)
	}
	if tf.DisplayTimeUnit != "ms" || len(tf.TraceEvents) == 0 {
		t.Fatalf("displayTimeUnit %q, %d events", tf.DisplayTimeUnit, len(tf.TraceEvents))
	}
	for _, e := range tf.TraceEvents {
		switch e.Ph {
		case "X":
			if e.Dur == nil || *e.Dur < 0 || e.Ts < 0 {
				t.Fatalf("bad complete event %+v", e)
			}
		case "M", "i", "C":
		default:
			t.Fatalf("unexpected phase %q", e.Ph)
		}
		if e.Pid != 1 || e.Name == "" {
			t.Fatalf("bad event %+v", e)
		}
	}
	return &tf, buf.Len()
}

// phaseTotals returns the report's per-phase totals in µs.
func phaseTotals(r *Report) map[string]float64 {
	m := map[string]float64{}
	for _, s := range r.Phases {
		if s.Phase != "untracked" {
			m[s.Phase] = s.TotalMs * 1000
		}
	}
	return m
}

func checkSums(t *testing.T, what string, got, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		if math.Abs(got[k]-v) > 1 {
			t.Errorf("%s: %s sums to %.3f µs, recorder has %.3f µs", what, k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: phase %s not in the report", what, k)
		}
	}
}

// allTotals returns the recorder's per-phase totals over all steps, warm-up
// included, in µs.
func allTotals(p *Recorder) map[string]float64 {
	m := map[string]float64{}
	for ph := range Phase(numPhases) {
		if d := p.acc[0].phase[ph] + p.acc[1].phase[ph]; d > 0 {
			m[ph.String()] = float64(d) / 1000
		}
	}
	return m
}

// summaryTotals sums the per-phase totals of the summary events, in µs.
func summaryTotals(tf *traceFile) (map[string]float64, int64) {
	m := map[string]float64{}
	var steps int64
	for _, e := range tf.TraceEvents {
		if e.Cat != "summary" || e.Ph != "X" {
			continue
		}
		steps += int64(e.Args["steps"].(float64))
		for k, v := range e.Args["phase_ms"].(map[string]any) {
			m[k] += v.(float64) * 1000
		}
	}
	return m, steps
}

func TestTrace(t *testing.T) {
	clk := newClock()
	p := New(Config{Now: clk.Now, Warmup: -1})
	var wg sync.WaitGroup
	base := clk.Now()
	for w := range 4 {
		wg.Go(func() {
			for i := range 100 {
				p.Span("prefetch", "batch", base.Add(time.Duration(i*w)*time.Microsecond), 1500*time.Microsecond)
			}
		})
	}
	// Odd durations so that microsecond rounding would show.
	simulate(p, clk, 150, func(i int) phases {
		return phases{data: 123_457, h2d: 45_679, dispatch: 20_001, device: 1_000_003 + time.Duration(i), readback: 7_777, sync: i%10 == 0}
	}, func(i int) {
		if i == 5 {
			clk.Advance(30 * time.Millisecond)
			p.Compile(30*time.Millisecond, `graph "step"`)
		}
		if i == 90 {
			p.Mark("eval")
			t := p.Start()
			clk.Advance(5_000_001)
			p.End(Eval, t)
		}
	})
	wg.Wait()
	r := p.Report()
	tf, _ := parseTrace(t, p)

	threads := map[string]bool{}
	phaseSum := map[string]float64{}
	steps := map[int64]bool{}
	for _, e := range tf.TraceEvents {
		switch {
		case e.Ph == "M" && e.Name == "thread_name":
			threads[e.Args["name"].(string)] = true
		case e.Ph == "X" && e.Cat == "phase":
			phaseSum[e.Name] += *e.Dur
			if e.Name == "device" && e.Tid != tidDevice {
				t.Errorf("device span on track %d", e.Tid)
			}
		case e.Ph == "X" && e.Cat == "step":
			steps[int64(e.Args["step"].(float64))] = true
		case e.Ph == "i" && e.Cat == "compile":
			if e.Name != `graph "step"` || e.Args["step"].(float64) != 5 {
				t.Errorf("compile event %+v", e)
			}
		}
	}
	for _, name := range []string{"loop: steps", "loop: host", "device 0", "loop: compile", "loop: summary", "stage: prefetch"} {
		if !threads[name] {
			t.Errorf("no track %q in %v", name, threads)
		}
	}
	if len(steps) != 150 {
		t.Errorf("%d step events, want 150", len(steps))
	}
	checkSums(t, "phase events", phaseSum, phaseTotals(r))
	sum, n := summaryTotals(tf)
	if n != 150 {
		t.Errorf("summary covers %d steps", n)
	}
	checkSums(t, "summary", sum, phaseTotals(r))
	if len(r.Stages) != 1 || r.Stages[0].Spans != 400 || r.Stages[0].MeanMs != 1.5 {
		t.Errorf("stages %+v", r.Stages)
	}
}

// Steps after the first DetailSteps are detailed only around slow steps.
func TestTraceSlowWindows(t *testing.T) {
	clk := newClock()
	p := New(Config{Now: clk.Now})
	simulate(p, clk, 1000, func(int) phases { return phases{data: 50 * time.Microsecond, device: time.Millisecond} }, func(i int) {
		if i == 600 || i == 997 {
			p.Mark("checkpoint")
			clk.Advance(20 * time.Millisecond)
		}
	})
	tf, _ := parseTrace(t, p)
	var got []int64
	for _, e := range tf.TraceEvents {
		if e.Ph == "X" && e.Cat == "step" {
			got = append(got, int64(e.Args["step"].(float64)))
		}
	}
	var want []int64
	for i := range int64(1000) {
		if i < 200 || (i >= 595 && i <= 605) || i >= 992 {
			want = append(want, i)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("detailed steps %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("detailed steps %v, want %v", got, want)
		}
	}
	sum, n := summaryTotals(tf)
	if n != 1000 {
		t.Errorf("summary covers %d steps", n)
	}
	checkSums(t, "summary", sum, allTotals(p))
}

// A long run leaves a bounded trace and bounded recorder state.
func TestTraceBounded(t *testing.T) {
	const steps = 100_000
	const bound = 1 << 20
	clk := newClock()
	p := New(Config{Now: clk.Now})
	simulate(p, clk, steps, func(i int) phases {
		return phases{data: 30 * time.Microsecond, h2d: 40 * time.Microsecond, dispatch: 10 * time.Microsecond, device: 900 * time.Microsecond, readback: time.Microsecond, sync: i%100 == 0}
	}, func(i int) {
		if i%1000 == 500 {
			p.Mark("checkpoint")
			clk.Advance(10 * time.Millisecond)
		}
		if i%10 == 0 {
			p.Span("prefetch", "batch", clk.t, time.Millisecond)
		}
	})
	tf, size := parseTrace(t, p)
	t.Logf("trace of %d steps: %d bytes, %d events", steps, size, len(tf.TraceEvents))
	if size > bound {
		t.Errorf("trace of %d steps is %d bytes, bound %d", steps, size, bound)
	}
	if len(p.first) > p.cfg.DetailSteps || len(p.win) > p.cfg.SlowDetailSteps || len(p.tl.b) > p.cfg.Buckets || len(p.spans) > p.cfg.SpanCapacity {
		t.Errorf("state grew: %d first, %d window, %d buckets, %d spans", len(p.first), len(p.win), len(p.tl.b), len(p.spans))
	}
	r := p.Report()
	if r.SlowCount != steps/1000 || r.SlowBy["checkpoint"] != steps/1000 {
		t.Errorf("slow steps %d by %v", r.SlowCount, r.SlowBy)
	}
	sum, n := summaryTotals(tf)
	if n != steps {
		t.Errorf("summary covers %d steps", n)
	}
	want := allTotals(p)
	for k := range want {
		if math.Abs(sum[k]-want[k]) > 1e-6*want[k] { // float ms over 100k steps
			t.Errorf("summary %s %.3f µs, recorder %.3f µs", k, sum[k], want[k])
		}
	}
}
