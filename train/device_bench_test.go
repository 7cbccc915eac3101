package train

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/device"
	"github.com/gallop-dev/gallop/model"
)

// BenchmarkStepRowsDevice times StepRows on the backend named by
// $GALLOP_BENCH_DEVICE ("gpu", "cpu"; skipped when unset), with the dataset
// resident and the row ids staged on the device ahead, as gallop train
// does. It reports the step time in steady state (device-paced: N steps,
// then one read of the last loss) next to the host time spent inside each
// StepRows call and inside the Exec call alone, which tells a host-bound
// step (host time ≈ step time) from a device-bound one.
func BenchmarkStepRowsDevice(b *testing.B) {
	kind := os.Getenv("GALLOP_BENCH_DEVICE")
	if kind == "" {
		b.Skip("set GALLOP_BENCH_DEVICE=gpu (or cpu)")
	}
	be, info, err := device.Open(device.Spec{Kind: kind}, device.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("backend %s: %s", info.Backend, info.Desc)
	for _, c := range stepBenchMLPs {
		m, _ := model.NewMLP(c.w, c.f, c.hidden, 3)
		b.Run(fmt.Sprintf("mlp-%v-batch%d", m.Layers, c.batch), func(b *testing.B) {
			s := NewStepper(be, m, DefaultOptimizer())
			st := s.NewState(1)
			r := rand.New(rand.NewPCG(1, 2))
			const rows = 100_000
			feats := make([]float32, rows*c.f)
			for i := range feats {
				feats[i] = float32(r.NormFloat64())
			}
			labels := make([]int32, rows)
			for i := range labels {
				labels[i] = int32(r.IntN(3))
			}
			data, err := s.NewDeviceData(feats, labels, c.f, c.w)
			if err != nil {
				b.Fatal(err)
			}
			mean := tensors.FromFlatDataAndDimensions(make([]float32, c.f), c.f)
			std := tensors.FromFlatDataAndDimensions(slices.Repeat([]float32{1}, c.f), c.f)
			for _, t := range []*tensors.Tensor{mean, std} {
				if err := t.MaterializeOnDevice(be, false, 0); err != nil {
					b.Fatal(err)
				}
			}
			staged := make([]*tensors.Tensor, 64)
			for i := range staged {
				ids := make([]int32, c.batch)
				for j := range ids {
					ids[j] = int32(c.w - 1 + r.IntN(rows-c.w))
				}
				staged[i] = tensors.FromFlatDataAndDimensions(ids, c.batch)
				if err := staged[i].MaterializeOnDevice(be, false, 0); err != nil {
					b.Fatal(err)
				}
			}
			step := func(i int) StepOut {
				out, err := s.StepRows(st, 1e-3, mean, std, data, staged[i%len(staged)])
				if err != nil {
					b.Fatal(err)
				}
				return out
			}
			for i := range 20 { // compile, warm up
				step(i).Loss.Value()
			}
			var host time.Duration
			b.ResetTimer()
			var last StepOut
			for i := 0; b.Loop(); i++ {
				t := time.Now()
				last = step(i)
				host += time.Since(t)
			}
			last.Loss.Value()
			b.ReportMetric(float64(host.Microseconds())/float64(b.N), "host-µs/step")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/step")
		})
	}
}

// BenchmarkExecOverheadDevice times, on $GALLOP_BENCH_DEVICE, the pieces of
// a step that are not the model: one host-to-device copy of a 3-float
// tensor (the per-step hyperparameters), and one Exec of a trivial graph
// with k donated inputs and k+5 outputs (the shape of a 3-layer MLP's step:
// params, Adam moments, amp; loss and flags), device-paced.
func BenchmarkExecOverheadDevice(b *testing.B) {
	kind := os.Getenv("GALLOP_BENCH_DEVICE")
	if kind == "" {
		b.Skip("set GALLOP_BENCH_DEVICE=gpu (or cpu)")
	}
	be, _, err := device.Open(device.Spec{Kind: kind}, device.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("upload-3-floats", func(b *testing.B) {
		for b.Loop() {
			t := tensors.FromFlatDataAndDimensions([]float32{1, 2, 3}, 3)
			if err := t.MaterializeOnDevice(be, false, 0); err != nil {
				b.Fatal(err)
			}
			t.FinalizeAll()
		}
	})
	for _, k := range []int{1, 19} {
		b.Run("exec-trivial-"+strconv.Itoa(k)+"-donated", func(b *testing.B) {
			exec := MustNewExec(be, func(in []*Node) []*Node {
				out := make([]*Node, 0, len(in)+5)
				for _, x := range in {
					out = append(out, AddScalar(x, 1))
				}
				s := ReduceAllSum(in[0])
				return append(out, s, s, s, s, s)
			})
			state := make([]*tensors.Tensor, k)
			for i := range state {
				state[i] = tensors.FromFlatDataAndDimensions(make([]float32, 64*64), 64, 64)
			}
			run := func() []*tensors.Tensor {
				args := make([]any, k)
				for i, t := range state {
					d, err := DonateTensorBuffer(t, be, 0)
					if err != nil {
						b.Fatal(err)
					}
					args[i] = d
				}
				outs, err := exec.Call(args...)
				if err != nil {
					b.Fatal(err)
				}
				copy(state, outs[:k])
				return outs
			}
			for range 5 {
				run()[k].Value()
			}
			var last []*tensors.Tensor
			for b.Loop() {
				last = run()
			}
			last[k].Value()
		})
	}
}
