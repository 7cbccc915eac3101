package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/batch"
	"github.com/gallop-dev/gallop/data/dataset"
	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/data/shard"
	"github.com/gallop-dev/gallop/manifest"
	"github.com/gallop-dev/gallop/model"
	"github.com/gallop-dev/gallop/train"
)

// prepared is a run's data: series, windows, the time split and the
// normalisation fitted on the training rows.
type prepared struct {
	// files identify the data for the manifest: shard hashes, or content
	// hashes of the simulated series.
	files       []manifest.DataFile
	manifestSHA string
	close       func() error
	series      []batch.Series
	win         *batch.Windows
	split       batch.Split
	norm        batch.Normalizer
	events      int
	mean, std   *tensors.Tensor
	took        time.Duration
}

// prepareData builds the data of cfg: simulator → book → features →
// labels → windows, split by time.
func prepareData(cfg Config, mutate func([]batch.Series)) (*prepared, error) {
	t0 := time.Now()
	p := &prepared{close: func() error { return nil }}
	var series []batch.Series
	switch cfg.Data.Source {
	case "sim":
		var err error
		series, err = dataset.Simulated(cfg.Data.Sim, dataset.Labeling{Horizon: cfg.Data.Horizon, Theta: cfg.Data.Theta})
		if err != nil {
			return nil, err
		}
		p.files = seriesFiles(series)
	case "shards":
		ds, err := openDataset(cfg)
		if err != nil {
			return nil, err
		}
		// Every shard must still be what the dataset manifest says.
		if err := ds.Verify(); err != nil {
			ds.Close()
			return nil, fmt.Errorf("data %s: %w", cfg.Data.Path, err)
		}
		series, err = ds.Series(cfg.Data.Horizon)
		if err != nil {
			ds.Close()
			return nil, fmt.Errorf("data %s: %w", cfg.Data.Path, err)
		}
		for _, sh := range ds.Manifest.Shards {
			p.files = append(p.files, manifest.DataFile{Name: sh.File, SHA256: sh.SHA256, Size: sh.Bytes})
		}
		if p.manifestSHA, err = manifest.HashFile(filepath.Join(cfg.Data.Path, shard.ManifestFile)); err != nil {
			ds.Close()
			return nil, err
		}
		p.close = ds.Close
	}
	if mutate != nil {
		mutate(series)
	}
	p.series, p.win = series, &batch.Windows{Series: series, F: feature.Count, W: cfg.Data.Window}
	var err error
	p.split, err = batch.TimeSplit3(series, cfg.Data.Window, cfg.Data.Horizon, cfg.Data.Embargo, cfg.Data.TrainFrac, cfg.Data.ValFrac)
	if err != nil {
		p.close()
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

// buildModel returns the configured reference model.
func buildModel(cfg Config) (model.Model, error) {
	w, f, c := cfg.Data.Window, feature.Count, len(feature.ClassNames)
	switch cfg.Model.Arch {
	case "mlp":
		if cfg.Model.Inputs == "book" {
			idx, err := model.DeepLOBIndex(feature.Names)
			if err != nil {
				return nil, err
			}
			return model.NewMLPOn(w, f, idx, cfg.Model.Hidden, c)
		}
		return model.NewMLP(w, f, cfg.Model.Hidden, c)
	case "deeplob":
		return model.NewDeepLOB(w, feature.Names, c, model.DeepLOBConfig{})
	case "gru":
		h := 64
		if len(cfg.Model.Hidden) > 0 {
			h = cfg.Model.Hidden[0]
		}
		return model.NewGRU(w, f, h, c)
	case "transformer":
		return model.NewTransformer(w, f, c, model.TransformerConfig{})
	}
	return nil, fmt.Errorf("model: arch %q: want mlp, deeplob, gru or transformer", cfg.Model.Arch)
}

// describe is a one-line description of a model.
func describe(m model.Model) string {
	if mlp, ok := m.(*model.MLP); ok {
		if mlp.Index != nil {
			return fmt.Sprintf("mlp %v over %d of %d features per event", mlp.Layers, len(mlp.Index), mlp.F)
		}
		return fmt.Sprintf("mlp %v", mlp.Layers)
	}
	return m.Arch()
}

// newModel builds the configured model and its stepper.
func newModel(cfg Config, backend compute.Backend) (model.Model, *train.Stepper, error) {
	m, err := buildModel(cfg)
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

// openDataset opens cfg's sharded dataset and checks it can serve the
// configured labels and features.
func openDataset(cfg Config) (*shard.Dataset, error) {
	ds, err := shard.Open(cfg.Data.Path)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	m := ds.Manifest
	if m.Features.Count != feature.Count {
		ds.Close()
		return nil, fmt.Errorf("data %s: %d features per row, this gallop computes %d: re-ingest it", cfg.Data.Path, m.Features.Count, feature.Count)
	}
	if !slices.Contains(m.Labels.Horizons, cfg.Data.Horizon) {
		ds.Close()
		return nil, fmt.Errorf("data %s: no labels for horizon %d (it has %v): pass --horizon", cfg.Data.Path, cfg.Data.Horizon, m.Labels.Horizons)
	}
	return ds, nil
}

func fmtLR(v float64) string { return fmt.Sprintf("%.3g", v) }
