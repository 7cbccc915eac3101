package gocpu

import (
	"math/rand/v2"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// BenchmarkOps times single operations of the Go backend at the shapes of
// DeepLOB's training step (batch 64, window 100, 20 levels, 32 channels),
// the ones gallop's copy of the backend changed. Run it against the
// published module too (go.mod without the compute replace, -modfile) to
// compare: BENCHMARKS.md, "gallop's copy of the Go backend".
func BenchmarkOps(b *testing.B) {
	be, err := New()
	if err != nil {
		b.Fatal(err)
	}
	const n, t, l, c = 64, 100, 20, 32
	for _, bc := range []struct {
		name string
		dims []int
		fn   func(x *Node) *Node
	}{
		{"slice-shifted-window", []int{n, t + 3, l, c}, func(x *Node) *Node { return Slice(x, AxisRange(), AxisRange(2, 2+t)) }},
		{"transpose-weight-grad", []int{n * t * l, c}, func(x *Node) *Node { return Transpose(x, 0, 1) }},
		{"reducesum-bias-grad", []int{n * t * l, c}, func(x *Node) *Node { return ReduceSum(x, 0) }},
		{"where-leaky-relu", []int{n, t, l, c}, func(x *Node) *Node {
			return Where(GreaterThan(x, ScalarZero(x.Graph(), x.DType())), ScalarOne(x.Graph(), x.DType()), Scalar(x.Graph(), x.DType(), 0.01))
		}},
		{"add-bias", []int{n * t * l, c}, func(x *Node) *Node {
			return Add(x, ExpandAxes(Iota(x.Graph(), shapes.Make(x.DType(), c), 0), 0))
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			x := tensors.FromShape(shapes.Make(dtypes.Float32, bc.dims...))
			r := rand.New(rand.NewPCG(1, 1))
			x.MutableFlatData(func(flat any) {
				for i := range flat.([]float32) {
					flat.([]float32)[i] = float32(r.NormFloat64()) // random signs, as activations
				}
			})
			exec := MustNewExec(be, bc.fn)
			exec.MustExec(x)[0].FinalizeAll() // compile
			b.SetBytes(int64(x.Shape().Memory()))
			for b.Loop() {
				exec.MustExec(x)[0].FinalizeAll()
			}
		})
	}
}
