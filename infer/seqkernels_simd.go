//go:build goexperiment.simd && amd64

package infer

import (
	"math"
	"simd/archsimd"
)

// AVX-512 forms of the sequence kernels (see seqkernels.go), used only where
// hasSIMD reports AVX-512.

type f32x16 = archsimd.Float32x16

func bcast(v float32) f32x16 { return archsimd.BroadcastFloat32x16(v) }

func load16(s []float32) f32x16 { return archsimd.LoadFloat32x16Slice(s) }

// expV is expf on 16 lanes. Clamping x to [-104, 89] keeps n finite, and
// VSCALEFPS takes 2^n to 0 or +Inf beyond float32's range; NaN lanes are
// restored at the end.
func expV(x f32x16) f32x16 {
	xc := x.Max(bcast(-104)).Min(bcast(89))
	n := xc.Mul(bcast(log2e)).RoundToEvenScaled(0)
	r := n.MulAdd(bcast(-expLn2Hi), xc)
	r = n.MulAdd(bcast(-expLn2Lo), r)
	p := bcast(expC0).MulAdd(r, bcast(expC1))
	p = p.MulAdd(r, bcast(expC2))
	p = p.MulAdd(r, bcast(expC3))
	p = p.MulAdd(r, bcast(expC4))
	p = p.MulAdd(r, bcast(expC5))
	p = p.MulAdd(r.Mul(r), r.Add(bcast(1)))
	return x.Merge(p.Scale(n), x.IsNaN())
}

func sigmoidV(x f32x16) f32x16 {
	one := bcast(1)
	return one.Div(one.Add(expV(x.Mul(bcast(-1)))))
}

func tanhV(x f32x16) f32x16 {
	one := bcast(1)
	return one.Sub(bcast(2).Div(one.Add(expV(x.Add(x)))))
}

func erfV(x f32x16) f32x16 {
	x = x.Max(bcast(-4)).Min(bcast(4))
	x2 := x.Mul(x)
	p := bcast(-2.72614225801306e-10).MulAdd(x2, bcast(2.77068142495902e-08))
	p = p.MulAdd(x2, bcast(-2.10102402082508e-06))
	p = p.MulAdd(x2, bcast(-5.69250639462346e-05))
	p = p.MulAdd(x2, bcast(-7.34990630326855e-04))
	p = p.MulAdd(x2, bcast(-2.95459980854025e-03))
	p = p.MulAdd(x2, bcast(-1.60960333262415e-02))
	q := bcast(-1.45660718464996e-05).MulAdd(x2, bcast(-2.13374055278905e-04))
	q = q.MulAdd(x2, bcast(-1.68282697438203e-03))
	q = q.MulAdd(x2, bcast(-7.37332916720468e-03))
	q = q.MulAdd(x2, bcast(-1.42647390514189e-02))
	return x.Mul(p).Div(q)
}

func gruUpdateSIMD(h, gx, gh []float32) {
	n := len(h)
	gxr, gxz, gxn := gx[:n], gx[n:2*n], gx[2*n:3*n]
	ghr, ghz, ghn := gh[:n], gh[n:2*n], gh[2*n:3*n]
	one := bcast(1)
	i := 0
	for ; i+16 <= n; i += 16 {
		r := sigmoidV(load16(gxr[i:]).Add(load16(ghr[i:])))
		z := sigmoidV(load16(gxz[i:]).Add(load16(ghz[i:])))
		c := tanhV(r.MulAdd(load16(ghn[i:]), load16(gxn[i:])))
		hv := load16(h[i:])
		one.Sub(z).Mul(c).Add(z.Mul(hv)).StoreSlice(h[i:])
	}
	clearUpper()
	for ; i < n; i++ {
		h[i] = gruElem(h[i], gxr[i], gxz[i], gxn[i], ghr[i], ghz[i], ghn[i])
	}
}

func lstmUpdateSIMD(h, c, g []float32) {
	n := len(h)
	c = c[:n]
	gi, gf, gg, gout := g[:n], g[n:2*n], g[2*n:3*n], g[3*n:4*n]
	i := 0
	for ; i+16 <= n; i += 16 {
		cv := sigmoidV(load16(gf[i:])).Mul(load16(c[i:])).Add(sigmoidV(load16(gi[i:])).Mul(tanhV(load16(gg[i:]))))
		cv.StoreSlice(c[i:])
		sigmoidV(load16(gout[i:])).Mul(tanhV(cv)).StoreSlice(h[i:])
	}
	clearUpper()
	for ; i < n; i++ {
		cv := sigmoidf(gf[i])*c[i] + sigmoidf(gi[i])*tanhf(gg[i])
		c[i] = cv
		h[i] = sigmoidf(gout[i]) * tanhf(cv)
	}
}

func leakyReLUSIMD(x []float32) {
	zero, slope := bcast(0), bcast(leakRate)
	i := 0
	for ; i+16 <= len(x); i += 16 {
		v := load16(x[i:])
		v.Merge(v.Mul(slope), v.Greater(zero)).StoreSlice(x[i:])
	}
	clearUpper()
	for ; i < len(x); i++ {
		if v := x[i]; !(v > 0) {
			x[i] = v * leakRate
		}
	}
}

func geluSIMD(x []float32) {
	half, one, k := bcast(0.5), bcast(1), bcast(1/1.4142135623730951)
	i := 0
	for ; i+16 <= len(x); i += 16 {
		v := load16(x[i:])
		v.Mul(half).Mul(one.Add(erfV(v.Mul(k)))).StoreSlice(x[i:])
	}
	clearUpper()
	for ; i < len(x); i++ {
		x[i] = geluf(x[i])
	}
}

// hsum returns the sum of v's lanes.
func hsum(v f32x16) float32 {
	var a [16]float32
	v.Store(&a)
	clearUpper()
	return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])) +
		((a[8] + a[9]) + (a[10] + a[11])) + ((a[12] + a[13]) + (a[14] + a[15]))
}

func expSubSumSIMD(x []float32, m float32) float32 {
	mv := bcast(m)
	var acc f32x16
	i := 0
	for ; i+16 <= len(x); i += 16 {
		e := expV(load16(x[i:]).Sub(mv))
		e.StoreSlice(x[i:])
		acc = acc.Add(e)
	}
	if i < len(x) {
		// The tail through a full vector (LoadFloat32x16SlicePart would be
		// shorter, but checkptr rejects its pointer conversion).
		var buf [16]float32
		r := copy(buf[:], x[i:])
		e := expV(load16(buf[:]).Sub(mv))
		e.StoreSlice(buf[:])
		copy(x[i:], buf[:r])
		acc = acc.Add(e.Masked(archsimd.Mask32x16FromBits(0xffff >> (16 - r))))
	}
	return hsum(acc)
}

// layerNormSIMD is layerNorm for len(x) a positive multiple of 16.
func layerNormSIMD(y, x, g, b []float32) {
	n := len(x)
	y, g, b = y[:n], g[:n], b[:n]
	var s f32x16
	for i := 0; i < n; i += 16 {
		s = s.Add(load16(x[i:]))
	}
	mu := hsum(s) / float32(n)
	muv := bcast(mu)
	var v2 f32x16
	for i := 0; i < n; i += 16 {
		d := load16(x[i:]).Sub(muv)
		v2 = d.MulAdd(d, v2)
	}
	inv := bcast(1 / float32(math.Sqrt(float64(hsum(v2)/float32(n)+1e-5))))
	for i := 0; i < n; i += 16 {
		load16(x[i:]).Sub(muv).Mul(inv).MulAdd(load16(g[i:]), load16(b[i:])).StoreSlice(y[i:])
	}
	clearUpper()
}

func dotSIMD(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1 f32x16
	i := 0
	for ; i+32 <= len(a); i += 32 {
		s0 = load16(a[i:]).MulAdd(load16(b[i:]), s0)
		s1 = load16(a[i+16:]).MulAdd(load16(b[i+16:]), s1)
	}
	if i+16 <= len(a) {
		s0 = load16(a[i:]).MulAdd(load16(b[i:]), s0)
		i += 16
	}
	s := hsum(s0.Add(s1))
	for ; i < len(a); i++ {
		s += a[i] * b[i]
	}
	return s
}

func normalizeSIMD(dst, x, mean, invStd []float32) {
	n := len(mean)
	dst, x, invStd = dst[:n], x[:n], invStd[:n]
	i := 0
	for ; i+16 <= n; i += 16 {
		load16(x[i:]).Sub(load16(mean[i:])).Mul(load16(invStd[i:])).StoreSlice(dst[i:])
	}
	clearUpper()
	for ; i < n; i++ {
		dst[i] = (x[i] - mean[i]) * invStd[i]
	}
}

// gemmSIMD is gemm for n a positive multiple of 16: rows four at a time
// (each weight row loaded once for four rows) and columns 32 or 16 at a
// time, with the accumulators in registers for the whole pass over k; a
// single row 64 or 16 columns at a time. Go's register allocator uses 16
// vector registers: wider blocks spill (4×64 ran 4× slower).
func gemmSIMD(y []float32, ldy int, x []float32, ldx, m int, w []float32, ldw, k, n int) {
	i := 0
	for ; i+4 <= m; i += 4 {
		x0, x1, x2, x3 := x[i*ldx:i*ldx+k], x[(i+1)*ldx:(i+1)*ldx+k], x[(i+2)*ldx:(i+2)*ldx+k], x[(i+3)*ldx:(i+3)*ldx+k]
		y0, y1, y2, y3 := y[i*ldy:i*ldy+n], y[(i+1)*ldy:(i+1)*ldy+n], y[(i+2)*ldy:(i+2)*ldy+n], y[(i+3)*ldy:(i+3)*ldy+n]
		j := 0
		for ; j+32 <= n; j += 32 {
			gemm4x32(y0[j:j+32], y1[j:j+32], y2[j:j+32], y3[j:j+32], x0, x1, x2, x3, w[j:], ldw)
		}
		for ; j+16 <= n; j += 16 {
			gemm4x16(y0[j:j+16], y1[j:j+16], y2[j:j+16], y3[j:j+16], x0, x1, x2, x3, w[j:], ldw)
		}
	}
	for ; i < m; i++ {
		x0, y0 := x[i*ldx:i*ldx+k], y[i*ldy:i*ldy+n]
		j := 0
		for ; j+64 <= n; j += 64 {
			gemm1x64(y0[j:j+64], x0, w[j:], ldw)
		}
		for ; j+16 <= n; j += 16 {
			gemm1x16(y0[j:j+16], x0, w[j:], ldw)
		}
	}
	clearUpper()
}

func gemm4x32(y0, y1, y2, y3, x0, x1, x2, x3, w []float32, ldw int) {
	k := len(x0)
	x1, x2, x3 = x1[:k], x2[:k], x3[:k]
	y0, y1, y2, y3 = y0[:32], y1[:32], y2[:32], y3[:32]
	a00, a01 := load16(y0[0:]), load16(y0[16:])
	a10, a11 := load16(y1[0:]), load16(y1[16:])
	a20, a21 := load16(y2[0:]), load16(y2[16:])
	a30, a31 := load16(y3[0:]), load16(y3[16:])
	for kk := range k {
		r := w[kk*ldw:]
		r = r[:32:32]
		w0, w1 := load16(r[0:16]), load16(r[16:32])
		b := bcast(x0[kk])
		a00, a01 = w0.MulAdd(b, a00), w1.MulAdd(b, a01)
		b = bcast(x1[kk])
		a10, a11 = w0.MulAdd(b, a10), w1.MulAdd(b, a11)
		b = bcast(x2[kk])
		a20, a21 = w0.MulAdd(b, a20), w1.MulAdd(b, a21)
		b = bcast(x3[kk])
		a30, a31 = w0.MulAdd(b, a30), w1.MulAdd(b, a31)
	}
	a00.StoreSlice(y0[0:])
	a01.StoreSlice(y0[16:])
	a10.StoreSlice(y1[0:])
	a11.StoreSlice(y1[16:])
	a20.StoreSlice(y2[0:])
	a21.StoreSlice(y2[16:])
	a30.StoreSlice(y3[0:])
	a31.StoreSlice(y3[16:])
}

func gemm4x16(y0, y1, y2, y3, x0, x1, x2, x3, w []float32, ldw int) {
	k := len(x0)
	x1, x2, x3 = x1[:k], x2[:k], x3[:k]
	a0, a1, a2, a3 := load16(y0[:16]), load16(y1[:16]), load16(y2[:16]), load16(y3[:16])
	for kk := range k {
		r := w[kk*ldw:]
		w0 := load16(r[:16:16])
		a0 = w0.MulAdd(bcast(x0[kk]), a0)
		a1 = w0.MulAdd(bcast(x1[kk]), a1)
		a2 = w0.MulAdd(bcast(x2[kk]), a2)
		a3 = w0.MulAdd(bcast(x3[kk]), a3)
	}
	a0.StoreSlice(y0[:16])
	a1.StoreSlice(y1[:16])
	a2.StoreSlice(y2[:16])
	a3.StoreSlice(y3[:16])
}

// gemm1x64 is one row: two rows of w per step into two sets of
// accumulators, to keep both FMA pipes busy.
func gemm1x64(y, x, w []float32, ldw int) {
	y = y[:64]
	a0, a1, a2, a3 := load16(y[0:]), load16(y[16:]), load16(y[32:]), load16(y[48:])
	var b0, b1, b2, b3 f32x16
	k := len(x)
	kk := 0
	for ; kk+2 <= k; kk += 2 {
		r := w[kk*ldw:]
		r0 := r[:64:64]
		r1 := r[ldw : ldw+64 : ldw+64]
		x0, x1 := bcast(x[kk]), bcast(x[kk+1])
		a0 = load16(r0[0:16]).MulAdd(x0, a0)
		a1 = load16(r0[16:32]).MulAdd(x0, a1)
		a2 = load16(r0[32:48]).MulAdd(x0, a2)
		a3 = load16(r0[48:64]).MulAdd(x0, a3)
		b0 = load16(r1[0:16]).MulAdd(x1, b0)
		b1 = load16(r1[16:32]).MulAdd(x1, b1)
		b2 = load16(r1[32:48]).MulAdd(x1, b2)
		b3 = load16(r1[48:64]).MulAdd(x1, b3)
	}
	if kk < k {
		r0 := w[kk*ldw:]
		r0 = r0[:64:64]
		x0 := bcast(x[kk])
		a0 = load16(r0[0:16]).MulAdd(x0, a0)
		a1 = load16(r0[16:32]).MulAdd(x0, a1)
		a2 = load16(r0[32:48]).MulAdd(x0, a2)
		a3 = load16(r0[48:64]).MulAdd(x0, a3)
	}
	a0.Add(b0).StoreSlice(y[0:])
	a1.Add(b1).StoreSlice(y[16:])
	a2.Add(b2).StoreSlice(y[32:])
	a3.Add(b3).StoreSlice(y[48:])
}

// gemm1x16 is one row of 16 columns, four rows of w per step.
func gemm1x16(y, x, w []float32, ldw int) {
	a0 := load16(y[:16])
	var a1, a2, a3 f32x16
	k := len(x)
	kk := 0
	for ; kk+4 <= k; kk += 4 {
		r := w[kk*ldw:]
		a0 = load16(r[:16:16]).MulAdd(bcast(x[kk]), a0)
		a1 = load16(r[ldw:ldw+16:ldw+16]).MulAdd(bcast(x[kk+1]), a1)
		a2 = load16(r[2*ldw:2*ldw+16:2*ldw+16]).MulAdd(bcast(x[kk+2]), a2)
		a3 = load16(r[3*ldw:3*ldw+16:3*ldw+16]).MulAdd(bcast(x[kk+3]), a3)
	}
	for ; kk < k; kk++ {
		r := w[kk*ldw:]
		a0 = load16(r[:16:16]).MulAdd(bcast(x[kk]), a0)
	}
	a0.Add(a1).Add(a2.Add(a3)).StoreSlice(y[:16])
}
