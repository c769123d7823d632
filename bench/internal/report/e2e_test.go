package report

import (
	"strings"
	"testing"

	"github.com/espxdp/espxdp/bench/internal/harness"
)

// netSynthetic has e2e and wg results with made-up numbers: decrypt at
// 1420 B with 1 worker meets the ceiling target, encrypt misses it;
// espxdp aes128gcm16 meets the wireguard-go target, chacha20poly1305
// misses it.
func netSynthetic() *harness.Report {
	rep := &harness.Report{
		Machine: harness.Machine{CPU: "Test CPU", Cores: 2, Date: "2026-01-01T00:00:00Z", Commit: "abc"},
		Config:  harness.Config{DurationNs: 1e8, E2EDurationNs: 2e9, WGBytes: 64 << 20, E2ESizes: []int{64, 1420, 0}},
	}
	add := func(r harness.Result) { rep.Results = append(rep.Results, r) }
	for _, op := range []string{"forward", "kernel", "decrypt", "encrypt"} {
		for _, size := range []int{64, 1420, 0} {
			r := harness.Result{Suite: "e2e", Kind: harness.KindE2E, Op: op, Size: size, Workers: 1,
				Metrics: metrics("offered-Mpps", 1.0, "Mpps", "Mpps", 0.5, "Mpps", "Mpps/worker", 0.5, "Mpps", "Gbps", 5.68, "Gbit/s", "loss%", 50.0, "%")}
			if size == 0 {
				r.Traffic = "imix"
			}
			if op == "decrypt" || op == "encrypt" {
				x := 0.8
				if op == "encrypt" {
					x = 0.55
				}
				r.Metrics = append(r.Metrics, metrics("crypto-Mpps", 3.5, "Mpps", "io-Mpps", 0.6, "Mpps", "x-ceiling", x, "x", "x-kernel", 0.9, "x")...)
				ndr := 0.3
				if op == "encrypt" && size == 64 {
					ndr = 0 // lost packets at every rate
				}
				r.Metrics = append(r.Metrics, metrics("ndr-Mpps", ndr, "Mpps", "ndr-Gbps", ndr*11.36, "Gbit/s", "pdr-Mpps", 0.35, "Mpps",
					"pdr-Gbps", 3.98, "Gbit/s", "pdr-loss%", 0.2, "%", "trials", 9.0, "", "trial-s", 1.0, "s")...)
			}
			add(r)
		}
	}
	// A jumbo row: no forward baseline, so no x-ceiling, and no target.
	add(harness.Result{Suite: "e2e", Kind: harness.KindE2E, Op: "decrypt", Size: 8900, Workers: 1, Traffic: harness.TrafficJumbo,
		Metrics: metrics("mtu", 9000.0, "bytes", "offered-Mpps", 0.2, "Mpps", "Mpps", 0.1, "Mpps", "Mpps/worker", 0.1, "Mpps", "Gbps", 7.12, "Gbit/s",
			"loss%", 50.0, "%", "crypto-Mpps", 0.6, "Mpps", "x-kernel", 0.33, "x")})
	add(harness.Result{Suite: "wg", Kind: harness.KindWG, Impl: "kernel", Op: "no-offload", Traffic: "tcp", Metrics: metrics("Gbps", 2.0, "Gbit/s")})
	add(harness.Result{Suite: "wg", Kind: harness.KindWG, Impl: "wireguard-go", Op: "no-offload", Traffic: "tcp", Metrics: metrics("Gbps", 0.2, "Gbit/s")})
	add(harness.Result{Suite: "wg", Kind: harness.KindWG, Impl: "wireguard-go", Op: "offload", Traffic: "tcp", Metrics: metrics("Gbps", 0.4, "Gbit/s")})
	add(harness.Result{Suite: "wg", Kind: harness.KindWG, Impl: "espxdp", Transform: "aes128gcm16", Op: "no-offload", Traffic: "tcp", Metrics: metrics("Gbps", 0.8, "Gbit/s", "x-wireguard", 2.0, "x",
		"retransmits", 5.0, "packets", "xsk-rx-ring-full", 4.0, "packets", "xsk-rx-dropped", 1.0, "packets", "xsk-fill-empty", 2.0, "", "engine-drops", 0.0, "packets")})
	add(harness.Result{Suite: "wg", Kind: harness.KindWG, Impl: "espxdp", Transform: "chacha20poly1305", Op: "no-offload", Traffic: "tcp", Metrics: metrics("Gbps", 0.5, "Gbit/s", "x-wireguard", 1.25, "x")})
	return rep
}

func TestNetSections(t *testing.T) {
	rep := netSynthetic()
	plots, err := Plots(rep)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := plots[plotE2E]; !ok {
		t.Errorf("no %s among %d plots", plotE2E, len(plots))
	}
	var b strings.Builder
	if err := Markdown(&b, rep, "go run ./bench -suite e2e,wg", "", plots); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| e2e decrypt at 1420 B ≥ 0.7× min(AF_XDP forward, raw AEAD), 1 worker(s) | 0.800× | met |",
		"| e2e encrypt at 1420 B ≥ 0.7× min(AF_XDP forward, raw AEAD), 1 worker(s) | 0.550× | **NOT met** |",
		"| TCP goodput ≥ 1.5× wireguard-go, espxdp aes128gcm16 | 2.00× | met |",
		"| TCP goodput ≥ 1.5× wireguard-go, espxdp chacha20poly1305 | 1.25× | **NOT met** |",
		"## End to end over veth: gen → gateway → sink",
		"| decrypt | 1 | 1420 | 1.00 | 0.500 | 0.500 | 5.68 | 50.0 | 3.50 | 0.800 | 0.900 |",
		"| forward | 1 | IMIX (348) | 1.00 | 0.500 |",
		"| decrypt | 1 | 8900 (jumbo, MTU 9000) | 0.200 | 0.100 | 0.100 | 7.12 | 50.0 | 0.600 | – | 0.330 |",
		"the four veth ends at MTU 9000",
		"for 2.0 s per measurement",
		"## Peers: espxdp vs wireguard-go",
		"of 64 MiB from hostA to hostB",
		"| wireguard-go | ChaCha20-Poly1305 (WireGuard) | offload | 1 | 0.400 |",
		"| espxdp | aes128gcm16 | no-offload | 1 | 0.800 |",
		"| 5 | 4 / 1 / 2 | 0 / – / – |",
		"| wireguard-go | ChaCha20-Poly1305 (WireGuard) | no-offload | 1 | 0.200 | – | – | – | – | – | – | – |",
		"| kernel | none | no-offload | 1 | 2.00 |",
		"run on the same 2 CPUs",
		"![end to end](e2e.svg)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// The loss-free rate table comes first in the e2e section (the
	// headline), the overload table after it; one row per searched
	// measurement (not the baselines, not the jumbo row); NDR 0 shown
	// as 0.
	ndrAt := strings.Index(md, "### Loss-free rates (RFC 2544 NDR/PDR)")
	overAt := strings.Index(md, "### Throughput under overload")
	if e2eAt := strings.Index(md, "## End to end over veth"); ndrAt < e2eAt || overAt < ndrAt {
		t.Errorf("e2e section at %d, NDR table at %d, overload table at %d", e2eAt, ndrAt, overAt)
	} else {
		ndrTable := md[ndrAt:overAt]
		for _, want := range []string{
			"| op | workers | inner bytes | NDR Mpps | NDR Gbps | PDR Mpps | PDR Gbps | PDR loss % | overload delivered Mpps | trials |",
			"| decrypt | 1 | 1420 | 0.300 | 3.41 | 0.350 | 3.98 | 0.200 | 0.500 | 9 |",
			"| encrypt | 1 | 64 | 0 | 0 | 0.350 |",
			"| encrypt | 1 | IMIX (348) | 0.300 |",
			"at most 8 trials of 1 s each",
			"at most 0.5 %",
		} {
			if !strings.Contains(ndrTable, want) {
				t.Errorf("NDR table lacks %q:\n%s", want, ndrTable)
			}
		}
		if n := strings.Count(ndrTable, "\n| decrypt |") + strings.Count(ndrTable, "\n| encrypt |"); n != 6 {
			t.Errorf("%d NDR rows, want 6", n)
		}
		for _, no := range []string{"| forward |", "| kernel |", "jumbo"} {
			if strings.Contains(ndrTable, no) {
				t.Errorf("NDR table has %q", no)
			}
		}
	}
	// Only 1420-byte decrypt/encrypt rows become targets.
	if n := strings.Count(md, "min(AF_XDP forward, raw AEAD)"); n != 2 {
		t.Errorf("%d mentions of the ceiling target", n)
	}
	// Without e2e/wg results there are no such sections.
	b.Reset()
	if err := Markdown(&b, &harness.Report{}, "", "", nil); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "End to end") || strings.Contains(b.String(), "wireguard-go") {
		t.Errorf("empty report has net sections:\n%s", b.String())
	}
}
