package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// helpedCommands returns the command names `espxdp --help` lists.
func helpedCommands(t *testing.T) map[string]bool {
	t.Helper()
	code, out, errs := runCLI(t, "--help")
	if code != exitOK {
		t.Fatalf("--help: exit %d: %s", code, errs)
	}
	listed := map[string]bool{}
	in := false
	for _, line := range strings.Split(out, "\n") {
		switch {
		case line == "commands:":
			in = true
		case in && strings.HasPrefix(line, "  "):
			// "  show sa       summary": the name is the words before
			// the two-space gap.
			name, _, ok := strings.Cut(strings.TrimSpace(line), "  ")
			if !ok {
				t.Fatalf("help line without a summary: %q", line)
			}
			listed[name] = true
		case in:
			in = false
		}
	}
	return listed
}

// TestHelpListsEveryCommand: the help comes from the table, every entry
// has a purpose, its -h exits 0 with a usage line and an example, and
// the table and help agree.
func TestHelpListsEveryCommand(t *testing.T) {
	listed := helpedCommands(t)
	if len(listed) != len(commands) {
		t.Errorf("help lists %d commands, the table has %d: %v", len(listed), len(commands), listed)
	}
	for _, c := range commands {
		if !listed[c.name] {
			t.Errorf("help does not list %q", c.name)
		}
		if c.summary == "" || c.example == "" || c.run == nil {
			t.Errorf("%q: summary, example and run are required", c.name)
		}
		if c.name == "help" {
			continue // help -h is the list, checked below
		}
		args := append(strings.Fields(c.name), "-h")
		code, out, errs := runCLI(t, args...)
		if code != exitOK {
			t.Errorf("%s -h: exit %d, stderr %s", c.name, code, errs)
		}
		for _, want := range []string{"usage: espxdp " + c.name, "example:", c.summary} {
			if !strings.Contains(out, want) {
				t.Errorf("%s -h: stdout lacks %q:\n%s", c.name, want, out)
			}
		}
		if strings.Contains(c.synopsis, "--") && c.name != "help" && !strings.Contains(out, "flags:") {
			t.Errorf("%s -h lists no flags:\n%s", c.name, out)
		}
		// help COMMAND says the same.
		code, out2, _ := runCLI(t, append([]string{"help"}, strings.Fields(c.name)...)...)
		if code != exitOK || out2 != out {
			t.Errorf("help %s: exit %d, output differs from -h:\n%s", c.name, code, out2)
		}
	}
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		if code, out, _ := runCLI(t, args...); code != exitOK || !strings.Contains(out, "commands:") {
			t.Errorf("%v: exit %d\n%s", args, code, out)
		}
	}
	// Group words print their subcommands.
	if code, out, _ := runCLI(t, "sa", "-h"); code != exitOK || !strings.Contains(out, "add, update, del, alloc-spi, release-spi or reload") {
		t.Errorf("sa -h: exit %d\n%s", code, out)
	}
	if code, _, errs := runCLI(t, "sa"); code != exitUsage || !strings.Contains(errs, "sa: missing subcommand (add, update, del, alloc-spi, release-spi or reload)") {
		t.Errorf("sa: exit %d\n%s", code, errs)
	}
	if code, _, errs := runCLI(t, "help", "nope"); code != exitUsage || !strings.Contains(errs, `no command "nope"`) {
		t.Errorf("help nope: exit %d\n%s", code, errs)
	}
}

// TestSubcommandUsageError: a usage error names the command's own usage,
// not the whole table.
func TestSubcommandUsageError(t *testing.T) {
	code, _, errs := runCLI(t, "sa", "del", "--spi", "1")
	if code != exitUsage || !strings.Contains(errs, "usage: espxdp sa del --direction") || strings.Contains(errs, "commands:") {
		t.Errorf("exit %d\n%s", code, errs)
	}
}

// TestSocketErrorSaysWhatToDo: a client command without a gateway says
// how to start one or where to point --socket.
func TestSocketErrorSaysWhatToDo(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	code, _, errs := runCLI(t, "show", "stats", "--socket", sock, "--timeout", "200ms")
	if code != exitFailure || !strings.Contains(errs, "espxdp run --config") || !strings.Contains(errs, "--socket") {
		t.Errorf("exit %d\n%s", code, errs)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, errs := runCLI(t, args...)
		if code != exitOK {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
		for _, want := range []string{"espxdp ", "commit:", "go:", "go1.", "kernel:", "AF_XDP:", "XDP multi-buffer:", "BTF:"} {
			if !strings.Contains(out, want) {
				t.Errorf("%v: output lacks %q:\n%s", args, want, out)
			}
		}
	}
	code, out, _ := runCLI(t, "version", "--json")
	var b buildInfo
	if err := json.Unmarshal([]byte(out), &b); code != exitOK || err != nil || b.GoVersion == "" || b.Kernel.AFXDP == "" {
		t.Errorf("version --json: exit %d, %v: %s", code, err, out)
	}
}

// docCommand finds `espxdp WORD [WORD]` in code: WORD is lower-case
// letters and dashes (flags start with a dash and end the match).
var docCommand = regexp.MustCompile(`(?:^|[\s/"'(])espxdp\s+([a-z][a-z-]*)(?:\s+([a-z][a-z-]*))?(?:[\s"'),;]|$)`)

// docCode returns the code of a markdown file: fenced blocks and inline
// `spans`. Blocks fenced as ```text are program output, not commands,
// and are left out.
func docCode(md string) []string {
	var out []string
	fenced, output := false, false
	inline := regexp.MustCompile("`([^`]+)`")
	for _, line := range strings.Split(md, "\n") {
		if fence, ok := strings.CutPrefix(strings.TrimSpace(line), "```"); ok {
			fenced = !fenced
			output = fenced && strings.TrimSpace(fence) == "text"
			continue
		}
		if fenced {
			if !output {
				out = append(out, line)
			}
			continue
		}
		for _, m := range inline.FindAllStringSubmatch(line, -1) {
			out = append(out, m[1])
		}
	}
	return out
}

// TestDocsUseListedCommands: every `espxdp ...` command that README.md,
// docs/*.md and examples/*/README.md show in code is one `espxdp
// --help` lists.
func TestDocsUseListedCommands(t *testing.T) {
	listed := helpedCommands(t)
	groups := map[string]bool{}
	for name := range listed {
		if w := strings.Fields(name); len(w) == 2 {
			groups[w[0]] = true
		}
	}
	files := []string{"../../README.md"}
	for _, pat := range []string{"../../docs/*.md", "../../examples/*/README.md"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	seen := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, code := range docCode(string(b)) {
			for _, m := range docCommand.FindAllStringSubmatch(code, -1) {
				seen++
				first, second := m[1], m[2]
				name := first
				if groups[first] {
					name = first + " " + second
				}
				if !listed[name] {
					t.Errorf("%s: `espxdp %s` is not a command espxdp --help lists (in %q)", f, name, strings.TrimSpace(code))
				}
			}
		}
	}
	if seen < 5 {
		t.Errorf("found only %d espxdp commands in the docs: is the parser broken?", seen)
	}
}

func TestDocCommandParser(t *testing.T) {
	md := "text espxdp nothing\n```\nespxdp run --config x\nsudo espxdp show sa --watch\n```\nsee `go run ./cmd/espxdp pcap decrypt --in a` and `espxdp frob`\n```text\nespxdp gateway output\n```\n`espxdp v1.2`\n"
	var got []string
	for _, c := range docCode(md) {
		for _, m := range docCommand.FindAllStringSubmatch(c, -1) {
			got = append(got, strings.TrimSpace(m[1]+" "+m[2]))
		}
	}
	want := []string{"run", "show sa", "pcap decrypt", "frob"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestVersionFromLinker(t *testing.T) {
	defer func(v, c string) { linkVersion, linkCommit = v, c }(linkVersion, linkCommit)
	linkVersion, linkCommit = "v9.8.7", "abc123"
	_, out, _ := runCLI(t, "version")
	if !strings.HasPrefix(out, "espxdp v9.8.7\n") || !strings.Contains(out, "commit:           abc123\n") {
		t.Errorf("ldflags version not shown:\n%s", out)
	}
}

func TestRunLogFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--config", "x.yaml", "--log-format", "xml"}, `--log-format "xml": want text or json`},
		{[]string{"run", "--config", "x.yaml", "--log-level", "loud"}, `--log-level "loud": want debug, info, warn or error`},
	} {
		code, _, errs := runCLI(t, tc.args...)
		if code != exitUsage || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d\n%s", tc.args, code, errs)
		}
	}
	for _, f := range []string{"text", "json"} {
		for _, lv := range []string{"debug", "info", "warn", "error", "WARN"} {
			l, err := newLogger(io.Discard, f, lv)
			if err != nil || l == nil {
				t.Errorf("newLogger(%s, %s): %v", f, lv, err)
			}
		}
	}
	var b strings.Builder
	l, _ := newLogger(&b, "json", "warn")
	l.Info("hidden")
	l.Warn("shown", "k", 1)
	var m map[string]any
	if err := json.Unmarshal([]byte(b.String()), &m); err != nil || m["msg"] != "shown" || strings.Contains(b.String(), "hidden") {
		t.Errorf("json logger at warn: %v %q", err, b.String())
	}
}
