//go:build linux

package main

// Scaffolding: the namespaces that stand in for two sites and the
// Internet between them (built by internal/exampleenv). Nothing here is
// espxdp API.

import (
	"net/netip"

	"github.com/espxdp/espxdp/internal/exampleenv"
	"github.com/espxdp/espxdp/internal/topo"
)

// Addresses of the topology
//
//	hostA ──lan── gwA ──wan── wan router ──wan── gwB ──lan── hostB
//	10.1.0.2   10.1.0.1  192.0.2.1  .254 | 198.51.100.254  198.51.100.1  10.2.0.1   10.2.0.2
//	                                                                     (10.3.0.1 on hostB's lo)
var (
	siteA = netip.MustParsePrefix("10.1.0.0/24")
	siteB = netip.MustParsePrefix("10.2.0.0/24")
	// siteC is a second subnet behind gwB, reached by adding one route.
	siteC = netip.MustParsePrefix("10.3.0.0/24")

	hostAAddr   = netip.MustParseAddr("10.1.0.2")
	gwALAN      = netip.MustParseAddr("10.1.0.1")
	hostBAddr   = netip.MustParseAddr("10.2.0.2")
	gwBLAN      = netip.MustParseAddr("10.2.0.1")
	hostBSiteC  = netip.MustParseAddr("10.3.0.1")
	gwAWAN      = netip.MustParseAddr("192.0.2.1")
	routerAWAN  = netip.MustParseAddr("192.0.2.254")
	gwBWAN      = netip.MustParseAddr("198.51.100.1")
	routerBWAN  = netip.MustParseAddr("198.51.100.254")
	tunAddrA    = netip.MustParsePrefix("169.254.0.1/30")
	tunAddrB    = netip.MustParsePrefix("169.254.0.2/30")
	wanLinkMTU  = 1500
	wanRouterNS = "wan"
)

// buildNetwork creates the five namespaces, links, addresses, routes
// and static neighbours. Everything belongs to tp, whose Close removes
// it.
func buildNetwork(tp *topo.Topology) (*exampleenv.Line, error) {
	n, err := exampleenv.Build(tp, exampleenv.Plan{
		MidLabel: wanRouterNS,
		HostIf:   "eth0", GwLANIf: "lan", GwWANIf: "wan", MidAIf: "to-gwA", MidBIf: "to-gwB",
		HostA: hostAAddr, GwALAN: gwALAN, GwAWAN: gwAWAN, MidA: routerAWAN,
		MidB: routerBWAN, GwBWAN: gwBWAN, GwBLAN: gwBLAN, HostB: hostBAddr, Bits: 24,
		MTU: wanLinkMTU,
		// IPv4 only: no IPv6 router solicitations or MLD reports in
		// the tunnel or the counters.
		IPv4Only: true,
	})
	if err != nil {
		return nil, err
	}
	// hostB also answers on 10.3.0.1, a subnet of site B that gwA does
	// not route into the tunnel at first.
	if _, err := n.HostB.IP("addr", "add", netip.PrefixFrom(hostBSiteC, 32).String(), "dev", "lo"); err != nil {
		return nil, err
	}
	any4 := netip.MustParsePrefix("0.0.0.0/0")
	if err := n.RouteHosts(any4, any4, 0); err != nil {
		return nil, err
	}
	if err := exampleenv.AddRoutes(
		// The gateways reach each other through the router (IKE would
		// use this route; the engine writes its frames to the router's
		// MAC itself). The router knows nothing of 10.0.0.0/8: clear
		// traffic between the sites could not cross it.
		exampleenv.Route{NS: n.GwA, Dst: netip.PrefixFrom(gwBWAN, 32), Via: routerAWAN},
		exampleenv.Route{NS: n.GwB, Dst: netip.PrefixFrom(gwAWAN, 32), Via: routerBWAN},
		// Site B's own routing: 10.3.0.0/24 is behind hostB.
		exampleenv.Route{NS: n.GwB, Dst: siteC, Via: hostBAddr},
	); err != nil {
		return nil, err
	}
	return n, nil
}
