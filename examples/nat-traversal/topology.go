//go:build linux

package main

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/espxdp/espxdp/internal/topo"
)

// The example's addresses. gwA sits on a private network behind the
// NAT; gwB has a public address, as does the NAT's outside.
var (
	hostAAddr = netip.MustParseAddr("10.1.0.2")
	gwALan    = netip.MustParseAddr("10.1.0.1")
	gwAWan    = netip.MustParseAddr("192.168.1.2") // private
	natInside = netip.MustParseAddr("192.168.1.1")
	natPublic = netip.MustParseAddr("203.0.113.1") // what gwB sees
	gwBWan    = netip.MustParseAddr("203.0.113.2")
	gwBLan    = netip.MustParseAddr("10.2.0.1")
	hostBAddr = netip.MustParseAddr("10.2.0.2")

	siteA   = netip.MustParsePrefix("10.1.0.0/24")
	siteB   = netip.MustParsePrefix("10.2.0.0/24")
	private = netip.MustParsePrefix("192.168.0.0/16")
)

// wanMTU is the MTU of the links between the gateways, and so the SAs'
// path MTU.
const wanMTU = 1500

// network is hostA — gwA — nat — gwB — hostB, each a namespace.
type network struct {
	hostA, gwA, nat, gwB, hostB *topo.NS
	// The gateways' WAN ports (where the engines run) and the NAT's
	// ports facing them (their next hops).
	gwAWan, gwBWan, natIn, natOut *topo.Link
}

// buildNetwork creates the namespaces and links of the example and the
// NAT's nftables ruleset. Everything belongs to tp, whose Close removes
// it (the ruleset dies with the NAT's namespace).
func buildNetwork(ctx context.Context, tp *topo.Topology) (*network, error) {
	n := &network{}
	var err error
	for _, p := range []struct {
		ns    **topo.NS
		label string
	}{{&n.hostA, "hostA"}, {&n.gwA, "gwA"}, {&n.nat, "nat"}, {&n.gwB, "gwB"}, {&n.hostB, "hostB"}} {
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
	if n.gwAWan, n.natIn, err = link(n.gwA, "wan0", gwAWan, n.nat, "in0", natInside); err != nil {
		return nil, err
	}
	if n.natOut, n.gwBWan, err = link(n.nat, "out0", natPublic, n.gwB, "wan0", gwBWan); err != nil {
		return nil, err
	}
	if _, _, err = link(n.gwB, "lan0", gwBLan, n.hostB, "eth0", hostBAddr); err != nil {
		return nil, err
	}
	for _, ns := range []*topo.NS{n.gwA, n.nat, n.gwB} {
		if err := ns.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
			return nil, err
		}
	}
	// gwA's kernel (the keepalives) reaches the internet through the
	// NAT. gwB has no route to gwA's private network: it only ever
	// sees the NAT's public address.
	if err := n.gwA.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), natInside, "", 0); err != nil {
		return nil, err
	}
	// The NAT: masquerade everything leaving on the outside interface,
	// like a home router. nft takes its arguments joined by spaces.
	for _, args := range [][]string{
		{"add", "table", "ip", "natt"},
		{"add", "chain", "ip", "natt", "postrouting", "{ type nat hook postrouting priority srcnat ; policy accept ; }"},
		{"add", "rule", "ip", "natt", "postrouting", "oifname", "out0", "counter", "masquerade"},
	} {
		if _, err := n.nat.Exec(ctx, "nft", args...); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// routeHosts points each host at its gateway for the far site, with the
// tunnel's plaintext MTU on the route so that TCP picks a segment size
// that fits through ESP-in-UDP without fragmenting.
func routeHosts(n *network, mtu int) error {
	if err := n.hostA.AddRoute(siteB, gwALan, "", mtu); err != nil {
		return fmt.Errorf("route on hostA: %w", err)
	}
	if err := n.hostB.AddRoute(siteA, gwBLan, "", mtu); err != nil {
		return fmt.Errorf("route on hostB: %w", err)
	}
	return nil
}
