package infer

import (
	"fmt"
	"math"
)

// Int8 layers. An MLP built with WeightsInt8 keeps every layer but the
// output layer as int8 weights with one float32 scale per output column.
// A hidden layer (0 < l < last) runs on its ReLU'd input quantised to uint8
// with one scale per evaluation:
//
//	sw[j] = max_i |W[i,j]| / 127          Wq[i,j] = round(W[i,j] / sw[j]) ∈ [-127, 127]
//	sx    = max_i relu(x[i]) / 255        xq[i]   = round(relu(x[i]) / sx) ∈ [0, 255]
//	y[j]  = b[j] + sx·sw[j]·Σ_i xq[i]·Wq[i,j]   (the sum exact in int32)
//
// Forward runs layer 0 in int8 too, on its signed input (the normalised
// window) with a zero point of 128:
//
//	sx = max_i |x[i]| / 127               xq[i] = round(x[i] / sx) + 128 ∈ [1, 255]
//	y[j] = b[j] + sx·sw[j]·(Σ_i xq[i]·Wq[i,j] - 128·Σ_i Wq[i,j])
//
// A signed input beyond ±int8Clip (a normalised feature more than that
// many standard deviations out) would coarsen every other input's step, so
// such outliers are taken out of the int8 product (quantised to the zero
// point) and added in float32, row by row: the mixed-precision
// decomposition of LLM.int8(). Streams run layer 0's contributions of an
// event to later windows this way, each event quantised with its own
// scale; an event's own contribution to the window it completes stays
// float32. The output layer stays float32 so
// that the logits carry no extra rounding. On CPUs with AVX-512 VNNI the
// products run as VPDPBUSD (64 multiply-adds an instruction, 4× an fp32
// FMA's, on a quarter of the bytes); elsewhere as portable Go with the same
// integer sums.

// qdense is one int8 layer, laid out for vnniGemv.
type qdense struct {
	in, out int
	groups  int // input groups of 4, padded to an even count
	tiles   int // output tiles of 64
	// w holds Wq packed tile by tile (64 output columns), each tile group
	// by group (4 inputs), each group as 4 accumulators of 16 columns of 4
	// bytes: w[((t*groups+g)*4+a)*64 + l*4 + k] = Wq[4g+k, 64t+16a+l].
	// Padding rows and columns are zero.
	w     []byte
	scale []float32 // sw, [tiles*64], 0 in the padding
	b     []float32 // bias, [tiles*64], 0 in the padding
	// signed layers take any input, with zero point 128; corr[j] is
	// 128·Σ_i Wq[i,j] for them and 0 otherwise.
	signed bool
	corr   []int32
	// wf, for signed layers, is W in float32 [in, tiles*64], for the
	// outlier rows.
	wf   []float32
	vnni bool
}

// int8Clip is the largest |input| a signed int8 layer quantises; larger
// inputs go through the float32 rows.
const int8Clip = 6

// maxInt8Inputs bounds a layer's inputs so that its int32 sums cannot
// overflow: 255·127·in < 2^31.
const maxInt8Inputs = 65536

func newQDense(w []float32, b []float32, in, out int, signed, vnni bool) (*qdense, error) {
	if in > maxInt8Inputs {
		return nil, fmt.Errorf("infer: int8 layer with %d inputs, at most %d", in, maxInt8Inputs)
	}
	q := &qdense{in: in, out: out, groups: (in + 7) / 8 * 2, tiles: (out + 63) / 64, signed: signed, vnni: vnni}
	q.w = make([]byte, q.tiles*q.groups*256)
	q.scale = make([]float32, q.tiles*64)
	q.b = make([]float32, q.tiles*64)
	q.corr = make([]int32, q.tiles*64)
	copy(q.b, b)
	if signed {
		n := q.tiles * 64
		q.wf = make([]float32, in*n)
		for i := range in {
			copy(q.wf[i*n:i*n+out], w[i*out:(i+1)*out])
		}
	}
	for j := range out {
		var m float32
		for i := range in {
			m = max(m, abs32(w[i*out+j]))
		}
		if m == 0 {
			continue // an all-zero column: Wq and its scale stay 0
		}
		s := m / 127
		q.scale[j] = s
		t, a, l := j/64, j%64/16, j%16
		for i := range in {
			g, k := i/4, i%4
			v := int8(max(-127, min(127, math.RoundToEven(float64(w[i*out+j]/s)))))
			q.w[((t*q.groups+g)*4+a)*64+l*4+k] = byte(v)
			if signed {
				q.corr[j] += 128 * int32(v)
			}
		}
	}
	return q, nil
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

// apply sets y[:tiles*64] to the layer's pre-activation output for input
// x[:in] (ReLU'd here unless the layer is signed). xq, acc and outl are
// working memory of at least groups*4, tiles*64 and in elements; the bytes
// of xq past in must be 0.
func (q *qdense) apply(y, x []float32, xq []byte, acc, outl []int32) {
	y = y[:q.tiles*64]
	sx, no := q.sums(x, xq, acc, outl)
	copy(y, q.b)
	q.addTo(y, x, acc, 0, sx, outl[:no])
}

// addTo adds output columns [off, off+len(y)) of the product whose integer
// sums, input scale sx and outlier inputs outl sums returned, to y (NaN
// throughout when sx is). off must be a multiple of 16.
func (q *qdense) addTo(y, x []float32, acc []int32, off int, sx float32, outl []int32) {
	switch {
	case sx == 0:
		return
	case sx != sx:
		for j := range y {
			y[j] = float32(math.NaN())
		}
		return
	}
	n := 0
	if q.vnni {
		n = len(y) &^ 15
		if n > 0 {
			dequantAdd16(&y[0], &acc[off], &q.corr[off], &q.scale[off], n, sx)
		}
	}
	for j := n; j < len(y); j++ {
		y[j] = float32(math.FMA(float64(float32(acc[off+j]-q.corr[off+j])*q.scale[off+j]), float64(sx), float64(y[j])))
	}
	q.addOutliers(y, x, outl, off)
}

// addOutliers adds the float32 rows of the outlier inputs outl, columns
// [off, off+len(y)), to y.
func (q *qdense) addOutliers(y, x []float32, outl []int32, off int) {
	stride := q.tiles * 64
	for _, i := range outl {
		v, r := x[i], q.wf[int(i)*stride+off:][:len(y)]
		for j := range y {
			y[j] += v * r[j]
		}
	}
}

// sums quantises x[:in] into xq and sets acc[:tiles*64] to the integer
// products. It returns the input scale sx: 0 when every input is inactive
// (acc is then not set), NaN when x holds a NaN or an infinity; and, for a
// signed layer, the number of outlier inputs (|x| > int8Clip), whose
// positions it writes to outl and whose bytes it sets to the zero point.
func (q *qdense) sums(x []float32, xq []byte, acc, outl []int32) (sx float32, outliers int) {
	x, acc = x[:q.in], acc[:q.tiles*64]
	xq = xq[:q.groups*4]
	m := q.inputMax(x)
	switch {
	case m == 0:
		return 0, 0
	case !(m <= math.MaxFloat32):
		return float32(math.NaN()), 0
	}
	levels := float32(255)
	if q.signed {
		levels = 127
		m = min(m, int8Clip)
	}
	inv := levels / m
	sx = m / levels
	n := 0
	if q.vnni {
		n = q.in &^ 15
		if n > 0 && q.signed {
			quantOff16(&xq[0], &x[0], n, inv)
		} else if n > 0 {
			quantReLU16(&xq[0], &x[0], n, inv)
		}
	}
	for i := n; i < q.in; i++ {
		if q.signed {
			xq[i] = quantOff(x[i], inv)
		} else {
			xq[i] = quantU8(x[i], inv)
		}
	}
	if q.signed && m == int8Clip {
		for i, v := range x {
			if abs32(v) > int8Clip {
				xq[i] = 128
				outl[outliers] = int32(i)
				outliers++
			}
		}
	}
	if q.vnni {
		vnniGemv(&acc[0], &xq[0], &q.w[0], q.groups, q.tiles)
	} else {
		gemvU8S8(acc, xq, q.w, q.groups, q.tiles)
	}
	return sx, outliers
}

// maxReLU16 returns max(0, src[:n]...) and absMax16 max |src[:n]|, NaN if
// they hold a NaN; n a multiple of 16 (VNNI CPUs only).
func maxReLU16(src *float32, n int) float32 { return maxMask16(src, n, 0xffffffff) }
func absMax16(src *float32, n int) float32  { return maxMask16(src, n, 0x7fffffff) }

// inputMax returns the largest input quantised to the top level: max(0,
// x...) for a ReLU'd layer, max |x| for a signed one; NaN if x holds a NaN.
func (q *qdense) inputMax(x []float32) float32 {
	var m float32
	n := 0
	if q.vnni {
		n = len(x) &^ 15
		if n > 0 && q.signed {
			m = absMax16(&x[0], n)
		} else if n > 0 {
			m = maxReLU16(&x[0], n)
		}
	}
	for _, v := range x[n:] {
		if v != v {
			return v
		}
		if q.signed {
			v = abs32(v)
		}
		m = max(m, v)
	}
	return m
}

// quantOff is one element of quantOff16: round(v·inv) + 128, rounding to
// nearest even, for |v·inv| <= 127.
func quantOff(v, inv float32) byte {
	return byte(max(0, min(255, math.RoundToEven(float64(v*inv))+128)))
}

// quantU8 is one element of quantReLU16: round(max(v, 0)·inv) to nearest
// even, saturated to 255.
func quantU8(v, inv float32) byte {
	p := math.RoundToEven(float64(max(v, 0) * inv))
	if !(p <= 255) {
		return 255
	}
	return byte(p)
}

// gemvU8S8 is vnniGemv in portable Go: the same packed layout and the same
// exact int32 sums.
func gemvU8S8(acc []int32, xq, w []byte, groups, tiles int) {
	for t := range tiles {
		a := acc[t*64 : t*64+64]
		clear(a)
		tw := w[t*groups*256 : (t+1)*groups*256]
		for g := range groups {
			x0, x1, x2, x3 := int32(xq[4*g]), int32(xq[4*g+1]), int32(xq[4*g+2]), int32(xq[4*g+3])
			gw := tw[g*256 : g*256+256]
			for c := range 64 {
				r := gw[c*4 : c*4+4]
				a[c] += x0*int32(int8(r[0])) + x1*int32(int8(r[1])) + x2*int32(int8(r[2])) + x3*int32(int8(r[3]))
			}
		}
	}
}
