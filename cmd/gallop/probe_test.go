package main

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gallop-dev/gallop/device"
	"github.com/gallop-dev/gallop/profile"
)

// TestDeviceProbeSchedule: a profiled run on GPUs 2 and 3 starts
// compiling the probe 5 steps in, probes once it is compiled (here 3 steps
// later), then every train.device_probe_every steps, and hands each probe
// to the profiler under the GPUs' names; a failed compilation ends the
// probes with a line in the log; without profiling, on one device or with
// 0 it never probes.
func TestDeviceProbeSchedule(t *testing.T) {
	rec := profile.New(profile.Config{})
	spec := device.Spec{Kind: "gpu", IDs: []int{2, 3}}
	p := newDeviceProbe(rec, io.Discard, spec, 2, 100, 40)
	compiled := make(chan error, 1)
	starts := 0
	compile := func() <-chan error { starts++; return compiled }
	var at []int64
	for step := int64(40); step < 360; step++ {
		if step == 48 {
			compiled <- nil
		}
		rec.BeginStep(step)
		if _, err := p.take(step, rec.Start(), compile, func() ([]time.Duration, error) {
			at = append(at, step)
			return []time.Duration{time.Millisecond, 3 * time.Millisecond}, nil
		}); err != nil {
			t.Fatal(err)
		}
		rec.EndStep(1, 1)
	}
	if want := []int64{48, 100, 200, 300}; !slices.Equal(at, want) || starts != 1 {
		t.Errorf("probes at steps %v, want %v; compiled %d times", at, want, starts)
	}
	r := rec.Report()
	if len(r.Devices) != 2 || r.Devices[1].Device != "gpu:3" || r.Devices[1].Probes != 4 || r.Devices[1].Ratio != 3 {
		t.Errorf("report's devices %+v", r.Devices)
	}
	var log strings.Builder
	bad := newDeviceProbe(rec, &log, spec, 2, 100, 0)
	fail := func() <-chan error {
		ch := make(chan error, 1)
		ch <- errors.New("out of memory")
		return ch
	}
	for step := range int64(300) {
		if bad.due(step, fail) {
			t.Fatalf("a probe due at step %d after its compilation failed", step)
		}
	}
	if !strings.Contains(log.String(), "no device probes: out of memory") {
		t.Errorf("log %q", log.String())
	}
	for _, off := range []*deviceProbe{
		newDeviceProbe(nil, io.Discard, spec, 2, 100, 0),
		newDeviceProbe(rec, io.Discard, device.Spec{Kind: "gpu", IDs: []int{0}}, 1, 100, 0),
		newDeviceProbe(rec, io.Discard, spec, 2, 0, 0),
	} {
		if off.due(1000, compile) {
			t.Error("a probe due without profiling, on one device or with device_probe_every 0")
		}
	}
}
