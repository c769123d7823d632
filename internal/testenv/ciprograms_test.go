package testenv

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// programPackages maps every program that the project's code or tests
// execute to the Debian package that provides it. A new program run by
// a test needs an entry here and, unless its package is on every fresh
// machine (basePackages), an entry in .ci/run's package list.
var programPackages = map[string]string{
	"cat":     "coreutils",
	"charon":  "strongswan-charon", // /usr/lib/ipsec/charon, with the plugins it loads (see .ci/run)
	"false":   "coreutils",
	"sleep":   "coreutils",
	"true":    "coreutils",
	"git":     "git",
	"ip":      "iproute2",
	"iperf3":  "iperf3",
	"nft":     "nftables",
	"ping":    "iputils-ping",
	"python3": "python3-scapy", // /usr/bin/python3 with scapy and cryptography
	"setpriv": "util-linux",
	"sh":      "dash",
	"swanctl": "strongswan-swanctl",
	"sysctl":  "procps",
	"tcpdump": "tcpdump",
	"tshark":  "tshark",
}

// basePackages are on every fresh machine of the project's kind (the Go
// image: Debian with git, coreutils and util-linux, Essential); everything else .ci/run must
// install.
var basePackages = []string{"coreutils", "dash", "git", "util-linux"}

// notPrograms are literals the scan matches that are not programs:
// testenv's own test of a missing command, and the argument of the embed
// example's run function (a mode name).
var notPrograms = []string{"espxdp-no-such-command", "rot13"}

// execCall finds the program name of a call that runs or requires a
// program: exec.Command("x", exec.CommandContext(ctx, "x", ns.Exec(ctx,
// "x", RequireCommand(t, "x", exec.LookPath("x"), and the tests' run(ns,
// "x" helpers; and absolute paths of programs ("/usr/bin/x").
var (
	execCall = regexp.MustCompile(`(?:\b(?:exec\.)?Command\(|\bLookPath\(|(?:\bCommandContext|\.Exec|\bRequireCommand|(?:^|[^.\w])run)\((?:[^"(),]|\([^"()]*\))*,\s*)"([a-z][a-z0-9_.+-]*)"`)
	absPath  = regexp.MustCompile(`"/(?:usr/)?(?:s?bin|lib/ipsec)/([a-z][a-z0-9_.+-]*)"`)
)

// TestCIInstallsEveryProgram fails when code in the repository executes
// a program that .ci/run does not install: on a new machine such a test
// would fail in CI (or, worse, skip outside it). It reads the sources,
// so it sees every program a test may run, not only those it ran here.
func TestCIInstallsEveryProgram(t *testing.T) {
	root := moduleRoot(t)
	ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	if err != nil {
		t.Fatalf("reading .ci/run: %v", err)
	}
	installed := ciPackages(string(ci))
	if len(installed) == 0 {
		t.Fatal(".ci/run has no pkgs=(...) list of Debian packages")
	}
	used := map[string][]string{} // program -> files
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || d.Name() == "ciprograms_test.go" {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		for _, re := range []*regexp.Regexp{execCall, absPath} {
			for _, m := range re.FindAllStringSubmatch(string(src), -1) {
				if !slices.Contains(notPrograms, m[1]) {
					used[m[1]] = append(used[m[1]], rel)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ip", "ping", "tshark", "charon"} {
		if used[want] == nil {
			t.Errorf("the scan found no use of %q: the patterns no longer match the code", want)
		}
	}
	progs := make([]string, 0, len(used))
	for p := range used {
		progs = append(progs, p)
	}
	sort.Strings(progs)
	for _, p := range progs {
		pkg, ok := programPackages[p]
		switch {
		case !ok:
			t.Errorf("%s runs %q, which programPackages does not map to a Debian package: add it here and to .ci/run", firstFile(used[p]), p)
		case !slices.Contains(basePackages, pkg) && !installed[pkg]:
			t.Errorf("%s runs %q (Debian package %s), which .ci/run does not install: a new machine lacks it", firstFile(used[p]), p, pkg)
		}
	}
}

func firstFile(files []string) string {
	sort.Strings(files)
	return files[0]
}

// ciPackages returns the packages of the first pkgs=( ... ) array in a
// shell script.
func ciPackages(script string) map[string]bool {
	m := regexp.MustCompile(`(?s)\bpkgs=\(([^)]*)\)`).FindStringSubmatch(script)
	out := map[string]bool{}
	if m == nil {
		return out
	}
	for _, f := range strings.Fields(m[1]) {
		out[f] = true
	}
	return out
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

func TestCIPackagesParse(t *testing.T) {
	got := ciPackages("x=1\npkgs=(a b\n  c)\nother=(d)\n")
	if len(got) != 3 || !got["a"] || !got["c"] || got["d"] {
		t.Fatalf("ciPackages = %v", got)
	}
	for _, tc := range []struct{ src, want string }{
		{`exec.Command("ip", "link")`, "ip"},
		{`n.nsE.Exec(context.Background(), "sysctl", "-w")`, "sysctl"},
		{`run(n.hostA, "ping", "-n")`, "ping"},
		{`testenv.RequireCommand(t, "nft")`, "nft"},
		{`exec.LookPath("nft")`, "nft"},
		{`exec.CommandContext(ctx, "tshark", args...)`, "tshark"},
	} {
		m := execCall.FindStringSubmatch(tc.src)
		if m == nil || m[1] != tc.want {
			t.Errorf("%s: got %v, want %q", tc.src, m, tc.want)
		}
	}
	for _, src := range []string{
		`t.Run("ping", func(t *testing.T) {`,     // a subtest's name
		`exec.Command(os.Args[0], "run", "--x")`, // the program is the first argument
	} {
		if m := execCall.FindStringSubmatch(src); m != nil {
			t.Errorf("%s: %q taken for a program", src, m[1])
		}
	}
}
