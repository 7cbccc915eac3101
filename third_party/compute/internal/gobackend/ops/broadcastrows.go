// Copyright 2026 The gallop authors. SPDX-License-Identifier: Apache-2.0
//
// Added by gallop (see GALLOP.md at the module root): Add, Sub, Mul and Div of an
// array and a broadcast one (a bias over rows, a value per row) row by row,
// instead of through the zipped broadcast iterator's per-element indices.

package ops

import (
	"github.com/gomlx/compute/internal/gobackend"
	"github.com/gomlx/compute/shapes"
)

// broadcastRows reports how small broadcasts to out (same rank): leading
// when small's axes are 1 up to some axis and out's from there on, so
// small repeats for every row of inner = len(small) elements; trailing
// when small's axes are out's up to some axis and 1 after it, so each
// element of small covers a row of inner elements. ok is false for any
// other pattern (and when small has one element: the scalar case).
func broadcastRows(small, out shapes.Shape) (leading bool, inner int, ok bool) {
	rank := out.Rank()
	if small.Rank() != rank || rank == 0 {
		return false, 0, false
	}
	first, last := -1, -1
	for k, d := range small.Dimensions {
		if d != 1 {
			if first < 0 {
				first = k
			}
			last = k
		}
	}
	if first < 0 {
		return false, 0, false
	}
	same := func(from, to int) bool {
		for k := from; k <= to; k++ {
			if small.Dimensions[k] != out.Dimensions[k] {
				return false
			}
		}
		return true
	}
	if same(first, rank-1) {
		return true, small.Size(), true
	}
	if same(0, last) {
		inner = 1
		for k := last + 1; k < rank; k++ {
			inner *= out.Dimensions[k]
		}
		return false, inner, true
	}
	return false, 0, false
}

// broadcastRowsAdd computes output = lhs + rhs when one side has the
// output's shape and the other broadcasts as broadcastRows describes, and
// reports whether it did. Each element is the same lhs + rhs, operands in
// their order.
func broadcastRowsAdd[T gobackend.PODNumericConstraints](lhs, rhs, output []T, lhsShape, rhsShape, outputShape shapes.Shape) bool {
	smallIsRHS := lhsShape.Equal(outputShape)
	small := rhsShape
	if !smallIsRHS {
		if !rhsShape.Equal(outputShape) {
			return false
		}
		small = lhsShape
	}
	leading, inner, ok := broadcastRows(small, outputShape)
	if !ok || inner == 0 {
		return false
	}
	n := len(output)
	switch {
	case leading && smallIsRHS:
		s := rhs[:inner]
		for r := 0; r < n; r += inner {
			o, a := output[r:r+inner], lhs[r:r+inner]
			for c := range o {
				o[c] = a[c] + s[c]
			}
		}
	case leading:
		s := lhs[:inner]
		for r := 0; r < n; r += inner {
			o, b := output[r:r+inner], rhs[r:r+inner]
			for c := range o {
				o[c] = s[c] + b[c]
			}
		}
	case smallIsRHS:
		for i, r := 0, 0; r < n; i, r = i+1, r+inner {
			o, a, v := output[r:r+inner], lhs[r:r+inner], rhs[i]
			for c := range o {
				o[c] = a[c] + v
			}
		}
	default:
		for i, r := 0, 0; r < n; i, r = i+1, r+inner {
			o, b, v := output[r:r+inner], rhs[r:r+inner], lhs[i]
			for c := range o {
				o[c] = v + b[c]
			}
		}
	}
	return true
}

// broadcastRowsSub computes output = lhs - rhs when one side has the
// output's shape and the other broadcasts as broadcastRows describes, and
// reports whether it did. Each element is the same lhs - rhs, operands in
// their order.
func broadcastRowsSub[T gobackend.PODNumericConstraints](lhs, rhs, output []T, lhsShape, rhsShape, outputShape shapes.Shape) bool {
	smallIsRHS := lhsShape.Equal(outputShape)
	small := rhsShape
	if !smallIsRHS {
		if !rhsShape.Equal(outputShape) {
			return false
		}
		small = lhsShape
	}
	leading, inner, ok := broadcastRows(small, outputShape)
	if !ok || inner == 0 {
		return false
	}
	n := len(output)
	switch {
	case leading && smallIsRHS:
		s := rhs[:inner]
		for r := 0; r < n; r += inner {
			o, a := output[r:r+inner], lhs[r:r+inner]
			for c := range o {
				o[c] = a[c] - s[c]
			}
		}
	case leading:
		s := lhs[:inner]
		for r := 0; r < n; r += inner {
			o, b := output[r:r+inner], rhs[r:r+inner]
			for c := range o {
				o[c] = s[c] - b[c]
			}
		}
	case smallIsRHS:
		for i, r := 0, 0; r < n; i, r = i+1, r+inner {
			o, a, v := output[r:r+inner], lhs[r:r+inner], rhs[i]
			for c := range o {
				o[c] = a[c] - v
			}
		}
	default:
		for i, r := 0, 0; r < n; i, r = i+1, r+inner {
			o, b, v := output[r:r+inner], rhs[r:r+inner], lhs[i]
			for c := range o {
				o[c] = v - b[c]
			}
		}
	}
	return true
}

// broadcastRowsMul computes output = lhs * rhs when one side has the
// output's shape and the other broadcasts as broadcastRows describes, and
// reports whether it did. Each element is the same lhs * rhs, operands in
// their order.
func broadcastRowsMul[T gobackend.PODNumericConstraints](lhs, rhs, output []T, lhsShape, rhsShape, outputShape shapes.Shape) bool {
	smallIsRHS := lhsShape.Equal(outputShape)
	small := rhsShape
	if !smallIsRHS {
		if !rhsShape.Equal(outputShape) {
			return false
		}
		small = lhsShape
	}
	leading, inner, ok := broadcastRows(small, outputShape)
	if !ok || inner == 0 {
		return false
	}
	n := len(output)
	switch {
	case leading && smallIsRHS:
		s := rhs[:inner]
		for r := 0; r < n; r += inner {
			o, a := output[r:r+inner], lhs[r:r+inner]
			for c := range o {
				o[c] = a[c] * s[c]
			}
		}
	case leading:
		s := lhs[:inner]
		for r := 0; r < n; r += inner {
			o, b := output[r:r+inner], rhs[r:r+inner]
			for c := range o {
				o[c] = s[c] * b[c]
			}
		}
	case smallIsRHS:
		for i, r := 0, 0; r < n; i, r = i+1, r+inner {
			o, a, v := output[r:r+inner], lhs[r:r+inner], rhs[i]
			for c := range o {
				o[c] = a[c] * v
			}
		}
	default:
		for i, r := 0, 0; r < n; i, r = i+1, r+inner {
			o, b, v := output[r:r+inner], rhs[r:r+inner], lhs[i]
			for c := range o {
				o[c] = v * b[c]
			}
		}
	}
	return true
}

// broadcastRowsDiv computes output = lhs / rhs when one side has the
// output's shape and the other broadcasts as broadcastRows describes, and
// reports whether it did. Each element is the same lhs / rhs, operands in
// their order.
func broadcastRowsDiv[T gobackend.PODNumericConstraints](lhs, rhs, output []T, lhsShape, rhsShape, outputShape shapes.Shape) bool {
	smallIsRHS := lhsShape.Equal(outputShape)
	small := rhsShape
	if !smallIsRHS {
		if !rhsShape.Equal(outputShape) {
			return false
		}
		small = lhsShape
	}
	leading, inner, ok := broadcastRows(small, outputShape)
	if !ok || inner == 0 {
		return false
	}
	n := len(output)
	switch {
	case leading && smallIsRHS:
		s := rhs[:inner]
		for r := 0; r < n; r += inner {
			o, a := output[r:r+inner], lhs[r:r+inner]
			for c := range o {
				o[c] = a[c] / s[c]
			}
		}
	case leading:
		s := lhs[:inner]
		for r := 0; r < n; r += inner {
			o, b := output[r:r+inner], rhs[r:r+inner]
			for c := range o {
				o[c] = s[c] / b[c]
			}
		}
	case smallIsRHS:
		for i, r := 0, 0; r < n; i, r = i+1, r+inner {
			o, a, v := output[r:r+inner], lhs[r:r+inner], rhs[i]
			for c := range o {
				o[c] = a[c] / v
			}
		}
	default:
		for i, r := 0, 0; r < n; i, r = i+1, r+inner {
			o, b, v := output[r:r+inner], rhs[r:r+inner], lhs[i]
			for c := range o {
				o[c] = v / b[c]
			}
		}
	}
	return true
}
