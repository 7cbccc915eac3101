package serve

import (
	"fmt"
	"math"
	"math/bits"
	"time"
)

// histSub is the number of sub-buckets per power of two: values are kept to
// within 1/histSub (1.6%); below 2·histSub ns they are exact.
const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	histBuckets = (64-histSubBits)*histSub + 2*histSub
)

// hist is a log-linear histogram of durations in ns, in constant memory.
type hist struct {
	counts [histBuckets]uint64
	n      uint64
	sum    float64
	max    int64
}

func (h *hist) record(v int64) {
	v = max(v, 0)
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += float64(v)
	h.max = max(h.max, v)
}

func bucketOf(v int64) int {
	if v < 2*histSub {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - histSubBits - 1 // v>>e is in [histSub, 2·histSub)
	return e*histSub + int(v>>e)
}

// bucketMid returns the middle of bucket b's value range.
func bucketMid(b int) int64 {
	if b < 2*histSub {
		return int64(b)
	}
	e := b/histSub - 1
	m := int64(b - e*histSub)
	return m<<e + (int64(1)<<e)/2
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile by nearest rank (within the bucket
// precision, never above the maximum).
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var c uint64
	for b, k := range h.counts {
		if c += k; c >= rank {
			return time.Duration(min(bucketMid(b), h.max))
		}
	}
	return time.Duration(h.max)
}

// Latency summarises a latency distribution.
type Latency struct {
	N                        uint64
	Mean                     time.Duration
	P50, P90, P99, P999, Max time.Duration
}

func (h *hist) latency() Latency {
	if h.n == 0 {
		return Latency{}
	}
	return Latency{
		N:    h.n,
		Mean: time.Duration(h.sum / float64(h.n)),
		P50:  h.quantile(0.5), P90: h.quantile(0.9), P99: h.quantile(0.99), P999: h.quantile(0.999),
		Max: time.Duration(h.max),
	}
}

func (l Latency) String() string {
	if l.N == 0 {
		return "none"
	}
	return fmt.Sprintf("p50 %v  p90 %v  p99 %v  p99.9 %v  max %v  (mean %v)",
		round(l.P50), round(l.P90), round(l.P99), round(l.P999), round(l.Max), round(l.Mean))
}

// round keeps three significant digits.
func round(d time.Duration) time.Duration {
	switch {
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d >= 100*time.Microsecond:
		return d.Round(time.Microsecond)
	case d >= 10*time.Microsecond:
		return d.Round(100 * time.Nanosecond)
	case d >= time.Microsecond:
		return d.Round(10 * time.Nanosecond)
	}
	return d
}
