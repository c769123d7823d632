//go:build linux

package main

// Scaffolding: the namespaces that stand in for two sites and the
// Internet between them. Nothing here is espxdp API.

import (
	"encoding/json"
	"fmt"
	"net/netip"

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

// network is the built topology.
type network struct {
	hostA, gwA, router, gwB, hostB *topo.NS
	// gwAWAN and gwBWAN are the gateways' WAN interfaces; routerA and
	// routerB the router's ends facing them (their MACs are the
	// gateways' next hops).
	gwAWAN, gwBWAN, routerA, routerB *topo.Link
}

// buildNetwork creates the five namespaces, links, addresses, routes
// and static neighbours. Everything belongs to tp, whose Close removes
// it.
func buildNetwork(tp *topo.Topology) (*network, error) {
	n := &network{}
	var err error
	for _, x := range []struct {
		ns    **topo.NS
		label string
	}{{&n.hostA, "hostA"}, {&n.gwA, "gwA"}, {&n.router, wanRouterNS}, {&n.gwB, "gwB"}, {&n.hostB, "hostB"}} {
		if *x.ns, err = tp.AddNS(x.label); err != nil {
			return nil, err
		}
		// IPv4 only: no IPv6 router solicitations or MLD reports in
		// the tunnel or the counters.
		for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
			if err := (*x.ns).Sysctl(k, "1"); err != nil {
				return nil, err
			}
		}
	}
	for _, ns := range []*topo.NS{n.gwA, n.router, n.gwB} {
		if err := ns.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
			return nil, err
		}
	}
	// link joins a and b with a veth pair, addresses both ends and
	// installs static neighbours both ways (no ARP needed anywhere).
	link := func(a *topo.NS, nameA string, addrA netip.Addr, b *topo.NS, nameB string, addrB netip.Addr, bits int) (*topo.Link, *topo.Link, error) {
		la, lb, err := tp.AddVeth(a, nameA, b, nameB, topo.VethOptions{MTU: wanLinkMTU})
		if err != nil {
			return nil, nil, err
		}
		for _, s := range []struct {
			l          *topo.Link
			own, other netip.Addr
			otherMAC   *topo.Link
		}{{la, addrA, addrB, lb}, {lb, addrB, addrA, la}} {
			if err := s.l.AddAddr(netip.PrefixFrom(s.own, bits)); err != nil {
				return nil, nil, err
			}
			if err := s.l.SetNeighbour(s.other, s.otherMAC.MAC); err != nil {
				return nil, nil, err
			}
		}
		return la, lb, nil
	}
	if _, _, err = link(n.hostA, "eth0", hostAAddr, n.gwA, "lan", gwALAN, 24); err != nil {
		return nil, err
	}
	if n.gwAWAN, n.routerA, err = link(n.gwA, "wan", gwAWAN, n.router, "to-gwA", routerAWAN, 24); err != nil {
		return nil, err
	}
	if n.routerB, n.gwBWAN, err = link(n.router, "to-gwB", routerBWAN, n.gwB, "wan", gwBWAN, 24); err != nil {
		return nil, err
	}
	if _, _, err = link(n.gwB, "lan", gwBLAN, n.hostB, "eth0", hostBAddr, 24); err != nil {
		return nil, err
	}
	// hostB also answers on 10.3.0.1, a subnet of site B that gwA does
	// not route into the tunnel at first.
	if _, err := n.hostB.IP("addr", "add", netip.PrefixFrom(hostBSiteC, 32).String(), "dev", "lo"); err != nil {
		return nil, err
	}
	any4 := netip.MustParsePrefix("0.0.0.0/0")
	for _, r := range []struct {
		ns  *topo.NS
		dst netip.Prefix
		via netip.Addr
	}{
		{n.hostA, any4, gwALAN},
		{n.hostB, any4, gwBLAN},
		// The gateways reach each other through the router (IKE would
		// use this route; the engine writes its frames to the router's
		// MAC itself). The router knows nothing of 10.0.0.0/8: clear
		// traffic between the sites could not cross it.
		{n.gwA, netip.PrefixFrom(gwBWAN, 32), routerAWAN},
		{n.gwB, netip.PrefixFrom(gwAWAN, 32), routerBWAN},
		// Site B's own routing: 10.3.0.0/24 is behind hostB.
		{n.gwB, siteC, hostBAddr},
	} {
		if err := r.ns.AddRoute(r.dst, r.via, "", 0); err != nil {
			return nil, fmt.Errorf("route in %s: %w", r.ns.Label, err)
		}
	}
	return n, nil
}

// linkDrops returns the packets the interface dropped on receive and on
// transmit, from its counters.
func linkDrops(ns *topo.NS, dev string) (rx, tx uint64, err error) {
	out, err := ns.IP("-j", "-s", "link", "show", "dev", dev)
	if err != nil {
		return 0, 0, err
	}
	var links []struct {
		Stats struct {
			RX struct{ Dropped uint64 } `json:"rx"`
			TX struct{ Dropped uint64 } `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		return 0, 0, fmt.Errorf("parse ip -s link show %s: %v", dev, err)
	}
	return links[0].Stats.RX.Dropped, links[0].Stats.TX.Dropped, nil
}

// wireDrops sums the drops the interfaces between the gateways counted,
// per direction. A veth whose receiver runs XDP drops frames when the
// receiver's ring is full: under load (or on a busy machine) some ESP
// is lost on the way, as on any network, and TCP retransmits it.
func (n *network) wireDrops() (aToB, bToA uint64, err error) {
	type end struct {
		ns  *topo.NS
		dev string
	}
	gwA, rA, rB, gwB := end{n.gwA, "wan"}, end{n.router, "to-gwA"}, end{n.router, "to-gwB"}, end{n.gwB, "wan"}
	// In the direction gwA → gwB: gwA's wan and the router's to-gwB
	// transmit, the router's to-gwA and gwB's wan receive.
	for _, e := range []end{gwA, rA, rB, gwB} {
		rx, tx, err := linkDrops(e.ns, e.dev)
		if err != nil {
			return 0, 0, err
		}
		switch e {
		case gwA, rB:
			aToB += tx
			bToA += rx
		default:
			aToB += rx
			bToA += tx
		}
	}
	return aToB, bToA, nil
}
