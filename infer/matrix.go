package infer

// The SIMD kernels work on column tiles of tileWide columns, then one of
// tileNarrow if that many remain.
const (
	tileWide   = 128
	tileNarrow = 64
)

// mat is a weight matrix W [in, out] applied as y += x @ W, row by row
// (y += x[i]·W[i,:]), which lets sparse inputs skip their zero rows.
type mat struct {
	in, out int
	w       []float32 // row-major [in, out]; nil when the SIMD tiles cover every column
	// tiles holds columns [0, simdCols) for the SIMD kernels, as column
	// tiles of tileWide columns and then at most one of tileNarrow: the tile
	// of columns [j, j+c) is the row-major [in, c] block starting at
	// tiles[j*in], so a pass over a tile reads it contiguously. The other
	// columns, and all of them without SIMD, go through the scalar kernels
	// on w.
	tiles    []float32
	simdCols int
}

// newMat copies the row-major [in, out] matrix w, packing it for the SIMD
// kernels if simd is set.
func newMat(w []float32, in, out int, simd bool) mat {
	m := mat{in: in, out: out}
	if simd {
		m.simdCols = out / tileNarrow * tileNarrow
		m.tiles = make([]float32, 0, in*m.simdCols)
		for j := 0; j < m.simdCols; {
			c := tileWide
			if j+c > m.simdCols {
				c = tileNarrow
			}
			for i := range in {
				m.tiles = append(m.tiles, w[i*out+j:i*out+j+c]...)
			}
			j += c
		}
	}
	if m.simdCols < out {
		m.w = append([]float32(nil), w[:in*out]...)
	}
	return m
}

// accum adds x @ W to y[:out]; len(x) must be in.
func (m *mat) accum(y, x []float32) {
	c := m.simdCols
	if c > 0 {
		accumTiles(y[:c], x, m.tiles)
	}
	if c < m.out {
		accumDense(y[c:m.out], x, m.w, m.out, c)
	}
}

// accumSparse adds Σ_k vals[k]·W[idx[k],:] to y[:out].
func (m *mat) accumSparse(y, vals []float32, idx []int32) {
	c := m.simdCols
	if c > 0 {
		accumTilesSparse(y[:c], vals, idx, m.tiles, m.in)
	}
	if c < m.out {
		accumSparse(y[c:m.out], vals, idx, m.w, m.out, c)
	}
}
