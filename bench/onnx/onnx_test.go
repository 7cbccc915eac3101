package main

import (
	"math/rand/v2"
	"os"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/gallop-dev/gallop/infer"
)

// TestONNXMatchesGallop runs the hand-encoded ONNX export through ONNX
// Runtime and checks its logits against gallop's Forward within 1e-5.
func TestONNXMatchesGallop(t *testing.T) {
	const lib = "lib/libonnxruntime.so.1"
	if _, err := os.Stat(lib); err != nil {
		t.Skipf("%s missing: run fetch.sh", lib)
	}
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(); err != nil {
		t.Fatal(err)
	}
	defer ort.DestroyEnvironment()
	r := rand.New(rand.NewPCG(1, 2))
	m := randomModel(r, 3, []string{"a", "b", "c", "d", "e"}, []int{20, 7}, []string{"x", "y"})
	for i := range m.Mean {
		m.Mean[i], m.Std[i] = float32(r.NormFloat64()), float32(0.2+r.Float64())
	}
	eng, err := infer.NewMLP(m)
	if err != nil {
		t.Fatal(err)
	}
	in, _ := ort.NewTensor(ort.NewShape(1, 15), make([]float32, 15))
	defer in.Destroy()
	out, _ := ort.NewEmptyTensor[float32](ort.NewShape(1, 2))
	defer out.Destroy()
	sess, err := ort.NewAdvancedSessionWithONNXData(onnxModel(m), []string{"x"}, []string{"logits"},
		[]ort.Value{in}, []ort.Value{out}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	want := make([]float32, 2)
	for range 100 {
		x := in.GetData()
		for i := range x {
			x[i] = float32(r.NormFloat64() * 3)
		}
		if err := sess.Run(); err != nil {
			t.Fatal(err)
		}
		eng.Forward(x, want)
		if e := relErr(out.GetData(), want); e > 1e-5 {
			t.Fatalf("onnx %v, gallop %v", out.GetData(), want)
		}
	}

	// The GRU step export, its state fed back, against gallop's carried
	// GRUStream.
	gm, events, err := gruCase(r)
	if err != nil {
		t.Fatal(err)
	}
	geng, err := infer.NewGRU(gm)
	if err != nil {
		t.Fatal(err)
	}
	st := geng.NewStream(infer.ModeCarried)
	f, h := len(gm.Features), gm.Hidden
	x, _ := ort.NewTensor(ort.NewShape(1, int64(f)), make([]float32, f))
	defer x.Destroy()
	h0, _ := ort.NewTensor(ort.NewShape(1, 1, int64(h)), make([]float32, h))
	defer h0.Destroy()
	lg, _ := ort.NewEmptyTensor[float32](ort.NewShape(1, 3))
	defer lg.Destroy()
	h1, _ := ort.NewEmptyTensor[float32](ort.NewShape(1, 1, int64(h)))
	defer h1.Destroy()
	gs, err := ort.NewAdvancedSessionWithONNXData(onnxGRU(gm), []string{"x", "h0"}, []string{"logits", "h"},
		[]ort.Value{x, h0}, []ort.Value{lg, h1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer gs.Destroy()
	got := make([]float32, 3)
	for k := range 500 {
		copy(x.GetData(), events[k])
		if err := gs.Run(); err != nil {
			t.Fatal(err)
		}
		copy(h0.GetData(), h1.GetData())
		st.Push(events[k], got)
		if e := relErr(lg.GetData(), got); e > 1e-5 {
			t.Fatalf("GRU event %d: onnx %v, gallop %v", k, lg.GetData(), got)
		}
	}
}
