package main

import (
	"fmt"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/batch"
	"github.com/gallop-dev/gallop/data/dataset"
	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/model"
	"github.com/gallop-dev/gallop/train"
)

// prepared is a run's data: series, windows, the time split and the
// normalisation fitted on the training rows.
type prepared struct {
	series    []batch.Series
	win       *batch.Windows
	split     batch.Split
	norm      batch.Normalizer
	events    int
	mean, std *tensors.Tensor
	took      time.Duration
}

// prepareData builds the data of cfg: simulator → book → features →
// labels → windows, split by time.
func prepareData(cfg Config, mutate func([]batch.Series)) (*prepared, error) {
	t0 := time.Now()
	series, err := dataset.Simulated(cfg.Data.Sim, dataset.Labeling{Horizon: cfg.Data.Horizon, Theta: cfg.Data.Theta})
	if err != nil {
		return nil, err
	}
	if mutate != nil {
		mutate(series)
	}
	p := &prepared{series: series, win: &batch.Windows{Series: series, F: feature.Count, W: cfg.Data.Window}}
	p.split, err = batch.TimeSplit(series, cfg.Data.Window, cfg.Data.Horizon, cfg.Data.Embargo, cfg.Data.TrainFrac)
	if err != nil {
		return nil, err
	}
	p.norm = batch.FitNormalizer(p.win, p.split.Train)
	for _, s := range series {
		p.events += s.Rows()
	}
	p.mean = tensors.FromFlatDataAndDimensions(p.norm.Mean, feature.Count)
	p.std = tensors.FromFlatDataAndDimensions(p.norm.Std, feature.Count)
	p.took = time.Since(t0)
	return p, nil
}

// newModel builds the configured model and its stepper.
func newModel(cfg Config, backend compute.Backend) (*model.MLP, *train.Stepper, error) {
	m, err := model.NewMLP(cfg.Data.Window, feature.Count, cfg.Model.Hidden, len(feature.ClassNames))
	if err != nil {
		return nil, nil, err
	}
	prec, err := train.ParsePrecision(cfg.Train.Precision)
	if err != nil {
		return nil, nil, err
	}
	s := train.NewStepper(backend, m, cfg.Train.Optimizer).WithPrecision(prec).WithAccumulation(cfg.Train.Accumulate)
	return m, s, nil
}

// lrFind runs the learning-rate finder from a fresh initialisation with
// batches drawn by a sampler of its own (the run's order is untouched).
func lrFind(cfg Config, p *prepared, backend compute.Backend, steps int) (*train.LRFindResult, error) {
	_, s, err := newModel(cfg, backend)
	if err != nil {
		return nil, err
	}
	st := s.NewState(cfg.Seed)
	B := cfg.Train.BatchSize
	sm := batch.NewSampler(len(p.split.Train), cfg.Seed^0x1f, true)
	idx := make([]int32, B)
	refs := make([]batch.Ref, B)
	x := make([]float32, B*p.win.SampleSize())
	y := make([]int32, B)
	next := func() (*tensors.Tensor, *tensors.Tensor, func(), error) {
		sm.Next(idx)
		for i, j := range idx {
			refs[i] = p.split.Train[j]
		}
		p.win.Gather(refs, x, y)
		return tensors.FromFlatDataAndDimensions(x, B, p.win.SampleSize()), tensors.FromFlatDataAndDimensions(y, B), nil, nil
	}
	r, err := train.LRFind(s, st, next, p.mean, p.std, train.LRFindConfig{Steps: steps})
	if err != nil {
		return r, err
	}
	return r, nil
}

func fmtLR(v float64) string { return fmt.Sprintf("%.3g", v) }
