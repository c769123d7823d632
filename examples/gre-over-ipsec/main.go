//go:build linux

// Command gre-over-ipsec builds the classic router setup "GRE tunnel
// protected by transport-mode IPsec" out of network namespaces and
// espxdp:
//
//	hostA ── gwA ══ wan ══ gwB ── hostB
//	10.1.0.2      (router)      10.2.0.2
//
// Each gateway has a tunnel interface (a TUN device, "tunnel0") with the
// far site routed into it. Packets read from it are wrapped in GRE
// (built in Go with gopacket: the kernel may lack ip_gre) inside an
// outer IPv4 header gateway → gateway, and handed to an AF_XDP engine
// whose transport-mode SA, restricted to IP protocol 47 between the
// gateways, inserts ESP and sends them on the WAN port. The other
// gateway's engine decrypts them, and its DeliverFunc strips GRE and
// writes the inner packet to its tunnel interface. The program pings
// and moves a checksummed TCP stream through the tunnel, counts what
// crossed the WAN (ESP only, no GRE in clear), prints the SA and GRE
// counters, and removes every namespace it made, also on Ctrl-C.
//
//	sudo go run ./examples/gre-over-ipsec [-transform aes256gcm16] [-key 42] [-size 8M]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

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
	// Key is the GRE key (RFC 2890); 0 sends GRE without a key.
	Key uint32
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
	GRE     GREStats
	// Engine sums the engine workers' counters.
	Engine xdp.EngineWorkerStats
}

// Result is what a run measured.
type Result struct {
	// InnerMTU is the tunnel interfaces' MTU: the SA's plaintext MTU
	// minus GRE.
	InnerMTU int
	// Traffic is the pings (56 bytes, and InnerMTU bytes) and the TCP
	// transfer hostA → hostB.
	exampleenv.Traffic
	A, B GatewayResult
	// WAN is what the router saw on its link to gwA.
	WAN WANCounts
	// Namespaces are the namespaces the run created; LeftBehind the
	// names of those that still existed after cleanup.
	Namespaces []*topo.NS
	LeftBehind []string
}

func run(ctx context.Context, w io.Writer, opts Options) (res *Result, err error) {
	if err := exampleenv.CheckRoot(); err != nil {
		return nil, err
	}
	tr, err := esp.ParseTransform(opts.Transform)
	if err != nil {
		return nil, err
	}
	if opts.Pings < 1 || opts.Size < 1 || opts.Timeout <= 0 {
		return nil, fmt.Errorf("need at least one ping, one byte and a timeout (got %d, %d, %v)", opts.Pings, opts.Size, opts.Timeout)
	}
	res = &Result{}

	// The namespaces go away on every return path, including Ctrl-C
	// (ctx) and failures.
	env := exampleenv.Begin(ctx, "gre", opts.Timeout)
	defer func() { res.Namespaces, res.LeftBehind, err = env.End(err) }()
	ctx = env.Ctx
	n, err := buildNetwork(env.Topo)
	if err != nil {
		return res, err
	}
	tap, err := openWANTap(n.MidA)
	if err != nil {
		return res, err
	}
	defer tap.close()

	ab, ba, wipeKeys := exampleenv.ManualKeys(tr, 0xa0001, 0xb0001)
	defer wipeKeys()
	keyed := opts.Key != 0
	gwA, err := startGateway("gwA", gatewayConfig{ns: n.GwA, wan: n.GwAWAN, nextHop: n.MidA.MAC,
		local: gwAWan, remote: gwBWan, out: ab, in: ba, tunAddr: tunAAddr, farSite: siteB, keyed: keyed, key: opts.Key})
	if err != nil {
		return res, err
	}
	defer gwA.close()
	gwB, err := startGateway("gwB", gatewayConfig{ns: n.GwB, wan: n.GwBWAN, nextHop: n.MidB.MAC,
		local: gwBWan, remote: gwAWan, out: ba, in: ab, tunAddr: tunBAddr, farSite: siteA, keyed: keyed, key: opts.Key})
	if err != nil {
		return res, err
	}
	defer gwB.close()
	res.InnerMTU = gwA.innerMTU
	if err := n.RouteHosts(siteB, siteA, res.InnerMTU); err != nil {
		return res, err
	}
	keyInfo := "no key"
	if keyed {
		keyInfo = fmt.Sprintf("key %d", opts.Key)
	}
	fmt.Fprintf(w, "hostA %v ── gwA %v ══ wan ══ %v gwB ── hostB %v\n", hostAAddr, gwAWan, gwBWan, hostBAddr)
	fmt.Fprintf(w, "tunnel0: GRE %v → %v (%s), ESP transport mode %s, path MTU %d, plaintext MTU %d, tunnel MTU %d\n",
		gwAWan, gwBWan, keyInfo, tr, wanMTU, gwA.out.PlaintextMTU(), res.InnerMTU)

	// Traffic: pings (small and full-size), then a TCP transfer.
	if res.Traffic, err = exampleenv.PingAndTransfer(ctx, w, n, hostBAddr, opts.Pings, res.InnerMTU, "the tunnel MTU", opts.Size); err != nil {
		return res, err
	}

	// Let the last ACKs through, then read the counters.
	exampleenv.WaitStable(ctx, 3*time.Second, 100*time.Millisecond, 3, func() [6]uint64 {
		a, b := gwA.gre.stats(), gwB.gre.stats()
		return [6]uint64{a.Encapsulated, a.Decapsulated, b.Encapsulated, b.Decapsulated, gwA.out.Stats().EncapsPkts, gwB.out.Stats().EncapsPkts}
	})
	for _, g := range []struct {
		gw *gateway
		r  *GatewayResult
	}{{gwA, &res.A}, {gwB, &res.B}} {
		g.r.Out, g.r.In = g.gw.out.Stats(), g.gw.in.Stats()
		g.r.GRE = g.gw.gre.stats()
		g.r.Engine = exampleenv.SumWorkers(g.gw.eng.Stats())
	}
	if err := tap.close(); err != nil {
		return res, err
	}
	res.WAN = tap.counts()

	for _, g := range []struct {
		name string
		r    *GatewayResult
	}{{"gwA", &res.A}, {"gwB", &res.B}} {
		show.Text(w, &show.Report{
			Title: "\n" + g.name + "# show crypto ipsec sa",
			SAs:   []sa.Stats{g.r.Out, g.r.In},
			Extra: []show.Counter{
				{Name: "GRE packets encapsulated", Value: g.r.GRE.Encapsulated},
				{Name: "GRE packets decapsulated", Value: g.r.GRE.Decapsulated},
				{Name: "GRE packets bad", Value: g.r.GRE.Bad},
				{Name: "GRE packets the engine could not queue", Value: g.r.GRE.SendDrops},
				{Name: "engine: encrypted", Value: g.r.Engine.Encrypted},
				{Name: "engine: decrypted", Value: g.r.Engine.Decrypted},
				{Name: "engine: SA drops", Value: g.r.Engine.SADrops},
			},
		})
	}
	fmt.Fprintf(w, "\nwan (router's link to gwA): %d ESP, %d GRE in clear, %d other IPv4 packets (capture drops: %d)\n",
		res.WAN.ESP, res.WAN.GRE, res.WAN.Other, res.WAN.Drops)
	check := exampleenv.Agreement{W: w, Width: 52}.Print
	check("gwA GRE encapsulated / gwA SA encaps", res.A.GRE.Encapsulated, res.A.Out.EncapsPkts)
	check("gwA SA encaps / gwB SA decaps", res.A.Out.EncapsPkts, res.B.In.DecapsPkts)
	check("gwB SA decaps / gwB GRE decapsulated", res.B.In.DecapsPkts, res.B.GRE.Decapsulated)
	check("gwB GRE encapsulated / gwB SA encaps", res.B.GRE.Encapsulated, res.B.Out.EncapsPkts)
	check("gwB SA encaps / gwA SA decaps", res.B.Out.EncapsPkts, res.A.In.DecapsPkts)
	check("gwA SA decaps / gwA GRE decapsulated", res.A.In.DecapsPkts, res.A.GRE.Decapsulated)
	check("ESP on the wan / encaps of both gateways", res.WAN.ESP, res.A.Out.EncapsPkts+res.B.Out.EncapsPkts)

	// Orderly shutdown, so that errors are reported; the deferred calls
	// are then no-ops.
	if err := gwA.close(); err != nil {
		return res, fmt.Errorf("gwA: %w", err)
	}
	if err := gwB.close(); err != nil {
		return res, fmt.Errorf("gwB: %w", err)
	}
	return res, res.Lost()
}

func main() {
	var opts Options
	flag.StringVar(&opts.Transform, "transform", "aes256gcm16", "ESP transform (e.g. aes128gcm16, aes256-sha256, chacha20poly1305)")
	key := flag.Uint("key", 42, "GRE key (0: no key)")
	flag.IntVar(&opts.Pings, "pings", 5, "echo requests hostA → hostB")
	size := flag.String("size", "8M", "bytes of the TCP transfer hostA → hostB (suffix K or M)")
	flag.DurationVar(&opts.Timeout, "timeout", 60*time.Second, "bound on the whole run")
	flag.Parse()
	opts.Key = uint32(*key)
	var err error
	if opts.Size, err = exampleenv.ParseSize(*size); err != nil {
		fmt.Fprintln(os.Stderr, "gre-over-ipsec:", err)
		os.Exit(2)
	}
	exampleenv.Main(exampleenv.Command{Name: "gre-over-ipsec"}, func(ctx context.Context) error {
		_, err := run(ctx, os.Stdout, opts)
		return err
	})
}
