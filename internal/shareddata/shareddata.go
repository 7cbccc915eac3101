// Package shareddata finds the project's real market-data samples
// (shared/data, beside the repository root or inside it) for tests and
// benchmarks, which skip when the samples are absent.
package shareddata

import (
	"os"
	"path/filepath"
	"testing"
)

// Find returns shared/data/sub if it holds a file matching pattern (a glob
// relative to it), looking beside the repository root (the directory holding
// go.mod, found from the working directory) and inside it, or "" if not.
func Find(sub, pattern string) string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
	for _, d := range []string{
		filepath.Join(dir, "..", "shared", "data", sub),
		filepath.Join(dir, "shared", "data", sub),
	} {
		if m, _ := filepath.Glob(filepath.Join(d, pattern)); len(m) > 0 {
			return d
		}
	}
	return ""
}

// Dir is Find for a test: it skips tb when the samples are absent.
func Dir(tb testing.TB, sub, pattern string) string {
	tb.Helper()
	d := Find(sub, pattern)
	if d == "" {
		tb.Skipf("sample data not found (../shared/data/%s/%s)", sub, pattern)
	}
	return d
}
