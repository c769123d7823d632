package exampleenv

import (
	"testing"

	"github.com/espxdp/espxdp/internal/topo"
)

// CheckNamespaces fails t unless a run reported want namespaces and
// none of them exists any more.
func CheckNamespaces(t testing.TB, nss []*topo.NS, want int) {
	t.Helper()
	if len(nss) != want {
		t.Errorf("run reported %d namespaces, want %d", len(nss), want)
	}
	for _, ns := range nss {
		if ns.Exists() {
			t.Errorf("namespace %s (%s) left behind", ns.Name, ns.Label)
		}
	}
}

// CheckTraffic fails t unless every ping of PingAndTransfer(…, pings,
// mtu, …, size) was answered and the transfer arrived intact, size
// bytes, with TCP segments that fit mtu (an MSS of 1..mtu-40).
func CheckTraffic(t testing.TB, tr Traffic, pings, mtu int, size int64) {
	t.Helper()
	if tr.Ping.Sent != pings || tr.Ping.Received != pings || tr.FullPing.Sent != 3 || tr.FullPing.Received != 3 {
		t.Errorf("pings: %d/%d (want %d/%d) and %d/%d (full size, want 3/3) answered",
			tr.Ping.Received, tr.Ping.Sent, pings, pings, tr.FullPing.Received, tr.FullPing.Sent)
	}
	if !tr.Transfer.Intact() || tr.Transfer.Received != size {
		t.Errorf("transfer: %+v", tr.Transfer)
	}
	if tr.Transfer.ClientMSS == 0 || tr.Transfer.ClientMSS > mtu-40 {
		t.Errorf("client MSS %d, tunnel MTU %d", tr.Transfer.ClientMSS, mtu)
	}
}
