package infer

// Scalar float32 kernels. Go does not vectorise, so these aim at keeping the
// FP pipes busy: several independent rows per pass, slices re-sliced to a
// common length so the compiler drops bounds checks in the inner loops, and
// no loop-carried dependency longer than one add. See kernels_test.go for the
// variants they were measured against.

// axpy8 adds a0*w0 + ... + a7*w7 to y elementwise. Each w must be at least as
// long as y.
func axpy8(y, w0, w1, w2, w3, w4, w5, w6, w7 []float32, a0, a1, a2, a3, a4, a5, a6, a7 float32) {
	n := len(y)
	w0, w1, w2, w3 = w0[:n], w1[:n], w2[:n], w3[:n]
	w4, w5, w6, w7 = w4[:n], w5[:n], w6[:n], w7[:n]
	for j := range y {
		y[j] += ((a0*w0[j] + a1*w1[j]) + (a2*w2[j] + a3*w3[j])) +
			((a4*w4[j] + a5*w5[j]) + (a6*w6[j] + a7*w7[j]))
	}
}

// axpy4 adds a0*w0 + ... + a3*w3 to y elementwise.
func axpy4(y, w0, w1, w2, w3 []float32, a0, a1, a2, a3 float32) {
	n := len(y)
	w0, w1, w2, w3 = w0[:n], w1[:n], w2[:n], w3[:n]
	for j := range y {
		y[j] += (a0*w0[j] + a1*w1[j]) + (a2*w2[j] + a3*w3[j])
	}
}

// axpy1 adds a*w to y elementwise.
func axpy1(y, w []float32, a float32) {
	w = w[:len(y)]
	for j := range y {
		y[j] += a * w[j]
	}
}

// accumDense adds x @ w to y, where w is [len(x), stride] row-major and only
// the first len(y) columns starting at column off are used:
// y[j] += Σ_i x[i] * w[i*stride + off + j].
func accumDense(y, x, w []float32, stride, off int) {
	n := len(y)
	i := 0
	for ; i+8 <= len(x); i += 8 {
		r := w[i*stride+off:]
		axpy8(y, r, r[stride:], r[2*stride:], r[3*stride:], r[4*stride:], r[5*stride:], r[6*stride:], r[7*stride:n+7*stride],
			x[i], x[i+1], x[i+2], x[i+3], x[i+4], x[i+5], x[i+6], x[i+7])
	}
	if i+4 <= len(x) {
		r := w[i*stride+off:]
		axpy4(y, r, r[stride:], r[2*stride:], r[3*stride:n+3*stride], x[i], x[i+1], x[i+2], x[i+3])
		i += 4
	}
	for ; i < len(x); i++ {
		axpy1(y, w[i*stride+off:], x[i])
	}
}

// accumSparse adds Σ_k vals[k] * w[idx[k]*stride+off : idx[k]*stride+off+len(y)]
// to y: the product of a sparse vector with the columns [off, off+len(y)) of
// a row-major [*, stride] matrix.
func accumSparse(y, vals []float32, idx []int32, w []float32, stride, off int) {
	n := len(y)
	idx = idx[:len(vals)]
	k := 0
	for ; k+8 <= len(vals); k += 8 {
		v := vals[k : k+8 : k+8]
		ix := idx[k : k+8 : k+8]
		axpy8(y,
			w[int(ix[0])*stride+off:], w[int(ix[1])*stride+off:], w[int(ix[2])*stride+off:], w[int(ix[3])*stride+off:],
			w[int(ix[4])*stride+off:], w[int(ix[5])*stride+off:], w[int(ix[6])*stride+off:], w[int(ix[7])*stride+off:][:n],
			v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7])
	}
	if k+4 <= len(vals) {
		axpy4(y, w[int(idx[k])*stride+off:], w[int(idx[k+1])*stride+off:], w[int(idx[k+2])*stride+off:], w[int(idx[k+3])*stride+off:],
			vals[k], vals[k+1], vals[k+2], vals[k+3])
		k += 4
	}
	for ; k < len(vals); k++ {
		axpy1(y, w[int(idx[k])*stride+off:], vals[k])
	}
}

// compactReLU writes the entries of relu(x) that are not zero to vals, with
// their indices to idx, and returns how many there are. It is branch-free,
// since which units are active is unpredictable. NaN is kept, so it
// propagates to the logits as it would through max(x, 0).
func compactReLU(x, vals []float32, idx []int32) int {
	vals, idx = vals[:len(x)], idx[:len(x)]
	n := 0
	for i, v := range x {
		vals[n] = v // n <= i: always in range
		idx[n] = int32(i)
		if !(v <= 0) {
			n++
		}
	}
	return n
}

// dot4 returns the dot products of x with w0..w3, each at least len(x) long.
func dot4(x, w0, w1, w2, w3 []float32) (s0, s1, s2, s3 float32) {
	n := len(x)
	w0, w1, w2, w3 = w0[:n], w1[:n], w2[:n], w3[:n]
	for i, xi := range x {
		s0 += xi * w0[i]
		s1 += xi * w1[i]
		s2 += xi * w2[i]
		s3 += xi * w3[i]
	}
	return s0, s1, s2, s3
}

// dot8 returns the dot product of x and w (at least len(x) long) using eight
// accumulators.
func dot8(x, w []float32) float32 {
	w = w[:len(x)]
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	i := 0
	for ; i+8 <= len(x); i += 8 {
		xx := x[i : i+8 : i+8]
		ww := w[i : i+8 : i+8]
		s0 += xx[0] * ww[0]
		s1 += xx[1] * ww[1]
		s2 += xx[2] * ww[2]
		s3 += xx[3] * ww[3]
		s4 += xx[4] * ww[4]
		s5 += xx[5] * ww[5]
		s6 += xx[6] * ww[6]
		s7 += xx[7] * ww[7]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * w[i]
	}
	return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
}

// matVecTSparse sets y = b + v @ wᵀ where v is the sparse vector with
// v[idx[k]] = vals[k] and wt is [len(y), in] row-major: one gathered dot
// product per output.
func matVecTSparse(y, vals []float32, idx []int32, wt, b []float32, in int) {
	idx = idx[:len(vals)]
	b = b[:len(y)]
	for o := range y {
		r := wt[o*in : (o+1)*in]
		var s0, s1, s2, s3 float32
		k := 0
		for ; k+4 <= len(vals); k += 4 {
			v := vals[k : k+4 : k+4]
			ix := idx[k : k+4 : k+4]
			s0 += v[0] * r[ix[0]]
			s1 += v[1] * r[ix[1]]
			s2 += v[2] * r[ix[2]]
			s3 += v[3] * r[ix[3]]
		}
		for ; k < len(vals); k++ {
			s0 += vals[k] * r[idx[k]]
		}
		y[o] = b[o] + ((s0 + s1) + (s2 + s3))
	}
}

// matVecT sets y = b + x @ wᵀ where wt is [len(y), len(x)] row-major (the
// transposed weights): one dot product per output, four at a time.
func matVecT(y, x, wt, b []float32) {
	in := len(x)
	b = b[:len(y)]
	o := 0
	for ; o+4 <= len(y); o += 4 {
		r := wt[o*in:]
		s0, s1, s2, s3 := dot4(x, r, r[in:], r[2*in:], r[3*in:4*in])
		y[o], y[o+1], y[o+2], y[o+3] = b[o]+s0, b[o+1]+s1, b[o+2]+s2, b[o+3]+s3
	}
	for ; o < len(y); o++ {
		y[o] = b[o] + dot8(x, wt[o*in:])
	}
}
