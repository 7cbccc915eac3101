package profile

import (
	"math/bits"
	"slices"
)

// hist is a log-linear histogram of non-negative durations in nanoseconds:
// exact below 128 ns, then 64 buckets per power of two, so a quantile read
// from it is within 0.8% of the true value. It takes 30 KiB whatever the
// number of values.
type hist struct {
	counts   []uint64
	n        uint64
	sum      float64
	min, max int64
}

const (
	histSub     = 64
	histBuckets = histSub + 57*histSub + histSub // indexes of values up to 1<<63
)

func newHist() hist { return hist{counts: make([]uint64, histBuckets)} }

func histIndex(v int64) int {
	if v < histSub {
		return int(max(v, 0))
	}
	shift := bits.Len64(uint64(v)) - 7
	return shift*histSub + int(uint64(v)>>shift)
}

// histBounds returns the half-open range [lo, hi) of bucket i.
func histBounds(i int) (lo, hi float64) {
	if i < 2*histSub {
		return float64(i), float64(i + 1)
	}
	shift := (i - histSub) / histSub
	top := i - shift*histSub
	return float64(uint64(top) << shift), float64(uint64(top+1) << shift)
}

func (h *hist) add(v int64) {
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if h.n == 0 || v > h.max {
		h.max = v
	}
	h.counts[histIndex(v)]++
	h.n++
	h.sum += float64(v)
}

func (h *hist) reset() {
	clear(h.counts)
	h.n, h.sum, h.min, h.max = 0, 0, 0, 0
}

// quantile returns the q-quantile (0 < q <= 1), in nanoseconds.
func (h *hist) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = min(max(rank, 1), h.n)
	var c uint64
	for i, k := range h.counts {
		c += k
		if c >= rank {
			lo, hi := histBounds(i)
			v := (lo + hi) / 2
			if hi-lo <= 1 {
				v = lo
			}
			return min(max(v, float64(h.min)), float64(h.max))
		}
	}
	return float64(h.max)
}

func (h *hist) mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// rolling holds the last len(ring) values in insertion order and sorted, for
// a rolling median and median absolute deviation.
type rolling struct {
	ring    []int64
	pos     int
	sorted  []int64
	scratch []int64
}

func newRolling(n int) rolling {
	return rolling{ring: make([]int64, n), sorted: make([]int64, 0, n), scratch: make([]int64, n)}
}

func (w *rolling) push(v int64) {
	if len(w.sorted) == len(w.ring) {
		i, _ := slices.BinarySearch(w.sorted, w.ring[w.pos])
		w.sorted = slices.Delete(w.sorted, i, i+1)
	}
	w.ring[w.pos] = v
	w.pos = (w.pos + 1) % len(w.ring)
	i, _ := slices.BinarySearch(w.sorted, v)
	w.sorted = slices.Insert(w.sorted, i, v)
}

func median(s []int64) int64 {
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func (w *rolling) median() int64 { return median(w.sorted) }

func (w *rolling) mad(med int64) int64 {
	d := w.scratch[:len(w.sorted)]
	for i, v := range w.sorted {
		d[i] = v - med
		if d[i] < 0 {
			d[i] = -d[i]
		}
	}
	slices.Sort(d)
	return median(d)
}

// bucket aggregates consecutive steps.
type bucket struct {
	firstStep, lastStep int64
	steps               int64
	start, end          Stamp
	wall                int64
	maxWall             int64
	phase               [numPhases]int64
	syncs               int64
	samples             int64
	events              int64
	gc                  int64
	compiles            int64
	slow                int64
	rss                 int64 // max sampled
	goroutines          int64 // max sampled
}

func (b *bucket) add(r *stepRec, wall, rss, goroutines int64) {
	if b.steps == 0 {
		b.firstStep, b.start = r.step, r.begin
	}
	b.lastStep, b.end = r.step, r.end
	b.steps++
	b.wall += wall
	b.maxWall = max(b.maxWall, wall)
	for i, d := range r.phase {
		b.phase[i] += d
	}
	b.syncs += int64(r.syncs)
	b.samples += r.samples
	b.events += r.events
	b.gc += int64(r.gc)
	b.compiles += int64(r.compiles)
	b.rss = max(b.rss, rss)
	b.goroutines = max(b.goroutines, goroutines)
}

// merge folds the following bucket o into b.
func (b *bucket) merge(o *bucket) {
	if o.steps == 0 {
		return
	}
	if b.steps == 0 {
		*b = *o
		return
	}
	b.lastStep, b.end = o.lastStep, o.end
	b.steps += o.steps
	b.wall += o.wall
	b.maxWall = max(b.maxWall, o.maxWall)
	for i := range b.phase {
		b.phase[i] += o.phase[i]
	}
	b.syncs += o.syncs
	b.samples += o.samples
	b.events += o.events
	b.gc += o.gc
	b.compiles += o.compiles
	b.slow += o.slow
	b.rss = max(b.rss, o.rss)
	b.goroutines = max(b.goroutines, o.goroutines)
}

// timeline folds a run of steps into at most cap(b) buckets of width steps
// each; when all are full, neighbours merge and the width doubles.
type timeline struct {
	b     []bucket
	width int64
}

func (t *timeline) add(r *stepRec, wall, rss, goroutines int64) {
	if len(t.b) == 0 || t.b[len(t.b)-1].steps >= t.width {
		if len(t.b) == cap(t.b) {
			half := len(t.b) / 2
			for i := range half {
				m := t.b[2*i]
				m.merge(&t.b[2*i+1])
				t.b[i] = m
			}
			t.b = t.b[:half]
			t.width *= 2
		}
		if len(t.b) == 0 || t.b[len(t.b)-1].steps >= t.width {
			t.b = append(t.b, bucket{})
		}
	}
	t.b[len(t.b)-1].add(r, wall, rss, goroutines)
}

func (t *timeline) last() *bucket { return &t.b[len(t.b)-1] }
