package harness_test

import (
	"os"
	"testing"

	"github.com/espxdp/espxdp/bench/internal/harness"
)

// TestMain lets the test binary serve as the wg suite's TCP endpoint
// helper (harness.RunHelper), as bench's main does.
func TestMain(m *testing.M) {
	if harness.RunHelper() {
		return
	}
	os.Exit(m.Run())
}
