package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/gallop-dev/gallop/manifest"
	"github.com/gallop-dev/gallop/train"
)

// resumeTarget resolves --resume: a run directory (its newest checkpoint)
// or a checkpoint file inside one. It returns the checkpoint and the run
// directory that wrote it (the nearest parent holding run.json).
func resumeTarget(path string) (ckpt, runDir string, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", "", fmt.Errorf("resume: %w", err)
	}
	if fi.IsDir() {
		if !fileExists(filepath.Join(path, manifest.FileName)) {
			return "", "", fmt.Errorf("resume: %s is not a run directory (no %s)", path, manifest.FileName)
		}
		ckpt, err := train.LatestCheckpoint(filepath.Join(path, "checkpoints"))
		if err != nil || ckpt == "" {
			return "", "", fmt.Errorf("resume: %s has no checkpoint to resume from (checkpoints/ is empty or missing; set train.checkpoint_every)", path)
		}
		return ckpt, path, nil
	}
	for dir, i := filepath.Dir(path), 0; i < 3; dir, i = filepath.Dir(dir), i+1 {
		if fileExists(filepath.Join(dir, manifest.FileName)) {
			return path, dir, nil
		}
	}
	return "", "", fmt.Errorf("resume: no %s above checkpoint %s: resume needs the run that wrote it", manifest.FileName, path)
}

// resumeMayChange reports whether a resumed run may set the config key
// (a dotted path of run.json's config) differently from the run it
// resumes: where it runs and how it is observed, not the trajectory.
func resumeMayChange(key string) bool {
	switch key {
	case "device", "runs_dir", "deterministic", "data.seq_balance",
		"train.steps_per_call", "train.dp_strategy", "train.dp_reduce", "train.dp_bucket_mb", "train.dp_weight_grads_first",
		"train.eval_every", "train.checkpoint_every", "train.keep_checkpoints", "train.prefetch",
		"train.guard_lag", "train.on_nonfinite", "train.rollback_lr_factor", "train.spike_z",
		"train.profile", "train.device_probe_every", "train.select_best":
		return true
	}
	return false
}

// checkResume refuses a resumed config that changes the trajectory of the
// recorded one (data, model, optimizer, schedule, steps, seed): the
// resumed run would not be the rest of the recorded one.
func checkResume(recorded, cfg Config, runDir string) error {
	var a, b manifest.Manifest
	var err error
	if a.Config, err = json.Marshal(recorded); err != nil {
		return err
	}
	if b.Config, err = json.Marshal(cfg); err != nil {
		return err
	}
	var bad []string
	for _, d := range manifest.Diff(&a, &b) {
		if d.Section == "config" && !resumeMayChange(d.Field) {
			bad = append(bad, fmt.Sprintf("%s (%s → %s)", d.Field, d.A, d.B))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("resume: the run in %s was configured otherwise; a resumed run may change where it runs and how it is observed (device, profile, eval and checkpoint cadence, data-parallel strategy), not %s",
			runDir, strings.Join(bad, ", "))
	}
	return nil
}

// resumeRecord is what the resumed run's manifest records of ckpt.
func resumeRecord(ckpt, runDir string, step int64) (*manifest.Resume, error) {
	sum, err := manifest.HashFile(ckpt)
	if err != nil {
		return nil, fmt.Errorf("resume: %w", err)
	}
	if ckpt, err = filepath.Abs(ckpt); err != nil {
		return nil, err
	}
	if runDir, err = filepath.Abs(runDir); err != nil {
		return nil, err
	}
	// gallop train names a run by its directory (Manifest.RunID).
	return &manifest.Resume{Run: runDir, RunID: filepath.Base(runDir), Checkpoint: ckpt, SHA256: sum, Step: step}, nil
}

// resumeTrain is gallop train --resume: the recorded config of the run
// that wrote the checkpoint, with the flags in args on top (only those
// given), checked by checkResume; the new run goes beside the recorded one
// unless --runs-dir says otherwise.
func resumeTrain(ctx context.Context, args []string, opt trainOptions, bind func(*flag.FlagSet, *Config, *trainOptions),
	stdout, stderr io.Writer) error {
	switch {
	case opt.configPath != "":
		return fmt.Errorf("resume: --resume takes the recorded run's config; drop --config")
	case opt.lrFind:
		return fmt.Errorf("resume: --lr-find starts a run; a resumed run keeps its recorded learning rate")
	}
	ckpt, runDir, err := resumeTarget(opt.resume)
	if err != nil {
		return err
	}
	_, recorded, err := loadRun(runDir)
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	cfg := recorded
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	bind(fs, &cfg, &trainOptions{})
	if err := fs.Parse(args); err != nil {
		return err
	}
	runsDirSet := false
	fs.Visit(func(f *flag.Flag) { runsDirSet = runsDirSet || f.Name == "runs-dir" })
	if !runsDirSet {
		cfg.RunsDir = filepath.Dir(filepath.Clean(runDir))
	}
	if err := checkResume(recorded, cfg, runDir); err != nil {
		return err
	}
	opt.resumeCkpt, opt.resumeRun, opt.out = ckpt, runDir, stdout
	_, err = Train(ctx, cfg, opt, stderr)
	return err
}
