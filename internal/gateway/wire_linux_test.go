//go:build linux

package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/xdp"
)

// pmtuNet is hostA — gwA — rtr — gwB — hostB: the gateways' wan links
// meet at a kernel router whose link towards gwB has a smaller MTU
// (midMTU) than the rest (1500).
type pmtuNet struct {
	a, b           *site
	rtr            *topo.NS
	wanA, wanB     netip.Addr // the gateways' wan addresses
	rtrA, rtrB     netip.Addr // the router's
	rtrAMAC, rtrBM net.HardwareAddr
}

func buildPMTUNet(t *testing.T, wan6 bool, midMTU int) *pmtuNet {
	t.Helper()
	tp, mk := topo.NewForTest(t, "pmt")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	n := &pmtuNet{
		a:   &site{host: mk("hostA"), gw: mk("gwA"), hostAddr: netip.MustParseAddr("10.1.0.2")},
		rtr: mk("rtr"),
		b:   &site{host: mk("hostB"), gw: mk("gwB"), hostAddr: netip.MustParseAddr("10.2.0.2")},
	}
	for i, s := range []*site{n.a, n.b} {
		k := byte(i + 1)
		s.hostMAC, s.gwMAC, s.wanMAC = mac(2, k), mac(1, k), mac(0xfe, k)
		hl, gl, err := tp.AddVeth(s.host, "eth0", s.gw, "lan0", topo.VethOptions{MACA: s.hostMAC, MACB: s.gwMAC})
		must(err)
		must(hl.AddAddr(netip.PrefixFrom(s.hostAddr, 24)))
		must(hl.DisableTXChecksum())
		gwLAN := netip.AddrFrom4([4]byte{10, k, 0, 1})
		must(gl.AddAddr(netip.PrefixFrom(gwLAN, 24)))
		must(s.host.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), gwLAN, "", 0))
		must(hl.SetNeighbour(gwLAN, s.gwMAC))
		must(gl.SetNeighbour(s.hostAddr, s.hostMAC))
		s.socket = t.TempDir() + "/ctl.sock"
		s.log = &testenv.SyncBuffer{}
	}
	bits := 24
	n.wanA, n.rtrA = netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.254")
	n.wanB, n.rtrB = netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.254")
	if wan6 {
		bits = 64
		n.wanA, n.rtrA = netip.MustParseAddr("2001:db8:a::1"), netip.MustParseAddr("2001:db8:a::fe")
		n.wanB, n.rtrB = netip.MustParseAddr("2001:db8:b::1"), netip.MustParseAddr("2001:db8:b::fe")
	}
	n.rtrAMAC, n.rtrBM = mac(0xfd, 1), mac(0xfd, 2)
	wa, ra, err := tp.AddVeth(n.a.gw, "wan0", n.rtr, "toA", topo.VethOptions{MACA: n.a.wanMAC, MACB: n.rtrAMAC})
	must(err)
	rb, wb, err := tp.AddVeth(n.rtr, "toB", n.b.gw, "wan0", topo.VethOptions{MACA: n.rtrBM, MACB: n.b.wanMAC, MTU: midMTU})
	must(err)
	for _, x := range []struct {
		l        *topo.Link
		me, peer netip.Addr
		peerMAC  net.HardwareAddr
	}{{wa, n.wanA, n.rtrA, n.rtrAMAC}, {ra, n.rtrA, n.wanA, n.a.wanMAC}, {rb, n.rtrB, n.wanB, n.b.wanMAC}, {wb, n.wanB, n.rtrB, n.rtrBM}} {
		must(x.l.AddAddr(netip.PrefixFrom(x.me, bits)))
		must(x.l.SetNeighbour(x.peer, x.peerMAC))
	}
	def := netip.MustParsePrefix("0.0.0.0/0")
	if wan6 {
		def = netip.MustParsePrefix("::/0")
	}
	must(n.a.gw.AddRoute(def, n.rtrA, "wan0", 0))
	must(n.b.gw.AddRoute(def, n.rtrB, "wan0", 0))
	must(n.rtr.Sysctl("net.ipv4.ip_forward", "1"))
	must(n.rtr.Sysctl("net.ipv6.conf.all.forwarding", "1"))
	return n
}

// yaml is gateway "a"'s or "b"'s configuration: AF_XDP on both sides,
// ICMP errors, no MSS clamp (path MTU discovery must do the work), the
// outbound SA's configured path MTU 1500.
func (n *pmtuNet) yaml(side, keyAB, keyBA, extra string, tun, udp bool) string {
	s, local, remote, next := n.a, n.wanA, n.wanB, n.rtrAMAC
	out, in, outSPI, inSPI, outKey, inKey, protected := "a-to-b", "b-to-a", "0x1001", "0x2001", keyAB, keyBA, "10.2.0.0/24"
	if side == "b" {
		s, local, remote, next = n.b, n.wanB, n.wanA, n.rtrBM
		out, in, outSPI, inSPI, outKey, inKey, protected = in, out, inSPI, outSPI, inKey, outKey, "10.1.0.0/24"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "gateway:\n  control: %s\n  icmp_errors: true\n%s", s.socket, extra)
	fmt.Fprintf(&b, "interfaces:\n  cipher: {name: wan0, next_hop: %q}\n", next.String())
	if tun {
		fmt.Fprintf(&b, "  tun: {name: vti0, routes: [%s]}\n", protected)
	} else {
		fmt.Fprintf(&b, "  plain: {name: lan0, next_hop: %q, address: %s}\nprotected: [%s]\n", s.hostMAC.String(), gwLAN(side), protected)
	}
	fmt.Fprintf(&b, "tunnels:\n  - {name: peer, out: [%s], in: [%s]}\nsas:\n", out, in)
	encap := ""
	if udp {
		encap = ", encap: udp"
	}
	fmt.Fprintf(&b, "  - {name: %s, direction: out, spi: %s, local: %s, remote: %s, transform: aes128gcm16, key: %s, path_mtu: 1500%s}\n", out, outSPI, local, remote, outKey, encap)
	fmt.Fprintf(&b, "  - {name: %s, direction: in, spi: %s, local: %s, remote: %s, transform: aes128gcm16, key: %s%s}\n", in, inSPI, local, remote, inKey, encap)
	return b.String()
}

var routeMTU = regexp.MustCompile(`\bmtu (\d+)`)

// routeMTUOf is the path MTU hostA's kernel has learned for dst (0: none).
func routeMTUOf(t *testing.T, ns *topo.NS, dst netip.Addr) int {
	t.Helper()
	out, err := ns.IP("route", "get", dst.String())
	if err != nil {
		t.Fatal(err)
	}
	if m := routeMTU.FindStringSubmatch(out); m != nil {
		v, _ := strconv.Atoi(m[1])
		return v
	}
	return 0
}

// TestGatewayPathMTU: the router between the gateways has a 1400-byte
// link towards gwB. A large DF packet from hostA crosses gwA (path MTU
// 1500 configured) and dies at the router, which answers gwA with ICMP
// fragmentation needed / packet too big; gwA lowers a-to-b's path MTU to
// 1400 (show sa), so the next large packet gets ICMP fragmentation
// needed from gwA with the new plaintext MTU, hostA learns it, and a TCP
// transfer without MSS clamping works. A forged message (unknown SPI) is
// rejected and counted; the learned MTU ages back to 1500. Over IPv4 and
// IPv6 wans, with raw ESP and ESP in UDP (the quote's UDP ports and the
// SPI behind them), and route-based (the TUN's MTU follows).
func TestGatewayPathMTU(t *testing.T) {
	testenv.RequirePrivileged(t)
	for _, c := range []struct {
		name           string
		wan6, tun, udp bool
	}{{"ipv4-wan", false, false, false}, {"ipv6-wan", true, false, false}, {"ipv4-wan-tun", false, true, false},
		{"ipv4-wan-natt", false, false, true}, {"ipv6-wan-natt", true, false, true}} {
		t.Run(c.name, func(t *testing.T) {
			n := buildPMTUNet(t, c.wan6, 1400)
			if c.tun {
				// The kernel routes into the TUN and answers oversized DF
				// packets itself, from the TUN's MTU.
				for _, s := range []*site{n.a, n.b} {
					if err := s.gw.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
						t.Fatal(err)
					}
				}
			}
			keyAB, keyBA := randKey(t), randKey(t)
			const age = 3 * time.Second
			startGateway(t, n.a, n.yaml("a", keyAB, keyBA, "  pmtu_age: 3s\n", c.tun, c.udp))
			startGateway(t, n.b, n.yaml("b", keyAB, keyBA, "", c.tun, c.udp))
			if got := ping(t, n.a, n.b.hostAddr, 3); got != 3 {
				t.Fatalf("ping: %d of 3\nlogA:\n%s\nlogB:\n%s", got, n.a.log, n.b.log)
			}
			// 1400-byte inner packets fit a-to-b at path MTU 1500 but not
			// the router's 1400-byte link once encrypted.
			const bigPayload = 1400 - 28
			big, err := topo.Ping(n.a.host, n.b.hostAddr, 1, bigPayload, 0, 500*time.Millisecond)
			if err != nil || big.Received != 0 {
				t.Fatalf("large ping before discovery: %+v, %v", big, err)
			}
			var st = statsOf(t, n.a.socket, "a-to-b")
			for deadline := time.Now().Add(2 * time.Second); st.PathMTU != 1400 && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
				st = statsOf(t, n.a.socket, "a-to-b")
			}
			if st.PathMTU != 1400 {
				t.Fatalf("a-to-b path MTU %d after the router's ICMP, want 1400\nlogA:\n%s", st.PathMTU, n.a.log)
			}
			pt := st.PlaintextMTU
			if pt <= 1280 || pt >= 1400 {
				t.Fatalf("plaintext MTU %d for path MTU 1400", pt)
			}
			if c.tun {
				if got := linkMTU(t, n.a.gw, "vti0"); got != pt {
					t.Errorf("vti0 MTU %d, want the new plaintext MTU %d", got, pt)
				}
			}
			// The next large packet: gwA answers with its plaintext MTU.
			if big, _ := topo.Ping(n.a.host, n.b.hostAddr, 1, bigPayload, 0, 500*time.Millisecond); big.Received != 0 {
				t.Errorf("a 1400-byte ping crossed a 1400-byte link inside ESP")
			}
			if got := routeMTUOf(t, n.a.host, n.b.hostAddr); got != pt {
				t.Errorf("hostA learned path MTU %d, want gwA's plaintext MTU %d", got, pt)
			}
			if r, err := topo.Ping(n.a.host, n.b.hostAddr, 1, pt-28, 0, time.Second); err != nil || r.Received != 1 {
				t.Errorf("ping of the plaintext MTU %d: %+v, %v", pt, r, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := topo.Transfer(ctx, n.b.host, netip.AddrPortFrom(n.b.hostAddr, 5021), n.a.host, 1<<20, 21, nil)
			if err != nil || !res.Intact() {
				t.Fatalf("TCP transfer relying on path MTU discovery: %+v, %v", res, err)
			}

			// A forged packet-too-big quoting an SPI we do not use.
			forgePTB(t, n, 0x7777, 1300)
			var ws WireStats
			for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				resp, err := Call(n.a.socket, Request{Cmd: "show-stats"}, time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if ws = resp.Stats.Wire; ws.PMTURejected["no-sa"] > 0 {
					break
				}
			}
			if ws.PMTUAccepted == 0 || ws.PMTURejected["no-sa"] != 1 {
				t.Errorf("wire stats %+v: want ≥ 1 accepted and the forged one rejected as no-sa", ws)
			}
			if s := statsOf(t, n.a.socket, "a-to-b"); s.PathMTU != 1400 {
				t.Errorf("path MTU %d after the forged message, want 1400", s.PathMTU)
			}

			// Aging: back to the configured 1500.
			deadline := time.Now().Add(2 * age)
			for statsOf(t, n.a.socket, "a-to-b").PathMTU != 1500 && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			s := statsOf(t, n.a.socket, "a-to-b")
			if s.PathMTU != 1500 {
				t.Errorf("path MTU %d %v after it was learned, want the configured 1500 back", s.PathMTU, 2*age)
			}
			if c.tun {
				if got := linkMTU(t, n.a.gw, "vti0"); got != s.PlaintextMTU {
					t.Errorf("vti0 MTU %d after aging, want %d", got, s.PlaintextMTU)
				}
			}
		})
	}
}

// linkMTU is the MTU of interface name in ns.
func linkMTU(t *testing.T, ns *topo.NS, name string) int {
	t.Helper()
	var mtu int
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(name)
		if err == nil {
			mtu = ifi.MTU
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return mtu
}

// forgePTB sends, from the router, an ICMP packet-too-big to gwA that
// quotes an ESP packet from gwA to gwB with SPI spi.
func forgePTB(t *testing.T, n *pmtuNet, spi uint32, mtu int) {
	t.Helper()
	msg := ptbMsg(t, outerESP(n.wanA, n.wanB, false, 0, 0, spi, 1500), n.rtrA, mtu)
	err := n.rtr.Do(func() error {
		fam, proto := unix.AF_INET6, unix.IPPROTO_ICMPV6
		var sa unix.Sockaddr = &unix.SockaddrInet6{Addr: n.wanA.As16()}
		if n.wanA.Is4() {
			fam, proto, sa = unix.AF_INET, unix.IPPROTO_ICMP, &unix.SockaddrInet4{Addr: n.wanA.As4()}
		}
		fd, err := unix.Socket(fam, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, msg, 0, sa)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestGatewayVLAN: both gateways' wan is VLAN 100 (interfaces.cipher.vlan):
// traffic crosses tagged. With gwB on VLAN 200 instead, nothing crosses
// and both gateways count the frames of the other VLAN as vlan drops.
func TestGatewayVLAN(t *testing.T) {
	testenv.RequirePrivileged(t)
	withVLAN := func(yaml string, vid int) string {
		return strings.Replace(yaml, "cipher: {name: wan0,", fmt.Sprintf("cipher: {name: wan0, vlan: %d,", vid), 1)
	}
	for _, c := range []struct {
		name       string
		vidA, vidB int
	}{{"same", 100, 100}, {"mismatch", 100, 200}} {
		t.Run(c.name, func(t *testing.T) {
			a, b := buildTopology(t)
			p := gwParams{keyAB: randKey(t), keyBA: randKey(t)}
			startGateway(t, a, withVLAN(gatewayYAML(a, b, "a", p), c.vidA))
			startGateway(t, b, withVLAN(gatewayYAML(b, a, "b", p), c.vidB))
			got := ping(t, a, b.hostAddr, 3)
			stA, err := Call(a.socket, Request{Cmd: "show-stats"}, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			stB, err := Call(b.socket, Request{Cmd: "show-stats"}, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if c.vidA == c.vidB {
				if got != 3 || stA.Stats.Wire.VLANDrops != 0 || stB.Stats.Wire.VLANDrops != 0 {
					t.Errorf("VLAN %d both sides: %d of 3 pings, vlan drops A %d B %d", c.vidA, got, stA.Stats.Wire.VLANDrops, stB.Stats.Wire.VLANDrops)
				}
				return
			}
			if got != 0 || stB.Stats.Wire.VLANDrops < 3 || stB.Stats.Decrypted != 0 {
				t.Errorf("VLAN %d vs %d: %d pings answered, gwB vlan drops %d, decrypted %d; want 0, ≥ 3, 0",
					c.vidA, c.vidB, got, stB.Stats.Wire.VLANDrops, stB.Stats.Decrypted)
			}
		})
	}
}

// TestGatewayJumboMTURefused: a gateway whose wan interface has a jumbo
// MTU (9000) that AF_XDP without multi-buffer cannot receive refuses to
// start, and says which interface, which MTU and what the limit is.
func TestGatewayJumboMTURefused(t *testing.T) {
	testenv.RequirePrivileged(t)
	a, b := buildTopology(t)
	if _, err := a.gw.IP("link", "set", "dev", "wan0", "mtu", "9000"); err != nil {
		t.Fatal(err)
	}
	p := gwParams{keyAB: randKey(t), keyBA: randKey(t)}
	cfg, err := config.Parse("gw.yaml", []byte(gatewayYAML(a, b, "a", p)))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(cfg, Options{NetNS: a.gw.Path(), Logger: slog.New(slog.NewTextHandler(a.log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	err = gw.Start()
	if !errors.Is(err, xdp.ErrMTU) {
		t.Fatalf("Start with a 9000-byte wan MTU: %v, want xdp.ErrMTU", err)
	}
	limit := xdp.MaxFrameLen(xdp.UMEMConfig{}) - 14
	for _, s := range []string{"wan0", "MTU 9000", fmt.Sprintf("at most %d bytes", limit)} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	if gw.Running() {
		t.Error("gateway running after a failed Start")
	}
}

// TestGatewayJumbo: every link at MTU 9000 and gateway.jumbo on both
// gateways (AF_XDP multi-buffer): 8828-byte DF pings and a TCP transfer
// with jumbo segments cross the tunnel (TCP's first 9000-byte segments
// do not fit the SA's plaintext MTU after ESP: gwA's ICMP errors tell
// hostA).
func TestGatewayJumbo(t *testing.T) {
	testenv.RequirePrivileged(t)
	a, b := buildTopology(t)
	for _, s := range []*site{a, b} {
		for _, x := range []struct {
			ns  *topo.NS
			dev string
		}{{s.host, "eth0"}, {s.gw, "lan0"}, {s.gw, "wan0"}} {
			if _, err := x.ns.IP("link", "set", "dev", x.dev, "mtu", "9000"); err != nil {
				t.Fatal(err)
			}
		}
	}
	p := gwParams{keyAB: randKey(t), keyBA: randKey(t), extra: "  jumbo: true\n  icmp_errors: true\n"}
	// The SAs' path MTU (default 1500) is the wan's.
	pmtu := func(y string) string {
		return strings.ReplaceAll(y, "transform: aes128gcm16,", "transform: aes128gcm16, path_mtu: 9000,")
	}
	startGateway(t, a, pmtu(gatewayYAML(a, b, "a", p)))
	startGateway(t, b, pmtu(gatewayYAML(b, a, "b", p)))
	r, err := topo.Ping(a.host, b.hostAddr, 3, 8800, 20*time.Millisecond, 2*time.Second)
	if err != nil || r.Received != 3 {
		st, _ := Call(a.socket, Request{Cmd: "show-stats"}, time.Second)
		t.Fatalf("8828-byte pings: %+v, %v\nlogA:\n%s\nsa %+v\nstats %+v", r, err, a.log, statsOf(t, a.socket, "a-to-b"), st.Stats)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := topo.Transfer(ctx, b.host, netip.AddrPortFrom(b.hostAddr, 5031), a.host, 4<<20, 31, nil)
	if err != nil || !res.Intact() || res.ClientMSS < 8000 {
		t.Fatalf("jumbo TCP transfer: %+v, %v", res, err)
	}
	st, err := Call(a.socket, Request{Cmd: "show-stats"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if w := st.Stats.Wire; w.JumboRX == 0 || w.JumboTX == 0 || w.JumboDrops != 0 {
		t.Errorf("wire stats %+v: want jumbo frames both ways, no drops", w)
	}
}

// TestGatewayFragmentation: 1500-byte pings without DF do not fit the
// tunnel (plaintext MTU 1446). By default (fragmentation:
// before-encryption) both gateways fragment them before encryption and
// the pings are answered; with fragmentation: off they are dropped and
// counted as MTU drops.
func TestGatewayFragmentation(t *testing.T) {
	testenv.RequirePrivileged(t)
	for _, c := range []struct {
		name, extra string
		answered    bool
	}{{"before-encryption", "", true}, {"off", "  fragmentation: off\n", false}} {
		t.Run(c.name, func(t *testing.T) {
			a, b := buildTopology(t)
			p := gwParams{keyAB: randKey(t), keyBA: randKey(t), extra: c.extra}
			startGateway(t, a, gatewayYAML(a, b, "a", p))
			startGateway(t, b, gatewayYAML(b, a, "b", p))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := a.host.Exec(ctx, "ping", "-n", "-M", "dont", "-s", "1472", "-c", "2", "-i", "0.2", "-W", "2", b.hostAddr.String())
			if (err == nil) != c.answered {
				t.Fatalf("1500-byte pings without DF: err %v, want answered %v: %s\nlogA:\n%s", err, c.answered, out, a.log)
			}
			stA, err := Call(a.socket, Request{Cmd: "show-stats"}, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			stB, err := Call(b.socket, Request{Cmd: "show-stats"}, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			wa, wb := stA.Stats.Wire, stB.Stats.Wire
			if c.answered {
				if wa.Fragmented != 2 || wa.Fragments != 4 || wb.Fragmented != 2 || stA.Stats.MTUDrops != 0 {
					t.Errorf("fragmented A %d into %d, B %d; A MTU drops %d; want 2 into 4, 2, 0", wa.Fragmented, wa.Fragments, wb.Fragmented, stA.Stats.MTUDrops)
				}
				return
			}
			if wa.Fragmented != 0 || stA.Stats.MTUDrops != 2 {
				t.Errorf("fragmentation off: fragmented %d, MTU drops %d; want 0, 2", wa.Fragmented, stA.Stats.MTUDrops)
			}
		})
	}
}
