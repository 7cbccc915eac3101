package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/batch"
	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/guard"
	"github.com/gallop-dev/gallop/manifest"
	"github.com/gallop-dev/gallop/model"
	"github.com/gallop-dev/gallop/train"
)

// seqRun trains a sequence model (GRU, transformer) over variable-length
// sequences in the padded or packed layout, and evaluates it on the
// validation sequences in the same layout. It returns the validation
// confusion (over labelled positions) and the number of steps run.
type seqRun struct {
	cfg      Config
	p        *prepared
	m        model.Model
	s        *train.Stepper
	st       *train.State
	out, log io.Writer
	enc      *json.Encoder
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

func (r *seqRun) sampler(seqs []batch.Seq, order batch.Order, seed uint64) (*batch.SeqSampler, error) {
	layout, err := parseLayout(r.cfg.Model.Layout)
	if err != nil {
		return nil, err
	}
	return batch.NewSeqSampler(seqs, batch.SeqSamplerConfig{Layout: layout, Rows: r.cfg.Train.BatchSize,
		Len: r.cfg.Data.SeqLen, PadMultiple: r.cfg.Data.SeqLen, Order: order, Seed: seed})
}

func seqTensors(b *batch.SeqBatch) (x, seg, y *tensors.Tensor) {
	return tensors.FromFlatDataAndDimensions(b.X, b.B, b.T, b.F),
		tensors.FromFlatDataAndDimensions(b.Segments, b.B, b.T),
		tensors.FromFlatDataAndDimensions(b.Labels, b.B, b.T)
}

// run trains for cfg.Train.Steps steps.
func (r *seqRun) run(ctx context.Context, trainSeqs []batch.Seq) (int64, error) {
	c := r.cfg
	sm, err := r.sampler(trainSeqs, map[bool]batch.Order{true: batch.OrderBucketed, false: batch.OrderRandom}[c.Model.Layout == "padded"], c.Seed)
	if err != nil {
		return 0, err
	}
	src := &batch.SeriesSource{Series: r.p.series, F: feature.Count}
	ld, err := batch.NewSeqLoader(ctx, src, sm, batch.SeqLoaderConfig{Prefetch: c.Train.Prefetch, Workers: 2})
	if err != nil {
		return 0, err
	}
	defer ld.Close()
	sched, _ := train.ParseSchedule(c.Train.Schedule, c.Train.LR, int64(c.Train.Steps))
	w := guard.NewWatcher(guard.Config{Lag: c.Train.GuardLag, BatchSize: c.Train.BatchSize * c.Data.SeqLen, SpikeZ: c.Train.SpikeZ,
		OnValue: trainLine(r.enc, nil, r.log)})
	var epoch batch.EpochStats
	curEpoch, ids := 0, make([]int32, 0, 1024)
	start := time.Now()
	for step := int64(0); step < int64(c.Train.Steps); step++ {
		b, err := ld.Next(ctx)
		if err != nil {
			w.Close()
			return step, fmt.Errorf("train: step %d: %w", step, err)
		}
		if b.Epoch != curEpoch {
			r.logEpoch(curEpoch, &epoch)
			epoch, curEpoch = batch.EpochStats{}, b.Epoch
		}
		epoch.Batches++
		epoch.Slots += int64(b.Stats.Slots)
		epoch.Tokens += int64(b.Stats.Tokens)
		x, seg, y := seqTensors(b)
		out, err := r.s.StepSeq(r.st, sched.LR(step), r.p.mean, r.p.std, x, seg, y)
		if err != nil {
			w.Close()
			return step, err
		}
		ids = ids[:0]
		for _, pl := range b.Places {
			ids = append(ids, pl.Seq)
		}
		w.Observe(out, ids)
		ld.Release(b)
		if gerr := w.Err(); gerr != nil {
			w.Close()
			return step, fmt.Errorf("train: guard: %w (sample ids are training sequence indices)", gerr)
		}
		if (step+1)%max(1, int64(c.Train.Steps)/10) == 0 {
			fmt.Fprintf(r.log, "train    step %d/%d  loss %.4f  %.0fs\n", step+1, c.Train.Steps, w.Last().Loss, time.Since(start).Seconds())
		}
	}
	r.logEpoch(curEpoch, &epoch)
	return int64(c.Train.Steps), w.Close()
}

func (r *seqRun) logEpoch(e int, s *batch.EpochStats) {
	if s.Batches == 0 {
		return
	}
	r.enc.Encode(map[string]any{"split": "epoch", "epoch": e, "layout": r.cfg.Model.Layout,
		"padding_fraction": s.PaddingFraction(), "tokens_per_batch": s.TokensPerBatch(), "batches": s.Batches})
	fmt.Fprintf(r.log, "epoch    %d (%s): padding %.1f%%, %.0f tokens per batch, %d batches\n", e, r.cfg.Model.Layout, 100*s.PaddingFraction(), s.TokensPerBatch(), s.Batches)
}

// eval runs the validation sequences once, in time order, and counts the
// predictions at every labelled position.
func (r *seqRun) eval(ctx context.Context, valSeqs []batch.Seq) (train.EvalResult, error) {
	sm, err := r.sampler(valSeqs, batch.OrderTime, 0)
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
		x, seg, _ := seqTensors(b)
		lg, err := r.s.PredictSeq(r.st, r.p.mean, r.p.std, x, seg)
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
func trainSequences(ctx context.Context, cfg Config, p *prepared, m model.Model, s *train.Stepper, st *train.State,
	man *manifest.Manifest, dir string, out, stderr io.Writer, start time.Time) (Result, error) {
	res := Result{RunDir: dir}
	f, err := os.Create(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		return res, err
	}
	defer f.Close()
	r := &seqRun{cfg: cfg, p: p, m: m, s: s, st: st, out: out, log: stderr, enc: json.NewEncoder(f)}
	trainSeqs, valSeqs, err := r.seqs()
	if err != nil {
		return res, err
	}
	fmt.Fprintf(out, "seqs     %d training and %d validation sequences of up to %d events (%s layout, %d rows per batch)\n",
		len(trainSeqs), len(valSeqs), cfg.Data.SeqLen, cfg.Model.Layout, cfg.Train.BatchSize)
	t0 := time.Now()
	steps, err := r.run(ctx, trainSeqs)
	if err != nil {
		return res, err
	}
	trainTime := time.Since(t0)
	ckpt, err := train.SaveCheckpoint(filepath.Join(dir, "checkpoints"), m, st, train.Checkpoint{Seed: cfg.Seed}, cfg.Train.KeepCheckpoints)
	if err != nil {
		return res, err
	}
	ev, err := r.eval(ctx, valSeqs)
	if err != nil {
		return res, err
	}
	conf, base := ev.Confusion, ev.Confusion.Majority()
	r.enc.Encode(map[string]any{"step": steps - 1, "split": "val", "accuracy": conf.Accuracy(), "macro_f1": conf.MacroF1(), "log_loss": ev.LogLoss, "final": true})
	res.Accuracy, res.MacroF1, res.BaseAcc, res.BaseMacroF1, res.LogLoss, res.Steps = conf.Accuracy(), conf.MacroF1(), base.Accuracy(), base.MacroF1(), ev.LogLoss, steps
	man.Outcome.Metrics = manifest.Metrics{"val_accuracy": res.Accuracy, "val_macro_f1": res.MacroF1, "val_log_loss": ev.LogLoss,
		"baseline_accuracy": res.BaseAcc, "baseline_macro_f1": res.BaseMacroF1}
	man.Outcome.Checkpoint = ckpt
	if man.Outcome.Export, err = exportModel(dir, m, st, p.norm, cfg); err != nil {
		return res, err
	}
	res.Wall = time.Since(start)
	fmt.Fprintf(out, "\nvalidation (%d labelled positions, horizon %d events)\n", ev.Samples, cfg.Data.Horizon)
	fmt.Fprintf(out, "  %-22s accuracy %.4f  macro-F1 %.4f  log-loss %.4f\n", "model", res.Accuracy, res.MacroF1, ev.LogLoss)
	fmt.Fprintf(out, "  %-22s accuracy %.4f  macro-F1 %.4f\n", "majority baseline", res.BaseAcc, res.BaseMacroF1)
	fmt.Fprintf(out, "\ntime     %.1fs total: train %.1fs (%d steps, %.2f ms/step)\nrun      %s\n", res.Wall.Seconds(), trainTime.Seconds(), steps, 1e3*trainTime.Seconds()/float64(steps), dir)
	return res, nil
}
