// Package testenv lets tests state what they need from the machine.
//
// A test that needs privileges or a tool calls RequirePrivileged or
// RequireCommand first. Outside CI a missing requirement skips the test
// with a message saying what is missing; in CI (environment variable
// CI=true) it fails the test instead, because a skipped privileged test
// there would hide that the code was never exercised.
package testenv

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Linux capability numbers (linux/capability.h).
const (
	capNetAdmin = 12
	capNetRaw   = 13
	capSysAdmin = 21
	capBPF      = 39
)

// InCI reports whether the tests run in CI, i.e. CI=true in the
// environment.
func InCI() bool {
	return os.Getenv("CI") == "true"
}

// Unavailable skips t with reason, or fails it when InCI.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s (CI=true: this test must run in CI, not skip)", reason)
		return
	}
	t.Skipf("skipping: %s", reason)
}

// RequirePrivileged makes sure the process may load XDP programs, create
// network namespaces and AF_XDP sockets: it must be root or have
// CAP_BPF (or CAP_SYS_ADMIN), CAP_NET_ADMIN and CAP_NET_RAW in its
// effective set. Otherwise the test is skipped, or failed in CI.
func RequirePrivileged(t testing.TB) {
	t.Helper()
	if missing := missingPrivileges(); missing != "" {
		Unavailable(t, "needs root or "+missing)
	}
}

// RequireCommand makes sure the executable name is in PATH; otherwise the
// test is skipped, or failed in CI. It returns the full path.
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, fmt.Sprintf("needs command %q in PATH: %v", name, err))
	}
	return path
}

// missingPrivileges returns "" when privileged, else a description of the
// missing capabilities.
func missingPrivileges() string {
	caps, err := effectiveCaps()
	if err != nil {
		if os.Geteuid() == 0 {
			return ""
		}
		return fmt.Sprintf("CAP_BPF, CAP_NET_ADMIN and CAP_NET_RAW (reading capabilities: %v)", err)
	}
	has := func(c uint) bool { return caps&(1<<c) != 0 }
	var missing []string
	if !has(capBPF) && !has(capSysAdmin) {
		missing = append(missing, "CAP_BPF")
	}
	if !has(capNetAdmin) {
		missing = append(missing, "CAP_NET_ADMIN")
	}
	if !has(capNetRaw) {
		missing = append(missing, "CAP_NET_RAW")
	}
	if len(missing) == 0 {
		return ""
	}
	return strings.Join(missing, ", ") + " (missing from the effective capability set)"
}

// effectiveCaps reads CapEff from /proc/self/status.
func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no CapEff line in /proc/self/status")
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers and readers,
// for capturing the log of code that runs goroutines.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
