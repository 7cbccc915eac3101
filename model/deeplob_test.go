package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gallop-dev/gallop/internal/gocpu"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/data/feature"
)

func TestDeepLOBIndex(t *testing.T) {
	idx, err := DeepLOBIndex(feature.Names)
	if err != nil {
		t.Fatal(err)
	}
	if len(idx) != 40 {
		t.Fatalf("%d columns, want 40", len(idx))
	}
	for c, j := range idx {
		want := fmt.Sprintf("%s%d", []string{"ask_d", "ask_q", "bid_d", "bid_q"}[c%4], c/4)
		if feature.Names[j] != want {
			t.Errorf("column %d is %s, want %s", c, feature.Names[j], want)
		}
	}
	if _, err := NewDeepLOB(100, feature.Names[:30], 3, DeepLOBConfig{}); err == nil {
		t.Error("missing level features: no error")
	}
	if _, err := NewDeepLOB(0, feature.Names, 3, DeepLOBConfig{}); err == nil {
		t.Error("window 0: no error")
	}
}

// TestDeepLOBImage checks the gather puts feature idx[c] of event t at
// column c of row t.
func TestDeepLOBImage(t *testing.T) {
	be, _ := gocpu.New()
	m, err := NewDeepLOB(3, feature.Names, 3, DeepLOBConfig{})
	if err != nil {
		t.Fatal(err)
	}
	const b = 2
	f := feature.Count
	x := make([]float32, b*m.W*f)
	for i := range x {
		x[i] = float32(i)
	}
	out, err := CallOnce(be, func(x *Node) *Node { return m.image(x) }, tensors.FromFlatDataAndDimensions(x, b, m.W, f))
	if err != nil {
		t.Fatal(err)
	}
	img := tensors.MustCopyFlatData[float32](out)
	for r := 0; r < b*m.W; r++ {
		for c, j := range m.Index {
			if got, want := img[r*40+c], float32(r*f+j); got != want {
				t.Fatalf("row %d column %d: %v, want %v", r, c, got, want)
			}
		}
	}
}

// TestDeepLOBConvsMatchConvolve checks the matrix-product convolutions
// against GoMLX's Convolve and MaxPool with TensorFlow's 'same' padding.
func TestDeepLOBConvsMatchConvolve(t *testing.T) {
	be, _ := gocpu.New()
	m, err := NewDeepLOB(9, feature.Names, 3, DeepLOBConfig{Conv: 4, Inception: 3, Hidden: 5})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	const b = 2
	img := make([]float32, b*m.W*40)
	for i := range img {
		img[i] = float32(r.NormFloat64())
	}
	params := m.Init(3)
	nc := 2 * len(m.convs())
	args := []any{tensors.FromFlatDataAndDimensions(img, b, m.W, 40, 1)}
	for _, p := range params[:nc] {
		v := tensors.MustCopyFlatData[float32](p)
		for i := range v {
			v[i] += float32(0.1 * r.NormFloat64()) // non-zero biases
		}
		args = append(args, tensors.FromFlatDataAndDimensions(v, p.Shape().Dimensions...))
	}
	outs, err := CallOnceN(be, func(in []*Node) []*Node {
		h, ps := in[0], in[1:]
		conv := func(h *Node, i, stride int) *Node {
			w, bias := ps[2*i], ps[2*i+1]
			kh := w.Shape().Dimensions[0]
			y := Convolve(h, w).StridePerAxis(1, stride).
				PaddingPerDim([][2]int{{(kh - 1) / 2, kh - 1 - (kh-1)/2}, {0, 0}}).Done()
			y = Add(y, Reshape(bias, 1, 1, 1, bias.Shape().Dimensions[0]))
			return Max(y, MulScalar(y, 0.01))
		}
		x := h
		x = conv(conv(conv(x, 0, 2), 1, 1), 2, 1)
		x = conv(conv(conv(x, 3, 2), 4, 1), 5, 1)
		x = conv(conv(conv(x, 6, 1), 7, 1), 8, 1)
		i1 := conv(conv(x, 9, 1), 10, 1)
		i2 := conv(conv(x, 11, 1), 12, 1)
		pool := MaxPool(x).WindowPerAxis(3, 1).StridePerAxis(1, 1).PaddingPerDim([][2]int{{1, 1}, {0, 0}}).Done()
		i3 := conv(pool, 13, 1)
		ref := Reshape(Concatenate([]*Node{i1, i2, i3}, -1), b, m.W, 3*m.Inception)
		return []*Node{m.features(ps, h), ref}
	}, args...)
	if err != nil {
		t.Fatal(err)
	}
	got, want := tensors.MustCopyFlatData[float32](outs[0]), tensors.MustCopyFlatData[float32](outs[1])
	if len(got) != b*m.W*9 {
		t.Fatalf("features size %d", len(got))
	}
	for i := range got {
		if math.Abs(float64(got[i]-want[i])) > 1e-5*max(1, math.Abs(float64(want[i]))) {
			t.Fatalf("feature %d: %v, Convolve reference %v", i, got[i], want[i])
		}
	}
}
