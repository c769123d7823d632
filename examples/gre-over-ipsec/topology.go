//go:build linux

package main

import (
	"fmt"
	"net/netip"

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

// network is hostA — gwA — wan — gwB — hostB, each a namespace.
type network struct {
	hostA, gwA, wan, gwB, hostB *topo.NS
	// The gateways' WAN ports (where the engines run) and the router's
	// ports facing them (their next hops).
	gwAWan, gwBWan, wanToA, wanToB *topo.Link
}

// buildNetwork creates the namespaces and links of the example. The
// gateways get their LAN and WAN addresses; their tunnel interfaces come
// later (startGateway). Everything belongs to tp, whose Close removes it.
func buildNetwork(tp *topo.Topology) (*network, error) {
	n := &network{}
	var err error
	for _, p := range []struct {
		ns    **topo.NS
		label string
	}{{&n.hostA, "hostA"}, {&n.gwA, "gwA"}, {&n.wan, "wan"}, {&n.gwB, "gwB"}, {&n.hostB, "hostB"}} {
		if *p.ns, err = tp.AddNS(p.label); err != nil {
			return nil, err
		}
	}
	// link makes a veth pair between a and b with the given addresses
	// (/24) and static neighbour entries on both ends: the gateways' WAN
	// ports run XDP, and the engine writes Ethernet headers itself.
	link := func(a *topo.NS, nameA string, addrA netip.Addr, b *topo.NS, nameB string, addrB netip.Addr) (*topo.Link, *topo.Link, error) {
		la, lb, err := tp.AddVeth(a, nameA, b, nameB, topo.VethOptions{MTU: wanMTU})
		if err != nil {
			return nil, nil, err
		}
		for _, step := range []func() error{
			func() error { return la.AddAddr(netip.PrefixFrom(addrA, 24)) },
			func() error { return lb.AddAddr(netip.PrefixFrom(addrB, 24)) },
			func() error { return la.SetNeighbour(addrB, lb.MAC) },
			func() error { return lb.SetNeighbour(addrA, la.MAC) },
		} {
			if err := step(); err != nil {
				return nil, nil, err
			}
		}
		return la, lb, nil
	}
	if _, _, err = link(n.hostA, "eth0", hostAAddr, n.gwA, "lan0", gwALan); err != nil {
		return nil, err
	}
	if n.gwAWan, n.wanToA, err = link(n.gwA, "wan0", gwAWan, n.wan, "toa", wanA); err != nil {
		return nil, err
	}
	if n.wanToB, n.gwBWan, err = link(n.wan, "tob", wanB, n.gwB, "wan0", gwBWan); err != nil {
		return nil, err
	}
	if _, _, err = link(n.gwB, "lan0", gwBLan, n.hostB, "eth0", hostBAddr); err != nil {
		return nil, err
	}
	for _, ns := range []*topo.NS{n.gwA, n.wan, n.gwB} {
		if err := ns.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
			return nil, err
		}
	}
	// The WAN is routed; the gateways reach each other through it.
	if err := n.gwA.AddRoute(netip.PrefixFrom(gwBWan, 32), wanA, "", 0); err != nil {
		return nil, err
	}
	if err := n.gwB.AddRoute(netip.PrefixFrom(gwAWan, 32), wanB, "", 0); err != nil {
		return nil, err
	}
	return n, nil
}

// routeHosts points each host at its gateway for the far site, with the
// tunnel's inner MTU on the route so that TCP picks a segment size that
// fits through GRE and ESP without fragmenting.
func routeHosts(n *network, innerMTU int) error {
	if err := n.hostA.AddRoute(siteB, gwALan, "", innerMTU); err != nil {
		return fmt.Errorf("route on hostA: %w", err)
	}
	if err := n.hostB.AddRoute(siteA, gwBLan, "", innerMTU); err != nil {
		return fmt.Errorf("route on hostB: %w", err)
	}
	return nil
}
