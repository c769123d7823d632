package gateway

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/inet"
	"github.com/espxdp/espxdp/sa"
)

// outerESP is an outer ESP packet (IPv4 with DF, or IPv6) from src to
// dst carrying spi, in UDP between the ports when udp is set.
func outerESP(src, dst netip.Addr, udp bool, sport, dport uint16, spi uint32, n int) []byte {
	hl := 20
	if src.Is6() {
		hl = 40
	}
	p := make([]byte, n)
	proto := byte(50)
	off := hl
	if udp {
		proto = 17
		binary.BigEndian.PutUint16(p[off:], sport)
		binary.BigEndian.PutUint16(p[off+2:], dport)
		binary.BigEndian.PutUint16(p[off+4:], uint16(n-hl))
		off += 8
	}
	binary.BigEndian.PutUint32(p[off:], spi)
	binary.BigEndian.PutUint32(p[off+4:], 1)
	if src.Is4() {
		p[0], p[8], p[9] = 0x45, 64, proto
		binary.BigEndian.PutUint16(p[2:], uint16(n))
		p[6] = 0x40 // DF
		s, d := src.As4(), dst.As4()
		copy(p[12:], s[:])
		copy(p[16:], d[:])
		binary.BigEndian.PutUint16(p[10:], inet.Checksum(p[:20]))
	} else {
		p[0], p[6], p[7] = 0x60, proto, 64
		binary.BigEndian.PutUint16(p[4:], uint16(n-40))
		s, d := src.As16(), dst.As16()
		copy(p[8:], s[:])
		copy(p[24:], d[:])
	}
	return p
}

// ptbMsg is the ICMP message (past the IP header) a router at rtr sends
// about pkt for mtu.
func ptbMsg(t testing.TB, pkt []byte, rtr netip.Addr, mtu int) []byte {
	t.Helper()
	buf := make([]byte, inet.Headroom6+len(pkt))
	copy(buf[inet.Headroom6:], pkt)
	o, n, err := inet.PacketTooBig(buf, inet.Headroom6, len(pkt), rtr, mtu)
	if err != nil {
		t.Fatal(err)
	}
	if rtr.Is4() {
		return buf[o+20 : o+n]
	}
	return buf[o+40 : o+n]
}

// TestLearnPTBProperty sends random ICMP packet-too-big messages, most
// of them forged (wrong SPI, addresses, ports, encapsulation, MTU), to
// the path MTU learner of a SAD with IPv4, IPv4 NAT-T and IPv6 outbound
// SAs. Invariants: a message lowers an SA's path MTU only when it quotes
// exactly that SA's SPI, local and remote address, encapsulation and
// ports, and reports an MTU at least the floor and below the SA's
// current path MTU; the path MTU never rises except by aging, which
// restores the configured value; every message that is not accepted is
// counted as rejected.
func TestLearnPTBProperty(t *testing.T) {
	tr := esp.MustParseTransform("aes128gcm16")
	a4, b4, x4 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("203.0.113.9")
	a6, b6, x6 := netip.MustParseAddr("2001:db8:a::1"), netip.MustParseAddr("2001:db8:b::1"), netip.MustParseAddr("2001:db8:c::9")
	sad := sa.NewSAD(sa.SADOptions{})
	mk := func(spi uint32, l, r netip.Addr, udp bool, pmtu int) *sa.SA {
		s, err := sa.New(sa.Config{Name: "s", SPI: spi, Direction: sa.Out, Mode: esp.Tunnel, Local: l, Remote: r,
			Transform: tr, Key: append(bytes.Repeat([]byte{1}, 16), byte(spi>>8), 0, 0, 0), UDPEncap: udp, LocalPort: 4500, RemotePort: 4501, PathMTU: pmtu})
		if err != nil {
			t.Fatal(err)
		}
		if err := sad.Add(s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	sas := []*sa.SA{mk(0x100, a4, b4, false, 1500), mk(0x200, a4, b4, true, 1500), mk(0x300, a6, b6, false, 1500), mk(0x400, a6, b6, false, 0)}
	var st pmtuState
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(xs ...netip.Addr) netip.Addr { return xs[rng.IntN(len(xs))] }
	now := time.Unix(1000, 0)
	var accepted, rejected uint64
	for i := range 3000 {
		s := sas[rng.IntN(len(sas))]
		c := s.Config()
		spi := s.SPI()
		if rng.IntN(4) == 0 {
			spi = []uint32{0x500, 0x100, 0x200, 0x300, 0x400}[rng.IntN(5)]
		}
		src, dst := c.Local, c.Remote
		if rng.IntN(4) == 0 {
			if src.Is4() {
				src, dst = pick(a4, b4, x4), pick(a4, b4, x4)
			} else {
				src, dst = pick(a6, b6, x6), pick(a6, b6, x6)
			}
		}
		udp, sport, dport := c.UDPEncap, c.LocalPort, c.RemotePort
		if rng.IntN(4) == 0 {
			udp, sport, dport = rng.IntN(2) == 0, []uint16{4500, 4501}[rng.IntN(2)], []uint16{4500, 4501}[rng.IntN(2)]
		}
		mtu := []int{500, 576, 1200, 1280, 1300, 1400, 1450, 1499, 1500, 1600, 9000}[rng.IntN(11)]
		rtr := netip.MustParseAddr("192.0.2.254")
		if src.Is6() {
			rtr = netip.MustParseAddr("2001:db8:a::fe")
		}
		msg := ptbMsg(t, outerESP(src, dst, udp, sport, dport, spi, 1500), rtr, mtu)
		if src.Is6() {
			// PacketTooBig never reports less than 1280; a forger might.
			binary.BigEndian.PutUint32(msg[4:], uint32(mtu))
		}

		before := make([]int, len(sas))
		for j, x := range sas {
			before[j] = x.PathMTU()
		}
		got, gotMTU, err := st.learnPTB(sad, msg, src.Is6(), now)
		// The expected verdict, from the SA the SPI names.
		var want *sa.SA
		for j, x := range sas {
			xc := x.Config()
			floor := pmtuFloor4
			if xc.Remote.Is6() {
				floor = pmtuFloor6
			}
			if x.SPI() == spi && xc.Local == src && xc.Remote == dst && xc.UDPEncap == udp &&
				(!udp || sport == xc.LocalPort && dport == xc.RemotePort) &&
				mtu >= floor && (before[j] == 0 || mtu < before[j]) { // 0: unknown, any sane MTU
				want = x
			}
		}
		if got != want {
			t.Fatalf("message %d (spi %#x %v→%v udp %v %d→%d mtu %d): lowered %v (err %v), want %v",
				i, spi, src, dst, udp, sport, dport, mtu, got, err, want)
		}
		if got != nil {
			accepted++
			if gotMTU != mtu || got.PathMTU() != mtu {
				t.Fatalf("message %d: path MTU %d (returned %d), want %d", i, got.PathMTU(), gotMTU, mtu)
			}
		} else if err == nil {
			t.Fatalf("message %d: neither accepted nor rejected", i)
		} else {
			rejected++
		}
		for j, x := range sas {
			if x != got && x.PathMTU() != before[j] {
				t.Fatalf("message %d: SA %#x changed %d → %d", i, x.SPI(), before[j], x.PathMTU())
			}
			if x.PathMTU() > before[j] && before[j] != 0 {
				t.Fatalf("message %d: SA %#x path MTU rose %d → %d", i, x.SPI(), before[j], x.PathMTU())
			}
		}
		// Now and then time passes and learned MTUs age out.
		if rng.IntN(200) == 0 {
			now = now.Add(time.Hour)
			st.age(now, time.Minute)
			for _, x := range sas {
				if x.PathMTU() != x.Config().PathMTU {
					t.Fatalf("after aging SA %#x has path MTU %d, want the configured %d", x.SPI(), x.PathMTU(), x.Config().PathMTU)
				}
			}
		}
	}
	var ws WireStats
	st.stats(&ws)
	var rej uint64
	for _, n := range ws.PMTURejected {
		rej += n
	}
	if ws.PMTUAccepted != accepted || rej != rejected || accepted == 0 || ws.PMTURejected["no-sa"] == 0 ||
		ws.PMTURejected["mismatch"] == 0 || ws.PMTURejected["bad-mtu"] == 0 || ws.PMTURejected["not-lower"] == 0 {
		t.Errorf("counters %+v; counted here %d accepted, %d rejected", ws, accepted, rejected)
	}
	t.Logf("%d accepted, %d rejected: %v", accepted, rejected, ws.PMTURejected)

	// Not packet-too-big: ignored, not counted.
	echo := []byte{8, 0, 0, 0, 0, 1, 0, 1}
	if s, _, err := st.learnPTB(sad, echo, false, now); s != nil || err != nil {
		t.Errorf("echo request: %v, %v", s, err)
	}
	if _, _, err := st.learnPTB(sad, []byte{3, 4, 0, 0, 0, 0, 5, 0, 0x45}, false, now); !errors.Is(err, errPMTUMalformed) {
		t.Errorf("truncated quote: %v", err)
	}
}
