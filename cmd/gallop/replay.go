package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strings"

	"github.com/gallop-dev/gallop/manifest"
)

const replayUsage = `usage: gallop replay [flags] <run-dir>

Re-runs a recorded run from its manifest (run.json): the same config, seeds
and data. It refuses when the code revision, uncommitted changes, Go or
module versions, or the data differ from the recording (--force runs anyway),
then compares the training curves step by step: identical, or the first step
where they diverge and by how much.

Flags:
`

func cmdReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, replayUsage); fs.PrintDefaults() }
	force := fs.Bool("force", false, "replay even when code, modules or data differ")
	runsDir := fs.String("runs-dir", "", "where the replay's run directory goes (default: beside the recorded run)")
	quiet := fs.Bool("quiet", false, "no progress output")
	if err := fs.Parse(args); err != nil {
		return flagErr(err)
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	_, err := Replay(ctx, fs.Arg(0), replayOptions{force: *force, runsDir: *runsDir, quiet: *quiet}, stdout, stderr)
	return err
}

type replayOptions struct {
	force   bool
	runsDir string
	quiet   bool
}

// ReplayResult compares a replay with its recording.
type ReplayResult struct {
	RunDir     string
	Identical  bool
	Steps      int   // steps compared
	DivergedAt int64 // first differing step, -1 if none
	Recorded   float64
	Replayed   float64
}

// Replay re-runs the run in dir and compares its loss curve with the
// recorded one.
func Replay(ctx context.Context, dir string, opt replayOptions, stdout, stderr io.Writer) (ReplayResult, error) {
	res := ReplayResult{DivergedAt: -1}
	rec, cfg, err := loadRun(dir)
	if err != nil {
		return res, fmt.Errorf("replay: %w", err)
	}
	want, err := readLosses(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		return res, fmt.Errorf("replay: %w", err)
	}
	cfg.RunsDir = opt.runsDir
	if cfg.RunsDir == "" {
		cfg.RunsDir = filepath.Dir(filepath.Clean(dir))
	}
	topt := trainOptions{quiet: opt.quiet, out: stdout}
	topt.check = func(cur *manifest.Manifest) error {
		why := manifest.Compatible(rec, cur)
		if len(why) == 0 {
			return nil
		}
		msg := "replay: the run cannot be reproduced as recorded:\n  - " + strings.Join(why, "\n  - ")
		if !opt.force {
			return errors.New(msg + "\n(use --force to replay anyway)")
		}
		fmt.Fprintln(stderr, msg+"\n(--force: replaying anyway)")
		return nil
	}
	if r := rec.ResumedFrom; r != nil {
		// A resumed run is replayed from the same checkpoint.
		sum, err := manifest.HashFile(r.Checkpoint)
		if err != nil {
			return res, fmt.Errorf("replay: the run resumed from a checkpoint that is gone: %w", err)
		}
		if sum != r.SHA256 {
			return res, fmt.Errorf("replay: checkpoint %s changed since the run resumed from it (sha256 %s, recorded %s)", r.Checkpoint, sum, r.SHA256)
		}
		topt.resumeCkpt, topt.resumeRun = r.Checkpoint, r.Run
	}
	tr, err := Train(ctx, cfg, topt, stderr)
	res.RunDir = tr.RunDir
	if err != nil {
		return res, err
	}
	got, err := readLosses(filepath.Join(tr.RunDir, "metrics.jsonl"))
	if err != nil {
		return res, err
	}
	res.Steps = min(len(got), len(want))
	for i := 0; i < res.Steps; i++ {
		if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
			res.DivergedAt, res.Recorded, res.Replayed = int64(i), want[i], got[i]
			break
		}
	}
	res.Identical = res.DivergedAt < 0 && len(got) == len(want)
	switch {
	case res.Identical:
		fmt.Fprintf(stdout, "\nreplay   identical: %d training steps, every loss bitwise equal (%s vs %s)\n", res.Steps, dir, tr.RunDir)
	case res.DivergedAt >= 0:
		fmt.Fprintf(stdout, "\nreplay   diverged at step %d: recorded loss %.9g, replayed %.9g (|Δ| %.3g)\n",
			res.DivergedAt, res.Recorded, res.Replayed, math.Abs(res.Recorded-res.Replayed))
	default:
		fmt.Fprintf(stdout, "\nreplay   equal for %d steps, but the recording has %d and the replay %d\n", res.Steps, len(want), len(got))
	}
	return res, nil
}

// readLosses returns the training loss of every step in a metrics.jsonl,
// indexed by step (the last value of a step wins, as after a rollback).
func readLosses(path string) ([]float64, error) {
	ms, err := readMetrics(path)
	if err != nil {
		return nil, err
	}
	var out []float64
	for _, m := range ms {
		if m.Split != "train" || m.Loss == nil {
			continue
		}
		for int64(len(out)) <= m.Step {
			out = append(out, math.NaN())
		}
		out[m.Step] = *m.Loss
	}
	return out, nil
}

const diffUsage = `usage: gallop diff <run-a> <run-b>

Shows what differs between two runs: code, config, versions, data, hardware
and metrics, side by side. Identical runs print nothing but a summary line.
`

func cmdDiff(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("diff", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, diffUsage); fs.PrintDefaults() }
	times := fs.Bool("times", false, "include start and end times")
	if err := fs.Parse(args); err != nil {
		return flagErr(err)
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return errUsage
	}
	a, err := manifest.Load(fs.Arg(0))
	if err != nil {
		return err
	}
	b, err := manifest.Load(fs.Arg(1))
	if err != nil {
		return err
	}
	d := manifest.DiffOptions{IncludeTimes: *times}.Diff(a, b)
	if len(d) == 0 {
		fmt.Fprintf(stdout, "no differences between %s and %s\n", fs.Arg(0), fs.Arg(1))
		return nil
	}
	fmt.Fprintf(stdout, "A: %s\nB: %s\n\n", fs.Arg(0), fs.Arg(1))
	return manifest.FormatDiff(stdout, d)
}
