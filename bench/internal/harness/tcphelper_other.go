//go:build !linux

package harness

// RunHelper returns false: the wg suite's TCP endpoint helper exists
// only on Linux.
func RunHelper() bool { return false }
