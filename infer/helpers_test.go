package infer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// raceEnabled is set by race_test.go in -race builds.
var raceEnabled bool

// randomModel returns an "mlp" model with He-initialised random weights, a
// window of w events of f features and the given hidden widths.
func randomModel(r *rand.Rand, w, f int, hidden []int, classes int) *Model {
	feats := make([]string, f)
	for i := range feats {
		feats[i] = fmt.Sprintf("f%d", i)
	}
	cls := make([]string, classes)
	for i := range cls {
		cls[i] = fmt.Sprintf("c%d", i)
	}
	layers := append(append([]int{w * f}, hidden...), classes)
	m := &Model{
		Spec: Spec{
			Arch: ArchMLP, Window: w, Features: feats, Classes: cls,
			Layers: layers, Activation: ActivationReLU,
			Meta: map[string]string{"horizon": "10"},
		},
		Mean: make([]float32, f),
		Std:  make([]float32, f),
	}
	for i := range f {
		m.Mean[i] = float32(r.NormFloat64() * 10)
		m.Std[i] = float32(0.1 + r.Float64()*5)
	}
	for l := range len(layers) - 1 {
		in, out := layers[l], layers[l+1]
		scale := math.Sqrt(2 / float64(in))
		wl := make([]float32, in*out)
		for i := range wl {
			wl[i] = float32(r.NormFloat64() * scale)
		}
		b := make([]float32, out)
		for i := range b {
			b[i] = float32(r.NormFloat64() * 0.1)
		}
		m.W = append(m.W, wl)
		m.B = append(m.B, b)
	}
	return m
}

// randomEvents returns n raw feature vectors distributed around m's
// normalisation statistics.
func randomEvents(r *rand.Rand, m *Model, n int) [][]float32 {
	ev := make([][]float32, n)
	for i := range ev {
		v := make([]float32, len(m.Mean))
		for j := range v {
			v[j] = m.Mean[j] + m.Std[j]*float32(r.NormFloat64())
		}
		ev[i] = v
	}
	return ev
}

// window flattens events[end-w+1 : end+1], oldest first.
func window(events [][]float32, end, w int) []float32 {
	var x []float32
	for t := end - w + 1; t <= end; t++ {
		x = append(x, events[t]...)
	}
	return x
}

// relErr returns max|a-b| / max(1, max|b|).
func relErr(a, b []float32) float64 {
	var d, mb float64
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
		mb = max(mb, math.Abs(float64(b[i])))
	}
	if math.IsNaN(d) {
		return math.Inf(1)
	}
	return d / max(1, mb)
}

// refForward is the model written out literally, in float64.
func refForward(m *Model, x []float32) []float32 {
	f := len(m.Features)
	h := make([]float64, len(x))
	for i, v := range x {
		h[i] = (float64(v) - float64(m.Mean[i%f])) / float64(m.Std[i%f])
	}
	for l := range m.W {
		in, out := m.Layers[l], m.Layers[l+1]
		y := make([]float64, out)
		for o := range out {
			s := float64(m.B[l][o])
			for i := range in {
				s += h[i] * float64(m.W[l][i*out+o])
			}
			if l < len(m.W)-1 {
				s = max(s, 0)
			}
			y[o] = s
		}
		h = y
	}
	out := make([]float32, len(h))
	for i, v := range h {
		out[i] = float32(v)
	}
	return out
}

// kernelVariants names the kernel sets this build can run: always the scalar
// kernels, plus the SIMD ones where built and supported.
func kernelVariants() map[string]bool {
	v := map[string]bool{"scalar": false}
	if hasSIMD() {
		v["simd"] = true
	}
	return v
}

func mustNewMLP(tb testing.TB, m *Model, simd bool) *MLP {
	tb.Helper()
	e, err := newMLP(m, simd, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

func mustMLP(tb testing.TB, m *Model) *MLP {
	tb.Helper()
	e, err := NewMLP(m)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}
