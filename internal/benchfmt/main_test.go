package main

import (
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/espxdp/espxdp/esp
cpu: Test CPU 9000   
BenchmarkSeal/aes128gcm16/64-2     	  800000	       130.0 ns/op	 490.00 MB/s	       0 B/op	       0 allocs/op
BenchmarkSeal/aes128gcm16/1420-2   	  300000	       330.0 ns/op	4300.00 MB/s	       315.6 med-ns/op	      4500 med-MB/s	       0 B/op	       0 allocs/op
BenchmarkSeal/raw-aes128gcm16/64-2 	  900000	       128.0 ns/op	 500.00 MB/s	       0 B/op	       0 allocs/op
BenchmarkOpen/aes128gcm16/64-2     	  800000	       120.0 ns/op	 533.00 MB/s	      48 B/op	       1 allocs/op
BenchmarkOpen/aes128gcm16/1420-2   	  300000	       320.0 ns/op	4437.50 MB/s	       0 B/op	       0 allocs/op
BenchmarkOpen/memmove/64-2         	40000000	         3.0 ns/op	21000.00 MB/s	       0 B/op	       0 allocs/op
BenchmarkGCMRatio/aes128gcm16/seal/1420-2 	  300000	       700.0 ns/op	         5.0 ns-over-raw	       310.0 ours-ns/pkt	       305.0 raw-ns/pkt	         0.95 x-raw	       0 B/op	       0 allocs/op
BenchmarkGCMRatio/aes128gcm16/seal/1420-2 	  300000	       700.0 ns/op	        40.0 ns-over-raw	       350.0 ours-ns/pkt	       310.0 raw-ns/pkt	         0.80 x-raw	       0 B/op	       0 allocs/op
BenchmarkGCMRatio/aes128gcm16/seal/1420-2 	  300000	       700.0 ns/op	         7.0 ns-over-raw	       312.0 ours-ns/pkt	       305.0 raw-ns/pkt	         0.97 x-raw	       0 B/op	       0 allocs/op
BenchmarkGCMRatio/aes128gcm16/open/64-2 	  900000	       250.0 ns/op	        30.0 ns-over-raw	       130.0 ours-ns/pkt	       100.0 raw-ns/pkt	         0.77 x-raw	       0 B/op	       0 allocs/op
BenchmarkGCMRatio/aes256gcm16/open/64-2 	  900000	       250.0 ns/op	        30.0 ns-over-raw	       130.0 ours-ns/pkt	       100.0 raw-ns/pkt	         0.77 x-raw	       0 B/op	       0 allocs/op
--- FAIL: BenchmarkSomething/broken
BenchmarkSomething/broken
PASS
`

func TestParse(t *testing.T) {
	r, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if r.cpu != "Test CPU 9000" {
		t.Errorf("cpu = %q", r.cpu)
	}
	if got := r.order[0]; got != "BenchmarkSeal/aes128gcm16/64" {
		t.Errorf("first name = %q, want the GOMAXPROCS suffix stripped", got)
	}
	if v, ok := r.value("BenchmarkOpen/aes128gcm16/64", "allocs/op"); !ok || v != 1 {
		t.Errorf("allocs/op = %v, %v", v, ok)
	}
	// Three runs of the same benchmark: the median, not the mean or the last.
	if v, _ := r.value("BenchmarkGCMRatio/aes128gcm16/seal/1420", "x-raw"); v != 0.95 {
		t.Errorf("median x-raw = %v, want 0.95", v)
	}
	if n := len(r.runs["BenchmarkGCMRatio/aes128gcm16/seal/1420"]["ns-over-raw"]); n != 3 {
		t.Errorf("%d runs recorded, want 3", n)
	}
	if _, ok := r.runs["BenchmarkSomething/broken"]; ok {
		t.Error("a name printed without results was parsed as a result")
	}
}

func TestParseMalformed(t *testing.T) {
	if _, err := parse(strings.NewReader("BenchmarkX-2 100 5.0 ns/op 7\n")); err == nil {
		t.Error("odd value/unit fields accepted")
	}
	if _, err := parse(strings.NewReader("BenchmarkX-2 100 fast ns/op\n")); err == nil {
		t.Error("non-numeric value accepted")
	}
}

func TestRender(t *testing.T) {
	r, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := render(&out, r, "go test -bench X"); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{
		"CPU: `Test CPU 9000`",
		"Command: `go test -bench X`",
		"| transform | 64 B | 1420 B | allocs/op |",
		// Seal and Open MB/s per size (med-MB/s preferred to the
		// wall-clock MB/s when present); the worst allocs/op of the row.
		"| aes128gcm16 | 490 / 533 | 4500 / 4438 | 1 |",
		// A baseline with only Seal results at one size.
		"| raw-aes128gcm16 | 500 / – | – / – | 0 |",
		"| memmove | – / 21000 | – / – | 0 |",
		// Ratio rows: medians, the range over runs, the run count and the
		// verdict against the targets.
		"| aes128gcm16 | seal | 1420 | 312.0 | 305.0 | 7.0 [5.0, 40.0] | 0.950 [0.800, 0.970] | 3 | ≥ 0.9× raw: met |",
		"| aes128gcm16 | open | 64 | 130.0 | 100.0 | 30.0  | 0.770  | 1 | ≤ 25 ns over raw: **missed** |",
		// Targets apply to aes128gcm16 only.
		"| aes256gcm16 | open | 64 | 130.0 | 100.0 | 30.0  | 0.770  | 1 |  |",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q\n%s", want, s)
		}
	}
}
