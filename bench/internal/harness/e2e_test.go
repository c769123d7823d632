package harness_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/bench/internal/harness"
	"github.com/espxdp/espxdp/bench/internal/report"
	"github.com/espxdp/espxdp/internal/testenv"
)

// TestE2EAndWG runs tiny e2e and wg suites through harness.Run (real
// namespaces, veth, XDP, AF_XDP, wireguard-go) and checks that packets
// were delivered, that the sink never counted more than was offered, that
// every measurement and ratio is there (the jumbo rows too: 8900-byte
// packets as descriptor chains on veths at MTU 9000, the engine with
// MultiBuffer, which received them as chains), and that the report has
// the sections and targets. Speeds are not asserted.
func TestE2EAndWG(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "ip")
	cfg := harness.Config{
		Suites:        []string{"e2e", "wg"},
		Sizes:         []int{64},
		Transforms:    []string{"aes128gcm16"},
		DurationNs:    int64(10 * time.Millisecond),
		Workers:       []int{1, 2},
		SAs:           []int{1},
		Quick:         true,
		Seed:          3,
		E2ESizes:      []int{1420, 0},
		E2EDurationNs: int64(100 * time.Millisecond),
		E2ETrialNs:    int64(20 * time.Millisecond),
		E2EJumbo:      harness.E2EDefaultJumbo,
		WGBytes:       2 << 20,
	}
	start := time.Now()
	rep, err := harness.Run(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("suites ran in %v", time.Since(start))

	e2e := rep.Filter(harness.KindE2E)
	seen := map[string]bool{}
	for _, r := range e2e {
		key := fmt.Sprintf("%s/%d/%d/%s", r.Op, r.Workers, r.Size, r.Traffic)
		if seen[key] {
			t.Errorf("duplicate e2e result %s", key)
		}
		seen[key] = true
		sent, ok1 := r.Get("sent")
		got, ok2 := r.Get("delivered")
		mpps, ok3 := r.Get("Mpps")
		if !ok1 || !ok2 || !ok3 {
			t.Errorf("%s: metrics missing: %+v", key, r.Metrics)
			continue
		}
		if got <= 0 || mpps <= 0 {
			t.Errorf("%s: nothing delivered (sent %.0f)", key, sent)
		}
		if got > sent {
			t.Errorf("%s: sink counted %.0f packets, more than the %.0f offered", key, got, sent)
		}
		if loss, ok := r.Get("loss%"); !ok || loss < 0 || loss > 100 {
			t.Errorf("%s: loss %v %v", key, loss, ok)
		}
		jumbo := r.Traffic == harness.TrafficJumbo
		if mtu, ok := r.Get("mtu"); jumbo != (r.Size == cfg.E2EJumbo) || jumbo != ok || (ok && mtu != harness.E2EJumboMTU) {
			t.Errorf("%s: a jumbo row %v, MTU %v %v", key, jumbo, mtu, ok)
		}
		if r.Op == "decrypt" || r.Op == "encrypt" {
			want := []string{"crypto-Mpps", "io-Mpps", "x-ceiling", "x-kernel"}
			if jumbo {
				// No AF_XDP forwarder baseline at this MTU; the
				// engine got the packets as descriptor chains.
				want = []string{"crypto-Mpps", "x-kernel", "jumbo-rx"}
				if _, ok := r.Get("x-ceiling"); ok {
					t.Errorf("%s: a ceiling without a forwarder baseline", key)
				}
			}
			for _, m := range want {
				if v, ok := r.Get(m); !ok || v <= 0 {
					t.Errorf("%s: %s = %v, %v", key, m, v, ok)
				}
			}
			// The NDR/PDR search (not on the jumbo rows): the rates
			// exist, NDR ≤ PDR ≤ the overload run's offered rate
			// (the search's upper end; 5 % slack for the measured
			// pacing), the trials within their bound.
			ndr, ok1 := r.Get("ndr-Mpps")
			pdr, ok2 := r.Get("pdr-Mpps")
			trials, ok3 := r.Get("trials")
			offered, _ := r.Get("offered-Mpps")
			if jumbo {
				if ok1 || ok2 || ok3 {
					t.Errorf("%s: a rate search on a jumbo row", key)
				}
			} else if !ok1 || !ok2 || !ok3 {
				t.Errorf("%s: no NDR/PDR: %+v", key, r.Metrics)
			} else if ndr < 0 || ndr > pdr || pdr > offered*1.05 || trials < 2 || trials > 2*harness.SearchMaxTrials {
				t.Errorf("%s: NDR %v, PDR %v, overload offered %v, %v trials", key, ndr, pdr, offered, trials)
			}
			// Latency at 90 % of a positive NDR: the stamped packets
			// read back with their stamps intact, percentiles ordered.
			if n, ok := r.Get("lat-samples"); !jumbo && ndr > 0 && ok && n > 0 {
				p50, _ := r.Get("lat-p50-us")
				p99, _ := r.Get("lat-p99-us")
				mx, _ := r.Get("lat-max-us")
				if p50 <= 0 || p50 > p99 || p99 > mx {
					t.Errorf("%s: latency p50 %v p99 %v max %v µs", key, p50, p99, mx)
				}
				if bad, _ := r.Get("lat-unreadable"); bad != 0 {
					t.Errorf("%s: %v sampled packets without a readable stamp", key, bad)
				}
			} else if !jumbo && ndr > 0 && !ok {
				t.Errorf("%s: no latency trial at NDR %v", key, ndr)
			}
			if d, ok := r.Get("gw-drops"); !ok || d != 0 {
				t.Errorf("%s: the gateway's SA processor dropped %v packets", key, d)
			}
			// Jumbo rows: the engine attaches in generic mode, where a
			// veth records no receive queue, so all packets arrive on
			// queue 0 and one worker gets them (today's kernels).
			if b, ok := r.Get("busy-workers"); !ok || (!jumbo && int(b) != r.Workers) || (jumbo && b < 1) {
				t.Errorf("%s: %v of %d workers got packets", key, b, r.Workers)
			}
		}
	}
	for _, op := range []string{"forward", "kernel", "decrypt", "encrypt"} {
		for _, w := range cfg.Workers {
			for _, sz := range []string{"1420/", "0/imix"} {
				if key := fmt.Sprintf("%s/%d/%s", op, w, sz); !seen[key] {
					t.Errorf("no e2e result %s", key)
				}
			}
		}
	}
	for _, op := range []string{"kernel", "decrypt", "encrypt"} {
		for _, w := range cfg.Workers {
			if key := fmt.Sprintf("%s/%d/%d/%s", op, w, cfg.E2EJumbo, harness.TrafficJumbo); !seen[key] {
				t.Errorf("no e2e result %s", key)
			}
		}
	}
	if len(e2e) != 4*2*2+3*2 {
		t.Errorf("%d e2e results, want 22", len(e2e))
	}

	wg := rep.Filter(harness.KindWG)
	impls := map[string]int{}
	for _, r := range wg {
		impls[r.Impl+"/"+r.Traffic]++
		what := fmt.Sprintf("wg %s %s %s %s %d", r.Impl, r.Transform, r.Op, r.Traffic, r.Size)
		if g, ok := r.Get("Gbps"); !ok || g <= 0 {
			t.Errorf("%s: Gbps %v %v", what, g, ok)
		}
		switch r.Traffic {
		case "tcp":
			if b, ok := r.Get("bytes"); !ok || int64(b) != cfg.WGBytes {
				t.Errorf("%s: %v bytes", what, b)
			}
			// CPU per GB: the gateways ran in this process, the
			// endpoints in helper processes; both used some CPU.
			if c, ok := r.Get("gw-cpu-s/GB"); !ok || c <= 0 {
				t.Errorf("%s: gateway CPU per GB %v %v", what, c, ok)
			}
			if c, ok := r.Get("hosts-cpu-s/GB"); !ok || c <= 0 {
				t.Errorf("%s: hosts' CPU per GB %v %v", what, c, ok)
			}
			if st, ok := r.Get("streams"); !ok || int(st) != r.Streams || (r.Streams != 1 && r.Streams != 4) {
				t.Errorf("%s: streams %v, field %d", what, st, r.Streams)
			}
			// The AF_XDP rows carry the sockets' loss counters.
			for _, m := range []string{"gw-if-drops", "tun-drops", "host-if-drops", "retransmits"} {
				if v, ok := r.Get(m); !ok || v < 0 {
					t.Errorf("%s: %s %v %v", what, m, v, ok)
				}
			}
			ours := strings.HasPrefix(r.Impl, "espxdp")
			_, xsk := r.Get("xsk-rx-ring-full")
			if xsk != ours {
				t.Errorf("%s: xsk counters %v", what, xsk)
			}
			if _, ok := r.Get("x-wireguard-cpu"); ok != ours {
				t.Errorf("%s: CPU ratio to wireguard-go %v", what, ok)
			}
		case "udp":
			sent, _ := r.Get("sent")
			got, ok := r.Get("delivered")
			if !ok || got <= 0 || got > sent {
				t.Errorf("%s: delivered %v of %v", what, got, sent)
			}
		default:
			t.Errorf("%s: traffic %q", what, r.Traffic)
		}
		if r.Impl == "espxdp" {
			if v, ok := r.Get("x-wireguard"); !ok || v <= 0 {
				t.Errorf("%s: no ratio to wireguard-go", what)
			}
		}
	}
	// TCP: one stream and four; UDP: two sizes.
	for impl, want := range map[string]int{"kernel": 1, "wireguard-go": 2, "espxdp": 2, "espxdp-tun": 2, "espxdp-busypoll": 1} {
		if impls[impl+"/tcp"] != 2*want || impls[impl+"/udp"] != 2*want {
			t.Errorf("wg results by implementation and traffic: %v", impls)
		}
	}

	// The alternated measurement: each UDP-port row against
	// wireguard-go, round by round (2 rounds in quick mode).
	paired := rep.Filter(harness.KindWGPaired)
	if len(paired) != 2 {
		t.Errorf("%d paired results, want 2", len(paired))
	}
	for _, r := range paired {
		x, _ := r.Get("paired-x-wireguard")
		lo, _ := r.Get("paired-x-wireguard-min")
		hi, _ := r.Get("paired-x-wireguard-max")
		c, _ := r.Get("paired-x-wireguard-cpu")
		if n, _ := r.Get("rounds"); n != 2 || r.Impl != "espxdp-tun-udp" || !(x > 0 && lo <= x && x <= hi) || c <= 0 {
			t.Errorf("paired %+v", r)
		}
	}

	// Results survive JSON, and the report has the sections and targets.
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	back, err := harness.ReadJSON(&js)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Results) != len(rep.Results) || back.Config.WGBytes != cfg.WGBytes || len(back.Config.E2ESizes) != 2 {
		t.Errorf("JSON round trip: %d results, config %+v", len(back.Results), back.Config)
	}
	dir := t.TempDir()
	if err := report.Write(dir, back, "go test", ""); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, report.ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"## End to end over veth", "## Peers: espxdp vs wireguard-go",
		"| e2e decrypt at 1420 B ≥ 0.7× min(AF_XDP forward, raw AEAD), 1 worker(s) |",
		"| e2e encrypt at 1420 B ≥ 0.7× min(AF_XDP forward, raw AEAD), 2 worker(s) |",
		"| TCP goodput ≥ 1.5× wireguard-go, espxdp aes128gcm16 |",
		"| TCP goodput ≥ 1.5× wireguard-go, espxdp chacha20poly1305 |",
		"| decrypt | 2 | IMIX (348) |", "| wireguard-go | ChaCha20-Poly1305 (WireGuard) | offload |",
		"![end to end](e2e.svg)", "### Loss-free rates (RFC 2544 NDR/PDR)", "### Throughput under overload",
		"### CPU per GB of goodput", "| gateway CPU per GB ≤ 0.6× wireguard-go, one TCP stream, espxdp aes128gcm16 |",
		"| UDP packets delivered under overload ≥ 2× wireguard-go, espxdp aes128gcm16, 64 B |", "![peers: TCP goodput and gateway CPU per GB](wg.svg)",
		"### One TCP stream, alternated with wireguard-go", "(alternated with wireguard-go, median of 2 rounds",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	for _, svg := range []string{"e2e.svg", "wg.svg"} {
		if fi, err := os.Stat(filepath.Join(dir, svg)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", svg, err)
		}
	}
	if t.Failed() {
		t.Logf("report:\n%s", md)
	}
}
