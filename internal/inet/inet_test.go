package inet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/espxdp/espxdp/internal/race"
)

// decodedMSS reads the MSS option of pkt with gopacket's TCP decoder.
func decodedMSS(t *testing.T, pkt []byte) int {
	t.Helper()
	first := layers.LayerTypeIPv4
	if pkt[0]>>4 == 6 {
		first = layers.LayerTypeIPv6
	}
	p := gopacket.NewPacket(pkt, first, gopacket.Default)
	tl, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if tl == nil {
		t.Fatalf("gopacket finds no TCP layer: %v", p)
	}
	for _, o := range tl.Options {
		if o.OptionType == layers.TCPOptionKindMSS {
			return int(binary.BigEndian.Uint16(o.OptionData))
		}
	}
	t.Fatal("gopacket finds no MSS option")
	return 0
}

// tcpOffset is the offset of the TCP header in pkt, by gopacket.
func tcpOffset(t *testing.T, pkt []byte) int {
	t.Helper()
	first := layers.LayerTypeIPv4
	if pkt[0]>>4 == 6 {
		first = layers.LayerTypeIPv6
	}
	p := gopacket.NewPacket(pkt, first, gopacket.Default)
	tl := p.Layer(layers.LayerTypeTCP)
	if tl == nil {
		t.Fatal("no TCP layer")
	}
	return len(pkt) - len(tl.LayerContents()) - len(tl.LayerPayload())
}

func TestClampMSS(t *testing.T) {
	mss := func(v uint16) layers.TCPOption { return mssOpt(v) }
	cases := []struct {
		name    string
		pkt     []byte
		clamp   int
		clamped bool
		want    int // MSS after (when the packet has one)
	}{
		{"v4 syn", tcp4(t, true, false, nil, mss(1460), sackOK, nop, wscale), 1360, true, 1360},
		{"v4 syn-ack", tcp4(t, true, true, nil, mss(1460), nop, nop, sackOK), 1200, true, 1200},
		{"v4 odd offset", tcp4(t, true, false, nil, nop, mss(8960), nop, nop, nop), 1400, true, 1400},
		{"v4 mss last", tcp4(t, true, false, nil, sackOK, wscale, nop, mss(1460), nop, nop, nop), 1000, true, 1000},
		{"v4 already smaller", tcp4(t, true, false, nil, mss(1200)), 1360, false, 1200},
		{"v4 equal", tcp4(t, true, false, nil, mss(1360)), 1360, false, 1360},
		{"v4 syn with payload", tcp4(t, true, false, []byte("fast open data"), mss(1460)), 536, true, 536},
		{"v6 syn", tcp6(t, nil, mss(1440), sackOK), 1300, true, 1300},
		{"v6 hop-by-hop, dest opts", tcp6(t, [][]byte{extHdr(protoHopByHop), extHdr(protoDstOpts)}, mss(1440)), 1220, true, 1220},
		{"v6 routing", tcp6(t, [][]byte{extHdr(protoRouting)}, nop, mss(1440)), 1220, true, 1220},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pkt := append([]byte(nil), c.pkt...)
			if got := ClampMSS(pkt, c.clamp); got != c.clamped {
				t.Fatalf("ClampMSS = %v, want %v", got, c.clamped)
			}
			if got := decodedMSS(t, pkt); got != c.want {
				t.Errorf("MSS %d after, want %d", got, c.want)
			}
			if v, ok := MSS(pkt); !ok || v != c.want {
				t.Errorf("MSS() = %d, %v; want %d", v, ok, c.want)
			}
			if !c.clamped && !bytes.Equal(pkt, c.pkt) {
				t.Error("packet changed without clamping")
			}
			if pkt[0]>>4 == 4 && !ipv4HeaderOK(pkt) {
				t.Error("IPv4 header checksum wrong")
			}
			if !l4ChecksumOK(pkt, tcpOffset(t, pkt), len(pkt), 6) {
				t.Error("TCP checksum wrong after clamping")
			}
			diff := 0
			for i := range pkt {
				if pkt[i] != c.pkt[i] {
					diff++
				}
			}
			if diff > 4 { // two MSS bytes, two checksum bytes
				t.Errorf("%d bytes changed", diff)
			}
		})
	}
}

func TestClampMSSLeavesAlone(t *testing.T) {
	syn := tcp4(t, true, false, nil, mss1460...)
	frag := func(flags uint16) []byte {
		p := append([]byte(nil), syn...)
		binary.BigEndian.PutUint16(p[6:], flags)
		binary.BigEndian.PutUint16(p[10:], 0)
		binary.BigEndian.PutUint16(p[10:], ^onesSum(p[:20]))
		return p
	}
	badOpt := func(opt ...byte) []byte {
		p := append([]byte(nil), syn...)
		copy(p[40:44], opt)
		return p
	}
	cases := map[string][]byte{
		"ack only":           tcp4(t, false, true, nil, mss1460...),
		"no mss":             tcp4(t, true, false, nil, sackOK, nop, wscale),
		"udp":                udp4(t, 100, true),
		"v4 more fragments":  frag(0x2000),
		"v4 offset":          frag(0x0010),
		"v6 fragment":        tcp6(t, [][]byte{fragHdr(0, true)}, mss1460...),
		"mss length 3":       badOpt(2, 3, 5, 0xb4),
		"option length 0":    badOpt(1, 8, 0, 0),
		"option past header": badOpt(1, 1, 1, 8),
		"eol before mss":     badOpt(0, 2, 4, 0),
		"truncated":          syn[:39],
		"total length lies":  append([]byte(nil), syn[:len(syn)-2]...),
		"empty":              nil,
		"v6 deep chain": tcp6(t, [][]byte{extHdr(0), extHdr(60), extHdr(60), extHdr(60), extHdr(60),
			extHdr(60), extHdr(60), extHdr(60), extHdr(60)}, mss1460...),
	}
	for name, pkt := range cases {
		orig := append([]byte(nil), pkt...)
		if ClampMSS(pkt, 1000) {
			t.Errorf("%s: clamped", name)
		}
		if !bytes.Equal(pkt, orig) {
			t.Errorf("%s: packet changed", name)
		}
	}
	if ClampMSS(append([]byte(nil), syn...), 0) || ClampMSS(append([]byte(nil), syn...), 70000) {
		t.Error("clamped to an MSS out of range")
	}
}

var mss1460 = []layers.TCPOption{mssOpt(1460), nop, nop, sackOK}

// TestClampMSSPadding: bytes past the IP total length (Ethernet padding)
// are neither parsed nor changed.
func TestClampMSSPadding(t *testing.T) {
	syn := tcp4(t, true, false, nil, mss1460...)
	pkt := append(append([]byte(nil), syn...), 2, 4, 0xff, 0xff, 0, 0)
	if !ClampMSS(pkt, 1300) || decodedMSS(t, pkt[:len(syn)]) != 1300 {
		t.Fatal("not clamped")
	}
	if !bytes.Equal(pkt[len(syn):], []byte{2, 4, 0xff, 0xff, 0, 0}) {
		t.Error("padding changed")
	}
	if !l4ChecksumOK(pkt[:len(syn)], 20, len(syn), 6) {
		t.Error("TCP checksum wrong")
	}
}

func TestSetMSS(t *testing.T) {
	syn := tcp4(t, true, false, nil, nop, mssOpt(1460))
	pkt := append([]byte(nil), syn...)
	if !SetMSS(pkt, 1200) || !SetMSS(pkt, 1460) {
		t.Fatal("SetMSS failed")
	}
	if !bytes.Equal(pkt, syn) {
		t.Errorf("setting the MSS and back changed the packet")
	}
	if SetMSS(pkt, 0) || SetMSS(udp4(t, 60, true), 1000) {
		t.Error("SetMSS accepted a bad MSS or a UDP packet")
	}
}

func TestMSSFor(t *testing.T) {
	if MSSFor(1500, false) != 1460 || MSSFor(1500, true) != 1440 || MSSFor(1400, false) != 1360 {
		t.Error("MSSFor")
	}
}

func TestDecTTL(t *testing.T) {
	decode := func(pkt []byte) (int, bool) {
		if pkt[0]>>4 == 4 {
			p := gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.Default)
			l, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			return int(l.TTL), ipv4HeaderOK(pkt)
		}
		p := gopacket.NewPacket(pkt, layers.LayerTypeIPv6, gopacket.Default)
		l, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		return int(l.HopLimit), true
	}
	for _, v6 := range []bool{false, true} {
		for _, ttl := range []int{0, 1, 2, 64, 255} {
			var pkt []byte
			if v6 {
				pkt = udp6(t, 100)
				pkt[7] = byte(ttl)
			} else {
				pkt = udp4(t, 100, true)
				pkt[8] = byte(ttl)
				binary.BigEndian.PutUint16(pkt[10:], 0)
				binary.BigEndian.PutUint16(pkt[10:], ^onesSum(pkt[:20]))
			}
			orig := append([]byte(nil), pkt...)
			ok := DecTTL(pkt)
			if ok != (ttl > 1) {
				t.Errorf("v6 %v TTL %d: DecTTL = %v", v6, ttl, ok)
			}
			got, sumOK := decode(pkt)
			switch {
			case ok && got != ttl-1:
				t.Errorf("v6 %v TTL %d: now %d", v6, ttl, got)
			case !ok && !bytes.Equal(pkt, orig):
				t.Errorf("v6 %v TTL %d: packet changed", v6, ttl)
			case !sumOK:
				t.Errorf("v6 %v TTL %d: header checksum wrong", v6, ttl)
			}
		}
	}
	for name, pkt := range map[string][]byte{"empty": nil, "short": udp4(t, 100, true)[:19],
		"version 5": append([]byte{0x55}, make([]byte, 40)...), "ihl 4": append([]byte{0x44}, make([]byte, 40)...)} {
		if DecTTL(pkt) {
			t.Errorf("%s: DecTTL ok", name)
		}
	}
}

// icmpOut decodes an ICMP error built in buf[off:off+n] and checks the
// parts common to all: addresses, TTL, checksums, the quote.
func icmpOut(t *testing.T, buf []byte, off, n int, orig []byte, maxLen int) gopacket.Packet {
	t.Helper()
	out := buf[off : off+n]
	if n > maxLen {
		t.Errorf("ICMP error of %d bytes, over %d", n, maxLen)
	}
	var hdr int
	var p gopacket.Packet
	if out[0]>>4 == 4 {
		hdr = 28
		p = gopacket.NewPacket(out, layers.LayerTypeIPv4, gopacket.Default)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip == nil || !ip.SrcIP.Equal(rtr4.AsSlice()) || !ip.DstIP.Equal(src4.AsSlice()) ||
			ip.TTL != 64 || ip.Protocol != layers.IPProtocolICMPv4 || int(ip.Length) != n {
			t.Fatalf("IPv4 header %+v", ip)
		}
		if !ipv4HeaderOK(out) {
			t.Error("IPv4 header checksum wrong")
		}
		if !l4ChecksumOK(out, 20, n, 1) {
			t.Error("ICMP checksum wrong")
		}
	} else {
		hdr = 48
		p = gopacket.NewPacket(out, layers.LayerTypeIPv6, gopacket.Default)
		ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		if ip == nil || !ip.SrcIP.Equal(rtr6.AsSlice()) || !ip.DstIP.Equal(src6.AsSlice()) ||
			ip.HopLimit != 64 || ip.NextHeader != layers.IPProtocolICMPv6 || int(ip.Length) != n-40 {
			t.Fatalf("IPv6 header %+v", ip)
		}
		if !l4ChecksumOK(out, 40, n, 58) {
			t.Error("ICMPv6 checksum wrong")
		}
	}
	if want := min(len(orig), maxLen-hdr); n-hdr != want || !bytes.Equal(out[hdr:], orig[:want]) {
		t.Errorf("quote of %d bytes, want the first %d of the packet", n-hdr, want)
	}
	return p
}

func TestPacketTooBig4(t *testing.T) {
	for _, size := range []int{60, 547, 548, 549, 1500} {
		orig := udp4(t, size, true)
		buf, off := inBuf(orig, 100)
		o, n, err := PacketTooBig(buf, off, len(orig), rtr4, 1438)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if o != off-28 {
			t.Errorf("offset %d, want %d", o, off-28)
		}
		p := icmpOut(t, buf, o, n, orig, 576)
		m, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		if m == nil || m.TypeCode != layers.CreateICMPv4TypeCode(3, 4) || m.Seq != 1438 || m.Id != 0 {
			t.Errorf("size %d: ICMP %+v", size, m)
		}
	}
	// The reported MTU never goes below 68.
	orig := udp4(t, 100, true)
	buf, off := inBuf(orig, 28)
	o, n, err := PacketTooBig(buf, off, len(orig), rtr4, 20)
	if err != nil {
		t.Fatal(err)
	}
	if mtu := binary.BigEndian.Uint16(buf[o+26:]); mtu != 68 || n != 128 {
		t.Errorf("MTU %d length %d, want 68, 128", mtu, n)
	}
}

func TestPacketTooBig6(t *testing.T) {
	for _, c := range []struct{ size, mtu, want int }{{100, 1400, 1400}, {1232, 1280, 1280}, {1500, 1300, 1300}, {9000, 1000, 1280}} {
		orig := udp6(t, c.size)
		buf, off := inBuf(orig, 48)
		o, n, err := PacketTooBig(buf, off, len(orig), rtr6, c.mtu)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		p := icmpOut(t, buf, o, n, orig, 1280)
		m, _ := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
		if m == nil || m.TypeCode != layers.CreateICMPv6TypeCode(2, 0) {
			t.Fatalf("%+v: ICMPv6 %+v", c, m)
		}
		if got := int(binary.BigEndian.Uint32(m.LayerPayload())); got != c.want {
			t.Errorf("%+v: MTU %d", c, got)
		}
	}
}

func TestTimeExceeded(t *testing.T) {
	for _, orig := range [][]byte{udp4(t, 700, false), tcp4(t, true, false, nil, mss1460...), icmp4Msg(t, 8)} {
		buf, off := inBuf(orig, 40)
		o, n, err := TimeExceeded(buf, off, len(orig), rtr4)
		if err != nil {
			t.Fatal(err)
		}
		p := icmpOut(t, buf, o, n, orig, 576)
		if m, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); m == nil || m.TypeCode != layers.CreateICMPv4TypeCode(11, 0) || m.Id != 0 || m.Seq != 0 {
			t.Errorf("ICMP %+v", m)
		}
	}
	for _, orig := range [][]byte{udp6(t, 1400), tcp6(t, [][]byte{extHdr(0)}, mss1460...), icmp6Msg(t, 128, extHdr(60))} {
		buf, off := inBuf(orig, 48)
		o, n, err := TimeExceeded(buf, off, len(orig), rtr6)
		if err != nil {
			t.Fatal(err)
		}
		p := icmpOut(t, buf, o, n, orig, 1280)
		if m, _ := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); m == nil || m.TypeCode != layers.CreateICMPv6TypeCode(3, 0) {
			t.Errorf("ICMPv6 %+v", m)
		}
	}
}

func TestICMPRules(t *testing.T) {
	with := func(pkt []byte, fn func(p []byte)) []byte {
		p := append([]byte(nil), pkt...)
		fn(p)
		if p[0]>>4 == 4 {
			binary.BigEndian.PutUint16(p[10:], 0)
			binary.BigEndian.PutUint16(p[10:], ^onesSum(p[:20]))
		}
		return p
	}
	addr := func(at int, a string) func([]byte) {
		return func(p []byte) { copy(p[at:], netip.MustParseAddr(a).AsSlice()) }
	}
	u4, u6 := udp4(t, 200, true), udp6(t, 200)
	type tc struct {
		name   string
		pkt    []byte
		tooBig bool
		src    netip.Addr
		room   int
		want   error
	}
	cases := []tc{
		{"v4 ok", u4, true, rtr4, 28, nil},
		{"v4 echo", icmp4Msg(t, 8), true, rtr4, 28, nil},
		{"v4 about unreachable", icmp4Msg(t, 3), true, rtr4, 28, ErrAboutICMPError},
		{"v4 about time exceeded", icmp4Msg(t, 11), false, rtr4, 28, ErrAboutICMPError},
		{"v4 about redirect", icmp4Msg(t, 5), false, rtr4, 28, ErrAboutICMPError},
		{"v4 later fragment", with(u4, func(p []byte) { p[6], p[7] = 0x20, 0x10 }), false, rtr4, 28, ErrNotFirstFragment},
		{"v4 first fragment", with(u4, func(p []byte) { p[6], p[7] = 0x20, 0 }), false, rtr4, 28, nil},
		{"v4 src 0.0.0.0", with(u4, addr(12, "0.0.0.0")), false, rtr4, 28, ErrNotUnicast},
		{"v4 src multicast", with(u4, addr(12, "224.0.0.5")), false, rtr4, 28, ErrNotUnicast},
		{"v4 src broadcast", with(u4, addr(12, "255.255.255.255")), false, rtr4, 28, ErrNotUnicast},
		{"v4 src loopback", with(u4, addr(12, "127.0.0.1")), false, rtr4, 28, ErrNotUnicast},
		{"v4 dst multicast", with(u4, addr(16, "239.1.2.3")), true, rtr4, 28, ErrNotUnicast},
		{"v4 dst broadcast", with(u4, addr(16, "255.255.255.255")), false, rtr4, 28, ErrNotUnicast},
		{"v4 no DF, too big", udp4(t, 200, false), true, rtr4, 28, ErrNoDF},
		{"v4 no DF, time exceeded", udp4(t, 200, false), false, rtr4, 28, nil},
		{"v4 no headroom", u4, true, rtr4, 27, ErrNoHeadroom},
		{"v4 v6 source", u4, true, rtr6, 28, ErrSourceFamily},
		{"v4 no source", u4, true, netip.Addr{}, 28, ErrSourceFamily},
		{"v4 4in6 source", u4, true, netip.AddrFrom16(rtr4.As16()), 28, nil},
		{"v4 truncated", u4[:150], true, rtr4, 28, ErrMalformed},
		{"garbage", make([]byte, 60), true, rtr4, 28, ErrMalformed},
		{"v6 ok", u6, true, rtr6, 48, nil},
		{"v6 echo request", icmp6Msg(t, 128), false, rtr6, 48, nil},
		{"v6 about too big", icmp6Msg(t, 2), true, rtr6, 48, ErrAboutICMPError},
		{"v6 about unreachable behind ext", icmp6Msg(t, 1, extHdr(0), extHdr(60)), false, rtr6, 48, ErrAboutICMPError},
		{"v6 later fragment", icmp6Msg(t, 128, fragHdr(8, false)), false, rtr6, 48, ErrNotFirstFragment},
		{"v6 first fragment", icmp6Msg(t, 128, fragHdr(0, true)), false, rtr6, 48, nil},
		{"v6 src unspecified", with(u6, addr(8, "::")), false, rtr6, 48, ErrNotUnicast},
		{"v6 src multicast", with(u6, addr(8, "ff02::1")), true, rtr6, 48, ErrNotUnicast},
		{"v6 src loopback", with(u6, addr(8, "::1")), true, rtr6, 48, ErrNotUnicast},
		{"v6 dst multicast, time exceeded", with(u6, addr(24, "ff0e::1")), false, rtr6, 48, ErrNotUnicast},
		{"v6 dst multicast, too big", with(u6, addr(24, "ff0e::1")), true, rtr6, 48, nil},
		{"v6 no headroom", u6, true, rtr6, 47, ErrNoHeadroom},
		{"v6 v4 source", u6, true, rtr4, 48, ErrSourceFamily},
		{"v6 chain too long", icmp6Msg(t, 128, extHdr(0), extHdr(60), extHdr(60), extHdr(60), extHdr(60),
			extHdr(60), extHdr(60), extHdr(60), extHdr(60)), false, rtr6, 48, ErrMalformed},
	}
	for _, c := range cases {
		buf, off := inBuf(c.pkt, c.room)
		orig := append([]byte(nil), buf...)
		var err error
		if c.tooBig {
			_, _, err = PacketTooBig(buf, off, len(c.pkt), c.src, 1400)
		} else {
			_, _, err = TimeExceeded(buf, off, len(c.pkt), c.src)
		}
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
		rule := c.want == ErrAboutICMPError || c.want == ErrNotFirstFragment || c.want == ErrNotUnicast || c.want == ErrNoDF
		if errors.Is(err, ErrNoICMP) != rule {
			t.Errorf("%s: errors.Is(%v, ErrNoICMP) = %v", c.name, err, !rule)
		}
		if err != nil && !bytes.Equal(buf, orig) {
			t.Errorf("%s: buffer changed on error", c.name)
		}
	}
	if _, _, err := TimeExceeded(make([]byte, 10), 5, 10, rtr4); !errors.Is(err, ErrMalformed) {
		t.Errorf("packet past the buffer: %v", err)
	}
}

func TestChecksumHelpers(t *testing.T) {
	pkt := udp4(t, 333, true)
	if Checksum(pkt[:20]) != 0 {
		t.Error("Checksum of a valid header is not 0")
	}
	odd := []byte{1, 2, 3}
	if Sum(odd, 0) != onesSum([]byte{1, 2, 3, 0}) {
		t.Error("Sum of an odd length")
	}
	// The 64-bit accumulator agrees with the byte-by-byte reference for
	// any length and any even split into consecutive Adds, with an
	// initial value and word added on the way (end-around carries
	// included: all-0xff data).
	rng := rand.New(rand.NewPCG(9, 9))
	for round := range 2000 {
		b := make([]byte, rng.IntN(300))
		for i := range b {
			b[i] = byte(rng.IntN(256))
			if round%4 == 0 {
				b[i] = 0xff
			}
		}
		split := min(len(b), 2*rng.IntN(len(b)/2+1))
		x := uint64(rng.Uint32() & 0xffff)
		ref := evenPad(b)
		if got, want := Fold(Add(AddWord(Add(0, b[:split]), x), b[split:])), onesSum(ref, []byte{byte(x >> 8), byte(x)}); got != want {
			t.Fatalf("round %d (%d bytes, split %d): accumulator %#04x, reference %#04x", round, len(b), split, got, want)
		}
		if got, want := Sum(b, 0), onesSum(ref); got != want {
			t.Fatalf("round %d: Sum %#04x, reference %#04x", round, got, want)
		}
	}
	// UpdateChecksum agrees with recomputation.
	h := append([]byte(nil), pkt[:20]...)
	old := binary.BigEndian.Uint16(h[4:])
	binary.BigEndian.PutUint16(h[4:], 0xbeef)
	hc := UpdateChecksum(binary.BigEndian.Uint16(h[10:]), old, 0xbeef)
	binary.BigEndian.PutUint16(h[10:], hc)
	if !ipv4HeaderOK(h) {
		t.Error("UpdateChecksum result does not verify")
	}
}

func TestVersion(t *testing.T) {
	if Version(udp4(t, 100, true)) != 4 || Version(udp6(t, 100)) != 6 || Version(make([]byte, 60)) != 0 {
		t.Error("Version")
	}
}

func TestInetAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	syn := tcp4(t, true, false, nil, mss1460...)
	syn6 := tcp6(t, [][]byte{extHdr(0)}, mss1460...)
	u4, u6 := udp4(t, 1500, true), udp6(t, 1500)
	b4, o4 := inBuf(u4, 64)
	b6, o6 := inBuf(u6, 64)
	b4c, b6c := append([]byte(nil), b4...), append([]byte(nil), b6...)
	n := testing.AllocsPerRun(200, func() {
		ClampMSS(syn, 1460)
		SetMSS(syn, 1460)
		ClampMSS(syn6, 1460)
		copy(b4, b4c)
		copy(b6, b6c)
		DecTTL(b4[o4:])
		DecTTL(b6[o6:])
		if _, _, err := PacketTooBig(b4, o4, len(u4), rtr4, 1400); err != nil {
			panic(err)
		}
		if _, _, err := TimeExceeded(b6, o6, len(u6), rtr6); err != nil {
			panic(err)
		}
		if _, _, err := PacketTooBig(b4, o4, 10, rtr4, 1400); err == nil {
			panic("no error")
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
}
