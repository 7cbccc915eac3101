package train

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/internal/gocpu"
	"github.com/gallop-dev/gallop/model"
)

// TestStepSeqPaddedEqualsPacked: the same three sequences padded one per row
// and packed into one row give the same loss and the same update.
func TestStepSeqPaddedEqualsPacked(t *testing.T) {
	const F = 5
	lens := []int{4, 2, 3}
	r := rand.New(rand.NewPCG(1, 1))
	seqs := make([][]float32, len(lens))
	labs := make([][]int32, len(lens))
	for i, n := range lens {
		for j := 0; j < n; j++ {
			for k := 0; k < F; k++ {
				seqs[i] = append(seqs[i], float32(r.NormFloat64()))
			}
			labs[i] = append(labs[i], int32(r.IntN(3)))
		}
		labs[i][0] = -1 // an unlabelled position
	}
	// Padded: 3 rows of T=4. Packed: 1 row of 9.
	pad := func() (x []float32, seg, y []int32) {
		x, seg, y = make([]float32, 3*4*F), make([]int32, 12), make([]int32, 12)
		for i := range y {
			y[i] = -1
		}
		for i, n := range lens {
			copy(x[i*4*F:], seqs[i])
			for j := 0; j < n; j++ {
				seg[i*4+j], y[i*4+j] = 1, labs[i][j]
			}
		}
		return
	}
	pack := func() (x []float32, seg, y []int32) {
		x, seg, y = make([]float32, 9*F), make([]int32, 9), make([]int32, 9)
		off := 0
		for i, n := range lens {
			copy(x[off*F:], seqs[i])
			for j := 0; j < n; j++ {
				seg[off+j], y[off+j] = int32(i+1), labs[i][j]
			}
			off += n
		}
		return
	}
	be, _ := gocpu.New()
	m, _ := model.NewGRU(4, F, 8, 3)
	mean := tensors.FromFlatDataAndDimensions(make([]float32, F), F)
	ones := []float32{1, 1, 1, 1, 1}
	std := tensors.FromFlatDataAndDimensions(ones, F)
	var losses []float32
	var params [][]float32
	for _, layout := range []struct {
		b, t  int
		build func() ([]float32, []int32, []int32)
	}{{3, 4, pad}, {1, 9, pack}} {
		s := NewStepper(be, m, DefaultOptimizer())
		st := s.NewState(3)
		x, seg, y := layout.build()
		out, err := s.StepSeq(st, 1e-2, mean, std, tensors.FromFlatDataAndDimensions(x, layout.b, layout.t, F),
			tensors.FromFlatDataAndDimensions(seg, layout.b, layout.t), tensors.FromFlatDataAndDimensions(y, layout.b, layout.t))
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, out.Loss.Value().(float32))
		params = append(params, tensors.MustCopyFlatData[float32](st.Params[0]))
	}
	if math.Abs(float64(losses[0]-losses[1])) > 1e-6 {
		t.Fatalf("padded loss %v, packed %v", losses[0], losses[1])
	}
	for i := range params[0] {
		if math.Abs(float64(params[0][i]-params[1][i])) > 1e-5 {
			t.Fatalf("update differs at %d: %v vs %v", i, params[0][i], params[1][i])
		}
	}
	// A model without ForwardSeq is refused.
	dl, err := model.NewDeepLOB(10, feature.Names, 3, model.DeepLOBConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewStepper(be, windowsOnly{dl}, DefaultOptimizer()).StepSeq(nil, 1, mean, std, nil, nil, nil); err == nil {
		t.Fatal("a model without ForwardSeq accepted sequence batches")
	}
}

// windowsOnly hides a model's ForwardSeq: a model of fixed windows only.
type windowsOnly struct{ model.Model }
