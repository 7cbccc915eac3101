package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/gallop-dev/gallop/data/book"
	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/data/shard"
)

const dataUsage = `usage: gallop data <command> [flags]

commands:
  ingest <inputs...> -o <dataset>   build a sharded dataset (Arrow IPC shards + dataset.json)
  inspect <dataset>                 print a dataset's summary and check its shard hashes

Run 'gallop data <command> -h' for a command's flags.
`

// cmdData implements `gallop data`.
func cmdData(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, dataUsage)
		return errUsage
	}
	switch args[0] {
	case "ingest":
		return dataIngest(ctx, args[1:], stdout, stderr)
	case "inspect":
		return dataInspect(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, dataUsage)
		return errHelp
	}
	fmt.Fprintf(stderr, "gallop data: unknown command %q\n\n%s", args[0], dataUsage)
	return errUsage
}

const ingestUsage = `usage: gallop data ingest <inputs...> -o <dataset> [flags]

Inputs, detected by content:
  DBN MBO files (.dbn, .dbn.zst; DBN definition files among them give tick sizes,
  otherwise a tick is the GCD of the observed price differences), LOBSTER zips,
  hftbacktest .gz captures (Binance, Hyperliquid), and sim or sim:<events> for the
  embedded simulator.

An interrupted or failed ingest keeps the inputs it finished: rerun the same
command to resume.

flags:
`

func dataIngest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gallop data ingest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := shard.DefaultOptions()
	out := fs.String("o", "", "dataset directory to write (required)")
	workers := fs.Int("workers", runtime.NumCPU(), "inputs processed in parallel")
	horizons := fs.String("horizons", joinInts(def.Horizons), "label horizons k in events, comma-separated")
	theta := fs.Float64("theta", def.Theta, "label threshold θ in ticks")
	shardRows := fs.Int("shard-rows", 1<<20, "most rows in one shard")
	quiet := fs.Bool("q", false, "no progress output")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), ingestUsage)
		fs.PrintDefaults()
	}
	// Flags may come before, between or after the inputs.
	var inputs []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			return flagErr(err)
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		inputs, rest = append(inputs, rest[0]), rest[1:]
	}
	usageErr := func(format string, a ...any) error {
		fmt.Fprintf(stderr, "gallop data ingest: "+format+"\n\n", a...)
		fs.Usage()
		return errUsage
	}
	if *out == "" {
		return usageErr("-o <dataset> is required")
	}
	if len(inputs) == 0 {
		return usageErr("no inputs")
	}
	hs, err := parseInts(*horizons)
	if err != nil {
		return usageErr("-horizons %q: %v", *horizons, err)
	}
	if *workers < 1 || *shardRows < 1 {
		return usageErr("-workers and -shard-rows must be >= 1")
	}
	opt := shard.Options{Workers: *workers, Horizons: hs, Theta: *theta, ShardRows: *shardRows}

	var bar *progressbar.ProgressBar
	if !*quiet && isTerminal(stderr) {
		bar = progressbar.NewOptions(len(inputs),
			progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription("ingest"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetWidth(24),
			progressbar.OptionClearOnFinish(),
		)
	}
	done, skipped := 0, 0
	opt.Progress = func(p shard.Progress) {
		done++
		if p.Skipped {
			skipped++
		}
		if bar != nil {
			bar.Describe("ingest " + shortName(p.Input))
			bar.Add(1)
			return
		}
		if *quiet {
			return
		}
		switch {
		case p.Err != nil:
			fmt.Fprintf(stderr, "ingest   [%d/%d] %s: FAILED\n", done, len(inputs), p.Input)
		case p.Skipped:
			fmt.Fprintf(stderr, "ingest   [%d/%d] %s: done before, skipped (%d rows)\n", done, len(inputs), p.Input, p.Rows)
		case p.Format == shard.FormatDefinition:
			fmt.Fprintf(stderr, "ingest   [%d/%d] %s: instrument definitions\n", done, len(inputs), p.Input)
		default:
			fmt.Fprintf(stderr, "ingest   [%d/%d] %s: %s, %d rows in %s (%.2fs)\n",
				done, len(inputs), p.Input, p.Format, p.Rows, plural(p.Shards, "shard"), p.Elapsed.Seconds())
		}
	}
	start := time.Now()
	ds, err := shard.Ingest(ctx, inputs, *out, opt)
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		return err
	}
	defer ds.Close()
	el := time.Since(start)
	m := ds.Manifest
	var events, bytes int64
	for _, s := range m.Sources {
		events += s.Events
	}
	for _, s := range m.Shards {
		bytes += s.Bytes
	}
	fmt.Fprintf(stdout, "dataset  %s: %d rows in %s (%.1f MB), %s, %s (%d skipped)\n",
		*out, m.Rows, plural(len(m.Shards), "shard"), float64(bytes)/1e6, plural(len(m.Instruments), "instrument"),
		plural(len(inputs), "input"), skipped)
	fmt.Fprintf(stdout, "time     %.2fs, %s events/s\n", el.Seconds(), si(float64(events)/el.Seconds()))
	fmt.Fprintf(stdout, "\nnext     gallop data inspect %s\n", *out)
	return nil
}

func dataInspect(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gallop data inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	noVerify := fs.Bool("no-verify", false, "do not rehash the shards")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: gallop data inspect [-no-verify] <dataset>\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagErr(err)
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "gallop data inspect: want one dataset directory, got %d arguments\n\n", fs.NArg())
		fs.Usage()
		return errUsage
	}
	ds, err := shard.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer ds.Close()
	m := ds.Manifest
	w := stdout
	names := m.Features.Names
	fmt.Fprintf(w, "dataset   %s (%s v%d)\n", ds.Dir, m.Format, m.Version)
	fmt.Fprintf(w, "rows      %d in %s from %s\n", m.Rows, plural(len(m.Shards), "shard"), plural(len(m.Sources), "input"))
	fmt.Fprintf(w, "time      %s .. %s\n", fmtNs(m.StartNs), fmtNs(m.EndNs))
	if len(names) > 4 {
		fmt.Fprintf(w, "features  %d (%s, ..., %s): %s\n", m.Features.Count, strings.Join(names[:3], ", "), names[len(names)-1], m.Features.Doc)
	} else {
		fmt.Fprintf(w, "features  %d (%s)\n", m.Features.Count, strings.Join(names, ", "))
	}
	fmt.Fprintf(w, "labels    FI-2010, θ = %g tick, horizons %s events\n", m.Labels.Theta, strings.ReplaceAll(joinInts(m.Labels.Horizons), ",", ", "))

	fmt.Fprintln(w, "\ninstruments")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "id\tsymbol\ttick\ttick from\trows\tfirst\tlast\t")
	for _, in := range m.Instruments {
		fmt.Fprintf(tw, "%d\t%s\t%g\t%s\t%d\t%s\t%s\t\n", in.ID, in.Symbol, float64(in.Tick)/book.PriceScale,
			in.TickSource, in.Rows, fmtNs(in.StartNs), fmtNs(in.EndNs))
	}
	tw.Flush()

	fmt.Fprintln(w, "\nlabel balance (share of labelled rows)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "horizon\t%s\tunlabelled\t\n", strings.Join(feature.ClassNames, "\t"))
	for _, h := range m.Labels.Horizons {
		var c [4]int64
		for _, s := range m.Shards {
			sc := s.Classes[shard.LabelColumn(h)]
			for i := range c {
				c[i] += sc[i]
			}
		}
		n := max(c[0]+c[1]+c[2], 1)
		fmt.Fprintf(tw, "k=%d\t%.1f%%\t%.1f%%\t%.1f%%\t%d\t\n", h,
			100*float64(c[0])/float64(n), 100*float64(c[1])/float64(n), 100*float64(c[2])/float64(n), c[3])
	}
	tw.Flush()

	fmt.Fprintln(w, "\ninputs")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "name\tformat\tevents\trows\tsha256")
	for _, s := range m.Sources {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", s.Name, s.Format, s.Events, s.Rows, short(s.SHA256))
	}
	tw.Flush()

	var status []shard.ShardStatus
	if !*noVerify {
		status = ds.Check()
	}
	fmt.Fprintln(w, "\nshards")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "file\trows\tsymbol\tsha256\tstatus")
	bad := 0
	for i, s := range m.Shards {
		st := "not checked"
		if status != nil {
			st = status[i].String()
			if status[i] != shard.ShardOK {
				bad++
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", s.File, s.Rows, s.Symbol, short(s.SHA256), st)
	}
	tw.Flush()
	switch {
	case status == nil:
		return nil
	case bad == 0:
		fmt.Fprintf(w, "\nverify    OK: %d shards match their SHA-256\n", len(m.Shards))
		return nil
	}
	fmt.Fprintf(w, "\nverify    %d of %d shards changed or missing\n", bad, len(m.Shards))
	return ds.Verify()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

func fmtNs(ns int64) string {
	return time.Unix(0, ns).UTC().Format("2006-01-02T15:04:05.000Z")
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}

// shortName is the last path element of an input.
func shortName(s string) string {
	if i := strings.LastIndexAny(s, `/\`); i >= 0 {
		return s[i+1:]
	}
	return s
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, errors.New("want positive integers separated by commas")
		}
		out = append(out, n)
	}
	return out, nil
}
