//go:build !goexperiment.simd

package device

const simdBuild = false
