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
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/show"
	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

// errNeedsRoot is returned when the program cannot build namespaces.
var errNeedsRoot = errors.New("needs root: run with sudo")

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
	// Ping is hostA → hostB with 56 bytes; FullPing with packets of
	// exactly InnerMTU bytes.
	Ping, FullPing topo.PingResult
	Transfer       topo.TransferResult
	A, B           GatewayResult
	// WAN is what the router saw on its link to gwA.
	WAN WANCounts
	// Namespaces are the namespaces the run created; LeftBehind those
	// of them that still existed after cleanup.
	Namespaces, LeftBehind []string
}

func workerSum(st xdp.EngineStats) xdp.EngineWorkerStats {
	var s xdp.EngineWorkerStats
	for _, w := range st.Workers {
		s.CipherRX += w.CipherRX
		s.Decrypted += w.Decrypted
		s.Encrypted += w.Encrypted
		s.SADrops += w.SADrops
		s.MTUDrops += w.MTUDrops
		s.TXFull += w.TXFull
		s.Sent += w.Sent
		s.SendFull += w.SendFull
	}
	return s
}

// saPair returns the keys of one direction, shared by both gateways
// (manual keying: in a real deployment IKE negotiates them).
func saPair(name string, spi uint32, tr esp.Transform) sa.Config {
	key := make([]byte, tr.KeyLen())
	auth := make([]byte, tr.AuthKeyLen())
	rand.Read(key)
	rand.Read(auth)
	return sa.Config{Name: name, SPI: spi, Transform: tr, Key: key, AuthKey: auth, ESN: true}
}

// quiesce waits until snap returns the same value three times in a row
// (100 ms apart), at most 3 s: the tunnel has gone quiet.
func quiesce(ctx context.Context, snap func() [6]uint64) {
	last, same := snap(), 0
	for deadline := time.Now().Add(3 * time.Second); same < 3 && time.Now().Before(deadline) && ctx.Err() == nil; {
		time.Sleep(100 * time.Millisecond)
		cur := snap()
		if cur == last {
			same++
		} else {
			same, last = 0, cur
		}
	}
}

func run(ctx context.Context, w io.Writer, opts Options) (res *Result, err error) {
	if os.Geteuid() != 0 {
		return nil, errNeedsRoot
	}
	tr, err := esp.ParseTransform(opts.Transform)
	if err != nil {
		return nil, err
	}
	if opts.Pings < 1 || opts.Size < 1 || opts.Timeout <= 0 {
		return nil, fmt.Errorf("need at least one ping, one byte and a timeout (got %d, %d, %v)", opts.Pings, opts.Size, opts.Timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	res = &Result{}

	// The namespaces go away on every return path, including Ctrl-C
	// (ctx) and failures.
	tp := topo.New("gre")
	defer func() {
		tp.Close()
		res.LeftBehind = nil
		for _, name := range res.Namespaces {
			if _, err := os.Stat("/run/netns/" + name); err == nil {
				res.LeftBehind = append(res.LeftBehind, name)
			}
		}
		if len(res.LeftBehind) > 0 {
			err = errors.Join(err, fmt.Errorf("namespaces left behind: %v", res.LeftBehind))
		}
	}()
	n, err := buildNetwork(tp)
	for _, ns := range tp.Namespaces() {
		res.Namespaces = append(res.Namespaces, ns.Name)
	}
	if err != nil {
		return res, err
	}
	tap, err := openWANTap(n.wanToA)
	if err != nil {
		return res, err
	}
	defer tap.close()

	ab := saPair("gwA-to-gwB", 0xa0001, tr)
	ba := saPair("gwB-to-gwA", 0xb0001, tr)
	defer func() {
		for _, c := range []sa.Config{ab, ba} {
			clear(c.Key)
			clear(c.AuthKey)
		}
	}()
	keyed := opts.Key != 0
	gwA, err := startGateway("gwA", gatewayConfig{ns: n.gwA, wan: n.gwAWan, nextHop: n.wanToA.MAC,
		local: gwAWan, remote: gwBWan, out: ab, in: ba, tunAddr: tunAAddr, farSite: siteB, keyed: keyed, key: opts.Key})
	if err != nil {
		return res, err
	}
	defer gwA.close()
	gwB, err := startGateway("gwB", gatewayConfig{ns: n.gwB, wan: n.gwBWan, nextHop: n.wanToB.MAC,
		local: gwBWan, remote: gwAWan, out: ba, in: ab, tunAddr: tunBAddr, farSite: siteA, keyed: keyed, key: opts.Key})
	if err != nil {
		return res, err
	}
	defer gwB.close()
	res.InnerMTU = gwA.innerMTU
	if err := routeHosts(n, res.InnerMTU); err != nil {
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
	if res.Ping, err = topo.Ping(n.hostA, hostBAddr, opts.Pings, 56, 100*time.Millisecond, 2*time.Second); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "ping hostA → hostB: %d/%d answered\n", res.Ping.Received, res.Ping.Sent)
	if res.FullPing, err = topo.Ping(n.hostA, hostBAddr, 3, res.InnerMTU-28, 50*time.Millisecond, 2*time.Second); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "ping hostA → hostB with %d-byte packets (the tunnel MTU): %d/%d answered\n", res.InnerMTU, res.FullPing.Received, res.FullPing.Sent)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.Transfer, err = topo.Transfer(ctx, n.hostB, netip.AddrPortFrom(hostBAddr, 5001), n.hostA, opts.Size, uint64(time.Now().UnixNano()), nil)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(w, "TCP hostA → hostB: %d bytes in %v, intact %v, MSS %d\n",
		res.Transfer.Received, res.Transfer.Duration.Round(time.Millisecond), res.Transfer.Intact(), res.Transfer.ClientMSS)

	// Let the last ACKs through, then read the counters.
	quiesce(ctx, func() [6]uint64 {
		a, b := gwA.gre.stats(), gwB.gre.stats()
		return [6]uint64{a.Encapsulated, a.Decapsulated, b.Encapsulated, b.Decapsulated, gwA.out.Stats().EncapsPkts, gwB.out.Stats().EncapsPkts}
	})
	for _, g := range []struct {
		gw *gateway
		r  *GatewayResult
	}{{gwA, &res.A}, {gwB, &res.B}} {
		g.r.Out, g.r.In = g.gw.out.Stats(), g.gw.in.Stats()
		g.r.GRE = g.gw.gre.stats()
		g.r.Engine = workerSum(g.gw.eng.Stats())
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
	check := func(what string, a, b uint64) {
		verdict := "ok"
		if a != b {
			verdict = "MISMATCH"
		}
		fmt.Fprintf(w, "  %-52s %8d %8d  %s\n", what, a, b, verdict)
	}
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
	if res.Ping.Received != res.Ping.Sent || res.FullPing.Received != res.FullPing.Sent {
		return res, fmt.Errorf("pings lost: %d/%d and %d/%d answered", res.Ping.Received, res.Ping.Sent, res.FullPing.Received, res.FullPing.Sent)
	}
	return res, nil
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
	if opts.Size, err = parseSize(*size); err != nil {
		fmt.Fprintln(os.Stderr, "gre-over-ipsec:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	const name = "gre-over-ipsec"
	if _, err := run(ctx, os.Stdout, opts); err != nil {
		switch {
		case errors.Is(err, errNeedsRoot):
			fmt.Fprintln(os.Stderr, err)
		case ctx.Err() != nil:
			fmt.Fprintf(os.Stderr, "%s: interrupted: %v\n", name, err)
		default:
			fmt.Fprintln(os.Stderr, name+":", err)
		}
		stop()
		os.Exit(1)
	}
}

// parseSize reads "123", "64K" or "8M".
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case len(s) > 0 && (s[len(s)-1] == 'K' || s[len(s)-1] == 'k'):
		mult, s = 1<<10, s[:len(s)-1]
	case len(s) > 0 && (s[len(s)-1] == 'M' || s[len(s)-1] == 'm'):
		mult, s = 1<<20, s[:len(s)-1]
	}
	var v int64
	if _, err := fmt.Sscan(s, &v); err != nil || v < 1 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return v * mult, nil
}
