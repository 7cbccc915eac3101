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
}
