package gocpu

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/gomlx/compute/dtypes/bfloat16"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// The Go backend's Slice and Transpose are gallop's (third_party/compute,
// stridedcopy.go): contiguous runs copied whole, transposes in tiles. These
// tests compare both, over random shapes, slices and permutations, with an
// element-by-element reference written here.

// refStrided returns the row-major array of dims whose element at index
// (i0..in) is src[base + Σ ik·strides[k]].
func refStrided[T any](src []T, base int, dims, strides []int) []T {
	n := 1
	for _, d := range dims {
		n *= d
	}
	out := make([]T, n)
	idx := make([]int, len(dims))
	for f := range out {
		at := base
		for k, i := range idx {
			at += i * strides[k]
		}
		out[f] = src[at]
		for k := len(dims) - 1; k >= 0; k-- {
			idx[k]++
			if idx[k] < dims[k] {
				break
			}
			idx[k] = 0
		}
	}
	return out
}

func rowMajorStrides(dims []int) []int {
	s := make([]int, len(dims))
	st := 1
	for k := len(dims) - 1; k >= 0; k-- {
		s[k] = st
		st *= dims[k]
	}
	return s
}

func randomDims(r *rand.Rand) []int {
	rank := 1 + r.IntN(5)
	dims := make([]int, rank)
	for k := range dims {
		switch r.IntN(4) {
		case 0:
			dims[k] = 1
		case 1:
			dims[k] = 2 + r.IntN(3)
		default:
			dims[k] = 1 + r.IntN(40)
		}
	}
	return dims
}

func TestSliceMatchesReference(t *testing.T) {
	be, err := New()
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for c := range 300 {
		dims := randomDims(r)
		n := 1
		for _, d := range dims {
			n *= d
		}
		src := make([]float32, n)
		for i := range src {
			src[i] = float32(i)
		}
		specs := make([]SliceAxisSpec, len(dims))
		outDims := make([]int, len(dims))
		strides := make([]int, len(dims))
		base := 0
		srcStrides := rowMajorStrides(dims)
		for k, d := range dims {
			start := r.IntN(d)
			end := start + 1 + r.IntN(d-start)
			step := 1
			if r.IntN(4) == 0 {
				step = 1 + r.IntN(3)
			}
			specs[k] = AxisRange(start, end).Stride(step)
			outDims[k] = (end - start + step - 1) / step
			strides[k] = step * srcStrides[k]
			base += start * srcStrides[k]
		}
		want := refStrided(src, base, outDims, strides)
		got, err := CallOnce(be, func(x *Node) *Node { return Slice(x, specs...) }, tensors.FromFlatDataAndDimensions(src, dims...))
		if err != nil {
			t.Fatalf("case %d dims %v: %v", c, dims, err)
		}
		if g := tensors.MustCopyFlatData[float32](got); !slices.Equal(g, want) {
			t.Fatalf("case %d: Slice of %v to %v (strides %v, base %d) differs from the reference", c, dims, outDims, strides, base)
		}
	}
}

func TestTransposeMatchesReference(t *testing.T) {
	be, err := New()
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	check := func(c int, dims, perm []int) {
		n := 1
		for _, d := range dims {
			n *= d
		}
		srcStrides := rowMajorStrides(dims)
		outDims := make([]int, len(dims))
		strides := make([]int, len(dims))
		for k, p := range perm {
			outDims[k] = dims[p]
			strides[k] = srcStrides[p]
		}
		name := fmt.Sprintf("case %d: Transpose of %v by %v", c, dims, perm)
		f32 := make([]float32, n)
		bf := make([]bfloat16.BFloat16, n)
		for i := range f32 {
			f32[i] = float32(i % 1000)
			bf[i] = bfloat16.FromFloat32(f32[i])
		}
		got, err := CallOnce(be, func(x *Node) *Node { return TransposeAllAxes(x, perm...) }, tensors.FromFlatDataAndDimensions(f32, dims...))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if g := tensors.MustCopyFlatData[float32](got); !slices.Equal(g, refStrided(f32, 0, outDims, strides)) {
			t.Fatalf("%s (float32) differs from the reference", name)
		}
		got, err = CallOnce(be, func(x *Node) *Node { return TransposeAllAxes(x, perm...) }, tensors.FromFlatDataAndDimensions(bf, dims...))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if g := tensors.MustCopyFlatData[bfloat16.BFloat16](got); !slices.Equal(g, refStrided(bf, 0, outDims, strides)) {
			t.Fatalf("%s (bfloat16) differs from the reference", name)
		}
	}
	// The layouts of DeepLOB's and the GRU's gradients, then random ones.
	check(-2, []int{64, 100, 64}, []int{1, 0, 2})
	check(-1, []int{6400, 48}, []int{1, 0})
	for c := range 300 {
		dims := randomDims(r)
		check(c, dims, r.Perm(len(dims)))
	}
}

// TestReduceSumMatchesReference: the sums are bit for bit those of adding
// the operand into the output in flat order, the order the backend's
// element-by-element loop used (random values, so another order would show).
func TestReduceSumMatchesReference(t *testing.T) {
	be, err := New()
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	for c := range 300 {
		dims := randomDims(r)
		var axes []int
		for k := range dims {
			if r.IntN(2) == 0 {
				axes = append(axes, k)
			}
		}
		if len(axes) == 0 {
			axes = []int{r.IntN(len(dims))}
		}
		n := 1
		for _, d := range dims {
			n *= d
		}
		src := make([]float32, n)
		for i := range src {
			src[i] = float32(r.NormFloat64())
		}
		// The reference: output index of each operand element in flat order.
		var outDims []int
		reduced := make([]bool, len(dims))
		for _, a := range axes {
			reduced[a] = true
		}
		for k, d := range dims {
			if !reduced[k] {
				outDims = append(outDims, d)
			}
		}
		outStrides := rowMajorStrides(outDims)
		m := 1
		for _, d := range outDims {
			m *= d
		}
		want := make([]float32, m)
		idx := make([]int, len(dims))
		for _, v := range src {
			o, j := 0, 0
			for k := range dims {
				if !reduced[k] {
					o += idx[k] * outStrides[j]
					j++
				}
			}
			want[o] += v
			for k := len(dims) - 1; k >= 0; k-- {
				idx[k]++
				if idx[k] < dims[k] {
					break
				}
				idx[k] = 0
			}
		}
		got, err := CallOnce(be, func(x *Node) *Node { return ReduceSum(x, axes...) }, tensors.FromFlatDataAndDimensions(src, dims...))
		if err != nil {
			t.Fatalf("case %d dims %v axes %v: %v", c, dims, axes, err)
		}
		if g := tensors.MustCopyFlatData[float32](got); !slices.Equal(g, want) {
			t.Fatalf("case %d: ReduceSum of %v over %v differs from the reference", c, dims, axes)
		}
	}
}

// TestParallelOpsDoNotDeadlock runs a graph of many independent matrix
// products with the backend executing operations concurrently
// ("ops_parallel"). Each product splits its work over the backend's
// workers while itself running on one; as published, those products
// waited for one another's workers forever (gallop's
// third_party/compute/internal/gobackend/workerspool fixes it). The graph
// runs many times; the test fails if it does not finish within a minute.
func TestParallelOpsDoNotDeadlock(t *testing.T) {
	be, err := newWith("ops_parallel")
	if err != nil {
		t.Fatal(err)
	}
	const n, products = 192, 24
	r := rand.New(rand.NewPCG(7, 8))
	x := make([]float32, n*n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	exec := MustNewExec(be, func(x *Node) *Node {
		var sum *Node
		for k := range products {
			// Independent products: x·(x+k), none waiting on another.
			p := MatMul(x, AddScalar(x, float64(k)))
			if sum == nil {
				sum = p
			} else {
				sum = Add(sum, p)
			}
		}
		return ReduceAllSum(sum)
	})
	in := tensors.FromFlatDataAndDimensions(x, n, n)
	done := make(chan error, 1)
	go func() {
		var first float32
		for i := range 40 {
			out, err := exec.Exec(in)
			if err != nil {
				done <- err
				return
			}
			v := tensors.MustCopyFlatData[float32](out[0])[0]
			if i == 0 {
				first = v
			} else if v != first {
				done <- fmt.Errorf("run %d: sum %v, first run %v", i, v, first)
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("40 runs of 24 independent products with ops_parallel did not finish within a minute: the backend's workers deadlocked")
	}
}
