package manifest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/gallop-dev/gallop/manifest"
)

// A training run records its manifest at start and again at the end; a
// later replay checks that it can reproduce the run.
func Example() {
	runDir, err := os.MkdirTemp("", "run-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(runDir)

	m, err := manifest.Collect(context.Background(), ".")
	if err != nil {
		log.Fatal(err)
	}
	m.RunID = filepath.Base(runDir)
	if err := m.SetConfig(map[string]any{"lr": 3e-4, "wandb_api_key": "not-in-run-json"}); err != nil {
		log.Fatal(err)
	}
	m.Seeds = map[string]uint64{"init": 42, "shuffle": 7}
	m.Data.SampleOrderSHA256 = manifest.HashSampleOrder([]int{3, 1, 2, 0})
	if err := m.Write(runDir); err != nil { // status "running"
		log.Fatal(err)
	}

	// ... train ...

	m.Outcome.Metrics = manifest.Metrics{"val_loss": 0.125}
	m.Finish(manifest.StatusOK, 0)
	if err := m.Write(runDir); err != nil {
		log.Fatal(err)
	}

	rec, err := manifest.Load(runDir)
	if err != nil {
		log.Fatal(err)
	}
	var cfg map[string]any
	json.Unmarshal(rec.Config, &cfg)
	fmt.Println("status:", rec.Outcome.Status, "val_loss:", rec.Outcome.Metrics["val_loss"])
	fmt.Println("api key:", cfg["wandb_api_key"])
	fmt.Println("differences after reload:", len(manifest.Diff(rec, m)))
	// A replay would first check manifest.Compatible(rec, current), where
	// current comes from Collect with its Data filled in.
	// Output:
	// status: ok val_loss: 0.125
	// api key: [redacted]
	// differences after reload: 0
}

func ExampleDiff() {
	a := &manifest.Manifest{
		RunID:  "run-1",
		Config: json.RawMessage(`{"optimizer":{"lr":0.001},"batch":64}`),
		Seeds:  map[string]uint64{"init": 1},
		Toolchain: manifest.Toolchain{GoVersion: "go1.26.8", Modules: []manifest.Module{
			{Path: "github.com/gomlx/gomlx", Version: "v0.28.2"},
		}},
	}
	b := &manifest.Manifest{
		RunID:  "run-2",
		Config: json.RawMessage(`{"optimizer":{"lr":0.0003},"batch":64}`),
		Seeds:  map[string]uint64{"init": 2},
		Toolchain: manifest.Toolchain{GoVersion: "go1.26.8", Modules: []manifest.Module{
			{Path: "github.com/gomlx/gomlx", Version: "v0.29.0"},
		}},
	}
	manifest.FormatDiff(os.Stdout, manifest.Diff(a, b))
	// Output:
	// SECTION    FIELD                                    A        B
	// toolchain  modules[github.com/gomlx/gomlx].version  v0.28.2  v0.29.0
	// config     optimizer.lr                             0.001    0.0003
	// seeds      init                                     1        2
}
