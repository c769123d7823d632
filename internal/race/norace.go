//go:build !race

// Package race tells tests whether the race detector is on. Allocation
// counts are meaningless under -race (the detector allocates, and
// sync.Pool drops items at random), so zero-allocation tests skip there;
// .ci/run runs them again without -race.
package race

// Enabled reports whether the race detector is on.
const Enabled = false
