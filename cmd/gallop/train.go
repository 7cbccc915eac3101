package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/gomlx/gomlx/core/tensors"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/gallop-dev/gallop/batch"
	"github.com/gallop-dev/gallop/data/dataset"
	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/device"
	"github.com/gallop-dev/gallop/guard"
	"github.com/gallop-dev/gallop/infer"
	"github.com/gallop-dev/gallop/internal/atomicfile"
	"github.com/gallop-dev/gallop/manifest"
	"github.com/gallop-dev/gallop/model"
	"github.com/gallop-dev/gallop/profile"
	"github.com/gallop-dev/gallop/train"
)

const trainUsage = `usage: gallop train [flags]

Trains a model end to end: data → book → features → labels → batches →
compiled train step → evaluation → checkpoint → export. With no flags it runs
the main job on the embedded market simulator, on the CPU, in about 1-2
minutes on two cores, and writes everything into runs/<time>-<id>/.

Flags (they override --config):
`

// trainOptions are the flags of `gallop train` that are not part of the
// recorded config.
type trainOptions struct {
	configPath string
	plugin     string
	quiet      bool
	out        io.Writer
}

func cmdTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := DefaultConfig()
	var opt trainOptions
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, trainUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&opt.configPath, "config", "", "TOML config file (see examples/run.toml)")
	fs.StringVar(&opt.plugin, "pjrt-plugin", "", "path of the XLA PJRT plugin for --device gpu (default: search)")
	fs.BoolVar(&opt.quiet, "quiet", false, "no progress bar")
	trainFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return flagErr(err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("train: unexpected argument %q (flags only)", fs.Arg(0))
	}
	if opt.configPath != "" {
		// File first, then the flags again so they win.
		cfg = DefaultConfig()
		if err := loadTOML(opt.configPath, &cfg); err != nil {
			return err
		}
		fs2 := flag.NewFlagSet("train", flag.ContinueOnError)
		fs2.SetOutput(io.Discard)
		var dummy trainOptions
		fs2.StringVar(&dummy.configPath, "config", "", "")
		fs2.StringVar(&dummy.plugin, "pjrt-plugin", "", "")
		fs2.BoolVar(&dummy.quiet, "quiet", false, "")
		trainFlags(fs2, &cfg)
		if err := fs2.Parse(args); err != nil {
			return err
		}
	}
	opt.out = stdout
	_, err := Train(ctx, cfg, opt, stderr)
	return err
}

// Result summarises a finished run.
type Result struct {
	RunDir               string
	Accuracy, MacroF1    float64
	BaseAcc, BaseMacroF1 float64
	LogLoss              float64
	Steps                int64
	Wall                 time.Duration
}

func newRunDir(root string) (string, error) {
	var b [3]byte
	rand.Read(b[:])
	dir := filepath.Join(root, time.Now().UTC().Format("20060102-150405")+"-"+hex.EncodeToString(b[:]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("train: creating run directory: %w", err)
	}
	return dir, nil
}

// Train runs one training job as configured and returns its result.
func Train(ctx context.Context, cfg Config, opt trainOptions, stderr io.Writer) (res Result, err error) {
	start := time.Now()
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	out := opt.out
	if out == nil {
		out = io.Discard
	}
	spec, err := device.Parse(cfg.Device)
	if err != nil {
		return res, err
	}
	dir, err := newRunDir(cfg.RunsDir)
	if err != nil {
		return res, err
	}
	res.RunDir = dir
	man, err := manifest.Collect(ctx, ".")
	if err != nil {
		return res, err
	}
	man.RunID = filepath.Base(dir)
	cfg.Data.Sim = simResolved(cfg.Data.Sim)
	if err := man.SetConfig(cfg); err != nil {
		return res, err
	}
	man.Seeds = map[string]uint64{"sim": cfg.Data.Sim.Seed, "init": cfg.Seed, "shuffle": cfg.Seed}
	if err := man.Write(dir); err != nil {
		return res, err
	}
	// Whatever happens below, the manifest ends with the outcome.
	defer func() {
		status, code := manifest.StatusOK, 0
		switch {
		case errors.Is(err, context.Canceled):
			status, code = manifest.StatusInterrupted, 130
		case err != nil:
			status, code = manifest.StatusFailed(err), 1
		}
		man.Finish(status, code)
		if werr := man.Write(dir); werr != nil && err == nil {
			err = werr
		}
	}()

	// Data: simulator → book → features → labels → windows, split by time.
	t0 := time.Now()
	cfg.Data.Sim.Seed = cfg.Seed
	series, err := dataset.Simulated(cfg.Data.Sim, dataset.Labeling{Horizon: cfg.Data.Horizon, Theta: cfg.Data.Theta})
	if err != nil {
		return res, err
	}
	win := &batch.Windows{Series: series, F: feature.Count, W: cfg.Data.Window}
	split, err := batch.TimeSplit(series, cfg.Data.Window, cfg.Data.Horizon, cfg.Data.Embargo, cfg.Data.TrainFrac)
	if err != nil {
		return res, err
	}
	norm := batch.FitNormalizer(win, split.Train)
	events := 0
	for _, s := range series {
		events += s.Rows()
	}
	dataTime := time.Since(t0)
	fmt.Fprintf(out, "data     %d events from %d instruments → %d train / %d validation samples (%.1fs)\n",
		events, len(series), len(split.Train), len(split.Val), dataTime.Seconds())

	backend, dinfo, err := device.Open(spec, device.Options{Plugin: opt.plugin})
	if err != nil {
		return res, err
	}
	man.Host.Device = &manifest.Device{Backend: dinfo.Backend, PJRTPlugin: dinfo.Plugin}
	fmt.Fprintf(out, "device   %s (%s)\n", dinfo.Spec, dinfo.Desc)

	m, err := model.NewMLP(cfg.Data.Window, feature.Count, cfg.Model.Hidden, len(feature.ClassNames))
	if err != nil {
		return res, err
	}
	fmt.Fprintf(out, "model    mlp %v, %d parameters\n", m.Layers, model.Count(m.Params()))
	stepper := train.NewStepper(backend, m, cfg.Train.Optimizer)
	st := stepper.NewState(cfg.Seed)
	mean := tensors.FromFlatDataAndDimensions(norm.Mean, feature.Count)
	std := tensors.FromFlatDataAndDimensions(norm.Std, feature.Count)
	sched, _ := train.ParseSchedule(cfg.Train.Schedule, cfg.Train.LR, int64(cfg.Train.Steps))

	sampler := batch.NewSampler(len(split.Train), cfg.Seed, true)
	order := make([]int32, len(split.Train))
	batch.NewSampler(len(split.Train), cfg.Seed, true).Next(order)
	man.Data.SampleOrderSHA256 = manifest.HashSampleOrder(int32sToInts(order))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lcfg := batch.LoaderConfig{BatchSize: cfg.Train.BatchSize, Prefetch: cfg.Train.Prefetch}
	if spec.Kind == "gpu" {
		lcfg.Backend = backend // stage batches on the device ahead of the step
	}
	loader, err := batch.NewLoader(ctx, win, split.Train, sampler, lcfg)
	if err != nil {
		return res, err
	}
	defer loader.Close()

	metrics, err := os.Create(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		return res, err
	}
	defer metrics.Close()
	enc := json.NewEncoder(metrics)

	var bar *progressbar.ProgressBar
	// A terminal gets a live bar; a log file gets a line every 10%.
	logLines := !opt.quiet && !isTerminal(stderr)
	if !opt.quiet && !logLines {
		bar = progressbar.NewOptions(cfg.Train.Steps,
			progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription("train"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionSetWidth(24),
			progressbar.OptionClearOnFinish(),
		)
	}
	// The watcher reads each step's loss and finiteness flag off the hot path.
	lrs := make([]float64, cfg.Train.Steps)
	watcher := guard.NewWatcher(cfg.Train.GuardLag, cfg.Train.BatchSize, func(v guard.Value) {
		enc.Encode(map[string]any{"step": v.Step, "split": "train", "loss": v.Loss, "grad_norm": v.GradNorm, "lr": lrs[v.Step]})
	})
	defer func() {
		if werr := watcher.Close(); werr != nil && err == nil {
			err = werr
		}
	}()

	var rec *profile.Recorder
	if cfg.Train.Profile {
		rec = profile.New(profile.Config{FLOPsPerSample: 6 * float64(model.Count(m.Params()))})
	}
	eval := &train.Evaluator{W: win, Refs: split.Val, BatchSize: 1024, Classes: len(feature.ClassNames)}
	ckptDir := filepath.Join(dir, "checkpoints")
	samplesPerStep := cfg.Train.BatchSize
	eventsPerStep := cfg.Train.BatchSize * cfg.Data.Window
	var lastCkpt string
	trainStart := time.Now()
	for step := int64(0); step < int64(cfg.Train.Steps); step++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if rec != nil {
			rec.BeginStep(step)
		}
		t := stamp(rec)
		b, err := loader.Next(ctx)
		if err != nil {
			return res, fmt.Errorf("train: step %d: %w", step, err)
		}
		t = end(rec, profile.Data, t)
		lr := sched.LR(step)
		lrs[step] = lr
		outp, err := stepper.Step(st, lr, mean, std, b.X, b.Y)
		if err != nil {
			return res, err
		}
		if step == 0 && rec != nil {
			// The first call compiles the graph: charge it to compilation.
			rec.Compile(time.Duration(rec.Start()-t), "train_step")
			t = rec.Start()
		} else {
			t = end(rec, profile.Dispatch, t)
		}
		watcher.Observe(step, outp.Loss, outp.GradNorm, outp.Finite, b.Index)
		state := b.State
		loader.Release(b)
		if gerr := watcher.Err(); gerr != nil {
			return res, fmt.Errorf("train: guard: %w (last good checkpoint: %s)", gerr, lastCkpt)
		}
		last := step+1 == int64(cfg.Train.Steps)
		if (cfg.Train.EvalEvery > 0 && (step+1)%int64(cfg.Train.EvalEvery) == 0) && !last {
			r, err := eval.Run(stepper, st, mean, std)
			if err != nil {
				return res, err
			}
			enc.Encode(map[string]any{"step": step, "split": "val", "accuracy": r.Confusion.Accuracy(), "macro_f1": r.Confusion.MacroF1(), "log_loss": r.LogLoss})
			t = end(rec, profile.Eval, t)
			mark(rec, "eval")
		}
		if last || (cfg.Train.CheckpointEvery > 0 && (step+1)%int64(cfg.Train.CheckpointEvery) == 0) {
			p, err := train.SaveCheckpoint(ckptDir, m, st, train.Checkpoint{Sampler: state, Seed: cfg.Seed}, cfg.Train.KeepCheckpoints)
			if err != nil {
				return res, err
			}
			lastCkpt = p
			end(rec, profile.Checkpoint, t)
			mark(rec, "checkpoint")
		}
		if rec != nil {
			rec.EndStep(samplesPerStep, eventsPerStep)
		}
		if bar != nil {
			v := watcher.Last()
			el := time.Since(trainStart).Seconds()
			bar.Describe(fmt.Sprintf("train loss %.4f  %s events/s", v.Loss, si(float64(eventsPerStep)*float64(step+1)/el)))
			bar.Add(1)
		}
		if logLines && ((step+1)*10)%int64(cfg.Train.Steps) < 10 {
			v := watcher.Last()
			el := time.Since(trainStart).Seconds()
			eta := el / float64(step+1) * float64(int64(cfg.Train.Steps)-step-1)
			fmt.Fprintf(stderr, "train    step %d/%d  loss %.4f  %s events/s  elapsed %.0fs  eta %.0fs\n",
				step+1, cfg.Train.Steps, v.Loss, si(float64(eventsPerStep)*float64(step+1)/el), el, eta)
		}
	}
	trainTime := time.Since(trainStart)
	if bar != nil {
		bar.Finish()
	}
	if err := watcher.Close(); err != nil {
		return res, fmt.Errorf("train: guard: %w (last good checkpoint: %s)", err, lastCkpt)
	}
	watcher = guard.NewWatcher(1, 1, nil) // the deferred Close needs one

	t1 := time.Now()
	r, err := eval.Run(stepper, st, mean, std)
	if err != nil {
		return res, err
	}
	evalTime := time.Since(t1)
	conf, base := r.Confusion, r.Confusion.Majority()
	enc.Encode(map[string]any{"step": st.Step - 1, "split": "val", "accuracy": conf.Accuracy(), "macro_f1": conf.MacroF1(), "log_loss": r.LogLoss, "final": true})

	// Export for the pure-Go engine.
	t2 := time.Now()
	exp, err := exportModel(dir, m, st, norm, cfg)
	if err != nil {
		return res, err
	}
	exportTime := time.Since(t2)

	res.Accuracy, res.MacroF1 = conf.Accuracy(), conf.MacroF1()
	res.BaseAcc, res.BaseMacroF1 = base.Accuracy(), base.MacroF1()
	res.LogLoss, res.Steps = r.LogLoss, st.Step
	man.Outcome.Metrics = manifest.Metrics{
		"val_accuracy": res.Accuracy, "val_macro_f1": res.MacroF1, "val_log_loss": r.LogLoss,
		"baseline_accuracy": res.BaseAcc, "baseline_macro_f1": res.BaseMacroF1,
	}
	man.Outcome.Checkpoint, man.Outcome.Export = lastCkpt, exp

	phases := map[string]float64{"data": dataTime.Seconds(), "train": trainTime.Seconds(), "eval": evalTime.Seconds(), "export": exportTime.Seconds()}
	var rep *profile.Report
	if rec != nil {
		rep = rec.Report()
		if err := writeProfile(dir, rec, rep, phases); err != nil {
			return res, err
		}
	}
	res.Wall = time.Since(start)

	fmt.Fprintf(out, "\nvalidation (%d samples, horizon %d events)\n", r.Samples, cfg.Data.Horizon)
	fmt.Fprintf(out, "  %-22s accuracy %.4f  macro-F1 %.4f  log-loss %.4f\n", "model", res.Accuracy, res.MacroF1, r.LogLoss)
	fmt.Fprintf(out, "  %-22s accuracy %.4f  macro-F1 %.4f\n", "majority baseline ("+feature.ClassNames[argmaxRow(base)]+")", res.BaseAcc, res.BaseMacroF1)
	fmt.Fprint(out, indent(conf.Format(feature.ClassNames), "  "))
	fmt.Fprintf(out, "\ntime     %.1fs total: data %.1fs, train %.1fs (%d steps, %.2f ms/step), eval %.1fs, export %.2fs\n",
		res.Wall.Seconds(), dataTime.Seconds(), trainTime.Seconds(), st.Step, 1e3*trainTime.Seconds()/float64(st.Step), evalTime.Seconds(), exportTime.Seconds())
	if rep != nil {
		fmt.Fprintf(out, "profile  %s\n", rep.Verdict)
	}
	fmt.Fprintf(out, "run      %s\n", dir)
	fmt.Fprintf(out, "\nnext     gallop bench infer %s\n         gallop profile %s\n", dir, dir)
	return res, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func stamp(rec *profile.Recorder) profile.Stamp {
	if rec == nil {
		return 0
	}
	return rec.Start()
}

func end(rec *profile.Recorder, ph profile.Phase, t profile.Stamp) profile.Stamp {
	if rec == nil {
		return 0
	}
	return rec.End(ph, t)
}

func mark(rec *profile.Recorder, kind string) {
	if rec != nil {
		rec.Mark(kind)
	}
}

func writeProfile(dir string, rec *profile.Recorder, rep *profile.Report, phases map[string]float64) error {
	data, err := json.MarshalIndent(struct {
		*profile.Report
		JobPhasesS map[string]float64 `json:"job_phases_s"`
	}{rep, phases}, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "profile.json"), data, 0o644); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, "trace.json"), 0o644, rec.WriteTrace)
}

func exportModel(dir string, m *model.MLP, st *train.State, norm batch.Normalizer, cfg Config) (string, error) {
	im := &infer.Model{
		Spec: infer.Spec{
			Arch:       infer.ArchMLP,
			Window:     m.W,
			Features:   feature.Names,
			Classes:    feature.ClassNames,
			Layers:     m.Layers,
			Activation: infer.ActivationReLU,
			Meta: map[string]string{
				"horizon": fmt.Sprint(cfg.Data.Horizon), "theta_ticks": fmt.Sprint(cfg.Data.Theta),
				"step": fmt.Sprint(st.Step), "source": cfg.Data.Source,
			},
		},
		Mean: norm.Mean, Std: norm.Std,
	}
	for i := 0; i < len(st.Params); i += 2 {
		w, err := tensors.CopyFlatData[float32](st.Params[i])
		if err != nil {
			return "", err
		}
		b, err := tensors.CopyFlatData[float32](st.Params[i+1])
		if err != nil {
			return "", err
		}
		im.W = append(im.W, w)
		im.B = append(im.B, b)
	}
	p := filepath.Join(dir, "export")
	if err := os.MkdirAll(p, 0o755); err != nil {
		return "", err
	}
	if err := infer.Save(p, im); err != nil {
		return "", err
	}
	return p, nil
}

func argmaxRow(c *train.Confusion) int {
	for j := range c.Counts[0] {
		if c.Counts[0][j] > 0 {
			return j
		}
	}
	return 0
}

func int32sToInts(s []int32) []int {
	out := make([]int, len(s))
	for i, v := range s {
		out[i] = int(v)
	}
	return out
}
