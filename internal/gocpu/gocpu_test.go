package gocpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/dtypes/bfloat16"
	"github.com/gomlx/compute/dtypes/gotype"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// These tests cover gallop's changes to the Go backend
// (third_party/compute/GALLOP.md): Slice, Transpose and ReduceSum by rows
// and tiles, Where without branches, broadcast arithmetic by rows, the
// weight gradient's layout, and the workers pool. Each compares the
// backend, over random shapes and parameters, with a reference written
// here, element by element (bit for bit) or in float64 (the products).

// refStrided returns the row-major array of dims whose element at index
// (i0..in) is src[base + Σ ik·strides[k]].
func refStrided[T any](src []T, base int, dims, strides []int) []T {
	n := prod(dims)
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
		n := prod(dims)
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
		n := prod(dims)
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
		n := prod(dims)
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
		want := make([]float32, prod(outDims))
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

// TestWhereMatchesReference covers the four cases of Where (each side a
// full array or a scalar) for 2-, 4- and 8-byte values, which gallop's
// backend selects on the values' bits, and for booleans.
func TestWhereMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	const n = 1000
	cond := make([]bool, n)
	f32a, f32b := make([]float32, n), make([]float32, n)
	f64a, f64b := make([]float64, n), make([]float64, n)
	bfa, bfb := make([]bfloat16.BFloat16, n), make([]bfloat16.BFloat16, n)
	ba, bb := make([]bool, n), make([]bool, n)
	for i := range n {
		cond[i] = r.IntN(2) == 0
		f32a[i], f32b[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
		f64a[i], f64b[i] = r.NormFloat64(), r.NormFloat64()
		bfa[i], bfb[i] = bfloat16.FromFloat32(f32a[i]), bfloat16.FromFloat32(f32b[i])
		ba[i], bb[i] = r.IntN(2) == 0, r.IntN(2) == 0
	}
	checkWhere(t, "float32", cond, f32a, f32b)
	checkWhere(t, "float64", cond, f64a, f64b)
	checkWhere(t, "bfloat16", cond, bfa, bfb)
	checkWhere(t, "bool", cond, ba, bb)
}

// checkWhere runs Where(cond, onTrue, onFalse) with each side either the
// whole array or one of its elements as a scalar (element 3 of onTrue,
// element 5 of onFalse) and compares every output element.
func checkWhere[T interface {
	comparable
	gotype.Supported
}](t *testing.T, name string, cond []bool, onTrue, onFalse []T) {
	t.Helper()
	be, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for _, scalar := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
		got, err := CallOnce(be, func(c, a, b *Node) *Node {
			if scalar[0] {
				a = Reshape(Slice(a, AxisElem(3)))
			}
			if scalar[1] {
				b = Reshape(Slice(b, AxisElem(5)))
			}
			return Where(c, a, b)
		}, tensors.FromValue(cond), tensors.FromFlatDataAndDimensions(onTrue, len(onTrue)), tensors.FromFlatDataAndDimensions(onFalse, len(onFalse)))
		if err != nil {
			t.Fatalf("%s, scalar sides %v: %v", name, scalar, err)
		}
		g := tensors.MustCopyFlatData[T](got)
		for i, c := range cond {
			want := onFalse[i]
			switch {
			case c && scalar[0]:
				want = onTrue[3]
			case c:
				want = onTrue[i]
			case scalar[1]:
				want = onFalse[5]
			}
			if g[i] != want {
				t.Fatalf("%s, scalar sides %v: element %d (condition %v) = %v, want %v", name, scalar, i, c, g[i], want)
			}
		}
	}
}

// TestBroadcastArithmeticMatchesReference: Add, Sub, Mul and Div of an
// array and a broadcast one, which gallop's backend runs row by row when
// the broadcast is a bias (leading axes of 1) or a per-row value (trailing
// axes of 1), and Max (still the backend's general path) as a control; both operand
// orders, random shapes and broadcast axes, compared bit for bit with an
// element-by-element reference.
func TestBroadcastArithmeticMatchesReference(t *testing.T) {
	be, err := New()
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(11, 12))
	ops := []struct {
		name string
		g    func(a, b *Node) *Node
		f    func(a, b float32) float32
	}{
		{"Add", Add, func(a, b float32) float32 { return a + b }},
		{"Sub", Sub, func(a, b float32) float32 { return a - b }},
		{"Mul", Mul, func(a, b float32) float32 { return a * b }},
		{"Div", Div, func(a, b float32) float32 { return a / b }},
		{"Max", Max, func(a, b float32) float32 { return max(a, b) }},
	}
	for c := range 300 {
		dims := randomDims(r)
		small := slices.Clone(dims)
		switch r.IntN(3) {
		case 0: // a bias: leading axes broadcast
			for k := range r.IntN(len(dims)) + 1 {
				small[k] = 1
			}
		case 1: // a value per row: trailing axes broadcast
			for k := len(dims) - 1 - r.IntN(len(dims)); k < len(dims); k++ {
				small[k] = 1
			}
		default: // any axes
			for k := range small {
				if r.IntN(2) == 0 {
					small[k] = 1
				}
			}
		}
		big := make([]float32, prod(dims))
		sm := make([]float32, prod(small))
		for i := range big {
			big[i] = float32(r.NormFloat64())
		}
		for i := range sm {
			sm[i] = float32(r.NormFloat64())
		}
		smallStrides := rowMajorStrides(small)
		for k := range small {
			if small[k] == 1 {
				smallStrides[k] = 0
			}
		}
		at := refStrided(sm, 0, dims, smallStrides) // sm broadcast to dims
		for _, op := range ops {
			for _, smallFirst := range []bool{false, true} {
				want := make([]float32, len(big))
				for i := range big {
					if smallFirst {
						want[i] = op.f(at[i], big[i])
					} else {
						want[i] = op.f(big[i], at[i])
					}
				}
				got, err := CallOnce(be, func(b, s *Node) *Node {
					s = BroadcastToDims(s, dims...)
					if smallFirst {
						return op.g(s, b)
					}
					return op.g(b, s)
				}, tensors.FromFlatDataAndDimensions(big, dims...), tensors.FromFlatDataAndDimensions(sm, small...))
				if err != nil {
					t.Fatalf("case %d: %s of %v and %v: %v", c, op.name, dims, small, err)
				}
				if g := tensors.MustCopyFlatData[float32](got); !slices.Equal(g, want) {
					t.Fatalf("case %d: %s of %v and %v (small first %v) differs from the reference", c, op.name, dims, small, smallFirst)
				}
			}
		}
	}
}

func prod(dims []int) int {
	n := 1
	for _, d := range dims {
		n *= d
	}
	return n
}

// TestDotGeneralLayouts: products whose operands the backend must rearrange
// before its kernels run, among them a weight gradient (both operands
// contracted over their first axis), which gallop's backend now hands to
// the kernel with the right operand as it is instead of transposing it;
// compared with a float64 reference.
func TestDotGeneralLayouts(t *testing.T) {
	be, err := New()
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(13, 14))
	for _, c := range []struct {
		name                     string
		lhsDims, rhsDims         []int
		lhsContract, rhsContract []int
		lhsBatch, rhsBatch       []int
	}{
		{"weight gradient", []int{300, 24}, []int{300, 40}, []int{0}, []int{0}, nil, nil},
		{"small weight gradient", []int{7, 3}, []int{7, 5}, []int{0}, []int{0}, nil, nil},
		{"batched, contracting first", []int{4, 50, 6}, []int{4, 50, 9}, []int{1}, []int{1}, []int{0}, []int{0}},
		{"two contracting axes", []int{5, 8, 6}, []int{5, 8, 7}, []int{0, 1}, []int{0, 1}, nil, nil},
		{"rhs transposed order", []int{20, 30}, []int{30, 20}, []int{0}, []int{1}, nil, nil},
		{"lhs contracting last, rhs first", []int{33, 17}, []int{17, 65}, []int{1}, []int{0}, nil, nil},
	} {
		lhs := make([]float32, prod(c.lhsDims))
		rhs := make([]float32, prod(c.rhsDims))
		for i := range lhs {
			lhs[i] = float32(r.NormFloat64())
		}
		for i := range rhs {
			rhs[i] = float32(r.NormFloat64())
		}
		got, err := CallOnce(be, func(a, b *Node) *Node {
			return DotGeneral(a, c.lhsContract, c.lhsBatch, b, c.rhsContract, c.rhsBatch)
		}, tensors.FromFlatDataAndDimensions(lhs, c.lhsDims...), tensors.FromFlatDataAndDimensions(rhs, c.rhsDims...))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		want := refDotGeneral(lhs, rhs, c.lhsDims, c.rhsDims, c.lhsContract, c.rhsContract, c.lhsBatch, c.rhsBatch)
		g := tensors.MustCopyFlatData[float32](got)
		if len(g) != len(want) {
			t.Fatalf("%s: %d outputs, want %d", c.name, len(g), len(want))
		}
		for i := range g {
			if d := float64(g[i]) - want[i]; d > 1e-4*(1+abs(want[i])) || -d > 1e-4*(1+abs(want[i])) {
				t.Fatalf("%s: output %d = %v, want %v", c.name, i, g[i], want[i])
			}
		}
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// refDotGeneral is DotGeneral in float64, element by element: output axes
// are the batch axes, then lhs's free axes, then rhs's free axes.
func refDotGeneral(lhs, rhs []float32, ld, rd, lc, rc, lb, rb []int) []float64 {
	free := func(dims, contract, batch []int) []int {
		var f []int
		for k := range dims {
			if !slices.Contains(contract, k) && !slices.Contains(batch, k) {
				f = append(f, k)
			}
		}
		return f
	}
	lf, rf := free(ld, lc, lb), free(rd, rc, rb)
	var outDims, contractDims []int
	for _, k := range lb {
		outDims = append(outDims, ld[k])
	}
	for _, k := range lf {
		outDims = append(outDims, ld[k])
	}
	for _, k := range rf {
		outDims = append(outDims, rd[k])
	}
	for _, k := range lc {
		contractDims = append(contractDims, ld[k])
	}
	ls, rs := rowMajorStrides(ld), rowMajorStrides(rd)
	out := make([]float64, prod(outDims))
	oi := make([]int, len(outDims))
	ci := make([]int, len(contractDims))
	next := func(idx, dims []int) bool {
		for k := len(dims) - 1; k >= 0; k-- {
			idx[k]++
			if idx[k] < dims[k] {
				return true
			}
			idx[k] = 0
		}
		return false
	}
	for o := range out {
		base, rbase := 0, 0
		j := 0
		for n := range lb {
			base += oi[j] * ls[lb[n]]
			rbase += oi[j] * rs[rb[n]]
			j++
		}
		for _, k := range lf {
			base += oi[j] * ls[k]
			j++
		}
		for _, k := range rf {
			rbase += oi[j] * rs[k]
			j++
		}
		var sum float64
		for {
			a, b := base, rbase
			for n := range lc {
				a += ci[n] * ls[lc[n]]
				b += ci[n] * rs[rc[n]]
			}
			sum += float64(lhs[a]) * float64(rhs[b])
			if !next(ci, contractDims) {
				break
			}
		}
		out[o] = sum
		next(oi, outDims)
	}
	return out
}

// TestTranscendentalsInChunks: Exp, Erf, Logistic and Tanh of arrays large
// enough for gallop's backend to split over its workers give, element by
// element, the backend's single-element formulas (float64 math, rounded).
func TestTranscendentalsInChunks(t *testing.T) {
	be, err := New()
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(15, 16))
	const n = 50_001 // several chunks and a short last one
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * 4)
	}
	for _, c := range []struct {
		name string
		g    func(*Node) *Node
		f    func(float64) float64
	}{
		{"Exp", Exp, math.Exp},
		{"Erf", Erf, math.Erf},
		{"Tanh", Tanh, math.Tanh},
		{"Logistic", Logistic, func(v float64) float64 {
			if v >= 0 {
				return 1 / (1 + math.Exp(-v))
			}
			e := math.Exp(v)
			return e / (1 + e)
		}},
	} {
		got, err := CallOnce(be, c.g, tensors.FromFlatDataAndDimensions(x, n))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for i, g := range tensors.MustCopyFlatData[float32](got) {
			if want := float32(c.f(float64(x[i]))); g != want {
				t.Fatalf("%s: element %d of %d = %v, want %v", c.name, i, n, g, want)
			}
		}
	}
}

// TestIdentityTransposeIsNoOp: a transpose whose permutation is the
// identity builds no node (the operand is its result), so it copies
// nothing when run; GoMLX's gradients emit such transposes. Any other
// permutation builds one.
func TestIdentityTransposeIsNoOp(t *testing.T) {
	be, err := New()
	if err != nil {
		t.Fatal(err)
	}
	f := be.Builder("identity_transpose").Main()
	x, err := f.Parameter("x", shapes.Make(dtypes.Float32, 3, 4, 5), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		perm []int
		same bool
	}{{[]int{0, 1, 2}, true}, {[]int{0, 2, 1}, false}, {[]int{2, 1, 0}, false}} {
		v, err := f.Transpose(x, c.perm...)
		if err != nil {
			t.Fatal(err)
		}
		if got := v == x; got != c.same {
			t.Errorf("Transpose(x, %v) returned the operand: %v, want %v", c.perm, got, c.same)
		}
	}
}
