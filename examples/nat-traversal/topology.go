//go:build linux

package main

import (
	"context"
	"net/netip"

	"github.com/espxdp/espxdp/internal/exampleenv"
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

// buildNetwork creates the namespaces and links of the example
// (hostA — gwA — nat — gwB — hostB, each a namespace) and the NAT's
// nftables ruleset. Everything belongs to tp, whose Close removes it
// (the ruleset dies with the NAT's namespace).
func buildNetwork(ctx context.Context, tp *topo.Topology) (*exampleenv.Line, error) {
	n, err := exampleenv.Build(tp, exampleenv.Plan{
		MidLabel: "nat",
		HostIf:   "eth0", GwLANIf: "lan0", GwWANIf: "wan0", MidAIf: "in0", MidBIf: "out0",
		HostA: hostAAddr, GwALAN: gwALan, GwAWAN: gwAWan, MidA: natInside,
		MidB: natPublic, GwBWAN: gwBWan, GwBLAN: gwBLan, HostB: hostBAddr, Bits: 24,
		MTU: wanMTU,
	})
	if err != nil {
		return nil, err
	}
	// gwA's kernel (the keepalives) reaches the internet through the
	// NAT. gwB has no route to gwA's private network: it only ever
	// sees the NAT's public address.
	if err := exampleenv.AddRoutes(exampleenv.Route{NS: n.GwA, Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: natInside}); err != nil {
		return nil, err
	}
	// The NAT: masquerade everything leaving on the outside interface,
	// like a home router. nft takes its arguments joined by spaces.
	for _, args := range [][]string{
		{"add", "table", "ip", "natt"},
		{"add", "chain", "ip", "natt", "postrouting", "{ type nat hook postrouting priority srcnat ; policy accept ; }"},
		{"add", "rule", "ip", "natt", "postrouting", "oifname", "out0", "counter", "masquerade"},
	} {
		if _, err := n.Mid.Exec(ctx, "nft", args...); err != nil {
			return nil, err
		}
	}
	return n, nil
}
