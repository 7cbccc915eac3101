package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gallop-dev/gallop/data/book"
	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/infer"
)

// reference computes, outside the pipeline, the predictions Serve must make
// for a DBN stream: per instrument, book, features and an MLP Stream, in
// order.
func reference(t *testing.T, m *infer.Model, stream []byte, tick int64) map[uint32][]Prediction {
	t.Helper()
	mlp, err := infer.NewMLP(m)
	if err != nil {
		t.Fatal(err)
	}
	return referenceWith(t, func() infer.Streamer { return mlp.NewStream() }, stream, tick)
}

// referenceWith is reference with the streams newStream makes.
func referenceWith(t *testing.T, newStream func() infer.Streamer, stream []byte, tick int64) map[uint32][]Prediction {
	t.Helper()
	src, err := NewDBN(bytes.NewReader(stream), "reference")
	if err != nil {
		t.Fatal(err)
	}
	type state struct {
		b *book.Book
		x *feature.Extractor
		s infer.Streamer
	}
	states := map[uint32]*state{}
	out := map[uint32][]Prediction{}
	row := make([]float32, feature.Count)
	var in Input
	for {
		if err := src.Next(&in); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatal(err)
		}
		id := in.Event.Instrument
		st := states[id]
		if st == nil {
			st = &state{book.New(), feature.NewExtractor(tick), newStream()}
			states[id] = st
		}
		if err := st.b.Apply(&in.Event); err != nil {
			t.Fatalf("offset %d: %v", in.Offset, err)
		}
		if in.BookOnly {
			continue
		}
		if _, ok := st.x.Update(st.b, &in.Event, row); !ok {
			continue
		}
		logits := make([]float32, 3)
		if st.s.Push(row, logits) {
			out[id] = append(out[id], Prediction{Instrument: id, TsEvent: in.Event.TsNs, Logits: logits})
		}
	}
}

func synthStream(seed uint64, insts []uint32, n int) []byte {
	return append(dbnHeader("TEST.SYNTH"), synthMarket(seed, insts, n, 200_000)...)
}

func newTestServer(t testing.TB, m *infer.Model, cfg Config) *Server {
	t.Helper()
	s, err := New(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestServeMatchesReference serves a synthetic stream over several
// workers in both formats and checks every prediction against the
// single-threaded reference, in order per instrument.
func TestServeMatchesReference(t *testing.T) {
	m := testModel(t, 1, 10, []int{32, 16}, nil, nil)
	insts := []uint32{7, 8, 9, 1000, 123456}
	stream := synthStream(3, insts, 30_000)
	want := reference(t, m, stream, esTick)
	var total int
	for _, p := range want {
		total += len(p)
	}
	if total < 20_000 {
		t.Fatalf("reference made only %d predictions", total)
	}

	for _, format := range []Format{Binary, JSON} {
		t.Run(format.String(), func(t *testing.T) {
			srv := newTestServer(t, m, Config{Workers: 3, Queue: 256, Tick: esTick, Format: format})
			src, err := NewDBN(bytes.NewReader(stream), "synthetic")
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			sum, err := srv.Serve(context.Background(), &out, src)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s", sum)
			got := map[uint32][]Prediction{}
			if format == Binary {
				got = readBinary(t, &out)
			} else {
				sc := bufio.NewScanner(&out)
				for sc.Scan() {
					var line struct {
						Instrument uint32    `json:"instrument"`
						TsEvent    int64     `json:"ts_event"`
						Logits     []float32 `json:"logits"`
						Probs      []float32 `json:"probs"`
						ComputeNs  int64     `json:"compute_ns"`
					}
					if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
						t.Fatalf("%q: %v", sc.Text(), err)
					}
					got[line.Instrument] = append(got[line.Instrument], Prediction{Instrument: line.Instrument,
						TsEvent: line.TsEvent, Logits: line.Logits, Probs: line.Probs, Compute: time.Duration(line.ComputeNs)})
				}
			}
			if sum.Events != uint64(len(stream)-len(dbnHeader("")))/mboSize || sum.Predictions != uint64(total) ||
				sum.Instruments != len(insts) || sum.BookErrors != 0 || sum.DroppedEvents+sum.DroppedPredictions != 0 {
				t.Errorf("summary %+v, want %d predictions", sum, total)
			}
			if sum.Compute.N != uint64(total) || sum.EndToEnd.N != uint64(total) || sum.EndToEnd.P50 <= 0 || sum.Compute.P99 <= 0 {
				t.Errorf("latencies: compute %+v, end-to-end %+v", sum.Compute, sum.EndToEnd)
			}
			for id, w := range want {
				g := got[id]
				if len(g) != len(w) {
					t.Fatalf("instrument %d: %d predictions, want %d", id, len(g), len(w))
				}
				for i := range w {
					if g[i].TsEvent != w[i].TsEvent {
						t.Fatalf("instrument %d prediction %d: ts %d, want %d", id, i, g[i].TsEvent, w[i].TsEvent)
					}
					var sum float32
					for c := range w[i].Logits {
						// Float32 values survive JSON's shortest formatting exactly.
						if g[i].Logits[c] != w[i].Logits[c] {
							t.Fatalf("instrument %d prediction %d: logits %v, want %v", id, i, g[i].Logits, w[i].Logits)
						}
						sum += g[i].Probs[c]
					}
					if math.Abs(float64(sum)-1) > 1e-5 || g[i].Compute <= 0 {
						t.Fatalf("instrument %d prediction %d: probs %v, compute %v", id, i, g[i].Probs, g[i].Compute)
					}
				}
			}
		})
	}
}

func TestUnknownTickNamesInstrument(t *testing.T) {
	m := testModel(t, 1, 2, []int{8}, nil, nil)
	srv := newTestServer(t, m, Config{Workers: 2, Ticks: map[uint32]int64{7: esTick}})
	src, err := NewDBN(bytes.NewReader(synthStream(1, []uint32{7, 42}, 500)), "feed.dbn")
	if err != nil {
		t.Fatal(err)
	}
	_, err = srv.Serve(context.Background(), io.Discard, src)
	if err == nil || !strings.Contains(err.Error(), "feed.dbn offset ") || !strings.Contains(err.Error(), "instrument 42: unknown tick size") {
		t.Fatalf("err = %v", err)
	}
}

// blockingWriter blocks every Write until released.
type blockingWriter struct {
	release chan struct{}
	n       int
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	w.n += len(p)
	return len(p), nil
}

// TestDropsAreCountedAndReported stalls the consumer: with DropAfter the
// pipeline sheds and says so; without it nothing is dropped and the lag is
// reported.
func TestDropsAreCountedAndReported(t *testing.T) {
	m := testModel(t, 1, 10, []int{32}, nil, nil)
	stream := synthStream(5, []uint32{1, 2, 3}, 20_000)
	for _, dropAfter := range []int{0, 100} {
		var rep syncBuffer
		srv := newTestServer(t, m, Config{Workers: 2, Queue: 256, DropAfter: dropAfter, Tick: esTick,
			Report: &rep, ReportEvery: 20 * time.Millisecond, LagAlert: time.Millisecond})
		w := &blockingWriter{release: make(chan struct{})}
		go func() {
			time.Sleep(300 * time.Millisecond)
			close(w.release)
		}()
		src, _ := NewDBN(bytes.NewReader(stream), "synthetic")
		sum, err := srv.Serve(context.Background(), w, src)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("drop-after %d: %s\nreports:\n%s", dropAfter, sum, rep.String())
		dropped := sum.DroppedEvents + sum.DroppedPredictions
		if dropAfter == 0 && dropped != 0 || dropAfter > 0 && dropped == 0 {
			t.Errorf("drop-after %d: dropped %d events and %d predictions", dropAfter, sum.DroppedEvents, sum.DroppedPredictions)
		}
		if !strings.Contains(rep.String(), "serve: lag: ") || !strings.Contains(rep.String(), "serve: end: ") {
			t.Errorf("drop-after %d: lag not reported", dropAfter)
		}
		if dropAfter > 0 && !strings.Contains(rep.String(), "dropped") {
			t.Errorf("drops not reported")
		}
		if sum.MaxLag < 100*time.Millisecond || sum.MaxQueued < 256 {
			t.Errorf("max lag %v, max queued %d", sum.MaxLag, sum.MaxQueued)
		}
		if want := sum.Predictions * uint64(len(appendJSON(nil, &Prediction{}))) / 2; uint64(w.n) < want {
			t.Errorf("wrote %d bytes for %d predictions", w.n, sum.Predictions)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// endless is a Source that never ends.
type endless struct {
	n  int64
	mu sync.Mutex
}

func (e *endless) Next(in *Input) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	side := book.Bid
	if e.n%2 == 0 {
		side = book.Ask
	}
	*in = Input{Event: book.Event{TsNs: e.n, OrderID: uint64(e.n), Price: (100 + 2*int64(side)) * esTick,
		Size: 1, Instrument: uint32(e.n % 5), Action: book.Add, Side: side}}
	return nil
}

func TestCancelShutsDownCleanly(t *testing.T) {
	m := testModel(t, 1, 4, []int{16}, nil, nil)
	srv := newTestServer(t, m, Config{Workers: 2, Queue: 64, Tick: esTick})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	sum, err := srv.Serve(ctx, &out, &endless{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	lines := uint64(bytes.Count(out.Bytes(), []byte{'\n'}))
	if sum.Events == 0 || sum.Predictions == 0 || lines != sum.Predictions || sum.Events != sum.Predictions+sum.Warmup+sum.OneSided {
		t.Fatalf("summary %+v, %d lines written", sum, lines)
	}
}

func TestPace(t *testing.T) {
	m := testModel(t, 1, 2, []int{8}, nil, nil)
	// 41 events 10 ms apart by ts_event: 400 ms recorded, 100 ms at pace 4.
	var recs []byte
	for i := range 41 {
		side := byte('B' - byte(i%2)) // 'B', 'A', ...
		p := int64(100 * esTick)
		if side == 'A' {
			p += esTick
		}
		recs = appendMBO(recs, mbo{inst: 1, ts: uint64(1e9 + i*10_000_000), order: uint64(i + 1), price: p, size: 1, action: 'A', side: side})
	}
	srv := newTestServer(t, m, Config{Workers: 1, Tick: esTick, Pace: 4})
	src, _ := NewDBN(bytes.NewReader(append(dbnHeader("T"), recs...)), "paced")
	sum, err := srv.Serve(context.Background(), io.Discard, src)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Elapsed < 95*time.Millisecond || sum.Elapsed > 2*time.Second || sum.Events != 41 {
		t.Fatalf("elapsed %v for 400 ms at pace 4; %+v", sum.Elapsed, sum)
	}
}

// TestListenerSurvivesBadConnection serves two good DBN connections and a
// garbage one: the garbage is reported, the rest served.
func TestListenerSurvivesBadConnection(t *testing.T) {
	m := testModel(t, 1, 4, []int{16}, nil, nil)
	var rep syncBuffer
	srv := newTestServer(t, m, Config{Workers: 2, Tick: esTick, Report: &rep})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	streams := [][]byte{synthStream(1, []uint32{1}, 3000), []byte("this is not DBN at all, sorry"), synthStream(2, []uint32{2}, 3000)}
	for _, s := range streams {
		go func() {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.Write(s)
		}()
	}
	sum, err := srv.ServeListener(ctx, io.Discard, ln, len(streams))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Conns != 3 || sum.ConnErrors != 1 || sum.Events != 6000 || sum.Instruments != 2 ||
		!strings.Contains(rep.String(), "not DBN data") {
		t.Fatalf("%+v\nreport: %s", sum, rep.String())
	}
}

func TestHistogram(t *testing.T) {
	var h hist
	for v := range int64(100_000) {
		h.record(v * 100) // 0 .. 10 ms
	}
	l := h.latency()
	for _, c := range []struct {
		got, want time.Duration
	}{{l.P50, 5 * time.Millisecond}, {l.P99, 9900 * time.Microsecond}, {l.Max, 9999900}} {
		if math.Abs(float64(c.got-c.want)) > 0.02*float64(c.want) {
			t.Errorf("got %v, want %v (%+v)", c.got, c.want, l)
		}
	}
	for v := range int64(5000) {
		if b := bucketMid(bucketOf(v)); math.Abs(float64(b-v)) > float64(v)/histSub+1 {
			t.Fatalf("value %d: bucket %d mid %d", v, bucketOf(v), b)
		}
	}
}

// TestServeInt8 serves with int8 weights: the same predictions, in the same
// order, with logits near the float32 reference's (infer's int8 bound:
// 0.1 of max(1, |logit|)), and an unknown weights kind is refused.
func TestServeInt8(t *testing.T) {
	m := testModel(t, 1, 10, []int{64, 64}, nil, nil)
	insts := []uint32{7, 8, 9}
	stream := synthStream(5, insts, 6_000)
	want := reference(t, m, stream, esTick)
	srv := newTestServer(t, m, Config{Workers: 2, Queue: 256, Tick: esTick, Format: Binary, Weights: infer.WeightsInt8})
	src, err := NewDBN(bytes.NewReader(stream), "synthetic")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := srv.Serve(context.Background(), &out, src); err != nil {
		t.Fatal(err)
	}
	got := readBinary(t, &out)
	var worst float64
	n, differ := 0, 0
	for id, w := range want {
		g := got[id]
		if len(g) != len(w) || len(w) == 0 {
			t.Fatalf("instrument %d: %d predictions, want %d", id, len(g), len(w))
		}
		for i := range w {
			var d, mx float64
			for c := range w[i].Logits {
				d = max(d, math.Abs(float64(g[i].Logits[c]-w[i].Logits[c])))
				mx = max(mx, math.Abs(float64(w[i].Logits[c])))
				if g[i].Logits[c] != w[i].Logits[c] {
					differ++
				}
			}
			worst = max(worst, d/max(1, mx))
			n++
		}
	}
	if worst > 0.1 || differ == 0 {
		t.Errorf("int8 vs float32 over %d predictions: worst rel err %.3g (want <= 0.1), %d logits differ (want some: int8 was not used)", n, worst, differ)
	}
	t.Logf("int8 vs float32 over %d predictions: worst rel err %.3g", n, worst)
	if _, err := New(m, Config{Weights: "int3"}); err == nil || !strings.Contains(err.Error(), "int3") {
		t.Errorf("weights int3: err %v", err)
	}
}

// readBinary reads a binary prediction stream to its end, grouped by
// instrument in stream order.
func readBinary(t *testing.T, r io.Reader) map[uint32][]Prediction {
	t.Helper()
	br, err := NewBinaryReader(r)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint32][]Prediction{}
	for {
		var p Prediction
		if err := br.Next(&p); err == io.EOF {
			return got
		} else if err != nil {
			t.Fatal(err)
		}
		got[p.Instrument] = append(got[p.Instrument], p)
	}
}

// TestServeEveryArch serves a GRU, DeepLOB and transformer, and the MLP in
// carried mode, each in the modes its engine has, and checks every
// prediction against the single-threaded reference built on the engine's
// own stream constructor (not infer.Streams, which the server uses).
func TestServeEveryArch(t *testing.T) {
	insts := []uint32{3, 44, 5000}
	stream := synthStream(9, insts, 3_000)
	for _, c := range []struct {
		arch string
		mode infer.Mode
	}{
		{infer.ArchGRU, infer.ModeWindow}, {infer.ArchGRU, infer.ModeCarried},
		{infer.ArchDeepLOB, infer.ModeWindow}, {infer.ArchDeepLOB, infer.ModeCarried},
		{infer.ArchTransformer, infer.ModeWindow}, {infer.ArchTransformer, infer.ModeSegment},
		{infer.ArchMLP, infer.ModeCarried},
	} {
		t.Run(c.arch+"-"+c.mode.String(), func(t *testing.T) {
			m := archModel(t, c.arch, 6)
			want := referenceWith(t, engineStreams(t, m, c.mode), stream, esTick)
			var total int
			for _, p := range want {
				total += len(p)
			}
			srv := newTestServer(t, m, Config{Workers: 2, Queue: 64, Tick: esTick, Format: Binary, Mode: c.mode})
			src, err := NewDBN(bytes.NewReader(stream), "synthetic")
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			sum, err := srv.Serve(context.Background(), &out, src)
			if err != nil {
				t.Fatal(err)
			}
			if total < 1000 || sum.Predictions != uint64(total) {
				t.Fatalf("%d predictions served, reference %d", sum.Predictions, total)
			}
			got := readBinary(t, &out)
			for id, w := range want {
				g := got[id]
				if len(g) != len(w) {
					t.Fatalf("instrument %d: %d predictions, want %d", id, len(g), len(w))
				}
				for i := range w {
					if g[i].TsEvent != w[i].TsEvent || !slices.Equal(g[i].Logits, w[i].Logits) {
						t.Fatalf("instrument %d prediction %d: %v at %d, want %v at %d", id, i, g[i].Logits, g[i].TsEvent, w[i].Logits, w[i].TsEvent)
					}
				}
			}
		})
	}
	m := archModel(t, infer.ArchGRU, 6)
	if _, err := New(m, Config{Mode: infer.ModeSegment}); err == nil || !strings.Contains(err.Error(), "no segment mode") {
		t.Errorf("a GRU in segment mode: %v", err)
	}
	if _, err := New(m, Config{Weights: infer.WeightsInt8}); err == nil || !strings.Contains(err.Error(), "only MLP") {
		t.Errorf("a GRU with int8 weights: %v", err)
	}
}

// engineStreams makes streams of m in mode with its engine's own
// constructor.
func engineStreams(t *testing.T, m *infer.Model, mode infer.Mode) func() infer.Streamer {
	t.Helper()
	var mk func() (infer.Streamer, error)
	switch m.Arch {
	case infer.ArchMLP:
		e, err := infer.NewMLP(m)
		if err != nil {
			t.Fatal(err)
		}
		mk = func() (infer.Streamer, error) { return e.NewStreamMode(mode) }
	case infer.ArchGRU:
		e, err := infer.NewGRU(m)
		if err != nil {
			t.Fatal(err)
		}
		mk = func() (infer.Streamer, error) { return e.NewStream(mode), nil }
	case infer.ArchDeepLOB:
		e, err := infer.NewDeepLOB(m)
		if err != nil {
			t.Fatal(err)
		}
		mk = func() (infer.Streamer, error) { return e.NewStreamMode(mode) }
	case infer.ArchTransformer:
		e, err := infer.NewTransformer(m)
		if err != nil {
			t.Fatal(err)
		}
		mk = func() (infer.Streamer, error) { return e.NewStream(mode), nil }
	}
	if _, err := mk(); err != nil {
		t.Fatal(err)
	}
	return func() infer.Streamer { s, _ := mk(); return s }
}
