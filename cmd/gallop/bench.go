package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/data/dataset"
	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/data/sim"
	"github.com/gallop-dev/gallop/device"
	"github.com/gallop-dev/gallop/infer"
	"github.com/gallop-dev/gallop/model"
	"github.com/gallop-dev/gallop/profile"
	"github.com/gallop-dev/gallop/train"
)

const benchUsage = `usage: gallop bench infer [flags] <run-dir | export-dir>

Loads the exported model of a run into gallop's pure-Go engine and measures
the latency of one event (feature vector in, logits out) on one core, with
real feature vectors from the embedded market, and the same forward pass
through a GoMLX Exec per event for comparison.

Flags:
`

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "infer" {
		fmt.Fprint(stderr, benchUsage)
		return errUsage
	}
	fs := flag.NewFlagSet("bench infer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, benchUsage); fs.PrintDefaults() }
	n := fs.Int("n", 200_000, "timed events")
	gomlxN := fs.Int("gomlx-n", 2000, "timed events through GoMLX (0 to skip)")
	weights := fs.String("weights", "float32", "MLP engine weights: float32 or int8")
	cold := fs.Int("instruments", 1000, "also time events spread round-robin over this many instruments' streams (cold caches; 0 to skip)")
	if err := fs.Parse(args[1:]); err != nil {
		return flagErr(err)
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	if *n < 1 {
		return fmt.Errorf("bench infer: -n %d, want >= 1", *n)
	}
	w, err := infer.ParseWeights(*weights)
	if err != nil {
		return fmt.Errorf("bench infer: -weights: %w", err)
	}
	dir := fs.Arg(0)
	if !fileExists(filepath.Join(dir, "model.json")) {
		dir = filepath.Join(dir, "export")
	}
	m, err := infer.Load(dir)
	if err != nil {
		return fmt.Errorf("bench infer: %w", err)
	}
	inputs, err := benchInputs(m, 20_000)
	if err != nil {
		return err
	}
	if m.Arch != infer.ArchMLP {
		if err := benchStreamer(stdout, m, w, dir, inputs, *n); err != nil {
			return err
		}
		return benchCold(stdout, m, w, inputs, *cold, *n)
	}
	eng, err := infer.NewMLPWith(m, infer.Options{Weights: w})
	if err != nil {
		return fmt.Errorf("bench infer: %w", err)
	}
	var agreement string
	if w != infer.WeightsFloat32 {
		if agreement, err = weightsAgreement(m, eng, inputs); err != nil {
			return err
		}
	}
	r := infer.Bench(eng.NewStream(), inputs, *n)
	fmt.Fprintf(stdout, "model    %s %v, window %d × %d features, from %s\n", m.Arch, m.Layers, m.Window, len(m.Features), dir)
	fmt.Fprintf(stdout, "engine   pure Go, %s weights, one core, %d events\n", w, r.Events)
	fmt.Fprintf(stdout, "  per event   p50 %v  p99 %v  p99.9 %v  mean %v  (events back to back)\n", r.P50, r.P99, r.P999, r.Mean)
	fmt.Fprintf(stdout, "  settled     p50 %v  p99 %v  p99.9 %v  (an event arriving while the stream is idle: its own work only)\n", r.SettledP50, r.SettledP99, r.SettledP999)
	fmt.Fprintf(stdout, "  throughput  %.0f events/s\n", r.EventsPerSec)
	fmt.Fprintf(stdout, "  allocations %.3g per event\n", r.AllocsPerEvent)
	if agreement != "" {
		fmt.Fprintf(stdout, "  accuracy    %s\n", agreement)
	}
	if err := benchCold(stdout, m, w, inputs, *cold, *n); err != nil {
		return err
	}
	if *gomlxN > 0 {
		p50, p99, err := benchGoMLX(m, inputs, *gomlxN)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "gomlx    Exec per event (go backend), %d events: p50 %v  p99 %v  → engine is %.0f× faster at p50\n",
			*gomlxN, p50, p99, float64(p50)/math.Max(1, float64(r.P50)))
	}
	return nil
}

// benchInputs simulates a fresh stretch of the embedded market (a seed the
// training never used) and returns its raw feature vectors.
func benchInputs(m *infer.Model, events int) ([][]float32, error) {
	if len(m.Features) != feature.Count {
		return nil, fmt.Errorf("bench infer: model has %d features, the embedded market gives %d", len(m.Features), feature.Count)
	}
	cfg := sim.DefaultConfig()
	cfg.Seed = 0xbe7c4
	cfg.Events = events
	cfg.Instruments = cfg.Instruments[:1]
	series, err := dataset.Simulated(cfg, dataset.Labeling{Horizon: 1})
	if err != nil {
		return nil, err
	}
	s := series[0]
	out := make([][]float32, s.Rows())
	for i := range out {
		out[i] = s.Features[i*feature.Count : (i+1)*feature.Count]
	}
	return out, nil
}

// benchGoMLX times the same model as a GoMLX graph, one event (batch of one
// window) per Exec call, on the go backend.
func benchGoMLX(m *infer.Model, inputs [][]float32, n int) (p50, p99 time.Duration, err error) {
	backend, _, err := device.Open(device.Spec{Kind: "cpu"}, device.Options{})
	if err != nil {
		return 0, 0, err
	}
	mlp, err := model.NewMLP(m.Window, len(m.Features), m.Layers[1:len(m.Layers)-1], len(m.Classes))
	if err != nil {
		return 0, 0, err
	}
	st := &train.State{}
	for i := range m.W {
		l := m.Layers
		st.Params = append(st.Params, tensors.FromFlatDataAndDimensions(m.W[i], l[i], l[i+1]), tensors.FromFlatDataAndDimensions(m.B[i], l[i+1]))
	}
	s := train.NewStepper(backend, mlp, train.DefaultOptimizer())
	mean := tensors.FromFlatDataAndDimensions(m.Mean, len(m.Mean))
	std := tensors.FromFlatDataAndDimensions(m.Std, len(m.Std))
	F, W := len(m.Features), m.Window
	x := make([]float32, W*F)
	lat := make([]time.Duration, 0, n)
	for i := 0; i < n+100; i++ {
		for t := 0; t < W; t++ {
			copy(x[t*F:], inputs[(i+t)%len(inputs)])
		}
		t0 := time.Now()
		xt := tensors.FromFlatDataAndDimensions(x, 1, W*F)
		out, err := s.Predict(st, mean, std, xt)
		if err != nil {
			return 0, 0, err
		}
		tensors.MustConstFlatData(out, func([]float32) {})
		if i >= 100 {
			lat = append(lat, time.Since(t0))
		}
		out.FinalizeAll()
	}
	slices.Sort(lat)
	return lat[len(lat)/2], lat[len(lat)*99/100], nil
}

func cmdProfile(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("profile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: gallop profile <run-dir>\n\nPrints the profile report and verdict of a finished run.\n")
	}
	if err := fs.Parse(args); err != nil {
		return flagErr(err)
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	rep, err := profile.Load(filepath.Join(fs.Arg(0), "profile.json"))
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, rep.String())
	return nil
}

// weightsAgreement streams inputs through eng and through the float32
// engine of m and describes how far eng's logits are from float32's.
func weightsAgreement(m *infer.Model, eng *infer.MLP, inputs [][]float32) (string, error) {
	ref, err := infer.NewMLP(m)
	if err != nil {
		return "", fmt.Errorf("bench infer: %w", err)
	}
	a, b := eng.NewStream(), ref.NewStream()
	la, lb := make([]float32, eng.NumClasses()), make([]float32, eng.NumClasses())
	var worst, sum float64
	n, agree := 0, 0
	for _, x := range inputs {
		if !a.Push(x, la) || !b.Push(x, lb) {
			continue
		}
		var d, mx float64
		ka, kb := 0, 0
		for c := range la {
			d = max(d, math.Abs(float64(la[c]-lb[c])))
			mx = max(mx, math.Abs(float64(lb[c])))
			if la[c] > la[ka] {
				ka = c
			}
			if lb[c] > lb[kb] {
				kb = c
			}
		}
		e := d / max(1, mx)
		worst, sum = max(worst, e), sum+e
		if ka == kb {
			agree++
		}
		n++
	}
	if n == 0 {
		return "", fmt.Errorf("bench infer: no full window in %d inputs", len(inputs))
	}
	return fmt.Sprintf("%s vs float32 over %d events: logit difference / max(1, |logit|) mean %.3g, worst %.3g; top class agrees %.2f%%",
		eng.Weights(), n, sum/float64(n), worst, 100*float64(agree)/float64(n)), nil
}

// benchCold spreads events round-robin over k instruments, one stream each,
// so every event finds its instrument's state (and the weights' working set
// competing with k states) out of the nearest caches: the latency of a busy
// process serving many instruments, not of one hot stream.
func benchCold(stdout io.Writer, m *infer.Model, w infer.Weights, inputs [][]float32, k, n int) error {
	if k <= 0 {
		return nil
	}
	newStream, err := infer.Streams(m, infer.ModeWindow, infer.Options{Weights: w})
	if err != nil {
		return fmt.Errorf("bench infer: %w", err)
	}
	streams := make([]infer.Streamer, k)
	logits := make([]float32, len(m.Classes))
	for i := range streams {
		s := newStream()
		for j := 0; j < m.Window; j++ {
			s.Push(inputs[(i+j)%len(inputs)], logits)
		}
		streams[i] = s
	}
	n = min(n, 20*k)
	lat := make([]time.Duration, n)
	for i := range lat {
		s := streams[i%k]
		t := time.Now()
		s.Push(inputs[i%len(inputs)], logits)
		lat[i] = time.Since(t)
	}
	slices.Sort(lat)
	q := func(f float64) time.Duration { return lat[min(len(lat)-1, int(f*float64(len(lat))))] }
	fmt.Fprintf(stdout, "  %d instruments round-robin (cold): p50 %v  p99 %v  p99.9 %v\n", k, q(0.5), q(0.99), q(0.999))
	return nil
}

// benchStreamer times Push of a sequence model's streaming engine (window
// mode: the exact equivalent of the training forward) event by event.
func benchStreamer(stdout io.Writer, m *infer.Model, w infer.Weights, dir string, inputs [][]float32, n int) error {
	newStream, err := infer.Streams(m, infer.ModeWindow, infer.Options{Weights: w})
	if err != nil {
		return fmt.Errorf("bench infer: %w", err)
	}
	eng := newStream()
	logits := make([]float32, len(m.Classes))
	for i := 0; i < m.Window+1000; i++ {
		eng.Push(inputs[i%len(inputs)], logits)
	}
	lat := make([]time.Duration, n)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	t0 := time.Now()
	for i := range lat {
		t := time.Now()
		eng.Push(inputs[i%len(inputs)], logits)
		lat[i] = time.Since(t)
	}
	el := time.Since(t0)
	runtime.ReadMemStats(&after)
	slices.Sort(lat)
	q := func(f float64) time.Duration { return lat[min(len(lat)-1, int(f*float64(len(lat))))] }
	fmt.Fprintf(stdout, "model    %s, window %d × %d features, from %s\n", m.Arch, m.Window, len(m.Features), dir)
	fmt.Fprintf(stdout, "engine   pure Go, one core, %d events, window mode (equals the training forward)\n", n)
	fmt.Fprintf(stdout, "  per event   p50 %v  p99 %v  p99.9 %v\n", q(0.5), q(0.99), q(0.999))
	fmt.Fprintf(stdout, "  throughput  %.0f events/s\n", float64(n)/el.Seconds())
	fmt.Fprintf(stdout, "  allocations %.3g per event\n", float64(after.Mallocs-before.Mallocs)/float64(n))
	return nil
}
