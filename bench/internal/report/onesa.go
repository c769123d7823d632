package report

import (
	"fmt"
	"strings"

	"github.com/espxdp/espxdp/bench/internal/harness"
)

// plotOneSA is the plot of the one-SA rows.
const plotOneSA = "e2e-one-sa.svg"

// oneSAModes is the order of the modes in the one-SA tables.
var oneSAModes = []string{"shared", "sharded", "per-cpu", "ordered"}

// oneSASection writes the one-SA rows of the e2e suite (harness.KindOneSA).
func oneSASection(b *strings.Builder, rep *harness.Report, plots map[string][]byte) {
	rs := rep.Filter(harness.KindOneSA)
	if len(rs) == 0 {
		return
	}
	b.WriteString(`## One SA over cores, end to end

One SA through xdp.Engine with 1 and 2 workers on the e2e topology, the
ESP flow on ONE veth queue (as a NIC's RSS delivers one ESP flow), in each
concurrency mode with the XDP steering the engine picks: "spread" (the
program deals each queue's packets over the workers' sockets in chunks of
32, Shared), "spi" (the program hashes the SPI to the owner's socket,
Sharded and PerCPU; one sequencer per SA, Ordered). The "hand-off" row is
the alternative to steering in XDP: Sharded with spread ingress, the sa
package handing each packet to the SA's owner after RX.

- udp: throughput under overload (the e2e generator, 1420-byte inner
  packets, the SA's anti-replay off so frames can repeat); speed-up is
  over the same mode's 1-worker row; Mpps per CPU-s = packets the engine
  processed over the CPU time its worker threads used (the machine has
  fewer free CPUs than gen, gateway and sink need, so wall-clock speed-up
  cannot show scaling), per-CPU efficiency = that over the 1-worker
  row's (the issue's target: ≥ 0.9 for Shared, ≥ 0.85 for Ordered).
- stream: 8192 distinct packets (4 inner flows) sent once, in order, at
  half the udp row's delivered rate, through an SA with anti-replay on;
  the sink captures them: reordered = packets that arrive after a later
  packet of their inner flow (encrypt: decrypted at the sink), replay =
  the gateway SA's replay drops, seq twice = ESP sequence numbers seen
  twice (encrypt).

`)
	b.WriteString("| mode | op | steering | workers | delivered Mpps | speed-up | Mpps per CPU-s | per-CPU efficiency | busy workers | handed off | stream reordered % | stream replay drops / seq twice | stream loss % |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, m := range oneSAModes {
		for _, op := range []string{"decrypt", "encrypt"} {
			for i := range rs {
				r := &rs[i]
				if r.Mode != m || r.Op != op || r.Traffic != harness.OneSAUDP {
					continue
				}
				st := find(rs, func(x *harness.Result) bool {
					return x.Traffic == harness.OneSAStream && x.Mode == m && x.Op == op && x.Workers == r.Workers && x.Ingress == r.Ingress
				})
				one := find(rs, func(x *harness.Result) bool {
					return x.Traffic == harness.OneSAUDP && x.Mode == m && x.Op == op && x.Workers == 1
				})
				speed, eff := "–", "–"
				if v, ok := val(r, "Mpps"); ok && r.Workers > 1 {
					if v1, ok := val(one, "Mpps"); ok && v1 > 0 {
						speed = num(v/v1) + "×"
					}
				}
				if v, ok := val(r, "Mpps-per-CPU"); ok && r.Workers > 1 {
					if v1, ok := val(one, "Mpps-per-CPU"); ok && v1 > 0 {
						eff = num(v / v1)
					}
				}
				integrity := cell(st, "replay-drops")
				if op == "encrypt" {
					integrity = cell(st, "seq-sent-twice")
				}
				steer := r.Ingress
				if m == "sharded" && steer == "spread" {
					steer = "hand-off"
				}
				fmt.Fprintf(b, "| %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", m, op, steer, r.Workers,
					cell(r, "Mpps"), speed, cell(r, "Mpps-per-CPU"), eff, cell(r, "busy-workers"), cell(r, "handed-off"),
					cell(st, "reordered%"), integrity, cell(st, "loss%"))
			}
		}
	}
	if _, ok := plots[plotOneSA]; ok {
		fmt.Fprintf(b, "\n![one SA end to end](%s)\n", plotOneSA)
	}
	var tcp []harness.Result
	for _, r := range rs {
		if r.Traffic == harness.OneSATCP {
			tcp = append(tcp, r)
		}
	}
	if len(tcp) > 0 {
		b.WriteString(`
TCP through one SA (one SA each way; PerCPU: one per worker each way) with
2 workers per gateway on one queue, in the wg suite's four namespaces
(hostA — gwA — gwB — hostB, no offloads): a checksummed transfer (median
of the runs), the sender's retransmitted segments over all runs.

| mode | workers | Gbps | min | max | retransmits | runs | MiB per run |
|---|---:|---:|---:|---:|---:|---:|---:|
`)
		for _, m := range oneSAModes {
			for i := range tcp {
				r := &tcp[i]
				if r.Mode != m {
					continue
				}
				mib := "–"
				if v, ok := val(r, "bytes"); ok {
					mib = num(v / (1 << 20))
				}
				fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s | %s |\n", m, r.Workers, cell(r, "Gbps"),
					cell(r, "min-Gbps"), cell(r, "max-Gbps"), cell(r, "retransmits"), cell(r, "runs"), mib)
			}
		}
	}
	b.WriteString("\n")
}

// oneSAPlots draws delivered Mpps over workers per mode (decrypt solid,
// encrypt dashed).
func oneSAPlots(rep *harness.Report, out map[string][]byte) error {
	rs := rep.Filter(harness.KindOneSA)
	var ss []series
	for i, m := range oneSAModes {
		for _, op := range []string{"decrypt", "encrypt"} {
			var sel []harness.Result
			for _, r := range rs {
				if r.Mode == m && r.Op == op && r.Traffic == harness.OneSAUDP && !(m == "sharded" && r.Ingress == "spread") {
					sel = append(sel, r)
				}
			}
			ss = append(ss, series{label: m + " " + op, pts: xy(sel, func(r *harness.Result) int { return r.Workers }, "Mpps"),
				color: i, dashed: op == "encrypt"})
		}
	}
	svg, err := render("One SA, one queue, 1420 B: delivered vs workers", "workers", "Mpps", false, true, ss)
	if err != nil || svg == nil {
		return err
	}
	out[plotOneSA] = svg
	return nil
}
