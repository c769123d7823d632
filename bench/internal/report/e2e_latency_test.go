package report

import (
	"strings"
	"testing"

	"github.com/espxdp/espxdp/bench/internal/harness"
)

// TestLatencyColumns: the loss-free rate table shows each row's latency
// percentiles at 90 % of the NDR with the load achieved and the sample
// count, "–" where a row has no latency (NDR 0, or no samples), and
// explains how the figures were taken.
func TestLatencyColumns(t *testing.T) {
	rep := netSynthetic()
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Kind != harness.KindE2E || r.Op != "decrypt" {
			continue
		}
		switch r.Size {
		case 1420:
			r.Metrics = append(r.Metrics, metrics("lat-load-Mpps", 0.27, "Mpps", "lat-load-%ndr", 90.0, "%", "lat-samples", 4000.0, "",
				"lat-p50-us", 12.5, "µs", "lat-p99-us", 48.5, "µs", "lat-max-us", 310.0, "µs")...)
		case 64:
			// A latency trial that read nothing: no percentiles.
			r.Metrics = append(r.Metrics, metrics("lat-load-Mpps", 0.27, "Mpps", "lat-load-%ndr", 89.6, "%", "lat-samples", 0.0, "")...)
		}
	}
	var b strings.Builder
	if err := Markdown(&b, rep, "go run ./bench -suite e2e", "", nil); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| trials | latency p50 / p99 / max µs | at % of NDR | latency samples |",
		"| decrypt | 1 | 1420 | 0.300 | 3.41 | 0.350 | 3.98 | 0.200 | 0.500 | 9 | 12.5 / 48.5 / 310 | 90 | 4000 |",
		"| decrypt | 1 | 64 | 0.300 | 3.41 | 0.350 | 3.98 | 0.200 | 0.500 | 9 | – | 90 | 0 |",
		"| encrypt | 1 | 64 | 0 | 0 | 0.350 | 3.98 | 0.200 | 0.500 | 9 | – | – | – |",
		"Latency: one more trial at 90 % of the NDR",
		"CLOCK_MONOTONIC timestamp",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(md, "%!") {
		t.Error("a format verb went wrong in the report")
	}
}
