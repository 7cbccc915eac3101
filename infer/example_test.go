package infer_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/gallop-dev/gallop/infer"
)

// A tiny hand-made model: one feature (the last return), a window of two
// events, and a hidden layer that splits the newest return into its positive
// and negative parts. It says "up" after a rise, "down" after a fall and
// "flat" otherwise.
func Example() {
	m := &infer.Model{
		Spec: infer.Spec{
			Arch:       infer.ArchMLP,
			Window:     2,
			Features:   []string{"ret"},
			Classes:    []string{"down", "flat", "up"},
			Layers:     []int{2, 2, 3},
			Activation: infer.ActivationReLU,
			Meta:       map[string]string{"horizon": "1"},
		},
		Mean: []float32{0},
		Std:  []float32{1},
		W: [][]float32{
			{0, 0, // older event: ignored
				1, -1}, // newest event: relu(ret), relu(-ret)
			{0, 0, 1, // relu(ret) votes up
				1, 0, 0}, // relu(-ret) votes down
		},
		B: [][]float32{{0, 0}, {0, 0.1, 0}}, // flat wins ties
	}

	dir, err := os.MkdirTemp("", "gallop-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	export := filepath.Join(dir, "model")
	if err := infer.Save(export, m); err != nil {
		log.Fatal(err)
	}

	loaded, err := infer.Load(export)
	if err != nil {
		log.Fatal(err)
	}
	mlp, err := infer.NewMLP(loaded)
	if err != nil {
		log.Fatal(err)
	}
	stream := mlp.NewStream()
	logits := make([]float32, mlp.NumClasses())
	for i, ret := range []float32{0.5, -0.2, 0, 0.3} {
		if !stream.Push([]float32{ret}, logits) {
			fmt.Printf("event %d: warming up\n", i+1)
			continue
		}
		best := 0
		for c, v := range logits {
			if v > logits[best] {
				best = c
			}
		}
		fmt.Printf("event %d: %s\n", i+1, loaded.Classes[best])
	}
	// Output:
	// event 1: warming up
	// event 2: down
	// event 3: flat
	// event 4: up
}
