package main

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/gomlx/gomlx/core/tensors"
	ort "github.com/yalue/onnxruntime_go"

	"github.com/gallop-dev/gallop/infer"
	"github.com/gallop-dev/gallop/model"
)

// ONNX export of a gallop GRU as one streaming step: inputs "x" [1, F] (one
// event's raw features) and "h0" [1, 1, H] (the carried state), outputs
// "logits" [1, C] and "h" [1, 1, H]:
//
//	x → Sub(mean) → Mul(1/std) → Reshape [1, 1, F] → GRU(h0) → h → Reshape [1, H] → MatMul → Add → logits
//
// ONNX's GRU with linear_before_reset = 1 is gallop's (and PyTorch's) cell;
// its gates are ordered z, r, h where gallop's are r, z, n, and its weights
// are [3H, F] where gallop's are [F, 3H].

const onnxInt64 = 7 // TensorProto.DataType INT64

func int64Tensor(name string, data ...int64) []byte {
	var t pb
	t = t.varint(1, uint64(len(data))).varint(2, onnxInt64).str(8, name)
	raw := make([]byte, 0, 8*len(data))
	for _, v := range data {
		raw = binary.LittleEndian.AppendUint64(raw, uint64(v))
	}
	return t.bytes(9, raw)
}

// intAttr is an AttributeProto{name, i, type INT}.
func intAttr(name string, v int64) []byte {
	return pb(nil).str(1, name).varint(3, uint64(v)).varint(20, 2)
}

// gateZRH reorders the [rows, 3H] matrix w (gates r, z, n in column
// blocks) into ONNX's [3H, rows] with gates z, r, h.
func gateZRH(w []float32, rows, h int) []float32 {
	out := make([]float32, 0, 3*h*rows)
	for _, g := range []int{1, 0, 2} { // z, r, n
		for j := range h {
			for i := range rows {
				out = append(out, w[i*3*h+g*h+j])
			}
		}
	}
	return out
}

func onnxGRU(m *infer.Model) []byte {
	f, h, c := len(m.Features), m.Hidden, len(m.Classes)
	p := map[string][]float32{}
	shapes, _ := m.ParamShapes()
	for i, s := range shapes {
		p[s.Name] = m.Weights[i]
	}
	inv := make([]float32, f)
	for i, s := range m.Std {
		inv[i] = 1 / s
	}
	bias := make([]float32, 0, 6*h)
	for _, b := range [][]float32{p["gru.bx"], p["gru.bh"]} {
		for _, g := range []int{1, 0, 2} {
			bias = append(bias, b[g*h:(g+1)*h]...)
		}
	}
	// GRU's outputs are Y (unused: "") and Y_h; its inputs X, W, R, B,
	// sequence_lens (absent: ""), initial_h.
	gru := pb(nil).str(1, "x3").str(1, "gru.W").str(1, "gru.R").str(1, "gru.B").str(1, "").str(1, "h0").
		str(2, "").str(2, "h").str(3, "gru").str(4, "GRU").
		bytes(5, intAttr("hidden_size", int64(h))).bytes(5, intAttr("linear_before_reset", 1))
	var g pb
	g = g.bytes(1, node("Sub", "norm_sub", "xc", "x", "norm.mean"))
	g = g.bytes(1, node("Mul", "norm_mul", "xn", "xc", "norm.inv_std"))
	g = g.bytes(1, node("Reshape", "to_seq", "x3", "xn", "shape.seq"))
	g = g.bytes(1, gru)
	g = g.bytes(1, node("Reshape", "to_row", "h2", "h", "shape.row"))
	g = g.bytes(1, node("MatMul", "out_mm", "o", "h2", "out.w"))
	g = g.bytes(1, node("Add", "out_add", "logits", "o", "out.b"))
	g = g.str(2, "gallop_gru_step")
	g = g.bytes(5, tensorProto("norm.mean", []int{f}, m.Mean))
	g = g.bytes(5, tensorProto("norm.inv_std", []int{f}, inv))
	g = g.bytes(5, int64Tensor("shape.seq", 1, 1, int64(f)))
	g = g.bytes(5, int64Tensor("shape.row", 1, int64(h)))
	g = g.bytes(5, tensorProto("gru.W", []int{1, 3 * h, f}, gateZRH(p["gru.wx"], f, h)))
	g = g.bytes(5, tensorProto("gru.R", []int{1, 3 * h, h}, gateZRH(p["gru.wh"], h, h)))
	g = g.bytes(5, tensorProto("gru.B", []int{1, 6 * h}, bias))
	g = g.bytes(5, tensorProto("out.w", []int{h, c}, p["out.w"]))
	g = g.bytes(5, tensorProto("out.b", []int{c}, p["out.b"]))
	g = g.bytes(11, valueInfo("x", 1, f))
	g = g.bytes(11, valueInfo("h0", 1, 1, h))
	g = g.bytes(12, valueInfo("logits", 1, c))
	g = g.bytes(12, valueInfo("h", 1, 1, h))

	var mp pb
	mp = mp.varint(1, 8).str(2, "gallop").bytes(7, g).bytes(8, pb(nil).str(1, "").varint(2, 14))
	return mp
}

// gruCase is GRU-64 over 40 features: model.GRU's initialisation with
// N(0, 0.05²) added to every weight (so biases are not all zero), normalised
// on random inputs.
func gruCase(r *rand.Rand) (*infer.Model, [][]float32, error) {
	const f, h, w = 40, 64, 100
	g, err := model.NewGRU(w, f, h, 3)
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, f)
	for i := range names {
		names[i] = fmt.Sprintf("f%d", i)
	}
	var ps []infer.Param
	for i, t := range g.Init(7) {
		v := tensorsFlat(t)
		for j := range v {
			v[j] += float32(r.NormFloat64() * 0.05)
		}
		ps = append(ps, infer.Param{Name: g.Params()[i].Name, Shape: g.Params()[i].Shape, Data: v})
	}
	mean, std := make([]float32, f), make([]float32, f)
	for i := range f {
		mean[i], std[i] = float32(r.NormFloat64()), float32(0.5+r.Float64())
	}
	spec := infer.Spec{Arch: infer.ArchGRU, Window: w, Features: names, Classes: []string{"down", "flat", "up"}, Hidden: h}
	m, err := infer.FromParams(spec, mean, std, ps)
	if err != nil {
		return nil, nil, err
	}
	ev := make([][]float32, 20_000)
	for i := range ev {
		ev[i] = make([]float32, f)
		for j := range ev[i] {
			ev[i][j] = mean[j] + std[j]*float32(r.NormFloat64())
		}
	}
	return m, ev, nil
}

// runGRU measures one event through GRU-64 in carried mode (one cell step
// per event, the state carried): gallop's GRUStream against ONNX Runtime
// running the exported step with the state fed back.
func runGRU(n, rounds int) ([]string, error) {
	const name = "GRU-64, 40 features, carried state (one step per event)"
	m, events, err := gruCase(rand.New(rand.NewPCG(2026, 40)))
	if err != nil {
		return nil, err
	}
	eng, err := infer.NewGRU(m)
	if err != nil {
		return nil, err
	}
	st := eng.NewStream(infer.ModeCarried)
	f, h, c := len(m.Features), m.Hidden, len(m.Classes)

	opts, err := sessionOptions()
	if err != nil {
		return nil, err
	}
	defer opts.Destroy()
	x, err := ort.NewTensor(ort.NewShape(1, int64(f)), make([]float32, f))
	if err != nil {
		return nil, err
	}
	defer x.Destroy()
	h0, err := ort.NewTensor(ort.NewShape(1, 1, int64(h)), make([]float32, h))
	if err != nil {
		return nil, err
	}
	defer h0.Destroy()
	logits, err := ort.NewEmptyTensor[float32](ort.NewShape(1, int64(c)))
	if err != nil {
		return nil, err
	}
	defer logits.Destroy()
	h1, err := ort.NewEmptyTensor[float32](ort.NewShape(1, 1, int64(h)))
	if err != nil {
		return nil, err
	}
	defer h1.Destroy()
	sess, err := ort.NewAdvancedSessionWithONNXData(onnxGRU(m), []string{"x", "h0"}, []string{"logits", "h"},
		[]ort.Value{x, h0}, []ort.Value{logits, h1}, opts)
	if err != nil {
		return nil, fmt.Errorf("onnx runtime session (GRU): %w", err)
	}
	defer sess.Destroy()
	xd, h0d, ld, h1d := x.GetData(), h0.GetData(), logits.GetData(), h1.GetData()
	ortPush := func(ev []float32) error {
		copy(xd, ev)
		if err := sess.Run(); err != nil {
			return err
		}
		copy(h0d, h1d) // the state carries to the next event
		return nil
	}

	// Outputs: both engines stream the same events from a zero state.
	got := make([]float32, c)
	var worst float64
	for k := range 2000 {
		if err := ortPush(events[k]); err != nil {
			return nil, err
		}
		st.Push(events[k], got)
		worst = max(worst, relErr(ld, got))
	}
	fmt.Printf("%s: model.GRU initialisation plus N(0, 0.05²), random inputs\n  outputs: ONNX Runtime vs gallop GRUStream (carried) max difference %.2g over 2000 events\n", name, worst)
	if worst > 1e-4 {
		return nil, fmt.Errorf("GRU outputs differ by %g", worst)
	}

	per := max(1, n/rounds)
	var latG, latO, latGS []time.Duration
	var runErr error
	k := 2000
	for range rounds {
		latG = append(latG, timeEach(per, &k, nil, func(k int) { st.Push(events[k%len(events)], got) })...)
		latO = append(latO, timeEach(per, &k, nil, func(k int) {
			if err := ortPush(events[k%len(events)]); err != nil {
				runErr = err
			}
		})...)
		latGS = append(latGS, timeEach(per, &k, st.Settle, func(k int) { st.Push(events[k%len(events)], got) })...)
	}
	if runErr != nil {
		return nil, runErr
	}
	sg, so, ss := summarize(latG), summarize(latO), summarize(latGS)
	fmt.Printf("  p50: ONNX Runtime %v, gallop back to back %v (%.1f× lower), settled %v (%.1f× lower)\n\n",
		so.p50, sg.p50, ratio(so.p50, sg.p50), ss.p50, ratio(so.p50, ss.p50))
	return []string{
		row(name, "ONNX Runtime "+ort.GetVersion()+" (CPU, 1 thread), state fed back", so, so),
		row(name, "gallop infer: GRUStream.Push, back to back", sg, so),
		row(name, "gallop infer: GRUStream.Push, settled", ss, so),
	}, nil
}

func tensorsFlat(t *tensors.Tensor) []float32 { return tensors.MustCopyFlatData[float32](t) }
