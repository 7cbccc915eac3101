package batch

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/internal/gocpu"
)

// TestSeqLoaderStagesOnDevice: with a backend, every batch arrives with its
// X, Segments and Labels on the device, equal to the host buffers and
// shaped [B, T, F] / [B, T]; reusing a buffer frees what it staged before;
// a device the backend lacks fails the batch's "h2d" stage.
func TestSeqLoaderStagesOnDevice(t *testing.T) {
	be, err := gocpu.New()
	if err != nil {
		t.Fatal(err)
	}
	series, seqs := loaderFixture(t)
	src := &SeriesSource{Series: series, F: 4}
	for _, layout := range []Layout{Padded, Packed} {
		t.Run(layout.String(), func(t *testing.T) {
			sm, _ := NewSeqSampler(seqs, SeqSamplerConfig{Layout: layout, Rows: 4, Len: 96, Ranks: 2, Balance: BalanceKK, Seed: 5})
			ld, err := NewSeqLoader(context.Background(), src, sm, SeqLoaderConfig{Rank: 1, Prefetch: 2, Workers: 2, Backend: be})
			if err != nil {
				t.Fatal(err)
			}
			defer ld.Close()
			seen := map[*tensors.Tensor]bool{}
			var old []*tensors.Tensor // tensors staged by batches already released
			for i := 0; i < 25; i++ { // several uses of every buffer
				b, err := ld.Next(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				on := b.OnDevice
				if on == nil {
					t.Fatalf("batch %d not staged", i)
				}
				if seen[on.X] {
					t.Fatalf("batch %d reuses an earlier batch's device tensor", i)
				}
				seen[on.X] = true
				if got := on.X.Shape().Dimensions; !slices.Equal(got, []int{b.B, b.T, b.F}) {
					t.Fatalf("batch %d: X on the device is %v, want [%d %d %d]", i, got, b.B, b.T, b.F)
				}
				if !slices.Equal(tensors.MustCopyFlatData[float32](on.X), b.X) ||
					!slices.Equal(tensors.MustCopyFlatData[int32](on.Segments), b.Segments) ||
					!slices.Equal(tensors.MustCopyFlatData[int32](on.Labels), b.Labels) {
					t.Fatalf("batch %d: the device copy differs from the host buffers", i)
				}
				ld.Release(b)
				old = append(old, on.X)
			}
			freed := 0
			for _, x := range old {
				if !x.Ok() {
					freed++
				}
			}
			// Every buffer was reused at least twice; the last staging of each
			// (at most Prefetch+Workers+1 of them) may still be live.
			if freed < len(old)-5 {
				t.Fatalf("%d of %d released batches' device tensors freed on reuse", freed, len(old))
			}
			// Close frees what is still staged, held batches included.
			held, err := ld.Next(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			x := held.OnDevice.X
			ld.Close()
			if held.OnDevice != nil || x.Ok() {
				t.Fatal("a held batch's device copy survived Close")
			}
		})
	}
	sm, _ := NewSeqSampler(seqs, SeqSamplerConfig{Rows: 4, Len: 96})
	ld, err := NewSeqLoader(context.Background(), src, sm, SeqLoaderConfig{Backend: be, Device: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer ld.Close()
	_, err = ld.Next(context.Background())
	var se *StageError
	if !errors.As(err, &se) || se.Stage != "h2d" || se.Batch != 0 {
		t.Fatalf("device 3 of a 1-device backend: %v", err)
	}
	t.Log(err)
}
