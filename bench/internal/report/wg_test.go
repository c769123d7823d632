package report

import (
	"strings"
	"testing"

	"github.com/espxdp/espxdp/bench/internal/harness"
)

// wgSynthetic has wg rows with made-up numbers: wireguard-go's best is
// its offload run; espxdp-tun meets the goodput and CPU targets at one
// stream, espxdp (AF_XDP) misses both; UDP at 64 B meets 2×, at 1420 B
// not.
func wgSynthetic() *harness.Report {
	rep := &harness.Report{
		Machine: harness.Machine{Cores: 2},
		Config:  harness.Config{E2EDurationNs: 3e8, WGBytes: 16 << 20},
	}
	tcp := func(impl, tr, op string, streams int, kv ...any) {
		rep.Results = append(rep.Results, harness.Result{Suite: "wg", Kind: harness.KindWG, Impl: impl, Transform: tr, Op: op,
			Traffic: "tcp", Size: 1420, Streams: streams, Metrics: metrics(kv...)})
	}
	tcp("wireguard-go", "", "no-offload", 1, "Gbps", 1.0, "Gbit/s", "gw-cpu-s/GB", 10.0, "CPU s/GB")
	tcp("wireguard-go", "", "offload", 1, "Gbps", 2.0, "Gbit/s", "gw-cpu-s/GB", 8.0, "CPU s/GB", "softirq-s/GB", 2.0, "CPU s/GB", "hosts-cpu-s/GB", 5.0, "CPU s/GB")
	tcp("wireguard-go", "", "offload", 4, "Gbps", 2.5, "Gbit/s", "gw-cpu-s/GB", 7.0, "CPU s/GB")
	tcp("espxdp", "aes128gcm16", "no-offload", 1, "Gbps", 1.5, "Gbit/s", "x-wireguard", 0.75, "x", "gw-cpu-s/GB", 6.0, "CPU s/GB",
		"x-wireguard-cpu", 0.75, "x", "x-wireguard-cpu+softirq", 0.9, "x", "xsk-rx-ring-full", 0.0, "packets", "xsk-rx-dropped", 0.0, "packets", "xsk-fill-empty", 0.0, "")
	tcp("espxdp-tun", "aes128gcm16", "offload", 1, "Gbps", 3.2, "Gbit/s", "x-wireguard", 1.6, "x", "gw-cpu-s/GB", 4.0, "CPU s/GB", "x-wireguard-cpu", 0.5, "x",
		"retransmits", 120.0, "packets", "gw-if-drops", 3.0, "packets", "tun-drops", 117.0, "packets", "host-if-drops", 0.0, "packets",
		"sleeps/GB", 5000.0, "1/GB", "xsk-wakeups/GB", 27000.0, "1/GB", "send-wakes/GB", 12000.0, "1/GB", "tun-reads/GB", 25000.0, "1/GB",
		"tun-writes/GB", 38000.0, "1/GB", "pkts/batch", 45.5, "")
	tcp("espxdp-tun", "aes128gcm16", "offload", 4, "Gbps", 3.0, "Gbit/s", "x-wireguard", 1.2, "x", "gw-cpu-s/GB", 3.5, "CPU s/GB", "x-wireguard-cpu", 0.5, "x")
	udp := func(size int, x float64) {
		rep.Results = append(rep.Results, harness.Result{Suite: "wg", Kind: harness.KindWG, Impl: "espxdp", Transform: "aes128gcm16", Op: "no-offload",
			Traffic: "udp", Size: size, Metrics: metrics("Mpps", 1.0, "Mpps", "x-wireguard", x, "x")})
	}
	udp(64, 2.5)
	udp(1420, 1.5)
	return rep
}

// TestWGSection: the wg section shows the stream count of every TCP row,
// the CPU-per-GB table with both ratios, the plot; the targets are
// evaluated for one stream only (goodput and CPU, AF_XDP and TUN) and
// for UDP, each met or not as its numbers say.
func TestWGSection(t *testing.T) {
	rep := wgSynthetic()
	plots, err := Plots(rep)
	if err != nil {
		t.Fatal(err)
	}
	if svg, ok := plots[plotWG]; !ok || !strings.Contains(string(svg), "<svg") {
		t.Fatalf("no %s plot among %d", plotWG, len(plots))
	}
	var b strings.Builder
	if err := Markdown(&b, rep, "go run ./bench -suite wg", "", plots); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| TCP goodput ≥ 1.5× wireguard-go, espxdp aes128gcm16 | 0.750× | **NOT met** |",
		"| TCP goodput ≥ 1.5× wireguard-go, espxdp-tun aes128gcm16 | 1.60× | met |",
		"| gateway CPU per GB ≤ 0.6× wireguard-go, one TCP stream, espxdp aes128gcm16 | 0.750× | **NOT met** |",
		"| gateway CPU per GB ≤ 0.6× wireguard-go, one TCP stream, espxdp-tun aes128gcm16 | 0.500× | met |",
		"| UDP packets delivered under overload ≥ 2× wireguard-go, espxdp aes128gcm16, 64 B | 2.50× | met |",
		"| UDP packets delivered under overload ≥ 2× wireguard-go, espxdp aes128gcm16, 1420 B | 1.50× | **NOT met** |",
		"| espxdp-tun | aes128gcm16 | offload | 4 | 3.00 |",
		"### CPU per GB of goodput",
		"| wireguard-go (offload) | 1 | 2.00 | 8.00 | 2.00 | 5.00 | – | – |",
		"| espxdp aes128gcm16 | 1 | 1.50 | 6.00 | – | – | 0.750 | 0.900 |",
		"| espxdp-tun aes128gcm16 (offload) | 4 | 3.00 | 3.50 |",
		"| 0 / 0 / 0 |",
		"| 120 | – | – | 3 / 117 / 0 |",
		"| espxdp-tun aes128gcm16 (offload) | 1 | 5000 | 27000 | 12000 | 25000 | 38000 | 45.5 |",
		"![peers: TCP goodput and gateway CPU per GB](wg.svg)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// Four-stream rows are no targets.
	if n := strings.Count(md, "TCP goodput ≥"); n != 2 {
		t.Errorf("%d goodput targets, want 2 (one stream, espxdp and espxdp-tun)", n)
	}
	if n := strings.Count(md, "gateway CPU per GB ≤"); n != 2 {
		t.Errorf("%d CPU targets, want 2", n)
	}
	// The work table has the rows that carry the counts, and only those.
	if n := strings.Count(md, "| AF_XDP wakeups/GB |"); n != 1 || strings.Count(md, "| 5000 | 27000 |") != 1 {
		t.Errorf("work-per-GB table: %d headers, want one with one row", n)
	}
}

// TestWGUDPPortRow: an espxdp-tun-udp row is evaluated against the
// targets like the other espxdp rows, and its UDP port's datagrams per
// GB (super-datagrams in brackets) and the UDP sockets' drops appear.
func TestWGUDPPortRow(t *testing.T) {
	rep := &harness.Report{Machine: harness.Machine{Cores: 2}, Config: harness.Config{E2EDurationNs: 3e8, WGBytes: 16 << 20}}
	rep.Results = append(rep.Results,
		harness.Result{Suite: "wg", Kind: harness.KindWG, Impl: "wireguard-go", Op: "offload", Traffic: "tcp", Size: 1420, Streams: 1,
			Metrics: metrics("Gbps", 1.0, "Gbit/s", "gw-cpu-s/GB", 8.0, "CPU s/GB")},
		harness.Result{Suite: "wg", Kind: harness.KindWG, Impl: "espxdp-tun-udp", Transform: "aes128gcm16", Op: "offload", Traffic: "tcp", Size: 1420, Streams: 1,
			Metrics: metrics("Gbps", 2.0, "Gbit/s", "x-wireguard", 2.0, "x", "gw-cpu-s/GB", 3.6, "CPU s/GB", "x-wireguard-cpu", 0.45, "x",
				"gw-if-drops", 0.0, "packets", "tun-drops", 0.0, "packets", "host-if-drops", 0.0, "packets", "udp-sock-drops", 7.0, "packets",
				"sleeps/GB", 4000.0, "1/GB", "xsk-wakeups/GB", 0.0, "1/GB", "send-wakes/GB", 14000.0, "1/GB", "tun-reads/GB", 30000.0, "1/GB",
				"tun-writes/GB", 40000.0, "1/GB", "pkts/batch", 50.0, "", "udp-tx-datagrams/GB", 26000.0, "1/GB", "udp-tx-super/GB", 25000.0, "1/GB")})
	var b strings.Builder
	if err := Markdown(&b, rep, "go run ./bench -suite wg", "", nil); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| gateway CPU per GB ≤ 0.6× wireguard-go, one TCP stream, espxdp-tun-udp aes128gcm16 | 0.450× | met |",
		"| TCP goodput ≥ 1.5× wireguard-go, espxdp-tun-udp aes128gcm16 | 2.00× | met |",
		"| 50.0 | 26000 (25000) |",
		"0 / 0 / 0 (UDP sockets 7)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// TestWGPairedTargets: an alternated measurement of a row decides its
// TCP targets (here it meets both where the row's own ratios do not),
// and its table lists it; rows without one keep their own ratios.
func TestWGPairedTargets(t *testing.T) {
	row := func(impl, tr string, x, cpu float64) harness.Result {
		return harness.Result{Suite: "wg", Kind: harness.KindWG, Impl: impl, Transform: tr, Traffic: "tcp", Streams: 1,
			Metrics: metrics("Gbps", 3.0, "Gbit/s", "streams", 1.0, "", "x-wireguard", x, "x", "x-wireguard-cpu", cpu, "x")}
	}
	rep := &harness.Report{Results: []harness.Result{
		row("espxdp-tun-udp", "aes128gcm16", 1.3, 0.65),
		row("espxdp-tun", "aes128gcm16", 1.3, 0.65),
		{Suite: "wg", Kind: harness.KindWGPaired, Impl: "espxdp-tun-udp", Transform: "aes128gcm16", Traffic: "tcp", Streams: 1,
			Metrics: metrics("rounds", 5.0, "rounds", "paired-x-wireguard", 1.6, "x", "paired-x-wireguard-min", 1.4, "x", "paired-x-wireguard-max", 1.8, "x",
				"paired-x-wireguard-cpu", 0.5, "x", "paired-x-wireguard-cpu-min", 0.45, "x", "paired-x-wireguard-cpu-max", 0.62, "x",
				"Gbps", 3.5, "Gbit/s", "wireguard-Gbps", 2.2, "Gbit/s")},
	}}
	want := map[string]bool{
		"TCP goodput ≥ 1.5× wireguard-go, espxdp-tun-udp aes128gcm16":                        true,
		"gateway CPU per GB ≤ 0.6× wireguard-go, one TCP stream, espxdp-tun-udp aes128gcm16": true,
		"TCP goodput ≥ 1.5× wireguard-go, espxdp-tun aes128gcm16":                            false,
		"gateway CPU per GB ≤ 0.6× wireguard-go, one TCP stream, espxdp-tun aes128gcm16":     false,
	}
	got := map[string]bool{}
	for _, x := range wgTargets(rep) {
		got[x.What] = x.Met
		if strings.Contains(x.What, "espxdp-tun-udp") && !strings.Contains(x.Measured, "alternated with wireguard-go, median of 5 rounds") {
			t.Errorf("%s: measured %q", x.What, x.Measured)
		}
	}
	for k, v := range want {
		if m, ok := got[k]; !ok || m != v {
			t.Errorf("%s: met %v (present %v), want %v", k, m, ok, v)
		}
	}
	var b strings.Builder
	wgPairedTable(&b, rep.Filter(harness.KindWGPaired))
	if !strings.Contains(b.String(), "| espxdp-tun-udp | aes128gcm16 | 5 | 1.60× | 1.40-1.80 | 0.500× | 0.450-0.620 | 3.50 | 2.20 |") {
		t.Errorf("paired table:\n%s", b.String())
	}
}
