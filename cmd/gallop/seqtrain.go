package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/batch"
	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/device"
	"github.com/gallop-dev/gallop/guard"
	"github.com/gallop-dev/gallop/manifest"
	"github.com/gallop-dev/gallop/model"
	"github.com/gallop-dev/gallop/profile"
	"github.com/gallop-dev/gallop/train"
)

// seqRun trains a model over variable-length sequences in the padded or
// packed layout, on one device or data parallel, and evaluates it on the
// validation sequences in the same layout.
type seqRun struct {
	cfg      Config
	p        *prepared
	m        model.Model
	runner   *train.SeqRunner // one device or several (data parallel)
	st       *train.State
	resumed  *train.Checkpoint // the checkpoint the run continues from, or nil
	onStep   func(step int64)  // trainOptions.onStep
	rec      *profile.Recorder // nil when train.profile is off
	dir      string
	out, log io.Writer
	enc      *json.Encoder
	// The first step (compiling the step) is timed apart from the others,
	// whose time runs until the watcher has read the last step's loss (the
	// device has finished it), and whose tokens count the positions holding
	// data.
	first, steady time.Duration
	tokens        int64
	// Guard outcomes: steps with non-finite values, rollbacks.
	nonFinite, rollbacks int64
	// Validation every train.eval_every steps, and with train.select_best
	// the best state by macro-F1 so far.
	valSeqs  []batch.Seq
	bestF1   float64
	bestStep int64
	bestCkpt string
}

func parseLayout(s string) (batch.Layout, error) {
	switch s {
	case "padded":
		return batch.Padded, nil
	case "packed":
		return batch.Packed, nil
	}
	return 0, fmt.Errorf("config: model.layout = %q: want padded or packed", s)
}

// seqs cuts the series into sequences by time bucket, at most SeqLen
// events each, and splits them by time with the label horizon purged.
func (r *seqRun) seqs() (train, val []batch.Seq, err error) {
	c := r.cfg
	all, err := batch.SeqByTime(r.p.series, time.Duration(c.Data.SeqBucketMs*float64(time.Millisecond)), 2, c.Data.SeqLen)
	if err != nil {
		return nil, nil, err
	}
	fold, err := batch.TimeSplitSeqs(r.p.series, all, c.Data.TrainFrac, batch.Purge{Horizon: c.Data.Horizon, Embargo: c.Data.Embargo})
	if err != nil {
		return nil, nil, err
	}
	return batch.Select(all, fold.Train), batch.Select(all, fold.Val), nil
}

func parseBalance(s string) (batch.Balance, error) {
	switch s {
	case "kk":
		return batch.BalanceKK, nil
	case "lpt":
		return batch.BalanceLPT, nil
	case "none":
		return batch.BalanceNone, nil
	}
	return 0, fmt.Errorf("config: data.seq_balance = %q: want kk, lpt or none", s)
}

// sampler plans steps of train.batch_size rows in all, split over ranks
// data-parallel ranks as data.seq_balance says. Every batch has the same
// shape (T = seq_len), which a data-parallel step needs; the bucket is the
// global batch, so the order, and with Padded each step's sequences, do
// not depend on the number of ranks.
func (r *seqRun) sampler(seqs []batch.Seq, order batch.Order, seed uint64, ranks int) (*batch.SeqSampler, error) {
	layout, err := parseLayout(r.cfg.Model.Layout)
	if err != nil {
		return nil, err
	}
	bal, err := parseBalance(r.cfg.Data.SeqBalance)
	if err != nil {
		return nil, err
	}
	return batch.NewSeqSampler(seqs, batch.SeqSamplerConfig{Layout: layout, Rows: r.cfg.Train.BatchSize / ranks,
		Len: r.cfg.Data.SeqLen, PadMultiple: r.cfg.Data.SeqLen, Ranks: ranks, Bucket: r.cfg.Train.BatchSize,
		Balance: bal, Order: order, Seed: seed})
}

// run trains from the state's step to cfg.Train.Steps, each step over
// every device's rank, checkpointing every train.checkpoint_every steps
// with the samplers' state; it returns the steps run and the last
// checkpoint.
func (r *seqRun) run(ctx context.Context, trainSeqs []batch.Seq) (int64, string, error) {
	c := r.cfg
	n := r.runner.Devices()
	order := map[bool]batch.Order{true: batch.OrderBucketed, false: batch.OrderRandom}[c.Model.Layout == "padded"]
	src := &batch.SeriesSource{Series: r.p.series, F: feature.Count}
	// One loader per rank; each runs its own sampler, and they plan the
	// same steps. open (re)starts them at a sampler state (nil: the start).
	loaders := make([]*batch.SeqLoader, n)
	closeAll := func() {
		for _, ld := range loaders {
			if ld != nil {
				ld.Close()
			}
		}
	}
	defer closeAll()
	open := func(state *batch.SamplerState) error {
		closeAll()
		for d := range loaders {
			sm, err := r.sampler(trainSeqs, order, c.Seed, n)
			if err != nil {
				return err
			}
			if state != nil {
				// The epoch's global order and position carry over, whatever
				// the number of ranks that wrote the state.
				if err := sm.Restore(*state); err != nil {
					return err
				}
			}
			// On GPUs each rank's batches go to its device ahead of the step.
			// With accumulation the loop holds a step's k micro-batches at
			// once; with K steps per call, it stages the next call's K
			// batches while one runs.
			lc := r.runner.LoaderConfig(batch.SeqLoaderConfig{Rank: d, Prefetch: max(c.Train.Prefetch, c.Train.Accumulate, 2*c.Train.StepsPerCall), Workers: 2})
			if loaders[d], err = batch.NewSeqLoader(ctx, src, sm, lc); err != nil {
				return err
			}
		}
		return nil
	}
	var resumeAt *batch.SamplerState
	if r.resumed != nil {
		resumeAt = &r.resumed.Sampler
	}
	if err := open(resumeAt); err != nil {
		return 0, "", fmt.Errorf("train: sequence loaders: %w", err)
	}
	sched, _ := train.ParseSchedule(c.Train.Schedule, c.Train.LR, int64(c.Train.Steps))
	w := guard.NewWatcher(guard.Config{Lag: c.Train.GuardLag, BatchSize: c.Train.BatchSize * c.Data.SeqLen, SpikeZ: c.Train.SpikeZ,
		OnValue: trainLine(r.enc, r.rec, r.log)})
	var epoch seqEpoch
	curEpoch, ids := 0, make([]int32, 0, 1024)
	if r.resumed != nil {
		curEpoch = r.resumed.Sampler.Epoch
	}
	// A loop iteration's batches: micro-batch i (of k, train.accumulate) of
	// one step, or with K = train.steps_per_call steps per call step i of
	// the call, for rank d at bs[i*n+d]. An iteration is one call of K
	// steps (K = 1 but for steps per call).
	k, K := c.Train.Accumulate, c.Train.StepsPerCall
	per := max(k, K)
	bs := make([]*batch.SeqBatch, per*n)
	outs := make([]train.StepOut, 1)
	lrs := make([]float64, K)
	var lastCkpt string
	from := r.st.Step
	start := time.Now()
	rec := r.rec
	spec, err := device.Parse(c.Device)
	if err != nil {
		w.Close()
		return 0, "", err
	}
	probe := newDeviceProbe(rec, r.log, spec, n, c.Train.DeviceProbeEvery, from)
	lrScale := 1.0
	for step := from; step < int64(c.Train.Steps); step++ {
		if rec != nil {
			rec.BeginStep(step)
		}
		t := stamp(rec)
		for i := range per {
			for d, ld := range loaders {
				b, err := ld.Next(ctx)
				if err != nil {
					w.Close()
					return step - from, lastCkpt, fmt.Errorf("train: step %d, rank %d: %w", step, d, err)
				}
				bs[i*n+d] = b
			}
		}
		t = end(rec, profile.Data, t)
		for i := range per {
			if mb := bs[i*n]; mb.Epoch != curEpoch {
				r.logEpoch(curEpoch, &epoch)
				epoch, curEpoch = seqEpoch{}, mb.Epoch
			}
			epoch.add(bs[i*n : (i+1)*n])
		}
		if t, err = probe.take(step, t,
			func() <-chan error { return r.runner.CompileProbe(r.st, bs[:n]) },
			func() ([]time.Duration, error) { return r.runner.ProbeDevices(r.st, bs[:n], probeReps) }); err != nil {
			w.Close()
			return step - from, lastCkpt, err
		}
		switch {
		case K > 1:
			for i := range lrs {
				lrs[i] = sched.LR(step+int64(i)) * lrScale
			}
			outs, err = r.runner.StepN(r.st, lrs, bs)
		case k == 1:
			outs[0], err = r.runner.Step(r.st, sched.LR(step)*lrScale, bs)
		default:
			outs, err = r.runner.Accumulate(r.st, sched.LR(step)*lrScale, bs)
		}
		if err != nil {
			w.Close()
			return step - from, lastCkpt, err
		}
		if step == from {
			r.first = time.Since(start)
			if rec != nil {
				rec.Compile(time.Duration(rec.Start()-t), "train_step_seq")
				t = rec.Start()
			}
		} else {
			t = end(rec, profile.Dispatch, t)
		}
		samplerState := bs[len(bs)-1].State // every rank's sampler plans the same steps
		tokens := 0
		for i, out := range outs {
			ids = ids[:0]
			for d, b := range bs[i*n : (i+1)*n] {
				tokens += b.Stats.Tokens
				if step > from {
					r.tokens += int64(b.Stats.Tokens)
				}
				for _, pl := range b.Places {
					ids = append(ids, pl.Seq)
				}
				loaders[d].Release(b)
			}
			w.Observe(out, ids)
		}
		t = end(rec, profile.Device, t) // Observe waits once the watcher is the guard's lag behind the device
		first := step                   // the call's first step
		step += int64(K - 1)            // and, from here on, its last
		if gerr := w.Err(); gerr != nil {
			var nf *guard.NonFiniteError
			if !errors.As(gerr, &nf) { // a step that failed on the device
				w.Close()
				return step - from, lastCkpt, fmt.Errorf("train: step %d: %w", step, gerr)
			}
			stop := func(why string) (int64, string, error) {
				w.Close()
				return step - from, lastCkpt, fmt.Errorf("train: %w", guardStop(r.dir, r.seqSamples(trainSeqs), nf, lastCkpt, why))
			}
			switch c.Train.OnNonFinite {
			case "skip":
				// The step left the state unchanged; note it and go on.
				w.Reset()
			case "rollback":
				if lastCkpt == "" {
					return stop("rollback: no checkpoint yet")
				}
				if r.rollbacks == maxRollbacks {
					return stop(fmt.Sprintf("rollback: still non-finite after %d rollbacks", maxRollbacks))
				}
				ns, ck, err := train.LoadCheckpoint(lastCkpt, r.m)
				if err != nil {
					return stop(err.Error())
				}
				if err := open(&ck.Sampler); err != nil {
					return stop(err.Error())
				}
				if err := r.runner.SetState(ns); err != nil { // on several GPUs, every replica
					return stop(err.Error())
				}
				r.st, lrScale = ns, lrScale*c.Train.RollbackLRFactor
				r.rollbacks++
				fmt.Fprintf(r.log, "guard    %v\nguard    rolled back to %s (step %d), learning rate × %g\n", gerr, filepath.Base(lastCkpt), ck.Step, lrScale)
				w.Reset()
				if rec != nil {
					rec.EndStep(tokens, tokens)
				}
				curEpoch, epoch = ck.Sampler.Epoch, seqEpoch{}
				step = ns.Step - 1
				continue
			default:
				return stop("stop")
			}
		}
		if r.onStep != nil {
			r.onStep(step)
		}
		if last := step+1 == int64(c.Train.Steps); last || (c.Train.CheckpointEvery > 0 && (step+1)%int64(c.Train.CheckpointEvery) == 0) {
			if lastCkpt, err = train.SaveCheckpoint(filepath.Join(r.dir, "checkpoints"), r.m, r.st,
				train.Checkpoint{Sampler: samplerState, Seed: c.Seed}, c.Train.KeepCheckpoints); err != nil {
				w.Close()
				return step - from, lastCkpt, err
			}
			t = end(rec, profile.Checkpoint, t)
			mark(rec, "checkpoint")
		}
		if c.Train.EvalEvery > 0 && (step+1)%int64(c.Train.EvalEvery) == 0 && step+1 != int64(c.Train.Steps) {
			if err := r.evalDuring(ctx, step, samplerState); err != nil {
				w.Close()
				return step - from, lastCkpt, err
			}
			t = end(rec, profile.Eval, t)
			mark(rec, "eval")
		}
		if rec != nil {
			// A sample is a position holding an event.
			rec.EndStep(tokens, tokens)
		}
		if every := max(1, int64(c.Train.Steps)/10); (step+1)/every != first/every {
			fmt.Fprintf(r.log, "train    step %d/%d  loss %.4f  %.0fs\n", step+1, c.Train.Steps, w.Last().Loss, time.Since(start).Seconds())
		}
	}
	r.logEpoch(curEpoch, &epoch)
	werr := w.Close()
	r.nonFinite, _ = w.Counts()
	r.steady = time.Since(start) - r.first
	// The last steps, read after the loop ended, are held to the same policy.
	return int64(c.Train.Steps) - from, lastCkpt, guardEnd(werr, c.Train.OnNonFinite, func(nf *guard.NonFiniteError) error {
		return fmt.Errorf("train: %w", guardStop(r.dir, r.seqSamples(trainSeqs), nf, lastCkpt, "stop"))
	})
}

// evalDuring validates after step, logs it, and with train.select_best
// keeps the state if its macro-F1 is the best so far.
func (r *seqRun) evalDuring(ctx context.Context, step int64, sampler batch.SamplerState) error {
	ev, err := r.eval(ctx, r.valSeqs)
	if err != nil {
		return err
	}
	f1 := ev.Confusion.MacroF1()
	evalLine(r.enc, step, "val", ev, false)
	if !r.cfg.Train.SelectBest || f1 <= r.bestF1 {
		return nil
	}
	r.bestCkpt, err = train.SaveCheckpoint(filepath.Join(r.dir, "checkpoints", "best"), r.m, r.st, train.Checkpoint{Sampler: sampler, Seed: r.cfg.Seed}, 1)
	r.bestF1, r.bestStep = f1, step
	return err
}

// seqSamples describes training sequence i of seqs for guard.json.
func (r *seqRun) seqSamples(seqs []batch.Seq) func(i int32) guardSample {
	return func(i int32) guardSample {
		q := seqs[i]
		s := &r.p.series[q.Series]
		return guardSample{Index: i, Instrument: s.Symbol, Row: q.Start, Events: q.Len(), TsNs: s.TsNs[q.Start]}
	}
}

// seqEpoch accumulates an epoch's batches over every rank.
type seqEpoch struct {
	batch.EpochStats
	imbSum float64 // per step: the most tokens of a rank × ranks / all the step's tokens
	steps  int
}

func (e *seqEpoch) add(bs []*batch.SeqBatch) {
	var most, sum int
	for _, b := range bs {
		e.Batches++
		e.Slots += int64(b.Stats.Slots)
		e.Tokens += int64(b.Stats.Tokens)
		most, sum = max(most, b.Stats.Tokens), sum+b.Stats.Tokens
	}
	if sum > 0 {
		e.imbSum += float64(most*len(bs)) / float64(sum)
	}
	e.steps++
}

func (r *seqRun) logEpoch(e int, s *seqEpoch) {
	if s.Batches == 0 {
		return
	}
	rec := map[string]any{"split": "epoch", "epoch": e, "layout": r.cfg.Model.Layout,
		"padding_fraction": s.PaddingFraction(), "tokens_per_batch": s.TokensPerBatch(), "batches": s.Batches}
	line := fmt.Sprintf("epoch    %d (%s): padding %.1f%%, %.0f tokens per batch, %d batches", e, r.cfg.Model.Layout, 100*s.PaddingFraction(), s.TokensPerBatch(), s.Batches)
	if n := r.runner.Devices(); n > 1 {
		imb := s.imbSum / float64(max(s.steps, 1))
		rec["ranks"], rec["rank_imbalance"], rec["balance"] = n, imb, r.cfg.Data.SeqBalance
		line += fmt.Sprintf(" over %d ranks (%s: busiest rank %.3f× the mean)", n, r.cfg.Data.SeqBalance, imb)
	}
	r.enc.Encode(rec)
	fmt.Fprintln(r.log, line)
}

// eval runs the validation sequences once, in time order, and counts the
// predictions at every labelled position.
func (r *seqRun) eval(ctx context.Context, valSeqs []batch.Seq) (train.EvalResult, error) {
	sm, err := r.sampler(valSeqs, batch.OrderTime, 0, 1)
	if err != nil {
		return train.EvalResult{}, err
	}
	src := &batch.SeriesSource{Series: r.p.series, F: feature.Count}
	conf := train.NewConfusion(len(feature.ClassNames))
	var nll float64
	b := sm.NewBatch(feature.Count)
	var plan batch.StepPlan
	for {
		sm.Next(&plan)
		if plan.Epoch > 0 {
			break
		}
		if err := b.Assemble(src, sm.Seqs(), &plan.Ranks[0]); err != nil {
			return train.EvalResult{}, err
		}
		lg, err := r.runner.Predict(r.st, b)
		if err != nil {
			return train.EvalResult{}, err
		}
		tensors.MustConstFlatData(lg, func(l []float32) { nll += train.Score(l, b.Labels, conf) })
		lg.FinalizeAll()
	}
	n := conf.Total()
	return train.EvalResult{Confusion: conf, LogLoss: nll / float64(max(n, 1)), Samples: int(n)}, nil
}

// trainSequences is gallop train's path for --layout padded|packed.
func trainSequences(ctx context.Context, cfg Config, p *prepared, m model.Model, runner *train.SeqRunner, st *train.State,
	resumed *train.Checkpoint, onStep func(int64), peak float64, man *manifest.Manifest, dir string, out, stderr io.Writer, start time.Time) (Result, error) {
	res := Result{RunDir: dir}
	f, err := os.Create(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		return res, err
	}
	defer f.Close()
	r := &seqRun{cfg: cfg, p: p, m: m, runner: runner, st: st, resumed: resumed, onStep: onStep, dir: dir, out: out, log: stderr,
		enc: json.NewEncoder(f), bestF1: -1}
	if cfg.Train.Profile {
		// FLOPs per position: 6 per parameter, as for a window (the MLP and
		// DeepLOB run a window per position, so more than that).
		r.rec = profile.New(profile.Config{FLOPsPerSample: 6 * float64(model.Count(m.Params())), PeakFLOPs: peak})
		if par := runner.Parallel(); par != nil {
			probe, err := probeAllReduce(par, r.rec)
			if err != nil {
				return res, err
			}
			fmt.Fprintf(out, "parallel %s\n", probe)
		}
	}
	trainSeqs, valSeqs, err := r.seqs()
	if err != nil {
		return res, err
	}
	r.valSeqs = valSeqs
	fmt.Fprintf(out, "seqs     %d training and %d validation sequences of up to %d events (%s layout, %d rows per batch)\n",
		len(trainSeqs), len(valSeqs), cfg.Data.SeqLen, cfg.Model.Layout, cfg.Train.BatchSize)
	t0 := time.Now()
	steps, ckpt, err := r.run(ctx, trainSeqs)
	res.Rollbacks = r.rollbacks
	if err != nil {
		return res, err
	}
	st = r.st // a rollback replaces the state
	trainTime := time.Since(t0)
	t1 := time.Now()
	ev, err := r.eval(ctx, valSeqs)
	if err != nil {
		return res, err
	}
	evalLine(r.enc, st.Step-1, "val", ev, true)
	if cfg.Train.SelectBest && r.bestCkpt != "" && r.bestF1 > ev.Confusion.MacroF1() {
		// Report and export the selected state.
		if st, _, err = train.LoadCheckpoint(r.bestCkpt, m); err != nil {
			return res, err
		}
		r.st = st
		fmt.Fprintf(out, "select   best validation macro-F1 %.4f at step %d (final step: %.4f)\n", r.bestF1, r.bestStep, ev.Confusion.MacroF1())
		if ev, err = r.eval(ctx, valSeqs); err != nil {
			return res, err
		}
	}
	res.NonFinite, res.Rollbacks, res.Steps = r.nonFinite, r.rollbacks, st.Step
	reportOutcome(&res, man, ev)
	man.Outcome.Checkpoint = ckpt
	evalTime := time.Since(t1)
	t2 := time.Now()
	if man.Outcome.Export, err = exportModel(dir, m, st, p.norm, cfg); err != nil {
		return res, err
	}
	var rep *profile.Report
	if r.rec != nil {
		rep = r.rec.Report()
		phases := map[string]float64{"data": p.took.Seconds(), "train": trainTime.Seconds(), "eval": evalTime.Seconds(), "export": time.Since(t2).Seconds()}
		if err := writeProfile(dir, r.rec, rep, phases); err != nil {
			return res, err
		}
	}
	res.Wall = time.Since(start)
	fmt.Fprintf(out, "\nvalidation (%d labelled positions, horizon %d events)\n", ev.Samples, cfg.Data.Horizon)
	fmt.Fprintf(out, "  %-22s accuracy %.4f  macro-F1 %.4f  log-loss %.4f\n", "model", res.Accuracy, res.MacroF1, ev.LogLoss)
	fmt.Fprintf(out, "  %-22s accuracy %.4f  macro-F1 %.4f\n", "majority baseline", res.BaseAcc, res.BaseMacroF1)
	fmt.Fprintf(out, "\ntime     %.1fs total: train %.1fs (%d steps: the first, with compilation, %.1fs; then %.2f ms/step, %.0f tokens/s)\n",
		res.Wall.Seconds(), trainTime.Seconds(), steps, r.first.Seconds(), 1e3*r.steady.Seconds()/float64(max(steps-int64(cfg.Train.StepsPerCall), 1)), float64(r.tokens)/r.steady.Seconds())
	if res.NonFinite > 0 || res.Rollbacks > 0 {
		fmt.Fprintf(out, "guard    %d non-finite steps (%s), %d rollbacks\n", res.NonFinite, cfg.Train.OnNonFinite, res.Rollbacks)
	}
	if rep != nil {
		perCall := ""
		if k := cfg.Train.StepsPerCall; k > 1 {
			perCall = fmt.Sprintf("; a profiled step is one call of %d optimizer steps", k)
		}
		fmt.Fprintf(out, "profile  %s (a sample is a position holding an event%s)\n", rep.Verdict, perCall)
	}
	fmt.Fprintf(out, "run      %s\n", dir)
	return res, nil
}
