package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gallop-dev/gallop/batch"
	"github.com/gallop-dev/gallop/infer"
	"github.com/gallop-dev/gallop/internal/shareddata"
	"github.com/gallop-dev/gallop/manifest"
	"github.com/gallop-dev/gallop/profile"
	"github.com/gallop-dev/gallop/train"
)

// tinyConfig runs in a couple of seconds.
func tinyConfig(t *testing.T) Config {
	c := DefaultConfig()
	c.RunsDir = t.TempDir()
	c.Data.Sim.Events = 20_000
	c.Train.Steps = 60
	c.Train.BatchSize = 64
	c.Train.EvalEvery = 0
	c.Train.CheckpointEvery = 20
	return c
}

// inGitRepo runs the test from a fresh, clean git checkout so the manifest
// (and replay's code check) do not depend on the state of this repository.
func inGitRepo(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"init", "-q"}, {"-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "init"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Skipf("git unavailable: %v %s", err, out)
		}
	}
	t.Chdir(dir)
}

func TestReplayIdenticalAndRefusals(t *testing.T) {
	inGitRepo(t)
	var out bytes.Buffer
	first, err := Train(context.Background(), tinyConfig(t), trainOptions{quiet: true, out: &out}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	r, err := Replay(context.Background(), first.RunDir, replayOptions{quiet: true}, &out, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !r.Identical || r.Steps != 60 {
		t.Fatalf("replay not identical: %+v\n%s", r, out.String())
	}
	// --deterministic on CPU: the final checkpoints are equal byte for byte.
	a, _ := train.LatestCheckpoint(filepath.Join(first.RunDir, "checkpoints"))
	b, _ := train.LatestCheckpoint(filepath.Join(r.RunDir, "checkpoints"))
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if len(ab) == 0 || !bytes.Equal(ab, bb) {
		t.Fatalf("checkpoints of the run and its replay differ (%s, %s)", a, b)
	}

	// gallop diff of a run and its replay shows no config or data change.
	var dout bytes.Buffer
	if code := run(context.Background(), []string{"diff", first.RunDir, r.RunDir}, &dout, &dout); code != 0 {
		t.Fatalf("diff exit %d: %s", code, dout.String())
	}
	if strings.Contains(dout.String(), "config.") || strings.Contains(dout.String(), "data.") {
		t.Fatalf("diff of a replay shows config or data differences:\n%s", dout.String())
	}

	// A changed commit and changed data are refused, naming what changed.
	m, err := manifest.Load(first.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	m.Code.Commit = strings.Repeat("0", 40)
	m.Data.Files[0].SHA256 = strings.Repeat("f", 64)
	if err := m.Write(first.RunDir); err != nil {
		t.Fatal(err)
	}
	_, err = Replay(context.Background(), first.RunDir, replayOptions{quiet: true}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "code revision differs") || !strings.Contains(err.Error(), "sim:SIMA") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("tampered replay: %v", err)
	}
	var stderr bytes.Buffer
	r, err = Replay(context.Background(), first.RunDir, replayOptions{quiet: true, force: true}, &out, &stderr)
	if err != nil || !r.Identical || !strings.Contains(stderr.String(), "--force") {
		t.Fatalf("forced replay: %+v %v %s", r, err, stderr.String())
	}

	// A changed config makes a different run: diff names it.
	c := tinyConfig(t)
	c.Train.LR = 3e-3
	other, err := Train(context.Background(), c, trainOptions{quiet: true}, &out)
	if err != nil {
		t.Fatal(err)
	}
	dout.Reset()
	run(context.Background(), []string{"diff", first.RunDir, other.RunDir}, &dout, &dout)
	if !strings.Contains(dout.String(), "train.lr") {
		t.Fatalf("diff does not name the changed lr:\n%s", dout.String())
	}

	// Bad input: no manifest, corrupt manifest.
	if _, err := Replay(context.Background(), t.TempDir(), replayOptions{}, &out, &out); err == nil || !strings.Contains(err.Error(), "run.json") {
		t.Fatalf("missing manifest: %v", err)
	}
	os.WriteFile(filepath.Join(other.RunDir, "run.json"), []byte(`{"schema_version": 1, "code": {`), 0o644)
	if _, err := Replay(context.Background(), other.RunDir, replayOptions{}, &out, &out); err == nil || !strings.Contains(err.Error(), "offset") {
		t.Fatalf("corrupt manifest: %v", err)
	}
}

// poisonRow puts a NaN into one feature of row of the first series and
// records the first step whose batch (under the run's sampler) holds a
// sample whose window sees it.
func poisonRow(c Config, row int, firstBad *int64) func([]batch.Series) {
	return func(series []batch.Series) {
		series[0].Features[row*51+3] = float32(math.NaN())
		sp, _ := batch.TimeSplit(series, c.Data.Window, c.Data.Horizon, c.Data.Embargo, c.Data.TrainFrac)
		order := make([]int32, len(sp.Train))
		batch.NewSampler(len(sp.Train), c.Seed, true).Next(order)
		*firstBad = -1
		for pos, j := range order {
			r := sp.Train[j]
			if r.Series == 0 && int(r.Row) >= row && int(r.Row) < row+c.Data.Window {
				*firstBad = int64(pos / c.Train.BatchSize)
				return
			}
		}
	}
}

func TestNaNStopsTheRunNamingStepAndBatch(t *testing.T) {
	c := tinyConfig(t)
	c.Train.Steps = 400
	var firstBad int64 = -1
	var out bytes.Buffer
	opt := trainOptions{quiet: true, out: &out, mutate: poisonRow(c, 5000, &firstBad)}
	res, err := Train(context.Background(), c, opt, &out)
	if firstBad < 0 || firstBad >= int64(c.Train.Steps) {
		t.Fatalf("poisoned sample not reached in the run (step %d)", firstBad)
	}
	if err == nil || !strings.Contains(err.Error(), "non-finite values at step "+itoa(firstBad)) {
		t.Fatalf("want a stop at step %d, got %v", firstBad, err)
	}
	if !strings.Contains(err.Error(), "last good checkpoint") || !strings.Contains(err.Error(), "dense") {
		t.Errorf("error lacks checkpoint or layer: %v", err)
	}
	var g struct {
		Step    int64 `json:"step"`
		Samples []struct {
			Instrument string `json:"instrument"`
			Row        uint32 `json:"row"`
		} `json:"samples"`
		Bad []string `json:"nonfinite_gradients"`
	}
	data, rerr := os.ReadFile(filepath.Join(res.RunDir, "guard.json"))
	if rerr != nil || json.Unmarshal(data, &g) != nil {
		t.Fatalf("guard.json: %v %s", rerr, data)
	}
	hit := false
	for _, s := range g.Samples {
		hit = hit || (s.Instrument == "SIMA" && s.Row >= 5000 && s.Row < 5000+uint32(c.Data.Window))
	}
	if g.Step != firstBad || !hit || len(g.Bad) == 0 {
		t.Fatalf("guard.json names step %d (want %d), poisoned sample present %v, layers %v", g.Step, firstBad, hit, g.Bad)
	}
	// Stopped within the guard's lag: no step beyond firstBad+lag+1 ran.
	losses, _ := readLosses(filepath.Join(res.RunDir, "metrics.jsonl"))
	if int64(len(losses)) > firstBad+int64(c.Train.GuardLag)+2 {
		t.Fatalf("run went on to step %d after a NaN at %d (lag %d)", len(losses)-1, firstBad, c.Train.GuardLag)
	}
	m, _ := manifest.Load(res.RunDir)
	if !strings.HasPrefix(m.Outcome.Status, "failed: guard") || *m.Outcome.ExitCode != 1 {
		t.Fatalf("manifest outcome %+v", m.Outcome)
	}

	// skip: the run completes and counts the bad steps.
	c.Train.OnNonFinite = "skip"
	res, err = Train(context.Background(), c, opt, &out)
	if err != nil || res.NonFinite == 0 || res.Steps != int64(c.Train.Steps) {
		t.Fatalf("skip: %+v %v", res, err)
	}
	// rollback: the poison comes back with the same batches, so the run
	// rolls back maxRollbacks times and then stops.
	c.Train.OnNonFinite = "rollback"
	c.Train.CheckpointEvery = 1
	var stderr bytes.Buffer
	res, err = Train(context.Background(), c, opt, &stderr)
	if err == nil || res.Rollbacks != maxRollbacks || !strings.Contains(stderr.String(), "rolled back") {
		t.Fatalf("rollback: %+v %v\n%s", res, err, stderr.String())
	}
	// The same with 2 steps per call: queued batches of abandoned steps go
	// back to their loader, and the run resumes on call boundaries.
	c.Train.StepsPerCall, c.Train.CheckpointEvery = 2, 2
	c.Train.Steps -= c.Train.Steps % 2
	c.Train.EvalEvery -= c.Train.EvalEvery % 2
	stderr.Reset()
	res, err = Train(context.Background(), c, opt, &stderr)
	if err == nil || res.Rollbacks != maxRollbacks || !strings.Contains(stderr.String(), "rolled back") {
		t.Fatalf("rollback, 2 steps per call: %+v %v\n%s", res, err, stderr.String())
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

func TestInputBoundVerdict(t *testing.T) {
	c := tinyConfig(t)
	c.Train.Steps = 80
	var out bytes.Buffer
	res, err := Train(context.Background(), c, trainOptions{quiet: true, out: &out, dataDelay: 8 * time.Millisecond}, &out)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := profile.Load(filepath.Join(res.RunDir, "profile.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rep.Verdict, "input-bound") {
		t.Fatalf("verdict %q, want input-bound", rep.Verdict)
	}
	// The trace is valid trace-event JSON with a loader track.
	data, _ := os.ReadFile(filepath.Join(res.RunDir, "trace.json"))
	var tr struct {
		TraceEvents []struct {
			Ph   string         `json:"ph"`
			Name string         `json:"name"`
			Dur  *float64       `json:"dur"`
			Args map[string]any `json:"args"`
		} `json:"traceEvents"`
	}
	if err := json.Unmarshal(data, &tr); err != nil || len(tr.TraceEvents) == 0 {
		t.Fatalf("trace: %v", err)
	}
	tracks := map[string]bool{}
	for _, e := range tr.TraceEvents {
		if e.Ph == "X" && (e.Dur == nil || *e.Dur < 0) {
			t.Fatalf("complete event %q without a duration", e.Name)
		}
		if e.Ph == "M" && e.Name == "thread_name" {
			tracks[e.Args["name"].(string)] = true
		}
	}
	if !tracks["stage: loader"] || !tracks["stage: device 0"] {
		t.Fatalf("trace tracks %v: want loader and device 0", tracks)
	}
}

// TestNoSecretsInRunDir plants credentials in the environment; none may
// appear anywhere in the run directory.
func TestNoSecretsInRunDir(t *testing.T) {
	const secret = "AKIAFAKESECRET123"
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	t.Setenv("GALLOP_API_TOKEN", "tok-"+secret)
	var out bytes.Buffer
	res, err := Train(context.Background(), tinyConfig(t), trainOptions{quiet: true, out: &out}, &out)
	if err != nil {
		t.Fatal(err)
	}
	filepath.Walk(res.RunDir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		data, _ := os.ReadFile(p)
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("%s contains the planted secret", p)
		}
		return nil
	})
}

func TestInterruptedRunIsRecorded(t *testing.T) {
	c := tinyConfig(t)
	c.Train.Steps = 100000
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(1500*time.Millisecond, cancel)
	var out bytes.Buffer
	res, err := Train(ctx, c, trainOptions{quiet: true, out: &out}, &out)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want cancellation, got %v", err)
	}
	m, lerr := manifest.Load(res.RunDir)
	if lerr != nil || m.Outcome.Status != manifest.StatusInterrupted {
		t.Fatalf("manifest after interrupt: %v %+v", lerr, m)
	}
}

func TestLRFindReportAndEval(t *testing.T) {
	c := tinyConfig(t)
	var out bytes.Buffer
	res, err := Train(context.Background(), c, trainOptions{quiet: true, out: &out, lrFind: true}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "lr-find  valley") {
		t.Fatalf("no lr-find line:\n%s", out.String())
	}
	m, _ := manifest.Load(res.RunDir)
	var rc Config
	json.Unmarshal(m.Config, &rc)
	if rc.Train.LR == DefaultConfig().Train.LR {
		t.Errorf("the recorded config keeps the default lr, not the finder's")
	}
	page, err := os.ReadFile(filepath.Join(res.RunDir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"training loss", "learning-rate schedule", "learning-rate finder", "val_macro_f1", "<svg"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	var eout bytes.Buffer
	if code := run(context.Background(), []string{"eval", res.RunDir}, &eout, &eout); code != 0 {
		t.Fatalf("eval exit %d:\n%s", code, eout.String())
	}
	// eval of the final checkpoint reproduces the run's final metrics.
	if want := "macro-F1 " + strconv.FormatFloat(res.MacroF1, 'f', 4, 64); !strings.Contains(eout.String(), want) {
		t.Fatalf("eval output lacks %q:\n%s", want, eout.String())
	}
	var lout bytes.Buffer
	if code := run(context.Background(), []string{"lr-find", "--events", "20000", "--batch-size", "64", "--runs-dir", t.TempDir(), "--sweep", "60"}, &lout, &lout); code != 0 || !strings.Contains(lout.String(), "valley") {
		t.Fatalf("lr-find exit %d:\n%s", code, lout.String())
	}
}

// TestTrainOnShards ingests simulated events into a sharded dataset, trains
// from it, and checks that a changed shard is refused by training and by
// replay, naming the shard.
func TestTrainOnShards(t *testing.T) {
	inGitRepo(t)
	ds := filepath.Join(t.TempDir(), "ds")
	var out bytes.Buffer
	if code := run(context.Background(), []string{"data", "ingest", "-o", ds, "sim:30000"}, &out, &out); code != 0 {
		t.Fatalf("ingest exit %d:\n%s", code, out.String())
	}
	c := tinyConfig(t)
	c.Data.Source, c.Data.Path = "shards", ds
	res, err := Train(context.Background(), c, trainOptions{quiet: true, out: &out}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	m, _ := manifest.Load(res.RunDir)
	if m.Data.ManifestSHA256 == "" || len(m.Data.Files) == 0 || !strings.HasSuffix(m.Data.Files[0].Name, ".arrow") {
		t.Fatalf("manifest data %+v", m.Data)
	}
	// Corrupt one shard.
	shardPath := filepath.Join(ds, m.Data.Files[0].Name)
	data, err := os.ReadFile(shardPath)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	os.WriteFile(shardPath, data, 0o644)
	_, err = Train(context.Background(), c, trainOptions{quiet: true, out: &out}, &out)
	if err == nil || !strings.Contains(err.Error(), m.Data.Files[0].Name) {
		t.Fatalf("training on a changed shard: %v", err)
	}
	if _, err := Replay(context.Background(), res.RunDir, replayOptions{quiet: true}, &out, &out); err == nil || !strings.Contains(err.Error(), m.Data.Files[0].Name) {
		t.Fatalf("replay with a changed shard: %v", err)
	}
	// Data no longer present.
	os.RemoveAll(ds)
	if _, err := Replay(context.Background(), res.RunDir, replayOptions{quiet: true}, &out, &out); err == nil || !strings.Contains(err.Error(), "dataset.json") {
		t.Fatalf("replay without the dataset: %v", err)
	}
}

// TestOtherArchitectures trains each sequence architecture briefly end to
// end: the run completes, checkpoints, and exports a model the pure-Go
// engine loads and streams.
func TestOtherArchitectures(t *testing.T) {
	for _, arch := range []string{"gru", "transformer", "deeplob"} {
		c := tinyConfig(t)
		c.Model.Arch = arch
		c.Train.Steps = 20
		c.Train.BatchSize = 32
		var out bytes.Buffer
		res, err := Train(context.Background(), c, trainOptions{quiet: true, out: &out}, &out)
		if err != nil {
			t.Fatalf("%s: %v\n%s", arch, err, out.String())
		}
		if !strings.Contains(out.String(), "model    "+arch) || res.Accuracy <= 0 {
			t.Errorf("%s: output\n%s", arch, out.String())
		}
		im, err := infer.Load(filepath.Join(res.RunDir, "export"))
		if err != nil || im.Arch != arch {
			t.Fatalf("%s: export: %v", arch, err)
		}
		eng, err := infer.NewStreamer(im, infer.ModeWindow)
		if err != nil {
			t.Fatalf("%s: engine: %v", arch, err)
		}
		logits := make([]float32, 3)
		ready := false
		for i := 0; i < c.Data.Window; i++ {
			ready = eng.Push(make([]float32, len(im.Features)), logits)
		}
		if !ready {
			t.Errorf("%s: stream not ready after a window of events", arch)
		}
		var bout bytes.Buffer
		if code := run(context.Background(), []string{"bench", "infer", "-n", "200", res.RunDir}, &bout, &bout); code != 0 || !strings.Contains(bout.String(), "allocations 0 per event") {
			t.Errorf("%s: bench infer exit %d:\n%s", arch, code, bout.String())
		}
		if ck, _ := train.LatestCheckpoint(filepath.Join(res.RunDir, "checkpoints")); ck == "" {
			t.Errorf("%s: no checkpoint", arch)
		}
	}
}

func TestSelectBestWithTestBlock(t *testing.T) {
	c := tinyConfig(t)
	c.Data.TrainFrac, c.Data.ValFrac = 0.6, 0.2
	c.Train.EvalEvery, c.Train.SelectBest = 20, true
	var out bytes.Buffer
	res, err := Train(context.Background(), c, trainOptions{quiet: true, out: &out}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "test (") || !strings.Contains(out.String(), "test samples after the validation block") {
		t.Fatalf("no test block in the output:\n%s", out.String())
	}
	ms, _ := readMetrics(filepath.Join(res.RunDir, "metrics.jsonl"))
	var vals, tests int
	for _, m := range ms {
		switch m.Split {
		case "val":
			vals++
		case "test":
			tests++
		}
	}
	if vals < 2 || tests != 1 {
		t.Fatalf("%d validation and %d test lines", vals, tests)
	}
	if ck, _ := train.LatestCheckpoint(filepath.Join(res.RunDir, "checkpoints", "best")); ck == "" {
		t.Fatal("no best checkpoint")
	}
}

// TestSequenceLayouts trains a GRU on variable-length sequences in both
// layouts, and the MLP and DeepLOB packed, through the CLI: they run and
// report per-epoch padding.
func TestSequenceLayouts(t *testing.T) {
	for _, c := range [][2]string{{"gru", "padded"}, {"gru", "packed"}, {"mlp", "packed"}, {"deeplob", "packed"}} {
		arch, layout := c[0], c[1]
		var out bytes.Buffer
		args := []string{"train", "--quiet", "--arch", arch, "--layout", layout, "--events", "30000",
			"--steps", "60", "--batch-size", "16", "--seq-len", "32", "--hidden", "16", "--runs-dir", t.TempDir()}
		if arch == "deeplob" {
			// A window's forward per position: a small model and market.
			args = append(args, "--window", "8", "--events", "8000", "--steps", "4", "--batch-size", "2", "--seq-len", "16")
		}
		code := run(context.Background(), args, &out, &out)
		if code != 0 {
			t.Fatalf("%s %s: exit %d\n%s", arch, layout, code, out.String())
		}
		if !strings.Contains(out.String(), "("+layout+"): padding") || !strings.Contains(out.String(), "labelled positions") ||
			!strings.Contains(out.String(), "\nprofile  ") {
			t.Fatalf("%s %s: output\n%s", arch, layout, out.String())
		}
		// Profiled by default, as runs on fixed windows: a report and a trace.
		m := regexp.MustCompile(`(?m)^run +(\S+)$`).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("%s %s: no run line\n%s", arch, layout, out.String())
		}
		for _, f := range []string{"profile.json", "trace.json"} {
			if !fileExists(filepath.Join(m[1], f)) {
				t.Errorf("%s %s: no %s in %s", arch, layout, f, m[1])
			}
		}
	}
}

// TestMLPOnBookColumns trains an MLP on the 40 book columns only
// (--inputs book): the run exports a full-input model whose engine equals
// the GoMLX forward, and the option is refused where it does not apply.
func TestMLPOnBookColumns(t *testing.T) {
	c := tinyConfig(t)
	c.Model.Inputs = "book"
	c.Train.Steps = 20
	var out bytes.Buffer
	res, err := Train(context.Background(), c, trainOptions{quiet: true, out: &out}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "over 40 of 51 features") {
		t.Errorf("output does not describe the book-only MLP:\n%s", out.String())
	}
	checkEngineParity(t, filepath.Join(res.RunDir, "export"))
	for _, args := range [][]string{{"--inputs", "ticks"}, {"--inputs", "book", "--arch", "gru"}} {
		var eout bytes.Buffer
		if code := run(context.Background(), append([]string{"train", "--quiet", "--runs-dir", t.TempDir()}, args...), &eout, &eout); code == 0 ||
			!strings.Contains(eout.String(), "model.inputs") {
			t.Errorf("train %v: exit %d:\n%s", args, code, eout.String())
		}
	}
}

// TestStepsPerCall trains with 8 optimizer steps per call on the CPU (more
// batches than the loader's default pool holds at once): the
// metrics have every step's loss, the run equals the same run with one
// step per call step for step (the updates are the same), and settings
// that cannot run are refused.
func TestStepsPerCall(t *testing.T) {
	losses := func(k int) []float64 {
		c := tinyConfig(t)
		c.Train.Steps, c.Train.StepsPerCall, c.Train.EvalEvery, c.Train.CheckpointEvery = 48, k, 24, 24
		var out bytes.Buffer
		res, err := Train(context.Background(), c, trainOptions{quiet: true, out: &out}, &out)
		if err != nil {
			t.Fatalf("steps per call %d: %v\n%s", k, err, out.String())
		}
		if k > 1 && !strings.Contains(out.String(), "one call of 8 optimizer steps") {
			t.Errorf("output does not say steps per call:\n%s", out.String())
		}
		l, err := readLosses(filepath.Join(res.RunDir, "metrics.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	one, four := losses(1), losses(8)
	if len(four) != 48 || len(one) != 48 {
		t.Fatalf("%d and %d train losses, want 48", len(one), len(four))
	}
	for s, l := range one {
		if math.IsNaN(l) || math.IsNaN(four[s]) {
			t.Fatalf("step %d: no loss recorded (%v, %v)", s, l, four[s])
		}
		// The CPU path of one step per call gathers windows on the host,
		// the unrolled path on the device: the same values, summed in
		// possibly another order.
		if d := math.Abs(four[s] - l); d > 1e-4*max(1, math.Abs(l)) {
			t.Errorf("step %d: loss %v with 8 steps per call, %v with 1", s, four[s], l)
		}
	}
	for _, args := range [][]string{
		{"--steps-per-call", "0"},
		{"--steps-per-call", "3", "--steps", "10"},
		{"--steps-per-call", "2", "--accumulate", "2"},
	} {
		var eout bytes.Buffer
		if code := run(context.Background(), append([]string{"train", "--quiet", "--runs-dir", t.TempDir()}, args...), &eout, &eout); code == 0 ||
			!strings.Contains(eout.String(), "steps_per_call") {
			t.Errorf("train %v: exit %d:\n%s", args, code, eout.String())
		}
	}
}

// TestSequenceStepsPerCall trains a GRU on packed sequences with 4
// optimizer steps per call on the CPU: every step's loss is logged and
// equals the same run's at one step per call bit for bit (the same
// batches, the same updates), validation and checkpoints land on the same
// steps, and the final state is the same.
func TestSequenceStepsPerCall(t *testing.T) {
	type result struct {
		losses []float64
		val    []int64
		f1     float64
		out    string
	}
	train := func(k int) result {
		c := tinyConfig(t)
		c.Model.Arch, c.Model.Layout, c.Model.Hidden = "gru", "packed", []int{8}
		c.Train.BatchSize, c.Data.SeqLen = 8, 32
		c.Train.Steps, c.Train.StepsPerCall, c.Train.EvalEvery, c.Train.CheckpointEvery = 48, k, 24, 24
		var out bytes.Buffer
		res, err := Train(context.Background(), c, trainOptions{quiet: true, out: &out}, &out)
		if err != nil {
			t.Fatalf("steps per call %d: %v\n%s", k, err, out.String())
		}
		l, err := readLosses(filepath.Join(res.RunDir, "metrics.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		ms, err := readMetrics(filepath.Join(res.RunDir, "metrics.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		var val []int64
		for _, m := range ms {
			if m.Split == "val" && !m.Final {
				val = append(val, m.Step)
			}
		}
		return result{l, val, res.MacroF1, out.String()}
	}
	one, four := train(1), train(4)
	if !strings.Contains(four.out, "one call of 4 optimizer steps") {
		t.Errorf("output does not say steps per call:\n%s", four.out)
	}
	if len(one.losses) != 48 || len(four.losses) != 48 {
		t.Fatalf("%d and %d train losses, want 48", len(one.losses), len(four.losses))
	}
	for s, l := range one.losses {
		if four.losses[s] != l || math.IsNaN(l) {
			t.Errorf("step %d: loss %v with 4 steps per call, %v with 1", s, four.losses[s], l)
		}
	}
	if !slices.Equal(one.val, []int64{23}) || !slices.Equal(four.val, one.val) {
		t.Errorf("validation at steps %v (4 per call) and %v (1), want [23]", four.val, one.val)
	}
	if four.f1 != one.f1 {
		t.Errorf("final macro-F1 %v with 4 steps per call, %v with 1", four.f1, one.f1)
	}
}

// TestServeModes serves a GRU run through the CLI over the real CME MBO
// sample (mostly a book snapshot, then one live event): in window mode its
// single live event has no full window, in carried mode it gets a
// prediction; a mode the architecture lacks is refused by name.
func TestServeModes(t *testing.T) {
	dir := shareddata.Find(filepath.Join("nautilus_trader", "databento"), "esh4-glbx-mdp3-20231224.mbo.dbn.zst")
	if dir == "" {
		t.Skip("shared/data/nautilus_trader/databento not found")
	}
	events := filepath.Join(dir, "esh4-glbx-mdp3-20231224.mbo.dbn.zst")
	var out bytes.Buffer
	runs := t.TempDir()
	if code := run(context.Background(), []string{"train", "--quiet", "--arch", "gru", "--hidden", "8", "--window", "4", "--events", "20000",
		"--steps", "20", "--eval-every", "0", "--runs-dir", runs}, &out, &out); code != 0 {
		t.Fatalf("train: exit %d\n%s", code, out.String())
	}
	m := regexp.MustCompile(`(?m)^run +(\S+)$`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no run line\n%s", out.String())
	}
	for mode, want := range map[string]string{"window": "0 predictions; no prediction: 1 warm-up", "carried": "1 predictions; no prediction: 0 warm-up"} {
		var preds, log bytes.Buffer
		if code := run(context.Background(), []string{"serve", "--model", m[1], "--tick", "0.25", "--mode", mode, events}, &preds, &log); code != 0 {
			t.Fatalf("serve --mode %s: exit %d\n%s", mode, code, log.String())
		}
		if !strings.Contains(log.String(), want) || !strings.Contains(log.String(), "gru-8, window 4") {
			t.Errorf("serve --mode %s: summary\n%s\nwant %q", mode, log.String(), want)
		}
		if n := strings.Count(preds.String(), "\n"); (mode == "carried") != (n == 1) {
			t.Errorf("serve --mode %s: %d predictions written", mode, n)
		}
	}
	var log bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--model", m[1], "--mode", "segment", events}, &log, &log); code != 1 || !strings.Contains(log.String(), "gru has no segment mode") {
		t.Errorf("serve --mode segment on a GRU: exit %d\n%s", code, log.String())
	}
}

// TestSequenceGuardPolicies: on padded or packed sequences a NaN in the
// data stops the run by default, is skipped and counted with skip, and
// with rollback is rolled back to the last checkpoint until the rollbacks
// run out (the poison comes back with the same sequences).
func TestSequenceGuardPolicies(t *testing.T) {
	c := tinyConfig(t)
	c.Model.Arch, c.Model.Layout, c.Model.Hidden = "gru", "packed", []int{8}
	c.Train.BatchSize, c.Train.Steps, c.Train.CheckpointEvery, c.Data.SeqLen = 8, 250, 0, 32 // more than an epoch
	poison := func(series []batch.Series) { series[0].Features[5000*51+3] = float32(math.NaN()) }
	var out bytes.Buffer
	opt := trainOptions{quiet: true, out: &out, mutate: poison}
	res, err := Train(context.Background(), c, opt, &out)
	if err == nil || !strings.Contains(err.Error(), "non-finite values at step") || !strings.Contains(err.Error(), "guard.json") {
		t.Fatalf("stop: %v\n%s", err, out.String())
	}
	// guard.json names the poisoned sequence among the batch's.
	var g struct {
		Policy  string `json:"policy"`
		Samples []struct {
			Instrument string `json:"instrument"`
			Row        uint32 `json:"row"`
			Events     uint32 `json:"events"`
		} `json:"samples"`
	}
	data, rerr := os.ReadFile(filepath.Join(res.RunDir, "guard.json"))
	if rerr != nil || json.Unmarshal(data, &g) != nil {
		t.Fatalf("guard.json: %v %s", rerr, data)
	}
	hit := false
	for _, q := range g.Samples {
		hit = hit || (q.Instrument == "SIMA" && q.Row <= 5000 && 5000 < q.Row+q.Events)
	}
	if g.Policy != "stop" || !hit {
		t.Fatalf("guard.json: %s", data)
	}
	c.Train.OnNonFinite = "skip"
	res, err = Train(context.Background(), c, opt, &out)
	if err != nil || res.NonFinite == 0 || res.Steps != int64(c.Train.Steps) || !strings.Contains(out.String(), "non-finite steps (skip)") {
		t.Fatalf("skip: %+v %v\n%s", res, err, out.String())
	}
	// One poisoned row is in one sequence: one rollback (to a checkpoint
	// past its batch, whose step was skipped) and the run completes.
	c.Train.OnNonFinite, c.Train.CheckpointEvery = "rollback", 1
	var stderr bytes.Buffer
	res, err = Train(context.Background(), c, opt, &stderr)
	if err != nil || res.Rollbacks != 1 || res.Steps != int64(c.Train.Steps) || !strings.Contains(stderr.String(), "rolled back") {
		t.Fatalf("rollback: %+v %v\n%s", res, err, stderr.String())
	}
	// Poison in many sequences keeps coming back: the rollbacks run out.
	opt.mutate = func(series []batch.Series) {
		for row := 2000; row < 14000; row += 50 {
			series[0].Features[row*51+3] = float32(math.NaN())
		}
	}
	stderr.Reset()
	res, err = Train(context.Background(), c, opt, &stderr)
	data, _ = os.ReadFile(filepath.Join(res.RunDir, "guard.json"))
	if err == nil || res.Rollbacks != maxRollbacks || !strings.Contains(string(data), "still non-finite after") {
		t.Fatalf("rollback, poison everywhere: %+v %v\n%s\n%s", res, err, stderr.String(), data)
	}
	// The same with 2 steps per call: the run rolls back to call
	// boundaries and the rollbacks run out as before.
	c.Train.StepsPerCall, c.Train.CheckpointEvery = 2, 2
	stderr.Reset()
	res, err = Train(context.Background(), c, opt, &stderr)
	data, _ = os.ReadFile(filepath.Join(res.RunDir, "guard.json"))
	if err == nil || res.Rollbacks != maxRollbacks || !strings.Contains(string(data), "still non-finite after") {
		t.Fatalf("rollback, poison everywhere, 2 steps per call: %+v %v\n%s\n%s", res, err, stderr.String(), data)
	}
}

// TestSequenceEvalEvery: a sequence run validates every eval_every steps
// (validation curve points in metrics.jsonl, hence the report) and with
// select_best keeps the best state under checkpoints/best, reporting the
// better of it and the final state.
func TestSequenceEvalEvery(t *testing.T) {
	c := tinyConfig(t)
	c.Model.Arch, c.Model.Layout, c.Model.Hidden = "gru", "packed", []int{8}
	c.Train.BatchSize, c.Train.Steps, c.Train.EvalEvery, c.Train.SelectBest, c.Data.SeqLen = 8, 60, 20, true, 32
	var out bytes.Buffer
	res, err := Train(context.Background(), c, trainOptions{quiet: true, out: &out}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	ms, err := readMetrics(filepath.Join(res.RunDir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var steps []int64
	best := -1.0
	for _, m := range ms {
		if m.Split == "val" && !m.Final {
			steps = append(steps, m.Step)
			best = max(best, *m.MacroF1)
		}
	}
	if !slices.Equal(steps, []int64{19, 39}) {
		t.Fatalf("validation at steps %v, want [19 39]", steps)
	}
	if ck, _ := train.LatestCheckpoint(filepath.Join(res.RunDir, "checkpoints", "best")); ck == "" {
		t.Fatal("no best checkpoint")
	}
	if res.MacroF1 < best-1e-9 {
		t.Fatalf("reported macro-F1 %v below the best validation %v", res.MacroF1, best)
	}
}
