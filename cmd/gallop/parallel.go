package main

import (
	"fmt"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/batch"
	"github.com/gallop-dev/gallop/train"
)

// dataParallel adapts train.Parallel to the loop: it splits each batch's
// row ids over the devices and keeps the normalisation on every device.
type dataParallel struct {
	p         *train.Parallel
	n         int
	mean, std []*tensors.Tensor
	host      []int32
}

func newDataParallel(s *train.Stepper, st *train.State, feats []float32, labels []int32, w *batch.Windows, n int, mean, std *tensors.Tensor, norm batch.Normalizer, o train.ParallelOptions) (*dataParallel, error) {
	p, err := train.NewParallel(s, st, feats, labels, w.F, w.W, n, o)
	if err != nil {
		return nil, err
	}
	dp := &dataParallel{p: p, n: n}
	for d := 0; d < n; d++ {
		m := tensors.FromFlatDataAndDimensions(norm.Mean, len(norm.Mean))
		sd := tensors.FromFlatDataAndDimensions(norm.Std, len(norm.Std))
		for _, t := range []*tensors.Tensor{m, sd} {
			if err := t.MaterializeOnDevice(s.Backend(), false, train.DeviceNum(d)); err != nil {
				return nil, fmt.Errorf("train: normalisation to device %d: %w", d, err)
			}
		}
		dp.mean, dp.std = append(dp.mean, m), append(dp.std, sd)
	}
	return dp, nil
}

// step runs one step on rows (int32 [B], host), split over the devices.
func (dp *dataParallel) step(lr float64, rows *tensors.Tensor) (train.StepOut, error) {
	return dp.p.Step(lr, dp.mean, dp.std, dp.split(rows))
}

// stepN runs len(lrs) steps in one call, step i on rows[i].
func (dp *dataParallel) stepN(lrs []float64, rows []*tensors.Tensor) ([]train.StepOut, error) {
	shards := make([][]*tensors.Tensor, len(rows))
	for i, r := range rows {
		shards[i] = dp.split(r)
	}
	return dp.p.StepN(lrs, dp.mean, dp.std, shards)
}

// split splits rows (int32 [B], host) into n equal shards, one per device.
func (dp *dataParallel) split(rows *tensors.Tensor) []*tensors.Tensor {
	dp.host = dp.host[:0]
	tensors.MustConstFlatData(rows, func(r []int32) { dp.host = append(dp.host, r...) })
	per := len(dp.host) / dp.n
	shards := make([]*tensors.Tensor, dp.n)
	for d := range shards {
		shards[d] = tensors.FromFlatDataAndDimensions(dp.host[d*per:(d+1)*per], per)
	}
	return shards
}
