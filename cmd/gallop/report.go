package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/gallop-dev/gallop/device"
	"github.com/gallop-dev/gallop/internal/atomicfile"
	"github.com/gallop-dev/gallop/internal/plot"
	"github.com/gallop-dev/gallop/manifest"
	"github.com/gallop-dev/gallop/profile"
	"github.com/gallop-dev/gallop/train"
)

func lrFindChart(r *train.LRFindResult) *plot.Chart {
	return &plot.Chart{Title: "learning-rate finder", XLabel: "learning rate", YLabel: "loss", LogX: true,
		Series: []plot.Series{
			{Name: "loss", X: r.LR, Y: r.Loss, Color: "#bbb"},
			{Name: "smoothed", X: r.LR, Y: r.Smoothed},
		},
		Markers: []plot.Marker{{X: r.Valley, Label: "valley " + fmtLR(r.Valley)}, {X: r.Steepest, Label: "steepest"}}}
}

// writeLRFind saves the finder's sweep as lr_find.json and lr_find.svg.
func writeLRFind(dir string, r *train.LRFindResult) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "lr_find.json"), data, 0o644); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, "lr_find.svg"), 0o644, lrFindChart(r).SVG)
}

type metricLine struct {
	Step     int64    `json:"step"`
	Split    string   `json:"split"`
	Loss     *float64 `json:"loss"`
	LR       *float64 `json:"lr"`
	Accuracy *float64 `json:"accuracy"`
	MacroF1  *float64 `json:"macro_f1"`
	LogLoss  *float64 `json:"log_loss"`
	Final    bool     `json:"final"` // the end-of-run evaluation
}

func readMetrics(path string) ([]metricLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []metricLine
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		var m metricLine
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// writeReport renders report.html for a run directory: training and
// validation curves, the learning-rate schedule, the LR-finder sweep (if the
// run has one), the profile verdict and the final metrics.
func writeReport(dir string) error {
	ms, err := readMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		return err
	}
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].Step < ms[j].Step })
	var ts, tl, lr, ema, vs, vloss, vf1, vacc []float64
	var avg float64
	for _, m := range ms {
		switch {
		case m.Split == "train" && m.Loss != nil:
			if len(tl) == 0 {
				avg = *m.Loss
			}
			avg = 0.98*avg + 0.02**m.Loss
			ts, tl, ema = append(ts, float64(m.Step)), append(tl, *m.Loss), append(ema, avg)
			if m.LR != nil {
				lr = append(lr, *m.LR)
			}
		case m.Split == "val" && m.LogLoss != nil:
			vs, vloss = append(vs, float64(m.Step)), append(vloss, *m.LogLoss)
			vf1, vacc = append(vf1, *m.MacroF1), append(vacc, *m.Accuracy)
		}
	}
	var b bytes.Buffer
	title := filepath.Base(dir)
	fmt.Fprintf(&b, "<!doctype html><html><head><meta charset=\"utf-8\"><title>gallop run %s</title>"+
		"<style>body{font-family:sans-serif;max-width:720px;margin:2em auto;color:#222}td,th{padding:2px 10px;text-align:left}pre{background:#f6f6f6;padding:8px}</style></head><body>\n", html.EscapeString(title))
	fmt.Fprintf(&b, "<h1>Run %s</h1>\n", html.EscapeString(title))
	if man, err := manifest.Load(dir); err == nil {
		fmt.Fprintf(&b, "<p>status <b>%s</b>; code %s%s; host %s (%d CPUs)</p>\n<table>", html.EscapeString(man.Outcome.Status),
			html.EscapeString(shortRev(man.Code.Commit)), map[bool]string{true: " (dirty)", false: ""}[man.Code.Dirty], html.EscapeString(man.Host.CPUModel), man.Host.NumCPU)
		keys := make([]string, 0, len(man.Outcome.Metrics))
		for k := range man.Outcome.Metrics {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "<tr><th>%s</th><td>%.4f</td></tr>", html.EscapeString(k), man.Outcome.Metrics[k])
		}
		b.WriteString("</table>\n")
	}
	charts := []*plot.Chart{
		{Title: "training loss", XLabel: "step", YLabel: "cross-entropy", Series: []plot.Series{
			{Name: "per step", X: ts, Y: tl, Color: "#ccc"}, {Name: "EWMA 0.98", X: ts, Y: ema}, {Name: "validation", X: vs, Y: vloss, Dots: len(vs) < 3}}},
		{Title: "validation metrics", XLabel: "step", YLabel: "", Series: []plot.Series{
			{Name: "macro-F1", X: vs, Y: vf1, Dots: len(vs) < 3}, {Name: "accuracy", X: vs, Y: vacc, Dots: len(vs) < 3}}},
		{Title: "learning-rate schedule", XLabel: "step", YLabel: "lr", Series: []plot.Series{{Name: "lr", X: ts[:len(lr)], Y: lr}}},
	}
	for _, c := range charts {
		if err := c.SVG(&b); err != nil {
			return err
		}
	}
	if data, err := os.ReadFile(filepath.Join(dir, "lr_find.json")); err == nil {
		var r train.LRFindResult
		if err := json.Unmarshal(data, &r); err == nil {
			lrFindChart(&r).SVG(&b)
			fmt.Fprintf(&b, "<p>LR finder: valley %s, steepest %s, min/10 %s (%s)</p>\n", fmtLR(r.Valley), fmtLR(r.Steepest), fmtLR(r.MinLoss10), html.EscapeString(r.Stopped))
		}
	}
	if rep, err := profile.Load(filepath.Join(dir, "profile.json")); err == nil {
		fmt.Fprintf(&b, "<h2>Profile</h2><pre>%s</pre>\n", html.EscapeString(rep.String()))
	}
	b.WriteString("</body></html>\n")
	return atomicfile.WriteFile(filepath.Join(dir, "report.html"), b.Bytes(), 0o644)
}

func shortRev(r string) string {
	if len(r) > 12 {
		return r[:12]
	}
	if r == "" {
		return "unknown"
	}
	return r
}

const lrFindUsage = `usage: gallop lr-find [train flags]

Sweeps the learning rate exponentially from 1e-7 to 10 (or until the loss
diverges) on the configured data and model, plots loss against learning rate
and suggests a value (fastai's valley; also the steepest descent). Writes
lr_find.json and lr_find.svg into a new run directory. 'gallop train
--lr-find' does the same and then trains at the suggestion.

Flags:
`

func cmdLRFind(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("lr-find", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, lrFindUsage); fs.PrintDefaults() }
	steps := fs.Int("sweep", 100, "steps of the sweep")
	plugin := fs.String("pjrt-plugin", "", "path of the XLA PJRT plugin for --device gpu")
	trainFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return flagErr(err)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg.resolve()
	spec, err := device.Parse(cfg.Device)
	if err != nil {
		return err
	}
	p, err := prepareData(cfg, nil)
	if err != nil {
		return err
	}
	defer p.close()
	backend, _, err := device.Open(spec, device.Options{Plugin: *plugin})
	if err != nil {
		return err
	}
	r, err := lrFind(cfg, p, backend, *steps)
	if err != nil {
		return err
	}
	dir, err := newRunDir(cfg.RunsDir)
	if err != nil {
		return err
	}
	if err := writeLRFind(dir, r); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "lr-find  %d steps, %s\n  valley    %s  (suggested)\n  steepest  %s\n  min/10    %s\nplot     %s\n",
		len(r.LR), r.Stopped, fmtLR(r.Valley), fmtLR(r.Steepest), fmtLR(r.MinLoss10), filepath.Join(dir, "lr_find.svg"))
	return nil
}
