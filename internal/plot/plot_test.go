package plot

import (
	"encoding/xml"
	"math"
	"strings"
	"testing"
)

func TestSVGIsWellFormedAndScaled(t *testing.T) {
	c := &Chart{Title: "loss <vs> lr", LogX: true, Series: []Series{
		{Name: "loss", X: []float64{1e-5, 1e-4, 1e-3, 1e-2}, Y: []float64{1, 0.5, math.NaN(), 2}},
	}, Markers: []Marker{{X: 1e-4, Label: "valley"}}}
	var sb strings.Builder
	if err := c.SVG(&sb); err != nil {
		t.Fatal(err)
	}
	s := sb.String()
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		if _, err := d.Token(); err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("not well-formed XML: %v\n%s", err, s)
			}
			break
		}
	}
	// The NaN breaks the line into two pieces; log ticks are powers of ten.
	if strings.Count(s, " M") != 2 || !strings.Contains(s, "1e-05") || !strings.Contains(s, "loss &lt;vs&gt; lr") {
		t.Fatalf("unexpected SVG:\n%s", s)
	}
}
