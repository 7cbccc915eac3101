package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/device"
	"github.com/gallop-dev/gallop/train"
)

const evalUsage = `usage: gallop eval [flags] <run-dir>

Rebuilds a run's data from its manifest and evaluates a checkpoint (default:
the latest) on the validation split: accuracy, macro-F1, log-loss, the
confusion matrix and the majority-class baseline.

Flags:
`

func cmdEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, evalUsage); fs.PrintDefaults() }
	ckpt := fs.String("checkpoint", "", "checkpoint file (default: the run's latest)")
	dev := fs.String("device", "cpu", "cpu, gpu or gpu:N")
	if err := fs.Parse(args); err != nil {
		return flagErr(err)
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	dir := fs.Arg(0)
	_, cfg, err := loadRun(dir)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	if *ckpt == "" {
		if *ckpt, err = train.LatestCheckpoint(filepath.Join(dir, "checkpoints")); err != nil || *ckpt == "" {
			return fmt.Errorf("eval: %s has no checkpoint (%v)", dir, err)
		}
	}
	spec, err := device.Parse(*dev)
	if err != nil {
		return err
	}
	p, err := prepareData(cfg, nil)
	if err != nil {
		return err
	}
	defer p.close()
	backend, _, err := device.Open(spec, device.Options{})
	if err != nil {
		return err
	}
	m, s, err := newModel(cfg, backend)
	if err != nil {
		return err
	}
	st, ck, err := train.LoadCheckpoint(*ckpt, m)
	if err != nil {
		return err
	}
	ev := &train.Evaluator{W: p.win, Refs: p.split.Val, BatchSize: 1024, Classes: len(feature.ClassNames)}
	r, err := ev.Run(s, st, p.mean, p.std)
	if err != nil {
		return err
	}
	base := r.Confusion.Majority()
	fmt.Fprintf(stdout, "checkpoint %s (step %d)\nvalidation %d samples, horizon %d events\n", *ckpt, ck.Step, r.Samples, cfg.Data.Horizon)
	fmt.Fprintf(stdout, "  model     accuracy %.4f  macro-F1 %.4f  log-loss %.4f\n", r.Confusion.Accuracy(), r.Confusion.MacroF1(), r.LogLoss)
	fmt.Fprintf(stdout, "  majority  accuracy %.4f  macro-F1 %.4f\n", base.Accuracy(), base.MacroF1())
	f1 := r.Confusion.F1()
	for i, n := range feature.ClassNames {
		fmt.Fprintf(stdout, "  F1 %-5s %.4f\n", n, f1[i])
	}
	fmt.Fprint(stdout, indent(r.Confusion.Format(feature.ClassNames), "  "))
	return nil
}
