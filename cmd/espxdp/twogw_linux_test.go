//go:build linux

package main

import (
	"net"
	"net/netip"
	"testing"

	"github.com/espxdp/espxdp/internal/topo"
)

// twoGateways is the topology of the restart tests: hostA (eth0
// 10.1.0.2) - (lan0 10.1.0.1) gwA (wan0 192.0.2.1) - (wan0 192.0.2.2)
// gwB (lan0 10.2.0.1) - (eth0 10.2.0.2) hostB, every MAC address
// testMAC(side, host): side 1 hostA-gwA, 2 gwB-hostB, 0xa the WAN.
type twoGateways struct {
	hostA, gwA, gwB, hostB *topo.NS
	// hostALan and gwALan are hostA's eth0 and gwA's lan0; wanA and
	// wanB the wan0 links of gwA and gwB.
	hostALan, gwALan, wanA, wanB *topo.Link
}

// testMAC returns the locally administered MAC address 02:00:00:00:a:b.
func testMAC(a, b byte) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, a, b} }

// newTwoGateways builds the twoGateways topology in namespaces named
// after prefix (removed when t ends), with hostA's default route via gwA
// and its neighbour entry for gwA.
func newTwoGateways(t *testing.T, prefix string) *twoGateways {
	t.Helper()
	tp, mk := topo.NewForTest(t, prefix)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	g := &twoGateways{hostA: mk("hostA"), gwA: mk("gwA"), gwB: mk("gwB"), hostB: mk("hostB")}
	var err error
	g.hostALan, g.gwALan, err = tp.AddVeth(g.hostA, "eth0", g.gwA, "lan0", topo.VethOptions{MACA: testMAC(1, 2), MACB: testMAC(1, 1)})
	must(err)
	must(g.hostALan.AddAddr(netip.MustParsePrefix("10.1.0.2/24")))
	must(g.gwALan.AddAddr(netip.MustParsePrefix("10.1.0.1/24")))
	must(g.hostA.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), netip.MustParseAddr("10.1.0.1"), "", 0))
	must(g.hostALan.SetNeighbour(netip.MustParseAddr("10.1.0.1"), testMAC(1, 1)))
	bl, hb, err := tp.AddVeth(g.gwB, "lan0", g.hostB, "eth0", topo.VethOptions{MACA: testMAC(2, 1), MACB: testMAC(2, 2)})
	must(err)
	must(bl.AddAddr(netip.MustParsePrefix("10.2.0.1/24")))
	must(hb.AddAddr(netip.MustParsePrefix("10.2.0.2/24")))
	g.wanA, g.wanB, err = tp.AddVeth(g.gwA, "wan0", g.gwB, "wan0", topo.VethOptions{MACA: testMAC(0xa, 1), MACB: testMAC(0xa, 2)})
	must(err)
	must(g.wanA.AddAddr(netip.MustParsePrefix("192.0.2.1/24")))
	must(g.wanB.AddAddr(netip.MustParsePrefix("192.0.2.2/24")))
	return g
}
