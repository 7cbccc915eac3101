// Package gocpu constructs GoMLX's pure-Go CPU backend the way gallop runs
// it everywhere (the CLI, examples and tests).
package gocpu

import (
	"os"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/gobackend"
)

// Config is the Go backend configuration gallop uses: operations run one at
// a time (each still uses every core inside, e.g. a matmul), because the
// backend's default of running independent operations concurrently can
// deadlock in its worker pool (v0.1.2: a worker that goes to sleep adds
// capacity without waking the waiters, and waiters are woken one at a time).
// That costs ~35% on the MLP step (BENCHMARKS.md); set GALLOP_GO_BACKEND to
// another configuration (e.g. "ops_parallel", or "" for the backend's
// default) to trade that safety for speed.
const Config = "ops_sequential"

// New returns the Go backend with Config, or $GALLOP_GO_BACKEND when set.
func New() (compute.Backend, error) {
	cfg := Config
	if v, ok := os.LookupEnv("GALLOP_GO_BACKEND"); ok {
		cfg = v
	}
	return gobackend.New(cfg)
}
