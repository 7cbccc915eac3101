package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gomlx/gomlx/core/tensors"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/gallop-dev/gallop/batch"
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
the main job on the embedded market simulator, on the CPU, in about a minute
on two cores, and writes everything into runs/<time>-<id>/.

Flags (they override --config):
`

// trainOptions are the settings of one invocation that are not part of the
// recorded config.
type trainOptions struct {
	configPath string
	plugin     string
	quiet      bool
	out        io.Writer
	// check, if set, sees the manifest once the data is built and hashed,
	// before any training; an error aborts the run (gallop replay).
	check func(*manifest.Manifest) error
	// mutate, if set, changes the series before training (tests poison data).
	mutate func([]batch.Series)
	// dataDelay slows every batch down (tests of the input-bound verdict).
	dataDelay time.Duration
	// lrFind runs the learning-rate finder first and trains at its valley.
	lrFind bool
	// noTF32 asks XLA for full-float32 matmuls on GPUs.
	noTF32 bool
	// resume (--resume) is a run directory or checkpoint to continue
	// from; cmdTrain resolves it into resumeCkpt, written by the run in
	// resumeRun, whose config the run takes.
	resume, resumeCkpt, resumeRun string
	// onStep, if set, runs after every optimizer step of the fixed-window
	// loop (tests interrupt a run with it).
	onStep func(step int64)
}

// maxRollbacks bounds on_nonfinite = "rollback": a fault that survives this
// many rollbacks (bad data comes back with the same batches) stops the run.
const maxRollbacks = 3

func cmdTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := DefaultConfig()
	var opt trainOptions
	bind := func(fs *flag.FlagSet, c *Config, o *trainOptions) {
		fs.StringVar(&o.configPath, "config", "", "TOML config file (see examples/run.toml)")
		fs.StringVar(&o.plugin, "pjrt-plugin", "", "path of the XLA PJRT plugin for --device gpu (default: search)")
		fs.BoolVar(&o.quiet, "quiet", false, "no progress output")
		fs.BoolVar(&o.noTF32, "no-tf32", false, "GPU: full float32 matmuls instead of TF32 (XLA's default)")
		fs.BoolVar(&o.lrFind, "lr-find", false, "run the learning-rate finder first and use its suggestion (valley) as --lr")
		fs.StringVar(&o.resume, "resume", "", "continue a run from its newest checkpoint (a run directory) or from a checkpoint file, with its recorded config;\n"+
			"flags may change where it runs and how it is observed (--device, --profile, --eval-every, ...), not what it computes")
		trainFlags(fs, c)
	}
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, trainUsage)
		fs.PrintDefaults()
	}
	bind(fs, &cfg, &opt)
	if err := fs.Parse(args); err != nil {
		return flagErr(err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("train: unexpected argument %q (flags only)", fs.Arg(0))
	}
	if opt.resume != "" {
		return resumeTrain(ctx, args, opt, bind, stdout, stderr)
	}
	if opt.configPath != "" {
		// The file first, then the same flags again so they win.
		cfg = DefaultConfig()
		if err := loadTOML(opt.configPath, &cfg); err != nil {
			return err
		}
		fs2 := flag.NewFlagSet("train", flag.ContinueOnError)
		fs2.SetOutput(io.Discard)
		bind(fs2, &cfg, &trainOptions{})
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
	NonFinite, Rollbacks int64
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

// seriesFiles identifies generated data by content: one entry per series,
// hashing its features, labels and timestamps (little-endian), encoded in
// 64 KiB chunks so the hash sees large writes.
func seriesFiles(series []batch.Series) []manifest.DataFile {
	out := make([]manifest.DataFile, len(series))
	buf := make([]byte, 0, 64<<10)
	for i, s := range series {
		h := sha256.New()
		put := func(b []byte) {
			if len(buf)+len(b) > cap(buf) {
				h.Write(buf)
				buf = buf[:0]
			}
			buf = append(buf, b...)
		}
		var w [8]byte
		for _, v := range s.Features {
			put(binary.LittleEndian.AppendUint32(w[:0], math.Float32bits(v)))
		}
		for _, v := range s.Labels {
			put(binary.LittleEndian.AppendUint32(w[:0], uint32(v)))
		}
		for _, v := range s.TsNs {
			put(binary.LittleEndian.AppendUint64(w[:0], uint64(v)))
		}
		h.Write(buf)
		buf = buf[:0]
		out[i] = manifest.DataFile{Name: "sim:" + s.Symbol, SHA256: hex.EncodeToString(h.Sum(nil)), Size: int64(s.Rows())}
	}
	return out
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
	cfg.resolve()
	if err := man.SetConfig(cfg); err != nil {
		return res, err
	}
	man.Seeds = map[string]uint64{"sim": cfg.Seed, "init": cfg.Seed, "shuffle": cfg.Seed}
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
		// Every run that got as far as training gets a report, failed ones too.
		if fileExists(filepath.Join(dir, "metrics.jsonl")) {
			if rerr := writeReport(dir); rerr != nil && err == nil {
				err = rerr
			}
		}
	}()

	// Data: simulator → book → features → labels → windows, split by time.
	p, err := prepareData(cfg, opt.mutate)
	if err != nil {
		return res, err
	}
	defer p.close()
	series, win, split, norm, events := p.series, p.win, p.split, p.norm, p.events
	if norm.NonFinite > 0 {
		fmt.Fprintf(stderr, "data     warning: %d non-finite feature values in the training rows (left out of the normalisation; the guard will stop on them)\n", norm.NonFinite)
	}
	order := make([]int32, len(split.Train))
	batch.NewSampler(len(split.Train), cfg.Seed, true).Next(order)
	man.Data.Files, man.Data.ManifestSHA256 = p.files, p.manifestSHA
	man.Data.SampleOrderSHA256 = manifest.HashSampleOrder(int32sToInts(order))
	dataTime := p.took
	fmt.Fprintf(out, "data     %d events from %d instruments → %d train / %d validation samples (%.1fs)\n",
		events, len(series), len(split.Train), len(split.Val), dataTime.Seconds())
	if len(split.Test) > 0 {
		fmt.Fprintf(out, "         %d test samples after the validation block\n", len(split.Test))
	}
	if opt.check != nil {
		if err := opt.check(man); err != nil {
			return res, err
		}
	}

	if cfg.Deterministic && spec.Kind == "gpu" {
		os.Setenv("XLA_FLAGS", strings.TrimSpace(os.Getenv("XLA_FLAGS")+" --xla_gpu_deterministic_ops=true --xla_gpu_exclude_nondeterministic_ops=true"))
	}
	backend, dinfo, err := device.Open(spec, device.Options{Plugin: opt.plugin, NoTF32: opt.noTF32})
	if err != nil {
		return res, err
	}
	man.Host.Device = &manifest.Device{Backend: dinfo.Backend, PJRTPlugin: dinfo.Plugin}
	var peak float64
	for _, g := range dinfo.GPUs {
		man.Host.Device.GPUs = append(man.Host.Device.GPUs, manifest.GPU{Name: g.Name, MemoryBytes: g.MemoryBytes})
		man.Host.Device.Driver = g.Driver
		if peak == 0 {
			peak, _ = g.PeakFLOPs()
		}
	}
	if err := man.Write(dir); err != nil {
		return res, err
	}
	fmt.Fprintf(out, "device   %s (%s)\n", dinfo.Spec, dinfo.Desc)

	m, stepper, err := newModel(cfg, backend)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(out, "model    %s, %d parameters; %s, %s, batch %d×%d\n", describe(m), model.Count(m.Params()),
		cfg.Train.Optimizer.Name, cfg.Train.Precision, cfg.Train.BatchSize, cfg.Train.Accumulate)
	if opt.lrFind {
		t := time.Now()
		r, err := lrFind(cfg, p, backend, 100)
		if err != nil {
			return res, err
		}
		if err := writeLRFind(dir, r); err != nil {
			return res, err
		}
		cfg.Train.LR = r.Valley
		man.SetConfig(cfg)
		fmt.Fprintf(out, "lr-find  valley %s, steepest %s (%s, %.1fs): using %s\n", fmtLR(r.Valley), fmtLR(r.Steepest), r.Stopped, time.Since(t).Seconds(), fmtLR(r.Valley))
	}
	st := stepper.NewState(cfg.Seed)
	var resumed *train.Checkpoint
	if opt.resumeCkpt != "" {
		ns, ck, err := train.LoadCheckpoint(opt.resumeCkpt, m)
		switch {
		case err != nil:
			return res, fmt.Errorf("resume: %w", err)
		case ck.Seed != cfg.Seed:
			return res, fmt.Errorf("resume: %s was written by a run with seed %d, the config says %d", opt.resumeCkpt, ck.Seed, cfg.Seed)
		case ck.Step >= int64(cfg.Train.Steps):
			return res, fmt.Errorf("resume: %s is at step %d: the run's %d steps are done", opt.resumeCkpt, ck.Step, cfg.Train.Steps)
		case ck.Step%int64(cfg.Train.StepsPerCall) != 0:
			return res, fmt.Errorf("resume: %s is at step %d, not a multiple of train.steps_per_call = %d", opt.resumeCkpt, ck.Step, cfg.Train.StepsPerCall)
		}
		if man.ResumedFrom, err = resumeRecord(opt.resumeCkpt, opt.resumeRun, ck.Step); err != nil {
			return res, err
		}
		if err := man.Write(dir); err != nil {
			return res, err
		}
		st, resumed = ns, &ck
		fmt.Fprintf(out, "resume   %s at step %d of %d (epoch %d, %d samples into it)\n", opt.resumeCkpt, ck.Step, cfg.Train.Steps, ck.Sampler.Epoch, ck.Sampler.Pos)
	}
	mean, std := p.mean, p.std
	sched, _ := train.ParseSchedule(cfg.Train.Schedule, cfg.Train.LR, int64(cfg.Train.Steps))
	if cfg.Model.Layout != "" {
		n, po, err := dataParallel(cfg, spec, m)
		if err != nil {
			return res, err
		}
		runner, err := train.NewSeqRunner(stepper, st, norm, n, po)
		if err != nil {
			return res, err
		}
		if n > 1 {
			fmt.Fprintf(out, "parallel %d GPUs, %s; each step's sequences split over them by %s, %d rows each\n", n, cfg.Train.DPStrategy, cfg.Data.SeqBalance, cfg.Train.BatchSize/n)
		}
		return trainSequences(ctx, cfg, p, m, runner, st, resumed, opt.onStep, peak, man, dir, out, stderr, start)
	}

	var rec *profile.Recorder
	if cfg.Train.Profile {
		// MFU is against the card's dense TF32 peak (XLA's fp32 dots).
		rec = profile.New(profile.Config{FLOPsPerSample: 6 * float64(model.Count(m.Params())), PeakFLOPs: peak})
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lcfg := batch.LoaderConfig{BatchSize: cfg.Train.BatchSize, Prefetch: cfg.Train.Prefetch}
	if k := cfg.Train.StepsPerCall; k > 1 {
		// A call holds k batches: stage the next call's while it runs.
		lcfg.Prefetch = max(lcfg.Prefetch, 2*k)
	}
	// On a GPU the whole dataset goes to the device once and each step (or
	// micro-batch) gathers its windows there: only B row ids cross per
	// step, staged on one GPU by the loader ahead of the step.
	var runner *train.Runner
	if spec.Kind == "gpu" || cfg.Train.StepsPerCall > 1 {
		n, po, err := dataParallel(cfg, spec, m)
		if err != nil {
			return res, err
		}
		// One GPU holds the dataset; several each hold it and a replica of
		// the state, and the batch's rows are split over them per step.
		if runner, err = train.NewRunner(stepper, st, win, norm, n, po); err != nil {
			return res, err
		}
		lcfg = runner.LoaderConfig(lcfg)
		if n > 1 {
			how := cfg.Train.DPStrategy
			if k := cfg.Train.Accumulate; k > 1 {
				// Parallel.Step: whatever the strategy, explicit per-device
				// micro-batches and one all-reduce per update.
				how = fmt.Sprintf("accumulating %d micro-batches on each GPU, then one %s all-reduce in %g MB buckets per update", k, cfg.Train.DPReduce, cfg.Train.DPBucketMB)
			} else if po.Strategy == train.Replicas {
				how += fmt.Sprintf(", %s all-reduce in %g MB buckets", cfg.Train.DPReduce, cfg.Train.DPBucketMB)
			}
			if rec != nil {
				probe, err := probeAllReduce(runner.Parallel(), rec)
				if err != nil {
					return res, err
				}
				how += "; " + probe
			}
			fmt.Fprintf(out, "parallel %d GPUs, %s\n", n, how)
		}
		rows, f := runner.Resident()
		fmt.Fprintf(out, "data     resident on %d device(s): %d rows × %d features (%.0f MB each)\n", n, rows, f, float64(rows*f)*4/1e6)
	}
	if rec != nil || opt.dataDelay > 0 {
		lcfg.OnBatch = func(t time.Time, d time.Duration) {
			if opt.dataDelay > 0 {
				time.Sleep(opt.dataDelay)
				d = time.Since(t)
			}
			if rec != nil {
				rec.Span("loader", "batch", t, d)
			}
		}
	}
	sampler := batch.NewSampler(len(split.Train), cfg.Seed, true)
	if resumed != nil {
		if err := sampler.Restore(resumed.Sampler); err != nil {
			return res, fmt.Errorf("resume: %s: %w", opt.resumeCkpt, err)
		}
	}
	loader, err := batch.NewLoader(ctx, win, split.Train, sampler, lcfg)
	if err != nil {
		return res, err
	}
	defer func() { loader.Close() }()

	metrics, err := os.Create(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		return res, err
	}
	defer metrics.Close()
	enc := json.NewEncoder(metrics)

	// The watcher reads each step's loss and finiteness flags off the hot
	// path; its callback runs on the watcher's goroutine, in step order.
	var names []string
	for _, p := range m.Params() {
		names = append(names, p.Name)
	}
	watcher := guard.NewWatcher(guard.Config{
		Lag: cfg.Train.GuardLag, BatchSize: cfg.Train.BatchSize, ParamNames: names, SpikeZ: cfg.Train.SpikeZ,
		OnValue: trainLine(enc, rec, stderr),
	})
	watcherClosed := false
	defer func() {
		if !watcherClosed {
			watcher.Close()
		}
	}()

	startStep := st.Step // 0, or the resumed checkpoint's
	bar, logLines := newProgress(opt.quiet, stderr, cfg.Train.Steps-int(startStep))
	eval := &train.Evaluator{W: win, Refs: split.Val, BatchSize: 1024, Classes: len(feature.ClassNames)}
	ckptDir := filepath.Join(dir, "checkpoints")
	samplesPerStep := cfg.Train.BatchSize * cfg.Train.Accumulate
	eventsPerStep := samplesPerStep * cfg.Data.Window
	var lastCkpt, bestCkpt string
	bestF1, bestStep := -1.0, int64(-1)
	lrScale := 1.0
	// With steps_per_call K > 1, K batches are gathered and run as one
	// call (StepRowsN); the profiler sees one step per call.
	K := int64(cfg.Train.StepsPerCall)
	disp := &dispatcher{stepper: stepper, runner: runner, mean: mean, std: std,
		loader: loader, watcher: watcher, rec: rec, perCall: cfg.Train.StepsPerCall}
	if runner != nil {
		disp.probe = newDeviceProbe(rec, stderr, spec, runner.Devices(), cfg.Train.DeviceProbeEvery, startStep)
	}
	trainStart := time.Now()
	for step := startStep; step < int64(cfg.Train.Steps); step++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if rec != nil && step%K == 0 {
			rec.BeginStep(step)
		}
		t := stamp(rec)
		var state batch.SamplerState
		lr := sched.LR(step) * lrScale
		// One optimizer step: Accumulate micro-batches (usually one).
		for micro := 0; micro < cfg.Train.Accumulate; micro++ {
			b, err := loader.Next(ctx)
			if err != nil {
				return res, fmt.Errorf("train: step %d: %w", step, err)
			}
			t = end(rec, profile.Data, t)
			state = b.State // before the dispatcher hands b back to the loader
			if t, err = disp.step(st, b, lr, t); err != nil {
				return res, err
			}
		}

		if gerr := watcher.Err(); gerr != nil {
			var nf *guard.NonFiniteError
			if !errors.As(gerr, &nf) { // a step that failed on the device
				return res, fmt.Errorf("train: step %d: %w", step, gerr)
			}
			switch cfg.Train.OnNonFinite {
			case "skip":
				// The step already left the state unchanged; note it and go on.
				watcher.Reset()
			case "rollback":
				if lastCkpt == "" {
					return res, guardStop(dir, windowSamples(win, split.Train), nf, "", "rollback: no checkpoint yet")
				}
				if res.Rollbacks == maxRollbacks {
					return res, guardStop(dir, windowSamples(win, split.Train), nf, lastCkpt, fmt.Sprintf("rollback: still non-finite after %d rollbacks", maxRollbacks))
				}
				ns, ck, err := train.LoadCheckpoint(lastCkpt, m)
				if err != nil {
					return res, err
				}
				disp.drop() // queued batches of the abandoned steps, back to their loader
				loader.Close()
				sampler = batch.NewSampler(len(split.Train), ck.Seed, true)
				if err := sampler.Restore(ck.Sampler); err != nil {
					return res, err
				}
				if loader, err = batch.NewLoader(ctx, win, split.Train, sampler, lcfg); err != nil {
					return res, err
				}
				disp.loader = loader
				st = ns
				if runner != nil {
					// On several GPUs every replica restarts from the checkpoint.
					if err := runner.SetState(st); err != nil {
						return res, err
					}
				}
				lrScale *= cfg.Train.RollbackLRFactor
				res.Rollbacks++
				fmt.Fprintf(stderr, "guard    %v\nguard    rolled back to %s (step %d), learning rate × %g\n", nf, filepath.Base(lastCkpt), ck.Step, lrScale)
				watcher.Reset()
				if rec != nil {
					rec.EndStep(samplesPerStep, eventsPerStep)
				}
				step = st.Step - 1
				continue
			default:
				return res, guardStop(dir, windowSamples(win, split.Train), nf, lastCkpt, "stop")
			}
		}
		last := step+1 == int64(cfg.Train.Steps)
		if cfg.Train.EvalEvery > 0 && (step+1)%int64(cfg.Train.EvalEvery) == 0 && !last {
			r, err := eval.Run(stepper, st, mean, std)
			if err != nil {
				return res, err
			}
			evalLine(enc, step, "val", r, false)
			t = end(rec, profile.Eval, t)
			mark(rec, "eval")
			if cfg.Train.SelectBest && r.Confusion.MacroF1() > bestF1 {
				// Early stopping's memory: the best state by validation macro-F1.
				if bestCkpt, err = train.SaveCheckpoint(filepath.Join(ckptDir, "best"), m, st, train.Checkpoint{Sampler: state, Seed: cfg.Seed}, 1); err != nil {
					return res, err
				}
				bestF1, bestStep = r.Confusion.MacroF1(), step
				t = end(rec, profile.Checkpoint, t)
			}
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
		if rec != nil && (step+1)%K == 0 {
			rec.EndStep(int(K)*samplesPerStep, int(K)*eventsPerStep)
		}
		progress(bar, logLines, stderr, watcher.Last(), step, startStep, cfg.Train.Steps, eventsPerStep, trainStart)
		if opt.onStep != nil {
			opt.onStep(step)
		}
	}
	stepsRun := st.Step - startStep
	if bar != nil {
		bar.Finish()
	}
	watcherClosed = true
	// Close reads the last steps' outputs: once it returns the devices have
	// finished them (dispatch is asynchronous), so trainTime counts them.
	werr := watcher.Close()
	trainTime := time.Since(trainStart)
	if err := guardEnd(werr, cfg.Train.OnNonFinite, func(nf *guard.NonFiniteError) error {
		return guardStop(dir, windowSamples(win, split.Train), nf, lastCkpt, "stop")
	}); err != nil {
		return res, err
	}
	res.NonFinite, _ = watcher.Counts()

	t1 := time.Now()
	r, err := eval.Run(stepper, st, mean, std)
	if err != nil {
		return res, err
	}
	evalLine(enc, st.Step-1, "val", r, true)
	if cfg.Train.SelectBest && bestCkpt != "" && bestF1 > r.Confusion.MacroF1() {
		// Report and export the selected state.
		if st, _, err = train.LoadCheckpoint(bestCkpt, m); err != nil {
			return res, err
		}
		fmt.Fprintf(out, "select   best validation macro-F1 %.4f at step %d (final step: %.4f)\n", bestF1, bestStep, r.Confusion.MacroF1())
		if r, err = eval.Run(stepper, st, mean, std); err != nil {
			return res, err
		}
	}
	// With a test block, the reported metrics are the test's: validation
	// chose the model.
	evalSplit := "validation"
	if len(split.Test) > 0 {
		test := &train.Evaluator{W: win, Refs: split.Test, BatchSize: 1024, Classes: len(feature.ClassNames)}
		if r, err = test.Run(stepper, st, mean, std); err != nil {
			return res, err
		}
		evalSplit = "test"
		evalLine(enc, st.Step-1, "test", r, true)
	}
	evalTime := time.Since(t1)
	conf, base := r.Confusion, r.Confusion.Majority()

	// Export for the pure-Go engine.
	t2 := time.Now()
	exp, err := exportModel(dir, m, st, norm, cfg)
	if err != nil {
		return res, err
	}
	exportTime := time.Since(t2)

	res.Steps = st.Step
	reportOutcome(&res, man, r)
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

	fmt.Fprintf(out, "\n%s (%d samples, horizon %d events)\n", evalSplit, r.Samples, cfg.Data.Horizon)
	fmt.Fprintf(out, "  %-22s accuracy %.4f  macro-F1 %.4f  log-loss %.4f\n", "model", res.Accuracy, res.MacroF1, r.LogLoss)
	fmt.Fprintf(out, "  %-22s accuracy %.4f  macro-F1 %.4f\n", "majority baseline ("+feature.ClassNames[majorityClass(base)]+")", res.BaseAcc, res.BaseMacroF1)
	fmt.Fprint(out, indent(conf.Format(feature.ClassNames), "  "))
	fmt.Fprintf(out, "\ntime     %.1fs total: data %.1fs, train %.1fs (%d steps, %.2f ms/step), eval %.1fs, export %.2fs\n",
		res.Wall.Seconds(), dataTime.Seconds(), trainTime.Seconds(), stepsRun, 1e3*trainTime.Seconds()/float64(stepsRun), evalTime.Seconds(), exportTime.Seconds())
	if res.NonFinite > 0 || res.Rollbacks > 0 {
		fmt.Fprintf(out, "guard    %d non-finite steps (%s), %d rollbacks\n", res.NonFinite, cfg.Train.OnNonFinite, res.Rollbacks)
	}
	if rep != nil {
		if cfg.Train.StepsPerCall > 1 {
			fmt.Fprintf(out, "profile  %s (a profiled step is one call of %d optimizer steps)\n", rep.Verdict, cfg.Train.StepsPerCall)
		} else {
			fmt.Fprintf(out, "profile  %s\n", rep.Verdict)
		}
	}
	fmt.Fprintf(out, "run      %s\n", dir)
	fmt.Fprintf(out, "\nnext     ")
	fmt.Fprintf(out, "gallop bench infer %s\n         ", dir)
	fmt.Fprintf(out, "gallop profile %s\n         gallop replay %s\n", dir, dir)
	return res, nil
}

// trainLine returns the watcher callback of a run: each step's line in
// metrics.jsonl (loss, gradient norm, learning rate; non-finite steps and
// loss spikes flagged), a warning on stderr for the first 5 spikes, and the
// step's span on the trace's device track (rec may be nil).
func trainLine(enc *json.Encoder, rec *profile.Recorder, stderr io.Writer) func(guard.Value) {
	spikes := 0
	return func(v guard.Value) {
		line := map[string]any{"step": v.Step, "split": "train", "loss": v.Loss, "grad_norm": v.GradNorm, "lr": v.LR}
		if !v.Finite {
			line["nonfinite"] = true
		}
		if v.Spike {
			line["loss_spike_z"] = v.Z
			if spikes++; spikes <= 5 {
				fmt.Fprintf(stderr, "guard    warning: loss spike at step %d: %.4g (z = %.1f)\n", v.Step, v.Loss, v.Z)
			}
		}
		enc.Encode(line)
		if rec != nil {
			// Dispatch until the loss could be read: the device track.
			rec.Span("device 0", "step", v.Start, v.Ready.Sub(v.Start))
		}
	}
}

// evalLine writes an evaluation's line to metrics.jsonl: split "val" or
// "test", after step; final marks the run's closing evaluation.
func evalLine(enc *json.Encoder, step int64, split string, ev train.EvalResult, final bool) {
	line := map[string]any{"step": step, "split": split, "accuracy": ev.Confusion.Accuracy(), "macro_f1": ev.Confusion.MacroF1(), "log_loss": ev.LogLoss}
	if final {
		line["final"] = true
	}
	enc.Encode(line)
}

// reportOutcome sets res's metrics from ev, the evaluation the run
// reports, and records them in man with res's guard counts (set those
// first).
func reportOutcome(res *Result, man *manifest.Manifest, ev train.EvalResult) {
	conf, base := ev.Confusion, ev.Confusion.Majority()
	res.Accuracy, res.MacroF1, res.LogLoss = conf.Accuracy(), conf.MacroF1(), ev.LogLoss
	res.BaseAcc, res.BaseMacroF1 = base.Accuracy(), base.MacroF1()
	man.Outcome.Metrics = manifest.Metrics{
		"val_accuracy": res.Accuracy, "val_macro_f1": res.MacroF1, "val_log_loss": res.LogLoss,
		"baseline_accuracy": res.BaseAcc, "baseline_macro_f1": res.BaseMacroF1,
		"nonfinite_steps": float64(res.NonFinite), "rollbacks": float64(res.Rollbacks),
	}
}

// dataParallel returns the number of devices the run's device spec names
// and the data-parallel options, refusing a batch that does not split
// over the devices. It
// also sets an MLP's WeightGradsFirst as train.dp_weight_grads_first asks,
// on several devices only (one has no all-reduce to overlap).
func dataParallel(cfg Config, spec device.Spec, m model.Model) (int, train.ParallelOptions, error) {
	n := max(1, len(spec.IDs))
	if mlp, ok := m.(*model.MLP); ok {
		mlp.WeightGradsFirst = n > 1 && cfg.Train.DPWeightGradsFirst
	}
	if cfg.Train.BatchSize%n != 0 {
		return n, train.ParallelOptions{}, fmt.Errorf("train: batch size %d does not split over %d GPUs", cfg.Train.BatchSize, n)
	}
	po, err := train.ParseParallelOptions(cfg.Train.DPStrategy, cfg.Train.DPReduce)
	po.BucketBytes = int64(cfg.Train.DPBucketMB * 1e6)
	return n, po, err
}

// probeAllReduce times par's gradient all-reduce alone (what the step has
// to hide), records it in rec and returns a line describing it.
func probeAllReduce(par *train.Parallel, rec *profile.Recorder) (string, error) {
	pr, err := par.ProbeAllReduce(20)
	if err != nil {
		return "", err
	}
	rec.Collective("gradient all-reduce", par.Devices(), pr.Bytes, pr.Collective)
	return fmt.Sprintf("gradient all-reduce of %.1f MB alone: %s (a call of it %s)",
		float64(pr.Bytes)/1e6, pr.Collective.Round(time.Microsecond), pr.Call.Round(time.Microsecond)), nil
}

// guardSample names one sample of a batch that went non-finite in
// guard.json: a window (Row is the row it ends at) or a sequence (Row is
// its first row, Events its length).
type guardSample struct {
	Index      int32  `json:"index"`
	Instrument string `json:"instrument"`
	Row        uint32 `json:"row"`
	Events     int    `json:"events,omitempty"`
	TsNs       int64  `json:"ts_ns"`
}

// windowSamples describes training sample i of refs.
func windowSamples(w *batch.Windows, refs []batch.Ref) func(i int32) guardSample {
	return func(i int32) guardSample {
		r := refs[i]
		s := &w.Series[r.Series]
		return guardSample{Index: i, Instrument: s.Symbol, Row: r.Row, TsNs: s.TsNs[r.Row]}
	}
}

// guardEnd sorts the watcher's error at the end of a run, once its last
// steps are read: none ends nothing; a failed read of a step (on the
// device) ends the run under every policy; a non-finite step ends it
// through stop under policy "stop" (skip and rollback went on).
func guardEnd(werr error, policy string, stop func(*guard.NonFiniteError) error) error {
	var nf *guard.NonFiniteError
	switch {
	case werr == nil:
	case !errors.As(werr, &nf):
		return fmt.Errorf("train: %w", werr)
	case policy == "stop":
		return stop(nf)
	}
	return nil
}

// guardStop writes guard.json (the step, its samples as sampleOf describes
// them, the layers whose gradients went bad, the policy that stopped and
// the last good checkpoint) and returns the error that ends the run.
func guardStop(dir string, sampleOf func(int32) guardSample, nf *guard.NonFiniteError, ckpt, policy string) error {
	rep := struct {
		Step      int64         `json:"step"`
		Loss      string        `json:"loss"`
		GradNorm  string        `json:"grad_norm"`
		BadParams []string      `json:"nonfinite_gradients"`
		Samples   []guardSample `json:"samples"`
		Policy    string        `json:"policy"`
		LastGood  string        `json:"last_good_checkpoint"`
	}{Step: nf.Step, Loss: fmt.Sprint(nf.Loss), GradNorm: fmt.Sprint(nf.GradNorm), BadParams: nf.BadParams, Policy: policy, LastGood: ckpt}
	for _, i := range nf.Samples {
		rep.Samples = append(rep.Samples, sampleOf(i))
	}
	data, _ := json.MarshalIndent(rep, "", "  ")
	path := filepath.Join(dir, "guard.json")
	if err := atomicfile.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	if ckpt == "" {
		ckpt = "none yet"
	}
	return fmt.Errorf("guard: %w\n  last good checkpoint: %s\n  details: %s", nf, ckpt, path)
}

func newProgress(quiet bool, stderr io.Writer, steps int) (*progressbar.ProgressBar, bool) {
	if quiet {
		return nil, false
	}
	if !isTerminal(stderr) {
		return nil, true // a log file gets a line every 10%
	}
	return progressbar.NewOptions(steps,
		progressbar.OptionSetWriter(stderr),
		progressbar.OptionSetDescription("train"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionSetWidth(24),
		progressbar.OptionClearOnFinish(),
	), false
}

func progress(bar *progressbar.ProgressBar, logLines bool, w io.Writer, v guard.Value, step, from int64, steps, eventsPerStep int, start time.Time) {
	el := time.Since(start).Seconds()
	done := float64(step + 1 - from)
	rate := si(float64(eventsPerStep) * done / el)
	if bar != nil {
		bar.Describe(fmt.Sprintf("train loss %.4f  %s events/s", v.Loss, rate))
		bar.Add(1)
	}
	if logLines && ((step+1)*10)%int64(steps) < 10 {
		eta := el / done * float64(int64(steps)-step-1)
		fmt.Fprintf(w, "train    step %d/%d  loss %.4f  %s events/s  elapsed %.0fs  eta %.0fs\n", step+1, steps, v.Loss, rate, el, eta)
	}
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

func exportModel(dir string, m model.Model, st *train.State, norm batch.Normalizer, cfg Config) (string, error) {
	spec := infer.Spec{
		Arch:     m.Arch(),
		Window:   cfg.Data.Window,
		Features: feature.Names,
		Classes:  feature.ClassNames,
		Meta: map[string]string{
			"horizon": fmt.Sprint(cfg.Data.Horizon), "theta_ticks": fmt.Sprint(cfg.Data.Theta),
			"step": fmt.Sprint(st.Step), "source": cfg.Data.Source,
		},
	}
	switch mm := m.(type) {
	case *model.MLP:
		// An MLP over some feature columns exports as one over all of
		// them, with zero weights for the others (Dense0Full).
		spec.Layers, spec.Activation = slices.Clone(mm.Layers), infer.ActivationReLU
		spec.Layers[0] = mm.W * mm.F
	case *model.GRU:
		spec.Hidden = mm.H
	case *model.DeepLOB:
		spec.Hidden, spec.Conv, spec.Inception, spec.BookIndex = mm.Hidden, mm.Conv, mm.Inception, mm.Index
	case *model.Transformer:
		spec.DModel, spec.Heads, spec.Blocks, spec.FF = mm.D, mm.Heads, mm.Layers, mm.FF
	}
	var ps []infer.Param
	for i, p := range m.Params() {
		data, err := tensors.CopyFlatData[float32](st.Params[i])
		if err != nil {
			return "", err
		}
		shape := p.Shape
		if mm, ok := m.(*model.MLP); ok && i == 0 {
			data, shape = mm.Dense0Full(data), []int{mm.W * mm.F, p.Shape[1]}
		}
		ps = append(ps, infer.Param{Name: p.Name, Shape: shape, Data: data})
	}
	im, err := infer.FromParams(spec, norm.Mean, norm.Std, ps)
	if err != nil {
		return "", fmt.Errorf("export: %w", err)
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

// majorityClass is the class a Confusion from Majority always predicts.
func majorityClass(c *train.Confusion) int {
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
