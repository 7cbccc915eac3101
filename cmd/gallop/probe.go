package main

import (
	"fmt"
	"time"

	"github.com/gallop-dev/gallop/device"
	"github.com/gallop-dev/gallop/profile"
)

// probeReps is the number of timed rounds of a device probe (after one
// warm-up round).
const probeReps = 5

// deviceProbe schedules the device probes of a profiled data-parallel
// run (train.Runner.ProbeDevices): the first a few steps in, while the
// profiler still counts warm-up (it compiles the probe's graph), then
// every train.device_probe_every steps.
type deviceProbe struct {
	rec         *profile.Recorder
	names       []string
	every, next int64
}

// newDeviceProbe returns the probe schedule of a run on spec's n devices
// starting at step from, or nil (no probes) without profiling, on one
// device or with every == 0.
func newDeviceProbe(rec *profile.Recorder, spec device.Spec, n int, every int, from int64) *deviceProbe {
	if rec == nil || n < 2 || every <= 0 {
		return nil
	}
	p := &deviceProbe{rec: rec, every: int64(every), next: from + 5}
	for d := range n {
		p.names = append(p.names, fmt.Sprintf("%s:%d", spec.Kind, spec.IDs[d]))
	}
	return p
}

// due reports whether a probe runs before the step at step.
func (p *deviceProbe) due(step int64) bool { return p != nil && step >= p.next }

// record hands the probe taken before step to the profiler, charges the
// time since t (the probe's) to Other and returns the stamp after it.
func (p *deviceProbe) record(step int64, times []time.Duration, t profile.Stamp) profile.Stamp {
	p.next = (step/p.every + 1) * p.every
	p.rec.Devices(p.names, times)
	return end(p.rec, profile.Other, t)
}
