//go:build linux

package main

import "testing"

func TestKernelAtLeast(t *testing.T) {
	for _, tc := range []struct {
		rel  string
		want bool
	}{
		{"6.6.0", true}, {"6.18.44-fc-v1272", true}, {"6.5.13-amd64", false}, {"7.0", true},
		{"5.15.0-91-generic", false}, {"6.6-rc1", true}, {"", false}, {"garbage", false},
	} {
		if got := kernelAtLeast(tc.rel, 6, 6); got != tc.want {
			t.Errorf("kernelAtLeast(%q, 6, 6) = %v", tc.rel, got)
		}
	}
}
