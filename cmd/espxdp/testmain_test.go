package main

import (
	"os"
	"testing"
)

// TestMain lets a test run this package's test binary as the espxdp
// command (ESPXDP_TEST_RUN_MAIN=1), e.g. to kill -9 a daemon.
func TestMain(m *testing.M) {
	if os.Getenv("ESPXDP_TEST_RUN_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
