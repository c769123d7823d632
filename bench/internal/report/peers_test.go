package report

import (
	"strings"
	"testing"

	"github.com/espxdp/espxdp/bench/internal/harness"
)

func peersSynthetic() *harness.Report {
	rep := &harness.Report{
		Machine: harness.Machine{CPU: "Test CPU", Cores: 2, Date: "2026-01-01T00:00:00Z", Commit: "abc"},
		Config:  harness.Config{DurationNs: 1e8, WGBytes: 64 << 20, Suites: []string{"peers"}},
	}
	row := func(impl string, gbps, cpuB float64) harness.Result {
		return harness.Result{Suite: "peers", Kind: harness.KindPeers, Impl: impl, Transform: harness.PeersTransform, Traffic: "tcp", Size: harness.PeersInnerMTU,
			Metrics: metrics("retransmits", 12.0, "packets", "Gbps", gbps, "Gbit/s", "min-Gbps", gbps*0.9, "Gbit/s", "max-Gbps", gbps*1.1, "Gbit/s",
				"runs", 3.0, "", "ping-ms", 0.5, "ms", "ike-ms", 25.0, "ms", "gwA-cpu-s-per-GB", 20.0, "s/GB", "gwB-cpu-s-per-GB", cpuB, "s/GB")}
	}
	rep.Results = []harness.Result{
		row("strongswan-strongswan", 0.2, 25),
		row("strongswan-espxdp", 0.3, 5),
		row("espxdp-espxdp", 0.8, 4),
	}
	return rep
}

func TestPeersSection(t *testing.T) {
	var b strings.Builder
	if err := Markdown(&b, peersSynthetic(), "go run ./bench -suite peers", "", nil); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	at := strings.Index(md, "## IKEv2 peers: strongSwan and espxdp")
	if at < 0 {
		t.Fatalf("no peers section:\n%s", md)
	}
	sec := md[at:]
	for _, want := range []string{
		"of 64 MiB from hostA to hostB",
		"after 20 pings",
		"MTU 1400 in every row",
		"share the same 2 CPUs",
		"| gwA ⇄ gwB | transform | Gbps | min | max | runs | retransmits | ping ms | setup ms | gwA CPU s/GB | gwB CPU s/GB | vs strongSwan ⇄ strongSwan |",
		"| strongSwan (libipsec) ⇄ strongSwan (libipsec) | aes128gcm16 | 0.200 | 0.180 | 0.220 | 3 | 12 | 0.500 | 25.0 | 20.0 | 25.0 | 1.00× |",
		"| strongSwan (libipsec) ⇄ espxdp | aes128gcm16 | 0.300 | 0.270 | 0.330 | 3 | 12 | 0.500 | 25.0 | 20.0 | 5.00 | 1.50× |",
		"| espxdp ⇄ espxdp | aes128gcm16 | 0.800 | 0.720 | 0.880 | 3 | 12 | 0.500 | 25.0 | 20.0 | 4.00 | 4.00× |",
	} {
		if !strings.Contains(sec, want) {
			t.Errorf("peers section lacks %q:\n%s", want, sec)
		}
	}
	// Rows in the order measured, one each.
	if i, j, k := strings.Index(sec, "| strongSwan (libipsec) ⇄ strongSwan"), strings.Index(sec, "| strongSwan (libipsec) ⇄ espxdp"), strings.Index(sec, "| espxdp ⇄ espxdp"); !(i < j && j < k) {
		t.Errorf("rows out of order: %d %d %d", i, j, k)
	}
	if n := strings.Count(sec, " | aes128gcm16 | "); n != 3 {
		t.Errorf("%d rows, want 3", n)
	}
}

// Without the strongSwan ⇄ strongSwan row (a partial run) there is no
// ratio to show; without peers results there is no section.
func TestPeersSectionPartial(t *testing.T) {
	rep := peersSynthetic()
	rep.Results = rep.Results[1:2]
	rep.Results[0].Metrics = metrics("Gbps", 0.3, "Gbit/s")
	var b strings.Builder
	if err := Markdown(&b, rep, "", "", nil); err != nil {
		t.Fatal(err)
	}
	if want := "| strongSwan (libipsec) ⇄ espxdp | aes128gcm16 | 0.300 | – | – | – | – | – | – | – | – | – |"; !strings.Contains(b.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, b.String())
	}
	b.Reset()
	rep.Results = nil
	if err := Markdown(&b, rep, "", "", nil); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "IKEv2 peers") {
		t.Error("peers section without peers results")
	}
	if got := peersLabel("odd"); got != "odd" {
		t.Errorf("peersLabel(odd) = %q", got)
	}
	if got := peersLabel("espxdp-other"); got != "espxdp ⇄ other" {
		t.Errorf("peersLabel(espxdp-other) = %q", got)
	}
}
