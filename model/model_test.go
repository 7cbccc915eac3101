package model_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/gallop-dev/gallop/internal/gocpu"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/model"
	"github.com/gallop-dev/gallop/train"
)

func newBackend(t testing.TB) compute.Backend {
	t.Helper()
	be, err := gocpu.New()
	if err != nil {
		t.Fatal(err)
	}
	return be
}

// tiny is a small instance of each model, fast enough for unit tests.
type tiny struct {
	name string
	m    model.Model
	w, f int
}

func tinyModels(t testing.TB) []tiny {
	t.Helper()
	dl, err := model.NewDeepLOB(12, feature.Names, 3, model.DeepLOBConfig{Conv: 6, Inception: 5, Hidden: 7})
	if err != nil {
		t.Fatal(err)
	}
	gru, err := model.NewGRU(8, 5, 12, 3)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := model.NewTransformer(8, 5, 3, model.TransformerConfig{D: 16, Heads: 2, Layers: 2})
	if err != nil {
		t.Fatal(err)
	}
	return []tiny{
		{"deeplob", dl, 12, feature.Count},
		{"gru", gru, 8, 5},
		{"transformer", tr, 8, 5},
	}
}

// batchData is a random batch: x [B, W*F] with per-feature offsets and
// scales, the matching mean and std, and labels y [B].
type batchData struct {
	x, mean, std []float64
	y            []int32
}

func randBatch(r *rand.Rand, b, w, f, classes int) batchData {
	d := batchData{x: make([]float64, b*w*f), mean: make([]float64, f), std: make([]float64, f), y: make([]int32, b)}
	for j := 0; j < f; j++ {
		d.mean[j] = r.NormFloat64()
		d.std[j] = 0.5 + r.Float64()
	}
	for i := range d.x {
		j := i % f
		d.x[i] = d.mean[j] + d.std[j]*r.NormFloat64()
	}
	for i := range d.y {
		d.y[i] = int32(r.IntN(classes))
	}
	return d
}

// f32 and f64 make tensors of the given dimensions from float64 values.
func f32(v []float64, dims ...int) *tensors.Tensor {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return tensors.FromFlatDataAndDimensions(out, dims...)
}

func f64(v []float64, dims ...int) *tensors.Tensor {
	return tensors.FromFlatDataAndDimensions(append([]float64(nil), v...), dims...)
}

func to64(ts []*tensors.Tensor) ([]*tensors.Tensor, [][]float64) {
	var out []*tensors.Tensor
	var vals [][]float64
	for _, t := range ts {
		v32 := tensors.MustCopyFlatData[float32](t)
		v := make([]float64, len(v32))
		for i, x := range v32 {
			v[i] = float64(x)
		}
		vals = append(vals, v)
		out = append(out, f64(v, t.Shape().Dimensions...))
	}
	return out, vals
}

func TestParamsMatchInit(t *testing.T) {
	for _, c := range tinyModels(t) {
		ps := c.m.Params()
		ts := c.m.Init(1)
		if len(ps) != len(ts) {
			t.Fatalf("%s: %d params, Init gave %d tensors", c.name, len(ps), len(ts))
		}
		seen := map[string]bool{}
		for i, p := range ps {
			if seen[p.Name] {
				t.Errorf("%s: duplicate param %q", c.name, p.Name)
			}
			seen[p.Name] = true
			if got := ts[i].Shape().Dimensions; fmt.Sprint(got) != fmt.Sprint(p.Shape) {
				t.Errorf("%s: %s: Init shape %v, Params %v", c.name, p.Name, got, p.Shape)
			}
		}
		if c.m.Arch() != c.name {
			t.Errorf("Arch() = %q, want %q", c.m.Arch(), c.name)
		}
	}
}

func TestInitDeterministic(t *testing.T) {
	for _, c := range tinyModels(t) {
		a, b, o := c.m.Init(7), c.m.Init(7), c.m.Init(8)
		differs := false
		for i := range a {
			va, vb, vo := tensors.MustCopyFlatData[float32](a[i]), tensors.MustCopyFlatData[float32](b[i]), tensors.MustCopyFlatData[float32](o[i])
			for j := range va {
				if va[j] != vb[j] {
					t.Fatalf("%s: Init(7) not deterministic at %s[%d]", c.name, c.m.Params()[i].Name, j)
				}
				if va[j] != vo[j] {
					differs = true
				}
				if math.IsNaN(float64(va[j])) || math.IsInf(float64(va[j]), 0) {
					t.Fatalf("%s: non-finite init at %s[%d]", c.name, c.m.Params()[i].Name, j)
				}
			}
		}
		if !differs {
			t.Errorf("%s: Init(7) == Init(8)", c.name)
		}
	}
}

func TestForwardShape(t *testing.T) {
	be := newBackend(t)
	r := rand.New(rand.NewPCG(1, 1))
	for _, c := range tinyModels(t) {
		const b = 5
		d := randBatch(r, b, c.w, c.f, 3)
		s := train.NewStepper(be, c.m, train.DefaultOptimizer())
		st := s.NewState(1)
		out, err := s.Predict(st, f32(d.mean, c.f), f32(d.std, c.f), f32(d.x, b, c.w*c.f))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := out.Shape().Dimensions; fmt.Sprint(got) != "[5 3]" {
			t.Errorf("%s: logits shape %v, want [5 3]", c.name, got)
		}
		for _, v := range tensors.MustCopyFlatData[float32](out) {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%s: non-finite logits", c.name)
			}
		}
		sm, ok := c.m.(model.SequenceModel)
		if !ok {
			continue
		}
		const tt = 6
		seg := make([]int32, b*tt)
		for i := range seg {
			seg[i] = int32(1 + i%tt/3)
		}
		got, err := CallOnce(be, func(in []*Node) *Node {
			ps := in[:len(in)-4]
			mean, std, x, seg := in[len(in)-4], in[len(in)-3], in[len(in)-2], in[len(in)-1]
			return sm.ForwardSeq(ps, mean, std, x, seg)
		}, append(anys(c.m.Init(1)), f32(d.mean, c.f), f32(d.std, c.f), f32(d.x[:b*tt*c.f], b, tt, c.f),
			tensors.FromFlatDataAndDimensions(seg, b, tt))...)
		if err != nil {
			t.Fatalf("%s: ForwardSeq: %v", c.name, err)
		}
		if dims := got.Shape().Dimensions; fmt.Sprint(dims) != "[5 6 3]" {
			t.Errorf("%s: ForwardSeq shape %v, want [5 6 3]", c.name, dims)
		}
	}
}

func anys(ts []*tensors.Tensor) []any {
	out := make([]any, len(ts))
	for i, t := range ts {
		out[i] = t
	}
	return out
}

// TestOverfit checks each model can memorise a small batch of random
// labels: the loss halves within 100 Adam steps.
func TestOverfit(t *testing.T) {
	be := newBackend(t)
	for _, c := range tinyModels(t) {
		r := rand.New(rand.NewPCG(2, 3))
		const b = 16
		d := randBatch(r, b, c.w, c.f, 3)
		mean, std := f32(d.mean, c.f), f32(d.std, c.f)
		x, y := f32(d.x, b, c.w*c.f), tensors.FromFlatDataAndDimensions(d.y, b)
		s := train.NewStepper(be, c.m, train.DefaultOptimizer())
		st := s.NewState(1)
		var first, last float32
		const steps = 100
		for i := 0; i < steps; i++ {
			out, err := s.Step(st, 1e-2, mean, std, x, y)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			l := out.Loss.Value().(float32)
			if i == 0 {
				first = l
			}
			last = l
		}
		t.Logf("%s: loss %.4f → %.4f in %d steps", c.name, first, last, steps)
		if !(last < first/2) {
			t.Errorf("%s: loss %.4f → %.4f, want below half", c.name, first, last)
		}
	}
}

// gradCheck compares Gradient with central finite differences in float64
// at a few random coordinates of every parameter.
func gradCheck(t *testing.T, m model.Model, w, f int) {
	t.Helper()
	be := newBackend(t)
	r := rand.New(rand.NewPCG(4, 5))
	const b = 3
	d := randBatch(r, b, w, f, 3)
	n := len(m.Params())
	params, vals := to64(m.Init(3))
	// Move off the zero biases and unit gains, so every path is exercised.
	for i, v := range vals {
		for j := range v {
			v[j] += 0.05 * r.NormFloat64()
		}
		params[i] = f64(v, params[i].Shape().Dimensions...)
	}
	rest := []any{f64(d.mean, f), f64(d.std, f), f64(d.x, b, w*f), tensors.FromFlatDataAndDimensions(d.y, b)}
	lossOf := func(in []*Node) *Node {
		return model.CrossEntropy(m.Forward(in[:n], in[n], in[n+1], in[n+2]), in[n+3])
	}
	lossExec := MustNewExec(be, lossOf)
	gradExec := MustNewExec(be, func(in []*Node) []*Node { return Gradient(lossOf(in), in[:n]...) })
	args := append(anys(params), rest...)
	grads, err := gradExec.Call(args...)
	if err != nil {
		t.Fatal(err)
	}
	loss := func() float64 {
		out, err := lossExec.Call1(args...)
		if err != nil {
			t.Fatal(err)
		}
		return out.Value().(float64)
	}
	const eps = 1e-6
	worst := 0.0
	for i, p := range m.Params() {
		g := tensors.MustCopyFlatData[float64](grads[i])
		v := vals[i]
		for k := 0; k < 3; k++ {
			j := r.IntN(len(v))
			orig := v[j]
			v[j] = orig + eps
			args[i] = f64(v, p.Shape...)
			lp := loss()
			v[j] = orig - eps
			args[i] = f64(v, p.Shape...)
			lm := loss()
			v[j] = orig
			args[i] = f64(v, p.Shape...)
			num := (lp - lm) / (2 * eps)
			diff := math.Abs(num - g[j])
			worst = max(worst, diff/max(1e-3, math.Abs(num)))
			if diff > 1e-6+1e-4*math.Abs(num) {
				t.Errorf("%s[%d]: gradient %.9g, finite difference %.9g", p.Name, j, g[j], num)
			}
		}
	}
	t.Logf("%s: worst relative gradient error %.2g over %d params", m.Arch(), worst, n)
}

func TestDeepLOBGradient(t *testing.T) {
	m, err := model.NewDeepLOB(6, feature.Names, 3, model.DeepLOBConfig{Conv: 3, Inception: 2, Hidden: 3})
	if err != nil {
		t.Fatal(err)
	}
	gradCheck(t, m, 6, feature.Count)
}

// seqSet is a set of variable-length sequences with a label per position.
type seqSet struct {
	f    int
	x    [][]float64 // per sequence, len·F
	y    [][]int32
	mean []float64
	std  []float64
}

func newSeqSet(r *rand.Rand, f int, lens []int) seqSet {
	s := seqSet{f: f, mean: make([]float64, f), std: make([]float64, f)}
	for j := 0; j < f; j++ {
		s.mean[j] = r.NormFloat64()
		s.std[j] = 0.5 + r.Float64()
	}
	for _, n := range lens {
		x := make([]float64, n*f)
		for i := range x {
			x[i] = s.mean[i%f] + s.std[i%f]*r.NormFloat64()
		}
		y := make([]int32, n)
		for i := range y {
			y[i] = int32(r.IntN(3))
		}
		s.x, s.y = append(s.x, x), append(s.y, y)
	}
	return s
}

// span is a run of a row: positions [from, to) of sequence seq, or to-from
// padding positions if seq < 0.
type span struct{ seq, from, to int }

// layout places the sequences in rows of t positions.
type layout struct {
	t    int
	rows [][]span
}

// arrange builds x [B, T, F], segments [B, T], labels [B, T], weights [B, T]
// (1 where a label counts) and, for each sequence, the flat positions it
// occupies. Sequences get ids 1, 2, ... in their row in order of appearance.
func (s seqSet) arrange(l layout) (x []float64, seg, y []int32, wt []float64, at [][]int) {
	b := len(l.rows)
	x = make([]float64, b*l.t*s.f)
	seg = make([]int32, b*l.t)
	y = make([]int32, b*l.t)
	wt = make([]float64, b*l.t)
	at = make([][]int, len(s.x))
	for i, row := range l.rows {
		p := 0
		ids := map[int]int32{}
		for _, sp := range row {
			if sp.seq < 0 {
				p += sp.to - sp.from
				continue
			}
			id, ok := ids[sp.seq]
			if !ok {
				id = int32(len(ids) + 1)
				ids[sp.seq] = id
			}
			for k := sp.from; k < sp.to; k++ {
				q := i*l.t + p
				copy(x[q*s.f:(q+1)*s.f], s.x[sp.seq][k*s.f:(k+1)*s.f])
				seg[q], y[q], wt[q] = id, s.y[sp.seq][k], 1
				at[sp.seq] = append(at[sp.seq], q)
				p++
			}
		}
		if p > l.t {
			panic("row too long")
		}
	}
	return
}

// seqLossAndGrads returns, for the layout, each sequence's summed loss and
// the gradients of the total loss over all labelled positions.
func seqLossAndGrads(t *testing.T, be compute.Backend, m model.SequenceModel, params []*tensors.Tensor, s seqSet, l layout) ([]float64, [][]float32) {
	t.Helper()
	x, seg, y, wt, at := s.arrange(l)
	b := len(l.rows)
	n := len(params)
	exec := MustNewExec(be, func(in []*Node) []*Node {
		ps := in[:n]
		mean, std, xs, segs, ys, ws := in[n], in[n+1], in[n+2], in[n+3], in[n+4], in[n+5]
		logits := m.ForwardSeq(ps, mean, std, xs, segs)
		ls := LogSoftmax(logits, -1)
		nll := Neg(ReduceSum(Mul(ls, OneHot(ys, logits.Shape().Dimensions[2], ls.DType())), -1)) // [B, T]
		nll = Mul(nll, ws)
		return append([]*Node{nll}, Gradient(ReduceAllSum(nll), ps...)...)
	})
	outs, err := exec.Call(append(anys(params), f32(s.mean, s.f), f32(s.std, s.f), f32(x, b, l.t, s.f),
		tensors.FromFlatDataAndDimensions(seg, b, l.t), tensors.FromFlatDataAndDimensions(y, b, l.t), f32(wt, b, l.t))...)
	if err != nil {
		t.Fatal(err)
	}
	nll := tensors.MustCopyFlatData[float32](outs[0])
	losses := make([]float64, len(at))
	for i, ps := range at {
		for _, q := range ps {
			losses[i] += float64(nll[q])
		}
	}
	var grads [][]float32
	for _, g := range outs[1:] {
		grads = append(grads, tensors.MustCopyFlatData[float32](g))
	}
	return losses, grads
}

// packingParity checks that variable-length sequences padded one per row
// and packed several per row (with padding between, inside and after them)
// give the same per-sequence losses and the same gradients within 1e-5.
func packingParity(t *testing.T, m model.SequenceModel, f int) {
	t.Helper()
	be := newBackend(t)
	r := rand.New(rand.NewPCG(6, 7))
	lens := []int{5, 3, 7, 2, 4, 6}
	s := newSeqSet(r, f, lens)
	padded := layout{t: 7}
	for i, n := range lens {
		padded.rows = append(padded.rows, []span{{i, 0, n}, {-1, n, 7}})
	}
	packed := layout{t: 10, rows: [][]span{
		{{0, 0, 5}, {-1, 0, 1}, {1, 0, 3}, {-1, 0, 1}}, // padding between and after
		{{2, 0, 4}, {-1, 0, 1}, {2, 4, 7}, {3, 0, 2}},  // padding inside sequence 2
		{{4, 0, 4}, {5, 0, 6}},                         // full row
	}}
	params := m.Init(9)
	lp, gp := seqLossAndGrads(t, be, m, params, s, padded)
	lk, gk := seqLossAndGrads(t, be, m, params, s, packed)
	worstL, worstG := 0.0, 0.0
	for i := range lp {
		worstL = max(worstL, math.Abs(lp[i]-lk[i]))
		if math.Abs(lp[i]-lk[i]) > 1e-5 {
			t.Errorf("sequence %d: loss padded %.8f, packed %.8f", i, lp[i], lk[i])
		}
	}
	names := m.Params()
	for i := range gp {
		for j := range gp[i] {
			d := math.Abs(float64(gp[i][j] - gk[i][j]))
			worstG = max(worstG, d)
			if d > 1e-5 {
				t.Errorf("%s[%d]: gradient padded %.8g, packed %.8g", names[i].Name, j, gp[i][j], gk[i][j])
				break
			}
		}
	}
	t.Logf("%s: %d sequences, losses %.4f…; max |Δloss| %.2g, max |Δgrad| %.2g over %d params",
		m.Arch(), len(lens), lp[0], worstL, worstG, model.Count(names))
}

// benchModels are the models at their reference sizes, batch 64.
func benchModels(b *testing.B) []tiny {
	dl, err := model.NewDeepLOB(100, feature.Names, 3, model.DeepLOBConfig{})
	if err != nil {
		b.Fatal(err)
	}
	gru, err := model.NewGRU(100, feature.Count, 64, 3)
	if err != nil {
		b.Fatal(err)
	}
	tr, err := model.NewTransformer(50, feature.Count, 3, model.TransformerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	return []tiny{
		{"deeplob-w100", dl, 100, feature.Count},
		{"gru64-w100", gru, 100, feature.Count},
		{"transformer-w50", tr, 50, feature.Count},
	}
}

// BenchmarkCompile times building and compiling the forward and gradient
// graph of each model (batch 64) on the Go backend: the compilation part of
// a train step's first call.
func BenchmarkCompile(b *testing.B) {
	be := newBackend(b)
	for _, c := range benchModels(b) {
		b.Run(c.name, func(b *testing.B) {
			n := len(c.m.Params())
			var sh []shapes.Shape
			for _, p := range c.m.Params() {
				sh = append(sh, shapes.Make(dtypes.Float32, p.Shape...))
			}
			sh = append(sh, shapes.Make(dtypes.Float32, c.f), shapes.Make(dtypes.Float32, c.f),
				shapes.Make(dtypes.Float32, 64, c.w*c.f), shapes.Make(dtypes.Int32, 64))
			nodes := 0
			for i := 0; i < b.N; i++ {
				e := MustNewExec(be, func(in []*Node) []*Node {
					loss := model.CrossEntropy(c.m.Forward(in[:n], in[n], in[n+1], in[n+2]), in[n+3])
					return append([]*Node{loss}, Gradient(loss, in[:n]...)...)
				})
				g, err := e.Compile(sh...)
				if err != nil {
					b.Fatal(err)
				}
				nodes = len(g.Nodes())
				e.Finalize()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/compile")
			b.ReportMetric(float64(nodes), "nodes")
		})
	}
}

// BenchmarkStep times one train step (train.Stepper.Step, Adam, batch 64)
// on the Go backend (CPU) for each model at its reference size, and
// reports the first step (compilation plus one step) as first-step-ms.
func BenchmarkStep(b *testing.B) {
	for _, c := range benchModels(b) {
		const batch = 64
		var (
			s     *train.Stepper
			st    *train.State
			first time.Duration
			args  []*tensors.Tensor
		)
		b.Run(fmt.Sprintf("%s-b%d", c.name, batch), func(b *testing.B) {
			if s == nil { // compile once across the benchmark's rounds
				be := newBackend(b)
				r := rand.New(rand.NewPCG(1, 2))
				d := randBatch(r, batch, c.w, c.f, 3)
				args = []*tensors.Tensor{f32(d.mean, c.f), f32(d.std, c.f), f32(d.x, batch, c.w*c.f), tensors.FromFlatDataAndDimensions(d.y, batch)}
				s = train.NewStepper(be, c.m, train.DefaultOptimizer())
				st = s.NewState(1)
				t0 := time.Now()
				out, err := s.Step(st, 1e-3, args[0], args[1], args[2], args[3])
				if err != nil {
					b.Fatal(err)
				}
				out.Loss.Value()
				first = time.Since(t0)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				out, err := s.Step(st, 1e-3, args[0], args[1], args[2], args[3])
				if err != nil {
					b.Fatal(err)
				}
				out.Loss.Value()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/step")
			b.ReportMetric(float64(first.Microseconds())/1e3, "first-step-ms")
			b.ReportMetric(float64(model.Count(c.m.Params())), "params")
		})
	}
}

// TestForwardSeqMatchesForward checks, for each SequenceModel, that a
// window run by ForwardSeq as one sequence gives at its last position the
// logits of Forward, and that no position sees a later one.
func TestForwardSeqMatchesForward(t *testing.T) {
	be := newBackend(t)
	r := rand.New(rand.NewPCG(8, 9))
	for _, c := range tinyModels(t) {
		sm, ok := c.m.(model.SequenceModel)
		if !ok {
			continue
		}
		const b = 4
		d := randBatch(r, b, c.w, c.f, 3)
		// x2 differs from x in the last event only.
		x2 := append([]float64(nil), d.x...)
		for i := 0; i < b; i++ {
			for j := 0; j < c.f; j++ {
				x2[(i*c.w+c.w-1)*c.f+j] += 1
			}
		}
		seg := make([]int32, b*c.w)
		for i := range seg {
			seg[i] = 1
		}
		params := c.m.Init(5)
		n := len(params)
		outs, err := CallOnceN(be, func(in []*Node) []*Node {
			ps, mean, std := in[:n], in[n], in[n+1]
			x, x2, segs := in[n+2], in[n+3], in[n+4]
			xs := Reshape(x, b, c.w, c.f)
			return []*Node{
				c.m.Forward(ps, mean, std, x),
				sm.ForwardSeq(ps, mean, std, xs, segs),
				sm.ForwardSeq(ps, mean, std, Reshape(x2, b, c.w, c.f), segs),
			}
		}, append(anys(params), f32(d.mean, c.f), f32(d.std, c.f), f32(d.x, b, c.w*c.f), f32(x2, b, c.w*c.f),
			tensors.FromFlatDataAndDimensions(seg, b, c.w))...)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		fw := tensors.MustCopyFlatData[float32](outs[0])
		sq := tensors.MustCopyFlatData[float32](outs[1])
		sq2 := tensors.MustCopyFlatData[float32](outs[2])
		const k = 3
		for i := 0; i < b; i++ {
			for j := 0; j < k; j++ {
				got, want := sq[(i*c.w+c.w-1)*k+j], fw[i*k+j]
				if math.Abs(float64(got-want)) > 1e-5 {
					t.Errorf("%s: row %d class %d: ForwardSeq %.7f, Forward %.7f", c.name, i, j, got, want)
				}
			}
			for p := 0; p < c.w; p++ {
				for j := 0; j < k; j++ {
					q := (i*c.w+p)*k + j
					if changed := sq[q] != sq2[q]; changed != (p == c.w-1) {
						t.Errorf("%s: row %d position %d: changed=%v after changing the last event", c.name, i, p, changed)
					}
				}
			}
		}
	}
}

// TestMLPOnColumns checks an MLP over some feature columns against the
// full-input MLP whose layer 0 is Dense0Full of its weights: the same
// logits, so exporting it that way serves the same function.
func TestMLPOnColumns(t *testing.T) {
	be := newBackend(t)
	r := rand.New(rand.NewPCG(4, 4))
	const w, f, b = 3, 7, 6
	idx := []int{5, 0, 2}
	sub, err := model.NewMLPOn(w, f, idx, []int{8}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if sub.Layers[0] != w*len(idx) {
		t.Fatalf("layers %v, want input %d", sub.Layers, w*len(idx))
	}
	full, _ := model.NewMLP(w, f, []int{8}, 3)
	ps := sub.Init(1)
	fps := append([]*tensors.Tensor(nil), ps...)
	w0 := tensors.MustCopyFlatData[float32](ps[0])
	fps[0] = tensors.FromFlatDataAndDimensions(sub.Dense0Full(w0), w*f, 8)
	d := randBatch(r, b, w, f, 3)
	forward := func(m model.Model, ps []*tensors.Tensor) []float32 {
		out, err := CallOnce(be, func(in []*Node) *Node {
			n := len(in)
			return m.Forward(in[:n-3], in[n-3], in[n-2], in[n-1])
		}, append(anys(ps), f32(d.mean, f), f32(d.std, f), f32(d.x, b, w*f))...)
		if err != nil {
			t.Fatal(err)
		}
		return tensors.MustCopyFlatData[float32](out)
	}
	got, want := forward(sub, ps), forward(full, fps)
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-5*max(1, math.Abs(float64(want[i]))) {
			t.Fatalf("logit %d: columns-only MLP %g, full MLP with Dense0Full %g", i, got[i], want[i])
		}
	}
	// Changing a column the MLP does not see changes nothing.
	for i := 0; i < len(d.x); i += f {
		d.x[i+1] += 100
	}
	again := forward(sub, ps)
	for i := range got {
		if again[i] != got[i] {
			t.Fatalf("logit %d moved from %g to %g with an unseen column", i, got[i], again[i])
		}
	}
	for _, bad := range [][]int{nil, {7}, {-1}} {
		if _, err := model.NewMLPOn(w, f, bad, []int{8}, 3); err == nil {
			t.Errorf("NewMLPOn(index %v): no error", bad)
		}
	}
}
