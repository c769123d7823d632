package report

import (
	"fmt"
	"strings"

	"github.com/espxdp/espxdp/bench/internal/harness"
)

// peerNames are the report's names of the peers suite's gateways.
var peerNames = map[string]string{
	harness.PeerStrongSwan: "strongSwan (libipsec)",
	harness.PeerESPXDP:     "espxdp",
}

// peersLabel turns a peers Result.Impl ("strongswan-espxdp") into
// "strongSwan (libipsec) ⇄ espxdp".
func peersLabel(impl string) string {
	a, b, ok := strings.Cut(impl, "-")
	if !ok {
		return impl
	}
	name := func(s string) string {
		if n, ok := peerNames[s]; ok {
			return n
		}
		return s
	}
	return name(a) + " ⇄ " + name(b)
}

// peersSection renders the peers suite: IKEv2-negotiated ESP between
// strongSwan and espxdp gateways.
func peersSection(b *strings.Builder, rep *harness.Report) {
	rs := rep.Filter(harness.KindPeers)
	if len(rs) == 0 {
		return
	}
	fmt.Fprintf(b, `## IKEv2 peers: strongSwan and espxdp

The wg suite's four namespaces (hostA — gwA — wan — gwB — hostB), each
gateway negotiating its SAs with IKEv2 (PSK, %s ESP in tunnel mode,
UDP-encapsulated on port 4500 in every row: strongSwan's
kernel-libipsec only does ESP-in-UDP); gwA initiates. A checksummed TCP
transfer (topo.Transfer) of %d MiB from hostA to hostB, median of the
runs, after %d pings (their mean round trip is "ping ms").

- strongSwan (libipsec): charon 5.9 (internal/swan) with
  kernel-libipsec: ESP in charon's user space, plaintext through its TUN
  device, into which charon routes the remote network.
- espxdp: an ike.Endpoint on the gateway's kernel UDP sockets (500 and
  4500: the XDP program passes IKE to the kernel) whose child SAs go,
  through OnChild, into the SAD of an xdp.Engine in this process (one
  queue and worker; ESP-in-UDP steered to AF_XDP on the wan, plaintext
  on the hosts' link), as in the wg suite.

The hosts' links have MTU %d in every row: kernel-libipsec's TUN
device has that MTU and charon reads it into buffers of that size. The
gateways do not route the other network in clear, so only what a
tunnel carries arrives, and each row checks that both gateways' inbound
SAs counted the transfer and that both list the same SPIs. "setup ms"
is the time from the initiation to both gateways showing the child SA
(strongSwan's through swanctl, polled every 20 ms). CPU per GB
transferred: charon's process time (all threads, /proc/PID/stat) or the
espxdp engine's worker thread (/proc/self/task/TID/stat), including the
kernel work done on those threads, in units of 10 ms (rough for small
transfers). All namespaces, both gateways and the traffic's endpoints
share the same %d CPUs.

`, harness.PeersTransform, rep.Config.WGBytes>>20, harness.PeersPings, harness.PeersInnerMTU, rep.Machine.Cores)
	base := find(rs, func(r *harness.Result) bool {
		return r.Impl == harness.PeerStrongSwan+"-"+harness.PeerStrongSwan
	})
	baseGbps, haveBase := val(base, "Gbps")
	b.WriteString("| gwA ⇄ gwB | transform | Gbps | min | max | runs | retransmits | ping ms | setup ms | gwA CPU s/GB | gwB CPU s/GB | vs strongSwan ⇄ strongSwan |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		vs := "–"
		if g, ok := val(&r, "Gbps"); ok && haveBase && baseGbps > 0 {
			vs = num(g/baseGbps) + "×"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", peersLabel(r.Impl), r.Transform,
			cell(&r, "Gbps"), cell(&r, "min-Gbps"), cell(&r, "max-Gbps"), intCell(&r, "runs"), intCell(&r, "retransmits"),
			cell(&r, "ping-ms"), cell(&r, "ike-ms"), cell(&r, "gwA-cpu-s-per-GB"), cell(&r, "gwB-cpu-s-per-GB"), vs)
	}
	b.WriteString("\n")
}
