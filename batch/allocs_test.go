package batch

import "testing"

func testingAllocs(f func()) float64 { return testing.AllocsPerRun(50, f) }
