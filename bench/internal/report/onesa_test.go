package report

import (
	"strings"
	"testing"

	"github.com/espxdp/espxdp/bench/internal/harness"
)

// TestOneSASection renders one-SA rows: every mode's row with its speed-up
// over its 1-worker row, the stream's cells joined to it, the hand-off row
// labelled, the TCP table, and the plot.
func TestOneSASection(t *testing.T) {
	mk := func(mode, op, traffic, ingress string, w int, ms ...harness.Metric) harness.Result {
		return harness.Result{Suite: "e2e", Kind: harness.KindOneSA, Mode: mode, Op: op, Traffic: traffic, Ingress: ingress,
			Workers: w, Size: 1420, Metrics: ms}
	}
	m := func(n string, v float64) harness.Metric { return harness.Metric{Name: n, Value: v} }
	rep := &harness.Report{Results: []harness.Result{
		mk("ordered", "decrypt", harness.OneSAUDP, "spi", 1, m("Mpps", 0.2), m("Mpps-per-CPU", 0.4)),
		mk("ordered", "decrypt", harness.OneSAStream, "spi", 1, m("reordered%", 0), m("replay-drops", 0)),
		mk("ordered", "decrypt", harness.OneSAUDP, "spi", 2, m("Mpps", 0.3), m("busy-workers", 1), m("Mpps-per-CPU", 0.36)),
		mk("ordered", "decrypt", harness.OneSAStream, "spi", 2, m("reordered%", 0), m("replay-drops", 0), m("loss%", 0)),
		mk("sharded", "decrypt", harness.OneSAUDP, "spread", 2, m("Mpps", 0.05), m("handed-off", 1234)),
		mk("shared", "encrypt", harness.OneSAUDP, "spread", 2, m("Mpps", 0.25)),
		mk("shared", "encrypt", harness.OneSAStream, "spread", 2, m("reordered%", 38.5), m("seq-sent-twice", 0)),
		mk("shared", "", harness.OneSATCP, "", 2, m("Gbps", 0.4), m("retransmits", 812), m("bytes", 1<<27)),
	}}
	plots, err := Plots(rep)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := plots[plotOneSA]; !ok {
		t.Errorf("no %s among %d plots", plotOneSA, len(plots))
	}
	var b strings.Builder
	oneSASection(&b, rep, plots)
	out := b.String()
	for _, want := range []string{
		"| ordered | decrypt | spi | 2 | 0.300 | 1.50× | 0.360 | 0.900 | 1.00 | – | 0 | 0 | 0 |",
		"| sharded | decrypt | hand-off | 2 | 0.050 | – | – | – | – | 1234 |",
		"| shared | encrypt | spread | 2 | 0.250 | – | – | – | – | – | 38.5 | 0 | – |",
		"| shared | 2 | 0.400 | – | – | 812 | – | 128 |",
		"![one SA end to end](" + plotOneSA + ")",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("section lacks %q:\n%s", want, out)
		}
	}
}
