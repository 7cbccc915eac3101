package profile_test

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
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

// A data-parallel loop hands each probe of its devices (what
// train.Runner.ProbeDevices returns: each GPU's share of the step timed on
// its own) to the Recorder, and the report gives each device's median and
// names a straggler.
func ExampleRecorder_Devices() {
	p := profile.New(profile.Config{})
	names := []string{"gpu:0", "gpu:1", "gpu:2", "gpu:3"}
	for step := range int64(40) {
		p.BeginStep(step)
		// ... the step ...
		if step%10 == 5 {
			t := p.Start()
			// times, err := runner.ProbeDevices(state, rows, 5)
			times := []time.Duration{4300 * time.Microsecond, 4280 * time.Microsecond, 8150 * time.Microsecond, 4370 * time.Microsecond}
			p.Devices(names, times)
			p.End(profile.Other, t)
		}
		p.EndStep(256, 25600)
	}
	rep := p.Report()
	for _, d := range rep.Devices {
		fmt.Printf("%s %.2f ms (%.2f× the median device), %d probes\n", d.Device, d.Ms, d.Ratio, d.Probes)
	}
	for _, f := range rep.Findings {
		if f.Kind == "straggler" {
			fmt.Println(f.Message[:strings.Index(f.Message, ", and")])
		}
	}
	// Output:
	// gpu:0 4.30 ms (1.00× the median device), 4 probes
	// gpu:1 4.28 ms (1.00× the median device), 4 probes
	// gpu:2 8.15 ms (1.90× the median device), 4 probes
	// gpu:3 4.37 ms (1.02× the median device), 4 probes
	// straggler: gpu:2 takes 8.15 ms for its share of the step on its own, 1.90× the median device's 4.30 ms
}
