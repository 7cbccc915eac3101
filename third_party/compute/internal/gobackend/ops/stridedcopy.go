// Copyright 2026 The gallop authors. SPDX-License-Identifier: Apache-2.0
//
// Added by gallop (see GALLOP.md at the module root): one copy kernel for
// Slice and Transpose that moves contiguous runs with copy() and transposes
// in cache-sized tiles, and a row-wise ReduceSum, instead of computing
// every element's index with a full-rank odometer.

package ops

import "github.com/gomlx/compute/internal/gobackend"

// stridedCopy fills dst, a row-major array of dimensions dims, with
// dst[i0, ..., in] = src[base + Σ ik·strides[k]]. strides are element
// strides into src, one per axis of dims (in any order, non-negative, 0
// allowed). len(dst) must be the product of dims.
//
// Axes of size 1 are dropped and neighbouring axes that are contiguous in
// src too are merged. Then, if the innermost axis has stride 1, each
// innermost row is one copy(); if another axis has stride 1, that axis and
// the innermost one are transposed tile by tile; otherwise the innermost
// axis is a strided loop.
func stridedCopy[T any](dst, src []T, base int, dims, strides []int) {
	if len(dst) == 0 {
		return
	}
	var dimsBuf, stridesBuf [16]int
	d, s := dimsBuf[:0], stridesBuf[:0]
	if len(dims) > len(dimsBuf) {
		d, s = make([]int, 0, len(dims)), make([]int, 0, len(dims))
	}
	for k, n := range dims {
		if n == 1 {
			continue
		}
		if m := len(d); m > 0 && s[m-1] == strides[k]*n {
			// Axis k continues the previous one in src: merge them.
			d[m-1] *= n
			s[m-1] = strides[k]
			continue
		}
		d = append(d, n)
		s = append(s, strides[k])
	}
	rank := len(d)
	if rank == 0 {
		dst[0] = src[base]
		return
	}
	var dsBuf [16]int
	ds := rowMajorStrides(d, dsBuf[:0]) // dst's strides
	inner, innerStride := d[rank-1], s[rank-1]
	if innerStride == 1 {
		odometer(d[:rank-1], s[:rank-1], ds[:rank-1], base, func(o, i int) {
			copy(dst[o:o+inner], src[i:i+inner])
		})
		return
	}
	// An outer axis j read contiguously: transpose (j, innermost) in tiles.
	j := -1
	for k := rank - 2; k >= 0; k-- {
		if s[k] == 1 {
			j = k
			break
		}
	}
	if j < 0 {
		odometer(d[:rank-1], s[:rank-1], ds[:rank-1], base, func(o, i int) {
			row := dst[o : o+inner]
			for x := range row {
				row[x] = src[i]
				i += innerStride
			}
		})
		return
	}
	// Axes other than j and the innermost form the outer odometer.
	outStrideJ := ds[j]
	var od, osr, ods [16]int
	outerDims, outerSrc, outerDst := od[:0], osr[:0], ods[:0]
	for k := 0; k < rank-1; k++ {
		if k == j {
			continue
		}
		outerDims = append(outerDims, d[k])
		outerSrc = append(outerSrc, s[k])
		outerDst = append(outerDst, ds[k])
	}
	nj := d[j]
	const tile = 16
	odometer(outerDims, outerSrc, outerDst, base, func(o, i int) {
		for a0 := 0; a0 < nj; a0 += tile {
			a1 := min(a0+tile, nj)
			for b0 := 0; b0 < inner; b0 += tile {
				b1 := min(b0+tile, inner)
				for a := a0; a < a1; a++ {
					out := dst[o+a*outStrideJ+b0 : o+a*outStrideJ+b1]
					in := i + a + b0*innerStride
					for x := range out {
						out[x] = src[in]
						in += innerStride
					}
				}
			}
		}
	})
}

// rowMajorStrides appends to buf the element strides of a row-major array
// of dimensions dims and returns them.
func rowMajorStrides(dims, buf []int) []int {
	strides := append(buf[:0], dims...)
	st := 1
	for k := len(dims) - 1; k >= 0; k-- {
		strides[k] = st
		st *= dims[k]
	}
	return strides
}

// odometer calls fn(dstOffset, srcOffset) for every index of dims in
// row-major order, the offsets advanced by srcStrides and dstStrides.
func odometer(dims, srcStrides, dstStrides []int, base int, fn func(o, i int)) {
	rank := len(dims)
	if rank == 0 {
		fn(0, base)
		return
	}
	var ix [16]int
	idx := ix[:0]
	if rank > len(ix) {
		idx = make([]int, 0, rank)
	}
	idx = idx[:rank]
	o, i := 0, base
	last := rank - 1
	nLast, sLast, dLast := dims[last], srcStrides[last], dstStrides[last]
	for {
		for range nLast {
			fn(o, i)
			o += dLast
			i += sLast
		}
		o -= nLast * dLast
		i -= nLast * sLast
		k := last - 1
		for ; k >= 0; k-- {
			idx[k]++
			o += dstStrides[k]
			i += srcStrides[k]
			if idx[k] < dims[k] {
				break
			}
			o -= dims[k] * dstStrides[k]
			i -= dims[k] * srcStrides[k]
			idx[k] = 0
		}
		if k < 0 {
			return
		}
	}
}

// reduceSumRows adds src, a row-major array of dimensions dims, into dst:
// element (i0..in) goes to dst[Σ ik·dstStrides[k]], where dstStrides[k] is
// 0 for the reduced axes. Every output element receives its inputs in the
// operand's flat order, as the element-by-element loop it replaces did, so
// the sums are bit for bit the same; but axes are merged, and the innermost
// one is one tight loop: a row added into dst when kept, a running sum
// when reduced.
func reduceSumRows[T gobackend.PODNumericConstraints](dst, src []T, dims, dstStrides []int) {
	if len(src) == 0 {
		return
	}
	var dimsBuf, stridesBuf [16]int
	d, s := dimsBuf[:0], stridesBuf[:0]
	if len(dims) > len(dimsBuf) {
		d, s = make([]int, 0, len(dims)), make([]int, 0, len(dims))
	}
	for k, n := range dims {
		if n == 1 {
			continue
		}
		if m := len(d); m > 0 && s[m-1] == dstStrides[k]*n {
			// Both reduced (0 == 0·n), or kept and contiguous in dst.
			d[m-1] *= n
			s[m-1] = dstStrides[k]
			continue
		}
		d = append(d, n)
		s = append(s, dstStrides[k])
	}
	rank := len(d)
	if rank == 0 {
		dst[0] += src[0]
		return
	}
	var ss [16]int
	srcStrides := rowMajorStrides(d, ss[:0])
	inner := d[rank-1]
	if s[rank-1] == 0 {
		odometer(d[:rank-1], srcStrides[:rank-1], s[:rank-1], 0, func(o, i int) {
			acc := dst[o]
			for _, v := range src[i : i+inner] {
				acc += v
			}
			dst[o] = acc
		})
		return
	}
	odometer(d[:rank-1], srcStrides[:rank-1], s[:rank-1], 0, func(o, i int) {
		row := dst[o : o+inner]
		for x, v := range src[i : i+inner] {
			row[x] += v
		}
	})
}
