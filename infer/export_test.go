package infer

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/internal/gocpu"
	"github.com/gallop-dev/gallop/model"
)

// seqCase is a model package model with the infer Spec fields that
// describe it.
type seqCase struct {
	name string
	mm   model.Model
	spec Spec
}

func names(prefix string, n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return s
}

func mlpCase(tb testing.TB, w, f int, hidden []int, classes int) seqCase {
	tb.Helper()
	mm, err := model.NewMLP(w, f, hidden, classes)
	if err != nil {
		tb.Fatal(err)
	}
	return seqCase{fmt.Sprint("mlp", mm.Layers), mm, Spec{
		Arch: ArchMLP, Window: w, Features: names("f", f), Classes: names("c", classes),
		Layers: mm.Layers, Activation: ActivationReLU,
	}}
}

func gruCase(tb testing.TB, w int, feats []string, hidden, classes int) seqCase {
	tb.Helper()
	mm, err := model.NewGRU(w, len(feats), hidden, classes)
	if err != nil {
		tb.Fatal(err)
	}
	return seqCase{fmt.Sprintf("gru-w%d-f%d-h%d", w, len(feats), mm.H), mm, Spec{
		Arch: ArchGRU, Window: w, Features: feats, Classes: names("c", classes), Hidden: mm.H,
	}}
}

func deeplobCase(tb testing.TB, w int, cfg model.DeepLOBConfig, classes int) seqCase {
	tb.Helper()
	mm, err := model.NewDeepLOB(w, feature.Names, classes, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return seqCase{fmt.Sprintf("deeplob-w%d-c%d-i%d-h%d", w, mm.Conv, mm.Inception, mm.Hidden), mm, Spec{
		Arch: ArchDeepLOB, Window: w, Features: feature.Names, Classes: names("c", classes),
		Hidden: mm.Hidden, Conv: mm.Conv, Inception: mm.Inception, BookIndex: mm.Index,
	}}
}

func transformerCase(tb testing.TB, w, f int, cfg model.TransformerConfig, classes int) seqCase {
	tb.Helper()
	mm, err := model.NewTransformer(w, f, classes, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return seqCase{fmt.Sprintf("transformer-w%d-f%d-d%d-l%d-h%d-ff%d", w, f, mm.D, mm.Layers, mm.Heads, mm.FF), mm, Spec{
		Arch: ArchTransformer, Window: w, Features: names("f", f), Classes: names("c", classes),
		DModel: mm.D, Heads: mm.Heads, Blocks: mm.Layers, FF: mm.FF,
	}}
}

// build returns c's model with the model package's initial weights for
// seed, every value then perturbed by N(0, 0.05²) so that biases and gains
// are not trivially 0 or 1, and random normalisation statistics.
func (c seqCase) build(tb testing.TB, seed uint64) *Model {
	tb.Helper()
	r := rand.New(rand.NewPCG(seed, 77))
	var ps []Param
	for i, t := range c.mm.Init(seed) {
		p := c.mm.Params()[i]
		data := tensors.MustCopyFlatData[float32](t)
		for j := range data {
			data[j] += float32(r.NormFloat64() * 0.05)
		}
		ps = append(ps, Param{Name: p.Name, Shape: p.Shape, Data: data})
	}
	f := len(c.spec.Features)
	mean, std := make([]float32, f), make([]float32, f)
	for i := range f {
		mean[i] = float32(r.NormFloat64() * 3)
		std[i] = float32(0.2 + r.Float64()*3)
	}
	m, err := FromParams(c.spec, mean, std, ps)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// gomlxArgs returns m's parameters, then mean and std, as GoMLX tensors.
func gomlxArgs(tb testing.TB, m *Model) []any {
	tb.Helper()
	ps, err := m.Params()
	if err != nil {
		tb.Fatal(err)
	}
	var args []any
	for _, p := range ps {
		args = append(args, tensors.FromFlatDataAndDimensions(p.Data, p.Shape...))
	}
	f := len(m.Features)
	return append(args, tensors.FromFlatDataAndDimensions(m.Mean, f), tensors.FromFlatDataAndDimensions(m.Std, f))
}

func seqBackendSkip(t testing.TB) {
	if raceEnabled {
		t.Skip("GoMLX's Go backend fails checkptr under -race")
	}
}

// gomlxWindows evaluates the model package's Forward, the training graph, on
// the windows of events ending at ends[i], in one batch on GoMLX's Go
// backend.
func gomlxWindows(tb testing.TB, mm model.Model, m *Model, events [][]float32, ends []int) [][]float32 {
	tb.Helper()
	w, f, b := m.Window, len(m.Features), len(ends)
	flat := make([]float32, 0, b*w*f)
	for _, e := range ends {
		flat = append(flat, window(events, e, w)...)
	}
	n := len(mm.Params())
	return gomlxLogits(tb, m, func(in []*graph.Node) *graph.Node {
		return mm.Forward(in[:n], in[n], in[n+1], in[n+2])
	}, tensors.FromFlatDataAndDimensions(flat, b, w*f))
}

// gomlxSeq evaluates the model package's ForwardSeq on events as one row
// with the given segment ids, returning the logits at every position.
func gomlxSeq(tb testing.TB, mm model.SequenceModel, m *Model, events [][]float32, segments []int32) [][]float32 {
	tb.Helper()
	t, f := len(events), len(m.Features)
	n := len(mm.Params())
	return gomlxLogits(tb, m, func(in []*graph.Node) *graph.Node {
		return mm.ForwardSeq(in[:n], in[n], in[n+1], in[n+2], in[n+3])
	}, tensors.FromFlatDataAndDimensions(slices.Concat(events...), 1, t, f),
		tensors.FromFlatDataAndDimensions(segments, 1, t))
}

// gomlxLogits runs fn once on GoMLX's Go backend over m's parameters, mean
// and std (gomlxArgs), then inputs, and returns its logits one row per
// sample or position.
func gomlxLogits(tb testing.TB, m *Model, fn func(in []*graph.Node) *graph.Node, inputs ...*tensors.Tensor) [][]float32 {
	tb.Helper()
	seqBackendSkip(tb)
	be, err := gocpu.New()
	if err != nil {
		tb.Fatal(err)
	}
	defer be.Finalize()
	args := gomlxArgs(tb, m)
	for _, t := range inputs {
		args = append(args, t)
	}
	out, err := graph.CallOnce(be, fn, args...)
	if err != nil {
		tb.Fatal(err)
	}
	return splitRows(tensors.MustCopyFlatData[float32](out), len(m.Classes))
}

func splitRows(flat []float32, c int) [][]float32 {
	rows := make([][]float32, len(flat)/c)
	for i := range rows {
		rows[i] = flat[i*c : (i+1)*c]
	}
	return rows
}

// streamParity pushes events through s and checks that every output equals
// want[i] (nil where the stream must not be ready yet) within 1e-5
// relative. settle, if not nil, says after which pushes to call Settle.
// It returns the worst relative error.
func streamParity(t *testing.T, s Streamer, events, want [][]float32, classes int, settle func(i int) bool) float64 {
	t.Helper()
	got := make([]float32, classes)
	var worst float64
	for i, ev := range events {
		if settle != nil && settle(i) {
			s.Settle()
		}
		ready := s.Push(ev, got)
		if ready != (want[i] != nil) || s.Ready() != ready {
			t.Fatalf("push %d: ready = %v, Ready() = %v, want %v", i, ready, s.Ready(), want[i] != nil)
		}
		if !ready {
			continue
		}
		err := relErr(got, want[i])
		worst = max(worst, err)
		if err > 1e-5 {
			t.Fatalf("push %d: stream %v, GoMLX %v (rel err %.3g)", i, got, want[i], err)
		}
	}
	return worst
}

// windowWant returns, for each of n events, the GoMLX Forward logits of the
// window ending with it, or nil before the first full window.
func windowWant(tb testing.TB, c seqCase, m *Model, events [][]float32) [][]float32 {
	tb.Helper()
	var ends []int
	for i := m.Window - 1; i < len(events); i++ {
		ends = append(ends, i)
	}
	out := gomlxWindows(tb, c.mm, m, events, ends)
	want := make([][]float32, len(events))
	for i, e := range ends {
		want[e] = out[i]
	}
	return want
}

// TestFromParamsMLP checks that an MLP built by FromParams from the model
// package's parameters streams model.MLP.Forward.
func TestFromParamsMLP(t *testing.T) {
	c := mlpCase(t, 5, 7, []int{16, 8}, 3)
	m := c.build(t, 1)
	events := seqEvents(rand.New(rand.NewPCG(1, 1)), m, 40)
	want := windowWant(t, c, m, events)
	s, err := NewStreamer(m, ModeWindow)
	if err != nil {
		t.Fatal(err)
	}
	streamParity(t, s, events, want, 3, nil)
}

func TestFromParamsSaveLoad(t *testing.T) {
	for _, c := range []seqCase{
		mlpCase(t, 3, 4, []int{5}, 2),
		gruCase(t, 5, names("f", 7), 6, 3),
		deeplobCase(t, 9, model.DeepLOBConfig{Conv: 4, Inception: 3, Hidden: 5}, 3),
		transformerCase(t, 6, 5, model.TransformerConfig{D: 8, Heads: 2, Layers: 2, FF: 12}, 3),
	} {
		t.Run(c.name, func(t *testing.T) {
			m := c.build(t, 1)
			// The parameter list is the model package's, name by name.
			ps, err := m.Params()
			if err != nil {
				t.Fatal(err)
			}
			mps := c.mm.Params()
			if len(ps) != len(mps) {
				t.Fatalf("%d params, model package has %d", len(ps), len(mps))
			}
			for i := range ps {
				if ps[i].Name != mps[i].Name || !slices.Equal(ps[i].Shape, mps[i].Shape) {
					t.Errorf("param %d: %s %v, model package %s %v", i, ps[i].Name, ps[i].Shape, mps[i].Name, mps[i].Shape)
				}
			}
			dir := filepath.Join(t.TempDir(), "export")
			if err := Save(dir, m); err != nil {
				t.Fatal(err)
			}
			got, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Spec, m.Spec) {
				t.Errorf("spec changed:\n got %+v\nwant %+v", got.Spec, m.Spec)
			}
			gps, _ := got.Params()
			for i := range ps {
				if !sameBits(gps[i].Data, ps[i].Data) {
					t.Errorf("%s changed", ps[i].Name)
				}
			}
			if !sameBits(got.Mean, m.Mean) || !sameBits(got.Std, m.Std) {
				t.Error("normalisation changed")
			}
			var js map[string]any
			b, _ := os.ReadFile(filepath.Join(dir, SpecFile))
			if err := json.Unmarshal(b, &js); err != nil {
				t.Fatal(err)
			}
			keys := map[string][]string{
				ArchMLP:         {"layers", "activation"},
				ArchGRU:         {"hidden"},
				ArchDeepLOB:     {"hidden", "conv", "inception", "book_index"},
				ArchTransformer: {"d_model", "heads", "blocks", "ff"},
			}[m.Arch]
			for _, k := range keys {
				if _, ok := js[k]; !ok {
					t.Errorf("model.json lacks %q", k)
				}
			}
			for _, k := range []string{"layers", "activation", "hidden", "conv", "inception", "book_index", "d_model", "heads", "blocks", "ff"} {
				if _, ok := js[k]; ok && !slices.Contains(keys, k) {
					t.Errorf("model.json of a %s has %q", m.Arch, k)
				}
			}
			// Load refuses a weights file of another shape.
			editSpec(t, dir, func(js map[string]any) {
				switch m.Arch {
				case ArchMLP:
					js["layers"] = []int{12, 6, 2}
				case ArchGRU, ArchDeepLOB:
					js["hidden"] = 9
				case ArchTransformer:
					js["ff"] = 9
				}
			})
			if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "has shape") {
				t.Errorf("Load with a changed size: %v", err)
			}
		})
	}
}

func TestFromParamsRefuses(t *testing.T) {
	c := gruCase(t, 5, names("f", 7), 6, 3)
	good := c.build(t, 2)
	params := func() []Param {
		ps, _ := good.Params()
		return slices.Clone(ps)
	}
	for _, tc := range []struct {
		name string
		spec func(*Spec)
		ps   func([]Param) []Param
		want string
	}{
		{"missing", nil, func(ps []Param) []Param { return ps[:5] }, "have 5 parameters, want 6"},
		{"renamed", nil, func(ps []Param) []Param { ps[1].Name = "gru.wr"; return ps }, `parameter 1 is "gru.wr", want "gru.wh"`},
		{"reshaped", nil, func(ps []Param) []Param { ps[0].Shape = []int{18, 7}; return ps }, "gru.wx has shape [18 7], want [7 18]"},
		{"short", nil, func(ps []Param) []Param { ps[2].Data = ps[2].Data[:3]; return ps }, "gru.bx has 3 values, want 18"},
		{"nan", nil, func(ps []Param) []Param {
			ps[3].Data = slices.Clone(ps[3].Data)
			ps[3].Data[4] = float32(math.NaN())
			return ps
		}, "gru.bh[4] = NaN is not finite"},
		{"no hidden", func(s *Spec) { s.Hidden = 0 }, nil, "gru: hidden = 0, must be positive"},
		{"unknown arch", func(s *Spec) { s.Arch = "lstm" }, nil, `arch "lstm" is not supported`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, ps := c.spec, params()
			if tc.spec != nil {
				tc.spec(&spec)
			}
			if tc.ps != nil {
				ps = tc.ps(ps)
			}
			_, err := FromParams(spec, good.Mean, good.Std, ps)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "infer: FromParams") {
				t.Errorf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
	// Spec checks of the other architectures.
	dl := deeplobCase(t, 9, model.DeepLOBConfig{Conv: 4, Inception: 3, Hidden: 5}, 3).spec
	dl.BookIndex = dl.BookIndex[:39]
	if err := dl.check(); err == nil || !strings.Contains(err.Error(), "book_index has 39 entries, want 40") {
		t.Errorf("short book_index: %v", err)
	}
	dl.BookIndex = append(slices.Clone(dl.BookIndex), 51)
	if err := dl.check(); err == nil || !strings.Contains(err.Error(), "book_index[39] = 51") {
		t.Errorf("book_index out of range: %v", err)
	}
	tr := transformerCase(t, 6, 5, model.TransformerConfig{D: 8, Heads: 2, Layers: 2, FF: 12}, 3).spec
	tr.Heads = 3
	if err := tr.check(); err == nil || !strings.Contains(err.Error(), "heads = 3 does not divide d_model = 8") {
		t.Errorf("heads: %v", err)
	}
}

func TestNewStreamer(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	mlp := randomModel(r, 2, 3, []int{4}, 2)
	gru := gruCase(t, 3, names("f", 3), 4, 2).build(t, 1)
	dl := deeplobCase(t, 5, model.DeepLOBConfig{Conv: 2, Inception: 2, Hidden: 2}, 2).build(t, 1)
	tr := transformerCase(t, 3, 3, model.TransformerConfig{D: 4, Heads: 2, Layers: 1, FF: 4}, 2).build(t, 1)
	for _, tc := range []struct {
		m    *Model
		mode Mode
		ok   bool
	}{
		{mlp, ModeWindow, true}, {mlp, ModeCarried, true}, {mlp, ModeSegment, false},
		{gru, ModeWindow, true}, {gru, ModeCarried, true}, {gru, ModeSegment, false},
		{dl, ModeWindow, true}, {dl, ModeCarried, true}, {dl, ModeSegment, false},
		{tr, ModeWindow, true}, {tr, ModeSegment, true}, {tr, ModeCarried, false},
	} {
		s, err := NewStreamer(tc.m, tc.mode)
		if (err == nil) != tc.ok {
			t.Errorf("%s %v: %v", tc.m.Arch, tc.mode, err)
			continue
		}
		if err != nil {
			if !strings.Contains(err.Error(), "has no "+tc.mode.String()+" mode") {
				t.Errorf("%s %v: error %v", tc.m.Arch, tc.mode, err)
			}
			continue
		}
		logits := make([]float32, 2)
		ev := tc.m.Mean
		for range tc.m.Window {
			s.Push(ev, logits)
		}
		if !s.Ready() {
			t.Errorf("%s %v: not ready after a window", tc.m.Arch, tc.mode)
		}
	}
}

// benchStreamer measures Push on s over events: back to back (ns/op; each
// Push also does the work the previous one left owed), with per-push
// percentiles p50-ns and p99-ns, and, as settled-p50-ns and settled-p99-ns,
// the latency of a Push into a settled stream (Settle called, untimed,
// before it: an event arriving while the stream is idle). Percentiles
// include one clock read (~20-40 ns).
func benchStreamer(b *testing.B, s Streamer, events [][]float32, classes int) {
	logits := make([]float32, classes)
	var lat [1 << 14]time.Duration
	pct := func(n int) (p50, p99 float64) {
		d := slices.Clone(lat[:min(n, len(lat))])
		slices.Sort(d)
		return float64(d[len(d)/2]), float64(d[len(d)*99/100])
	}
	s.Reset()
	for i := range 2 * len(events) { // warm: full windows, settled state
		s.Push(events[i%len(events)], logits)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		t := time.Now()
		s.Push(events[i%len(events)], logits)
		lat[i%len(lat)] = time.Since(t)
		i++
	}
	p50, p99 := pct(i)
	b.ReportMetric(p50, "p50-ns")
	b.ReportMetric(p99, "p99-ns")
	// Settled pushes: as many as the timed loop did, at most len(lat).
	n := min(i, len(lat))
	for j := range n {
		s.Settle()
		t := time.Now()
		s.Push(events[(i+j)%len(events)], logits)
		lat[j] = time.Since(t)
	}
	p50, p99 = pct(n)
	b.ReportMetric(p50, "settled-p50-ns")
	b.ReportMetric(p99, "settled-p99-ns")
}

// BenchmarkGoMLXWindow is the reference point for the streaming engines:
// the model package's Forward on the window ending with each event, one
// window per Exec call, on GoMLX's Go backend (the training graph run for
// inference).
func BenchmarkGoMLXWindow(b *testing.B) {
	for _, c := range []seqCase{
		gruCase(b, 100, names("f", 40), 64, 3),
		deeplobCase(b, 100, model.DeepLOBConfig{}, 3),
		transformerCase(b, 50, len(feature.Names), model.TransformerConfig{}, 3),
	} {
		b.Run(c.name, func(b *testing.B) {
			seqBackendSkip(b)
			m := c.build(b, 1)
			be, err := gocpu.New()
			if err != nil {
				b.Fatal(err)
			}
			defer be.Finalize()
			n := len(c.mm.Params())
			exec, err := graph.NewExec(be, func(in []*graph.Node) *graph.Node {
				return c.mm.Forward(in[:n], in[n], in[n+1], in[n+2])
			})
			if err != nil {
				b.Fatal(err)
			}
			events := seqEvents(rand.New(rand.NewPCG(1, 1)), m, 256)
			args := gomlxArgs(b, m)
			w, f := m.Window, len(m.Features)
			call := func(end int) {
				x := tensors.FromFlatDataAndDimensions(window(events, end, w), 1, w*f)
				out, err := exec.Call1(append(args, x)...)
				if err != nil {
					b.Fatal(err)
				}
				tensors.MustConstFlatData(out, func([]float32) {})
				out.FinalizeAll()
			}
			call(w - 1) // compile
			i := 0
			for b.Loop() {
				call(w - 1 + i%(len(events)-w+1))
				i++
			}
		})
	}
}

// TestStreams: one prepared engine makes independent streams (the same
// events give the same logits whatever the other streams saw), and int8
// weights are refused for an engine that has none.
func TestStreams(t *testing.T) {
	m := gruCase(t, 5, names("f", 4), 8, 3).build(t, 1)
	if _, err := Streams(m, ModeCarried, Options{Weights: WeightsInt8}); err == nil || !strings.Contains(err.Error(), "only MLP") {
		t.Errorf("int8 GRU: err %v", err)
	}
	newStream, err := Streams(m, ModeCarried, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, b := newStream(), newStream()
	r := rand.New(rand.NewPCG(3, 3))
	la, lb := make([]float32, 3), make([]float32, 3)
	for range 20 { // b sees other events first
		b.Push(randVec(r, 4), lb)
	}
	b.Reset()
	for range 10 {
		x := randVec(r, 4)
		a.Push(x, la)
		b.Push(x, lb)
		if !slices.Equal(la, lb) {
			t.Fatalf("streams of one engine disagree: %v vs %v", la, lb)
		}
	}
}
