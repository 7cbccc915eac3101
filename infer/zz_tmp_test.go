package infer

import (
	"math/rand/v2"
	"testing"
)

func reluMax(h []float32) {
	for i, v := range h {
		h[i] = max(v, 0)
	}
}

func reluIf(h []float32) {
	for i, v := range h {
		if v < 0 {
			v = 0
		}
		h[i] = v
	}
}

func compactCmov(x, vals []float32, idx []int32) int {
	vals, idx = vals[:len(x)], idx[:len(x)]
	n := 0
	for i, v := range x {
		vals[n] = v
		idx[n] = int32(i)
		inc := 1
		if v <= 0 {
			inc = 0
		}
		n += inc
	}
	return n
}

func BenchmarkZZ(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	x := randVec(r, 64)
	h := make([]float32, 64)
	vals, idx := make([]float32, 64), make([]int32, 64)
	w := randVec(r, 64*3)
	bb := randVec(r, 3)
	y := make([]float32, 3)
	b.Run("compactReLU", func(b *testing.B) {
		for b.Loop() {
			compactReLU(x, vals, idx)
		}
	})
	b.Run("compactCmov", func(b *testing.B) {
		for b.Loop() {
			compactCmov(x, vals, idx)
		}
	})
	b.Run("reluMax", func(b *testing.B) {
		for b.Loop() {
			copy(h, x)
			reluMax(h)
		}
	})
	b.Run("reluIf", func(b *testing.B) {
		for b.Loop() {
			copy(h, x)
			reluIf(h)
		}
	})
	b.Run("matVecT64x3", func(b *testing.B) {
		for b.Loop() {
			matVecT(y, x, w, bb)
		}
	})
}
