//go:build goexperiment.simd && amd64

package infer

import "simd/archsimd"

// SIMD kernels, built only with GOEXPERIMENT=simd (Go's experimental
// simd/archsimd package) and used only on CPUs with AVX-512. They work on
// weights packed in column tiles (see mat): a tile's outputs stay in
// registers, as four or eight 16-wide accumulators, for the whole pass over
// its rows, so each weight is loaded once and never a partial sum. Tiles are
// 128 columns wide where the layer allows (eight accumulators, one row per
// step), else 64 (four accumulators, two rows per step into two sets to keep
// both FMA pipes busy). Wider tiles run out of registers. At these sizes the
// weights come from L2, whose bandwidth is the limit (see BenchmarkLayer).

// hasSIMD reports whether the SIMD kernels can run on this CPU.
func hasSIMD() bool { return archsimd.X86.AVX512() }

// clearUpper ends a kernel's vector work (VZEROUPPER): Go's scalar float
// code is legacy SSE, which on Intel CPUs runs many times slower while the
// upper halves of the vector registers hold data (the AVX-SSE transition
// penalty; Go 1.26 does not clear them itself, golang/go#80835). Every
// kernel calls it before it returns or goes on in scalar code.
func clearUpper() { archsimd.ClearAVXUpperBits() }

// accumTiles adds x @ W to y, where tiles holds W's first len(y) columns (a
// multiple of 64) packed as mat.tiles with len(x) rows.
func accumTiles(y, x, tiles []float32) {
	in := len(x)
	j := 0
	for ; j+128 <= len(y); j += 128 {
		tile128(y[j:j+128:j+128], x, tiles[j*in:(j+128)*in])
	}
	if j+64 <= len(y) {
		tile64(y[j:j+64:j+64], x, tiles[j*in:(j+64)*in])
	}
	clearUpper()
}

// accumTilesSparse adds Σ_k vals[k] * W[idx[k], :] to y, where tiles holds
// W's first len(y) columns (a multiple of 64) packed as mat.tiles with in
// rows.
func accumTilesSparse(y, vals []float32, idx []int32, tiles []float32, in int) {
	idx = idx[:len(vals)]
	j := 0
	for ; j+128 <= len(y); j += 128 {
		tile128Sparse(y[j:j+128:j+128], vals, idx, tiles[j*in:(j+128)*in])
	}
	if j+64 <= len(y) {
		tile64Sparse(y[j:j+64:j+64], vals, idx, tiles[j*in:(j+64)*in])
	}
	clearUpper()
}

func tile128(y, x, tile []float32) {
	y = y[:128]
	a0 := archsimd.LoadFloat32x16Slice(y[0:16])
	a1 := archsimd.LoadFloat32x16Slice(y[16:32])
	a2 := archsimd.LoadFloat32x16Slice(y[32:48])
	a3 := archsimd.LoadFloat32x16Slice(y[48:64])
	a4 := archsimd.LoadFloat32x16Slice(y[64:80])
	a5 := archsimd.LoadFloat32x16Slice(y[80:96])
	a6 := archsimd.LoadFloat32x16Slice(y[96:112])
	a7 := archsimd.LoadFloat32x16Slice(y[112:128])
	for _, v := range x {
		if len(tile) < 128 {
			break
		}
		r := tile[:128:128]
		xb := archsimd.BroadcastFloat32x16(v)
		a0 = archsimd.LoadFloat32x16Slice(r[0:16]).MulAdd(xb, a0)
		a1 = archsimd.LoadFloat32x16Slice(r[16:32]).MulAdd(xb, a1)
		a2 = archsimd.LoadFloat32x16Slice(r[32:48]).MulAdd(xb, a2)
		a3 = archsimd.LoadFloat32x16Slice(r[48:64]).MulAdd(xb, a3)
		a4 = archsimd.LoadFloat32x16Slice(r[64:80]).MulAdd(xb, a4)
		a5 = archsimd.LoadFloat32x16Slice(r[80:96]).MulAdd(xb, a5)
		a6 = archsimd.LoadFloat32x16Slice(r[96:112]).MulAdd(xb, a6)
		a7 = archsimd.LoadFloat32x16Slice(r[112:128]).MulAdd(xb, a7)
		tile = tile[128:]
	}
	a0.StoreSlice(y[0:16])
	a1.StoreSlice(y[16:32])
	a2.StoreSlice(y[32:48])
	a3.StoreSlice(y[48:64])
	a4.StoreSlice(y[64:80])
	a5.StoreSlice(y[80:96])
	a6.StoreSlice(y[96:112])
	a7.StoreSlice(y[112:128])
}

func tile64(y, x, tile []float32) {
	y = y[:64]
	a0 := archsimd.LoadFloat32x16Slice(y[0:16])
	a1 := archsimd.LoadFloat32x16Slice(y[16:32])
	a2 := archsimd.LoadFloat32x16Slice(y[32:48])
	a3 := archsimd.LoadFloat32x16Slice(y[48:64])
	var b0, b1, b2, b3 archsimd.Float32x16
	for len(x) >= 2 && len(tile) >= 128 {
		x0 := archsimd.BroadcastFloat32x16(x[0])
		x1 := archsimd.BroadcastFloat32x16(x[1])
		a0 = archsimd.LoadFloat32x16Slice(tile[0:16]).MulAdd(x0, a0)
		a1 = archsimd.LoadFloat32x16Slice(tile[16:32]).MulAdd(x0, a1)
		a2 = archsimd.LoadFloat32x16Slice(tile[32:48]).MulAdd(x0, a2)
		a3 = archsimd.LoadFloat32x16Slice(tile[48:64]).MulAdd(x0, a3)
		b0 = archsimd.LoadFloat32x16Slice(tile[64:][0:16]).MulAdd(x1, b0)
		b1 = archsimd.LoadFloat32x16Slice(tile[64:][16:32]).MulAdd(x1, b1)
		b2 = archsimd.LoadFloat32x16Slice(tile[64:][32:48]).MulAdd(x1, b2)
		b3 = archsimd.LoadFloat32x16Slice(tile[64:][48:64]).MulAdd(x1, b3)
		tile = tile[128:]
		x = x[2:]
	}
	if len(x) >= 1 && len(tile) >= 64 {
		x0 := archsimd.BroadcastFloat32x16(x[0])
		a0 = archsimd.LoadFloat32x16Slice(tile[0:16]).MulAdd(x0, a0)
		a1 = archsimd.LoadFloat32x16Slice(tile[16:32]).MulAdd(x0, a1)
		a2 = archsimd.LoadFloat32x16Slice(tile[32:48]).MulAdd(x0, a2)
		a3 = archsimd.LoadFloat32x16Slice(tile[48:64]).MulAdd(x0, a3)
	}
	a0.Add(b0).StoreSlice(y[0:16])
	a1.Add(b1).StoreSlice(y[16:32])
	a2.Add(b2).StoreSlice(y[32:48])
	a3.Add(b3).StoreSlice(y[48:64])
}

func tile128Sparse(y, vals []float32, idx []int32, tile []float32) {
	y = y[:128]
	idx = idx[:len(vals)]
	a0 := archsimd.LoadFloat32x16Slice(y[0:16])
	a1 := archsimd.LoadFloat32x16Slice(y[16:32])
	a2 := archsimd.LoadFloat32x16Slice(y[32:48])
	a3 := archsimd.LoadFloat32x16Slice(y[48:64])
	a4 := archsimd.LoadFloat32x16Slice(y[64:80])
	a5 := archsimd.LoadFloat32x16Slice(y[80:96])
	a6 := archsimd.LoadFloat32x16Slice(y[96:112])
	a7 := archsimd.LoadFloat32x16Slice(y[112:128])
	for k, v := range vals {
		r := tile[int(idx[k])*128:]
		r = r[:128:128]
		xb := archsimd.BroadcastFloat32x16(v)
		a0 = archsimd.LoadFloat32x16Slice(r[0:16]).MulAdd(xb, a0)
		a1 = archsimd.LoadFloat32x16Slice(r[16:32]).MulAdd(xb, a1)
		a2 = archsimd.LoadFloat32x16Slice(r[32:48]).MulAdd(xb, a2)
		a3 = archsimd.LoadFloat32x16Slice(r[48:64]).MulAdd(xb, a3)
		a4 = archsimd.LoadFloat32x16Slice(r[64:80]).MulAdd(xb, a4)
		a5 = archsimd.LoadFloat32x16Slice(r[80:96]).MulAdd(xb, a5)
		a6 = archsimd.LoadFloat32x16Slice(r[96:112]).MulAdd(xb, a6)
		a7 = archsimd.LoadFloat32x16Slice(r[112:128]).MulAdd(xb, a7)
	}
	a0.StoreSlice(y[0:16])
	a1.StoreSlice(y[16:32])
	a2.StoreSlice(y[32:48])
	a3.StoreSlice(y[48:64])
	a4.StoreSlice(y[64:80])
	a5.StoreSlice(y[80:96])
	a6.StoreSlice(y[96:112])
	a7.StoreSlice(y[112:128])
}

func tile64Sparse(y, vals []float32, idx []int32, tile []float32) {
	y = y[:64]
	idx = idx[:len(vals)]
	a0 := archsimd.LoadFloat32x16Slice(y[0:16])
	a1 := archsimd.LoadFloat32x16Slice(y[16:32])
	a2 := archsimd.LoadFloat32x16Slice(y[32:48])
	a3 := archsimd.LoadFloat32x16Slice(y[48:64])
	var b0, b1, b2, b3 archsimd.Float32x16
	k := 0
	for ; k+2 <= len(vals); k += 2 {
		r0 := tile[int(idx[k])*64:]
		r0 = r0[:64:64]
		r1 := tile[int(idx[k+1])*64:]
		r1 = r1[:64:64]
		x0 := archsimd.BroadcastFloat32x16(vals[k])
		x1 := archsimd.BroadcastFloat32x16(vals[k+1])
		a0 = archsimd.LoadFloat32x16Slice(r0[0:16]).MulAdd(x0, a0)
		a1 = archsimd.LoadFloat32x16Slice(r0[16:32]).MulAdd(x0, a1)
		a2 = archsimd.LoadFloat32x16Slice(r0[32:48]).MulAdd(x0, a2)
		a3 = archsimd.LoadFloat32x16Slice(r0[48:64]).MulAdd(x0, a3)
		b0 = archsimd.LoadFloat32x16Slice(r1[0:16]).MulAdd(x1, b0)
		b1 = archsimd.LoadFloat32x16Slice(r1[16:32]).MulAdd(x1, b1)
		b2 = archsimd.LoadFloat32x16Slice(r1[32:48]).MulAdd(x1, b2)
		b3 = archsimd.LoadFloat32x16Slice(r1[48:64]).MulAdd(x1, b3)
	}
	if k < len(vals) {
		r0 := tile[int(idx[k])*64:]
		r0 = r0[:64:64]
		x0 := archsimd.BroadcastFloat32x16(vals[k])
		a0 = archsimd.LoadFloat32x16Slice(r0[0:16]).MulAdd(x0, a0)
		a1 = archsimd.LoadFloat32x16Slice(r0[16:32]).MulAdd(x0, a1)
		a2 = archsimd.LoadFloat32x16Slice(r0[32:48]).MulAdd(x0, a2)
		a3 = archsimd.LoadFloat32x16Slice(r0[48:64]).MulAdd(x0, a3)
	}
	a0.Add(b0).StoreSlice(y[0:16])
	a1.Add(b1).StoreSlice(y[16:32])
	a2.Add(b2).StoreSlice(y[32:48])
	a3.Add(b3).StoreSlice(y[48:64])
}

// dotReLU returns Σ_i max(h[i], 0)·w[i] (NaN if h holds a NaN): an output
// of a narrow layer over the previous layer's pre-activations, dense, where
// compacting the active units would cost more than the multiplies it saves.
func dotReLU(h, w []float32) float32 {
	w = w[:len(h)]
	var s0, s1 archsimd.Float32x16
	var zero archsimd.Float32x16
	i := 0
	for ; i+32 <= len(h); i += 32 {
		s0 = archsimd.LoadFloat32x16Slice(h[i:]).Max(zero).MulAdd(archsimd.LoadFloat32x16Slice(w[i:]), s0)
		s1 = archsimd.LoadFloat32x16Slice(h[i+16:]).Max(zero).MulAdd(archsimd.LoadFloat32x16Slice(w[i+16:]), s1)
	}
	if i+16 <= len(h) {
		s0 = archsimd.LoadFloat32x16Slice(h[i:]).Max(zero).MulAdd(archsimd.LoadFloat32x16Slice(w[i:]), s0)
		i += 16
	}
	s := hsum(s0.Add(s1))
	for ; i < len(h); i++ {
		s += max(h[i], 0) * w[i]
	}
	return s
}
