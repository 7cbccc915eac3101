package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/gallop-dev/gallop/data/book"
	"github.com/gallop-dev/gallop/infer"
	"github.com/gallop-dev/gallop/serve"
)

const serveUsage = `usage: gallop serve --model <run-dir | export-dir> [flags] [file.dbn[.zst] ... | -]

Serves an exported model (any architecture) over Databento MBO events: per
instrument a book, features and the model's streaming state, one prediction
per event once the instrument's window is full (--mode window, the forward
fixed-window training uses), or from its first event with --mode carried
(mlp, gru, deeplob) or segment (transformer), the sequence forwards.
Events come from DBN files (raw or zstd; several are served together), from
standard input ("-", the default), or from TCP connections each carrying a
DBN stream (--listen). Predictions go to stdout or --out, as JSON lines or
binary records:

  json  {"instrument":5482,"ts_event":1703401200000123456,"logits":[...],"probs":[...],"compute_ns":2310}
  bin   a 16-byte header ("GLP", version 1, u32 8, u16 classes C, u16 record
        size, u32 0), then per prediction a little-endian record of 24+8·C
        bytes: u8 length/4, u8 0xE0, u16 C, u32 instrument, u64 ts_event,
        u32 compute_ns, u32 0, f32 logits[C], f32 probs[C]

The lag (events queued, age of the oldest) is reported on stderr while it
exceeds --lag-alert, and a summary at the end: events, predictions, events/s,
end-to-end latency (arrival → written) and compute latency percentiles, drops.
Nothing is dropped unless --drop-after is given.

Flags:
`

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, serveUsage); fs.PrintDefaults() }
	modelDir := fs.String("model", "", "run directory or export directory (required)")
	format := fs.String("format", "json", "output format: json or bin")
	outPath := fs.String("out", "", "write predictions to this file (default stdout)")
	pace := fs.Float64("pace", 0, "replay at the recorded pace times this (1 real time, 2 twice as fast); 0 as fast as possible")
	listen := fs.String("listen", "", "accept DBN streams on this TCP address (e.g. 127.0.0.1:9000)")
	listenAny := fs.Bool("listen-any", false, "allow --listen on a non-loopback address")
	conns := fs.Int("conns", 0, "with --listen, stop after this many connections have ended (0: serve until interrupted)")
	workers := fs.Int("workers", 0, "worker goroutines (instrument shards); 0: one per CPU")
	queue := fs.Int("queue", 8192, "capacity of each queue, in events")
	dropAfter := fs.Int("drop-after", 0, "shed load when a worker has more than this many events queued (0: never drop, apply backpressure)")
	tick := fs.Float64("tick", 0, "tick size (e.g. 0.25) of instruments without a definition")
	var defs []string
	fs.Func("definitions", "DBN file of instrument definitions giving tick sizes (repeatable)", func(s string) error {
		defs = append(defs, s)
		return nil
	})
	weights := fs.String("weights", "float32", "engine weights: float32 (equal to the training graph) or int8 (MLPs; faster; see BENCHMARKS.md for the accuracy)")
	modeName := fs.String("mode", "window", "which training forward each instrument's stream reproduces: window (every architecture: the last window of events),\n"+
		"carried (mlp, gru, deeplob) or segment (transformer): the instrument's events since the server started as one sequence")
	report := fs.Duration("report", time.Second, "lag reporting period")
	lagAlert := fs.Duration("lag-alert", 10*time.Millisecond, "report periods in which the oldest queued event is at least this old")
	if err := fs.Parse(args); err != nil {
		return flagErr(err)
	}
	if *modelDir == "" {
		fmt.Fprintln(stderr, "serve: --model is required")
		fs.Usage()
		return errUsage
	}
	if *listen != "" && fs.NArg() > 0 {
		fmt.Fprintln(stderr, "serve: give input files or --listen, not both")
		return errUsage
	}
	f, err := serve.ParseFormat(*format)
	if err != nil {
		return err
	}
	if *tick < 0 || math.IsNaN(*tick) || math.IsInf(*tick, 0) {
		return fmt.Errorf("serve: --tick %v, want a positive price", *tick)
	}
	if *listen != "" && !*listenAny {
		if err := checkLoopback(*listen); err != nil {
			return err
		}
	}

	dir := *modelDir
	if !fileExists(filepath.Join(dir, infer.SpecFile)) {
		dir = filepath.Join(dir, "export")
	}
	m, err := infer.Load(dir)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	ticks := map[uint32]int64{}
	for _, d := range defs {
		if _, err := serve.ReadTicks(d, ticks); err != nil {
			return fmt.Errorf("serve: definitions: %w", err)
		}
	}
	w, err := infer.ParseWeights(*weights)
	if err != nil {
		return fmt.Errorf("serve: --weights: %w", err)
	}
	mode, err := infer.ParseMode(*modeName)
	if err != nil {
		return fmt.Errorf("serve: --mode: %w", err)
	}
	cfg := serve.Config{
		Weights: w, Mode: mode, Workers: *workers, Queue: *queue, DropAfter: *dropAfter, Pace: *pace,
		Tick: int64(math.Round(*tick * book.PriceScale)), Ticks: ticks, Format: f,
		Report: stderr, ReportEvery: *report, LagAlert: *lagAlert,
	}
	srv, err := serve.New(m, cfg)
	if err != nil {
		return err
	}

	out, dest := stdout, "stdout"
	if *outPath != "" {
		of, err := os.Create(*outPath)
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		defer of.Close()
		out, dest = of, *outPath
	}
	fmt.Fprintf(stderr, "model    %s, window %d, classes %v, %s weights, %s mode, from %s\n", describeSpec(&m.Spec), m.Window, m.Classes, w, mode, dir)

	var sum serve.Summary
	if *listen != "" {
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		fmt.Fprintf(stderr, "serve    listening on %s, %s predictions to %s\n", ln.Addr(), f, dest)
		sum, err = srv.ServeListener(ctx, out, ln, *conns)
		return serveDone(sum, err, out, stderr)
	}
	inputs := fs.Args()
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}
	var srcs []serve.Source
	defer func() {
		for _, s := range srcs {
			s.(*serve.DBN).Close()
		}
	}()
	for _, in := range inputs {
		var s *serve.DBN
		if in == "-" {
			s, err = serve.NewDBN(os.Stdin, "stdin")
		} else {
			s, err = serve.OpenDBN(in)
		}
		if err != nil {
			return err
		}
		srcs = append(srcs, s)
	}
	fmt.Fprintf(stderr, "serve    %d input(s), %s predictions to %s\n", len(srcs), f, dest)
	sum, err = srv.Serve(ctx, out, srcs...)
	return serveDone(sum, err, out, stderr)
}

// serveDone prints the summary and syncs a file output.
func serveDone(sum serve.Summary, err error, out, stderr io.Writer) error {
	fmt.Fprint(stderr, sum.String())
	if f, ok := out.(*os.File); ok && f != os.Stdout {
		if serr := f.Sync(); serr != nil && err == nil {
			err = fmt.Errorf("serve: %w", serr)
		}
	}
	return err
}

// checkLoopback refuses a listen address that is not on a loopback
// interface (an empty host means every interface).
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("serve: --listen %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return errors.New("serve: --listen " + addr + " is not a loopback address: pass --listen-any to accept connections from other hosts")
}

// describeSpec names an exported model's architecture and sizes.
func describeSpec(s *infer.Spec) string {
	switch s.Arch {
	case infer.ArchMLP:
		return fmt.Sprintf("mlp %v", s.Layers)
	case infer.ArchGRU:
		return fmt.Sprintf("gru-%d", s.Hidden)
	case infer.ArchDeepLOB:
		return fmt.Sprintf("deeplob (conv %d, inception %d, lstm %d)", s.Conv, s.Inception, s.Hidden)
	case infer.ArchTransformer:
		return fmt.Sprintf("transformer (d %d, %d heads, %d blocks, ff %d)", s.DModel, s.Heads, s.Blocks, s.FF)
	}
	return s.Arch
}
