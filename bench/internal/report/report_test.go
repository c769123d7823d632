package report

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/espxdp/espxdp/bench/internal/harness"
)

func metrics(kv ...any) []harness.Metric {
	var ms []harness.Metric
	for i := 0; i+3 <= len(kv); i += 3 {
		ms = append(ms, harness.Metric{Name: kv[i].(string), Value: kv[i+1].(float64), Unit: kv[i+2].(string)})
	}
	return ms
}

// synthetic returns a report with made-up numbers: aes128gcm16 meets the
// 1420-byte seal target but misses the 64-byte open one; one crypto
// entry allocates.
func synthetic() *harness.Report {
	rep := &harness.Report{
		Machine: harness.Machine{CPU: "Test CPU 9000", Flags: []string{"aes", "avx2"}, Cores: 4, Kernel: "Linux 6.0", GoVersion: "go1.26", GOMAXPROCS: 4, GOARCH: "amd64", Date: "2026-01-01T00:00:00Z", Commit: "abc123"},
		Config:  harness.Config{DurationNs: 1e8, Seed: 7},
	}
	add := func(r harness.Result) { rep.Results = append(rep.Results, r) }
	for _, op := range []string{"seal", "open"} {
		add(harness.Result{Suite: "crypto", Kind: harness.KindCrypto, Transform: "aes128gcm16", Op: op, Size: 64,
			Metrics: metrics("MB/s", 500.0, "MB/s", "ns/pkt", 128.0, "ns", "raw-MB/s", 640.0, "MB/s", "raw-ns/pkt", 100.0, "ns", "x-raw", 0.78, "x", "ns-over-raw", 28.0, "ns", "allocs/op", 0.0, "allocs/op")})
		add(harness.Result{Suite: "crypto", Kind: harness.KindCrypto, Transform: "aes128gcm16", Op: op, Size: 1420,
			Metrics: metrics("MB/s", 4500.0, "MB/s", "ns/pkt", 315.0, "ns", "raw-MB/s", 4600.0, "MB/s", "raw-ns/pkt", 308.0, "ns", "x-raw", 0.97, "x", "ns-over-raw", 7.0, "ns", "allocs/op", 0.0, "allocs/op")})
		add(harness.Result{Suite: "crypto", Kind: harness.KindCrypto, Transform: "null-sha1", Op: op, Size: 64,
			Metrics: metrics("MB/s", 300.0, "MB/s", "ns/pkt", 213.0, "ns", "allocs/op", 1.0, "allocs/op")})
	}
	for i, n := range []int{1, 1000, 100000} {
		add(harness.Result{Suite: "sa", Kind: harness.KindLookup, SAs: n, Op: "lookup", Metrics: metrics("ns/op", 3.0+float64(i*10), "ns")})
	}
	add(harness.Result{Suite: "sa", Kind: harness.KindVsESP, Transform: "aes128gcm16", Size: 1420, Metrics: metrics("ns/pkt", 700.0, "ns", "esp-ns/pkt", 650.0, "ns", "x-esp", 0.93, "x")})
	for _, m := range []string{"shared", "sharded"} {
		add(harness.Result{Suite: "sa", Kind: harness.KindModes, Mode: m, Workers: 1, Metrics: metrics("ns/pkt", 700.0, "ns", "Mpps", 1.4, "Mpps", "drops", 0.0, "packets")})
		add(harness.Result{Suite: "sa", Kind: harness.KindModes, Mode: m, Workers: 2, Metrics: metrics("ns/pkt", 400.0, "ns", "Mpps", 2.5, "Mpps", "drops", 3.0, "packets")})
	}
	add(harness.Result{Suite: "sa", Kind: harness.KindSkew, Mode: "sharded", Dist: "elephant", SAs: 1, Workers: 2, Metrics: metrics("ns/pkt", 700.0, "ns", "Mpps", 1.4, "Mpps", "busy-workers", 1.0, "workers")})
	return rep
}

func TestTargets(t *testing.T) {
	ts := Targets(synthetic())
	got := map[string]bool{}
	for _, x := range ts {
		got[x.What] = x.Met
	}
	want := map[string]bool{
		"aes128gcm16 seal at 1420 B ≥ 0.9× raw":                  true,
		"aes128gcm16 open at 1420 B ≥ 0.9× raw":                  true,
		"aes128gcm16 seal at 64 B ≤ 25 ns over raw":              false,
		"aes128gcm16 open at 64 B ≤ 25 ns over raw":              false,
		"0 allocs/op in Seal and Open, every transform and size": false,
		"processor ≥ 0.9× esp alone, aes128gcm16 1420 B":         true,
	}
	if len(got) != len(want) {
		t.Errorf("targets %v, want %v", got, want)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("target %q: met=%v (present %v), want %v", k, g, ok, v)
		}
	}
	for _, x := range ts {
		if strings.HasPrefix(x.What, "0 allocs") && !strings.Contains(x.Measured, "null-sha1") {
			t.Errorf("allocation target does not name the culprit: %q", x.Measured)
		}
	}
}

func TestMarkdown(t *testing.T) {
	rep := synthetic()
	plots, err := Plots(rep)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := Markdown(&b, rep, "go run ./bench -x", "A note.", plots); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, s := range []string{
		"`go run ./bench -x`",
		"\n\nA note.\n\n",
		"| CPU | Test CPU 9000 |",
		"| CPU flags (crypto) | aes avx2 |",
		"| commit | abc123 |",
		"| aes128gcm16 seal at 64 B ≤ 25 ns over raw | 28.0 ns | **NOT met** |",
		"| aes128gcm16 seal at 1420 B ≥ 0.9× raw | 0.970× | met |",
		"| aes128gcm16 | 1420 | 4500 | 315 | 4600 | 308 | 0.970 | 7.00 | 0 |",
		"| null-sha1 | 64 | 300 | 213 | – | – | – | – | 1.00 |",
		"| 100000 | 23.0 | – |",
		"| sharded | 2 | 400 | 2.50 | 1.79× | 3 | – |",
		"| sharded | elephant | 1 | 2 | 1 | 700 | 1.40 | – |",
		"![aes128gcm16](crypto-aes128gcm16.svg)",
		"![SAD lookup](sad-lookup.svg)",
		"![concurrency modes](modes.svg)",
	} {
		if !strings.Contains(md, s) {
			t.Errorf("report lacks %q", s)
		}
	}
	if strings.Contains(md, "## SA: anti-replay") {
		t.Error("replay section without replay results")
	}
}

func TestPlots(t *testing.T) {
	plots, err := Plots(synthetic())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"crypto-aes128gcm16.svg", "crypto-null-sha1.svg", "sad-lookup.svg", "modes.svg"} {
		svg, ok := plots[name]
		if !ok {
			t.Errorf("no plot %s", name)
			continue
		}
		if root := svgRoot(t, svg); root != "svg" {
			t.Errorf("%s: root %q", name, root)
		}
	}
	if len(plots) != 4 {
		t.Errorf("%d plots, want 4", len(plots))
	}
	// The lookup plot's legend and the transform's title are in the SVG.
	if !bytes.Contains(plots["sad-lookup.svg"], []byte("SAD.Lookup")) || !bytes.Contains(plots["crypto-aes128gcm16.svg"], []byte("raw seal")) {
		t.Error("plot text missing")
	}
	empty, err := Plots(&harness.Report{})
	if err != nil || len(empty) != 0 {
		t.Errorf("plots of an empty report: %d, %v", len(empty), err)
	}
}

func svgRoot(t *testing.T, b []byte) string {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(b))
	root := ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return root
		}
		if err != nil {
			t.Errorf("invalid XML: %v", err)
			return ""
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
}

func TestXY(t *testing.T) {
	rs := []harness.Result{
		{Size: 1420, Metrics: metrics("MB/s", 3.0, "MB/s")},
		{Size: 64, Metrics: metrics("MB/s", 1.0, "MB/s")},
		{Size: 512}, // no metric
		{Size: 0, Metrics: metrics("MB/s", 5.0, "MB/s")}, // not on a log axis
		{Size: 9000, Metrics: metrics("MB/s", 0.0, "MB/s")},
	}
	pts := xy(rs, func(r *harness.Result) int { return r.Size }, "MB/s")
	if len(pts) != 2 || pts[0].X != 64 || pts[0].Y != 1 || pts[1].X != 1420 || pts[1].Y != 3 {
		t.Errorf("xy = %v", pts)
	}
}

func TestNum(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 0.5: "0.500", 3.14159: "3.14", 42.42: "42.4", 1234.5: "1234", -7.5: "-7.50"} {
		if got := num(v); got != want {
			t.Errorf("num(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, synthetic(), "cmd", ""); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"REPORT.md", "modes.svg", "sad-lookup.svg", "crypto-aes128gcm16.svg"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if err := Write(filepath.Join(dir, "missing"), synthetic(), "", ""); err == nil {
		t.Error("Write into a missing directory succeeded")
	}
}

// TestPlotsDegenerate: one point on a log axis (a single size, a single
// SA count, a single worker count) and results without the plotted
// metric must neither panic nor produce an empty plot.
func TestPlotsDegenerate(t *testing.T) {
	rep := &harness.Report{Results: []harness.Result{
		{Kind: harness.KindLookup, SAs: 1, Metrics: metrics("ns/op", 3.5, "ns")},
		{Kind: harness.KindCrypto, Transform: "aes128gcm16", Op: "seal", Size: 64, Metrics: metrics("MB/s", 500.0, "MB/s")},
		{Kind: harness.KindModes, Mode: "shared", Workers: 1, Metrics: metrics("ns/pkt", 700.0, "ns")},
		{Kind: harness.KindCrypto, Transform: "null-sha1", Op: "seal", Size: 64, Metrics: metrics("allocs/op", 0.0, "allocs/op")},
	}}
	plots, err := Plots(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sad-lookup.svg", "crypto-aes128gcm16.svg", "modes.svg"} {
		if root := svgRoot(t, plots[name]); root != "svg" {
			t.Errorf("%s: root %q", name, root)
		}
	}
	if _, ok := plots["crypto-null-sha1.svg"]; ok {
		t.Error("plot without any point")
	}
	var b bytes.Buffer
	if err := Markdown(&b, rep, "", "", plots); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "crypto-null-sha1.svg") {
		t.Error("report links a plot that does not exist")
	}
}
