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
//
// and with -ipv6 the wan is IPv6 (wan6) and the sites have IPv6
// addresses beside their IPv4 ones
//
//	fd00:1::2  fd00:1::1  2001:db8:a::1  ::fe | 2001:db8:b::fe  2001:db8:b::1  fd00:2::1  fd00:2::2
var (
	siteA = netip.MustParsePrefix("10.1.0.0/24")
	siteB = netip.MustParsePrefix("10.2.0.0/24")
	// siteC is a second subnet behind gwB, reached by adding one route.
	siteC = netip.MustParsePrefix("10.3.0.0/24")

	hostAAddr  = netip.MustParseAddr("10.1.0.2")
	gwALAN     = netip.MustParseAddr("10.1.0.1")
	hostBAddr  = netip.MustParseAddr("10.2.0.2")
	gwBLAN     = netip.MustParseAddr("10.2.0.1")
	hostBSiteC = netip.MustParseAddr("10.3.0.1")
	tunAddrA   = netip.MustParsePrefix("169.254.0.1/30")
	tunAddrB   = netip.MustParsePrefix("169.254.0.2/30")

	// The sites' IPv6 prefixes and addresses (-ipv6 only).
	siteA6     = netip.MustParsePrefix("fd00:1::/64")
	siteB6     = netip.MustParsePrefix("fd00:2::/64")
	hostAAddr6 = netip.MustParseAddr("fd00:1::2")
	gwALAN6    = netip.MustParseAddr("fd00:1::1")
	hostBAddr6 = netip.MustParseAddr("fd00:2::2")
	gwBLAN6    = netip.MustParseAddr("fd00:2::1")

	wanLinkMTU  = 1500
	wanRouterNS = "wan"
)

// wanAddrs are the four addresses on the links between the gateways and
// the wan router, with their prefix length.
type wanAddrs struct {
	GwA, RouterA, RouterB, GwB netip.Addr
	Bits                       int
}

var (
	// wan4 is the default wan: IPv4 documentation prefixes (RFC 5737).
	wan4 = wanAddrs{
		GwA: netip.MustParseAddr("192.0.2.1"), RouterA: netip.MustParseAddr("192.0.2.254"),
		RouterB: netip.MustParseAddr("198.51.100.254"), GwB: netip.MustParseAddr("198.51.100.1"), Bits: 24}
	// wan6 is the wan of -ipv6: IPv6 documentation prefixes (RFC 3849).
	wan6 = wanAddrs{
		GwA: netip.MustParseAddr("2001:db8:a::1"), RouterA: netip.MustParseAddr("2001:db8:a::fe"),
		RouterB: netip.MustParseAddr("2001:db8:b::fe"), GwB: netip.MustParseAddr("2001:db8:b::1"), Bits: 64}
)

// buildNetwork creates the five namespaces, links, addresses, routes
// and static neighbours, with the wan w; with ipv6 the sites get their
// IPv6 addresses and routes too. Everything belongs to tp, whose Close
// removes it.
func buildNetwork(tp *topo.Topology, w wanAddrs, ipv6 bool) (*exampleenv.Line, error) {
	n, err := exampleenv.Build(tp, exampleenv.Plan{
		MidLabel: wanRouterNS,
		HostIf:   "eth0", GwLANIf: "lan", GwWANIf: "wan", MidAIf: "to-gwA", MidBIf: "to-gwB",
		HostA: hostAAddr, GwALAN: gwALAN, GwAWAN: w.GwA, MidA: w.RouterA,
		MidB: w.RouterB, GwBWAN: w.GwB, GwBLAN: gwBLAN, HostB: hostBAddr, Bits: 24, WANBits: w.Bits,
		MTU: wanLinkMTU,
		// IPv4 only unless -ipv6: no IPv6 router solicitations or MLD
		// reports in the tunnel or the counters. With -ipv6 the
		// gateways and the router forward IPv6 (and so solicit no
		// routers).
		IPv4Only:       !ipv6,
		IPv6Forwarding: ipv6,
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
		// MAC itself). The router knows nothing of 10.0.0.0/8 (nor of
		// fd00::/8): clear traffic between the sites could not cross
		// it.
		exampleenv.Route{NS: n.GwA, Dst: netip.PrefixFrom(w.GwB, w.GwB.BitLen()), Via: w.RouterA},
		exampleenv.Route{NS: n.GwB, Dst: netip.PrefixFrom(w.GwA, w.GwA.BitLen()), Via: w.RouterB},
		// Site B's own routing: 10.3.0.0/24 is behind hostB.
		exampleenv.Route{NS: n.GwB, Dst: siteC, Via: hostBAddr},
	); err != nil {
		return nil, err
	}
	if !ipv6 {
		return n, nil
	}
	// The sites' IPv6: an address at each end of the two LAN links, a
	// static neighbour for the other end, and the hosts' default
	// routes via their gateways.
	for _, l := range []struct {
		a, b         *topo.Link
		addrA, addrB netip.Addr
	}{{n.HostAEth, n.GwALAN, hostAAddr6, gwALAN6}, {n.GwBLAN, n.HostBEth, gwBLAN6, hostBAddr6}} {
		for _, s := range []struct {
			l, other  *topo.Link
			own, peer netip.Addr
		}{{l.a, l.b, l.addrA, l.addrB}, {l.b, l.a, l.addrB, l.addrA}} {
			if err := s.l.AddAddr(netip.PrefixFrom(s.own, 64)); err != nil {
				return nil, err
			}
			if err := s.l.SetNeighbour(s.peer, s.other.MAC); err != nil {
				return nil, err
			}
		}
	}
	any6 := netip.MustParsePrefix("::/0")
	if err := exampleenv.AddRoutes(
		exampleenv.Route{NS: n.HostA, Dst: any6, Via: gwALAN6},
		exampleenv.Route{NS: n.HostB, Dst: any6, Via: gwBLAN6},
	); err != nil {
		return nil, err
	}
	return n, nil
}
