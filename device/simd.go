package device

import (
	"os"

	"github.com/gallop-dev/gallop/internal/procfile"
)

// SIMDPenalty reports whether this binary's CPU kernels are known to run
// slowly on this CPU: a GOEXPERIMENT=simd build on an Intel CPU. GoMLX's Go
// backend (compute v0.1.2) leaves the upper halves of the vector registers
// dirty after its AVX-512 kernels, and Go's scalar float code, which is
// legacy SSE, then pays Intel's AVX-SSE transition penalty
// (golang/go#80835): on a Xeon, math.Exp took 78% of a GRU-64 train step,
// which ran 4.8× slower than the same step built without simd
// (BENCHMARKS.md). AMD CPUs have no such penalty. gallop's own inference
// kernels clear the registers themselves, and so, since the seventh
// session, do the backend's matmul kernels in gallop's copy
// (third_party/compute/GALLOP.md, change 6); that has not been measured on
// an Intel CPU yet, so the warning stays until it is.
func SIMDPenalty() bool {
	if !simdBuild {
		return false
	}
	b, err := os.ReadFile("/proc/cpuinfo")
	return err == nil && procfile.Field(b, "vendor_id") == "GenuineIntel"
}
