//go:build race

package serve

// GoMLX's Go backend fails checkptr under the race detector (pointer
// arithmetic in its matmul), so the parity test skips.
func init() { raceEnabled = true }
