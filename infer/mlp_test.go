package infer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gallop-dev/gallop/internal/gocpu"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/model"
)

// gomlxForward evaluates m on a batch of flattened raw windows with a GoMLX
// graph on the pure-Go backend: the training graph's arithmetic.
func gomlxForward(t *testing.T, m *Model, xs [][]float32) [][]float32 {
	t.Helper()
	if raceEnabled {
		t.Skip("GoMLX's Go backend fails checkptr under -race")
	}
	backend, err := gocpu.New()
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Finalize()
	w, f, batch := m.Window, len(m.Features), len(xs)
	flat := make([]float32, 0, batch*w*f)
	for _, x := range xs {
		flat = append(flat, x...)
	}
	out := graph.MustExecOnce(backend, func(x *graph.Node) *graph.Node {
		g := x.Graph()
		// Normalise per feature: view the input as [batch, window, features].
		x = graph.Reshape(x, batch, w, f)
		mean := graph.Reshape(graph.Const(g, m.Mean), 1, 1, f)
		std := graph.Reshape(graph.Const(g, m.Std), 1, 1, f)
		x = graph.Div(graph.Sub(x, mean), std)
		x = graph.Reshape(x, batch, w*f)
		for l := range m.W {
			in, o := m.Layers[l], m.Layers[l+1]
			wl := graph.ConstTensor(g, tensors.FromFlatDataAndDimensions(m.W[l], in, o))
			bl := graph.Reshape(graph.Const(g, m.B[l]), 1, o)
			x = graph.Add(graph.MatMul(x, wl), bl)
			if l < len(m.W)-1 {
				x = graph.Max(x, graph.ZerosLike(x))
			}
		}
		return x
	}, tensors.FromFlatDataAndDimensions(flat, batch, w*f))
	got := tensors.MustCopyFlatData[float32](out)
	c := len(m.Classes)
	res := make([][]float32, batch)
	for i := range res {
		res[i] = got[i*c : (i+1)*c]
	}
	return res
}

func TestParityWithGoMLX(t *testing.T) {
	for _, tc := range []struct {
		w, f    int
		hidden  []int
		classes int
	}{
		{20, 44, []int{64, 64}, 3}, // the gallop default, 880-64-64-3
		{4, 16, []int{256, 256}, 1},
		{3, 5, []int{7, 9}, 2}, // odd widths: remainders, dot-form layer 0
	} {
		r := rand.New(rand.NewPCG(1, uint64(tc.w)))
		m := randomModel(r, tc.w, tc.f, tc.hidden, tc.classes)
		name := fmt.Sprint(m.Layers)
		t.Run(name, func(t *testing.T) {
			const batch = 64
			events := randomEvents(r, m, batch+m.Window-1)
			xs := make([][]float32, batch)
			for i := range xs {
				xs[i] = window(events, i+m.Window-1, m.Window)
			}
			want := gomlxForward(t, m, xs)
			for kname, simd := range kernelVariants() {
				e := mustNewMLP(t, m, simd)
				s := e.NewStream()
				got := make([]float32, len(m.Classes))
				var worstF, worstS float64
				for i := range events {
					ready := s.Push(events[i], got)
					if ready != (i >= m.Window-1) {
						t.Fatalf("%s: push %d: ready = %v", kname, i, ready)
					}
					if !ready {
						continue
					}
					b := i - (m.Window - 1)
					err := relErr(got, want[b])
					worstS = max(worstS, err)
					if err > 1e-5 {
						t.Errorf("%s: window %d: Stream.Push %v, GoMLX %v (rel err %.2g)", kname, b, got, want[b], err)
					}
				}
				for b, x := range xs {
					e.Forward(x, got)
					err := relErr(got, want[b])
					worstF = max(worstF, err)
					if err > 1e-5 {
						t.Errorf("%s: window %d: Forward %v, GoMLX %v (rel err %.2g)", kname, b, got, want[b], err)
					}
					if err := relErr(got, refForward(m, x)); err > 1e-5 {
						t.Errorf("%s: window %d: Forward %v, float64 reference %v (rel err %.2g)", kname, b, got, refForward(m, x), err)
					}
				}
				t.Logf("%s: worst rel err vs GoMLX: Forward %.2g, Stream %.2g", kname, worstF, worstS)
			}
		})
	}
}

func TestStreamMatchesForward(t *testing.T) {
	for _, tc := range []struct {
		w, f    int
		hidden  []int
		classes int
	}{
		{20, 44, []int{64, 64}, 3},
		{1, 13, []int{16}, 3},    // window 1: nothing carried between events
		{5, 3, nil, 2},           // no hidden layer
		{7, 9, []int{5, 300}, 9}, // narrow layer 0, wide layer 1
	} {
		r := rand.New(rand.NewPCG(2, uint64(tc.f)))
		m := randomModel(r, tc.w, tc.f, tc.hidden, tc.classes)
		events := randomEvents(r, m, 500)
		for kname, simd := range kernelVariants() {
			t.Run(fmt.Sprint(m.Layers, kname), func(t *testing.T) {
				e := mustNewMLP(t, m, simd)
				s := e.NewStream()
				r := rand.New(rand.NewPCG(2, 2))
				got := make([]float32, tc.classes)
				want := make([]float32, tc.classes)
				var worst float64
				for i, ev := range events {
					if i == 250 { // a Reset starts a fresh window
						s.Reset()
					}
					if r.IntN(3) == 0 {
						s.Settle() // never changes results
					}
					start := 0
					if i >= 250 {
						start = 250
					}
					ready := s.Push(ev, got)
					if want := i-start >= m.Window-1; ready != want || s.Ready() != want {
						t.Fatalf("push %d: ready = %v, Ready() = %v, want %v", i, ready, s.Ready(), want)
					}
					if !ready {
						continue
					}
					e.Forward(window(events, i, m.Window), want)
					worst = max(worst, relErr(got, want))
					if err := relErr(got, want); err > 1e-5 {
						t.Fatalf("push %d: stream %v, forward %v (rel err %.2g)", i, got, want, err)
					}
				}
				t.Logf("worst rel err %.2g", worst)
			})
		}
	}
}

func TestNaNPropagates(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	m := randomModel(r, 3, 4, []int{64, 16}, 3)
	events := randomEvents(r, m, 3)
	events[1][1] = float32(math.NaN())
	x := window(events, 2, 3)
	logits := make([]float32, 3)
	for name, simd := range kernelVariants() {
		e := mustNewMLP(t, m, simd)
		e.Forward(x, logits)
		for _, v := range logits {
			if !math.IsNaN(float64(v)) {
				t.Fatalf("%s: Forward of a window with NaN gave logits %v", name, logits)
			}
		}
		s := e.NewStream()
		for _, ev := range events {
			s.Push(ev, logits)
		}
		for _, v := range logits {
			if !math.IsNaN(float64(v)) {
				t.Fatalf("%s: Push after a NaN gave logits %v", name, logits)
			}
		}
	}
}

func TestZeroAllocs(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	m := randomModel(r, 20, 44, []int{64, 64}, 3)
	for _, w := range []Weights{WeightsFloat32, WeightsInt8} {
		e, err := NewMLPWith(m, Options{Weights: w})
		if err != nil {
			t.Fatal(err)
		}
		events := randomEvents(r, m, 64)
		x := window(events, 19, 20)
		logits := make([]float32, 3)
		if a := testing.AllocsPerRun(200, func() { e.Forward(x, logits) }); a != 0 && !raceEnabled {
			t.Errorf("%s: Forward: %v allocs per run", w, a)
		}
		s := e.NewStream()
		i := 0
		if a := testing.AllocsPerRun(200, func() {
			s.Push(events[i%len(events)], logits)
			i++
		}); a != 0 {
			t.Errorf("%s: Stream.Push: %v allocs per run", w, a)
		}
	}
}

func TestPanicsOnWrongLengths(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	e := mustMLP(t, randomModel(r, 2, 3, []int{4}, 2))
	for name, fn := range map[string]func(){
		"Forward x":      func() { e.Forward(make([]float32, 5), make([]float32, 2)) },
		"Forward logits": func() { e.Forward(make([]float32, 6), make([]float32, 3)) },
		"Push features":  func() { e.NewStream().Push(make([]float32, 2), make([]float32, 2)) },
	} {
		func() {
			defer func() {
				if p := recover(); p == nil || !strings.Contains(fmt.Sprint(p), "want") {
					t.Errorf("%s: panic %v", name, p)
				}
			}()
			fn()
		}()
	}
}

func TestNewMLPValidates(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	m := randomModel(r, 2, 3, []int{4}, 2)
	m.Std[1] = 0
	if _, err := NewMLP(m); err == nil || !strings.Contains(err.Error(), `norm.std[1] (feature "f1")`) {
		t.Errorf("zero std: %v", err)
	}
	m = randomModel(r, 2, 3, []int{4}, 2)
	m.Arch = "gru"
	if _, err := NewMLP(m); err == nil || !strings.Contains(err.Error(), `"gru"`) {
		t.Errorf("gru: %v", err)
	}
	// NewMLP copies: changing the model afterwards changes nothing.
	m = randomModel(r, 2, 3, []int{4}, 2)
	e := mustMLP(t, m)
	x := window(randomEvents(r, m, 2), 1, 2)
	a, b := make([]float32, 2), make([]float32, 2)
	e.Forward(x, a)
	m.W[0][0] += 100
	m.Mean[0] += 100
	e.Forward(x, b)
	if a[0] != b[0] || a[1] != b[1] {
		t.Error("MLP shares memory with its Model")
	}
}

func TestForwardConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	m := randomModel(r, 20, 44, []int{64, 64}, 3)
	e := mustMLP(t, m)
	events := randomEvents(r, m, 40)
	want := make([][]float32, 20)
	for i := range want {
		want[i] = make([]float32, 3)
		e.Forward(window(events, i+19, 20), want[i])
	}
	done := make(chan error)
	for g := range 4 {
		go func() {
			got := make([]float32, 3)
			for k := range 200 {
				i := (k + g) % 20
				e.Forward(window(events, i+19, 20), got)
				if got[0] != want[i][0] || got[1] != want[i][1] || got[2] != want[i][2] {
					done <- fmt.Errorf("goroutine %d window %d: %v, want %v", g, i, got, want[i])
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// TestMLPCarriedParity: an MLP stream in ModeCarried yields, from the first
// event since Reset, model.MLP.ForwardSeq's logits over those events as one
// sequence (float32, both kernel sets, a Reset in the middle); in int8 it
// stays within int8Bound of them.
func TestMLPCarriedParity(t *testing.T) {
	c := mlpCase(t, 6, 5, []int{32, 16}, 3)
	m := c.build(t, 2)
	r := rand.New(rand.NewPCG(5, 6))
	events := seqEvents(r, m, 40)
	const cut = 17 // the stream is reset before this event
	sm := c.mm.(model.SequenceModel)
	want := append(gomlxSeq(t, sm, m, events[:cut], allOnes(cut)), gomlxSeq(t, sm, m, events[cut:], allOnes(len(events)-cut))...)
	for kname, simd := range kernelVariants() {
		e, err := newMLP(m, simd, Options{})
		if err != nil {
			t.Fatal(err)
		}
		s, err := e.NewStreamMode(ModeCarried)
		if err != nil {
			t.Fatal(err)
		}
		worst := streamParity(t, s, events[:cut], want[:cut], 3, nil)
		s.Reset()
		worst = max(worst, streamParity(t, s, events[cut:], want[cut:], 3, func(i int) bool { return i%2 == 0 }))
		t.Logf("%s: %d positions, worst rel err vs GoMLX ForwardSeq %.2g", kname, len(events), worst)
	}
	q8, err := NewMLPWith(m, Options{Weights: WeightsInt8})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := q8.NewStreamMode(ModeCarried)
	got := make([]float32, 3)
	for i, ev := range events[:cut] {
		if !s.Push(ev, got) {
			t.Fatalf("int8, push %d: not ready", i)
		}
		if e := relErr(got, want[i]); e > int8Bound {
			t.Fatalf("int8, push %d: %v, GoMLX %v (rel err %.3g)", i, got, want[i], e)
		}
	}
	if _, err := q8.NewStreamMode(ModeSegment); err == nil {
		t.Error("MLP stream in segment mode: no error")
	}
}
