//go:build linux

// Command nat-traversal runs an ESP tunnel between two gateways, one of
// them behind a masquerading NAT (nftables), with espxdp's AF_XDP engine
// on both ends:
//
//	hostA ── gwA ── nat ── gwB ── hostB
//	10.1.0.2  192.168.1.2 │ 203.0.113.2  10.2.0.2
//	                 203.0.113.1 (masquerade)
//
// ESP travels in UDP port 4500 (RFC 3948, sa.Config.UDPEncap), which the
// NAT can rewrite like any UDP flow. gwA sends NAT-T keepalives (one
// 0xFF byte, 4500 → 4500) from a kernel UDP socket to keep the NAT's
// mapping alive. gwB starts without SAs: it learns where gwA is — the
// NAT's public address and mapped port — from the source of the first
// keepalive on its own kernel socket (standing in for IKEv2's NAT
// detection) and only then creates its SAs, with that address and port
// as the outbound SA's destination. The program then pings and moves a
// checksummed TCP stream through the tunnel and the NAT, counts what
// crossed the NAT's outside (no private address, only ESP-in-UDP and
// keepalives from the NAT's address), prints the SA counters with their
// UDP ports and the keepalive counts, and removes every namespace it
// made (the NAT's nftables ruleset with it), also on Ctrl-C.
//
//	sudo go run ./examples/nat-traversal [-transform aes256gcm16] [-keepalive 1s] [-size 8M]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/espxdp/espxdp/bpf"
	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/exampleenv"
	"github.com/espxdp/espxdp/internal/show"
	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

// Options are the command-line flags.
type Options struct {
	Transform string
	// Keepalive is the interval of gwA's NAT-T keepalives.
	Keepalive time.Duration
	// Pings is the number of echo requests hostA sends to hostB.
	Pings int
	// Size is the number of bytes of the TCP transfer hostA → hostB.
	Size int64
	// Timeout bounds the whole run.
	Timeout time.Duration
}

// GatewayResult is one gateway's counters at the end of the run.
type GatewayResult struct {
	Out, In sa.Stats
	// Engine sums the engine workers' counters; Program is the XDP
	// program's on the WAN port.
	Engine  xdp.EngineWorkerStats
	Program bpf.Stats
}

// Result is what a run measured.
type Result struct {
	// PlaintextMTU is the SAs' plaintext MTU, used as the TUN MTU and
	// on the hosts' routes.
	PlaintextMTU int
	// Traffic is the pings (56 bytes, and PlaintextMTU bytes) and the TCP
	// transfer hostA → hostB.
	exampleenv.Traffic
	A, B GatewayResult
	// Keepalives gwA sent and gwB's kernel socket received; Moved are
	// keepalives gwB received from another source than the first one.
	KeepalivesSent, KeepalivesReceived, KeepalivesMoved uint64
	// LearnedPeer is where gwB found gwA: the NAT's public address and
	// mapped port.
	LearnedPeer netip.AddrPort
	// Outside is what crossed the NAT's outside link.
	Outside OutsideCounts
	// NFTRuleset is the NAT's ruleset as "nft list ruleset" printed it
	// after the traffic; MasqueradedFlows is its masquerade rule's
	// packet counter, i.e. the number of connections it mapped.
	NFTRuleset       string
	MasqueradedFlows uint64
	// Namespaces are the namespaces the run created; LeftBehind the
	// names of those that still existed after cleanup.
	Namespaces []*topo.NS
	LeftBehind []string
}

func run(ctx context.Context, w io.Writer, opts Options) (res *Result, err error) {
	if err := exampleenv.CheckRoot(); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("nft"); err != nil {
		return nil, fmt.Errorf("needs nft (nftables) for the NAT: %w", err)
	}
	tr, err := esp.ParseTransform(opts.Transform)
	if err != nil {
		return nil, err
	}
	if opts.Pings < 1 || opts.Size < 1 || opts.Timeout <= 0 || opts.Keepalive <= 0 {
		return nil, fmt.Errorf("need at least one ping, one byte, a keepalive interval and a timeout (got %d, %d, %v, %v)",
			opts.Pings, opts.Size, opts.Keepalive, opts.Timeout)
	}
	res = &Result{}

	// The namespaces (and the NAT's nftables ruleset, which lives in
	// one of them) go away on every return path, including Ctrl-C (ctx)
	// and failures.
	env := exampleenv.Begin(ctx, "natt", opts.Timeout)
	defer func() { res.Namespaces, res.LeftBehind, err = env.End(err) }()
	ctx = env.Ctx
	n, err := buildNetwork(ctx, env.Topo)
	if err != nil {
		return res, err
	}
	tap, err := openOutsideTap(n.MidB)
	if err != nil {
		return res, err
	}
	defer tap.close()

	ab, ba, wipeKeys := exampleenv.ManualKeys(tr, 0xa0002, 0xb0002)
	defer wipeKeys()
	gwA, err := startGateway("gwA", gatewayConfig{ns: n.GwA, wan: n.GwAWAN, nextHop: n.MidA.MAC,
		local: gwAWan, out: ab, in: ba, farSite: siteB})
	if err != nil {
		return res, err
	}
	defer gwA.close()
	gwB, err := startGateway("gwB", gatewayConfig{ns: n.GwB, wan: n.GwBWAN, nextHop: n.MidB.MAC,
		local: gwBWan, out: ba, in: ab, farSite: siteA})
	if err != nil {
		return res, err
	}
	defer gwB.close()

	fmt.Fprintf(w, "hostA %v ── gwA %v ── nat %v→%v (masquerade) ── %v gwB ── hostB %v\n",
		hostAAddr, gwAWan, natInside, natPublic, gwBWan, hostBAddr)

	// gwA knows gwB's public address (its configuration says so) and
	// installs its SAs at once.
	if err := gwA.installSAs(netip.AddrPortFrom(gwBWan, esp.NATTPort)); err != nil {
		return res, err
	}
	// gwB learns gwA's address from the first keepalive.
	learnErr := make(chan error, 1)
	ka, err := listenKeepalives(n.GwB, func(peer netip.AddrPort) { learnErr <- gwB.installSAs(peer) })
	if err != nil {
		return res, err
	}
	defer ka.close()
	sender, err := startKeepalives(n.GwA, netip.AddrPortFrom(gwBWan, esp.NATTPort), opts.Keepalive)
	if err != nil {
		return res, err
	}
	defer sender.close()
	select {
	case err := <-learnErr:
		if err != nil {
			return res, err
		}
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(opts.Keepalive + 5*time.Second):
		return res, fmt.Errorf("gwB heard no keepalive from gwA (%d sent)", sender.sent.Load())
	}
	res.LearnedPeer, _ = ka.learnedPeer()
	aOut, _ := gwA.sas()
	res.PlaintextMTU = aOut.PlaintextMTU()
	fmt.Fprintf(w, "gwB: first keepalive came from %v, not from gwA's own address: gwA is behind a NAT; gwB's SAs send there\n", res.LearnedPeer)
	fmt.Fprintf(w, "ESP-in-UDP tunnel mode %s, path MTU %d, plaintext MTU %d (TUN MTU and host routes)\n", tr, wanMTU, res.PlaintextMTU)
	if err := n.RouteHosts(siteB, siteA, res.PlaintextMTU); err != nil {
		return res, err
	}

	// Traffic: pings (small and full-size), then a TCP transfer.
	if res.Traffic, err = exampleenv.PingAndTransfer(ctx, w, n, hostBAddr, opts.Pings, res.PlaintextMTU, "the plaintext MTU", opts.Size); err != nil {
		return res, err
	}

	// Keep the tunnel up until gwB has had at least two keepalives (the
	// NAT mapping refreshed), then stop them and let the last one land.
	exampleenv.WaitUntil(ctx, 2*opts.Keepalive+2*time.Second, func() bool { return ka.received.Load() >= 2 })
	sender.close()
	res.KeepalivesSent = sender.sent.Load()
	exampleenv.WaitUntil(ctx, time.Second, func() bool { return ka.received.Load() >= res.KeepalivesSent })
	res.KeepalivesReceived = ka.received.Load()
	_, res.KeepalivesMoved = ka.learnedPeer()

	// Wait for the counters to settle, then read them.
	bOut, bIn := gwB.sas()
	_, aIn := gwA.sas()
	snap := func() [4]uint64 {
		return [4]uint64{aOut.Stats().EncapsPkts, aIn.Stats().DecapsPkts, bOut.Stats().EncapsPkts, bIn.Stats().DecapsPkts}
	}
	exampleenv.WaitStable(ctx, 3*time.Second, 100*time.Millisecond, 3, snap)
	res.A = GatewayResult{Out: aOut.Stats(), In: aIn.Stats()}
	res.B = GatewayResult{Out: bOut.Stats(), In: bIn.Stats()}
	for _, g := range []struct {
		gw *gateway
		r  *GatewayResult
	}{{gwA, &res.A}, {gwB, &res.B}} {
		st := g.gw.eng.Stats()
		g.r.Engine, g.r.Program = exampleenv.SumWorkers(st), st.CipherProgram
	}
	if err := tap.close(); err != nil {
		return res, err
	}
	res.Outside = tap.counts()
	// The NAT's rule counts the connections it masqueraded: nat chains
	// see only the first packet of each.
	out, err := n.Mid.Exec(ctx, "nft", "list", "ruleset")
	if err != nil {
		return res, err
	}
	res.NFTRuleset = string(out)
	if m := masqCounter.FindStringSubmatch(res.NFTRuleset); m != nil {
		res.MasqueradedFlows, _ = strconv.ParseUint(m[1], 10, 64)
	}

	for _, g := range []struct {
		name  string
		r     *GatewayResult
		extra []show.Counter
	}{
		{"gwA", &res.A, []show.Counter{{Name: "NAT-T keepalives sent", Value: res.KeepalivesSent}}},
		{"gwB", &res.B, []show.Counter{{Name: "NAT-T keepalives received (kernel socket)", Value: res.KeepalivesReceived}}},
	} {
		show.Text(w, &show.Report{
			Title: "\n" + g.name + "# show crypto ipsec sa",
			SAs:   []sa.Stats{g.r.Out, g.r.In},
			Extra: append(g.extra,
				show.Counter{Name: "XDP: ESP-in-UDP to AF_XDP", Value: g.r.Program.NATTRedirected},
				show.Counter{Name: "XDP: keepalives passed to the kernel", Value: g.r.Program.KeepalivePassed},
				show.Counter{Name: "engine: encrypted", Value: g.r.Engine.Encrypted},
				show.Counter{Name: "engine: decrypted", Value: g.r.Engine.Decrypted},
				show.Counter{Name: "engine: SA drops", Value: g.r.Engine.SADrops},
			),
		})
	}
	fmt.Fprintf(w, "\nnat# nft list ruleset\n%s", indent(res.NFTRuleset))
	fmt.Fprintf(w, "(%d flow masqueraded: the keepalives and ESP-in-UDP share gwA's 4500 mapping)\n", res.MasqueradedFlows)
	o := res.Outside
	fmt.Fprintf(w, "nat outside (out0): %d ESP-in-UDP, %d keepalives, %d with a private address, %d to gwB not from %v, %d other IPv4 (capture drops: %d)\n",
		o.ESPInUDP, o.Keepalives, o.Private, o.NotFromNAT, natPublic, o.Other, o.Drops)
	check := exampleenv.Agreement{W: w, Width: 50}.Print
	check("gwA SA encaps / gwB SA decaps", res.A.Out.EncapsPkts, res.B.In.DecapsPkts)
	check("gwB SA encaps / gwA SA decaps", res.B.Out.EncapsPkts, res.A.In.DecapsPkts)
	check("ESP-in-UDP outside / encaps of both gateways", o.ESPInUDP, res.A.Out.EncapsPkts+res.B.Out.EncapsPkts)
	check("keepalives sent / received", res.KeepalivesSent, res.KeepalivesReceived)

	// Orderly shutdown, so that errors are reported; the deferred calls
	// are then no-ops.
	ka.close()
	if err := gwA.close(); err != nil {
		return res, fmt.Errorf("gwA: %w", err)
	}
	if err := gwB.close(); err != nil {
		return res, fmt.Errorf("gwB: %w", err)
	}
	return res, res.Lost()
}

// masqCounter finds the masquerade rule's packet counter.
var masqCounter = regexp.MustCompile(`counter packets (\d+) bytes \d+ masquerade`)

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}

func main() {
	var opts Options
	flag.StringVar(&opts.Transform, "transform", "aes256gcm16", "ESP transform (e.g. aes128gcm16, aes256-sha256, chacha20poly1305)")
	flag.DurationVar(&opts.Keepalive, "keepalive", time.Second, "NAT-T keepalive interval (RFC 3948 suggests 20s; short here so a run shows several)")
	flag.IntVar(&opts.Pings, "pings", 5, "echo requests hostA → hostB")
	size := flag.String("size", "8M", "bytes of the TCP transfer hostA → hostB (suffix K or M)")
	flag.DurationVar(&opts.Timeout, "timeout", 60*time.Second, "bound on the whole run")
	flag.Parse()
	var err error
	if opts.Size, err = exampleenv.ParseSize(*size); err != nil {
		fmt.Fprintln(os.Stderr, "nat-traversal:", err)
		os.Exit(2)
	}
	exampleenv.Main(exampleenv.Command{Name: "nat-traversal"}, func(ctx context.Context) error {
		_, err := run(ctx, os.Stdout, opts)
		return err
	})
}
