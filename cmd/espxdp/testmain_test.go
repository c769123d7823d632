package main

import (
	"os"
	"strings"
	"testing"
)

// daemonArgsEnv makes the test binary run `espxdp` with these arguments
// (separated by \x1f) instead of the tests: TestFailClosedSurvivesSIGKILL
// starts the daemon that way, as its own process, to kill it.
const daemonArgsEnv = "ESPXDP_TEST_DAEMON_ARGS"

// TestMain lets a test run this package's test binary as the espxdp
// command, e.g. to kill -9 a daemon: with ESPXDP_TEST_RUN_MAIN=1 on the
// binary's own arguments, with daemonArgsEnv on the arguments it holds.
func TestMain(m *testing.M) {
	if os.Getenv("ESPXDP_TEST_RUN_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	if a := os.Getenv(daemonArgsEnv); a != "" {
		os.Exit(run(strings.Split(a, "\x1f"), os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
