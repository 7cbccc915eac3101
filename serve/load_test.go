package serve

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/gallop-dev/gallop/data/dbn"
	"github.com/gallop-dev/gallop/infer"
)

// Load test: every shared DBN MBO sample plus a large synthetic MBO stream,
// one TCP connection each on 127.0.0.1, served together by one Server with
// gallop's default model shape (MLP 510-128-64-3), first as fast as the
// clients can send, then at a steady total rate of twice the busiest
// instrument's peak rate.

// loadStream is what one client sends: a DBN stream split into its
// metadata header and its records.
type loadStream struct {
	name   string
	header []byte
	recs   [][]byte
}

func (s *loadStream) size() int { return len(s.recs) }

// splitDBN splits a decompressed DBN stream into header and records.
func splitDBN(t testing.TB, name string, b []byte) loadStream {
	t.Helper()
	if len(b) < 8 || string(b[:3]) != "DBN" {
		t.Fatalf("%s: not DBN", name)
	}
	h := 8 + int(le.Uint32(b[4:]))
	s := loadStream{name: name, header: b[:h]}
	for off := h; off < len(b); {
		n := int(b[off]) * 4
		if n < dbn.HeaderSize || off+n > len(b) {
			t.Fatalf("%s offset %d: bad record length %d", name, off, n)
		}
		s.recs = append(s.recs, b[off:off+n])
		off += n
	}
	return s
}

// loadStreams returns the shared CME MBO samples (when present) and a
// synthetic stream of n events over 8 instruments.
func loadStreams(t testing.TB, n int) []loadStream {
	t.Helper()
	var out []loadStream
	files, _ := filepath.Glob(filepath.Join(sharedData, "nautilus_trader", "databento", "*mbo*.dbn.zst"))
	if len(files) == 0 {
		t.Logf("no shared DBN MBO samples under %s: synthetic stream only", sharedData)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := zstd.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(zr)
		zr.Close()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, splitDBN(t, filepath.Base(f), b))
	}
	insts := []uint32{900001, 900002, 900003, 900004, 900005, 900006, 900007, 900008}
	syn := append(dbnHeader("TEST.SYNTH"), synthMarket(11, insts, n, 200_000)...)
	return append(out, splitDBN(t, "synthetic", syn))
}

// peakRate returns the busiest instrument's peak rate in events/s: the
// most live (non-snapshot) MBO events one instrument has in any window of
// the given length, per second.
func peakRate(streams []loadStream, window time.Duration) (float64, uint32) {
	counts := map[[2]uint64]int{}
	best, bestID := 0, uint32(0)
	for _, s := range streams {
		for _, r := range s.recs {
			if r[1] != dbn.RTypeMBO {
				continue
			}
			if f := r[36]; f&dbn.FlagSnapshot != 0 && f&dbn.FlagLast == 0 {
				continue
			}
			id := le.Uint32(r[4:])
			k := [2]uint64{uint64(id), le.Uint64(r[8:]) / uint64(window)}
			counts[k]++
			if counts[k] > best {
				best, bestID = counts[k], id
			}
		}
	}
	return float64(best) / window.Seconds(), bestID
}

// countingWriter discards what it is given and counts the bytes.
type countingWriter struct{ n atomic.Int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

// runLoad serves streams over TCP on 127.0.0.1, one connection each. With
// rate 0 the clients send as fast as they can; otherwise they send at a
// combined rate of rate records/s, each client at its share so that all
// finish together. It fails the test if the run does not finish in time.
func runLoad(t testing.TB, srv *Server, streams []loadStream, rate float64, out io.Writer) Summary {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	total := 0
	for _, s := range streams {
		total += s.size()
	}
	clientErr := make(chan error, len(streams))
	for _, s := range streams {
		go func() {
			clientErr <- send(ctx, ln.Addr().String(), s, rate*float64(s.size())/float64(total))
		}()
	}
	sum, err := srv.ServeListener(ctx, out, ln, len(streams))
	if err != nil {
		t.Fatal(err)
	}
	for range streams {
		if err := <-clientErr; err != nil {
			t.Fatal(err)
		}
	}
	return sum
}

// send writes one stream to addr, at rate records/s (0: as fast as
// possible), in writes of what is due every half millisecond.
func send(ctx context.Context, addr string, s loadStream, rate float64) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(s.header); err != nil {
		return err
	}
	buf := make([]byte, 0, 1<<20)
	start := time.Now()
	for sent := 0; sent < len(s.recs); {
		due := len(s.recs)
		if rate > 0 {
			due = min(due, 1+int(time.Since(start).Seconds()*rate))
		}
		buf = buf[:0]
		for ; sent < due && len(buf) < cap(buf)-dbn.MaxRecordSize; sent++ {
			buf = append(buf, s.recs[sent]...)
		}
		if len(buf) > 0 {
			if _, err := c.Write(buf); err != nil {
				return err
			}
		}
		if rate > 0 && sent == due {
			select {
			case <-time.After(500 * time.Microsecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

func loadModel(t testing.TB) *infer.Model {
	return testModel(t, 42, 10, []int{128, 64}, nil, nil)
}

func TestLoadTCP(t *testing.T) {
	synthetic := 300_000
	if testing.Short() {
		synthetic = 30_000
	}
	streams := loadStreams(t, synthetic)
	total := 0
	for _, s := range streams {
		total += s.size()
	}
	m := loadModel(t)
	peak, peakID := peakRate(streams, 10*time.Millisecond)
	realPeak, realID := peakRate(streams[:len(streams)-1], 10*time.Millisecond)
	t.Logf("model mlp %v; %d streams, %d records; busiest instrument %d peaks at %s events/s (10 ms windows; real data alone: instrument %d, %s events/s)",
		m.Layers, len(streams), total, peakID, fmtRate(peak), realID, fmtRate(realPeak))

	check := func(name string, sum Summary, sent int, out *countingWriter) {
		t.Helper()
		t.Logf("%s:\n%s", name, sum)
		if sum.Events != uint64(sent) || sum.Conns != len(streams) || sum.ConnErrors != 0 || sum.BookErrors != 0 {
			t.Errorf("%s: %d of %d events, %d conns (%d failed), %d book errors (%s)", name, sum.Events, sent,
				sum.Conns, sum.ConnErrors, sum.BookErrors, sum.FirstError)
		}
		if sum.DroppedEvents+sum.DroppedPredictions != 0 {
			t.Errorf("%s: dropped %d events and %d predictions", name, sum.DroppedEvents, sum.DroppedPredictions)
		}
		if want := int64(BinaryHeaderSize + BinaryRecordSize(3)*int(sum.Predictions)); sum.Predictions == 0 || out.n.Load() != want {
			t.Errorf("%s: %d bytes written for %d predictions, want %d", name, out.n.Load(), sum.Predictions, want)
		}
	}

	// As fast as possible: lossless, the clients wait for the server.
	srv := newTestServer(t, m, Config{Tick: esTick, Format: Binary})
	var out countingWriter
	sum := runLoad(t, srv, streams, 0, &out)
	check("max speed", sum, total, &out)

	// At twice the busiest instrument's peak rate for about 2 s, with
	// shedding armed: it must not shed.
	rate := 2 * peak
	paced := slices.Clone(streams)
	keep := max(0, int(2*rate)-(total-streams[len(streams)-1].size()))
	last := &paced[len(paced)-1]
	last.recs = last.recs[:min(keep, len(last.recs))]
	sent := 0
	for _, s := range paced {
		sent += s.size()
	}
	srv = newTestServer(t, m, Config{Tick: esTick, Format: Binary, DropAfter: 2048})
	var out2 countingWriter
	sum = runLoad(t, srv, paced, rate, &out2)
	check("paced at 2× peak ("+fmtRate(rate)+" events/s)", sum, sent, &out2)
}

// BenchmarkServeTCP serves the load test's streams as fast as the clients
// can send and reports throughput and latency percentiles.
func BenchmarkServeTCP(b *testing.B) {
	streams := loadStreams(b, 200_000)
	m := loadModel(b)
	srv := newTestServer(b, m, Config{Tick: esTick, Format: Binary})
	var events, e2e50, e2e99, c50, c99, drops float64
	for b.Loop() {
		var out countingWriter
		s := runLoad(b, srv, streams, 0, &out)
		events += float64(s.Events)
		e2e50 = max(e2e50, float64(s.EndToEnd.P50.Microseconds()))
		e2e99 = max(e2e99, float64(s.EndToEnd.P99.Microseconds()))
		c50 = max(c50, float64(s.Compute.P50.Nanoseconds()))
		c99 = max(c99, float64(s.Compute.P99.Nanoseconds()))
		drops += float64(s.DroppedEvents + s.DroppedPredictions)
	}
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(e2e50, "e2e-p50-µs")
	b.ReportMetric(e2e99, "e2e-p99-µs")
	b.ReportMetric(c50, "compute-p50-ns")
	b.ReportMetric(c99, "compute-p99-ns")
	b.ReportMetric(drops, "drops")
	b.ReportMetric(0, "ns/op")
}
