// Package plot draws small line charts as standalone SVG, for run reports
// and the learning-rate finder.
package plot

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// Series is one line.
type Series struct {
	Name  string
	X, Y  []float64
	Color string // CSS color; default picks from a palette
	Dots  bool   // draw points instead of a line
}

// Marker is a vertical line at X with a label.
type Marker struct {
	X     float64
	Label string
}

// Chart is a line chart.
type Chart struct {
	Title          string
	XLabel, YLabel string
	LogX           bool
	Width, Height  int // pixels; default 640×320
	Series         []Series
	Markers        []Marker
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// SVG writes the chart as an <svg> element.
func (c *Chart) SVG(w io.Writer) error {
	W, H := c.Width, c.Height
	if W == 0 {
		W = 640
	}
	if H == 0 {
		H = 320
	}
	const l, r, t, b = 64, 16, 28, 44
	tx := func(x float64) float64 {
		if c.LogX {
			return math.Log10(x)
		}
		return x
	}
	x0, x1, y0, y1 := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for i := range s.X {
			x, y := tx(s.X[i]), s.Y[i]
			if !finite(x) || !finite(y) {
				continue
			}
			x0, x1, y0, y1 = math.Min(x0, x), math.Max(x1, x), math.Min(y0, y), math.Max(y1, y)
		}
	}
	if x0 > x1 {
		x0, x1, y0, y1 = 0, 1, 0, 1
	}
	if x1 == x0 {
		x1 = x0 + 1
	}
	if y1 == y0 {
		y1 = y0 + 1
	}
	pad := (y1 - y0) * 0.05
	y0, y1 = y0-pad, y1+pad
	px := func(x float64) float64 { return l + (tx(x)-x0)/(x1-x0)*float64(W-l-r) }
	py := func(y float64) float64 { return float64(H-b) - (y-y0)/(y1-y0)*float64(H-t-b) }
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", W, H, W, H)
	fmt.Fprintf(&sb, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&sb, `<text x="%d" y="16" font-size="13" font-weight="bold">%s</text>`+"\n", l, html.EscapeString(c.Title))
	// Axes and ticks.
	fmt.Fprintf(&sb, `<path d="M%d %d V%d H%d" stroke="#444" fill="none"/>`+"\n", l, t, H-b, W-r)
	for i := 0; i <= 4; i++ {
		y := y0 + (y1-y0)*float64(i)/4
		fmt.Fprintf(&sb, `<text x="%d" y="%.1f" text-anchor="end">%s</text><path d="M%d %.1f H%d" stroke="#eee"/>`+"\n", l-4, py(y)+4, fmtNum(y), l+1, py(y), W-r)
	}
	for i := 0; i <= 5; i++ {
		xv := x0 + (x1-x0)*float64(i)/5
		label := xv
		if c.LogX {
			label = math.Pow(10, xv)
		}
		xp := l + (xv-x0)/(x1-x0)*float64(W-l-r)
		fmt.Fprintf(&sb, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", xp, H-b+14, fmtNum(label))
	}
	fmt.Fprintf(&sb, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", (l+W-r)/2, H-8, html.EscapeString(c.XLabel))
	fmt.Fprintf(&sb, `<text x="14" y="%d" transform="rotate(-90 14 %d)" text-anchor="middle">%s</text>`+"\n", (t+H-b)/2, (t+H-b)/2, html.EscapeString(c.YLabel))
	for i, s := range c.Series {
		col := s.Color
		if col == "" {
			col = palette[i%len(palette)]
		}
		var d strings.Builder
		pen := false
		for j := range s.X {
			if !finite(tx(s.X[j])) || !finite(s.Y[j]) {
				pen = false
				continue
			}
			if s.Dots {
				fmt.Fprintf(&sb, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>`, px(s.X[j]), py(s.Y[j]), col)
				continue
			}
			if pen {
				fmt.Fprintf(&d, " L%.1f %.1f", px(s.X[j]), py(s.Y[j]))
			} else {
				fmt.Fprintf(&d, " M%.1f %.1f", px(s.X[j]), py(s.Y[j]))
				pen = true
			}
		}
		if d.Len() > 0 {
			fmt.Fprintf(&sb, `<path d="%s" stroke="%s" stroke-width="1.5" fill="none"/>`+"\n", d.String(), col)
		}
		fmt.Fprintf(&sb, `<rect x="%d" y="%d" width="10" height="3" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", W-r-150, t+6+14*i, col, W-r-136, t+10+14*i, html.EscapeString(s.Name))
	}
	for _, m := range c.Markers {
		if !finite(tx(m.X)) {
			continue
		}
		fmt.Fprintf(&sb, `<path d="M%.1f %d V%d" stroke="#888" stroke-dasharray="4 3"/><text x="%.1f" y="%d">%s</text>`+"\n", px(m.X), t, H-b, px(m.X)+3, t+10, html.EscapeString(m.Label))
	}
	sb.WriteString("</svg>\n")
	_, err := io.WriteString(w, sb.String())
	return err
}

func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case v == 0:
		return "0"
	case a >= 1e4 || a < 1e-2:
		return fmt.Sprintf("%.0e", v)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3g", v)
}
