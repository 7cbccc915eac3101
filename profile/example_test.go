package profile_test

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/gallop-dev/gallop/profile"
)

// The training loop brackets each step with BeginStep and EndStep and times
// its phases; a prefetch goroutine records its own spans.
func Example() {
	p := profile.New(profile.Config{FLOPsPerSample: 6e9, PeakFLOPs: 989e12})

	batches := make(chan []float32, 4)
	go func() { // prefetch worker
		defer close(batches)
		for range 100 {
			t0 := time.Now()
			b := make([]float32, 32) // read and pack a batch
			p.Span("prefetch", "batch", t0, time.Since(t0))
			batches <- b
		}
	}()

	var step int64
	for {
		p.BeginStep(step)
		t := p.Start()
		batch, ok := <-batches
		if !ok {
			break
		}
		t = p.End(profile.Data, t)
		_ = batch // copy to the device
		t = p.End(profile.H2D, t)
		// launch the compiled step, then wait for its outputs
		t = p.End(profile.Dispatch, t)
		t = p.End(profile.Device, t)
		if step%50 == 0 {
			p.Sync() // read the loss back to the host
			p.End(profile.Readback, t)
		}
		p.EndStep(len(batch), 100*len(batch))
		step++
	}

	rep := p.Report()
	_, _ = json.Marshal(rep)     // written to profile.json in the run directory
	_ = p.WriteTrace(io.Discard) // written to trace.json for Perfetto
	_ = rep.String()             // printed at the end of the run
	fmt.Println(rep.Warmup.Steps, rep.Steps, rep.Samples)
	// Output: 10 90 2880
}
