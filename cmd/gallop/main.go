// Command gallop trains sequence models on market-event data and serves
// them in-process. Run `gallop help` for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

const usage = `gallop trains sequence models on market-event data and runs them at
microseconds per event.

usage: gallop <command> [flags]

commands:
  train         train a model end to end (default: the embedded market, CPU)
  data          ingest market-data files into a sharded dataset; inspect one
  lr-find       sweep the learning rate, plot loss against it, suggest one
  eval          evaluate a run's checkpoint on its validation split
  serve         serve a model over live or recorded MBO events (DBN files, stdin, TCP)
  bench infer   latency of the exported model in the pure-Go engine
  profile       print the profile report and verdict of a run
  replay        re-run a recorded run and compare its curves step by step
  diff          what differs between two runs (code, config, versions, data, metrics)
  help          this text

Run 'gallop <command> -h' for a command's flags.
`

// errUsage means the flag package already printed what was wrong.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "train":
		err = cmdTrain(ctx, args[1:], stdout, stderr)
	case "bench":
		err = cmdBench(ctx, args[1:], stdout, stderr)
	case "profile":
		err = cmdProfile(args[1:], stdout, stderr)
	case "serve":
		err = cmdServe(ctx, args[1:], stdout, stderr)
	case "data":
		err = cmdData(ctx, args[1:], stdout, stderr)
	case "lr-find":
		err = cmdLRFind(ctx, args[1:], stdout, stderr)
	case "eval":
		err = cmdEval(ctx, args[1:], stdout, stderr)
	case "replay":
		err = cmdReplay(ctx, args[1:], stdout, stderr)
	case "diff":
		err = cmdDiff(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "gallop: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(stderr, "gallop: interrupted")
		return 130
	}
	fmt.Fprintf(stderr, "gallop: %v\n", err)
	return 1
}

// flagErr maps a flag parsing error: -h is not an error; anything else was
// already printed with the usage.
func flagErr(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return errHelp
	}
	return errUsage
}

var errHelp = errors.New("help")

func indent(s, pfx string) string {
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l != "" {
			b.WriteString(pfx + l)
		}
	}
	return b.String()
}

// si formats a rate with an SI suffix.
func si(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e9:
		return fmt.Sprintf("%.2fG", v/1e9)
	case a >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case a >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
