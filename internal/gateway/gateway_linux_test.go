//go:build linux

package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/internal/exampleenv"
	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/sa"
)

// site is one side of the test topology: host — gw.
type site struct {
	host, gw *topo.NS
	gwMAC    net.HardwareAddr // the gateway's host-side MAC
	hostMAC  net.HardwareAddr
	wanMAC   net.HardwareAddr
	hostAddr netip.Addr
	socket   string
	log      *testenv.SyncBuffer
}

func mac(last byte, side byte) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, side, last} }

// buildTopology makes hostA — gwA — gwB — hostB; with tun, the gateways'
// host-side interfaces are left to the kernel (the TUN gateway routes).
func buildTopology(t *testing.T) (a, b *site) {
	t.Helper()
	return buildTopologyWAN(t, false)
}

// The gateways' wan addresses: IPv4, and IPv6 for the tests of an IPv6
// outer network.
const (
	wanA4, wanB4 = "192.0.2.1", "192.0.2.2"
	wanA6, wanB6 = "2001:db8:e5::1", "2001:db8:e5::2"
)

// buildTopologyWAN is buildTopology with an IPv6 wan (wanA6, wanB6)
// when wan6 is set.
func buildTopologyWAN(t *testing.T, wan6 bool) (a, b *site) {
	t.Helper()
	tp, mk := topo.NewForTest(t, "gwt")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	a = &site{host: mk("hostA"), gw: mk("gwA"), hostAddr: netip.MustParseAddr("10.1.0.2")}
	b = &site{host: mk("hostB"), gw: mk("gwB"), hostAddr: netip.MustParseAddr("10.2.0.2")}
	for i, s := range []*site{a, b} {
		n := byte(i + 1)
		s.hostMAC, s.gwMAC, s.wanMAC = mac(2, n), mac(1, n), mac(0xfe, n)
		hl, gl, err := tp.AddVeth(s.host, "eth0", s.gw, "lan0", topo.VethOptions{MACA: s.hostMAC, MACB: s.gwMAC})
		must(err)
		must(hl.AddAddr(netip.PrefixFrom(s.hostAddr, 24)))
		must(hl.DisableTXChecksum())
		gwLAN := netip.AddrFrom4([4]byte{10, n, 0, 1})
		must(gl.AddAddr(netip.PrefixFrom(gwLAN, 24)))
		must(s.host.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), gwLAN, "", 0))
		// XDP takes the protected traffic on lan0; ARP still reaches the
		// kernel, but static entries keep the test independent of it.
		must(hl.SetNeighbour(gwLAN, s.gwMAC))
		must(gl.SetNeighbour(s.hostAddr, s.hostMAC))
		must(s.gw.Sysctl("net.ipv4.ip_forward", "1"))
		s.socket = filepath.Join(t.TempDir(), "ctl.sock")
		s.log = &testenv.SyncBuffer{}
	}
	wa, wb, err := tp.AddVeth(a.gw, "wan0", b.gw, "wan0", topo.VethOptions{MACA: a.wanMAC, MACB: b.wanMAC})
	must(err)
	wanA, wanB, bits := netip.MustParseAddr(wanA4), netip.MustParseAddr(wanB4), 24
	if wan6 {
		wanA, wanB, bits = netip.MustParseAddr(wanA6), netip.MustParseAddr(wanB6), 64
	}
	must(wa.AddAddr(netip.PrefixFrom(wanA, bits)))
	must(wb.AddAddr(netip.PrefixFrom(wanB, bits)))
	// Static neighbours (ARP and ND would reach the kernel too).
	must(wa.SetNeighbour(wanB, b.wanMAC))
	must(wb.SetNeighbour(wanA, a.wanMAC))
	return a, b
}

type gwParams struct {
	tun       bool
	udp       bool
	keepalive string
	keyAB     string // key of the A→B SA (both gateways)
	keyBA     string
	extra     string // appended to the gateway: section
	wan6      bool   // the wan is IPv6 (buildTopologyWAN(t, true))
	udpPort   bool   // interfaces.cipher.mode udp (the UDP cipher port)
}

func randKey(t *testing.T) string {
	k := make([]byte, 20) // aes128gcm16: 16-byte key + 4-byte salt
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return "0x" + hex.EncodeToString(k)
}

// gatewayYAML returns the configuration of gateway "a" or "b".
func gatewayYAML(s *site, peer *site, side string, p gwParams) string {
	local, remote := wanA4, wanB4
	if p.wan6 {
		local, remote = wanA6, wanB6
	}
	out, in := "a-to-b", "b-to-a"
	outSPI, inSPI := "0x1001", "0x2001"
	outKey, inKey := p.keyAB, p.keyBA
	protected := "10.2.0.0/24"
	if side == "b" {
		local, remote = remote, local
		out, in = in, out
		outSPI, inSPI = inSPI, outSPI
		outKey, inKey = inKey, outKey
		protected = "10.1.0.0/24"
	}
	encap := ""
	if p.udp {
		encap = ", encap: udp"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "gateway:\n  control: %s\n  log_drops: 200ms\n", s.socket)
	if p.keepalive != "" {
		fmt.Fprintf(&b, "  keepalive: %s\n", p.keepalive)
	}
	b.WriteString(p.extra)
	mode := ""
	if p.udpPort {
		mode = ", mode: udp"
	}
	fmt.Fprintf(&b, "interfaces:\n  cipher: {name: wan0, next_hop: %q, local: %s%s}\n", peer.wanMAC.String(), local, mode)
	if p.tun {
		fmt.Fprintf(&b, "  tun: {name: vti0, routes: [%s]}\n", protected)
	} else {
		fmt.Fprintf(&b, "  plain: {name: lan0, next_hop: %q, address: %s}\nprotected: [%s]\n", s.hostMAC.String(), gwLAN(side), protected)
	}
	fmt.Fprintf(&b, "tunnels:\n  - {name: peer, out: [%s], in: [%s]}\n", out, in)
	fmt.Fprintf(&b, "sas:\n")
	fmt.Fprintf(&b, "  - {name: %s, direction: out, spi: %s, local: %s, remote: %s, transform: aes128gcm16, key: %s%s}\n", out, outSPI, local, remote, outKey, encap)
	fmt.Fprintf(&b, "  - {name: %s, direction: in, spi: %s, local: %s, remote: %s, transform: aes128gcm16, key: %s%s}\n", in, inSPI, local, remote, inKey, encap)
	return b.String()
}

func gwLAN(side string) string {
	if side == "a" {
		return "10.1.0.1"
	}
	return "10.2.0.1"
}

func startGateway(t *testing.T, s *site, yaml string) *Gateway {
	t.Helper()
	cfg, err := config.Parse("gw.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	gw, err := New(cfg, Options{NetNS: s.gw.Path(), Logger: slog.New(slog.NewTextHandler(s.log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	return gw
}

// ping sends n echo requests from from's host to to and returns how many
// were answered. It waits up to 5 s after the last request for the replies and returns
// as soon as all arrived: two userspace gateways under the race detector
// on a loaded machine answered later than 1 s (TestKeepalivesLeaveIKEPort
// saw 0 of 3). pingNone is for pings expected to go unanswered.
func ping(t *testing.T, from *site, to netip.Addr, n int) int {
	t.Helper()
	r, err := topo.Ping(from.host, to, n, 56, 20*time.Millisecond, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return r.Received
}

// pingNone is ping for a path expected to be closed: it waits 1 s after
// the last request (a late reply can only make it pass wrongly, not fail).
func pingNone(t *testing.T, from *site, to netip.Addr, n int) int {
	t.Helper()
	r, err := topo.Ping(from.host, to, n, 56, 20*time.Millisecond, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return r.Received
}

func reload(t *testing.T, gw *Gateway, yaml string) (ReloadResult, error) {
	t.Helper()
	cfg, err := config.Parse("gw.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return gw.Reload(cfg)
}

// statsOf returns the SA called name from a control-socket show-sa.
func statsOf(t *testing.T, socket, name string) sa.Stats {
	t.Helper()
	resp, err := Call(socket, Request{Cmd: "show-sa"}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range resp.SAs {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("show-sa on %s has no SA %q: %+v", socket, name, resp.SAs)
	return sa.Stats{}
}

// TestGatewayPlain runs two gateways with AF_XDP on both sides: traffic
// flows, the control socket reports matching counters, a reload with an
// unchanged file keeps SAs (and counters), a rekey by reload on both
// sides keeps traffic flowing, an interface change is refused, and SAs
// deleted and re-added over the control socket stop and restart
// traffic.
func TestGatewayPlain(t *testing.T) {
	testenv.RequirePrivileged(t)
	a, b := buildTopology(t)
	p := gwParams{keyAB: randKey(t), keyBA: randKey(t), extra: "  mss_clamp: 1300\n  icmp_errors: true\n  decrement_ttl: true\n"}
	ya, yb := gatewayYAML(a, b, "a", p), gatewayYAML(b, a, "b", p)
	ga := startGateway(t, a, ya)
	gb := startGateway(t, b, yb)

	if got := ping(t, a, b.hostAddr, 5); got != 5 {
		t.Fatalf("ping through the tunnel: %d of 5 answered\nlogA:\n%s\nlogB:\n%s", got, a.log, b.log)
	}
	// A 1500-byte DF ping does not fit the tunnel (plaintext MTU 1446):
	// gwA answers with ICMP "fragmentation needed" and hostA's kernel
	// learns the path MTU.
	big, err := topo.Ping(a.host, b.hostAddr, 1, 1472, 0, 500*time.Millisecond)
	if err != nil || big.Received != 0 {
		t.Fatalf("oversized ping: %+v, %v", big, err)
	}
	route, err := a.host.IP("route", "get", b.hostAddr.String())
	if err != nil || !strings.Contains(route, "mtu 1446") {
		t.Errorf("hostA learned no path MTU from gwA's ICMP: %q, %v", route, err)
	}
	// The TCP transfer relies on the gateways' MSS clamp, not on routes.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := topo.Transfer(ctx, b.host, netip.AddrPortFrom(b.hostAddr, 5001), a.host, 2<<20, 1, nil)
	if err != nil {
		t.Fatalf("transfer: %v", err)
	}
	if !res.Intact() {
		t.Fatalf("transfer not intact: %+v", res)
	}
	quiet := func() {
		// Let the last ACKs land before comparing counters.
		time.Sleep(200 * time.Millisecond)
	}
	quiet()
	// Every packet one gateway encrypted the other decrypted, or the wan
	// link counted it dropped (the receiving engine's rings full while
	// its worker waited for a CPU: TCP retransmits those).
	agree := func(dir string, out, in sa.Stats, drops uint64) {
		t.Helper()
		if out.EncapsPkts == 0 || in.DecapsPkts > out.EncapsPkts || out.EncapsPkts-in.DecapsPkts > drops {
			t.Errorf("%s: encaps %d, decaps %d, wan drops %d", dir, out.EncapsPkts, in.DecapsPkts, drops)
		}
	}
	outA, inB := statsOf(t, a.socket, "a-to-b"), statsOf(t, b.socket, "a-to-b")
	outB, inA := statsOf(t, b.socket, "b-to-a"), statsOf(t, a.socket, "b-to-a")
	la, err := a.gw.Link("wan0")
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.gw.Link("wan0")
	if err != nil {
		t.Fatal(err)
	}
	dropsAB, dropsBA, err := exampleenv.PathDrops(la, lb)
	if err != nil {
		t.Fatal(err)
	}
	agree("A→B", outA, inB, dropsAB)
	agree("B→A", outB, inA, dropsBA)
	st, err := Call(a.socket, Request{Cmd: "show-stats"}, time.Second)
	if err != nil || st.Stats.Encrypted < outA.EncapsPkts || st.Stats.Decrypted < inA.DecapsPkts ||
		st.Stats.ICMPSent != 1 || st.Stats.MTUDrops != 1 || st.Stats.MSSClamped == 0 {
		t.Errorf("show-stats: %+v, err %v", st.Stats, err)
	}
	if res.ServerMSS > 1300 || res.ClientMSS > 1300 {
		t.Errorf("TCP MSS %d/%d above the clamp 1300", res.ClientMSS, res.ServerMSS)
	}

	// Same file: nothing changes, counters survive.
	rr, err := reload(t, ga, ya)
	if err != nil || rr.Unchanged != 2 || len(rr.Added)+len(rr.Removed)+len(rr.Replaced) != 0 {
		t.Fatalf("reload of the same file: %+v, %v", rr, err)
	}
	if s := statsOf(t, a.socket, "a-to-b"); s.EncapsPkts < outA.EncapsPkts {
		t.Errorf("counters reset by a no-op reload: %d < %d", s.EncapsPkts, outA.EncapsPkts)
	}
	// Rekey A→B on both sides by reload.
	p2 := p
	p2.keyAB = randKey(t)
	rr, err = reload(t, ga, gatewayYAML(a, b, "a", p2))
	if err != nil || len(rr.Replaced) != 1 || rr.Replaced[0] != "a-to-b" || rr.Unchanged != 1 {
		t.Fatalf("rekey reload on A: %+v, %v", rr, err)
	}
	if _, err := reload(t, gb, gatewayYAML(b, a, "b", p2)); err != nil {
		t.Fatal(err)
	}
	if got := ping(t, a, b.hostAddr, 3); got != 3 {
		t.Fatalf("ping after rekey: %d of 3", got)
	}
	if s := statsOf(t, a.socket, "a-to-b"); s.EncapsPkts == 0 || s.EncapsPkts > 10 {
		t.Errorf("new SA counters: %d encaps, want the few pings since the rekey", s.EncapsPkts)
	}
	// Interface changes need a restart and change nothing.
	bad := strings.Replace(gatewayYAML(a, b, "a", p2), "cipher: {name: wan0", "cipher: {name: wan9", 1)
	if _, err := reload(t, ga, bad); !errors.Is(err, ErrRestart) {
		t.Errorf("reload with another interface: %v, want ErrRestart", err)
	}

	// Delete gwB's inbound SA over the control socket: pings stop,
	// counted as no-sa drops at gwB; add it back: they flow again.
	if _, err := Call(b.socket, Request{Cmd: "sa-del", Direction: "in", SPI: 0x1001}, time.Second); err != nil {
		t.Fatal(err)
	}
	if got := pingNone(t, a, b.hostAddr, 2); got != 0 {
		t.Errorf("ping with gwB's inbound SA deleted: %d answered", got)
	}
	ps, err := Call(b.socket, Request{Cmd: "show-stats"}, time.Second)
	if err != nil || ps.Stats.Processor.Drops[sa.DropNoSA] == 0 {
		t.Errorf("no-sa drops at gwB: %+v, %v", ps.Stats, err)
	}
	add := fmt.Sprintf(`{"name": "a-to-b", "direction": "in", "spi": "0x1001", "local": "192.0.2.2", "remote": "192.0.2.1", "transform": "aes128gcm16", "key": %q}`, p2.keyAB)
	if _, err := Call(b.socket, Request{Cmd: "sa-add", SA: add, Tunnel: "peer"}, time.Second); err != nil {
		t.Fatal(err)
	}
	if got := ping(t, a, b.hostAddr, 3); got != 3 {
		t.Errorf("ping after sa-add: %d of 3", got)
	}
	// Bad requests are refused with a reason.
	for _, req := range []Request{{Cmd: "nope"}, {Cmd: "sa-del", Direction: "up"}, {Cmd: "sa-add", SA: "{spi: 0}"}, {Cmd: "sa-del", Direction: "in", SPI: 0x777}} {
		if _, err := Call(b.socket, req, time.Second); err == nil {
			t.Errorf("request %+v accepted", req)
		}
	}
	if !strings.Contains(b.log.String(), "drops") || !strings.Contains(b.log.String(), "no-sa") {
		t.Errorf("gwB log has no drop line for the no-sa drops:\n%s", b.log)
	}

	if err := ga.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if _, err := os.Stat(a.socket); !os.IsNotExist(err) {
		t.Errorf("control socket left behind: %v", err)
	}
	if ga.Running() {
		t.Error("running after Close")
	}
}

// TestGatewayTUNNATT runs route-based gateways (TUN devices, kernel
// routes) with ESP in UDP 4500 and NAT-T keepalives.
func TestGatewayTUNNATT(t *testing.T) {
	testenv.RequirePrivileged(t)
	a, b := buildTopology(t)
	p := gwParams{tun: true, udp: true, keepalive: "100ms", keyAB: randKey(t), keyBA: randKey(t)}
	startGateway(t, a, gatewayYAML(a, b, "a", p))
	startGateway(t, b, gatewayYAML(b, a, "b", p))
	if got := ping(t, a, b.hostAddr, 5); got != 5 {
		t.Fatalf("ping through the TUN tunnel: %d of 5\nlogA:\n%s\nlogB:\n%s", got, a.log, b.log)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The TUN's MTU is the SA's plaintext MTU, so the gateway's kernel
	// tells the hosts (PMTU) and TCP fits without help.
	res, err := topo.Transfer(ctx, b.host, netip.AddrPortFrom(b.hostAddr, 5002), a.host, 1<<20, 2, nil)
	if err != nil || !res.Intact() {
		t.Fatalf("transfer: %+v, %v", res, err)
	}
	s := statsOf(t, a.socket, "a-to-b")
	if !s.UDPEncap || s.RemotePort != 4500 || s.EncapsPkts == 0 {
		t.Errorf("a-to-b: udp %v port %d encaps %d", s.UDPEncap, s.RemotePort, s.EncapsPkts)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		sa, _ := Call(a.socket, Request{Cmd: "show-stats"}, time.Second)
		sb, _ := Call(b.socket, Request{Cmd: "show-stats"}, time.Second)
		if sa.Stats != nil && sb.Stats != nil && sa.Stats.KeepalivesSent >= 2 && sb.Stats.KeepalivesReceived >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("keepalives: A %+v, B %+v", sa.Stats, sb.Stats)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestGatewayIPv6WAN runs two gateways whose wan is IPv6 (ESP in IPv6),
// with AF_XDP on both sides and raw ESP, then route-based with TUN
// devices and ESP in UDP over IPv6: pings and a checksummed TCP
// transfer cross, and show-sa reports the IPv6 peers.
func TestGatewayIPv6WAN(t *testing.T) {
	testenv.RequirePrivileged(t)
	for _, c := range []struct {
		name     string
		tun, udp bool
	}{{"plain-esp", false, false}, {"tun-natt", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			a, b := buildTopologyWAN(t, true)
			p := gwParams{tun: c.tun, udp: c.udp, wan6: true, keyAB: randKey(t), keyBA: randKey(t),
				extra: "  mss_clamp: 1200\n"}
			startGateway(t, a, gatewayYAML(a, b, "a", p))
			startGateway(t, b, gatewayYAML(b, a, "b", p))
			if got := ping(t, a, b.hostAddr, 5); got != 5 {
				t.Fatalf("ping over the IPv6 wan: %d of 5 answered\nlogA:\n%s\nlogB:\n%s", got, a.log, b.log)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := topo.Transfer(ctx, b.host, netip.AddrPortFrom(b.hostAddr, 5011), a.host, 1<<20, 11, nil)
			if err != nil || !res.Intact() {
				t.Fatalf("transfer over the IPv6 wan: %+v, %v", res, err)
			}
			for _, s := range []*site{a, b} {
				for _, name := range []string{"a-to-b", "b-to-a"} {
					st := statsOf(t, s.socket, name)
					if !st.Remote.Is6() || !st.Local.Is6() || st.EncapsPkts+st.DecapsPkts == 0 || st.UDPEncap != c.udp {
						t.Errorf("%s: local %v remote %v encaps %d decaps %d udp %v", name, st.Local, st.Remote,
							st.EncapsPkts, st.DecapsPkts, st.UDPEncap)
					}
				}
			}
		})
	}
}

// TestGatewayOrdered: a gateway pair in the Ordered concurrency mode
// (concurrency: ordered) carries a ping and a checksummed TCP transfer:
// the engine's workers drive the mode's sequencer and help through
// Drain/Pending like any other.
func TestGatewayOrdered(t *testing.T) {
	testenv.RequirePrivileged(t)
	a, b := buildTopology(t)
	p := gwParams{keyAB: randKey(t), keyBA: randKey(t), extra: "  concurrency: ordered\n  mss_clamp: 1300\n"}
	ga := startGateway(t, a, gatewayYAML(a, b, "a", p))
	startGateway(t, b, gatewayYAML(b, a, "b", p))
	if got := ga.proc.Concurrency(); got != sa.Ordered {
		t.Fatalf("gateway runs %v, want ordered", got)
	}
	if got := ping(t, a, b.hostAddr, 5); got != 5 {
		t.Fatalf("ping through the tunnel: %d of 5 answered\nlogA:\n%s\nlogB:\n%s", got, a.log, b.log)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := topo.Transfer(ctx, b.host, netip.AddrPortFrom(b.hostAddr, 5001), a.host, 2<<20, 1, nil)
	if err != nil {
		t.Fatalf("transfer: %v", err)
	}
	if !res.Intact() {
		t.Fatalf("transfer not intact: %+v", res)
	}
}
