package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/device"
	"github.com/gallop-dev/gallop/infer"
	"github.com/gallop-dev/gallop/manifest"
	"github.com/gallop-dev/gallop/model"
	"github.com/gallop-dev/gallop/train"
)

// shortConfig is the main job scaled down to seconds.
func shortConfig(t *testing.T) Config {
	c := DefaultConfig()
	c.RunsDir = t.TempDir()
	c.Data.Sim.Events = 60_000
	c.Train.Steps = 500
	c.Train.EvalEvery = 250
	c.Train.CheckpointEvery = 250
	return c
}

// TestTrainBeatsMajority runs the whole job end to end and checks the model
// learned the simulator's signal: macro-F1 well above the majority class.
func TestTrainBeatsMajority(t *testing.T) {
	var out bytes.Buffer
	res, err := Train(context.Background(), shortConfig(t), trainOptions{quiet: true, out: &out}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Logf("\n%s", out.String())
	if res.MacroF1 < res.BaseMacroF1+0.2 {
		t.Errorf("macro-F1 %.3f does not clearly beat the majority baseline %.3f", res.MacroF1, res.BaseMacroF1)
	}
	if res.Accuracy <= res.BaseAcc {
		t.Errorf("accuracy %.3f not above the majority baseline %.3f", res.Accuracy, res.BaseAcc)
	}
	for _, f := range []string{"run.json", "metrics.jsonl", "profile.json", "trace.json", "export/model.json", "export/model.safetensors"} {
		if _, err := os.Stat(filepath.Join(res.RunDir, f)); err != nil {
			t.Errorf("run directory lacks %s: %v", f, err)
		}
	}
	ck, err := train.ListCheckpoints(filepath.Join(res.RunDir, "checkpoints"))
	if err != nil || len(ck) != 2 {
		t.Errorf("checkpoints %v, %v; want 2 (keep_checkpoints)", ck, err)
	}
	man, err := manifest.Load(res.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	if man.Outcome.Status != manifest.StatusOK || math.Abs(man.Outcome.Metrics["val_macro_f1"]-res.MacroF1) > 1e-12 {
		t.Errorf("manifest outcome %+v", man.Outcome)
	}
	var rc Config
	if err := json.Unmarshal(man.Config, &rc); err != nil || rc.Data.Horizon != 100 || rc.Data.Sim.LimitDecay == 0 {
		t.Errorf("manifest config is not the resolved config (%v): %s", err, man.Config)
	}

	// The exported model in the pure-Go engine equals the GoMLX forward pass.
	checkEngineParity(t, filepath.Join(res.RunDir, "export"))

	// bench infer runs on the run directory.
	var bout bytes.Buffer
	if code := run(context.Background(), []string{"bench", "infer", "-n", "2000", "-gomlx-n", "50", res.RunDir}, &bout, &bout); code != 0 {
		t.Fatalf("bench infer exit %d: %s", code, bout.String())
	}
	if !strings.Contains(bout.String(), "p99") || !strings.Contains(bout.String(), "allocations 0 per event") {
		t.Errorf("bench output:\n%s", bout.String())
	}
	bout.Reset()
	if code := run(context.Background(), []string{"bench", "infer", "-n", "500", "-gomlx-n", "0", "-instruments", "10", "-weights", "int8", res.RunDir}, &bout, &bout); code != 0 ||
		!strings.Contains(bout.String(), "int8 weights") || !strings.Contains(bout.String(), "top class agrees") || !strings.Contains(bout.String(), "allocations 0 per event") {
		t.Errorf("bench infer -weights int8: exit %d:\n%s", code, bout.String())
	}
	var pout bytes.Buffer
	if code := run(context.Background(), []string{"profile", res.RunDir}, &pout, &pout); code != 0 || !strings.Contains(pout.String(), "verdict") {
		t.Errorf("profile exit %d:\n%s", code, pout.String())
	}
}

func checkEngineParity(t *testing.T, dir string) {
	t.Helper()
	m, err := infer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := infer.NewMLP(m)
	if err != nil {
		t.Fatal(err)
	}
	inputs, err := benchInputs(m, 3000)
	if err != nil {
		t.Fatal(err)
	}
	const B = 64
	W, F := m.Window, len(m.Features)
	x := make([]float32, B*W*F)
	for i := 0; i < B; i++ {
		for w := 0; w < W; w++ {
			copy(x[(i*W+w)*F:], inputs[i*7+w])
		}
	}
	backend, _, err := device.Open(device.Spec{Kind: "cpu"}, device.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mlp, _ := model.NewMLP(W, F, m.Layers[1:len(m.Layers)-1], len(m.Classes))
	st := &train.State{}
	for i := range m.W {
		st.Params = append(st.Params, tensors.FromFlatDataAndDimensions(m.W[i], m.Layers[i], m.Layers[i+1]), tensors.FromFlatDataAndDimensions(m.B[i], m.Layers[i+1]))
	}
	s := train.NewStepper(backend, mlp, train.DefaultOptimizer())
	lg, err := s.Predict(st, tensors.FromFlatDataAndDimensions(m.Mean, F), tensors.FromFlatDataAndDimensions(m.Std, F), tensors.FromFlatDataAndDimensions(x, B, W*F))
	if err != nil {
		t.Fatal(err)
	}
	want := tensors.MustCopyFlatData[float32](lg)
	C := len(m.Classes)
	got := make([]float32, C)
	var worst float64
	for i := 0; i < B; i++ {
		eng.Forward(x[i*W*F:(i+1)*W*F], got)
		for c := 0; c < C; c++ {
			d := math.Abs(float64(got[c]-want[i*C+c])) / math.Max(1, math.Abs(float64(want[i*C+c])))
			worst = math.Max(worst, d)
		}
	}
	if worst > 1e-5 {
		t.Fatalf("engine differs from GoMLX by %.3g (relative), want <= 1e-5", worst)
	}
	t.Logf("engine vs GoMLX: max relative difference %.2g over %d windows", worst, B)
}

func TestCLIErrors(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: gallop"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"train", "--no-such-flag"}, 2, "flag provided but not defined: -no-such-flag"},
		{[]string{"train", "--steps", "ten"}, 2, `invalid value "ten"`},
		{[]string{"train", "--steps", "0", "--quiet"}, 1, "train.steps = 0"},
		{[]string{"train", "--device", "tpu", "--quiet"}, 1, `want cpu, gpu`},
		{[]string{"train", "--schedule", "zigzag", "--quiet"}, 1, `unknown schedule "zigzag"`},
		{[]string{"train", "--dp-strategy", "ring", "--quiet"}, 1, `train.dp_strategy = "ring"`},
		{[]string{"train", "--arch", "gru", "--layout", "packed", "--seq-balance", "greedy", "--quiet"}, 1, `data.seq_balance = "greedy"`},
		{[]string{"train", "--arch", "gru", "--layout", "ragged", "--quiet"}, 1, `model.layout = "ragged": want padded or packed`},
		{[]string{"train", "--arch", "gru", "--layout", "packed", "--steps-per-call", "2", "--accumulate", "2", "--quiet"}, 1, "train.steps_per_call = 2 needs accumulate = 1"},
		{[]string{"train", "--dp-strategy", "sharding", "--dp-reduce", "bf16", "--quiet"}, 1, "dp_reduce = bf16 needs dp_strategy = replicas"},
		{[]string{"train", "--hidden", "64,x"}, 2, "not a list of integers"},
		{[]string{"train", "--config", "/nonexistent.toml"}, 1, "/nonexistent.toml"},
		{[]string{"bench", "infer"}, 2, "usage: gallop bench infer"},
		{[]string{"bench", "infer", "/nonexistent-run"}, 1, "nonexistent-run"},
		{[]string{"help"}, 0, "commands:"},
		{[]string{"train", "-h"}, 0, "-steps int"},
		{[]string{"bench", "infer", "-h"}, 0, "-gomlx-n"},
		{[]string{"bench", "infer", "-weights", "int4", "/nonexistent-run"}, 1, "int4"},
	}
	for _, c := range cases {
		var out bytes.Buffer
		code := run(context.Background(), c.args, &out, &out)
		if code != c.code || !strings.Contains(out.String(), c.want) {
			t.Errorf("gallop %v: exit %d, output:\n%s\nwant exit %d and %q", c.args, code, out.String(), c.code, c.want)
		}
	}
}

func TestConfigFileAndUnknownKeys(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "run.toml")
	os.WriteFile(good, []byte("seed = 7\n[train]\nsteps = 123\nlr = 0.01\n[data]\nhorizon = 50\n"), 0o644)
	c := DefaultConfig()
	if err := loadTOML(good, &c); err != nil {
		t.Fatal(err)
	}
	if c.Seed != 7 || c.Train.Steps != 123 || c.Data.Horizon != 50 || c.Train.BatchSize != 256 {
		t.Fatalf("config not overlaid: %+v", c)
	}
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[train]\nstepz = 5\n"), 0o644)
	if err := loadTOML(bad, &c); err == nil || !strings.Contains(err.Error(), "train.stepz") {
		t.Fatalf("unknown key not named: %v", err)
	}
}

// TestExampleConfigIsTheDefault keeps examples/run.toml in step with
// DefaultConfig.
func TestExampleConfigIsTheDefault(t *testing.T) {
	c := DefaultConfig()
	if err := loadTOML("../../examples/run.toml", &c); err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(c)
	b, _ := json.Marshal(DefaultConfig())
	if string(a) != string(b) {
		t.Fatalf("examples/run.toml differs from the defaults:\n%s\n%s", a, b)
	}
}
