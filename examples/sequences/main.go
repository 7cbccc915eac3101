// Command sequences is the loop of examples/train over variable-length
// sequences: a GRU on the embedded market's events cut at time buckets,
// packed several to a row (segment ids keep them apart), each step's
// sequences split over the devices with their tokens balanced. The same
// code runs on one device (-device cpu, gpu) and data parallel on several
// (-device gpu:0,1): one sampler plan per step, one loader per device.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/batch"
	"github.com/gallop-dev/gallop/data/dataset"
	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/data/sim"
	"github.com/gallop-dev/gallop/device"
	"github.com/gallop-dev/gallop/guard"
	"github.com/gallop-dev/gallop/model"
	"github.com/gallop-dev/gallop/train"
)

func main() {
	dev := flag.String("device", "cpu", "cpu, gpu, gpu:1 or gpu:0,1 (data parallel)")
	steps := flag.Int("steps", 300, "optimizer steps")
	flag.Parse()
	ctx := context.Background()
	spec, err := device.Parse(*dev)
	check(err)
	n := max(1, len(spec.IDs))

	// Data: events → labelled series → sequences of up to 64 events cut at
	// 250 ms buckets, split by time with the label horizon purged.
	simCfg := sim.DefaultConfig()
	simCfg.Events = 100_000
	series, err := dataset.Simulated(simCfg, dataset.Labeling{Horizon: 100, Theta: 0.1})
	check(err)
	seqs, err := batch.SeqByTime(series, 250*time.Millisecond, 2, 64)
	check(err)
	fold, err := batch.TimeSplitSeqs(series, seqs, 0.8, batch.Purge{Horizon: 100})
	check(err)
	trainSeqs, valSeqs := batch.Select(seqs, fold.Train), batch.Select(seqs, fold.Val)
	// The normalisation: each feature's mean and std over the training rows.
	rows := &batch.Windows{Series: series, F: feature.Count, W: 1}
	rowSplit, err := batch.TimeSplit(series, 1, 100, 100, 0.8)
	check(err)
	norm := batch.FitNormalizer(rows, rowSplit.Train)

	backend, _, err := device.Open(spec, device.Options{})
	check(err)
	m, err := model.NewGRU(64, feature.Count, 64, 3)
	check(err)
	stepper := train.NewStepper(backend, m, train.DefaultOptimizer())
	state := stepper.NewState(1)
	runner, err := train.NewSeqRunner(stepper, state, norm, n, train.ParallelOptions{})
	check(err)
	sched := train.OneCycle{Max: 2e-3, Total: int64(*steps)}

	// 32 rows of 64 positions in all, 32/n per device; every rank runs a
	// sampler with the same config and assembles its own share.
	src := &batch.SeriesSource{Series: series, F: feature.Count}
	cfg := batch.SeqSamplerConfig{Layout: batch.Packed, Rows: 32 / n, Len: 64, Ranks: n, Balance: batch.BalanceKK, Seed: 1}
	loaders := make([]*batch.SeqLoader, n)
	for d := range loaders {
		sm, err := batch.NewSeqSampler(trainSeqs, cfg)
		check(err)
		// On a GPU the loader copies each batch to its rank's device.
		loaders[d], err = batch.NewSeqLoader(ctx, src, sm, runner.LoaderConfig(batch.SeqLoaderConfig{Rank: d, Prefetch: 4}))
		check(err)
		defer loaders[d].Close()
	}
	watch := guard.NewWatcher(guard.Config{Lag: 4, OnValue: func(v guard.Value) {
		if v.Step%100 == 0 {
			fmt.Printf("step %4d  loss %.4f\n", v.Step, v.Loss)
		}
	}})

	bs := make([]*batch.SeqBatch, n)
	for step := int64(0); step < int64(*steps); step++ {
		for d, ld := range loaders {
			bs[d], err = ld.Next(ctx)
			check(err)
		}
		out, err := runner.Step(state, sched.LR(step), bs)
		check(err)
		watch.Observe(out, nil)
		for d, ld := range loaders {
			ld.Release(bs[d])
		}
		check(watch.Err())
	}
	check(watch.Close())

	// Validation: every labelled position of the held-out sequences.
	sm, err := batch.NewSeqSampler(valSeqs, batch.SeqSamplerConfig{Layout: batch.Packed, Rows: 32, Len: 64, Order: batch.OrderTime})
	check(err)
	conf, b := train.NewConfusion(3), sm.NewBatch(feature.Count)
	for plan := (batch.StepPlan{}); ; {
		if sm.Next(&plan); plan.Epoch > 0 {
			break
		}
		check(b.Assemble(src, sm.Seqs(), &plan.Ranks[0]))
		logits, err := runner.Predict(state, b)
		check(err)
		tensors.MustConstFlatData(logits, func(l []float32) { train.Score(l, b.Labels, conf) })
	}
	base := conf.Majority()
	fmt.Printf("validation macro-F1 %.3f (majority baseline %.3f) over %d labelled positions\n", conf.MacroF1(), base.MacroF1(), conf.Total())
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
