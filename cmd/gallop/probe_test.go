package main

import (
	"slices"
	"testing"
	"time"

	"github.com/gallop-dev/gallop/device"
	"github.com/gallop-dev/gallop/profile"
)

// TestDeviceProbeSchedule: a profiled run on GPUs 2 and 3 probes its
// devices 5 steps in, then every train.device_probe_every steps, and
// hands each probe to the profiler under the GPUs' names; without
// profiling, on one device or with 0 it never probes.
func TestDeviceProbeSchedule(t *testing.T) {
	rec := profile.New(profile.Config{})
	spec := device.Spec{Kind: "gpu", IDs: []int{2, 3}}
	p := newDeviceProbe(rec, spec, 2, 100, 40)
	var at []int64
	for step := int64(40); step < 360; step++ {
		rec.BeginStep(step)
		if p.due(step) {
			at = append(at, step)
			p.record(step, []time.Duration{time.Millisecond, 3 * time.Millisecond}, rec.Start())
		}
		rec.EndStep(1, 1)
	}
	if want := []int64{45, 100, 200, 300}; !slices.Equal(at, want) {
		t.Errorf("probes at steps %v, want %v", at, want)
	}
	r := rec.Report()
	if len(r.Devices) != 2 || r.Devices[1].Device != "gpu:3" || r.Devices[1].Probes != 4 || r.Devices[1].Ratio != 3 {
		t.Errorf("report's devices %+v", r.Devices)
	}
	for _, off := range []*deviceProbe{
		newDeviceProbe(nil, spec, 2, 100, 0),
		newDeviceProbe(rec, device.Spec{Kind: "gpu", IDs: []int{0}}, 1, 100, 0),
		newDeviceProbe(rec, spec, 2, 0, 0),
	} {
		if off.due(1000) {
			t.Error("a probe due without profiling, on one device or with device_probe_every 0")
		}
	}
}
