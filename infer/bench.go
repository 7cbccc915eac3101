package infer

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"time"
)

// BenchResult summarises the per-event latency of Stream.Push. Every
// latency includes one clock read (ClockOverhead).
type BenchResult struct {
	Events         int           // timed pushes
	P50, P99, P999 time.Duration // back-to-back latency percentiles (nearest rank)
	Mean, Max      time.Duration
	EventsPerSec   float64 // back-to-back pushes per second
	AllocsPerEvent float64 // heap allocations per push
	// Latency of a Push into a settled stream (Settle called, untimed,
	// since the previous Push): an event arriving while the stream is idle.
	SettledP50, SettledP99, SettledP999 time.Duration
	ClockOverhead                       time.Duration // median cost of one clock read
}

// String returns a one-line summary.
func (r BenchResult) String() string {
	return fmt.Sprintf("push: p50 %v p99 %v p99.9 %v mean %v max %v, %.0f events/s, %.3g allocs/event; "+
		"settled push: p50 %v p99 %v p99.9 %v; %d events, clock read %v included",
		r.P50, r.P99, r.P999, r.Mean, r.Max, r.EventsPerSec, r.AllocsPerEvent,
		r.SettledP50, r.SettledP99, r.SettledP999, r.Events, r.ClockOverhead)
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
	for i := range lat {
		s.Settle()
		t := time.Now()
		push()
		lat[i] = time.Since(t)
	}
	slices.Sort(lat)
	r.SettledP50, r.SettledP99, r.SettledP999 = rank(lat, 0.5), rank(lat, 0.99), rank(lat, 0.999)
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
