package infer

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// benchModels are the shapes the benchmarks report: a 64-256-256-1 MLP
// (window 4 × 16 features) and the gallop default 880-64-64-3 (20 × 44).
var benchModels = []struct {
	name    string
	w, f    int
	hidden  []int
	classes int
}{
	{"64-256-256-1", 4, 16, []int{256, 256}, 1},
	{"880-64-64-3", 20, 44, []int{64, 64}, 3},
}

// benchVariants returns the kernel sets to benchmark under name: the
// default one as name itself, and the scalar kernels as name-scalar where
// the default is SIMD.
func benchVariants(name string) map[string]bool {
	if hasSIMD() {
		return map[string]bool{name: true, name + "-scalar": false}
	}
	return map[string]bool{name: false}
}

// mlpVariants returns the MLP engines to benchmark under name: those of
// benchVariants, and int8 weights as name-int8.
func mlpVariants(name string) map[string]func(testing.TB, *Model) *MLP {
	v := map[string]func(testing.TB, *Model) *MLP{
		name: func(tb testing.TB, m *Model) *MLP { return mustNewMLP(tb, m, hasSIMD()) },
		name + "-int8": func(tb testing.TB, m *Model) *MLP {
			e, err := NewMLPWith(m, Options{Weights: WeightsInt8})
			if err != nil {
				tb.Fatal(err)
			}
			return e
		},
	}
	if hasSIMD() {
		v[name+"-scalar"] = func(tb testing.TB, m *Model) *MLP { return mustNewMLP(tb, m, false) }
	}
	return v
}

func BenchmarkMLPForward(b *testing.B) {
	for _, bm := range benchModels {
		for name, build := range mlpVariants(bm.name) {
			b.Run(name, func(b *testing.B) {
				r := rand.New(rand.NewPCG(1, 1))
				m := randomModel(r, bm.w, bm.f, bm.hidden, bm.classes)
				e := build(b, m)
				events := randomEvents(r, m, 64+bm.w)
				xs := make([][]float32, 64)
				for i := range xs {
					xs[i] = window(events, i+bm.w-1, bm.w)
				}
				logits := make([]float32, bm.classes)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					e.Forward(xs[i&63], logits)
					i++
				}
			})
		}
	}
}

// windowStream is the straightforward streaming alternative: keep the last
// Window raw events (each written twice, so the window is always one
// contiguous slice) and run Forward on every event.
type windowStream struct {
	e    *MLP
	buf  []float32
	next int
	n    int
}

func (s *windowStream) push(features, logits []float32) bool {
	w, f := s.e.window, s.e.nfeat
	copy(s.buf[s.next*f:], features)
	copy(s.buf[(s.next+w)*f:], features)
	s.next = (s.next + 1) % w
	s.n = min(s.n+1, w)
	if s.n < w {
		return false
	}
	s.e.Forward(s.buf[s.next*f:(s.next+w)*f], logits)
	return true
}

// BenchmarkStreamPush measures one event through a Stream: back to back
// (each Push also settles the previous event), with Settle outside the
// timing (the latency of an event arriving at an idle stream; reported as
// push-ns/op, clock reads included), and the straightforward alternative of
// Forward over a sliding window.
func BenchmarkStreamPush(b *testing.B) {
	for _, bm := range benchModels {
		for name, build := range mlpVariants(bm.name) {
			r := rand.New(rand.NewPCG(1, 1))
			m := randomModel(r, bm.w, bm.f, bm.hidden, bm.classes)
			e := build(b, m)
			events := randomEvents(r, m, 256)
			logits := make([]float32, bm.classes)
			b.Run(name+"/incremental", func(b *testing.B) {
				s := e.NewStream()
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					s.Push(events[i&255], logits)
					i++
				}
			})
			b.Run(name+"/incremental-settled", func(b *testing.B) {
				s := e.NewStream()
				b.ReportAllocs()
				var in time.Duration
				i := 0
				for b.Loop() {
					s.Settle()
					t := time.Now()
					s.Push(events[i&255], logits)
					in += time.Since(t)
					i++
				}
				b.ReportMetric(float64(in.Nanoseconds())/float64(b.N), "push-ns/op")
			})
			b.Run(name+"/window-forward", func(b *testing.B) {
				s := &windowStream{e: e, buf: make([]float32, 2*bm.w*bm.f)}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					s.push(events[i&255], logits)
					i++
				}
			})
		}
	}
}

func TestBench(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	m := randomModel(r, 20, 44, []int{64, 64}, 3)
	s := mustMLP(t, m).NewStream()
	res := Bench(s, randomEvents(r, m, 100), 2000)
	if res.Events != 2000 || res.P50 <= 0 || res.P50 > res.P99 || res.P99 > res.P999 || res.P999 > res.Max ||
		res.Mean <= 0 || res.EventsPerSec <= 0 || res.SettledP50 <= 0 || res.SettledP50 > res.SettledP99 || res.SettledP99 > res.SettledP999 {
		t.Errorf("implausible result %+v", res)
	}
	if res.AllocsPerEvent > 0.01 { // a GC cycle elsewhere in the process may count a few
		t.Errorf("%v allocs per event", res.AllocsPerEvent)
	}
	if str := res.String(); !strings.Contains(str, "p99.9") || !strings.Contains(str, "events/s") {
		t.Errorf("String() = %q", str)
	}
	if s.Ready() {
		t.Error("Bench left the stream warm; want it reset")
	}
	if (Bench(s, nil, 10) != BenchResult{}) || (Bench(s, [][]float32{m.Mean}, 0) != BenchResult{}) {
		t.Error("Bench with nothing to do returned a result")
	}
	t.Log(res)
}
