package infer

import "math"

// Kernels of the sequence engines (GRU, DeepLOB, transformer): small matrix
// products over several rows, and the elementwise nonlinearities in float32.
// Each has a portable scalar form and, built with GOEXPERIMENT=simd on
// amd64, an AVX-512 form (seqkernels_simd.go) that the engines pick when
// their simd flag is set. Both compute the same formulas; they differ only
// in rounding (fused multiply-adds, summation order).
//
// The nonlinearities are float32 polynomial and rational approximations,
// not calls to package math: exp is Cephes's expf (Moshier), erf the
// rational approximation of Eigen and XLA's CPU backend. Against the float64
// functions, exp and sigmoid are within 2e-7 relative, tanh within 2e-7
// absolute, erf within 5e-7 absolute and GELU within 1e-6 absolute
// (TestSeqActivations).

const (
	log2e    = 1.44269504088896341
	expLn2Hi = 0.693359375 // ln 2 = expLn2Hi + expLn2Lo (Cody-Waite)
	expLn2Lo = -2.12194440e-4
	expMax   = 88.72283905206835  // ln(MaxFloat32)
	expMin   = -87.33654475055310 // ln(smallest normal float32)
	expC0    = 1.9875691500e-4    // Cephes expf polynomial, highest degree first
	expC1    = 1.3981999507e-3
	expC2    = 8.3334519073e-3
	expC3    = 4.1665795894e-2
	expC4    = 1.6666665459e-1
	expC5    = 5.0000001201e-1
	leakRate = 0.01 // DeepLOB's LeakyReLU slope
)

// expf returns e^x in float32: x = n·ln2 + r with |r| ≤ ln2/2, e^r from
// Cephes's degree-5 polynomial, scaled by 2^n. It returns 0 below the
// smallest normal result, +Inf above the largest and NaN for NaN.
func expf(x float32) float32 {
	switch {
	case x > expMax:
		return float32(math.Inf(1))
	case x < expMin:
		return 0
	case x != x:
		return x
	}
	n := float32(math.Floor(float64(x*log2e) + 0.5))
	r := x - n*expLn2Hi
	r -= n * expLn2Lo
	p := float32(expC0)
	p = p*r + expC1
	p = p*r + expC2
	p = p*r + expC3
	p = p*r + expC4
	p = p*r + expC5
	p = p*(r*r) + r + 1
	return p * math.Float32frombits(uint32(int32(n)+127)<<23)
}

// sigmoidf returns 1/(1+e^-x).
func sigmoidf(x float32) float32 { return 1 / (1 + expf(-x)) }

// tanhf returns tanh x as 1 - 2/(1+e^2x): exact at ±Inf, within 2e-7
// absolute near 0.
func tanhf(x float32) float32 { return 1 - 2/(1+expf(2*x)) }

// erff returns erf x by the rational approximation that Eigen and XLA's CPU
// backend use for float32, x clamped to [-4, 4] (beyond which erf is ±1 in
// float32).
func erff(x float32) float32 {
	if x != x {
		return x
	}
	x = min(max(x, -4), 4)
	x2 := x * x
	p := float32(-2.72614225801306e-10)
	p = p*x2 + 2.77068142495902e-08
	p = p*x2 + -2.10102402082508e-06
	p = p*x2 + -5.69250639462346e-05
	p = p*x2 + -7.34990630326855e-04
	p = p*x2 + -2.95459980854025e-03
	p = p*x2 + -1.60960333262415e-02
	q := float32(-1.45660718464996e-05)
	q = q*x2 + -2.13374055278905e-04
	q = q*x2 + -1.68282697438203e-03
	q = q*x2 + -7.37332916720468e-03
	q = q*x2 + -1.42647390514189e-02
	return x * p / q
}

// geluf returns the exact (erf) GELU, x/2·(1 + erf(x/√2)).
func geluf(x float32) float32 { return x * 0.5 * (1 + erff(x*(1/math.Sqrt2))) }

// gruUpdateScalar is gruUpdate's portable form.
func gruUpdateScalar(h, gx, gh []float32) {
	n := len(h)
	gxr, gxz, gxn := gx[:n], gx[n:2*n], gx[2*n:3*n]
	ghr, ghz, ghn := gh[:n], gh[n:2*n], gh[2*n:3*n]
	for i, hv := range h {
		h[i] = gruElem(hv, gxr[i], gxz[i], gxn[i], ghr[i], ghz[i], ghn[i])
	}
}

// gruElem is one unit of gruUpdate: the next state from the previous one,
// h, and the unit's three gate pre-activations from x (xr, xz, xn) and from
// h (hr, hz, hn).
func gruElem(h, xr, xz, xn, hr, hz, hn float32) float32 {
	r := sigmoidf(xr + hr)
	z := sigmoidf(xz + hz)
	c := tanhf(xn + r*hn)
	return (1-z)*c + z*h
}

// gruUpdate sets h to the GRU cell's next state given gx = x·wx + bx and
// gh = h·wh + bh ([3H] each, gates r, z, n), as model.GRU's cell:
// r = σ(gx_r+gh_r), z = σ(gx_z+gh_z), n = tanh(gx_n + r⊙gh_n),
// h' = (1-z)⊙n + z⊙h.
func gruUpdate(simd bool, h, gx, gh []float32) {
	if simd {
		gruUpdateSIMD(h, gx, gh)
		return
	}
	gruUpdateScalar(h, gx, gh)
}

// lstmUpdateScalar is lstmUpdate's portable form.
func lstmUpdateScalar(h, c, g []float32) {
	n := len(h)
	c = c[:n]
	gi, gf, gg, gout := g[:n], g[n:2*n], g[2*n:3*n], g[3*n:4*n]
	for i := range h {
		cv := sigmoidf(gf[i])*c[i] + sigmoidf(gi[i])*tanhf(gg[i])
		c[i] = cv
		h[i] = sigmoidf(gout[i]) * tanhf(cv)
	}
}

// lstmUpdate sets the LSTM's state (h, c) from the gates g = x·wx + h·wh + b
// ([4H], order i, f, g, o), as model.DeepLOB's LSTM:
// c' = σ(f)⊙c + σ(i)⊙tanh(g), h' = σ(o)⊙tanh(c').
func lstmUpdate(simd bool, h, c, g []float32) {
	if simd {
		lstmUpdateSIMD(h, c, g)
		return
	}
	lstmUpdateScalar(h, c, g)
}

// leakyReLU applies x·(1 if x > 0 else 0.01) in place.
func leakyReLU(simd bool, x []float32) {
	if simd {
		leakyReLUSIMD(x)
		return
	}
	for i, v := range x {
		if !(v > 0) {
			x[i] = v * leakRate
		}
	}
}

// geluInPlace applies the exact GELU in place.
func geluInPlace(simd bool, x []float32) {
	if simd {
		geluSIMD(x)
		return
	}
	for i, v := range x {
		x[i] = geluf(v)
	}
}

// softmaxInPlace replaces x by softmax(x) = e^(x-max)/Σ e^(x-max).
func softmaxInPlace(simd bool, x []float32) {
	if len(x) == 0 {
		return
	}
	m := x[0]
	for _, v := range x[1:] {
		m = max(m, v)
	}
	var s float32
	if simd {
		s = expSubSumSIMD(x, m)
	} else {
		for i, v := range x {
			e := expf(v - m)
			x[i] = e
			s += e
		}
	}
	inv := 1 / s
	for i := range x {
		x[i] *= inv
	}
}

// dotf returns the dot product of a and b[:len(a)].
func dotf(simd bool, a, b []float32) float32 {
	if simd && len(a) >= 16 {
		return dotSIMD(a, b)
	}
	return dot8(a, b)
}

// gemm adds x·w to y for m rows: y[i*ldy : i*ldy+n] += x[i*ldx : i*ldx+k] · w
// for i < m, where w is [k, n] with rows ldw apart (so w may be a column
// range of a wider matrix). With simd, the columns are done 64, 32 and 16 at
// a time and any remainder by the scalar kernel.
func gemm(simd bool, y []float32, ldy int, x []float32, ldx, m int, w []float32, ldw, k, n int) {
	if m == 0 || n == 0 {
		return
	}
	c := 0
	if simd {
		c = n / 16 * 16
		if c > 0 {
			gemmSIMD(y, ldy, x, ldx, m, w, ldw, k, c)
		}
	}
	if c < n {
		for i := range m {
			accumDense(y[i*ldy+c:i*ldy+n], x[i*ldx:i*ldx+k], w, ldw, c)
		}
	}
}

// linearRows sets y = x·w + b for m rows (strides as gemm's; w is [k, n]
// with rows ldw apart, b has n values).
func linearRows(simd bool, y []float32, ldy int, x []float32, ldx, m int, w []float32, ldw, k, n int, b []float32) {
	for i := range m {
		copy(y[i*ldy:i*ldy+n], b[:n])
	}
	gemm(simd, y, ldy, x, ldx, m, w, ldw, k, n)
}

// layerNormInto sets y = (x-μ)/√(σ²+1e-5)·g + b over x's values (μ, σ²
// their mean and variance), as model.Transformer's layer norms.
func layerNormInto(simd bool, y, x, g, b []float32) {
	if simd && len(x) > 0 && len(x)%16 == 0 {
		layerNormSIMD(y, x, g, b)
		return
	}
	layerNorm(y, x, g, b)
}

// layerNorm is layerNormInto's portable form.
func layerNorm(y, x, g, b []float32) {
	n := len(x)
	y, g, b = y[:n], g[:n], b[:n]
	var s float32
	for _, v := range x {
		s += v
	}
	mu := s / float32(n)
	var v2 float32
	for _, v := range x {
		d := v - mu
		v2 += d * d
	}
	inv := 1 / float32(math.Sqrt(float64(v2/float32(n)+1e-5)))
	for i, v := range x {
		y[i] = (v-mu)*inv*g[i] + b[i]
	}
}

// normalize sets dst = (x-mean)·invStd elementwise.
func normalize(dst, x, mean, invStd []float32) {
	n := len(mean)
	dst, x, invStd = dst[:n], x[:n], invStd[:n]
	for i, m := range mean {
		dst[i] = (x[i] - m) * invStd[i]
	}
}

// inverse returns 1/v for each v of s.
func inverse(s []float32) []float32 {
	out := make([]float32, len(s))
	for i, v := range s {
		out[i] = 1 / v
	}
	return out
}

// denseOut sets y = b + x·wᵀ for a few outputs, wt [len(y), len(x)] holding
// the weights transposed: one dot product per output.
func denseOut(simd bool, y, x, wt, b []float32) {
	n := len(x)
	b = b[:len(y)]
	for o := range y {
		y[o] = b[o] + dotf(simd, x, wt[o*n:(o+1)*n])
	}
}

// normalizeInto sets dst = (x-mean)·invStd elementwise.
func normalizeInto(simd bool, dst, x, mean, invStd []float32) {
	if simd {
		normalizeSIMD(dst, x, mean, invStd)
		return
	}
	normalize(dst, x, mean, invStd)
}
