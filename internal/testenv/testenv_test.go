package testenv

import (
	"fmt"
	"os"
	"testing"
)

// recorder stands in for a testing.TB so the skip/fail decision can be
// observed without ending the real test.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
}

func TestUnavailableSkipsOutsideCI(t *testing.T) {
	t.Setenv("CI", "")
	r := &recorder{TB: t}
	Unavailable(r, "needs a unicorn")
	if !r.skipped || r.failed {
		t.Errorf("skipped %v failed %v, want a skip", r.skipped, r.failed)
	}
	if r.msg != "skipping: needs a unicorn" {
		t.Errorf("message %q", r.msg)
	}
}

func TestUnavailableFailsInCI(t *testing.T) {
	t.Setenv("CI", "true")
	r := &recorder{TB: t}
	Unavailable(r, "needs a unicorn")
	if r.skipped || !r.failed {
		t.Errorf("skipped %v failed %v, want a failure", r.skipped, r.failed)
	}
}

func TestRequireCommand(t *testing.T) {
	t.Setenv("CI", "true")
	r := &recorder{TB: t}
	RequireCommand(r, "espxdp-no-such-command")
	if !r.failed {
		t.Error("missing command did not fail in CI")
	}
	r = &recorder{TB: t}
	if path := RequireCommand(r, "sh"); r.failed || r.skipped || path == "" {
		t.Errorf("sh: path %q, failed %v, skipped %v", path, r.failed, r.skipped)
	}
}

func TestRequirePrivilegedMatchesCapabilities(t *testing.T) {
	caps, err := effectiveCaps()
	if err != nil {
		t.Fatalf("effectiveCaps: %v", err)
	}
	const need = 1<<capNetAdmin | 1<<capNetRaw
	privileged := caps&need == need && caps&(1<<capBPF|1<<capSysAdmin) != 0
	t.Setenv("CI", "")
	r := &recorder{TB: t}
	RequirePrivileged(r)
	if r.skipped == privileged {
		t.Errorf("capabilities %#x (privileged %v), but RequirePrivileged skipped=%v: %s", caps, privileged, r.skipped, r.msg)
	}
	if os.Geteuid() == 0 && caps == 0 && !r.skipped {
		t.Error("root without capabilities is not privileged")
	}
}
