package main

import (
	"fmt"
	"io"
	"math"
	"time"

	"github.com/gallop-dev/gallop/device"
	"github.com/gallop-dev/gallop/profile"
)

// probeReps is the number of timed rounds of a device probe (after one
// warm-up round).
const probeReps = 5

// deviceProbe schedules the device probes of a profiled data-parallel
// run (train.Runner.ProbeDevices): a few steps in, the probe's graph
// starts compiling on another goroutine while training goes on; the first
// probe runs once it is compiled, then one every train.device_probe_every
// steps.
type deviceProbe struct {
	rec         *profile.Recorder
	log         io.Writer
	names       []string
	every, next int64
	compiled    <-chan error // nil until compilation starts
	started     time.Time
	ready       bool
}

// newDeviceProbe returns the probe schedule of a run on spec's n devices
// starting at step from, or nil (no probes) without profiling, on one
// device or with every == 0.
func newDeviceProbe(rec *profile.Recorder, log io.Writer, spec device.Spec, n int, every int, from int64) *deviceProbe {
	if rec == nil || n < 2 || every <= 0 {
		return nil
	}
	p := &deviceProbe{rec: rec, log: log, every: int64(every), next: from + 5}
	for d := range n {
		p.names = append(p.names, fmt.Sprintf("%s:%d", spec.Kind, spec.IDs[d]))
	}
	return p
}

// due reports whether a probe runs before the step at step. The first
// time a probe would, it calls compile, which starts compiling the
// probe's graph on another goroutine, and probes begin once that is done
// (the steps meanwhile are marked Planned "probe-compile"); a failed
// compilation is logged and ends the probes, not the run.
func (p *deviceProbe) due(step int64, compile func() <-chan error) bool {
	if p == nil || step < p.next {
		return false
	}
	if p.compiled == nil {
		p.compiled, p.started = compile(), time.Now()
	}
	if !p.ready {
		select {
		case err := <-p.compiled:
			if err != nil {
				fmt.Fprintf(p.log, "profile  no device probes: %v\n", err)
				p.next = math.MaxInt64
				return false
			}
			p.ready = true
			fmt.Fprintf(p.log, "profile  device probes from step %d (their graph compiled in %.1fs beside training)\n", step, time.Since(p.started).Seconds())
		default:
			// Compilation competes with the loop for the host: a step
			// slowed by it is the probe's doing, not a finding.
			p.rec.Planned("probe-compile")
			return false
		}
	}
	return true
}

// take runs measure, a probe of the devices, before the step at step when
// one is due (see due; compile starts its graph's compilation), hands its
// times to the profiler, charges the time since t to Other and returns the
// stamp after it.
func (p *deviceProbe) take(step int64, t profile.Stamp, compile func() <-chan error, measure func() ([]time.Duration, error)) (profile.Stamp, error) {
	if !p.due(step, compile) {
		return t, nil
	}
	times, err := measure()
	if err != nil {
		return t, fmt.Errorf("train: step %d: %w", step, err)
	}
	p.next = (step/p.every + 1) * p.every
	p.rec.Devices(p.names, times)
	return end(p.rec, profile.Other, t), nil
}
