//go:build linux

package main

import (
	"net/netip"

	"github.com/espxdp/espxdp/internal/exampleenv"
	"github.com/espxdp/espxdp/internal/topo"
)

// The example's addresses. Site A is 10.1.0.0/24, site B 10.2.0.0/24;
// the gateways' WAN addresses sit on two links joined by a router, as
// two routers on the internet would be.
var (
	hostAAddr = netip.MustParseAddr("10.1.0.2")
	gwALan    = netip.MustParseAddr("10.1.0.1")
	gwAWan    = netip.MustParseAddr("192.0.2.1")
	wanA      = netip.MustParseAddr("192.0.2.254")
	wanB      = netip.MustParseAddr("198.51.100.254")
	gwBWan    = netip.MustParseAddr("198.51.100.1")
	gwBLan    = netip.MustParseAddr("10.2.0.1")
	hostBAddr = netip.MustParseAddr("10.2.0.2")

	siteA = netip.MustParsePrefix("10.1.0.0/24")
	siteB = netip.MustParsePrefix("10.2.0.0/24")
	// The GRE tunnel's own /30, as on a router's "interface Tunnel0".
	tunAAddr = netip.MustParsePrefix("172.16.0.1/30")
	tunBAddr = netip.MustParsePrefix("172.16.0.2/30")
)

// wanMTU is the MTU of the WAN links, and so the SAs' path MTU.
const wanMTU = 1500

// buildNetwork creates the namespaces and links of the example
// (hostA — gwA — wan — gwB — hostB, each a namespace). The gateways get
// their LAN and WAN addresses; their tunnel interfaces come later
// (startGateway). Everything belongs to tp, whose Close removes it.
func buildNetwork(tp *topo.Topology) (*exampleenv.Line, error) {
	n, err := exampleenv.Build(tp, exampleenv.Plan{
		MidLabel: "wan",
		HostIf:   "eth0", GwLANIf: "lan0", GwWANIf: "wan0", MidAIf: "toa", MidBIf: "tob",
		HostA: hostAAddr, GwALAN: gwALan, GwAWAN: gwAWan, MidA: wanA,
		MidB: wanB, GwBWAN: gwBWan, GwBLAN: gwBLan, HostB: hostBAddr, Bits: 24,
		MTU: wanMTU,
	})
	if err != nil {
		return nil, err
	}
	// The WAN is routed; the gateways reach each other through it.
	if err := exampleenv.AddRoutes(
		exampleenv.Route{NS: n.GwA, Dst: netip.PrefixFrom(gwBWan, 32), Via: wanA},
		exampleenv.Route{NS: n.GwB, Dst: netip.PrefixFrom(gwAWan, 32), Via: wanB},
	); err != nil {
		return nil, err
	}
	return n, nil
}
