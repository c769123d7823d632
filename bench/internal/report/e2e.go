package report

import (
	"fmt"
	"slices"
	"strings"

	"github.com/espxdp/espxdp/bench/internal/harness"
)

// Targets of the e2e and wg suites.
const (
	TargetE2ECeiling = 0.7 // decrypt/encrypt at 1420 B vs min(AF_XDP forward, raw AEAD)
	TargetVsWG       = 1.5 // espxdp TCP goodput vs wireguard-go
	plotE2E          = "e2e.svg"
)

// netTargets evaluates the targets of the e2e and wg suites.
func netTargets(rep *harness.Report) []Target {
	var ts []Target
	for _, r := range rep.Filter(harness.KindE2E) {
		if r.Size != 1420 || (r.Op != "decrypt" && r.Op != "encrypt") {
			continue
		}
		if v, ok := r.Get("x-ceiling"); ok {
			ts = append(ts, Target{fmt.Sprintf("e2e %s at 1420 B ≥ %.1f× min(AF_XDP forward, raw AEAD), %d worker(s)", r.Op, TargetE2ECeiling, r.Workers),
				num(v) + "×", v >= TargetE2ECeiling})
		}
	}
	return append(ts, wgTargets(rep)...)
}

func sizeLabel(r *harness.Result) string {
	if r.Traffic == "imix" {
		return fmt.Sprintf("IMIX (%.0f)", harness.IMIXMean())
	}
	if r.Traffic == harness.TrafficJumbo {
		mtu, _ := r.Get("mtu")
		return fmt.Sprintf("%d (jumbo, MTU %.0f)", r.Size, mtu)
	}
	return fmt.Sprint(r.Size)
}

func e2eSection(b *strings.Builder, rep *harness.Report, plots map[string][]byte) {
	rs := rep.Filter(harness.KindE2E)
	if len(rs) == 0 {
		return
	}
	dur := float64(rep.Config.E2EDurationNs) / 1e9
	fmt.Fprintf(b, `## End to end over veth: gen → gateway → sink

Three network namespaces, gen —veth— gw —veth— sink, IPv4, static
neighbours, as many veth queues as the largest worker count. gen sends
pre-built frames for %.1f s per measurement from one AF_XDP socket per
queue (one goroutine, batches of 64, every UMEM frame filled once at
setup); the sink's interface counts what arrives (its rx_packets; the
frames carry a MAC that is not the sink's, so its kernel drops them at
once). 16 flows (UDP ports and inner addresses). Sizes are inner IP packet
bytes; IMIX is 7:4:1 of 64, 576 and 1420 bytes (1420 rather than 1500 so
that the ESP packet fits a 1500-byte MTU).

- decrypt: gen sends ESP (%s, tunnel mode, built with the sa package at
  setup; the gateway's inbound SA has anti-replay off so frames can be
  sent again) → xdp.Engine (ciphertext port towards gen) → plaintext to
  the sink.
- encrypt: gen sends plaintext to the protected prefix → xdp.Engine
  (plaintext port towards gen) → ESP to the sink.
- forward: xdp.Forwarder (AF_XDP, no crypto, one per queue) between the
  same interfaces, on decrypt's ESP frames: the I/O ceiling.
- kernel: the gateway's own IP forwarding (no XDP program) of encrypt's
  plaintext frames.
- jumbo rows ("jumbo, MTU 9000"): the four veth ends at MTU 9000 for
  the time of these rows; gen sends each pre-built frame as a chain of
  4 KiB UMEM frames (AF_XDP multi-buffer), the engine runs with
  EngineConfig.MultiBuffer (generic XDP attach, a chain gathered into
  one buffer and sent as a new chain). Their baselines are the kernel's
  forwarding at the same size and the raw AEAD; the AF_XDP forwarder
  has no multi-buffer mode, so "vs ceiling" is left empty.

offered = packets gen put on its TX rings per second; delivered = packets
counted at the sink per second; Gbps = inner bytes delivered; loss = 1 −
delivered/offered (the generator sends as fast as it can, so loss is the
overload the gateway or the veth rings shed). "crypto" is the raw AEAD
ceiling (the crypto suite's baseline, one core per worker; IMIX: its
size mix), "vs ceiling" = delivered / min(forward at the same size and
workers, crypto). All of gen, gateway, sink and the veth softirqs share
the machine's %d CPUs.

`, dur, harness.E2ETransformName, rep.Machine.Cores)
	ndrSection(b, rs, rep.Config)
	b.WriteString("### Throughput under overload\n\n")
	b.WriteString("| op | workers | inner bytes | offered Mpps | delivered Mpps | Mpps/worker | Gbps | loss % | crypto Mpps | vs ceiling | vs kernel |\n")
	b.WriteString("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Op, r.Workers, sizeLabel(&r),
			cell(&r, "offered-Mpps"), cell(&r, "Mpps"), cell(&r, "Mpps/worker"), cell(&r, "Gbps"), cell(&r, "loss%"),
			cell(&r, "crypto-Mpps"), cell(&r, "x-ceiling"), cell(&r, "x-kernel"))
	}
	if _, ok := plots[plotE2E]; ok {
		fmt.Fprintf(b, "\n![end to end](%s)\n", plotE2E)
	}
	b.WriteString("\n")
}

// ndrSection writes the loss-free rate table of the e2e suite (its
// headline): the rows of rs that have a rate search.
func ndrSection(b *strings.Builder, rs []harness.Result, cfg harness.Config) {
	rows := slices.DeleteFunc(slices.Clone(rs), func(r harness.Result) bool {
		_, ok := r.Get("ndr-Mpps")
		return !ok
	})
	if len(rows) == 0 {
		return
	}
	trial := 0.0
	if v, ok := rows[0].Get("trial-s"); ok {
		trial = v
	}
	fmt.Fprintf(b, `### Loss-free rates (RFC 2544 NDR/PDR)

For decrypt and encrypt at each size and worker count: NDR is the highest
offered rate at which the sink counted every packet gen sent, PDR the
highest at which it lost at most %.1f %%. Found by a binary search
between 0 and the offered rate of the overload run below (first trial
there), at most %d trials of %.3g s each per search, stopping once the
bracket is within %.0f %% of its upper end; the PDR search starts from
the NDR. gen paces its batches of 64 with a token bucket; the rates shown
are the ones it achieved (packets put on its TX rings over the time it
sent), not the ones asked for. A rate of 0 means every trial lost
packets. Gbps = inner bytes at that rate.

`+latencyText+`

`, 100*harness.PDRLoss, harness.SearchMaxTrials, trial, 100*harness.SearchTolerance, 100*harness.LatencyLoad)
	b.WriteString("| op | workers | inner bytes | NDR Mpps | NDR Gbps | PDR Mpps | PDR Gbps | PDR loss % | overload delivered Mpps | trials | latency p50 / p99 / max µs | at % of NDR | latency samples |\n")
	b.WriteString("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Op, r.Workers, sizeLabel(&r),
			cell(&r, "ndr-Mpps"), cell(&r, "ndr-Gbps"), cell(&r, "pdr-Mpps"), cell(&r, "pdr-Gbps"), cell(&r, "pdr-loss%"),
			cell(&r, "Mpps"), intCell(&r, "trials"), latencyCell(&r), intCell(&r, "lat-load-%ndr"), intCell(&r, "lat-samples"))
	}
	b.WriteString("\n")
}

// xskCell is the AF_XDP loss counters of a wg row: RX ring full,
// dropped, fill ring empty ("–" for rows without AF_XDP).
func xskCell(r *harness.Result) string {
	if _, ok := r.Get("xsk-rx-ring-full"); !ok {
		return "–"
	}
	return intCell(r, "xsk-rx-ring-full") + " / " + intCell(r, "xsk-rx-dropped") + " / " + intCell(r, "xsk-fill-empty")
}

// engineDropCell is a wg row's espxdp drops: the workers' own, Send
// queue full, the TUN port's ("–" without an engine).
func engineDropCell(r *harness.Result) string {
	if _, ok := r.Get("engine-drops"); !ok {
		return "–"
	}
	return intCell(r, "engine-drops") + " / " + intCell(r, "send-full") + " / " + intCell(r, "tun-port-drops")
}

// ifDropCell is a wg row's interface drops: gateways' veths, TUNs,
// hosts' veths ("–" for rows measured without them).
func ifDropCell(r *harness.Result) string {
	if _, ok := r.Get("gw-if-drops"); !ok {
		return "–"
	}
	c := intCell(r, "gw-if-drops") + " / " + intCell(r, "tun-drops") + " / " + intCell(r, "host-if-drops")
	if _, ok := r.Get("udp-sock-drops"); ok {
		c += " (UDP sockets " + intCell(r, "udp-sock-drops") + ")"
	}
	return c
}

func wgSection(b *strings.Builder, rep *harness.Report, plots map[string][]byte) {
	rs := rep.Filter(harness.KindWG)
	if len(rs) == 0 {
		return
	}
	fmt.Fprintf(b, `## Peers: espxdp vs wireguard-go

hostA —veth— gwA —veth (wan)— gwB —veth— hostB, four namespaces; a TCP
transfer of %d MiB from hostA to hostB over one connection and over
several in parallel ("streams"; the bytes split between them), median
goodput of the runs (bytes received over the time from the first
accepted connection to the last end of stream). The endpoints are child
processes (this program again, in the hosts' namespaces), so that the
harness process holds only the gateways while a transfer runs. The
hosts' links have MTU 1420 (the WireGuard TUN MTU), the wan 1500.

- kernel: plain IP forwarding by both gateways, no encryption.
- wireguard-go: golang.zx2c4.com/wireguard (device, Linux TUN with its
  offloads, the standard UDP bind) in each gateway, in this process.
- espxdp: an xdp.Engine in each gateway (ciphertext on the wan, plaintext
  on the hosts' link, one queue and worker), tunnel-mode ESP with the
  transform shown.
- espxdp-tun: the same engine route-based: plaintext on a TUN with GSO/GRO
  offloads (xdp.OpenTUNOffload, xdp.TUNPort) into which the
  gateway's kernel routes the remote network, run with the host settings
  of wireguard-go's better single-stream run ("offloads" column).
- espxdp-tun-udp: espxdp-tun with the wan side ESP in UDP (RFC 3948,
  port 4500) through xdp.UDPPort instead of AF_XDP: sendmmsg with UDP
  GSO and recvmmsg with UDP GRO, as wireguard-go's UDP side.
- espxdp-busypoll: the espxdp row (aes128gcm16) again with preferred busy
  polling on the engine's sockets (xdp.BusyPoll: SO_BUSY_POLL 50 µs,
  budget 64, SO_PREFER_BUSY_POLL), to show whether it helps.

"no-offload": the hosts' transmit checksum offload (and so TSO) is off.
espxdp needs that: a veth hands its peer packets whose TCP checksum the
kernel has not finished (CHECKSUM_PARTIAL), which an AF_XDP program
would encrypt as they are. "offload": the hosts' offloads on and GRO on
the gateways' links, so the gateways' kernels pass TCP and UDP
super-packets to wireguard-go's TUN and sockets; the ratio to
wireguard-go uses the better of its two runs. Retransmits are the
client's TCP retransmitted segments over all runs. For espxdp on AF_XDP,
the gateways' sockets' kernel counters (XDP_STATISTICS, both gateways,
all runs) say where segments were lost before a worker saw them: RX ring
full (the worker did not drain it in time, e.g. descheduled), dropped
(no frame or too long), fill ring found empty; engine drops are the
workers' own (any reason), "Send full" packets read from the TUN that
the engine could not queue, "TUN port" the espxdp TUN's read drops and
failed writes. Interface drops are the rx and tx dropped
counters ("ip -s link") of the gateways' veths, of their TUN devices
(wireguard-go's wg0, espxdp's esp0: a full TUN queue drops what the
kernel routes into it while the reader is behind) and of the hosts'
veths, over all runs; in brackets the gateways' UDP sockets' buffer
drops (RcvbufErrors and SndbufErrors of /proc/net/snmp: wireguard-go's
sockets, espxdp-tun-udp's UDP port).

UDP: hostA sends pre-built UDP packets (16 flows) from an AF_XDP socket
as fast as it can for %.1f s per size, as the e2e suite's generator
does; hostB's interface counts what arrives; sizes are inner IP packet
bytes. This is throughput under overload (no search for a loss-free
rate): a data plane that sheds excess load early, as an XDP program with
a full AF_XDP ring does, keeps more CPU for the packets it accepts than
one whose excess is dropped after the kernel forwarded it to a TUN.

All four namespaces, both gateways' data planes and the traffic's
endpoints run on the same %d CPUs, so each implementation competes with
the traffic source and sink for them: the numbers compare the data
planes under that load, not what either does on dedicated cores.

`, rep.Config.WGBytes>>20, float64(rep.Config.E2EDurationNs)/1e9, rep.Machine.Cores)
	transform := func(r *harness.Result) string {
		switch {
		case r.Transform != "":
			return r.Transform
		case r.Impl == "wireguard-go":
			return "ChaCha20-Poly1305 (WireGuard)"
		}
		return "none"
	}
	b.WriteString("### TCP goodput\n\n")
	b.WriteString("| implementation | transform | offloads | streams | Gbps | min | max | runs | retransmits | xsk ring full / dropped / fill empty | engine drops / Send full / TUN port | interface drops gw / TUN / hosts | ping ms | vs wireguard-go | vs kernel |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		if r.Traffic != "tcp" {
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Impl, transform(&r), r.Op, wgStreams(&r),
			cell(&r, "Gbps"), cell(&r, "min-Gbps"), cell(&r, "max-Gbps"), intCell(&r, "runs"), intCell(&r, "retransmits"),
			xskCell(&r), engineDropCell(&r), ifDropCell(&r), cell(&r, "ping-ms"), cell(&r, "x-wireguard"), cell(&r, "x-kernel"))
	}
	b.WriteString("\n")
	wgPairedTable(b, rep.Filter(harness.KindWGPaired))
	wgCPUTable(b, rs)
	if _, ok := plots[plotWG]; ok {
		fmt.Fprintf(b, "![peers: TCP goodput and gateway CPU per GB](%s)\n", plotWG)
	}
	if slices.ContainsFunc(rs, func(r harness.Result) bool { return r.Traffic == "udp" }) {
		b.WriteString("\n### UDP packets\n\n")
		b.WriteString("| implementation | transform | offloads | inner bytes | offered Mpps | delivered Mpps | Gbps | loss % | vs wireguard-go | vs kernel |\n")
		b.WriteString("|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range rs {
			if r.Traffic != "udp" {
				continue
			}
			fmt.Fprintf(b, "| %s | %s | %s | %d | %s | %s | %s | %s | %s | %s |\n", r.Impl, transform(&r), r.Op, r.Size,
				cell(&r, "offered-Mpps"), cell(&r, "Mpps"), cell(&r, "Gbps"), cell(&r, "loss%"), cell(&r, "x-wireguard"), cell(&r, "x-kernel"))
		}
	}
	b.WriteString("\n")
}

// e2ePlots renders the e2e plot: delivered Mpps by inner size, per op,
// solid for one worker and dashed for more.
func e2ePlots(rep *harness.Report, out map[string][]byte) error {
	rs := rep.Filter(harness.KindE2E)
	if len(rs) == 0 {
		return nil
	}
	var ws []int
	var ops []string
	// The jumbo rows (another MTU) are in the table, not the plot.
	rs = slices.DeleteFunc(rs, func(r harness.Result) bool { return r.Traffic == harness.TrafficJumbo })
	if len(rs) == 0 {
		return nil
	}
	for _, r := range rs {
		if !slices.Contains(ws, r.Workers) {
			ws = append(ws, r.Workers)
		}
		if !slices.Contains(ops, r.Op) {
			ops = append(ops, r.Op)
		}
	}
	var ss []series
	for wi, w := range ws {
		for i, op := range ops {
			var sel []harness.Result
			for _, r := range rs {
				if r.Op == op && r.Workers == w {
					sel = append(sel, r)
				}
			}
			ss = append(ss, series{label: fmt.Sprintf("%s, %d worker(s)", op, w), pts: xy(sel, func(r *harness.Result) int { return r.Size }, "Mpps"), color: i, dashed: wi > 0})
		}
	}
	svg, err := render("End to end over veth: delivered packets", "inner IP packet bytes", "Mpps delivered", true, false, ss)
	if err != nil {
		return err
	}
	if svg != nil {
		out[plotE2E] = svg
	}
	return nil
}
