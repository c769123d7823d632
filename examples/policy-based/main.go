//go:build linux

// Command policy-based runs a crypto-map style IPsec gateway pair: each
// gateway is an espxdp engine with AF_XDP on its LAN and WAN interfaces
// and an SPD that decides, packet by packet, what is protected (ESP
// tunnel mode, AES-GCM-256, random keys), what passes in clear, and
// what still needs an SA (an acquire event for the IKE daemon). It
// builds the topology in network namespaces
//
//	hostA ── gwA ── wan router ── gwB ── hostB
//
// and shows, with counters and a packet counter on the wan router:
// pings bypass the tunnel in clear, a TCP transfer crosses it as ESP
// only, traffic for a site without an SA raises an acquire and is
// dropped, and traffic outside the protected prefixes never enters the
// engine. Everything it creates is removed on exit, on failure and on
// Ctrl-C. It needs root.
//
//	sudo go run ./examples/policy-based [-size 8388608] [-pings 5] [-transform aes256gcm16]
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

// Policy names, as the test looks them up.
const (
	polBypassICMP = "10 icmp-in-clear"
	polAtoB       = "20 site-A-to-B"
	polAtoC       = "30 site-A-to-C"
	polBtoA       = "20 site-B-to-A"
)

// Options tune a run: the ESP transform, the echo requests, the bytes
// of the TCP transfer hostA → hostB, and the bound of the whole run.
type Options = exampleenv.Workload

// GatewayStats are one gateway's counters after the run.
type GatewayStats struct {
	Out, In sa.Stats
	Engine  xdp.EngineStats
}

// Result is what a run measured.
type Result struct {
	PlaintextMTU int
	// BypassPing: hostA → hostB, ICMP, sent in clear by policy.
	BypassPing topo.PingResult
	// Transfer: TCP hostA → hostB, protected.
	Transfer topo.TransferResult
	// SiteCPing: hostA → 10.3.0.1, a protect policy without an SA.
	SiteCPing topo.PingResult
	// Acquires are the acquire events the gateways raised.
	Acquires []sa.Event
	// OutsidePing: hostA → the wan router, outside the protected
	// prefixes: the engine never sees it.
	OutsidePing topo.PingResult
	// Wire is what the wan router saw on its link to gwA.
	Wire     WireCounts
	GwA, GwB GatewayStats
	// Quiescent reports that the counters stopped moving before they
	// were read.
	Quiescent bool
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

	// The SAs for site A ↔ site B, each carrying its traffic selector.
	abOut, abIn, err := newSAPair("gwA-to-gwB", spiAtoB, tr, gwAWAN, gwBWAN, wanLinkMTU, sa.Selector{Src: siteA, Dst: siteB})
	if err != nil {
		return res, err
	}
	baOut, baIn, err := newSAPair("gwB-to-gwA", spiBtoA, tr, gwBWAN, gwAWAN, wanLinkMTU, sa.Selector{Src: siteB, Dst: siteA})
	if err != nil {
		return res, err
	}
	res.PlaintextMTU = min(abOut.PlaintextMTU(), baOut.PlaintextMTU())

	// Scaffolding: the namespaces; removed however run ends.
	env := exampleenv.Begin(ctx, "pol", bound)
	defer func() {
		res.Namespaces, _, err = env.End(err)
		fmt.Fprintf(w, "removed %d namespaces\n", len(res.Namespaces))
	}()
	ctx = env.Ctx
	n, err := buildNetwork(env.Topo)
	if err != nil {
		return res, err
	}

	// The IKE daemon's end: events arrive on a channel, never blocking
	// the data path.
	events := make(chan sa.Event, 64)
	onEvent := sa.EventChannel(events, nil)

	// gwA's crypto map: ICMP to site B in clear, everything else to
	// site B protected, site C protected but not negotiated yet.
	gwA, err := startGateway(n.GwA, gatewayConfig{
		Name: "gwA", LAN: "lan", WAN: "wan", LANNextHop: n.HostAEth.MAC, WANNextHop: n.MidA.MAC,
		Local: gwAWAN, Protected: []netip.Prefix{siteB, siteC}, ClampMSS: res.PlaintextMTU - 40,
		Policies: []*sa.Policy{
			{Name: polBypassICMP, Selector: sa.Selector{Src: siteA, Dst: siteB, Proto: 1}, Action: sa.Bypass},
			{Name: polAtoB, Selector: sa.Selector{Src: siteA, Dst: siteB}, Action: sa.Protect, SA: abOut},
			{Name: polAtoC, Selector: sa.Selector{Src: siteA, Dst: siteC}, Action: sa.Protect},
		},
		SAs:    []*sa.SA{abOut, baIn},
		Events: onEvent,
	})
	if err != nil {
		return res, err
	}
	defer gwA.Close()
	// gwB mirrors it for site A.
	gwB, err := startGateway(n.GwB, gatewayConfig{
		Name: "gwB", LAN: "lan", WAN: "wan", LANNextHop: n.HostBEth.MAC, WANNextHop: n.MidB.MAC,
		Local: gwBWAN, Protected: []netip.Prefix{siteA}, ClampMSS: res.PlaintextMTU - 40,
		Policies: []*sa.Policy{
			{Name: polBypassICMP, Selector: sa.Selector{Src: siteB, Dst: siteA, Proto: 1}, Action: sa.Bypass},
			{Name: polBtoA, Selector: sa.Selector{Src: siteB, Dst: siteA}, Action: sa.Protect, SA: baOut},
		},
		SAs:    []*sa.SA{baOut, abIn},
		Events: onEvent,
	})
	if err != nil {
		return res, err
	}
	defer gwB.Close()
	fmt.Fprintf(w, "policy-based: hostA %v ── gwA %v ══ %s ESP ══ gwB %v ── hostB %v\n",
		hostAAddr, gwAWAN, tr, gwBWAN, hostBAddr)
	fmt.Fprintf(w, "  plaintext MTU %d: TCP MSS clamped to %d by both gateways\n", res.PlaintextMTU, res.PlaintextMTU-40)
	printPolicies(w, "gwA", gwA.SPD)
	printPolicies(w, "gwB", gwB.SPD)

	// An eavesdropper on the wan router's link to gwA.
	tap, err := startTap(n.MidA)
	if err != nil {
		return res, err
	}
	defer tap.Close()

	// 1. ICMP matches the bypass policy: it crosses in clear.
	if res.BypassPing, err = topo.Ping(n.HostA, hostBAddr, opts.Pings, 56, 50*time.Millisecond, 2*time.Second); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "\n1. ping %v from hostA (policy %q): %d/%d replies\n", hostBAddr, polBypassICMP, res.BypassPing.Received, res.BypassPing.Sent)

	// 2. TCP matches the protect policy: it crosses as ESP only.
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.Transfer, err = topo.Transfer(ctx, n.HostB, netip.AddrPortFrom(hostBAddr, 5001), n.HostA, opts.Size, 1, nil)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return res, err
	}
	fmt.Fprintf(w, "2. TCP transfer hostA → %v:5001 (policy %q): %d bytes intact in %v, %.2f Gbit/s, MSS %d\n",
		hostBAddr, polAtoB, res.Transfer.Received, res.Transfer.Duration.Round(time.Millisecond), res.Transfer.Gbps(), res.Transfer.ClientMSS)

	// 3. Site C: protect policy, no SA. The engine drops the packets
	// (DropAcquire) and raises one acquire per policy and second.
	if res.SiteCPing, err = topo.Ping(n.HostA, hostCAddr, opts.Pings, 56, 50*time.Millisecond, 300*time.Millisecond); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "3. ping %v from hostA (policy %q): %d/%d replies\n", hostCAddr, polAtoC, res.SiteCPing.Received, res.SiteCPing.Sent)
	timeout := time.After(500 * time.Millisecond)
collect:
	for {
		select {
		case e := <-events:
			res.Acquires = append(res.Acquires, e)
			if e.Kind == sa.EventAcquire {
				fmt.Fprintf(w, "   IKE daemon receives: %s\n", describeAcquire(e))
			} else {
				fmt.Fprintf(w, "   IKE daemon receives: %v for SA %s\n", e.Kind, e.Name)
			}
		case <-timeout:
			break collect
		}
	}

	// 4. Outside the protected prefixes: the XDP program passes the
	// packets to gwA's kernel, which routes them as usual.
	if res.OutsidePing, err = topo.Ping(n.HostA, routerAWAN, opts.Pings, 56, 50*time.Millisecond, 2*time.Second); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "4. ping %v (the wan router, not a protected prefix): %d/%d replies\n", routerAWAN, res.OutsidePing.Received, res.OutsidePing.Sent)

	// Counters, once the last packets have landed.
	res.Quiescent = exampleenv.WaitStable(ctx, 3*time.Second, 100*time.Millisecond, 1, func() string {
		v := fmt.Sprint(tap.Counts())
		for _, s := range []*sa.SA{abOut, abIn, baOut, baIn} {
			st := s.Stats()
			v += fmt.Sprint(st.EncapsPkts, st.DecapsPkts)
		}
		return v
	})
	tap.Close()
	res.Wire = tap.Counts()
	res.GwA = GatewayStats{Out: abOut.Stats(), In: baIn.Stats(), Engine: gwA.Engine.Stats()}
	res.GwB = GatewayStats{Out: baOut.Stats(), In: abIn.Stats(), Engine: gwB.Engine.Stats()}
	if res.WireDropsAtoB, res.WireDropsBtoA, err = n.WANDrops(); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "\nwan router, link to gwA: %d ESP packets; in clear between the sites: %d ICMP, %d TCP, %d other",
		res.Wire.ESP, res.Wire.ClearICMP, res.Wire.ClearTCP, res.Wire.ClearOther)
	if res.Wire.Dropped > 0 {
		fmt.Fprintf(w, " (%d frames not counted: capture buffer full)", res.Wire.Dropped)
	}
	fmt.Fprintln(w)
	for _, g := range []struct {
		gw *gateway
		st GatewayStats
	}{{gwA, res.GwA}, {gwB, res.GwB}} {
		ws := g.st.Engine.Workers[0]
		fmt.Fprintln(w)
		if err := show.Text(w, &show.Report{
			Title:   fmt.Sprintf("%s  crypto map on lan/wan  local %v", g.gw.Name, g.st.Out.Local),
			SAs:     []sa.Stats{g.st.Out, g.st.In},
			Unowned: &g.st.Engine.Processor.Drops,
			Extra: []show.Counter{
				{Name: "engine: from the LAN (protected prefixes)", Value: ws.PlainRX},
				{Name: "engine: encrypted onto the WAN", Value: ws.Encrypted},
				{Name: "engine: bypassed in clear (SPD bypass)", Value: ws.Bypassed},
				{Name: "engine: ESP from the WAN", Value: ws.CipherRX},
				{Name: "engine: decrypted onto the LAN", Value: ws.Decrypted},
				{Name: "engine: dropped (SA processor)", Value: ws.SADrops},
				{Name: "engine: TCP MSS clamped", Value: ws.MSSClamped},
				{Name: "LAN XDP: passed to the kernel (not protected)", Value: g.st.Engine.PlainProgram.PassedOther},
			},
		}); err != nil {
			return res, err
		}
	}
	fmt.Fprintf(w, "\nlost between the gateways (interface drop counters): %d gwA → gwB, %d gwB → gwA\n\n", res.WireDropsAtoB, res.WireDropsBtoA)
	switch {
	case res.BypassPing.Received != res.BypassPing.Sent:
		return res, fmt.Errorf("only %d of %d bypassed pings answered", res.BypassPing.Received, res.BypassPing.Sent)
	case res.Wire.ClearTCP != 0:
		return res, fmt.Errorf("the wan router saw %d TCP packets in clear", res.Wire.ClearTCP)
	case res.SiteCPing.Received != 0 || len(res.Acquires) == 0:
		return res, fmt.Errorf("site C: %d pings answered, %d acquire events; want none and at least one", res.SiteCPing.Received, len(res.Acquires))
	case res.OutsidePing.Received != res.OutsidePing.Sent:
		return res, fmt.Errorf("only %d of %d pings outside the protected prefixes answered", res.OutsidePing.Received, res.OutsidePing.Sent)
	}
	return res, nil
}

func main() {
	var opts Options
	opts.RegisterFlags(flag.CommandLine, "echo requests per demonstration")
	flag.Parse()
	// Ctrl-C cancels the run; its deferred cleanups remove everything.
	exampleenv.Main(exampleenv.Command{Name: "policy-based", RootFor: "network namespaces, XDP, AF_XDP",
		Interrupted: "interrupted; everything created was removed"}, func(ctx context.Context) error {
		_, err := run(ctx, os.Stdout, opts)
		return err
	})
}
