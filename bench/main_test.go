package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/espxdp/espxdp/bench/internal/harness"
)

// TestQuickRun runs the harness end to end on a tiny subset and checks
// what it wrote.
func TestQuickRun(t *testing.T) {
	dir := t.TempDir()
	var stderr bytes.Buffer
	args := []string{"-quick", "-transforms", "aes128gcm16,aes128ctr-sha256", "-sizes", "64,1420",
		"-sas", "1,100", "-workers", "1,2", "-duration", "5ms", "-out", dir}
	if err := run(args, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "done") {
		t.Errorf("no progress on stderr: %q", stderr.String())
	}
	f, err := os.Open(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := harness.ReadJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	m := rep.Machine
	if m.CPU == "" || m.Cores < 1 || m.GOMAXPROCS < 1 || !strings.HasPrefix(m.GoVersion, "go") || m.Date == "" || m.Commit == "" || m.Kernel == "" {
		t.Errorf("machine description incomplete: %+v", m)
	}
	if !rep.Config.Quick || rep.Config.DurationNs != 5e6 {
		t.Errorf("config not recorded: %+v", rep.Config)
	}
	// Expected entries and units.
	wantUnit := map[string]string{
		"ns/pkt": "ns", "raw-ns/pkt": "ns", "MB/s": "MB/s", "raw-MB/s": "MB/s", "x-raw": "x",
		"allocs/op": "allocs/op", "ns/op": "ns", "esp-ns/pkt": "ns", "x-esp": "x", "Mpps": "Mpps",
		"packets": "packets", "drops": "packets",
	}
	for _, r := range rep.Results {
		for _, mt := range r.Metrics {
			if mt.Unit == "" {
				t.Errorf("%s %s: metric %s without unit", r.Kind, r.Transform, mt.Name)
			}
			if u, ok := wantUnit[mt.Name]; ok && u != mt.Unit {
				t.Errorf("%s: metric %s in %q, want %q", r.Kind, mt.Name, mt.Unit, u)
			}
		}
	}
	positive := func(r harness.Result, names ...string) {
		t.Helper()
		for _, n := range names {
			v, ok := r.Get(n)
			if !ok || !(v > 0) {
				t.Errorf("%s %s %s %d: %s = %v (present %v), want > 0", r.Kind, r.Transform, r.Op, r.Size, n, v, ok)
			}
		}
	}
	count := map[string]int{}
	for _, r := range rep.Results {
		count[r.Kind]++
		switch r.Kind {
		case harness.KindCrypto:
			positive(r, "MB/s", "ns/pkt", "packets")
			if r.Transform == "aes128gcm16" {
				positive(r, "raw-ns/pkt", "raw-MB/s", "x-raw")
				if x, _ := r.Get("x-raw"); x > 5 {
					t.Errorf("%s %d: ours/raw %v is not sane", r.Op, r.Size, x)
				}
			} else if _, ok := r.Get("x-raw"); ok {
				t.Errorf("%s has a raw ratio but no baseline exists", r.Transform)
			}
			if a, ok := r.Get("allocs/op"); !ok || a < 0 {
				t.Errorf("%s %s: allocs/op %v %v", r.Transform, r.Op, a, ok)
			}
		case harness.KindLookup, harness.KindReplay:
			positive(r, "ns/op")
		case harness.KindVsESP:
			positive(r, "ns/pkt", "esp-ns/pkt", "x-esp")
		case harness.KindModes, harness.KindSkew:
			positive(r, "ns/pkt", "Mpps", "packets")
			if d, ok := r.Get("drops"); !ok || d < 0 {
				t.Errorf("%s %s: drops %v %v", r.Kind, r.Mode, d, ok)
			}
		}
	}
	want := map[string]int{
		harness.KindCrypto: 2 * 2 * 2, // transforms × sizes × {seal, open}
		harness.KindLookup: 2,
		harness.KindReplay: 2,
		harness.KindVsESP:  3,
		harness.KindModes:  3 * 2,
		harness.KindSkew:   4,
	}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%d results of kind %s, want %d", count[k], k, n)
		}
	}

	md, err := os.ReadFile(filepath.Join(dir, "REPORT.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"## Machine", "## Targets", "| transform | bytes | MB/s |", "| aes128gcm16 | 1420 |",
		"## SA: SAD lookup", "| 100 |", "## SA: concurrency modes", "| sharded | 2 |", "## SA: skew"} {
		if !bytes.Contains(md, []byte(s)) {
			t.Errorf("REPORT.md lacks %q", s)
		}
	}
	links := regexp.MustCompile(`!\[[^\]]*\]\(([^)]+\.svg)\)`).FindAllSubmatch(md, -1)
	if len(links) != 4 { // 2 crypto, lookup, modes
		t.Errorf("%d plots linked, want 4", len(links))
	}
	for _, l := range links {
		checkSVG(t, filepath.Join(dir, string(l[1])))
	}
}

// checkSVG checks that path is well-formed XML with an <svg> root.
func checkSVG(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Error(err)
		return
	}
	dec := xml.NewDecoder(bytes.NewReader(b))
	root := ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Errorf("%s: invalid XML: %v", path, err)
			return
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		t.Errorf("%s: root element %q, want svg", path, root)
	}
}

// TestFrom re-renders a report from a results.json.
func TestFrom(t *testing.T) {
	dir := t.TempDir()
	rep := harness.Report{Results: []harness.Result{{Suite: "sa", Kind: harness.KindLookup, SAs: 10,
		Metrics: []harness.Metric{{Name: "ns/op", Value: 4.5, Unit: "ns"}}}}}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "in.json")
	if err := os.WriteFile(in, js.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := run([]string{"-from", in, "-out", out, "-note", "Re-rendered."}, io.Discard); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(out, "REPORT.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(md, []byte("| 10 | 4.50 | – |")) || !bytes.Contains(md, []byte("Re-rendered.")) {
		t.Errorf("report:\n%s", md)
	}
	checkSVG(t, filepath.Join(out, "sad-lookup.svg"))
	if err := os.WriteFile(in, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-from", in, "-out", out}, io.Discard); err == nil {
		t.Error("bad JSON accepted")
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-suite", "nope"},
		{"-sizes", "64,x"},
		{"-sizes", "0"},
		{"-transforms", "aes999gcm"},
		{"-workers", ""},
		{"-duration", "0s"},
		{"extra"},
	} {
		dir := t.TempDir()
		err := run(append(args, "-out", dir), io.Discard)
		if err == nil {
			t.Errorf("run(%q) succeeded, want an error", args)
		}
		if _, serr := os.Stat(filepath.Join(dir, "results.json")); serr == nil {
			t.Errorf("run(%q) wrote results despite the error", args)
		}
	}
}
