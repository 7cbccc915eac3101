package train_test

import (
	"fmt"

	"github.com/gallop-dev/gallop/train"
)

// The one-cycle schedule warms up for a quarter of the steps, then anneals.
func ExampleOneCycle() {
	s := train.OneCycle{Max: 1e-3, Total: 100}
	for _, step := range []int64{0, 25, 50, 100} {
		fmt.Printf("step %3d: lr %.2e\n", step, s.LR(step))
	}
	// Output:
	// step   0: lr 4.00e-05
	// step  25: lr 1.00e-03
	// step  50: lr 7.50e-04
	// step 100: lr 4.00e-09
}

// Macro-F1 against the majority-class baseline, as gallop reports it.
func ExampleConfusion() {
	c := train.NewConfusion(3)
	for _, p := range [][2]int{{0, 0}, {1, 1}, {1, 1}, {1, 0}, {2, 2}, {2, 1}} {
		c.Add(p[0], p[1]) // true, predicted
	}
	base := c.Majority()
	fmt.Printf("model    accuracy %.3f macro-F1 %.3f\n", c.Accuracy(), c.MacroF1())
	fmt.Printf("majority accuracy %.3f macro-F1 %.3f\n", base.Accuracy(), base.MacroF1())
	// Output:
	// model    accuracy 0.667 macro-F1 0.667
	// majority accuracy 0.500 macro-F1 0.222
}
