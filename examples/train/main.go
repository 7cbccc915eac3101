// Command train is a training loop a researcher owns, built from gallop's
// blocks: the embedded market, windowed batches, a compiled step with Adam,
// a one-cycle schedule, the asynchronous NaN guard and a validation pass.
// The same code runs on a GPU with -device gpu, and data parallel on
// several with -device gpu:0,1.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"

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
	steps := flag.Int("steps", 1500, "optimizer steps")
	flag.Parse()
	ctx := context.Background()
	spec, err := device.Parse(*dev)
	check(err)

	// Data: simulated events → book → features → labels, split by time.
	simCfg := sim.DefaultConfig()
	simCfg.Events = 200_000
	series, err := dataset.Simulated(simCfg, dataset.Labeling{Horizon: 100, Theta: 0.1})
	check(err)
	win := &batch.Windows{Series: series, F: feature.Count, W: 10}
	split, err := batch.TimeSplit(series, win.W, 100, 100, 0.8)
	check(err)
	norm := batch.FitNormalizer(win, split.Train)
	mean := tensors.FromFlatDataAndDimensions(norm.Mean, win.F)
	std := tensors.FromFlatDataAndDimensions(norm.Std, win.F)

	// Model, device and the compiled step.
	backend, _, err := device.Open(spec, device.Options{})
	check(err)
	m, err := model.NewMLP(win.W, win.F, []int{128, 64}, 3)
	check(err)
	stepper := train.NewStepper(backend, m, train.DefaultOptimizer())
	state := stepper.NewState(1)
	sched := train.OneCycle{Max: 2e-3, Total: int64(*steps)}
	// The dataset goes to each device once; a step gets only row ids.
	runner, err := train.NewRunner(stepper, state, win, norm, max(1, len(spec.IDs)), train.ParallelOptions{})
	check(err)

	loader, err := batch.NewLoader(ctx, win, split.Train, batch.NewSampler(len(split.Train), 1, true),
		runner.LoaderConfig(batch.LoaderConfig{BatchSize: 256, Prefetch: 4}))
	check(err)
	defer loader.Close()
	watch := guard.NewWatcher(guard.Config{Lag: 4, BatchSize: 256, OnValue: func(v guard.Value) {
		if v.Step%500 == 0 {
			fmt.Printf("step %5d  loss %.4f\n", v.Step, v.Loss)
		}
	}})

	// The loop: it never reads a device value itself.
	for step := int64(0); step < int64(*steps); step++ {
		b, err := loader.Next(ctx)
		check(err)
		out, err := runner.Step(state, sched.LR(step), b.Rows)
		check(err)
		watch.Observe(out, b.Index)
		loader.Release(b)
		check(watch.Err()) // set a few steps after a NaN/Inf, naming the step and batch
	}
	check(watch.Close())

	eval := &train.Evaluator{W: win, Refs: split.Val, BatchSize: 1024, Classes: 3}
	r, err := eval.Run(stepper, state, mean, std)
	check(err)
	base := r.Confusion.Majority()
	fmt.Printf("validation macro-F1 %.3f (majority baseline %.3f), accuracy %.3f (%.3f)\n",
		r.Confusion.MacroF1(), base.MacroF1(), r.Confusion.Accuracy(), base.Accuracy())
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
