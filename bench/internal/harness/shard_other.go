//go:build !linux

package harness

// threadCPU is not implemented here: no per-core figures.
func threadCPU() (int64, bool) { return 0, false }
