package inet

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// espOuter is an outer ESP packet (IPv4 with DF, or IPv6) from src to dst
// with SPI spi, in UDP (sport → dport) when udp is set, n bytes long.
func espOuter(t testing.TB, src, dst netip.Addr, udp bool, sport, dport uint16, spi uint32, n int) []byte {
	t.Helper()
	var ls []gopacket.SerializableLayer
	proto := layers.IPProtocolESP
	if udp {
		proto = layers.IPProtocolUDP
	}
	hl := 20
	var ip gopacket.NetworkLayer
	if src.Is4() {
		v4 := ip4(src, dst, proto)
		ls, ip = append(ls, v4), v4
	} else {
		v6 := ip6(src, dst, proto)
		ls, ip, hl = append(ls, v6), v6, 40
	}
	body := make([]byte, n-hl)
	if udp {
		u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		u.SetNetworkLayerForChecksum(ip)
		ls = append(ls, u)
		body = body[8:]
	}
	binary.BigEndian.PutUint32(body, spi)
	binary.BigEndian.PutUint32(body[4:], 7)
	return serialize(t, append(ls, gopacket.Payload(body))...)
}

// ptbAbout builds, with PacketTooBig, the ICMP error a router at rtr
// would send about pkt for mtu, and returns the ICMP message (past the
// IP header) as a raw socket delivers it.
func ptbAbout(t testing.TB, pkt []byte, rtr netip.Addr, mtu int) []byte {
	t.Helper()
	buf, off := inBuf(pkt, Headroom6)
	o, n, err := PacketTooBig(buf, off, len(pkt), rtr, mtu)
	if err != nil {
		t.Fatal(err)
	}
	msg := buf[o : o+n]
	if rtr.Is4() {
		return msg[20:]
	}
	return msg[40:]
}

func TestParsePTB(t *testing.T) {
	a4, b4, r4 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("192.0.2.254")
	a6, b6, r6 := netip.MustParseAddr("2001:db8:a::1"), netip.MustParseAddr("2001:db8:b::1"), netip.MustParseAddr("2001:db8:a::fe")
	for _, c := range []struct {
		name     string
		src, dst netip.Addr
		rtr      netip.Addr
		udp      bool
		mtu      int
	}{
		{"esp4", a4, b4, r4, false, 1400},
		{"natt4", a4, b4, r4, true, 1380},
		{"esp6", a6, b6, r6, false, 1400},
		{"natt6", a6, b6, r6, true, 1300},
	} {
		t.Run(c.name, func(t *testing.T) {
			pkt := espOuter(t, c.src, c.dst, c.udp, 4500, 4501, 0xabcd1234, 1500)
			msg := ptbAbout(t, pkt, c.rtr, c.mtu)
			p, err := ParsePTB(msg, c.src.Is6())
			if err != nil {
				t.Fatal(err)
			}
			want := PTB{MTU: c.mtu, Src: c.src, Dst: c.dst, SPI: 0xabcd1234}
			if c.udp {
				want.UDP, want.SrcPort, want.DstPort = true, 4500, 4501
			}
			if p != want {
				t.Errorf("ParsePTB = %+v, want %+v", p, want)
			}
			// Every truncation of the quote is an error, never a panic;
			// no prefix shorter than the SPI's end parses.
			end := 8 + 20 + 4
			if c.src.Is6() {
				end += 20
			}
			if c.udp {
				end += 8
			}
			for i := range end {
				if _, err := ParsePTB(msg[:i], c.src.Is6()); err == nil {
					t.Fatalf("ParsePTB of %d of %d bytes succeeded", i, len(msg))
				}
			}
			if _, err := ParsePTB(msg[:end], c.src.Is6()); err != nil {
				t.Errorf("quote ending at the SPI: %v", err)
			}
			// The other family's parser does not take it.
			if _, err := ParsePTB(msg, !c.src.Is6()); !errors.Is(err, ErrNotPTB) {
				t.Errorf("other family: %v, want ErrNotPTB", err)
			}
		})
	}
	// Not ESP, and IKE behind the non-ESP marker (SPI 0).
	// (Which UDP ports are ESP is the caller's check against its SAs.)
	if _, err := ParsePTB(ptbAbout(t, tcp4(t, false, true, make([]byte, 1400)), r4, 1400), false); !errors.Is(err, ErrPTBNotESP) {
		t.Errorf("about TCP: %v, want ErrPTBNotESP", err)
	}
	if _, err := ParsePTB(ptbAbout(t, espOuter(t, a4, b4, true, 4500, 4500, 0, 1500), r4, 1400), false); !errors.Is(err, ErrPTBNotESP) {
		t.Errorf("about IKE on 4500: %v, want ErrPTBNotESP", err)
	}
	// Other ICMP messages.
	if _, err := ParsePTB(icmp4Msg(t, 8)[20:], false); !errors.Is(err, ErrNotPTB) {
		t.Errorf("echo request: %v", err)
	}
	if _, err := ParsePTB(icmp6Msg(t, 128)[40:], true); !errors.Is(err, ErrNotPTB) {
		t.Errorf("ICMPv6 echo request: %v", err)
	}
}

func TestParsePTBAlloc(t *testing.T) {
	msg := ptbAbout(t, espOuter(t, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1"), true, 4500, 4500, 9, 1500),
		netip.MustParseAddr("192.0.2.254"), 1400)
	if n := testing.AllocsPerRun(100, func() { ParsePTB(msg, false) }); n != 0 {
		t.Errorf("ParsePTB allocates %v times", n)
	}
}

func FuzzParsePTB(f *testing.F) {
	f.Add(ptbAbout(f, espOuter(f, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1"), true, 4500, 4500, 9, 1500),
		netip.MustParseAddr("192.0.2.254"), 1400), false)
	f.Add(ptbAbout(f, espOuter(f, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), false, 0, 0, 9, 1500),
		netip.MustParseAddr("2001:db8::fe"), 1300), true)
	f.Fuzz(func(t *testing.T, msg []byte, v6 bool) {
		p, err := ParsePTB(msg, v6)
		if err != nil {
			return
		}
		if p.SPI == 0 || !p.Src.IsValid() || !p.Dst.IsValid() || p.Src.Is6() != v6 || p.MTU < 0 {
			t.Fatalf("accepted %+v", p)
		}
	})
}
