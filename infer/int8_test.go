package infer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestInt8Kernels checks the AVX-512 VNNI kernels against their portable
// forms: integer sums and quantised bytes exactly, the dequantised outputs
// within float rounding.
func TestInt8Kernels(t *testing.T) {
	if !hasVNNI() {
		t.Skip("no AVX-512 VNNI on this CPU")
	}
	r := rand.New(rand.NewPCG(8, 8))
	for _, sh := range [][2]int{{8, 64}, {256, 256}, {130, 70}, {4096, 128}} {
		in, out := sh[0], sh[1]
		w := randVec(r, in*out)
		b := randVec(r, out)
		q, err := newQDense(w, b, in, out, false, true)
		if err != nil {
			t.Fatal(err)
		}
		xq := make([]byte, q.groups*4)
		for i := range in {
			xq[i] = byte(r.IntN(256))
		}
		xq[0] = 255 // extremes: 255 × ±127
		got, want := make([]int32, q.tiles*64), make([]int32, q.tiles*64)
		vnniGemv(&got[0], &xq[0], &q.w[0], q.groups, q.tiles)
		gemvU8S8(want, xq, q.w, q.groups, q.tiles)
		if !slices.Equal(got, want) {
			t.Errorf("%dx%d: vnniGemv differs from gemvU8S8", in, out)
		}

		x := randVec(r, q.tiles*64)
		x[3], x[5] = 1e9, -1e9 // saturation both ways
		inv := float32(255 / 3.0)
		gq := make([]byte, len(x))
		quantReLU16(&gq[0], &x[0], len(x), inv)
		for i, v := range x {
			if want := quantU8(v, inv); gq[i] != want {
				t.Errorf("quantReLU16(%g) = %d, want %d", v, gq[i], want)
			}
		}
		if m := maxReLU16(&x[0], len(x)); m != 1e9 {
			t.Errorf("maxReLU16 = %g, want 1e9", m)
		}
		neg := slices.Repeat([]float32{-1}, 32)
		if m := maxReLU16(&neg[0], len(neg)); m != 0 {
			t.Errorf("maxReLU16(all negative) = %g, want 0", m)
		}
		x[17] = float32(math.NaN())
		if m := maxReLU16(&x[0], len(x)); !math.IsNaN(float64(m)) {
			t.Errorf("maxReLU16 with a NaN = %g, want NaN", m)
		}

		y := append([]float32(nil), q.b...) // dequantAdd16 onto the bias
		corr := make([]int32, len(want))
		for j := range corr {
			corr[j] = int32(r.IntN(1<<16)) - 1<<15
		}
		dequantAdd16(&y[0], &want[0], &corr[0], &q.scale[0], len(y), 0.037)
		for j, a := range want {
			ref := float64(a-corr[j])*float64(q.scale[j])*0.037 + float64(q.b[j])
			if d := math.Abs(float64(y[j]) - ref); d > 1e-6*max(1, math.Abs(ref)) {
				t.Errorf("dequantAdd16[%d] = %g, want %g", j, y[j], ref)
			}
		}

		// Signed inputs: |x| maximum and zero-point quantisation.
		xs := randVec(r, q.tiles*64)
		xs[9] = -7
		if m := absMax16(&xs[0], len(xs)); m != 7 {
			t.Errorf("absMax16 = %g, want 7", m)
		}
		inv = 127.0 / 7
		quantOff16(&gq[0], &xs[0], len(xs), inv)
		for i, v := range xs {
			if want := quantOff(v, inv); gq[i] != want {
				t.Errorf("quantOff16(%g) = %d, want %d", v, gq[i], want)
			}
		}
		if gq[9] != 1 {
			t.Errorf("quantOff16(-max) = %d, want 1", gq[9])
		}
		xs[30] = float32(math.NaN())
		if m := absMax16(&xs[0], len(xs)); !math.IsNaN(float64(m)) {
			t.Errorf("absMax16 with a NaN = %g, want NaN", m)
		}
	}
}

// int8Bound is the stated accuracy of WeightsInt8: the logits of an int8
// MLP differ from the float32 engine's by at most this much relative to
// max(1, |logit|) (relErr), on He-initialised weights and inputs spread as
// in training. Measured worst cases are in the test log and BENCHMARKS.md.
const int8Bound = 0.1

// int8Windows is how many windows TestInt8Accuracy compares per model.
var int8Windows = 2000

// TestInt8Accuracy compares the int8 engine with the float32 one on random
// models and events: logits within int8Bound, the same top class for at
// least 99% of windows, Stream equal to Forward, and the portable kernels
// equal to the VNNI ones.
func TestInt8Accuracy(t *testing.T) {
	for _, tc := range []struct {
		w, f    int
		hidden  []int
		classes int
	}{
		{4, 16, []int{256, 256}, 1},
		{10, 51, []int{128, 64}, 3}, // the gallop default
		{20, 44, []int{64, 64}, 3},
		{3, 5, []int{7, 300, 9}, 2}, // widths off the kernels' multiples
	} {
		r := rand.New(rand.NewPCG(3, uint64(tc.f)))
		m := randomModel(r, tc.w, tc.f, tc.hidden, tc.classes)
		t.Run(fmt.Sprint(m.Layers), func(t *testing.T) {
			f32 := mustMLP(t, m)
			q8, err := NewMLPWith(m, Options{Weights: WeightsInt8})
			if err != nil {
				t.Fatal(err)
			}
			portable, err := newMLP(m, hasSIMD(), Options{Weights: WeightsInt8, noVNNI: true})
			if err != nil {
				t.Fatal(err)
			}
			events := randomEvents(r, m, int8Windows+m.Window-1)
			s, sP := q8.NewStream(), portable.NewStream()
			want, got, gotS, gotP := make([]float32, tc.classes), make([]float32, tc.classes), make([]float32, tc.classes), make([]float32, tc.classes)
			gotSP := make([]float32, tc.classes)
			var worst, sum, worstS, worstP float64
			agree, n := 0, 0
			for i := range events {
				sP.Push(events[i], gotSP)
				if !s.Push(events[i], gotS) {
					continue
				}
				x := window(events, i, m.Window)
				f32.Forward(x, want)
				q8.Forward(x, got)
				portable.Forward(x, gotP)
				e := relErr(got, want)
				worst, sum = max(worst, e), sum+e
				if e > int8Bound {
					t.Fatalf("window %d: int8 Forward %v, float32 %v (rel err %.3g > %g)", n, got, want, e, int8Bound)
				}
				if e := relErr(gotS, want); e > int8Bound {
					t.Fatalf("window %d: int8 Stream %v, float32 %v (rel err %.3g > %g)", n, gotS, want, e, int8Bound)
				}
				worstS = max(worstS, relErr(gotS, got))
				worstP = max(worstP, relErr(gotP, got), relErr(gotSP, gotS))
				if argmax(got) == argmax(want) {
					agree++
				}
				n++
			}
			if tc.classes > 1 && float64(agree) < 0.99*float64(n) {
				t.Errorf("int8 and float32 agree on the top class in %d of %d windows, want >= 99%%", agree, n)
			}
			// The portable kernels give the same bytes and sums; their
			// dequantisation rounds twice (float64 FMA, then float32), and
			// a value that lands on a quantisation boundary of the next
			// layer may go either way: one step of one input.
			if worstP > 1e-3 {
				t.Errorf("portable vs VNNI int8 kernels: rel err %.3g, want <= 1e-3", worstP)
			}
			t.Logf("%d windows: int8 vs float32 rel err mean %.3g, worst %.3g; top class agrees %.2f%%; int8 Stream vs Forward %.2g; portable vs VNNI %.2g",
				n, sum/float64(n), worst, 100*float64(agree)/float64(n), worstS, worstP)
		})
	}
}

func argmax(v []float32) int {
	k := 0
	for i, x := range v {
		if x > v[k] {
			k = i
		}
	}
	return k
}

// TestInt8NonFinite: a NaN or infinite input gives NaN logits, never a
// plausible number.
func TestInt8NonFinite(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	m := randomModel(r, 4, 16, []int{256, 256}, 2)
	for _, opt := range []Options{{Weights: WeightsInt8}, {Weights: WeightsInt8, noVNNI: true}} {
		e, err := newMLP(m, hasSIMD(), opt)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1))} {
			x := window(randomEvents(r, m, 4), 3, 4)
			x[5] = bad
			got := make([]float32, 2)
			e.Forward(x, got)
			if !math.IsNaN(float64(got[0])) && !math.IsInf(float64(got[0]), 0) {
				t.Errorf("noVNNI=%v: input %g gave logits %v, want non-finite", opt.noVNNI, bad, got)
			}
		}
	}
}

func TestParseWeights(t *testing.T) {
	for _, s := range []string{"float32", "int8"} {
		if w, err := ParseWeights(s); err != nil || string(w) != s {
			t.Errorf("ParseWeights(%q) = %q, %v", s, w, err)
		}
	}
	if _, err := ParseWeights("fp16"); err == nil {
		t.Error("ParseWeights(fp16): no error")
	}
	if _, err := NewMLPWith(randomModel(rand.New(rand.NewPCG(1, 1)), 2, 3, []int{4}, 2), Options{Weights: "int4"}); err == nil {
		t.Error("NewMLPWith(int4): no error")
	}
}

// TestInt8OnLOBSTER measures the int8 engine against the float32 one on
// real features (LOBSTER's GOOG sample through the book and features),
// whose heavy tails are what a per-window input scale is sensitive to.
func TestInt8OnLOBSTER(t *testing.T) {
	events, mean, std := lobsterEvents(t, 3000)
	for _, hidden := range [][]int{{256, 256}, {128, 64}} {
		r := rand.New(rand.NewPCG(5, uint64(hidden[0])))
		m := randomModel(r, 10, len(mean), hidden, 3)
		m.Mean, m.Std = mean, std
		f32 := mustMLP(t, m)
		q8, err := NewMLPWith(m, Options{Weights: WeightsInt8})
		if err != nil {
			t.Fatal(err)
		}
		s := q8.NewStream()
		want, got, gotS := make([]float32, 3), make([]float32, 3), make([]float32, 3)
		var worstF, worstS, sumF, sumS float64
		agreeF, agreeS, n := 0, 0, 0
		for i := range events {
			if !s.Push(events[i], gotS) {
				continue
			}
			x := window(events, i, m.Window)
			f32.Forward(x, want)
			q8.Forward(x, got)
			eF, eS := relErr(got, want), relErr(gotS, want)
			worstF, worstS, sumF, sumS = max(worstF, eF), max(worstS, eS), sumF+eF, sumS+eS
			if eF > int8Bound || eS > int8Bound {
				t.Errorf("window %d: float32 %v, int8 Forward %v (%.3g), Stream %v (%.3g); bound %g", n, want, got, eF, gotS, eS, int8Bound)
			}
			if argmax(got) == argmax(want) {
				agreeF++
			}
			if argmax(gotS) == argmax(want) {
				agreeS++
			}
			n++
		}
		t.Logf("%v: %d real windows: int8 vs float32 rel err: Forward mean %.3g worst %.3g top class %.2f%%; Stream mean %.3g worst %.3g top class %.2f%%",
			m.Layers, n, sumF/float64(n), worstF, 100*float64(agreeF)/float64(n), sumS/float64(n), worstS, 100*float64(agreeS)/float64(n))
	}
}

// TestInt8Outliers: a signed input far beyond int8Clip is taken out of the
// int8 product and added in float32, so one outlier does not coarsen the
// other inputs: the layer stays within 1% of float32, on both kernel sets.
func TestInt8Outliers(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	const in, out = 100, 70
	w, b := randVec(r, in*out), randVec(r, out)
	x := make([]float32, in)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	x[3], x[97] = 80, -45 // far outliers, one in the assembly's part, one in the tail
	want := make([]float64, out)
	for j := range want {
		want[j] = float64(b[j])
		for i := range in {
			want[j] += float64(x[i]) * float64(w[i*out+j])
		}
	}
	for _, vnni := range []bool{false, true} {
		if vnni && !hasVNNI() {
			continue
		}
		q, err := newQDense(w, b, in, out, true, vnni)
		if err != nil {
			t.Fatal(err)
		}
		y := make([]float32, q.tiles*64)
		xq, acc, outl := make([]byte, q.groups*4), make([]int32, q.tiles*64), make([]int32, in)
		if _, n := q.sums(x, xq, acc, outl); n != 2 || outl[0] != 3 || outl[1] != 97 {
			t.Fatalf("vnni %v: outliers %v, want [3 97]", vnni, outl[:n])
		}
		q.apply(y, x, xq, acc, outl)
		var worst, scale float64
		for j := range want {
			worst = max(worst, math.Abs(float64(y[j])-want[j]))
			scale = max(scale, math.Abs(want[j]))
		}
		if worst > 0.01*scale {
			t.Errorf("vnni %v: worst difference %.3g against |y| up to %.3g", vnni, worst, scale)
		}
	}
}
