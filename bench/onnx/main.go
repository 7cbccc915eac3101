// Command onnx measures gallop's pure-Go inference engine (package infer)
// against ONNX Runtime and GoMLX on the same weights: the latency of one
// event (batch 1, one thread) for the MLPs 64-256-256-1 and gallop's default
// 510-128-64-3 (one window per event), and for GRU-64 over 40 features with
// its state carried from event to event (one cell step per event; the
// exported ONNX step takes and returns the state, see gru.go).
//
// It is its own module so that gallop does not depend on ONNX Runtime. The
// runtime's shared library comes from the onnxruntime-node npm package (see
// fetch.sh); github.com/yalue/onnxruntime_go v1.27.0 calls it through cgo and
// expects ONNX Runtime 1.24.x.
//
//	bash fetch.sh && GOEXPERIMENT=simd go run .
package main

import (
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/gomlx/compute/gobackend"
	"github.com/gomlx/gomlx/core/tensors"
	ort "github.com/yalue/onnxruntime_go"

	"github.com/gallop-dev/gallop/data/dataset"
	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/data/sim"
	"github.com/gallop-dev/gallop/infer"
	"github.com/gallop-dev/gallop/internal/procfile"
	"github.com/gallop-dev/gallop/model"
	"github.com/gallop-dev/gallop/train"
)

func main() {
	lib := flag.String("ort", "lib/libonnxruntime.so.1", "ONNX Runtime shared library (1.24.x)")
	n := flag.Int("n", 100_000, "timed events per engine and model")
	rounds := flag.Int("rounds", 5, "the engines take turns this many times, n/rounds events each")
	gomlxN := flag.Int("gomlx-n", 2000, "timed events through GoMLX (0 to skip)")
	exportDir := flag.String("model", "", "a gallop export (510-128-64-3) to use instead of random weights for the default model")
	saveONNX := flag.String("save-onnx", "", "also write the ONNX models into this directory")
	flag.Parse()
	log.SetFlags(0)
	runtime.GOMAXPROCS(1)

	ort.SetSharedLibraryPath(*lib)
	if err := ort.InitializeEnvironment(); err != nil {
		log.Fatalf("onnx runtime %s: %v (run fetch.sh first)", *lib, err)
	}
	defer ort.DestroyEnvironment()

	cases, err := benchCases(*exportDir)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("cpu       %s (GOMAXPROCS 1, ORT intra-op and inter-op threads 1)\n", cpuModel())
	fmt.Printf("runtimes  gallop infer (%s), ONNX Runtime %s, GoMLX Go backend\n", simdNote(), ort.GetVersion())
	fmt.Printf("method    per-event latency, one window = one event, batch 1; %d events per engine in %d interleaved rounds; nearest-rank percentiles; each latency includes one clock read\n\n", *n, *rounds)

	var rows []string
	for _, c := range cases {
		r, err := run(c, *n, *rounds, *gomlxN, *saveONNX)
		if err != nil {
			log.Fatalf("%s: %v", c.name, err)
		}
		rows = append(rows, r...)
	}
	r, err := runGRU(*n, *rounds)
	if err != nil {
		log.Fatalf("GRU: %v", err)
	}
	rows = append(rows, r...)
	fmt.Println("| model | engine | p50 | p99 | p99.9 | ONNX Runtime ÷ engine (p50 / p99) |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Println(r)
	}
}

// benchCase is one model with the events it is fed.
type benchCase struct {
	name   string
	m      *infer.Model
	events [][]float32 // raw feature vectors
	note   string
}

func benchCases(exportDir string) ([]benchCase, error) {
	r := rand.New(rand.NewPCG(2026, 11))

	// 64-256-256-1: a window of 4 events of 16 features, random data.
	const f64, w64 = 16, 4
	names := make([]string, f64)
	for i := range names {
		names[i] = fmt.Sprintf("f%d", i)
	}
	small := randomModel(r, w64, names, []int{256, 256}, []string{"score"})
	for i := range small.Mean {
		small.Mean[i], small.Std[i] = float32(r.NormFloat64()), float32(0.5+r.Float64())
	}
	ev := make([][]float32, 20_000)
	for i := range ev {
		ev[i] = make([]float32, f64)
		for j := range ev[i] {
			ev[i][j] = small.Mean[j] + small.Std[j]*float32(r.NormFloat64())
		}
	}

	// 510-128-64-3: gallop's default model on features of the embedded
	// market (a seed training never uses), normalised by their statistics.
	cfg := sim.DefaultConfig()
	cfg.Seed, cfg.Events = 0xbe7c4, 20_000
	cfg.Instruments = cfg.Instruments[:1]
	series, err := dataset.Simulated(cfg, dataset.Labeling{Horizon: 1})
	if err != nil {
		return nil, err
	}
	s := series[0]
	market := make([][]float32, s.Rows())
	for i := range market {
		market[i] = s.Features[i*feature.Count : (i+1)*feature.Count]
	}
	var big *infer.Model
	note := "random He-initialised weights, normalised on the data"
	if exportDir != "" {
		if big, err = infer.Load(exportDir); err != nil {
			return nil, err
		}
		note = "trained export " + exportDir
	} else {
		big = randomModel(r, 10, feature.Names, []int{128, 64}, feature.ClassNames)
		mean, std := stats(market)
		copy(big.Mean, mean)
		copy(big.Std, std)
	}
	return []benchCase{
		{"MLP 64-256-256-1 (window 4 × 16 features)", small, ev, "random weights and inputs"},
		{"MLP 510-128-64-3 (window 10 × 51 features, gallop default)", big, market, note},
	}, nil
}

func randomModel(r *rand.Rand, w int, features []string, hidden []int, classes []string) *infer.Model {
	f := len(features)
	layers := append(append([]int{w * f}, hidden...), len(classes))
	m := &infer.Model{
		Spec: infer.Spec{Arch: infer.ArchMLP, Window: w, Features: features, Classes: classes,
			Layers: layers, Activation: infer.ActivationReLU},
		Mean: make([]float32, f), Std: make([]float32, f),
	}
	for i := range m.Std {
		m.Std[i] = 1
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
	return m
}

func stats(rows [][]float32) (mean, std []float32) {
	f := len(rows[0])
	s1, s2 := make([]float64, f), make([]float64, f)
	for _, r := range rows {
		for i, v := range r {
			s1[i] += float64(v)
			s2[i] += float64(v) * float64(v)
		}
	}
	mean, std = make([]float32, f), make([]float32, f)
	n := float64(len(rows))
	for i := range f {
		mu := s1[i] / n
		sd := math.Sqrt(max(s2[i]/n-mu*mu, 0))
		if sd < 1e-6 {
			sd = 1
		}
		mean[i], std[i] = float32(mu), float32(sd)
	}
	return mean, std
}

// run benchmarks one case and returns its table rows.
func run(c benchCase, n, rounds, gomlxN int, saveDir string) ([]string, error) {
	m := c.m
	if err := m.Validate(); err != nil {
		return nil, err
	}
	W, F, C := m.Window, len(m.Features), len(m.Classes)
	flat := make([]float32, 0, len(c.events)*F)
	for _, e := range c.events {
		flat = append(flat, e...)
	}
	nwin := len(c.events) - W + 1
	window := func(k int) []float32 { k %= nwin; return flat[k*F : (k+W)*F] }

	eng, err := infer.NewMLP(m)
	if err != nil {
		return nil, err
	}
	eng8, err := infer.NewMLPWith(m, infer.Options{Weights: infer.WeightsInt8})
	if err != nil {
		return nil, err
	}
	data := onnxModel(m)
	if saveDir != "" {
		name := fmt.Sprintf("%s/mlp-%s.onnx", saveDir, strings.Trim(strings.ReplaceAll(fmt.Sprint(m.Layers), " ", "-"), "[]"))
		if err := os.WriteFile(name, data, 0o644); err != nil {
			return nil, err
		}
	}
	opts, err := sessionOptions()
	if err != nil {
		return nil, err
	}
	defer opts.Destroy()
	in, err := ort.NewTensor(ort.NewShape(1, int64(W*F)), make([]float32, W*F))
	if err != nil {
		return nil, err
	}
	defer in.Destroy()
	out, err := ort.NewEmptyTensor[float32](ort.NewShape(1, int64(C)))
	if err != nil {
		return nil, err
	}
	defer out.Destroy()
	sess, err := ort.NewAdvancedSessionWithONNXData(data, []string{"x"}, []string{"logits"},
		[]ort.Value{in}, []ort.Value{out}, opts)
	if err != nil {
		return nil, fmt.Errorf("onnx runtime session: %w", err)
	}
	defer sess.Destroy()
	inData, outData := in.GetData(), out.GetData()
	ortForward := func(x []float32) error {
		copy(inData, x)
		return sess.Run()
	}

	// Outputs: ONNX Runtime against gallop's Forward, and the Stream.
	logits := make([]float32, C)
	var worst float64
	for k := range min(nwin, 2000) {
		if err := ortForward(window(k)); err != nil {
			return nil, err
		}
		eng.Forward(window(k), logits)
		worst = max(worst, relErr(outData, logits))
	}
	st := eng.NewStream()
	var worstStream float64
	ref := make([]float32, C)
	for k := range min(len(c.events), 2000) {
		if st.Push(c.events[k], logits) {
			eng.Forward(window(k-W+1), ref)
			worstStream = max(worstStream, relErr(logits, ref))
		}
	}
	fmt.Printf("%s: %s\n  outputs: ONNX Runtime vs gallop Forward max difference %.2g, Stream vs Forward %.2g (relative to max(1, |logit|), 2000 windows)\n",
		c.name, c.note, worst, worstStream)
	if worst > 1e-5 || worstStream > 1e-5 {
		return nil, fmt.Errorf("outputs differ by more than 1e-5: ONNX %g, stream %g", worst, worstStream)
	}
	// int8 weights: against ONNX Runtime's float32 outputs.
	st8 := eng8.NewStream()
	var worst8F, worst8S, sum8F float64
	agree, nw := 0, 0
	for k := range min(len(c.events), 2000) {
		if !st8.Push(c.events[k], logits) {
			continue
		}
		if err := ortForward(window(k - W + 1)); err != nil {
			return nil, err
		}
		worst8S = max(worst8S, relErr(logits, outData))
		eng8.Forward(window(k-W+1), logits)
		e := relErr(logits, outData)
		worst8F, sum8F = max(worst8F, e), sum8F+e
		if argmax(logits) == argmax(outData) {
			agree++
		}
		nw++
	}
	fmt.Printf("  int8 weights vs ONNX Runtime float32: Forward mean %.3g, worst %.3g; Stream worst %.3g; top class agrees %.2f%% (%d windows)\n",
		sum8F/float64(nw), worst8F, worst8S, 100*float64(agree)/float64(nw), nw)
	if worst8F > 0.1 || worst8S > 0.1 {
		return nil, fmt.Errorf("int8 outputs differ by more than 0.1 (infer's stated bound): Forward %g, Stream %g", worst8F, worst8S)
	}

	// Latency: the engines take turns, per events each, rounds times.
	per := max(1, n/rounds)
	var latFwd, latOrt, latStream, latFwd8, latStream8 []time.Duration
	var runErr error
	k := 0 // window/event index, continued across rounds
	for range rounds {
		latFwd = append(latFwd, timeEach(per, &k, nil, func(k int) { eng.Forward(window(k), logits) })...)
		latOrt = append(latOrt, timeEach(per, &k, nil, func(k int) {
			if err := ortForward(window(k)); err != nil {
				runErr = err
			}
		})...)
		// Settle (untimed) before each Push: an event arriving while the
		// stream is idle, as in infer.Bench and gallop serve.
		latStream = append(latStream, timeEach(per, &k, st.Settle, func(k int) {
			st.Push(c.events[k%len(c.events)], logits)
		})...)
		latFwd8 = append(latFwd8, timeEach(per, &k, nil, func(k int) { eng8.Forward(window(k), logits) })...)
		latStream8 = append(latStream8, timeEach(per, &k, st8.Settle, func(k int) {
			st8.Push(c.events[k%len(c.events)], logits)
		})...)
	}
	if runErr != nil {
		return nil, runErr
	}
	sf, so, ss := summarize(latFwd), summarize(latOrt), summarize(latStream)
	sf8, ss8 := summarize(latFwd8), summarize(latStream8)
	rows := []string{
		row(c.name, "ONNX Runtime "+ort.GetVersion()+" (CPU, 1 thread)", so, so),
		row(c.name, "gallop infer: MLP.Forward (whole window)", sf, so),
		row(c.name, "gallop infer: Stream.Push, settled", ss, so),
		row(c.name, "gallop infer, int8 weights: MLP.Forward", sf8, so),
		row(c.name, "gallop infer, int8 weights: Stream.Push, settled", ss8, so),
	}
	if gomlxN > 0 {
		sg, err := gomlxLatency(m, window, gomlxN)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row(c.name, "GoMLX Exec per event (Go backend)", sg, so))
	}
	fmt.Printf("  p50: ONNX Runtime %v, gallop Forward %v (%.1f× lower), gallop Stream settled %v (%.1f× lower); int8: Forward %v (%.1f×), Stream settled %v (%.1f×)\n\n",
		so.p50, sf.p50, ratio(so.p50, sf.p50), ss.p50, ratio(so.p50, ss.p50), sf8.p50, ratio(so.p50, sf8.p50), ss8.p50, ratio(so.p50, ss8.p50))
	return rows, nil
}

// timeEach times f over n calls, reading the clock around each; pre, when
// not nil, runs untimed before each call. *k counts calls across uses, so
// every call sees a fresh window. It warms up with n/10 untimed calls.
func timeEach(n int, k *int, pre func(), f func(int)) []time.Duration {
	for range n / 10 {
		if pre != nil {
			pre()
		}
		f(*k)
		*k++
	}
	lat := make([]time.Duration, n)
	for i := range lat {
		if pre != nil {
			pre()
		}
		t := time.Now()
		f(*k)
		lat[i] = time.Since(t)
		*k++
	}
	return lat
}

type latency struct{ p50, p99, p999 time.Duration }

func summarize(lat []time.Duration) latency {
	slices.Sort(lat)
	q := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(lat)))) - 1
		return lat[max(0, min(i, len(lat)-1))]
	}
	return latency{q(0.5), q(0.99), q(0.999)}
}

func ratio(a, b time.Duration) float64 { return float64(a) / math.Max(1, float64(b)) }

func row(model, engine string, l, ort latency) string {
	return fmt.Sprintf("| %s | %s | %v | %v | %v | %.1f× / %.1f× |", model, engine, l.p50, l.p99, l.p999,
		ratio(ort.p50, l.p50), ratio(ort.p99, l.p99))
}

// relErr returns max|a-b| / max(1, max|b|).
func relErr(a, b []float32) float64 {
	var d, mb float64
	for i := range b {
		d = max(d, math.Abs(float64(a[i]-b[i])))
		mb = max(mb, math.Abs(float64(b[i])))
	}
	return d / max(1, mb)
}

// gomlxLatency times the same model as a GoMLX graph, one window per Exec
// call, on the Go backend (as gallop bench infer does).
func gomlxLatency(m *infer.Model, window func(int) []float32, n int) (latency, error) {
	backend, err := gobackend.New("")
	if err != nil {
		return latency{}, err
	}
	W, F := m.Window, len(m.Features)
	// model.NewMLP wants 2 classes or more (it is built for
	// classification); the graph itself takes any output width.
	mlp := &model.MLP{W: W, F: F, Layers: m.Layers}
	st := &train.State{}
	for i := range m.W {
		l := m.Layers
		st.Params = append(st.Params, tensors.FromFlatDataAndDimensions(m.W[i], l[i], l[i+1]),
			tensors.FromFlatDataAndDimensions(m.B[i], l[i+1]))
	}
	s := train.NewStepper(backend, mlp, train.DefaultOptimizer())
	mean := tensors.FromFlatDataAndDimensions(m.Mean, F)
	std := tensors.FromFlatDataAndDimensions(m.Std, F)
	lat := make([]time.Duration, 0, n)
	for i := range n + 100 {
		t0 := time.Now()
		xt := tensors.FromFlatDataAndDimensions(window(i), 1, W*F)
		out, err := s.Predict(st, mean, std, xt)
		if err != nil {
			return latency{}, err
		}
		tensors.MustConstFlatData(out, func([]float32) {})
		if i >= 100 {
			lat = append(lat, time.Since(t0))
		}
		out.FinalizeAll()
	}
	return summarize(lat), nil
}

func cpuModel() string {
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m := procfile.Field(b, "model name"); m != "" {
			return m
		}
	}
	return runtime.GOARCH
}

// simdNote says whether the binary was built with GOEXPERIMENT=simd, which
// gallop's AVX-512 kernels need.
func simdNote() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "GOEXPERIMENT" && strings.Contains(s.Value, "simd") {
				return "GOEXPERIMENT=simd"
			}
		}
	}
	return "portable (built without GOEXPERIMENT=simd)"
}

func argmax(v []float32) int {
	k := 0
	for i, x := range v {
		if x > v[k] {
			k = i
		}
	}
	return k
}

// sessionOptions are the benchmark's ONNX Runtime settings: one intra-op
// and one inter-op thread, sequential execution, every graph optimisation.
func sessionOptions() (*ort.SessionOptions, error) {
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	for _, err := range []error{opts.SetIntraOpNumThreads(1), opts.SetInterOpNumThreads(1),
		opts.SetExecutionMode(ort.ExecutionModeSequential),
		opts.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll)} {
		if err != nil {
			opts.Destroy()
			return nil, err
		}
	}
	return opts, nil
}
