//go:build linux

package xdp

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/inet"
	"github.com/espxdp/espxdp/internal/netns"
	"github.com/espxdp/espxdp/internal/race"
	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/sa"
)

// routerNet is hostA —lan— gwA —wan— gwB —lan— hostB, with an Engine
// on each gateway (plaintext port on lan, ciphertext port on wan) and a
// tunnel between them for 10.1.0.0/24, fd00:1::/64 (site A) and
// 10.2.0.0/24, fd00:2::/64 (site B).
type routerNet struct {
	hostA, gwA, gwB, hostB *topo.NS
	hA, pA, cA, cB, pB, hB *topo.Link
	a, b                   routerSide
	wanA, wanB             netip.Addr // the gateways' wan addresses
}

// routerSide is one gateway's SAs and processor.
type routerSide struct {
	out, in *sa.SA
	proc    *sa.Processor
}

var (
	hostA4, gwA4 = netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("10.1.0.1")
	hostB4, gwB4 = netip.MustParseAddr("10.2.0.2"), netip.MustParseAddr("10.2.0.1")
	hostA6, gwA6 = netip.MustParseAddr("fd00:1::2"), netip.MustParseAddr("fd00:1::1")
	hostB6, gwB6 = netip.MustParseAddr("fd00:2::2"), netip.MustParseAddr("fd00:2::1")
	wanA, wanB   = netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	wanA6, wanB6 = netip.MustParseAddr("2001:db8:e5::1"), netip.MustParseAddr("2001:db8:e5::2")
)

func rmac(side, last byte) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0x7e, side, last} }

// newRouterNet builds the namespaces; pathMTUA is the path MTU of gwA's
// outbound SA (0: none), wanMTU the MTU of the wan veth (0: 1500).
func newRouterNet(t *testing.T, pathMTUA, wanMTU int) *routerNet {
	t.Helper()
	return newRouterNetOpts(t, routerOpts{pathMTUA: pathMTUA, wanMTU: wanMTU})
}

// routerOpts tunes newRouterNetOpts.
type routerOpts struct {
	pathMTUA, wanMTU int
	// wan6 gives the wan link IPv6 addresses (wanA6, wanB6): the tunnel
	// runs over IPv6, the outer network.
	wan6 bool
	// lanMTU is the MTU of the hosts' links (0: 1500).
	lanMTU int
}

// newRouterNetOpts builds the namespaces as newRouterNet does, with the
// options o.
func newRouterNetOpts(t *testing.T, o routerOpts) *routerNet {
	t.Helper()
	pathMTUA, wanMTU := o.pathMTUA, o.wanMTU
	requireNet(t)
	tp, mk := topo.NewForTest(t, "rt")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	n := &routerNet{hostA: mk("hostA"), gwA: mk("gwA"), gwB: mk("gwB"), hostB: mk("hostB")}
	var err error
	n.hA, n.pA, err = tp.AddVeth(n.hostA, "eth0", n.gwA, "lan0", topo.VethOptions{MACA: rmac(1, 2), MACB: rmac(1, 1), MTU: o.lanMTU})
	must(err)
	n.hB, n.pB, err = tp.AddVeth(n.hostB, "eth0", n.gwB, "lan0", topo.VethOptions{MACA: rmac(2, 2), MACB: rmac(2, 1), MTU: o.lanMTU})
	must(err)
	n.cA, n.cB, err = tp.AddVeth(n.gwA, "wan0", n.gwB, "wan0", topo.VethOptions{MACA: rmac(1, 0xfe), MACB: rmac(2, 0xfe), MTU: wanMTU})
	must(err)
	for _, s := range []struct {
		host, gw       *topo.Link
		h4, g4, h6, g6 netip.Addr
		far4, far6     string
	}{
		{n.hA, n.pA, hostA4, gwA4, hostA6, gwA6, "10.2.0.0/24", "fd00:2::/64"},
		{n.hB, n.pB, hostB4, gwB4, hostB6, gwB6, "10.1.0.0/24", "fd00:1::/64"},
	} {
		must(s.host.AddAddr(netip.PrefixFrom(s.h4, 24)))
		must(s.host.AddAddr(netip.PrefixFrom(s.h6, 64)))
		must(s.gw.AddAddr(netip.PrefixFrom(s.g4, 24)))
		must(s.gw.AddAddr(netip.PrefixFrom(s.g6, 64)))
		// The engine takes the host's frames with XDP: TCP and UDP must
		// leave the host with their checksums complete.
		must(s.host.DisableTXChecksum())
		must(s.host.SetNeighbour(s.g4, s.gw.MAC))
		must(s.host.SetNeighbour(s.g6, s.gw.MAC))
		must(s.gw.SetNeighbour(s.h4, s.host.MAC))
		must(s.gw.SetNeighbour(s.h6, s.host.MAC))
		must(s.host.NS.AddRoute(netip.MustParsePrefix(s.far4), s.g4, "", 0))
		must(s.host.NS.AddRoute(netip.MustParsePrefix(s.far6), s.g6, "", 0))
	}
	wanA, wanB, bits := wanA, wanB, 24
	if o.wan6 {
		// Static neighbours: the engine does no neighbour discovery (the
		// bpf program passes ICMPv6 ND to the kernel, so it would work,
		// but the test should not depend on it).
		wanA, wanB, bits = wanA6, wanB6, 64
	}
	n.wanA, n.wanB = wanA, wanB
	must(n.cA.AddAddr(netip.PrefixFrom(wanA, bits)))
	must(n.cB.AddAddr(netip.PrefixFrom(wanB, bits)))
	must(n.cA.SetNeighbour(wanB, n.cB.MAC))
	must(n.cB.SetNeighbour(wanA, n.cA.MAC))

	tr := esp.MustParseTransform("aes128gcm16")
	keyAB, keyBA := bytes.Repeat([]byte{0xab}, 20), bytes.Repeat([]byte{0xba}, 20)
	mkSA := func(spi uint32, dir sa.Direction, local, remote netip.Addr, key []byte, pmtu int) *sa.SA {
		s, err := sa.New(sa.Config{Name: fmt.Sprintf("rt-%x", spi), SPI: spi, Direction: dir, Mode: esp.Tunnel,
			Local: local, Remote: remote, Transform: tr, Key: key, PathMTU: pmtu})
		must(err)
		return s
	}
	side := func(out, in *sa.SA) routerSide {
		sad := sa.NewSAD(sa.SADOptions{})
		must(sad.Add(out))
		must(sad.Add(in))
		tun := sa.NewTunnel("peer")
		tun.SetOutbound(out)
		proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Tunnel: tun})
		must(err)
		return routerSide{out: out, in: in, proc: proc}
	}
	n.a = side(mkSA(0xa0b, sa.Out, wanA, wanB, keyAB, pathMTUA), mkSA(0xb0a, sa.In, wanA, wanB, keyBA, 0))
	n.b = side(mkSA(0xb0a, sa.Out, wanB, wanA, keyBA, 0), mkSA(0xa0b, sa.In, wanB, wanA, keyAB, 0))
	return n
}

// configA and configB are the gateways' engine configurations without
// gateway duties.
func (n *routerNet) configA() EngineConfig {
	return EngineConfig{
		Processor: n.a.proc,
		Cipher:    Port{Name: n.cA.Name, NextHop: n.cB.MAC},
		Plain:     &Port{Name: n.pA.Name, NextHop: n.hA.MAC},
		ProtectedPrefixes: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/24"),
			netip.MustParsePrefix("fd00:2::/64")},
		UMEM: UMEMConfig{NumFrames: 2048, FillSize: 512, CompletionSize: 512},
	}
}

func (n *routerNet) configB() EngineConfig {
	return EngineConfig{
		Processor: n.b.proc,
		Cipher:    Port{Name: n.cB.Name, NextHop: n.cA.MAC},
		Plain:     &Port{Name: n.pB.Name, NextHop: n.hB.MAC},
		ProtectedPrefixes: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24"),
			netip.MustParsePrefix("fd00:1::/64")},
		UMEM: UMEMConfig{NumFrames: 2048, FillSize: 512, CompletionSize: 512},
	}
}

// start starts an engine in ns; the returned function stops it (also
// run with the test's cleanup).
func startIn(t *testing.T, ns *topo.NS, cfg EngineConfig) (*Engine, func()) {
	t.Helper()
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(e.Start); err != nil {
		t.Fatalf("Engine.Start in %s: %v", ns.Label, err)
	}
	stop := func() {
		if err := e.Stop(); err != nil {
			t.Errorf("Engine.Stop in %s: %v", ns.Label, err)
		}
	}
	t.Cleanup(stop)
	return e, stop
}

// nsLink is l as the test helpers' netns.Link, for newCapture.
func nsLink(l *topo.Link) *netns.Link {
	return &netns.Link{NS: &netns.NS{Name: l.NS.Name}, Name: l.Name, Index: l.Index, MAC: l.MAC}
}

// run runs a command in ns with a timeout and returns its output; the
// exit status is returned as err (ping fails when no reply comes).
func run(ns *topo.NS, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := ns.Exec(ctx, name, args...)
	return string(out), err
}

var routeMTU = regexp.MustCompile(`\bmtu (\d+)`)

// learnedMTU polls "ip route get dst" in ns until it shows a path MTU
// (the kernel's PMTU cache) and returns it, or 0 after a timeout.
func learnedMTU(t *testing.T, ns *topo.NS, dst netip.Addr) (int, string) {
	t.Helper()
	var out string
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var err error
		if out, err = ns.IP("route", "get", dst.String()); err != nil {
			t.Fatal(err)
		}
		if m := routeMTU.FindStringSubmatch(out); m != nil {
			v, _ := strconv.Atoi(m[1])
			return v, out
		}
	}
	return 0, out
}

// icmpFrame matches IPv4 ICMP frames of type typ from src to dst, or
// (for IPv6 addresses) ICMPv6 frames.
func icmpFrame(typ byte, src, dst netip.Addr) func([]byte) bool {
	if src.Is4() {
		return func(f []byte) bool { return fromTo(1, src, dst)(f) && len(f) > 34 && f[34] == typ }
	}
	return func(f []byte) bool {
		return len(f) >= 62 && binary.BigEndian.Uint16(f[12:]) == 0x86dd && f[20] == 58 &&
			netip.AddrFrom16([16]byte(f[22:38])) == src && netip.AddrFrom16([16]byte(f[38:54])) == dst && f[54] == typ
	}
}

// checkICMP decodes an ICMP error frame with gopacket, verifies its
// checksums from scratch and returns the ICMP layer's type, code, the
// 4-byte field after the checksum and the quoted packet.
func checkICMP(t *testing.T, f []byte) (typ, code uint8, field uint32, quote []byte) {
	t.Helper()
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		m, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		if m == nil {
			t.Fatalf("no ICMPv4 layer in %v", p)
		}
		if csum(ip.Contents) != 0 || csum(ip.Payload) != 0 {
			t.Errorf("ICMPv4 error: bad checksum (header %#x, ICMP %#x)", ip.Checksum, m.Checksum)
		}
		if ip.TTL != inet.ErrorTTL {
			t.Errorf("ICMPv4 error TTL %d", ip.TTL)
		}
		return m.TypeCode.Type(), m.TypeCode.Code(), uint32(m.Id)<<16 | uint32(m.Seq), m.Payload
	}
	ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	m, _ := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	if ip == nil || m == nil {
		t.Fatalf("no ICMPv6 in %v", p)
	}
	ph := append(append(append([]byte(nil), ip.SrcIP...), ip.DstIP...), 0, 0, byte(len(ip.Payload)>>8), byte(len(ip.Payload)), 0, 0, 0, 58)
	if csum(append(ph, ip.Payload...)) != 0 {
		t.Errorf("ICMPv6 error: bad checksum %#x", m.Checksum)
	}
	return m.TypeCode.Type(), m.TypeCode.Code(), binary.BigEndian.Uint32(m.Payload), m.Payload[4:]
}

// TestRouterFragNeeded: hosts behind gwA send DF packets that fit the
// LAN but not the tunnel (gwA's outbound SA has path MTU 1500); gwA
// answers with ICMP "fragmentation needed" / ICMPv6 "packet too big",
// the hosts' kernels learn the plaintext MTU, and packets of that size
// then cross the tunnel.
func TestRouterFragNeeded(t *testing.T) {
	n := newRouterNet(t, 1500, 0)
	ptMTU := n.a.out.PlaintextMTU()
	if ptMTU <= 1280 || ptMTU >= 1500 {
		t.Fatalf("plaintext MTU %d: want 1280 < MTU < 1500 for this test", ptMTU)
	}
	cfg := n.configA()
	cfg.ICMPErrors, cfg.ICMPSource4, cfg.ICMPSource6 = true, gwA4, gwA6
	ea, _ := startIn(t, n.gwA, cfg)
	startIn(t, n.gwB, n.configB())
	capA := newCapture(t, nsLink(n.hA))

	if mtu, out := learnedMTU(t, n.hostA, hostB4); mtu != 0 {
		t.Fatalf("hostA knows a path MTU before the test: %s", out)
	}
	// Without DF the packet is only dropped: the engine does not
	// fragment (and no ICMP is due). Before hostA learns the MTU, or its
	// kernel would fragment.
	w0 := ea.Stats().Workers[0]
	run(n.hostA, "ping", "-n", "-M", "dont", "-s", "1472", "-c", "1", "-W", "1", hostB4.String())
	if w := ea.Stats().Workers[0]; w.MTUDrops != w0.MTUDrops+1 || w.ICMPNotSent != w0.ICMPNotSent+1 || w.ICMPSent != w0.ICMPSent {
		t.Errorf("no-DF ping: MTU drops %d→%d, ICMP not sent %d→%d, sent %d→%d; want +1, +1, +0",
			w0.MTUDrops, w.MTUDrops, w0.ICMPNotSent, w.ICMPNotSent, w0.ICMPSent, w.ICMPSent)
	}

	// A 1500-byte DF echo request: dropped by gwA's SA, answered with
	// fragmentation needed.
	out, err := run(n.hostA, "ping", "-n", "-M", "do", "-s", "1472", "-c", "1", "-W", "1", hostB4.String())
	if err == nil {
		t.Errorf("a 1500-byte ping crossed a tunnel with plaintext MTU %d: %s", ptMTU, out)
	}
	got := capA.collect(1, 2*time.Second, icmpFrame(3, gwA4, hostA4))
	if len(got) != 1 {
		t.Fatalf("hostA received %d ICMP unreachable from %v, want 1; ping: %s; stats %+v", len(got), gwA4, out, ea.Stats().Workers)
	}
	typ, code, field, quote := checkICMP(t, got[0])
	if typ != 3 || code != 4 || int(field&0xffff) != ptMTU {
		t.Errorf("ICMP type %d code %d next-hop MTU %d, want 3, 4, %d", typ, code, field&0xffff, ptMTU)
	}
	if len(quote) != inet.MaxICMP4-28 || netip.AddrFrom4([4]byte(quote[16:20])) != hostB4 || quote[9] != 1 {
		t.Errorf("quote of %d bytes: % x", len(quote), quote[:20])
	}
	if mtu, out := learnedMTU(t, n.hostA, hostB4); mtu != ptMTU {
		t.Errorf("hostA's kernel learned path MTU %d, want %d: %s", mtu, ptMTU, out)
	}
	// At the learned MTU the tunnel works.
	if out, err := run(n.hostA, "ping", "-n", "-M", "do", "-s", strconv.Itoa(ptMTU-28), "-c", "1", "-W", "2", hostB4.String()); err != nil {
		t.Errorf("ping of %d bytes: %v: %s", ptMTU, err, out)
	}

	// IPv6: packet too big.
	out, err = run(n.hostA, "ping", "-6", "-n", "-M", "do", "-s", "1452", "-c", "1", "-W", "1", hostB6.String())
	if err == nil {
		t.Errorf("a 1500-byte IPv6 ping crossed the tunnel: %s", out)
	}
	got = capA.collect(1, 2*time.Second, icmpFrame(2, gwA6, hostA6))
	if len(got) != 1 {
		t.Fatalf("hostA received %d ICMPv6 packet too big, want 1; ping: %s; stats %+v", len(got), out, ea.Stats().Workers)
	}
	typ, code, field, quote = checkICMP(t, got[0])
	if typ != 2 || code != 0 || int(field) != ptMTU {
		t.Errorf("ICMPv6 type %d code %d MTU %d, want 2, 0, %d", typ, code, field, ptMTU)
	}
	if len(quote) != inet.MaxICMP6-48 || netip.AddrFrom16([16]byte(quote[24:40])) != hostB6 {
		t.Errorf("ICMPv6 quote of %d bytes", len(quote))
	}
	if mtu, out := learnedMTU(t, n.hostA, hostB6); mtu != ptMTU {
		t.Errorf("hostA's kernel learned IPv6 path MTU %d, want %d: %s", mtu, ptMTU, out)
	}
	if out, err := run(n.hostA, "ping", "-6", "-n", "-M", "do", "-s", strconv.Itoa(ptMTU-48), "-c", "1", "-W", "2", hostB6.String()); err != nil {
		t.Errorf("IPv6 ping of %d bytes: %v: %s", ptMTU, err, out)
	}
	if w := ea.Stats().Workers[0]; w.ICMPSent != 2 || w.ICMPRateLimited != 0 {
		t.Errorf("ICMP sent %d, rate limited %d; want 2, 0", w.ICMPSent, w.ICMPRateLimited)
	}
}

// TestRouterMSSClamp: a TCP connection through both gateways settles on
// the MSS of the hosts' 1500-byte links without clamping, and on at
// most ClampMSS (IPv6: ClampMSS-20) with gwA clamping, both ends.
func TestRouterMSSClamp(t *testing.T) {
	// The wan link carries 1500-byte inner packets plus ESP.
	n := newRouterNet(t, 0, 2000)
	startIn(t, n.gwB, n.configB())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	transfer := func(dst netip.Addr, port uint16) topo.TransferResult {
		t.Helper()
		res, err := topo.Transfer(ctx, n.hostB, netip.AddrPortFrom(dst, port), n.hostA, 256<<10, uint64(port), nil)
		if err != nil {
			t.Fatalf("transfer to %v: %v", dst, err)
		}
		return res
	}

	ea, stop := startIn(t, n.gwA, n.configA())
	plain := transfer(hostB4, 5201)
	if plain.ServerMSS <= 1200 || plain.ClientMSS <= 1200 {
		t.Errorf("without clamping: server MSS %d, client MSS %d; want above 1200", plain.ServerMSS, plain.ClientMSS)
	}
	if c := ea.Stats().Workers[0].MSSClamped; c != 0 {
		t.Errorf("%d segments clamped with clamping off", c)
	}
	stop()

	const clamp = 1200
	cfg := n.configA()
	cfg.ClampMSS = clamp
	ea, _ = startIn(t, n.gwA, cfg)
	res := transfer(hostB4, 5202)
	if res.ServerMSS > clamp || res.ClientMSS > clamp || res.ServerMSS < clamp-40 {
		t.Errorf("clamped to %d: server MSS %d, client MSS %d", clamp, res.ServerMSS, res.ClientMSS)
	}
	res6 := transfer(hostB6, 5203)
	if res6.ServerMSS > clamp-20 || res6.ClientMSS > clamp-20 || res6.ServerMSS < clamp-60 {
		t.Errorf("IPv6 clamped to %d: server MSS %d, client MSS %d", clamp-20, res6.ServerMSS, res6.ClientMSS)
	}
	// SYN on the encrypt path and SYN-ACK on the decrypt path, twice.
	if c := ea.Stats().Workers[0].MSSClamped; c < 4 {
		t.Errorf("MSSClamped %d, want at least 4", c)
	}
	t.Logf("MSS without clamp: server %d client %d; with %d: server %d client %d; IPv6 server %d client %d",
		plain.ServerMSS, plain.ClientMSS, clamp, res.ServerMSS, res.ClientMSS, res6.ServerMSS, res6.ClientMSS)
}

// TestRouterTTL: both gateways decrement the inner TTL; a packet with
// TTL 1 entering gwA is answered with ICMP time exceeded (IPv6 too), one
// with TTL 2 expires at gwB after decryption, and one with TTL 5 reaches
// hostB with TTL 3. ICMP errors are rate limited.
func TestRouterTTL(t *testing.T) {
	n := newRouterNet(t, 0, 0)
	cfg := n.configA()
	cfg.DecrementTTL, cfg.ICMPErrors, cfg.ICMPSource4, cfg.ICMPSource6 = true, true, gwA4, gwA6
	cfg.ICMPRate, cfg.ICMPBurst = 1, 3
	ea, _ := startIn(t, n.gwA, cfg)
	cfgB := n.configB()
	cfgB.DecrementTTL = true
	eb, _ := startIn(t, n.gwB, cfgB)
	capA, capB := newCapture(t, nsLink(n.hA)), newCapture(t, nsLink(n.hB))

	pkt := func(id uint16, ttl byte) []byte {
		p := innerUDP(hostA4, hostB4, id, 100)
		p[8] = ttl // the kernel fills in the header checksum (IP_HDRINCL)
		return p
	}
	if err := sendIPv4(&netns.NS{Name: n.hostA.Name}, unix.IPPROTO_RAW, pkt(1, 1), pkt(2, 2), pkt(5, 5)); err != nil {
		t.Fatal(err)
	}
	got := capA.collect(1, 2*time.Second, icmpFrame(11, gwA4, hostA4))
	if len(got) != 1 {
		t.Fatalf("hostA received %d time exceeded, want 1; stats A %+v B %+v", len(got), ea.Stats().Workers, eb.Stats().Workers)
	}
	typ, code, _, quote := checkICMP(t, got[0])
	if typ != 11 || code != 0 || len(quote) != 128 || binary.BigEndian.Uint16(quote[4:]) != 1 || quote[8] != 1 {
		t.Errorf("ICMP type %d code %d quoting %d bytes (id %d, TTL %d); want 11, 0, the 128-byte packet 1 with TTL 1",
			typ, code, len(quote), binary.BigEndian.Uint16(quote[4:]), quote[8])
	}
	arrived := capB.collect(1, 2*time.Second, fromTo(17, hostA4, hostB4))
	if len(arrived) != 1 {
		t.Fatalf("hostB received %d packets, want only the one sent with TTL 5", len(arrived))
	}
	if id, ttl := binary.BigEndian.Uint16(arrived[0][18:]), arrived[0][22]; id != 5 || ttl != 3 {
		t.Errorf("hostB received id %d with TTL %d, want id 5 with TTL 3", id, ttl)
	}
	if csum(arrived[0][14:34]) != 0 {
		t.Error("header checksum wrong after two decrements")
	}
	if a, b := ea.Stats().Workers[0], eb.Stats().Workers[0]; a.TTLExpired != 1 || b.TTLExpired != 1 || a.ICMPSent != 1 || b.ICMPSent != 0 {
		t.Errorf("TTL expired A %d B %d, ICMP sent A %d B %d; want 1, 1, 1, 0", a.TTLExpired, b.TTLExpired, a.ICMPSent, b.ICMPSent)
	}

	// The kernel's own traceroute-style probe, IPv6: hop limit 1.
	out, _ := run(n.hostA, "ping", "-6", "-n", "-t", "1", "-c", "1", "-W", "1", hostB6.String())
	got = capA.collect(1, 2*time.Second, icmpFrame(3, gwA6, hostA6))
	if len(got) != 1 {
		t.Fatalf("hostA received %d ICMPv6 time exceeded, want 1; ping: %s", len(got), out)
	}
	if typ, code, _, quote := checkICMP(t, got[0]); typ != 3 || code != 0 || len(quote) < 40 || quote[7] != 1 {
		t.Errorf("ICMPv6 type %d code %d", typ, code)
	}
	if !regexp.MustCompile(`(?i)time exceeded|hop limit`).MatchString(out) {
		t.Errorf("ping does not report the time exceeded: %s", out)
	}

	// Rate limit: a burst of 3 at 1/s, of which 2 are used.
	const burst = 10
	var probes [][]byte
	for i := range burst {
		probes = append(probes, pkt(uint16(100+i), 1))
	}
	if err := sendIPv4(&netns.NS{Name: n.hostA.Name}, unix.IPPROTO_RAW, probes...); err != nil {
		t.Fatal(err)
	}
	netns.WaitFor(2*time.Second, func() bool { return ea.Stats().Workers[0].TTLExpired == 2+burst })
	w := ea.Stats().Workers[0]
	if w.TTLExpired != 2+burst || w.ICMPSent+w.ICMPRateLimited != 2+burst || w.ICMPSent < 3 || w.ICMPRateLimited < burst/2 {
		t.Errorf("after %d more expiring packets: expired %d, ICMP sent %d, rate limited %d", burst, w.TTLExpired, w.ICMPSent, w.ICMPRateLimited)
	}
	if got := capA.collect(burst, 300*time.Millisecond, icmpFrame(11, gwA4, hostA4)); int(w.ICMPSent)-2 != len(got) {
		t.Errorf("hostA received %d more time exceeded, the engine counts %d", len(got), w.ICMPSent-2)
	}
}

func TestICMPTokenBucket(t *testing.T) {
	b := newTokenBucket(100, 20)
	n := 0
	for range 50 {
		if b.take(0) {
			n++
		}
	}
	if n != 20 {
		t.Errorf("burst gave %d tokens, want 20", n)
	}
	if b.take(int64(5 * time.Millisecond)) {
		t.Error("a token after 5ms at 100/s")
	}
	if !b.take(int64(10*time.Millisecond)) || b.take(int64(10*time.Millisecond)) {
		t.Error("want exactly one token after 10ms at 100/s")
	}
	if !b.take(int64(time.Hour)) {
		t.Error("no token after an hour")
	}
	n = 0
	for range 50 {
		if b.take(int64(time.Hour)) {
			n++
		}
	}
	if n != 19 {
		t.Errorf("after a long pause %d more tokens, want 19 (the burst)", n)
	}
}

// routerWorker is an engine worker without ports: ICMP errors stay in
// its plaintext side's output queue (ew.out[sidePlain]).
func routerWorker(cfg EngineConfig) *engineWorker {
	return &engineWorker{e: &Engine{cfg: cfg}, rt: &engineRun{epoch: time.Now()},
		router: router{icmp: newTokenBucket(1e9, 1e9)}}
}

// synFrame is a frame with headroom holding a TCP SYN from hostA to
// hostB with MSS 1460 and the given TTL.
func synFrame(ttl byte) []byte {
	f := make([]byte, 2048)
	tcp := []byte{0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, 0x02, 0xfa, 0xf0, 0, 0, 0, 0, 2, 4, 0x05, 0xb4}
	p := ipv4(hostA4, hostB4, 6, 7, tcp)
	p[8] = ttl
	binary.BigEndian.PutUint16(p[10:], 0)
	binary.BigEndian.PutUint16(p[10:], csum(p[:20]))
	ph := append(append(append([]byte(nil), p[12:20]...), 0, 6), 0, byte(len(tcp)))
	binary.BigEndian.PutUint16(p[36:], csum(append(ph, p[20:]...)))
	copy(f[256:], p)
	return f[:256+len(p)]
}

// TestRouterDuties checks the worker's gateway duties without sockets:
// expiring packets leave the batch and become time exceeded, MSS is
// clamped, decrypted packets are decremented and clamped.
func TestRouterDuties(t *testing.T) {
	cfg := EngineConfig{ClampMSS: 1000, DecrementTTL: true, ICMPErrors: true, ICMPSource4: gwA4}
	ew := routerWorker(cfg)
	ttls := []byte{64, 1, 2, 1, 30}
	for i, ttl := range ttls {
		f := synFrame(ttl)
		ew.pk[i] = sa.Packet{Buf: f[:cap(f)], Off: 256, Len: len(f) - 256, Meta: uint64(i) << 12}
	}
	k := ew.beforeOutbound(len(ttls))
	if k != 3 {
		t.Fatalf("batch of %d after TTL, want 3", k)
	}
	for i, want := range []byte{63, 1, 29} {
		p := ew.pk[i].Data()
		if p[8] != want || csum(p[:20]) != 0 {
			t.Errorf("packet %d: TTL %d (want %d), header checksum ok %v", i, p[8], want, csum(p[:20]) == 0)
		}
		if mss, _ := inet.MSS(p); mss != 1000 || ew.mssOld[i] != 1460 {
			t.Errorf("packet %d: MSS %d (was %d), want 1000 (1460)", i, mss, ew.mssOld[i])
		}
	}
	if ew.nOut[sidePlain] != 2 || ew.c.ttlExpired.Load() != 2 || ew.c.icmpSent.Load() != 2 || ew.c.mssClamped.Load() != 3 {
		t.Errorf("delivered %d, expired %d, ICMP sent %d, clamped %d; want 2, 2, 2, 3",
			ew.nOut[sidePlain], ew.c.ttlExpired.Load(), ew.c.icmpSent.Load(), ew.c.mssClamped.Load())
	}
	for i := range ew.nOut[sidePlain] {
		m := ew.out[sidePlain][i].Data()
		if len(m) != 28+44 || m[9] != 1 || m[20] != 11 || netip.AddrFrom4([4]byte(m[16:20])) != hostA4 || csum(m[:20]) != 0 || csum(m[20:]) != 0 {
			t.Errorf("delivered %d is not a time exceeded to %v: % x", i, hostA4, m)
		}
		if ew.out[sidePlain][i].Meta != uint64([]int{1, 3}[i])<<12 {
			t.Errorf("delivered %d in frame %#x", i, ew.out[sidePlain][i].Meta)
		}
	}

	// Decrypt path.
	f := synFrame(2)
	p := sa.Packet{Buf: f, Off: 256, Len: len(f) - 256, Verdict: sa.VerdictOK}
	if !ew.afterInbound(&p) || p.Data()[8] != 1 {
		t.Fatal("TTL 2 not forwarded with TTL 1")
	}
	if mss, _ := inet.MSS(p.Data()); mss != 1000 {
		t.Errorf("decrypted SYN MSS %d", mss)
	}
	if ew.afterInbound(&p) {
		t.Error("TTL 1 forwarded")
	}
	f = synFrame(9)
	p = sa.Packet{Buf: f, Off: 256, Len: len(f) - 256, Verdict: sa.VerdictBypass}
	if !ew.afterInbound(&p) || p.Data()[8] != 8 {
		t.Error("bypassed packet's TTL not decremented")
	}
	if mss, _ := inet.MSS(p.Data()); mss != 1460 {
		t.Errorf("bypassed SYN clamped to %d", mss)
	}
}

func TestRouterDutiesAlloc(t *testing.T) {
	if race.Enabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	cfg := EngineConfig{ClampMSS: 1000, DecrementTTL: true, ICMPErrors: true, ICMPSource4: gwA4}
	ew := routerWorker(cfg)
	frames := [][]byte{synFrame(64), synFrame(1), synFrame(5)}
	orig := make([][]byte, len(frames))
	for i, f := range frames {
		orig[i] = bytes.Clone(f)
	}
	allocs := testing.AllocsPerRun(100, func() {
		for i, f := range frames {
			copy(f, orig[i])
			ew.pk[i] = sa.Packet{Buf: f, Off: 256, Len: len(f) - 256}
		}
		k := ew.beforeOutbound(len(frames))
		for i := range k {
			ew.pk[i].Verdict = sa.VerdictOK
			ew.afterInbound(&ew.pk[i])
		}
		ew.pk[0].Verdict, ew.pk[0].Reason = sa.VerdictDrop, sa.DropMTU
		ew.icmpBack(&ew.pk[0], true, 1400)
		ew.nOut[sidePlain], ew.nFree = 0, 0
	})
	if allocs != 0 {
		t.Errorf("%v allocations per batch, want 0", allocs)
	}
}

// TestRouterIPv6Outside: the tunnel between the two engines runs over an
// IPv6 wan (ESP in IPv6), carrying IPv4 (v4-in-v6) and IPv6 (v6-in-v6)
// inner packets in both directions: pings and a checksummed TCP
// transfer each way. gwB's steering program takes only ESP to its IPv6
// wan address (LocalAddrs), so every packet that arrives crossed the wan
// as IPv6 ESP.
func TestRouterIPv6Outside(t *testing.T) {
	// The wan carries 1500-byte inner packets plus ESP in IPv6.
	n := newRouterNetOpts(t, routerOpts{wan6: true, wanMTU: 2000})
	if r := n.a.out.Config().Remote; !r.Is6() {
		t.Fatalf("gwA's outbound SA goes to %v, want the IPv6 wan", r)
	}
	cfgA, cfgB := n.configA(), n.configB()
	cfgA.LocalAddrs, cfgB.LocalAddrs = []netip.Addr{n.wanA}, []netip.Addr{n.wanB}
	ea, _ := startIn(t, n.gwA, cfgA)
	eb, _ := startIn(t, n.gwB, cfgB)

	for _, c := range []struct {
		from *topo.NS
		dst  netip.Addr
	}{{n.hostA, hostB4}, {n.hostA, hostB6}, {n.hostB, hostA4}, {n.hostB, hostA6}} {
		args := []string{"-n", "-c", "3", "-i", "0.2", "-W", "2", "-s", "1000", c.dst.String()}
		if c.dst.Is6() {
			args = append([]string{"-6"}, args...)
		}
		if out, err := run(c.from, "ping", args...); err != nil {
			t.Errorf("ping %v from %s over the IPv6 wan: %v: %s", c.dst, c.from.Label, err, out)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, c := range []struct {
		server, client *topo.NS
		dst            netip.Addr
	}{{n.hostB, n.hostA, hostB4}, {n.hostB, n.hostA, hostB6}, {n.hostA, n.hostB, hostA6}} {
		port := uint16(5301 + i)
		if _, err := topo.Transfer(ctx, c.server, netip.AddrPortFrom(c.dst, port), c.client, 256<<10, uint64(port), nil); err != nil {
			t.Errorf("TCP transfer to %v over the IPv6 wan: %v", c.dst, err)
		}
	}
	for _, e := range []struct {
		name    string
		eng     *Engine
		in, out *sa.SA
	}{{"gwA", ea, n.a.in, n.a.out}, {"gwB", eb, n.b.in, n.b.out}} {
		st := e.eng.Stats()
		w := st.Workers[0]
		if w.Encrypted < 6 || w.Decrypted < 6 || w.SADrops != 0 || w.NotIP != 0 {
			t.Errorf("%s: encrypted %d, decrypted %d, SA drops %d, not IP %d", e.name, w.Encrypted, w.Decrypted, w.SADrops, w.NotIP)
		}
		if st.CipherProgram.ESPRedirected < w.Decrypted || st.CipherProgram.NotLocal != 0 {
			t.Errorf("%s: program redirected %d ESP for %d decrypted, %d not local", e.name,
				st.CipherProgram.ESPRedirected, w.Decrypted, st.CipherProgram.NotLocal)
		}
		if in, out := e.in.Stats(), e.out.Stats(); in.DecapsPkts < w.Decrypted || out.EncapsPkts < w.Encrypted {
			t.Errorf("%s: SA decaps %d, encaps %d", e.name, in.DecapsPkts, out.EncapsPkts)
		}
	}
	checkFrames(t, ea)
	checkFrames(t, eb)
}

// TestRouterFragmentBeforeEncryption: gwA fragments IPv4 packets without
// DF that exceed its SA's plaintext MTU before encrypting them
// (FragmentInner); gwB decrypts each fragment and hostB reassembles, so
// pings of 1500 bytes and of 2928 bytes (which hostA's kernel already
// fragmented: gwA fragments the first fragment again) are answered. A
// DF packet of that size still gets "fragmentation needed".
func TestRouterFragmentBeforeEncryption(t *testing.T) {
	// gwB's replies (its SA has no path MTU) need a wan larger than 1500.
	n := newRouterNetOpts(t, routerOpts{pathMTUA: 1500, wanMTU: 2000})
	ptMTU := n.a.out.PlaintextMTU()
	cfg := n.configA()
	cfg.FragmentInner, cfg.ICMPErrors, cfg.ICMPSource4, cfg.ICMPSource6 = true, true, gwA4, gwA6
	ea, _ := startIn(t, n.gwA, cfg)
	eb, _ := startIn(t, n.gwB, n.configB())

	for i, c := range []struct {
		payload, pkts, frags int // ICMP payload; packets gwA fragments, into frags
	}{{1472, 1, 2}, {2900, 2, 4}} { // hostA sends 2900 as 1500 + 1448: both too big
		w0 := ea.Stats().Workers[0]
		out, err := run(n.hostA, "ping", "-n", "-M", "dont", "-s", strconv.Itoa(c.payload), "-c", "1", "-W", "2", hostB4.String())
		if err != nil {
			t.Errorf("ping %d: %d-byte payload without DF through a tunnel with plaintext MTU %d: %v: %s\nA %+v\nB %+v",
				i, c.payload, ptMTU, err, out, ea.Stats().Workers[0], eb.Stats().Workers[0])
			continue
		}
		w := ea.Stats().Workers[0]
		if w.Fragmented-w0.Fragmented != uint64(c.pkts) || w.Fragments-w0.Fragments != uint64(c.frags) || w.MTUDrops != w0.MTUDrops || w.FragmentFailed != 0 {
			t.Errorf("ping %d: fragmented %d into %d (failed %d), MTU drops %d; want %d into %d, no drops",
				i, w.Fragmented-w0.Fragmented, w.Fragments-w0.Fragments, w.FragmentFailed, w.MTUDrops-w0.MTUDrops, c.pkts, c.frags)
		}
	}
	// DF: the ICMP error as before, nothing fragmented.
	w0 := ea.Stats().Workers[0]
	if out, err := run(n.hostA, "ping", "-n", "-M", "do", "-s", "1472", "-c", "1", "-W", "1", hostB4.String()); err == nil {
		t.Errorf("a DF packet larger than the plaintext MTU crossed: %s", out)
	}
	if w := ea.Stats().Workers[0]; w.Fragmented != w0.Fragmented || w.ICMPSent != w0.ICMPSent+1 || w.MTUDrops != w0.MTUDrops+1 {
		t.Errorf("DF ping: fragmented %d→%d, ICMP sent %d→%d, MTU drops %d→%d", w0.Fragmented, w.Fragmented, w0.ICMPSent, w.ICMPSent, w0.MTUDrops, w.MTUDrops)
	}
	checkFrames(t, ea)
}

// TestFragmentOutAlloc: fragmenting and encrypting an oversized packet
// (FragmentInner) allocates nothing, and every fragment is encrypted.
func TestFragmentOutAlloc(t *testing.T) {
	if race.Enabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	u := newTestUMEM(t, UMEMConfig{NumFrames: 64, FillSize: 32, CompletionSize: 32})
	proc := oneSAProc(t, sa.Config{Name: "f", SPI: 0xf00, Direction: sa.Out, Mode: esp.Tunnel, Local: wanA, Remote: wanB,
		Transform: esp.MustParseTransform("aes128gcm16"), Key: bytes.Repeat([]byte{1}, 20), PathMTU: 1000}, 1)
	ew := routerWorker(EngineConfig{FragmentInner: true})
	ew.rt.u, ew.w = u, proc.Worker(0)
	pkt := innerUDP(hostA4, hostB4, 1, 2400) // 2428 bytes
	pkt[6] = 0                               // no DF
	binary.BigEndian.PutUint16(pkt[10:], 0)
	binary.BigEndian.PutUint16(pkt[10:], csum(pkt[:20]))
	var d [1]Desc
	run := func() {
		if u.Alloc(d[:]) != 1 {
			t.Fatal("no frame")
		}
		buf, off := u.Frame(d[0])
		copy(buf[off:], pkt)
		ew.pk[0] = sa.Packet{Buf: buf, Off: off, Len: len(pkt), Meta: d[0].Addr &^ u.frameMask}
		ew.w.Outbound(ew.pk[:1])
		ew.finish(&ew.pk[0], sa.Out)
		for _, p := range ew.out[sideCipher][:ew.nOut[sideCipher]] {
			d[0] = Desc{Addr: p.Meta}
			u.Free(d[:])
		}
		u.Free(ew.free[:ew.nFree])
		ew.nOut[sideCipher], ew.nFree = 0, 0
	}
	run()
	if w := &ew.c; w.fragmented.Load() != 1 || w.fragments.Load() != 3 || w.encrypted.Load() != 3 || w.saDrops.Load() != 0 {
		t.Fatalf("fragmented %d into %d, encrypted %d, drops %d; want 1, 3, 3, 0",
			w.fragmented.Load(), w.fragments.Load(), w.encrypted.Load(), w.saDrops.Load())
	}
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Errorf("%v allocations per fragmented packet", n)
	}
}

// TestRouterJumbo: every link at a jumbo MTU, both engines with
// MultiBuffer (AF_XDP multi-buffer): 9000-byte pings cross both ways,
// IPv4 and IPv6 inside, over an IPv4 and an IPv6 wan, and a TCP transfer
// with 9000-byte segments is intact; frames longer than a UMEM frame
// arrive as chains and leave as chains.
func TestRouterJumbo(t *testing.T) {
	for _, wan6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "ipv4-wan", true: "ipv6-wan"}[wan6], func(t *testing.T) {
			// The wan carries 9000-byte inner packets plus ESP.
			n := newRouterNetOpts(t, routerOpts{wan6: wan6, wanMTU: 9100, lanMTU: 9000})
			cfgA, cfgB := n.configA(), n.configB()
			cfgA.MultiBuffer, cfgB.MultiBuffer = true, true
			ea, _ := startIn(t, n.gwA, cfgA)
			eb, _ := startIn(t, n.gwB, cfgB)
			// The longest frame received in one UMEM frame.
			oneFrame := ea.rt.u.FrameSize() - ea.rt.u.DataOffset()
			for _, c := range []struct {
				from *topo.NS
				dst  netip.Addr
				size int
			}{{n.hostA, hostB4, 8972}, {n.hostB, hostA4, 8972}, {n.hostA, hostB6, 8952}, {n.hostA, hostB4, 5000}, {n.hostA, hostB4, 100},
				// Frames that fill one UMEM frame (or nearly): no room
				// left in it for ESP's trailer (a TCP segment of such a
				// size stalled the transfer below under load).
				{n.hostA, hostB4, oneFrame - 14 - 28}, {n.hostA, hostB4, oneFrame - 14 - 28 - 9}, {n.hostA, hostB6, oneFrame - 14 - 48},
				{n.hostB, hostA4, oneFrame - 14 - 28 - 30}} {
				args := []string{"-n", "-M", "do", "-c", "2", "-i", "0.2", "-W", "2", "-s", strconv.Itoa(c.size), c.dst.String()}
				if c.dst.Is6() {
					args = append([]string{"-6"}, args...)
				}
				if out, err := run(c.from, "ping", args...); err != nil {
					t.Errorf("ping -s %d %v from %s: %v: %s\nA %+v\nB %+v", c.size, c.dst, c.from.Label, err, out,
						ea.Stats().Workers[0], eb.Stats().Workers[0])
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := topo.Transfer(ctx, n.hostB, netip.AddrPortFrom(hostB4, 5401), n.hostA, 4<<20, 5401, nil)
			if err != nil || !res.Intact() {
				t.Errorf("TCP transfer at MTU 9000: sent %d, received %d, MSS %d/%d, %v", res.Sent, res.Received, res.ClientMSS, res.ServerMSS, err)
				for _, x := range []*sa.SA{n.a.in, n.a.out, n.b.in, n.b.out} {
					st, _ := json.Marshal(x.Stats().Drops)
					t.Logf("SA %s drops %s", x.Config().Name, st)
				}
				t.Logf("gwA %+v\ngwB %+v", ea.Stats().Workers[0], eb.Stats().Workers[0])
			} else if res.ClientMSS < 8000 {
				t.Errorf("TCP MSS %d, want jumbo segments", res.ClientMSS)
			}
			for _, e := range []*Engine{ea, eb} {
				w := e.Stats().Workers[0]
				if w.JumboRX == 0 || w.JumboTX == 0 || w.JumboDrops != 0 || w.SADrops != 0 {
					t.Errorf("jumbo rx %d tx %d drops %d, SA drops %d", w.JumboRX, w.JumboTX, w.JumboDrops, w.SADrops)
				}
			}
			checkFrames(t, ea)
			checkFrames(t, eb)
		})
	}
}
