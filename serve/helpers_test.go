package serve

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/infer"
	"github.com/gallop-dev/gallop/model"
)

// raceEnabled is set by race_test.go in -race builds.
var raceEnabled bool

// sharedData is ../shared/data seen from the repository root.
var sharedData = filepath.Join("..", "..", "shared", "data")

// esTick is the CME E-mini tick (0.25) in book price units.
const esTick = 250_000_000

// testModel returns an MLP over gallop's features with a window of w
// events, He-initialised random weights and the given normalisation (mean
// 0 and std 1 when nil), saved and loaded back through the export format.
func testModel(t testing.TB, seed uint64, w int, hidden []int, mean, std []float32) *infer.Model {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	f := feature.Count
	layers := append(append([]int{w * f}, hidden...), 3)
	m := &infer.Model{
		Spec: infer.Spec{
			Arch: infer.ArchMLP, Window: w, Features: feature.Names, Classes: feature.ClassNames,
			Layers: layers, Activation: infer.ActivationReLU,
			Meta: map[string]string{"horizon": "100", "note": "random weights for serving tests"},
		},
		Mean: mean, Std: std,
	}
	if m.Mean == nil {
		m.Mean, m.Std = make([]float32, f), make([]float32, f)
		for i := range m.Std {
			m.Std[i] = 1
		}
	}
	for l := range len(layers) - 1 {
		in, out := layers[l], layers[l+1]
		scale := math.Sqrt(2 / float64(in))
		wl := make([]float32, in*out)
		for i := range wl {
			wl[i] = float32(r.NormFloat64() * scale)
		}
		b := make([]float32, out)
		for i := range b {
			b[i] = float32(r.NormFloat64() * 0.1)
		}
		m.W, m.B = append(m.W, wl), append(m.B, b)
	}
	dir := t.TempDir()
	if err := infer.Save(dir, m); err != nil {
		t.Fatal(err)
	}
	loaded, err := infer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return loaded
}

// archModel returns a small model of arch (gru, deeplob, transformer or
// mlp) over gallop's features with a window of w events and the model
// package's initial weights, exported as gallop train does.
func archModel(t testing.TB, arch string, w int) *infer.Model {
	t.Helper()
	f := feature.Count
	spec := infer.Spec{Arch: arch, Window: w, Features: feature.Names, Classes: feature.ClassNames}
	var m model.Model
	var err error
	switch arch {
	case infer.ArchMLP:
		mm, _ := model.NewMLP(w, f, []int{16}, 3)
		spec.Layers, spec.Activation, m = mm.Layers, infer.ActivationReLU, mm
	case infer.ArchGRU:
		mm, _ := model.NewGRU(w, f, 8, 3)
		spec.Hidden, m = mm.H, mm
	case infer.ArchDeepLOB:
		mm, e := model.NewDeepLOB(w, feature.Names, 3, model.DeepLOBConfig{Conv: 4, Inception: 4, Hidden: 4})
		spec.Hidden, spec.Conv, spec.Inception, spec.BookIndex, m, err = mm.Hidden, mm.Conv, mm.Inception, mm.Index, mm, e
	case infer.ArchTransformer:
		mm, e := model.NewTransformer(w, f, 3, model.TransformerConfig{D: 8, Heads: 2, Layers: 1, FF: 16})
		spec.DModel, spec.Heads, spec.Blocks, spec.FF, m, err = mm.D, mm.Heads, mm.Layers, mm.FF, mm, e
	}
	if err != nil {
		t.Fatal(err)
	}
	var ps []infer.Param
	init := m.Init(7)
	for i, p := range m.Params() {
		ps = append(ps, infer.Param{Name: p.Name, Shape: p.Shape, Data: tensors.MustCopyFlatData[float32](init[i])})
	}
	mean, std := make([]float32, f), make([]float32, f)
	for i := range std {
		std[i] = 1
	}
	im, err := infer.FromParams(spec, mean, std, ps)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// DBN writing: there is no encoder in data/dbn, so the tests lay out the
// bytes themselves (layouts in data/dbn/records.go and metadata.go).

var le = binary.LittleEndian

// dbnHeader returns a DBN version-2 metadata header for an MBO stream.
func dbnHeader(dataset string) []byte {
	var body []byte
	ds := make([]byte, 16)
	copy(ds, dataset)
	body = append(body, ds...)
	body = le.AppendUint16(body, 0)              // schema mbo
	body = le.AppendUint64(body, 0)              // start
	body = le.AppendUint64(body, math.MaxUint64) // end
	body = le.AppendUint64(body, 0)              // limit
	body = append(body, 0, 0, 0)                 // stype_in, stype_out (instrument_id), ts_out
	body = le.AppendUint16(body, 71)             // symbol_cstr_len
	body = append(body, make([]byte, 53)...)     // reserved
	for range 5 {                                // schema definition length, symbols, partial, not found, mappings
		body = le.AppendUint32(body, 0)
	}
	h := append([]byte("DBN\x02"), le.AppendUint32(nil, uint32(len(body)))...)
	return append(h, body...)
}

const mboSize = 56

// mbo is one MBO record to encode.
type mbo struct {
	inst   uint32
	ts     uint64
	order  uint64
	price  int64
	size   uint32
	flags  uint8
	action byte
	side   byte
	seq    uint32
}

func appendMBO(b []byte, m mbo) []byte {
	b = append(b, mboSize/4, 0xA0)
	b = le.AppendUint16(b, 1)
	b = le.AppendUint32(b, m.inst)
	b = le.AppendUint64(b, m.ts)
	b = le.AppendUint64(b, m.order)
	b = le.AppendUint64(b, uint64(m.price))
	b = le.AppendUint32(b, m.size)
	b = append(b, m.flags, 0, m.action, m.side)
	b = le.AppendUint64(b, m.ts+1000) // ts_recv
	b = le.AppendUint32(b, 0)         // ts_in_delta
	b = le.AppendUint32(b, m.seq)
	return b
}

// synthMarket returns n MBO records (no header) of a random order flow over
// the given instruments, interleaved by one clock: adds near the touch,
// cancels of resting orders, and trades (a 'T' print followed by the cancel
// that takes the fill off the book, as in Databento MBO). Every cancel names
// a resting order, so the books never see an unknown id. Inter-arrival times
// per instrument are exponential with the given mean, with bursts.
func synthMarket(seed uint64, insts []uint32, n int, meanGapNs float64) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	type order struct {
		price int64
		size  uint32
		side  byte
	}
	type inst struct {
		id     uint32
		mid    int64 // in ticks
		orders map[uint64]order
		ids    []uint64
		next   float64 // ns
	}
	const tick = esTick
	var oid uint64 = 1
	out := make([]byte, 0, n*mboSize)
	var seq uint32
	ts0 := uint64(1_715_126_400_000_000_000) // 2024-05-08
	st := make([]*inst, len(insts))
	for i, id := range insts {
		st[i] = &inst{id: id, mid: 20000 + int64(i)*1000, orders: map[uint64]order{}}
	}
	emit := func(in *inst, m mbo) {
		m.inst, m.ts, m.seq = in.id, ts0+uint64(in.next), seq
		seq++
		out = append(out, appendMBO(nil, m)...)
	}
	add := func(in *inst, side byte, level int64) {
		p := in.mid - 1 - level
		if side == 'A' {
			p = in.mid + 1 + level
		}
		o := order{price: p * tick, size: uint32(1 + r.IntN(20)), side: side}
		in.orders[oid] = o
		in.ids = append(in.ids, oid)
		emit(in, mbo{order: oid, price: o.price, size: o.size, action: 'A', side: side})
		oid++
	}
	remove := func(in *inst, k int) (uint64, order) {
		id := in.ids[k]
		in.ids[k] = in.ids[len(in.ids)-1]
		in.ids = in.ids[:len(in.ids)-1]
		o := in.orders[id]
		delete(in.orders, id)
		return id, o
	}
	// Seed each book with 10 levels a side.
	for _, in := range st {
		for l := range int64(10) {
			add(in, 'B', l)
			add(in, 'A', l)
		}
	}
	for len(out) < n*mboSize {
		// The instrument whose next event comes first.
		in := st[0]
		for _, s := range st[1:] {
			if s.next < in.next {
				in = s
			}
		}
		gap := r.ExpFloat64() * meanGapNs
		if r.IntN(50) == 0 {
			gap /= 100 // bursts
		}
		in.next += gap
		switch u := r.Float64(); {
		case u < 0.02: // the reference price moves; orders it crosses are cancelled
			in.mid += int64(r.IntN(3) - 1)
			for k := 0; k < len(in.ids); {
				o := in.orders[in.ids[k]]
				if o.side == 'B' && o.price >= in.mid*tick || o.side == 'A' && o.price <= in.mid*tick {
					id, o := remove(in, k)
					emit(in, mbo{order: id, price: o.price, size: o.size, action: 'C', side: o.side})
					continue
				}
				k++
			}
		case u < 0.50 || len(in.ids) < 40:
			side := byte('B')
			if r.IntN(2) == 0 {
				side = 'A'
			}
			add(in, side, int64(math.Min(r.ExpFloat64()*2, 9)))
		case u < 0.88:
			id, o := remove(in, r.IntN(len(in.ids)))
			emit(in, mbo{order: id, price: o.price, size: o.size, action: 'C', side: o.side})
		default: // a trade against a resting order
			k := r.IntN(len(in.ids))
			id, o := in.ids[k], in.orders[in.ids[k]]
			fill := uint32(1 + r.IntN(int(o.size)))
			agg := byte('B')
			if o.side == 'B' {
				agg = 'A'
			}
			emit(in, mbo{price: o.price, size: fill, action: 'T', side: agg})
			if fill == o.size {
				remove(in, k)
			} else {
				o.size -= fill
				in.orders[id] = o
			}
			emit(in, mbo{order: id, price: o.price, size: fill, action: 'C', side: o.side})
		}
	}
	return out[:n*mboSize]
}

func fmtRate(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
