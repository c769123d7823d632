//go:build linux

package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const unitPath = "../../dist/espxdp@.service"

// unitKeys parses a systemd unit into section.key → values (a key may
// repeat).
func unitKeys(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value in a section: %q", path, n, line)
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	return out
}

// documentedCapabilities are the capability names of the table in
// docs/OPERATIONS.md (rows "| `CAP_X` | ... | yes |" in the section
// "Capabilities"; CAP_SYS_ADMIN for --netns is marked optional).
func documentedCapabilities(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(CAP_[A-Z_]+)` \\|.*\\| (required|only with --netns) \\|$")
	var out []string
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		if m[2] == "required" {
			out = append(out, m[1])
		}
	}
	slices.Sort(out)
	return out
}

// TestUnitCapabilities: the unit grants exactly the capabilities the
// daemon checks for (daemonCapabilities), which are the ones
// docs/OPERATIONS.md documents and TestRunWithoutRoot runs with.
func TestUnitCapabilities(t *testing.T) {
	keys := unitKeys(t, unitPath)
	var want []string
	for _, c := range daemonCapabilities {
		want = append(want, c.name)
	}
	slices.Sort(want)
	for _, k := range []string{"Service.AmbientCapabilities", "Service.CapabilityBoundingSet"} {
		if len(keys[k]) != 1 {
			t.Fatalf("%s appears %d times, want once", k, len(keys[k]))
		}
		got := strings.Fields(keys[k][0])
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
	if doc := documentedCapabilities(t); !slices.Equal(doc, want) {
		t.Errorf("docs/OPERATIONS.md documents %v, the daemon needs %v", doc, want)
	}
	var lower []string
	for _, c := range want {
		lower = append(lower, strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	got := slices.Clone(daemonCaps)
	slices.Sort(got)
	slices.Sort(lower)
	if !slices.Equal(got, lower) {
		t.Errorf("TestRunWithoutRoot runs with %v, want %v", got, lower)
	}
	for k, v := range map[string]string{
		"Service.NoNewPrivileges": "yes", "Service.ProtectSystem": "strict", "Service.ProtectHome": "yes",
		"Service.PrivateTmp": "yes", "Service.RuntimeDirectory": "espxdp/%i", "Service.StateDirectory": "espxdp/%i",
		"Service.LimitMEMLOCK": "infinity", "Service.User": "espxdp",
	} {
		if g := keys[k]; len(g) != 1 || g[0] != v {
			t.Errorf("%s = %v, want %s", k, g, v)
		}
	}
	exec := keys["Service.ExecStart"]
	if len(exec) != 1 || !strings.Contains(exec[0], "--socket /run/espxdp/%i/control.sock") || !strings.Contains(exec[0], " run --config /etc/espxdp/%i.yaml") {
		t.Errorf("ExecStart = %v: the socket must be in the RuntimeDirectory", exec)
	}
	// The flags ExecStart uses exist.
	for _, f := range regexp.MustCompile(`--[a-z-]+`).FindAllString(exec[0], -1) {
		if code, _, errs := runCLI(t, "run", f+"=x", "--config", "/nonexistent"); code == exitUsage && strings.Contains(errs, "flag provided but not defined") {
			t.Errorf("ExecStart uses %s, which espxdp run does not have", f)
		}
	}
}

// systemdAnalyze is optional: systemd is not something .ci/run should
// install, so TestUnitVerifies skips (even in CI) where it is missing.
const systemdAnalyze = "systemd-analyze"

// TestUnitVerifies runs systemd-analyze verify on an instance of the
// unit (ExecStart pointed at an existing binary) and fails on any
// warning about it.
func TestUnitVerifies(t *testing.T) {
	tool, err := exec.LookPath(systemdAnalyze)
	if err != nil {
		t.Skipf("%s not installed (optional; not a CI requirement): %v", systemdAnalyze, err)
	}
	b, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	inst := filepath.Join(dir, "espxdp@gw.service")
	if err := os.WriteFile(inst, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/espxdp", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"verify", inst}
	out, err := exec.Command(tool, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "espxdp@gw.service") {
			t.Errorf("systemd-analyze: %s", line)
		}
	}
}
