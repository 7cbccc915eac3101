package profile

import (
	"math"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
)

// runtimeSampler reads Go runtime statistics without allocating: the GC cycle
// count every step (about 50 ns), the GC pause histogram only when a cycle
// ended, and goroutines and RSS (/proc/self/statm, about 1.5 µs) every
// `every` steps.
type runtimeSampler struct {
	every  int64
	cycles []metrics.Sample
	pauses []metrics.Sample
	prev   []uint64
	last   uint64 // cycles at the previous read
	base   uint64 // cycles at New

	statm *os.File
	buf   [128]byte
	page  int64

	gc         int64
	pauseTotal int64
	pauseMax   int64
	rss        int64
	maxRSS     int64
	goroutines int64
	maxGor     int64
}

func (s *runtimeSampler) init(every int) {
	s.every = int64(every)
	if every <= 0 {
		return
	}
	s.cycles = []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	s.pauses = []metrics.Sample{{Name: "/sched/pauses/total/gc:seconds"}}
	metrics.Read(s.cycles)
	if s.cycles[0].Value.Kind() == metrics.KindUint64 {
		s.last = s.cycles[0].Value.Uint64()
		s.base = s.last
	} else {
		s.cycles = nil
	}
	metrics.Read(s.pauses)
	if s.pauses[0].Value.Kind() == metrics.KindFloat64Histogram {
		s.prev = slices.Clone(s.pauses[0].Value.Float64Histogram().Counts)
	} else {
		s.pauses = nil
	}
	if f, err := os.Open("/proc/self/statm"); err == nil {
		s.statm = f // closed by the os.File cleanup when the Recorder goes
		s.page = int64(os.Getpagesize())
	}
	s.sample()
}

// step is called at the end of step index idx; it returns the GC cycles that
// ended since the previous call and an estimate of their pause time.
func (s *runtimeSampler) step(idx int64) (cycles int32, pause int64) {
	if s.every <= 0 {
		return 0, 0
	}
	if idx%s.every == 0 {
		s.sample()
	}
	if s.cycles == nil {
		return 0, 0
	}
	metrics.Read(s.cycles)
	now := s.cycles[0].Value.Uint64()
	if now == s.last {
		return 0, 0
	}
	cycles = int32(now - s.last)
	s.last = now
	s.gc = int64(now - s.base)
	if s.pauses != nil {
		metrics.Read(s.pauses)
		h := s.pauses[0].Value.Float64Histogram()
		for i, c := range h.Counts {
			if i >= len(s.prev) || c == s.prev[i] {
				continue
			}
			d := c - s.prev[i]
			s.prev[i] = c
			lo, hi := h.Buckets[i], h.Buckets[i+1]
			v, top := (lo+hi)/2, hi
			switch {
			case math.IsInf(lo, -1):
				v = hi
			case math.IsInf(hi, 1):
				v, top = lo, lo
			}
			pause += int64(d) * int64(v*1e9)
			s.pauseMax = max(s.pauseMax, int64(top*1e9))
		}
		s.pauseTotal += pause
	}
	return cycles, pause
}

func (s *runtimeSampler) sample() {
	s.goroutines = int64(runtime.NumGoroutine())
	s.maxGor = max(s.maxGor, s.goroutines)
	if s.statm == nil {
		return
	}
	n, _ := s.statm.ReadAt(s.buf[:], 0)
	// Format: size resident shared text lib data dt (pages).
	b := s.buf[:n]
	i := 0
	for i < len(b) && b[i] != ' ' {
		i++
	}
	var pages int64
	for i++; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		pages = pages*10 + int64(b[i]-'0')
	}
	s.rss = pages * s.page
	s.maxRSS = max(s.maxRSS, s.rss)
}
