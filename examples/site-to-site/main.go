//go:build linux

// Command site-to-site runs a route-based IPsec VPN between two sites,
// each gateway an espxdp engine with AF_XDP on its WAN interface and a
// TUN device as its tunnel interface. The kernel routes the remote
// site's subnet into the TUN; the engine encrypts what comes out of it
// (ESP tunnel mode, AES-GCM-256, random keys) and writes what it
// decrypts back into it. It builds the whole topology in network
// namespaces
//
//	hostA ── gwA ── wan router ── gwB ── hostB
//
// pings hostB from hostA, moves a checksummed TCP stream across, shows
// that reaching one more subnet takes only a route, and prints both
// gateways' SA counters and what a packet counter on the wan router
// saw: ESP only. With -ipv6 the wan, and so ESP, runs over IPv6, and
// both sites speak IPv4 and IPv6: the same tunnel carries both, pinged
// and with a TCP stream each, the IPv6 one from hostB to hostA.
// Everything it creates is removed on exit, on failure and on Ctrl-C.
// It needs root.
//
//	sudo go run ./examples/site-to-site [-ipv6] [-size 8388608] [-pings 5] [-transform aes256gcm16]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/espxdp/espxdp/internal/exampleenv"
	"github.com/espxdp/espxdp/internal/show"
	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

// SPIs of the two directions (an IKE daemon would pick random ones).
const (
	spiAtoB = 0xa0b00001
	spiBtoA = 0xb0a00001
)

// Options tune a run: the ESP transform, the echo requests, the bytes
// of the TCP transfer hostA → hostB, and the bound of the whole run;
// and the wan's address family.
type Options struct {
	exampleenv.Workload
	// IPv6 puts IPv6 addresses on the wan (the SAs' outer addresses)
	// and adds IPv6 to both sites beside IPv4.
	IPv6 bool
}

// GatewayStats are one gateway's counters after the run.
type GatewayStats struct {
	Out, In sa.Stats
	Engine  xdp.EngineStats
	// TUNOversize counts packets ServeTUN dropped as too big.
	TUNOversize uint64
}

// Result is what a run measured.
type Result struct {
	PlaintextMTU int
	Ping         topo.PingResult
	Transfer     topo.TransferResult
	// Ping6 (hostA → hostB) and Transfer6 (hostB → hostA) are the
	// IPv6 traffic between the sites, with -ipv6 only.
	Ping6     topo.PingResult
	Transfer6 topo.TransferResult
	// SiteCBefore and SiteCAfter ping 10.3.0.1 before and after the
	// route into the tunnel was added on gwA.
	SiteCBefore, SiteCAfter topo.PingResult
	GwA, GwB                GatewayStats
	// Quiescent reports that the counters stopped moving before they
	// were read.
	Quiescent bool
	// Wire is what the wan router saw on its link to gwA, counted from
	// before the gateways started to after the counters settled.
	Wire WireCounts
	// WireDropsAtoB and WireDropsBtoA are the packets the interfaces
	// between the gateways dropped, by direction (see
	// exampleenv.Line.WANDrops).
	WireDropsAtoB, WireDropsBtoA uint64
	// Namespaces lists what the run created (all removed when it
	// returns).
	Namespaces []*topo.NS
}

func run(ctx context.Context, w io.Writer, opts Options) (res *Result, err error) {
	tr, bound, err := opts.Parse()
	if err != nil {
		return nil, err
	}
	res = &Result{}

	// Scaffolding: the namespaces; removed however run ends.
	env := exampleenv.Begin(ctx, "s2s", bound)
	defer func() {
		res.Namespaces, _, err = env.End(err)
		fmt.Fprintf(w, "removed %d namespaces\n", len(res.Namespaces))
	}()
	ctx = env.Ctx
	wan := wan4
	if opts.IPv6 {
		wan = wan6
	}
	n, err := buildNetwork(env.Topo, wan, opts.IPv6)
	if err != nil {
		return res, err
	}
	// An eavesdropper on the wan router, from before the first ESP
	// packet.
	tap, err := startTap(n.MidA)
	if err != nil {
		return res, err
	}
	defer tap.Close()

	// The VPN: one SA pair per direction, a gateway per site. The SAs'
	// outer addresses are the gateways' wan addresses, IPv4 or IPv6;
	// the inner packets are whatever the TUN carries, IPv4 and IPv6.
	abOut, abIn, err := newSAPair("gwA-to-gwB", spiAtoB, tr, wan.GwA, wan.GwB, wanLinkMTU)
	if err != nil {
		return res, err
	}
	baOut, baIn, err := newSAPair("gwB-to-gwA", spiBtoA, tr, wan.GwB, wan.GwA, wanLinkMTU)
	if err != nil {
		return res, err
	}
	res.PlaintextMTU = abOut.PlaintextMTU()
	gwA, err := startGateway(n.GwA, gatewayConfig{Name: "gwA", WAN: "wan", WANNextHop: n.MidA.MAC,
		Local: wan.GwA, Out: abOut, In: baIn, TUN: "ipsec0", TUNAddr: tunAddrA})
	if err != nil {
		return res, err
	}
	defer gwA.Close()
	gwB, err := startGateway(n.GwB, gatewayConfig{Name: "gwB", WAN: "wan", WANNextHop: n.MidB.MAC,
		Local: wan.GwB, Out: baOut, In: abIn, TUN: "ipsec0", TUNAddr: tunAddrB})
	if err != nil {
		return res, err
	}
	defer gwB.Close()
	if err := gwA.Up(); err != nil {
		return res, err
	}
	if err := gwB.Up(); err != nil {
		return res, err
	}

	// Route-based: each site's subnet is routed into the other
	// gateway's tunnel interface. That is the whole "policy".
	if err := n.GwA.AddRoute(siteB, netip.Addr{}, gwA.TUN.Name(), 0); err != nil {
		return res, err
	}
	if err := n.GwB.AddRoute(siteA, netip.Addr{}, gwB.TUN.Name(), 0); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "site-to-site: hostA %v ── gwA %v ══ %s ESP ══ gwB %v ── hostB %v\n", hostAAddr, wan.GwA, tr, wan.GwB, hostBAddr)
	fmt.Fprintf(w, "  gwA: ip route %v dev %s (TUN, mtu %d)   gwB: ip route %v dev %s (TUN, mtu %d)\n",
		siteB, gwA.TUN.Name(), res.PlaintextMTU, siteA, gwB.TUN.Name(), baOut.PlaintextMTU())
	if opts.IPv6 {
		// The same TUNs carry IPv6: the routes are all it takes.
		if err := n.GwA.AddRoute(siteB6, netip.Addr{}, gwA.TUN.Name(), 0); err != nil {
			return res, err
		}
		if err := n.GwB.AddRoute(siteA6, netip.Addr{}, gwB.TUN.Name(), 0); err != nil {
			return res, err
		}
		fmt.Fprintf(w, "  gwA: ip -6 route %v dev %s   gwB: ip -6 route %v dev %s   (hostA %v, hostB %v)\n",
			siteB6, gwA.TUN.Name(), siteA6, gwB.TUN.Name(), hostAAddr6, hostBAddr6)
	}

	// Traffic 1: ping.
	if res.Ping, err = topo.Ping(n.HostA, hostBAddr, opts.Pings, 56, 50*time.Millisecond, 2*time.Second); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "ping %v from hostA: %d/%d replies%s\n", hostBAddr, res.Ping.Received, res.Ping.Sent, avgRTT(res.Ping))
	if res.Ping.Received != res.Ping.Sent {
		return res, fmt.Errorf("only %d of %d pings answered", res.Ping.Received, res.Ping.Sent)
	}

	// Traffic 2: a TCP transfer, checksummed at both ends.
	if err := ctx.Err(); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "TCP transfer of %d bytes hostA → %v:5001 ...\n", opts.Size, hostBAddr)
	res.Transfer, err = topo.Transfer(ctx, n.HostB, netip.AddrPortFrom(hostBAddr, 5001), n.HostA, opts.Size, 1, nil)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return res, err
	}
	printTransfer(w, res.Transfer)

	// Traffic 2b (-ipv6): the same over IPv6 inside, the stream the
	// other way, from hostB to hostA.
	if opts.IPv6 {
		if res.Ping6, err = topo.Ping(n.HostA, hostBAddr6, opts.Pings, 56, 50*time.Millisecond, 2*time.Second); err != nil {
			return res, err
		}
		fmt.Fprintf(w, "ping %v from hostA: %d/%d replies%s\n", hostBAddr6, res.Ping6.Received, res.Ping6.Sent, avgRTT(res.Ping6))
		if res.Ping6.Received != res.Ping6.Sent {
			return res, fmt.Errorf("only %d of %d IPv6 pings answered", res.Ping6.Received, res.Ping6.Sent)
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		dst := netip.AddrPortFrom(hostAAddr6, 5002)
		fmt.Fprintf(w, "TCP transfer of %d bytes hostB → %v ...\n", opts.Size, dst)
		res.Transfer6, err = topo.Transfer(ctx, n.HostA, dst, n.HostB, opts.Size, 2, nil)
		if err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (%v)", ctx.Err(), err)
			}
			return res, err
		}
		printTransfer(w, res.Transfer6)
	}

	// Traffic 3: another subnet of site B. Without a route on gwA it is
	// unreachable; one route into the TUN is all it takes.
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if res.SiteCBefore, err = topo.Ping(n.HostA, hostBSiteC, 1, 56, 0, 300*time.Millisecond); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "ping %v (site B's second subnet, no route on gwA): %d/%d replies\n", hostBSiteC, res.SiteCBefore.Received, res.SiteCBefore.Sent)
	if err := n.GwA.AddRoute(siteC, netip.Addr{}, gwA.TUN.Name(), 0); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "  gwA: ip route add %v dev %s\n", siteC, gwA.TUN.Name())
	if res.SiteCAfter, err = topo.Ping(n.HostA, hostBSiteC, 3, 56, 50*time.Millisecond, 2*time.Second); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "ping %v: %d/%d replies%s\n", hostBSiteC, res.SiteCAfter.Received, res.SiteCAfter.Sent, avgRTT(res.SiteCAfter))

	// Counters, once the last ACKs have landed.
	res.Quiescent = exampleenv.WaitStable(ctx, 3*time.Second, 100*time.Millisecond, 1, func() string {
		var v []uint64
		for _, s := range []*sa.SA{abOut, abIn, baOut, baIn} {
			st := s.Stats()
			v = append(v, st.EncapsPkts, st.DecapsPkts)
		}
		return fmt.Sprint(v, tap.Counts())
	})
	tap.Close()
	res.Wire = tap.Counts()
	res.GwA = gatewayStats(gwA)
	res.GwB = gatewayStats(gwB)
	if res.WireDropsAtoB, res.WireDropsBtoA, err = n.WANDrops(); err != nil {
		return res, err
	}
	for _, g := range []struct {
		gw *gateway
		st GatewayStats
		ns *topo.NS
	}{{gwA, res.GwA, n.GwA}, {gwB, res.GwB, n.GwB}} {
		ws := g.st.Engine.Workers[0]
		fmt.Fprintln(w)
		if err := show.Text(w, &show.Report{
			Title: fmt.Sprintf("%s  interface: %s (TUN)  wan: %s", g.gw.Name, g.gw.TUN.Name(), g.st.Out.Local),
			SAs:   []sa.Stats{g.st.Out, g.st.In},
			Extra: []show.Counter{
				{Name: "engine: ESP received", Value: ws.CipherRX},
				{Name: "engine: decrypted into the TUN", Value: ws.Decrypted},
				{Name: "engine: read from the TUN", Value: ws.Sent},
				{Name: "engine: encrypted onto the WAN", Value: ws.Encrypted},
				{Name: "engine: SA drops", Value: ws.SADrops},
				{Name: "ServeTUN: oversize drops", Value: g.st.TUNOversize},
			},
		}); err != nil {
			return res, err
		}
	}
	fmt.Fprintf(w, "\nlost between the gateways (interface drop counters): %d gwA → gwB, %d gwB → gwA\n", res.WireDropsAtoB, res.WireDropsBtoA)
	fmt.Fprintf(w, "wan router, link to gwA: %d ESP packets; in clear between the sites: %d; other: %d (link-local control: %d)",
		res.Wire.ESP, res.Wire.Clear, res.Wire.Other, res.Wire.LinkLocal)
	if res.Wire.Dropped > 0 {
		fmt.Fprintf(w, " (%d frames not counted: capture buffer full)", res.Wire.Dropped)
	}
	fmt.Fprint(w, "\n\n")
	switch {
	case !res.Transfer.Intact(), opts.IPv6 && !res.Transfer6.Intact():
		return res, topo.ErrCorrupt
	case res.Wire.Clear != 0 || res.Wire.Other != 0:
		return res, fmt.Errorf("the wan router saw %d packets in clear between the sites and %d other packets, want ESP only", res.Wire.Clear, res.Wire.Other)
	}
	if res.SiteCAfter.Received != res.SiteCAfter.Sent {
		return res, fmt.Errorf("only %d of %d pings to %v answered after adding the route", res.SiteCAfter.Received, res.SiteCAfter.Sent, hostBSiteC)
	}
	return res, nil
}

func printTransfer(w io.Writer, r topo.TransferResult) {
	fmt.Fprintf(w, "  %d bytes intact (SHA-256 %x...) in %v, %.2f Gbit/s, MSS %d (PMTU discovery against the TUN's MTU)\n",
		r.Received, r.ReceivedSum[:6], r.Duration.Round(time.Millisecond), r.Gbps(), r.ClientMSS)
}

func gatewayStats(g *gateway) GatewayStats {
	return GatewayStats{Out: g.Out.Stats(), In: g.In.Stats(), Engine: g.Engine.Stats(), TUNOversize: g.TUN.OversizeDrops()}
}

func avgRTT(p topo.PingResult) string {
	if len(p.RTTs) == 0 {
		return ""
	}
	var sum time.Duration
	for _, r := range p.RTTs {
		sum += r
	}
	return fmt.Sprintf(", average rtt %v", (sum / time.Duration(len(p.RTTs))).Round(time.Microsecond))
}

func main() {
	var opts Options
	opts.RegisterFlags(flag.CommandLine, "echo requests from hostA to hostB")
	flag.BoolVar(&opts.IPv6, "ipv6", false, "run the wan, and so ESP, over IPv6, and add IPv6 to both sites beside IPv4")
	flag.Parse()
	// Ctrl-C cancels the run; its deferred cleanups remove everything.
	exampleenv.Main(exampleenv.Command{Name: "site-to-site", RootFor: "network namespaces, XDP, AF_XDP, TUN",
		Interrupted: "interrupted; everything created was removed"}, func(ctx context.Context) error {
		_, err := run(ctx, os.Stdout, opts)
		return err
	})
}
