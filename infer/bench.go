package infer

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"time"
)

// BenchResult summarises the per-event latency of Stream.Push.
type BenchResult struct {
	Events              int           // timed pushes
	P50, P99, P999      time.Duration // latency percentiles (nearest rank)
	Mean, Max           time.Duration
	EventsPerSec        float64 // timed pushes per second of the timed loop
	AllocsPerEvent      float64 // heap allocations per timed push
	ClockOverhead       time.Duration
	SettledP50          time.Duration // Push latency when Settle ran before it
	SettledP99          time.Duration
	SettledEventsPerSec float64
}

// String returns a one-line summary.
func (r BenchResult) String() string {
	return fmt.Sprintf("%d events: p50 %v  p99 %v  p99.9 %v  mean %v  max %v  %.0f events/s  %.2g allocs/event"+
		"  | settled: p50 %v  p99 %v  %.0f events/s  (clock %v/read, included)",
		r.Events, r.P50, r.P99, r.P999, r.Mean, r.Max, r.EventsPerSec, r.AllocsPerEvent,
		r.SettledP50, r.SettledP99, r.SettledEventsPerSec, r.ClockOverhead)
}

// Bench measures Stream.Push on s, cycling through inputs (each a raw feature
// vector) for n timed pushes after a warm-up, reading the clock around each
// push. It runs twice: back to back, where each Push also does the work
// owed by the previous one, and with Settle called (untimed) between pushes,
// which is the latency of an event that arrives while the stream is idle.
// Bench resets s before and after. It returns a zero BenchResult if n < 1 or
// inputs is empty.
func Bench(s *Stream, inputs [][]float32, n int) BenchResult {
	var r BenchResult
	if n < 1 || len(inputs) == 0 {
		return r
	}
	logits := make([]float32, s.m.NumClasses())
	lat := make([]time.Duration, n)
	warm := s.m.window + min(n, 10000)
	next := 0
	push := func() {
		s.Push(inputs[next], logits)
		next++
		if next == len(inputs) {
			next = 0
		}
	}

	// Back to back.
	s.Reset()
	for range warm {
		push()
	}
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	for i := range lat {
		t := time.Now()
		push()
		lat[i] = time.Since(t)
	}
	total := time.Since(start)
	runtime.ReadMemStats(&ms1)
	r.Events = n
	r.EventsPerSec = float64(n) / total.Seconds()
	r.AllocsPerEvent = float64(ms1.Mallocs-ms0.Mallocs) / float64(n)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	r.Mean = sum / time.Duration(n)
	slices.Sort(lat)
	r.P50, r.P99, r.P999, r.Max = rank(lat, 0.5), rank(lat, 0.99), rank(lat, 0.999), lat[n-1]

	// Settled between events.
	s.Reset()
	for range warm {
		push()
	}
	start = time.Now()
	for i := range lat {
		s.Settle()
		t := time.Now()
		push()
		lat[i] = time.Since(t)
	}
	total = time.Since(start)
	r.SettledEventsPerSec = float64(n) / total.Seconds()
	slices.Sort(lat)
	r.SettledP50, r.SettledP99 = rank(lat, 0.5), rank(lat, 0.99)
	s.Reset()

	// The cost of one clock read, which each latency above includes.
	for i := range lat[:min(n, 10000)] {
		t := time.Now()
		lat[i] = time.Since(t)
	}
	c := lat[:min(n, 10000)]
	slices.Sort(c)
	r.ClockOverhead = rank(c, 0.5)
	return r
}

// rank returns the p-quantile of sorted d by nearest rank.
func rank(d []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))]
}
