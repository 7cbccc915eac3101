//go:build goexperiment.simd && amd64

package infer

import "simd/archsimd"

// SIMD kernels, built only with GOEXPERIMENT=simd (Go's experimental
// simd/archsimd package) and used only on CPUs with AVX-512. They work on
// weights packed in column tiles of 64 (see mat): one tile row is four
// 16-wide vectors, so a tile's 64 outputs stay in registers for the whole
// pass over the inputs, two rows per step into two sets of accumulators to
// keep both FMA pipes busy.

// hasSIMD reports whether the SIMD kernels can run on this CPU.
func hasSIMD() bool { return archsimd.X86.AVX512() }

// accumTiles adds x @ W to y, where tiles holds W's first len(y) columns
// (a multiple of 64) packed as mat.tiles with len(x) rows.
func accumTiles(y, x, tiles []float32) {
	in := len(x)
	for j := 0; j+64 <= len(y); j += 64 {
		yy := y[j : j+64 : j+64]
		tile := tiles[j*in : (j+64)*in]
		a0 := archsimd.LoadFloat32x16Slice(yy[0:16])
		a1 := archsimd.LoadFloat32x16Slice(yy[16:32])
		a2 := archsimd.LoadFloat32x16Slice(yy[32:48])
		a3 := archsimd.LoadFloat32x16Slice(yy[48:64])
		var b0, b1, b2, b3 archsimd.Float32x16
		xs := x
		for len(xs) >= 2 && len(tile) >= 128 {
			x0 := archsimd.BroadcastFloat32x16(xs[0])
			x1 := archsimd.BroadcastFloat32x16(xs[1])
			a0 = archsimd.LoadFloat32x16Slice(tile[0:16]).MulAdd(x0, a0)
			a1 = archsimd.LoadFloat32x16Slice(tile[16:32]).MulAdd(x0, a1)
			a2 = archsimd.LoadFloat32x16Slice(tile[32:48]).MulAdd(x0, a2)
			a3 = archsimd.LoadFloat32x16Slice(tile[48:64]).MulAdd(x0, a3)
			b0 = archsimd.LoadFloat32x16Slice(tile[64:80]).MulAdd(x1, b0)
			b1 = archsimd.LoadFloat32x16Slice(tile[80:96]).MulAdd(x1, b1)
			b2 = archsimd.LoadFloat32x16Slice(tile[96:112]).MulAdd(x1, b2)
			b3 = archsimd.LoadFloat32x16Slice(tile[112:128]).MulAdd(x1, b3)
			tile = tile[128:]
			xs = xs[2:]
		}
		if len(xs) >= 1 && len(tile) >= 64 {
			x0 := archsimd.BroadcastFloat32x16(xs[0])
			a0 = archsimd.LoadFloat32x16Slice(tile[0:16]).MulAdd(x0, a0)
			a1 = archsimd.LoadFloat32x16Slice(tile[16:32]).MulAdd(x0, a1)
			a2 = archsimd.LoadFloat32x16Slice(tile[32:48]).MulAdd(x0, a2)
			a3 = archsimd.LoadFloat32x16Slice(tile[48:64]).MulAdd(x0, a3)
		}
		a0.Add(b0).StoreSlice(yy[0:16])
		a1.Add(b1).StoreSlice(yy[16:32])
		a2.Add(b2).StoreSlice(yy[32:48])
		a3.Add(b3).StoreSlice(yy[48:64])
	}
}

// accumTilesSparse adds Σ_k vals[k] * W[idx[k], :] to y, where tiles holds
// W's first len(y) columns (a multiple of 64) packed as mat.tiles with in
// rows.
func accumTilesSparse(y, vals []float32, idx []int32, tiles []float32, in int) {
	idx = idx[:len(vals)]
	for j := 0; j+64 <= len(y); j += 64 {
		yy := y[j : j+64 : j+64]
		tile := tiles[j*in : (j+64)*in]
		a0 := archsimd.LoadFloat32x16Slice(yy[0:16])
		a1 := archsimd.LoadFloat32x16Slice(yy[16:32])
		a2 := archsimd.LoadFloat32x16Slice(yy[32:48])
		a3 := archsimd.LoadFloat32x16Slice(yy[48:64])
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
		a0.Add(b0).StoreSlice(yy[0:16])
		a1.Add(b1).StoreSlice(yy[16:32])
		a2.Add(b2).StoreSlice(yy[32:48])
		a3.Add(b3).StoreSlice(yy[48:64])
	}
}
