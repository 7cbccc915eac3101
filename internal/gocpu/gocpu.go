// Package gocpu constructs GoMLX's pure-Go CPU backend the way gallop runs
// it everywhere (the CLI, examples and tests).
package gocpu

import (
	"os"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/gobackend"
)

// Config is the Go backend configuration gallop uses: independent
// operations run concurrently on the backend's workers, each of which may
// split its own work over them too (a matmul does). As published (compute
// v0.1.2) that deadlocked: operations running on workers waited for other
// workers to split their work; gallop's copy (third_party/compute,
// GALLOP.md) never waits for a worker, and TestParallelOpsDoNotDeadlock
// covers it. Set GALLOP_GO_BACKEND to another configuration (e.g.
// "ops_sequential", one operation at a time, 1.4-2× slower per step in
// BENCHMARKS.md; or "" for the backend's default, concurrent only while one
// program runs) to change it.
const Config = "ops_parallel"

// New returns the Go backend with Config, or $GALLOP_GO_BACKEND when set.
func New() (compute.Backend, error) {
	cfg := Config
	if v, ok := os.LookupEnv("GALLOP_GO_BACKEND"); ok {
		cfg = v
	}
	return newWith(cfg)
}

// newWith returns the Go backend with configuration cfg.
func newWith(cfg string) (compute.Backend, error) {
	return gobackend.New(cfg)
}
