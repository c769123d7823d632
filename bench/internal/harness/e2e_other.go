//go:build !linux

package harness

import "errors"

var errLinuxOnly = errors.New("harness: the e2e and wg suites need Linux")

// E2ESteps returns a single step that fails: the suite needs Linux.
func E2ESteps(Config) ([]suiteStep, func()) {
	return []suiteStep{{"e2e", func() ([]Result, error) { return nil, errLinuxOnly }}}, func() {}
}

// WGSteps returns a single step that fails: the suite needs Linux.
func WGSteps(Config) ([]suiteStep, func()) {
	return []suiteStep{{"wg", func() ([]Result, error) { return nil, errLinuxOnly }}}, func() {}
}

// PeersSteps returns a single step that fails: the suite needs Linux.
func PeersSteps(Config) ([]suiteStep, func()) {
	return []suiteStep{{"peers", func() ([]Result, error) { return nil, errLinuxOnly }}}, func() {}
}
