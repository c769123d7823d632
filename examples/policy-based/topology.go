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
//
// Site C (10.3.0.0/24) has no gateway yet: gwA's SPD lists it, without
// an SA.
var (
	siteA = netip.MustParsePrefix("10.1.0.0/24")
	siteB = netip.MustParsePrefix("10.2.0.0/24")
	siteC = netip.MustParsePrefix("10.3.0.0/24")

	hostAAddr  = netip.MustParseAddr("10.1.0.2")
	gwALAN     = netip.MustParseAddr("10.1.0.1")
	hostBAddr  = netip.MustParseAddr("10.2.0.2")
	gwBLAN     = netip.MustParseAddr("10.2.0.1")
	hostCAddr  = netip.MustParseAddr("10.3.0.1")
	gwAWAN     = netip.MustParseAddr("192.0.2.1")
	routerAWAN = netip.MustParseAddr("192.0.2.254")
	gwBWAN     = netip.MustParseAddr("198.51.100.1")
	routerBWAN = netip.MustParseAddr("198.51.100.254")
	wanLinkMTU = 1500
)

// buildNetwork creates the five namespaces, links, addresses, routes
// and static neighbours. Everything belongs to tp, whose Close removes
// it.
func buildNetwork(tp *topo.Topology) (*exampleenv.Line, error) {
	n, err := exampleenv.Build(tp, exampleenv.Plan{
		MidLabel: "wan",
		HostIf:   "eth0", GwLANIf: "lan", GwWANIf: "wan", MidAIf: "to-gwA", MidBIf: "to-gwB",
		HostA: hostAAddr, GwALAN: gwALAN, GwAWAN: gwAWAN, MidA: routerAWAN,
		MidB: routerBWAN, GwBWAN: gwBWAN, GwBLAN: gwBLAN, HostB: hostBAddr, Bits: 24,
		MTU: wanLinkMTU,
		// IPv4 only: no IPv6 router solicitations or MLD reports on
		// the wire or in the counters.
		IPv4Only: true,
		// Virtual hosts only: a veth leaves TCP/UDP checksums for the
		// receiver's kernel to fill in, but the gateway's XDP takes the
		// frames before any kernel does. Real NICs put full checksums on
		// the wire.
		HostTXChecksumOff: true,
	})
	if err != nil {
		return nil, err
	}
	any4 := netip.MustParsePrefix("0.0.0.0/0")
	if err := n.RouteHosts(any4, any4, 0); err != nil {
		return nil, err
	}
	if err := exampleenv.AddRoutes(
		// Crypto-map style: the gateways route the other sites out of
		// their WAN; the engine picks what to protect by policy, and
		// the bypassed (clear) traffic follows these routes.
		exampleenv.Route{NS: n.GwA, Dst: any4, Via: routerAWAN},
		exampleenv.Route{NS: n.GwB, Dst: any4, Via: routerBWAN},
		// The router forwards the clear (bypassed) traffic between the
		// sites.
		exampleenv.Route{NS: n.Mid, Dst: siteA, Via: gwAWAN},
		exampleenv.Route{NS: n.Mid, Dst: siteB, Via: gwBWAN},
	); err != nil {
		return nil, err
	}
	return n, nil
}
