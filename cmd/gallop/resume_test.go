package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/manifest"
	"github.com/gallop-dev/gallop/model"
	"github.com/gallop-dev/gallop/train"
)

// interrupted trains cfg and cancels the run once step stopAt is done, as
// a killed process would stop; it returns the run directory.
func interrupted(t *testing.T, cfg Config, stopAt int64) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out bytes.Buffer
	opt := trainOptions{quiet: true, out: &out, onStep: func(step int64) {
		if step == stopAt {
			cancel()
		}
	}}
	res, err := Train(ctx, cfg, opt, &out)
	if cfg.Model.Layout != "" && err == nil {
		// The sequence loop checks the context through its loaders.
		t.Fatalf("the interrupted run finished\n%s", out.String())
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v\n%s", err, out.String())
	}
	man, err := manifest.Load(res.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	if man.Outcome.Status != manifest.StatusInterrupted {
		t.Fatalf("interrupted run's status %q", man.Outcome.Status)
	}
	return res.RunDir
}

// resumeCLI runs gallop train --resume with extra flags and returns the
// new run's directory.
func resumeCLI(t *testing.T, target string, flags ...string) string {
	t.Helper()
	var out bytes.Buffer
	if code := run(context.Background(), append([]string{"train", "--quiet", "--resume", target}, flags...), &out, &out); code != 0 {
		t.Fatalf("gallop train --resume %s: exit %d\n%s", target, code, out.String())
	}
	m := regexp.MustCompile(`(?m)^run +(\S+)$`).FindStringSubmatch(out.String())
	if m == nil || !strings.Contains(out.String(), "resume   ") {
		t.Fatalf("resumed run's output:\n%s", out.String())
	}
	return m[1]
}

// sameFinalState fails unless the newest checkpoints of runs a and b hold
// bitwise-equal parameters and optimizer state at the same step.
func sameFinalState(t *testing.T, m model.Model, a, b string) {
	t.Helper()
	var sts []*train.State
	for _, dir := range []string{a, b} {
		p, err := train.LatestCheckpoint(filepath.Join(dir, "checkpoints"))
		if err != nil || p == "" {
			t.Fatalf("%s: no checkpoint (%v)", dir, err)
		}
		st, _, err := train.LoadCheckpoint(p, m)
		if err != nil {
			t.Fatal(err)
		}
		sts = append(sts, st)
	}
	if sts[0].Step != sts[1].Step {
		t.Fatalf("final steps %d and %d", sts[0].Step, sts[1].Step)
	}
	for i := range sts[0].Params {
		for _, g := range [][2]*tensors.Tensor{{sts[0].Params[i], sts[1].Params[i]}, {sts[0].M[i], sts[1].M[i]}, {sts[0].V[i], sts[1].V[i]}} {
			x, y := tensors.MustCopyFlatData[float32](g[0]), tensors.MustCopyFlatData[float32](g[1])
			for j := range x {
				if math.Float32bits(x[j]) != math.Float32bits(y[j]) {
					t.Fatalf("tensor %d element %d: %v straight, %v resumed", i, j, x[j], y[j])
				}
			}
		}
	}
}

// sameLosses fails unless b's training losses from step from on equal a's
// bit for bit.
func sameLosses(t *testing.T, a, b string, from int) {
	t.Helper()
	la, err := readLosses(filepath.Join(a, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lb, err := readLosses(filepath.Join(b, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(la) != len(lb) {
		t.Fatalf("%d and %d steps logged", len(la), len(lb))
	}
	for i := from; i < len(la); i++ {
		if math.Float64bits(la[i]) != math.Float64bits(lb[i]) {
			t.Fatalf("step %d: loss %v straight, %v resumed", i, la[i], lb[i])
		}
	}
	for i := 0; i < from; i++ {
		if !math.IsNaN(lb[i]) {
			t.Fatalf("the resumed run logged step %d, before its checkpoint", i)
		}
	}
}

// TestResumeEqualsStraightRun: a run interrupted mid-epoch and resumed
// from its last checkpoint (gallop train --resume <run>) ends bit for bit
// where the uninterrupted run ends, with the same losses on the way and
// across an epoch boundary; its manifest names the checkpoint; replay of
// the resumed run resumes too; and a resume that would change the
// trajectory is refused.
func TestResumeEqualsStraightRun(t *testing.T) {
	inGitRepo(t)
	cfg := tinyConfig(t)
	cfg.Train.Steps, cfg.Train.CheckpointEvery, cfg.Train.KeepCheckpoints = 400, 100, 0 // about 250 steps an epoch
	cfg.Train.Profile = false
	var out bytes.Buffer
	straight, err := Train(context.Background(), cfg, trainOptions{quiet: true, out: &out}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	cut := interrupted(t, cfg, 230)
	resumed := resumeCLI(t, cut) // the newest checkpoint: step 200, mid-epoch 0
	m, err := buildModel(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sameFinalState(t, m, straight.RunDir, resumed)
	sameLosses(t, straight.RunDir, resumed, 200)
	man, err := manifest.Load(resumed)
	if err != nil {
		t.Fatal(err)
	}
	if r := man.ResumedFrom; r == nil || r.Step != 200 || r.RunID != filepath.Base(cut) || len(r.SHA256) != 64 {
		t.Fatalf("resumed_from %+v", man.ResumedFrom)
	}
	// A checkpoint file works as well as a run directory, and the device
	// and observation may change.
	ck := train.CheckpointPath(filepath.Join(cut, "checkpoints"), 100)
	again := resumeCLI(t, ck, "--eval-every", "150", "--profile")
	sameFinalState(t, m, straight.RunDir, again)
	rp, err := Replay(context.Background(), resumed, replayOptions{quiet: true}, &out, &out)
	if err != nil || !rp.Identical {
		t.Fatalf("replay of the resumed run: %+v, %v", rp, err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--resume", cut, "--lr", "0.5"}, "not train.lr"},
		{[]string{"--resume", cut, "--hidden", "32"}, "model.hidden"},
		{[]string{"--resume", straight.RunDir}, "steps are done"},
		{[]string{"--resume", filepath.Join(cut, "nope")}, "nope"},
		{[]string{"--resume", cut, "--config", "x.toml"}, "drop --config"},
	} {
		out.Reset()
		if code := run(context.Background(), append([]string{"train", "--quiet"}, c.args...), &out, &out); code != 1 || !strings.Contains(out.String(), c.want) {
			t.Errorf("gallop train %v: exit %d\n%s\nwant exit 1 and %q", c.args, code, out.String(), c.want)
		}
	}
}

// TestResumeSequences: the same for a GRU on packed sequences, whose
// checkpoints carry the sequence sampler's state; also with gradient
// accumulation (two micro-batches a step, each logged), where that state
// must be the step's last micro-batch's.
func TestResumeSequences(t *testing.T) {
	inGitRepo(t)
	for _, c := range []struct{ batch, accumulate int }{{8, 1}, {4, 2}} {
		t.Run(fmt.Sprintf("accumulate%d", c.accumulate), func(t *testing.T) {
			cfg := tinyConfig(t)
			cfg.Model.Arch, cfg.Model.Layout, cfg.Model.Hidden = "gru", "packed", []int{16}
			cfg.Data.Sim.Events = 30_000
			cfg.Train.BatchSize, cfg.Train.Accumulate, cfg.Train.Steps, cfg.Train.CheckpointEvery, cfg.Train.KeepCheckpoints = c.batch, c.accumulate, 12, 4, 0
			var out bytes.Buffer
			straight, err := Train(context.Background(), cfg, trainOptions{quiet: true, out: &out}, &out)
			if err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			ms, err := readMetrics(filepath.Join(straight.RunDir, "metrics.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			perStep := map[int64]int{}
			for _, m := range ms {
				if m.Split == "train" {
					perStep[m.Step]++
				}
			}
			if len(perStep) != 12 || perStep[0] != c.accumulate || perStep[11] != c.accumulate {
				t.Fatalf("train lines per step: %v, want %d for each of 12 steps", perStep, c.accumulate)
			}
			cut := interrupted(t, cfg, 9)
			resumed := resumeCLI(t, cut)
			m, err := buildModel(cfg)
			if err != nil {
				t.Fatal(err)
			}
			sameFinalState(t, m, straight.RunDir, resumed)
			sameLosses(t, straight.RunDir, resumed, 8)
		})
	}
}
