package serve

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gallop-dev/gallop/internal/gocpu"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/data/book"
	"github.com/gallop-dev/gallop/data/dataset"
	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/data/lobster"
	"github.com/gallop-dev/gallop/model"
	"github.com/gallop-dev/gallop/train"
)

// Parity on real data: LOBSTER's NASDAQ sample days go through the serving
// pipeline (book, features, one infer.Stream per instrument, several
// workers, binary output), and every prediction must equal a GoMLX batch
// forward pass (train.Stepper.Predict on the Go backend) over the same
// windows, computed from features rebuilt independently of the pipeline.

const lobsterTick = book.PriceScale / 100 // $0.01

// lobsterSource serves a LOBSTER archive the way the conformance test in
// data/lobster seeds its book: orderbook row 1 becomes aggregated levels
// (book-only Set events) and message 1, already part of row 1, is skipped;
// messages 2..n follow as events. Halt messages carry no event.
type lobsterSource struct {
	z    *lobster.Zip
	id   uint32
	seed []Input
	init bool
	m    lobster.Message
}

func (s *lobsterSource) Name() string { return s.z.MessageFile }

func (s *lobsterSource) Next(in *Input) error {
	if !s.init {
		s.init = true
		seed, err := seedLevels(s.z)
		if err != nil {
			return err
		}
		for _, l := range seed {
			s.seed = append(s.seed, Input{Event: l, BookOnly: true})
		}
	}
	if len(s.seed) > 0 {
		*in, s.seed = s.seed[0], s.seed[1:]
		in.Event.Instrument = s.id
		return nil
	}
	for {
		if err := s.z.Messages.Read(&s.m); err != nil {
			return err
		}
		in.Event.Instrument = s.id
		if lobster.ToEvent(&s.m, &in.Event) {
			in.BookOnly, in.Tick, in.Offset = false, 0, int64(s.z.Messages.Line())
			return nil
		}
	}
}

// seedLevels reads message 1 and orderbook row 1 and returns row 1's levels
// as Set events (timestamped with message 1).
func seedLevels(z *lobster.Zip) ([]book.Event, error) {
	var m lobster.Message
	var row lobster.Row
	if err := z.Messages.Read(&m); err != nil {
		return nil, err
	}
	if err := z.Orderbook.Read(&row); err != nil {
		return nil, err
	}
	var out []book.Event
	for _, s := range []struct {
		side   book.Side
		levels []book.Level
	}{{book.Ask, row.Asks}, {book.Bid, row.Bids}} {
		for _, l := range s.levels {
			if l.Size > 0 {
				out = append(out, book.Event{TsNs: m.TsNs, Price: l.Price, Size: l.Size, Action: book.Set, Side: s.side})
			}
		}
	}
	return out, nil
}

// referenceRows rebuilds an archive's feature rows with dataset.Builder,
// seeded the same way, without the serve package.
func referenceRows(t *testing.T, path string, id uint32) []float32 {
	z, err := lobster.OpenZip(path)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	bd := dataset.NewBuilder(id, z.Ticker, lobsterTick, 1<<17)
	seed, err := seedLevels(z)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range seed {
		bd.Book().SetLevel(e.Side, e.Price, e.Size, 0)
	}
	var m lobster.Message
	var ev book.Event
	for {
		if err := z.Messages.Read(&m); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if lobster.ToEvent(&m, &ev) {
			if err := bd.Add(&ev); err != nil {
				t.Fatalf("%s line %d: %v", path, z.Messages.Line(), err)
			}
		}
	}
	return bd.Finish(dataset.Labeling{Horizon: 1}).Features
}

func TestParityLOBSTER(t *testing.T) {
	if raceEnabled {
		t.Skip("GoMLX's Go backend fails checkptr under the race detector")
	}
	zips, _ := filepath.Glob(filepath.Join(sharedData, "lobster", "LOBSTER_SampleFile_*.zip"))
	if len(zips) == 0 {
		t.Skipf("no LOBSTER samples under %s", sharedData)
	}
	F := feature.Count
	rows := make([][]float32, len(zips))
	for i, p := range zips {
		rows[i] = referenceRows(t, p, uint32(i+1))
	}

	// Normalise with the data's own statistics, as training would.
	mean, std := make([]float32, F), make([]float32, F)
	var n float64
	s1, s2 := make([]float64, F), make([]float64, F)
	for _, r := range rows {
		for i, v := range r {
			s1[i%F] += float64(v)
			s2[i%F] += float64(v) * float64(v)
		}
		n += float64(len(r) / F)
	}
	for f := range F {
		mu := s1[f] / n
		sd := math.Sqrt(max(s2[f]/n-mu*mu, 0))
		if sd < 1e-6 {
			sd = 1
		}
		mean[f], std[f] = float32(mu), float32(sd)
	}
	m := testModel(t, 7, 10, []int{128, 64}, mean, std)
	W, C := m.Window, len(m.Classes)

	// The pipeline.
	var srcs []Source
	for i, p := range zips {
		z, err := lobster.OpenZip(p)
		if err != nil {
			t.Fatal(err)
		}
		defer z.Close()
		srcs = append(srcs, &lobsterSource{z: z, id: uint32(i + 1)})
	}
	srv := newTestServer(t, m, Config{Workers: 2, Ticks: map[uint32]int64{1: lobsterTick, 2: lobsterTick, 3: lobsterTick, 4: lobsterTick, 5: lobsterTick}, Format: Binary})
	var out bytes.Buffer
	sum, err := srv.Serve(context.Background(), &out, srcs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pipeline:\n%s", sum)
	served := make([][]Prediction, len(zips))
	for id, ps := range readBinary(t, &out) {
		served[id-1] = ps
	}

	// The GoMLX batch forward.
	backend, err := gocpu.New()
	if err != nil {
		t.Fatal(err)
	}
	mlp, err := model.NewMLP(W, F, m.Layers[1:len(m.Layers)-1], C)
	if err != nil {
		t.Fatal(err)
	}
	st := &train.State{}
	for l := range m.W {
		st.Params = append(st.Params, tensors.FromFlatDataAndDimensions(m.W[l], m.Layers[l], m.Layers[l+1]),
			tensors.FromFlatDataAndDimensions(m.B[l], m.Layers[l+1]))
	}
	stepper := train.NewStepper(backend, mlp, train.DefaultOptimizer())
	meanT := tensors.FromFlatDataAndDimensions(m.Mean, F)
	stdT := tensors.FromFlatDataAndDimensions(m.Std, F)
	const B = 8192
	x := make([]float32, B*W*F)
	batchForward := func(r []float32) []float32 {
		nw := len(r)/F - W + 1
		logits := make([]float32, 0, nw*C)
		for start := 0; start < nw; start += B {
			b := min(B, nw-start)
			for k := range b {
				copy(x[k*W*F:(k+1)*W*F], r[(start+k)*F:(start+k+W)*F])
			}
			// Pad to a whole batch so that one compiled graph serves all.
			clear(x[b*W*F:])
			xt := tensors.FromFlatDataAndDimensions(x, B, W*F)
			o, err := stepper.Predict(st, meanT, stdT, xt)
			if err != nil {
				t.Fatal(err)
			}
			tensors.MustConstFlatData(o, func(v []float32) { logits = append(logits, v[:b*C]...) })
			o.FinalizeAll()
			xt.FinalizeAll()
		}
		return logits
	}

	var total int
	var worst, worstProb float64
	var where string
	for i, p := range zips {
		name := strings.TrimSuffix(filepath.Base(p), ".zip")
		want := batchForward(rows[i])
		got := served[i]
		if len(got)*C != len(want) {
			t.Fatalf("%s: served %d predictions, the batch has %d windows", name, len(got), len(want)/C)
		}
		probs := make([]float32, C)
		for k, g := range got {
			w := want[k*C : (k+1)*C]
			var d, mb float64
			for c := range C {
				d = max(d, math.Abs(float64(g.Logits[c]-w[c])))
				mb = max(mb, math.Abs(float64(w[c])))
			}
			if e := d / max(1, mb); e > worst {
				worst, where = e, fmt.Sprintf("%s window %d: served %v, GoMLX %v", name, k, g.Logits, w)
			}
			softmax(probs, w)
			for c := range C {
				worstProb = max(worstProb, math.Abs(float64(g.Probs[c]-probs[c])))
			}
		}
		total += len(got)
		t.Logf("%s: %d rows, %d windows compared", name, len(rows[i])/F, len(got))
	}
	t.Logf("%d windows: largest logit difference %.3g relative to max(1, |logit|) (%s); largest probability difference %.3g",
		total, worst, where, worstProb)
	if worst > 1e-5 || worstProb > 1e-5 {
		t.Errorf("streaming engine differs from the GoMLX batch forward: logits %.3g, probabilities %.3g (tolerance 1e-5)", worst, worstProb)
	}
	if sum.Predictions != uint64(total) || sum.BookErrors != 0 {
		t.Errorf("summary %+v, compared %d", sum, total)
	}
}
