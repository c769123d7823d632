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
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/espxdp/espxdp/bpf"
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
	// Ping is hostA → hostB with 56 bytes; FullPing with packets of
	// exactly PlaintextMTU bytes.
	Ping, FullPing topo.PingResult
	Transfer       topo.TransferResult
	A, B           GatewayResult
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

// keys returns the keys of one direction, shared by both gateways
// (manual keying: in a real deployment IKE negotiates them).
func keys(name string, spi uint32, tr esp.Transform) sa.Config {
	key := make([]byte, tr.KeyLen())
	auth := make([]byte, tr.AuthKeyLen())
	rand.Read(key)
	rand.Read(auth)
	return sa.Config{Name: name, SPI: spi, Transform: tr, Key: key, AuthKey: auth, ESN: true}
}

// waitUntil polls cond every 20 ms until it holds, ctx ends or d passes.
func waitUntil(ctx context.Context, d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
	}
}

func run(ctx context.Context, w io.Writer, opts Options) (res *Result, err error) {
	if os.Geteuid() != 0 {
		return nil, errNeedsRoot
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
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	res = &Result{}

	// The namespaces (and the NAT's nftables ruleset, which lives in
	// one of them) go away on every return path, including Ctrl-C (ctx)
	// and failures.
	tp := topo.New("natt")
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
	n, err := buildNetwork(ctx, tp)
	for _, ns := range tp.Namespaces() {
		res.Namespaces = append(res.Namespaces, ns.Name)
	}
	if err != nil {
		return res, err
	}
	tap, err := openOutsideTap(n.natOut)
	if err != nil {
		return res, err
	}
	defer tap.close()

	ab := keys("gwA-to-gwB", 0xa0002, tr)
	ba := keys("gwB-to-gwA", 0xb0002, tr)
	defer func() {
		for _, c := range []sa.Config{ab, ba} {
			clear(c.Key)
			clear(c.AuthKey)
		}
	}()
	gwA, err := startGateway("gwA", gatewayConfig{ns: n.gwA, wan: n.gwAWan, nextHop: n.natIn.MAC,
		local: gwAWan, out: ab, in: ba, farSite: siteB})
	if err != nil {
		return res, err
	}
	defer gwA.close()
	gwB, err := startGateway("gwB", gatewayConfig{ns: n.gwB, wan: n.gwBWan, nextHop: n.natOut.MAC,
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
	ka, err := listenKeepalives(n.gwB, func(peer netip.AddrPort) { learnErr <- gwB.installSAs(peer) })
	if err != nil {
		return res, err
	}
	defer ka.close()
	sender, err := startKeepalives(n.gwA, netip.AddrPortFrom(gwBWan, esp.NATTPort), opts.Keepalive)
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
	if err := routeHosts(n, res.PlaintextMTU); err != nil {
		return res, err
	}

	// Traffic: pings (small and full-size), then a TCP transfer.
	if res.Ping, err = topo.Ping(n.hostA, hostBAddr, opts.Pings, 56, 100*time.Millisecond, 2*time.Second); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "ping hostA → hostB: %d/%d answered\n", res.Ping.Received, res.Ping.Sent)
	if res.FullPing, err = topo.Ping(n.hostA, hostBAddr, 3, res.PlaintextMTU-28, 50*time.Millisecond, 2*time.Second); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "ping hostA → hostB with %d-byte packets (the plaintext MTU): %d/%d answered\n", res.PlaintextMTU, res.FullPing.Received, res.FullPing.Sent)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.Transfer, err = topo.Transfer(ctx, n.hostB, netip.AddrPortFrom(hostBAddr, 5001), n.hostA, opts.Size, uint64(time.Now().UnixNano()), nil)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(w, "TCP hostA → hostB: %d bytes in %v, intact %v, MSS %d\n",
		res.Transfer.Received, res.Transfer.Duration.Round(time.Millisecond), res.Transfer.Intact(), res.Transfer.ClientMSS)

	// Keep the tunnel up until gwB has had at least two keepalives (the
	// NAT mapping refreshed), then stop them and let the last one land.
	waitUntil(ctx, 2*opts.Keepalive+2*time.Second, func() bool { return ka.received.Load() >= 2 })
	sender.close()
	res.KeepalivesSent = sender.sent.Load()
	waitUntil(ctx, time.Second, func() bool { return ka.received.Load() >= res.KeepalivesSent })
	res.KeepalivesReceived = ka.received.Load()
	_, res.KeepalivesMoved = ka.learnedPeer()

	// Wait for the counters to settle, then read them.
	bOut, bIn := gwB.sas()
	_, aIn := gwA.sas()
	snap := func() [4]uint64 {
		return [4]uint64{aOut.Stats().EncapsPkts, aIn.Stats().DecapsPkts, bOut.Stats().EncapsPkts, bIn.Stats().DecapsPkts}
	}
	last, same := snap(), 0
	waitUntil(ctx, 3*time.Second, func() bool {
		time.Sleep(80 * time.Millisecond)
		cur := snap()
		if cur == last {
			same++
		} else {
			same, last = 0, cur
		}
		return same >= 3
	})
	res.A = GatewayResult{Out: aOut.Stats(), In: aIn.Stats()}
	res.B = GatewayResult{Out: bOut.Stats(), In: bIn.Stats()}
	for _, g := range []struct {
		gw *gateway
		r  *GatewayResult
	}{{gwA, &res.A}, {gwB, &res.B}} {
		st := g.gw.eng.Stats()
		g.r.Engine, g.r.Program = workerSum(st), st.CipherProgram
	}
	if err := tap.close(); err != nil {
		return res, err
	}
	res.Outside = tap.counts()
	// The NAT's rule counts the connections it masqueraded: nat chains
	// see only the first packet of each.
	out, err := n.nat.Exec(ctx, "nft", "list", "ruleset")
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
	check := func(what string, a, b uint64) {
		verdict := "ok"
		if a != b {
			verdict = "MISMATCH"
		}
		fmt.Fprintf(w, "  %-50s %8d %8d  %s\n", what, a, b, verdict)
	}
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
	if res.Ping.Received != res.Ping.Sent || res.FullPing.Received != res.FullPing.Sent {
		return res, fmt.Errorf("pings lost: %d/%d and %d/%d answered", res.Ping.Received, res.Ping.Sent, res.FullPing.Received, res.FullPing.Sent)
	}
	return res, nil
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
	if opts.Size, err = parseSize(*size); err != nil {
		fmt.Fprintln(os.Stderr, "nat-traversal:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	const name = "nat-traversal"
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
