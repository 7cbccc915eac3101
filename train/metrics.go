package train

import (
	"fmt"
	"strings"
)

// Confusion is a confusion matrix: Counts[true][predicted].
type Confusion struct {
	Counts [][]int64
}

// NewConfusion returns an empty matrix for c classes.
func NewConfusion(c int) *Confusion {
	m := &Confusion{Counts: make([][]int64, c)}
	for i := range m.Counts {
		m.Counts[i] = make([]int64, c)
	}
	return m
}

// Add counts one prediction.
func (m *Confusion) Add(truth, pred int) { m.Counts[truth][pred]++ }

// Total is the number of predictions counted.
func (m *Confusion) Total() int64 {
	var n int64
	for _, r := range m.Counts {
		for _, v := range r {
			n += v
		}
	}
	return n
}

// Accuracy is the share of correct predictions.
func (m *Confusion) Accuracy() float64 {
	var ok int64
	for i := range m.Counts {
		ok += m.Counts[i][i]
	}
	return float64(ok) / float64(max(1, m.Total()))
}

// F1 returns the F1 score of each class (0 where undefined).
func (m *Confusion) F1() []float64 {
	c := len(m.Counts)
	f := make([]float64, c)
	for k := 0; k < c; k++ {
		var tp, fp, fn int64
		tp = m.Counts[k][k]
		for j := 0; j < c; j++ {
			if j != k {
				fp += m.Counts[j][k]
				fn += m.Counts[k][j]
			}
		}
		if d := 2*tp + fp + fn; d > 0 {
			f[k] = 2 * float64(tp) / float64(d)
		}
	}
	return f
}

// MacroF1 is the unweighted mean of the per-class F1 scores.
func (m *Confusion) MacroF1() float64 {
	var s float64
	f := m.F1()
	for _, v := range f {
		s += v
	}
	return s / float64(len(f))
}

// Majority returns the confusion matrix of always predicting the most
// frequent true class of m: the baseline a model must beat.
func (m *Confusion) Majority() *Confusion {
	best, bestN := 0, int64(-1)
	for i, r := range m.Counts {
		var n int64
		for _, v := range r {
			n += v
		}
		if n > bestN {
			best, bestN = i, n
		}
	}
	b := NewConfusion(len(m.Counts))
	for i, r := range m.Counts {
		for _, v := range r {
			b.Counts[i][best] += v
		}
	}
	return b
}

// String prints the matrix with class names.
func (m *Confusion) Format(names []string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%10s", "true\\pred")
	for _, n := range names {
		fmt.Fprintf(&sb, " %9s", n)
	}
	sb.WriteByte('\n')
	for i, r := range m.Counts {
		fmt.Fprintf(&sb, "%10s", names[i])
		for _, v := range r {
			fmt.Fprintf(&sb, " %9d", v)
		}
		sb.WriteByte('\n')
	}
	return sb.String()
}
