package train

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gallop-dev/gallop/internal/gocpu"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/model"
)

// stepBenchMLPs are the MLPs the step benchmarks time: the main job's
// (window 10 × 51 features, 128-64) and the issue tracker's 64-256-256, at
// batch 256.
var stepBenchMLPs = []struct {
	w, f   int
	hidden []int
	batch  int
}{
	{10, 51, []int{128, 64}, 256},
	{1, 64, []int{256, 256}, 256},
}

// BenchmarkStep times one compiled train step on the Go backend (CPU) for
// the main job's MLP and the 64-256-256 MLP of the issue tracker. Compare
// builds with and without GOEXPERIMENT=simd.
func BenchmarkStep(b *testing.B) {
	type bench struct {
		name  string
		m     model.Model
		w, f  int
		batch int
	}
	var cases []bench
	for _, c := range stepBenchMLPs {
		m, _ := model.NewMLP(c.w, c.f, c.hidden, 3)
		cases = append(cases, bench{fmt.Sprintf("mlp-%v-batch%d", m.Layers, c.batch), m, c.w, c.f, c.batch})
	}
	// The sequence models at the sizes of bench/gpu/baselines_seq.py's
	// PyTorch steps (window 100).
	dl, err := model.NewDeepLOB(100, feature.Names, 3, model.DeepLOBConfig{})
	if err != nil {
		b.Fatal(err)
	}
	gru, _ := model.NewGRU(100, len(feature.Names), 64, 3)
	tf, _ := model.NewTransformer(100, len(feature.Names), 3, model.TransformerConfig{})
	cases = append(cases,
		bench{"deeplob-batch64", dl, 100, len(feature.Names), 64},
		bench{"gru64-batch256", gru, 100, len(feature.Names), 256},
		bench{"transformer64x2-batch64", tf, 100, len(feature.Names), 64})
	for _, c := range cases {
		m := c.m
		b.Run(c.name, func(b *testing.B) {
			be, _ := gocpu.New()
			s := NewStepper(be, m, DefaultOptimizer())
			st := s.NewState(1)
			r := rand.New(rand.NewPCG(1, 2))
			n := c.w * c.f
			x := make([]float32, c.batch*n)
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			y := make([]int32, c.batch)
			for i := range y {
				y[i] = int32(r.IntN(3))
			}
			xt := tensors.FromFlatDataAndDimensions(x, c.batch, n)
			yt := tensors.FromFlatDataAndDimensions(y, c.batch)
			mean := tensors.FromFlatDataAndDimensions(make([]float32, c.f), c.f)
			ones := make([]float32, c.f)
			for i := range ones {
				ones[i] = 1
			}
			std := tensors.FromFlatDataAndDimensions(ones, c.f)
			for i := 0; i < 3; i++ { // compile and warm up
				s.Step(st, 1e-3, mean, std, xt, yt)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				out, err := s.Step(st, 1e-3, mean, std, xt, yt)
				if err != nil {
					b.Fatal(err)
				}
				out.Loss.Value()
			}
			b.ReportMetric(float64(c.batch)*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}
