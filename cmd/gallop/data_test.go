package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gallop-dev/gallop/data/shard"
)

func runData(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	err = cmdData(context.Background(), args, &o, &e)
	return o.String(), e.String(), err
}

func TestDataIngestInspect(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ds")
	// Flags after the inputs, as the usage line shows them.
	out, errOut, err := runData("ingest", "sim:3000", "-o", dir, "-horizons", "10,50", "-theta", "0.2", "-workers", "1")
	if err != nil {
		t.Fatalf("ingest: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "dataset  "+dir) || !strings.Contains(errOut, "[1/1] sim:3000: sim, ") {
		t.Errorf("ingest output:\n%s\nstderr:\n%s", out, errOut)
	}
	ds, err := shard.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ds.Close()
	if l := ds.Manifest.Labels; len(l.Horizons) != 2 || l.Horizons[1] != 50 || l.Theta != 0.2 || len(ds.Manifest.Shards) != 3 {
		t.Fatalf("manifest labels %+v, %d shards", l, len(ds.Manifest.Shards))
	}

	out, _, err = runData("inspect", dir)
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	t.Logf("\n%s", out)
	for _, want := range []string{"SIMA", "SIMB", "SIMC", "label balance", "k=10", "k=50", "θ = 0.2 tick, horizons 10, 50 events", "verify    OK: 3 shards", ds.Manifest.Shards[0].SHA256[:12]} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q", want)
		}
	}

	// A rerun skips the finished input.
	_, errOut, err = runData("ingest", "-o", dir, "-horizons", "10,50", "-theta", "0.2", "sim:3000")
	if err != nil || !strings.Contains(errOut, "skipped") || !strings.Contains(errOut, "sim:3000") {
		t.Errorf("rerun: %v\n%s", err, errOut)
	}

	// A changed shard is named, and inspect fails.
	victim := ds.Manifest.Shards[1].File
	p := filepath.Join(dir, victim)
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 1
	os.WriteFile(p, b, 0o644)
	out, _, err = runData("inspect", dir)
	var ve *shard.VerifyError
	if !errors.As(err, &ve) || len(ve.Changed) != 1 || ve.Changed[0] != victim {
		t.Fatalf("inspect of a changed shard: %v", err)
	}
	if !strings.Contains(out, "CHANGED") || !strings.Contains(out, "1 of 3 shards changed") {
		t.Errorf("inspect output:\n%s", out)
	}
	if out, _, err = runData("inspect", "-no-verify", dir); err != nil || !strings.Contains(out, "not checked") {
		t.Errorf("inspect -no-verify: %v\n%s", err, out)
	}
}

func TestDataUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want error
	}{
		{nil, errUsage},
		{[]string{"frobnicate"}, errUsage},
		{[]string{"-h"}, errHelp},
		{[]string{"ingest", "-h"}, errHelp},
		{[]string{"inspect", "-h"}, errHelp},
		{[]string{"ingest", "sim:1000"}, errUsage},                                        // no -o
		{[]string{"ingest", "-o", dir}, errUsage},                                         // no inputs
		{[]string{"ingest", "sim:1000", "-o", dir, "-horizons", "10,x"}, errUsage},        // bad horizons
		{[]string{"ingest", "sim:1000", "-o", dir, "-bogus"}, errUsage},                   // unknown flag
		{[]string{"ingest", "sim:1000", "-o", dir, "-workers", "0"}, errUsage},            // bad workers
		{[]string{"inspect"}, errUsage},                                                   // no dataset
		{[]string{"inspect", dir, dir}, errUsage},                                         // two datasets
		{[]string{"ingest", "sim:1000", "-o", dir, "-theta"}, errUsage},                   // missing value
		{[]string{"ingest", "-q", "sim:1000", "-o", filepath.Join(dir, "ok"), "-q"}, nil}, // flags anywhere
	} {
		_, _, err := runData(tc.args...)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("gallop data %q: %v, want %v", tc.args, err, tc.want)
		}
	}
}

func TestDataBadInput(t *testing.T) {
	tmp := t.TempDir()
	text := filepath.Join(tmp, "prices.txt")
	os.WriteFile(text, []byte("hello\n"), 0o644)
	for _, in := range []string{text, filepath.Join(tmp, "nope.dbn")} {
		_, _, err := runData("ingest", in, "-o", filepath.Join(tmp, "ds"), "-q")
		if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), in) {
			t.Errorf("ingest %s: %v; want an error naming the file", in, err)
		}
	}
	if _, _, err := runData("inspect", tmp); err == nil || !strings.Contains(err.Error(), "dataset.json") {
		t.Errorf("inspect of a directory without a manifest: %v", err)
	}
}
