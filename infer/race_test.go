//go:build race

package infer

// Under the race detector sync.Pool drops items at random, so Forward may
// allocate, and GoMLX's Go backend fails checkptr (pointer arithmetic in
// its matmul), so the parity test skips.
func init() { raceEnabled = true }
