package esp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime/debug"
	"testing"

	"github.com/espxdp/espxdp/internal/race"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// The tests in this file build packets with gopacket (an independent
// serializer that computes its own lengths and checksums), run them through
// the encapsulation layer and check the result with gopacket's parser and a
// checksum written here from RFC 1071, independently of checksum.go.

var (
	utV4A = netip.MustParseAddr("192.0.2.1")
	utV4B = netip.MustParseAddr("198.51.100.2")
	utV4N = netip.MustParseAddr("203.0.113.77") // address a NAT rewrites to
	utV6A = netip.MustParseAddr("2001:db8::1")
	utV6B = netip.MustParseAddr("2001:db8:ffff::2")
	utV6N = netip.MustParseAddr("2001:db8:4a7::77")

	utIn4A = netip.MustParseAddr("10.1.0.1")
	utIn4B = netip.MustParseAddr("10.2.0.2")
	utIn6A = netip.MustParseAddr("fd00:1::1")
	utIn6B = netip.MustParseAddr("fd00:2::2")
)

// utSpec describes a packet for utBuild.
type utSpec struct {
	v6       bool
	proto    byte  // 6 (TCP), 17 (UDP), 1 (ICMPv4), 58 (ICMPv6)
	tos      uint8 // IPv4 TOS or IPv6 Traffic Class
	src, dst netip.Addr
	ipOpts   int  // IPv4: 4-byte option words (IHL = 5 + ipOpts)
	hbh      bool // IPv6: a hop-by-hop options header before the upper layer
	size     int  // bytes of application payload
}

// utBuild serializes the packet sp describes with gopacket, lengths and
// checksums computed by gopacket.
func utBuild(tb testing.TB, sp utSpec) []byte {
	tb.Helper()
	var ls []gopacket.SerializableLayer
	var netl gopacket.NetworkLayer
	if !sp.v6 {
		ip := &layers.IPv4{
			Version: 4, TOS: sp.tos, TTL: 57, Id: 0xbeef, Flags: layers.IPv4DontFragment,
			Protocol: layers.IPProtocol(sp.proto),
			SrcIP:    net.IP(sp.src.AsSlice()), DstIP: net.IP(sp.dst.AsSlice()),
		}
		if sp.ipOpts > 0 {
			// Router Alert (RFC 2113), then NOPs filling whole words.
			ip.Options = append(ip.Options, layers.IPv4Option{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}})
			for i := 1; i < sp.ipOpts*4-3; i++ {
				ip.Options = append(ip.Options, layers.IPv4Option{OptionType: 1})
			}
		}
		ls, netl = append(ls, ip), ip
	} else {
		ip := &layers.IPv6{
			Version: 6, TrafficClass: sp.tos, FlowLabel: 0x5eed7, HopLimit: 57,
			NextHeader: layers.IPProtocol(sp.proto),
			SrcIP:      net.IP(sp.src.AsSlice()), DstIP: net.IP(sp.dst.AsSlice()),
		}
		ls, netl = append(ls, ip), ip
		if sp.hbh {
			// Hop-by-hop header: Router Alert (RFC 2711) and a PadN to 8 bytes.
			ip.NextHeader = layers.IPProtocolIPv6HopByHop
			ls = append(ls, gopacket.Payload{sp.proto, 0, 5, 2, 0, 0, 1, 0})
		}
	}
	switch sp.proto {
	case 6:
		tcp := &layers.TCP{SrcPort: 40001, DstPort: 443, Seq: 0x01020304, Ack: 0x0a0b0c0d, ACK: true, PSH: true, Window: 501}
		_ = tcp.SetNetworkLayerForChecksum(netl)
		ls = append(ls, tcp)
	case 17:
		udp := &layers.UDP{SrcPort: 5353, DstPort: 53}
		_ = udp.SetNetworkLayerForChecksum(netl)
		ls = append(ls, udp)
	case 1:
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 9})
	case 58:
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
		_ = icmp.SetNetworkLayerForChecksum(netl)
		ls = append(ls, icmp, &layers.ICMPv6Echo{Identifier: 7, SeqNumber: 9})
	default:
		tb.Fatalf("utBuild: protocol %d", sp.proto)
	}
	payload := make([]byte, sp.size)
	for i := range payload {
		payload[i] = byte(i*7 + 3)
	}
	ls = append(ls, gopacket.Payload(payload))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatalf("gopacket serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// utHeaderLen is the length of the part of sp's packet that stays in front
// of ESP in transport mode, and the offset of its protocol byte.
func utHeaderLen(sp utSpec) (hl, nhOff int) {
	switch {
	case !sp.v6:
		return 20 + 4*sp.ipOpts, 9
	case sp.hbh:
		return 48, 40
	}
	return 40, 6
}

// utPlace copies pkt into a fresh buffer at offset MaxHeadroom; the slice
// ends with the packet and has tail more bytes of capacity.
func utPlace(pkt []byte, tail int) ([]byte, int) {
	b := make([]byte, MaxHeadroom+len(pkt), MaxHeadroom+len(pkt)+tail)
	copy(b[MaxHeadroom:], pkt)
	return b, MaxHeadroom
}

// utSum is the RFC 1071 one's-complement sum of the concatenated parts,
// folded to 16 bits but not inverted: data whose checksum is right sums to
// 0xffff.
func utSum(parts ...[]byte) uint16 {
	var all []byte
	for _, p := range parts {
		all = append(all, p...)
	}
	var sum uint32
	for i := 0; i+1 < len(all); i += 2 {
		sum += uint32(all[i])<<8 | uint32(all[i+1])
	}
	if len(all)%2 == 1 {
		sum += uint32(all[len(all)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// utPseudo is the TCP/UDP pseudo-header (RFC 793/768 for IPv4, RFC 8200
// §8.1 for IPv6).
func utPseudo(src, dst netip.Addr, proto byte, n int) []byte {
	b := append(src.AsSlice(), dst.AsSlice()...)
	if src.Is4() {
		return append(b, 0, proto, byte(n>>8), byte(n))
	}
	return append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n), 0, 0, 0, proto)
}

// utFixIPv4Checksum rewrites the header checksum of the IPv4 header h.
func utFixIPv4Checksum(h []byte) {
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:], ^utSum(h))
}

// utL4Check verifies the TCP or UDP checksum of the IP packet pkt twice:
// with utSum over the pseudo-header, and by letting gopacket recompute it
// from the decoded layers.
func utL4Check(t *testing.T, pkt []byte) {
	t.Helper()
	first := layers.LayerTypeIPv4
	if pkt[0]>>4 == 6 {
		first = layers.LayerTypeIPv6
	}
	pk := gopacket.NewPacket(pkt, first, gopacket.Default)
	nl := pk.NetworkLayer()
	if nl == nil {
		t.Fatalf("gopacket found no network layer")
	}
	src, _ := netip.AddrFromSlice(nl.NetworkFlow().Src().Raw())
	dst, _ := netip.AddrFromSlice(nl.NetworkFlow().Dst().Raw())
	var seg, l4payload []byte
	var proto byte
	var got uint16
	var l4 gopacket.SerializableLayer
	var at int
	if tcp, ok := pk.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
		seg, l4payload, proto, got, at = append(append([]byte(nil), tcp.Contents...), tcp.Payload...), tcp.Payload, 6, tcp.Checksum, 16
		cp := *tcp
		_ = cp.SetNetworkLayerForChecksum(nl)
		l4 = &cp
	} else if udp, ok := pk.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
		seg, l4payload, proto, got, at = append(append([]byte(nil), udp.Contents...), udp.Payload...), udp.Payload, 17, udp.Checksum, 6
		cp := *udp
		_ = cp.SetNetworkLayerForChecksum(nl)
		l4 = &cp
	} else {
		t.Fatalf("no TCP or UDP layer in %x", pkt)
	}
	if s := utSum(utPseudo(src, dst, proto, len(seg)), seg); s != 0xffff {
		t.Errorf("proto %d checksum %#04x invalid for %v -> %v (sum %#04x)", proto, got, src, dst, s)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, l4, gopacket.Payload(l4payload)); err != nil {
		t.Fatalf("gopacket re-serialize: %v", err)
	}
	if want := binary.BigEndian.Uint16(buf.Bytes()[at:]); got != want {
		t.Errorf("proto %d checksum %#04x, gopacket computes %#04x for %v -> %v", proto, got, want, src, dst)
	}
}

// utCheckOuter checks, with gopacket and utSum, the outer headers of an
// ESP packet built by Encap: IP lengths, IPv4 header checksum, the protocol
// chain (hl is the IP header length with options or extension headers,
// nhOff the byte that must announce ESP or UDP), the NAT-T UDP header and
// the ESP SPI and sequence number. It returns the offset of the SPI.
func utCheckOuter(t *testing.T, out []byte, hl, nhOff int, o *Outer, spi uint32, seq uint64) int {
	t.Helper()
	udp := o != nil && o.UDP
	wantProto := layers.IPProtocol(ProtocolESP)
	if udp {
		wantProto = layers.IPProtocolUDP
	}
	if len(out) < hl {
		t.Fatalf("packet of %d bytes shorter than its %d-byte IP header", len(out), hl)
	}
	if got := layers.IPProtocol(out[nhOff]); got != wantProto {
		t.Errorf("byte %d (protocol/next header) = %d, want %d", nhOff, got, wantProto)
	}
	var pk gopacket.Packet
	var src, dst netip.Addr
	if out[0]>>4 == 4 {
		pk = gopacket.NewPacket(out, layers.LayerTypeIPv4, gopacket.Default)
		ip, ok := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if !ok {
			t.Fatalf("gopacket finds no IPv4 header in %x", out)
		}
		if int(ip.Length) != len(out) {
			t.Errorf("IPv4 total length %d, packet is %d bytes", ip.Length, len(out))
		}
		if int(ip.IHL)*4 != hl {
			t.Errorf("IPv4 IHL %d, want %d bytes", ip.IHL, hl)
		}
		if ip.Protocol != wantProto {
			t.Errorf("IPv4 protocol %d, want %d", ip.Protocol, wantProto)
		}
		if s := utSum(out[:hl]); s != 0xffff {
			t.Errorf("IPv4 header checksum %#04x invalid (sum %#04x)", ip.Checksum, s)
		}
		if ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 {
			t.Errorf("outer packet is a fragment: flags %v offset %d", ip.Flags, ip.FragOffset)
		}
		src, _ = netip.AddrFromSlice(ip.SrcIP.To4())
		dst, _ = netip.AddrFromSlice(ip.DstIP.To4())
	} else {
		pk = gopacket.NewPacket(out, layers.LayerTypeIPv6, gopacket.Default)
		ip, ok := pk.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		if !ok {
			t.Fatalf("gopacket finds no IPv6 header in %x", out)
		}
		if int(ip.Length) != len(out)-40 {
			t.Errorf("IPv6 payload length %d, want %d", ip.Length, len(out)-40)
		}
		if hl > 40 {
			if ip.HopByHop == nil || ip.HopByHop.NextHeader != wantProto {
				t.Errorf("hop-by-hop header missing or not followed by %d: %+v", wantProto, ip.HopByHop)
			}
		} else if ip.NextHeader != wantProto {
			t.Errorf("IPv6 next header %d, want %d", ip.NextHeader, wantProto)
		}
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
	}
	espOff := hl
	if udp {
		u, ok := pk.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if !ok {
			t.Fatalf("gopacket finds no UDP header")
		}
		wantSP, wantDP := o.SrcPort, o.DstPort
		if wantSP == 0 {
			wantSP = 4500
		}
		if wantDP == 0 {
			wantDP = 4500
		}
		if uint16(u.SrcPort) != wantSP || uint16(u.DstPort) != wantDP {
			t.Errorf("UDP ports %d->%d, want %d->%d", u.SrcPort, u.DstPort, wantSP, wantDP)
		}
		if int(u.Length) != len(out)-hl {
			t.Errorf("UDP length %d, want %d", u.Length, len(out)-hl)
		}
		if src.Is4() {
			if u.Checksum != 0 { // RFC 3948 §2.1
				t.Errorf("UDP checksum over IPv4 %#04x, want 0", u.Checksum)
			}
		} else {
			if u.Checksum == 0 {
				t.Errorf("UDP checksum over IPv6 is zero")
			}
			if s := utSum(utPseudo(src, dst, 17, len(out)-hl), out[hl:]); s != 0xffff {
				t.Errorf("UDP checksum %#04x over IPv6 invalid (sum %#04x)", u.Checksum, s)
			}
		}
		espOff += UDPHeaderLen
	}
	ep := gopacket.NewPacket(out[espOff:], layers.LayerTypeIPSecESP, gopacket.Default)
	e, ok := ep.Layer(layers.LayerTypeIPSecESP).(*layers.IPSecESP)
	if !ok {
		t.Fatalf("gopacket finds no ESP header at %d", espOff)
	}
	if e.SPI != spi || e.Seq != uint32(seq) {
		t.Errorf("ESP SPI %#x seq %#x, want %#x %#x", e.SPI, e.Seq, spi, uint32(seq))
	}
	return espOff
}

// utRecover turns a panic into a test failure, so one bug does not stop
// the other tests.
func utRecover(t *testing.T) {
	if r := recover(); r != nil {
		t.Errorf("panic: %v\n%s", r, debug.Stack())
	}
}

func TestEncapTunnel(t *testing.T) {
	s := NewScratch()
	inners := map[bool]utSpec{
		// DSCP EF (46) with ECT(1); DSCP AF41 (34) with ECT(0).
		false: {proto: 6, tos: 0xb9, src: utIn4A, dst: utIn4B, size: 333},
		true:  {v6: true, proto: 17, tos: 0x8a, src: utIn6A, dst: utIn6B, size: 517},
	}
	k := 0
	for _, name := range []string{"aes128gcm16", "aes256gcm8", "chacha20poly1305", "aes256-sha256", "3des-sha1", "aes128gmac", "aes192ctr-sha512", "null-sha256"} {
		for _, in6 := range []bool{false, true} {
			for _, out6 := range []bool{false, true} {
				for _, udp := range []bool{false, true} {
					k++
					k := k
					fam := map[bool]string{false: "v4", true: "v6"}
					t.Run(fmt.Sprintf("%s/%s-in-%s/natt=%v", name, fam[in6], fam[out6], udp), func(t *testing.T) {
						defer utRecover(t)
						esn := k%2 == 0
						c := testCipher(t, name, esn)
						sp := inners[in6]
						orig := utBuild(t, sp)
						o := &Outer{Src: utV4A, Dst: utV4B, UDP: udp, DF: k%4 < 2}
						hl, nhOff := 20, 9
						if out6 {
							o.Src, o.Dst, hl, nhOff = utV6A, utV6B, 40, 6
						}
						wantTTL := uint8(64)
						if k%3 == 0 {
							o.TTL, wantTTL = 17, 17
						}
						if udp && k%3 != 0 {
							o.SrcPort = 34567
						}
						seq := uint64(0xabc0 + k)
						if esn {
							seq |= 7 << 32
						}
						spi := uint32(0xc0de0000 + k)
						b, off := utPlace(orig, c.TrailerRoom(len(orig)))
						pkt, err := c.EncapTunnel(s, b, off, len(orig), spi, seq, o)
						if err != nil {
							t.Fatalf("EncapTunnel: %v", err)
						}
						espOff := utCheckOuter(t, pkt, hl, nhOff, o, spi, seq)
						if got, want := len(pkt)-espOff, len(orig)+c.Overhead(len(orig)); got != want {
							t.Errorf("ESP packet %d bytes, want n+Overhead(n) = %d", got, want)
						}
						if !out6 {
							ip := gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.Default).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
							if ip.TOS != sp.tos {
								t.Errorf("outer TOS %#02x, want inner DSCP/ECN %#02x", ip.TOS, sp.tos)
							}
							if ip.TTL != wantTTL {
								t.Errorf("outer TTL %d, want %d", ip.TTL, wantTTL)
							}
							if df := ip.Flags&layers.IPv4DontFragment != 0; df != o.DF {
								t.Errorf("outer DF %v, want %v", df, o.DF)
							}
							if ip.Id != uint16(seq) {
								t.Errorf("outer ID %#x, want low 16 bits of seq %#x", ip.Id, uint16(seq))
							}
							if !ip.SrcIP.Equal(net.IP(o.Src.AsSlice())) || !ip.DstIP.Equal(net.IP(o.Dst.AsSlice())) {
								t.Errorf("outer addresses %v -> %v", ip.SrcIP, ip.DstIP)
							}
						} else {
							ip := gopacket.NewPacket(pkt, layers.LayerTypeIPv6, gopacket.Default).Layer(layers.LayerTypeIPv6).(*layers.IPv6)
							if ip.TrafficClass != sp.tos {
								t.Errorf("outer traffic class %#02x, want inner DSCP/ECN %#02x", ip.TrafficClass, sp.tos)
							}
							if ip.HopLimit != wantTTL {
								t.Errorf("outer hop limit %d, want %d", ip.HopLimit, wantTTL)
							}
							if !ip.SrcIP.Equal(net.IP(o.Src.AsSlice())) || !ip.DstIP.Equal(net.IP(o.Dst.AsSlice())) {
								t.Errorf("outer addresses %v -> %v", ip.SrcIP, ip.DstIP)
							}
						}

						var p Parsed
						if err := ParseOuter(pkt, 0, &p); err != nil {
							t.Fatalf("ParseOuter: %v", err)
						}
						if p.Len != len(pkt) || p.ESPOffset != espOff || p.HeaderLen != hl || p.NHOffset != nhOff || p.UDP != udp || p.Src != o.Src || p.Dst != o.Dst {
							t.Errorf("ParseOuter = %+v; want Len %d ESPOffset %d HeaderLen %d NHOffset %d UDP %v", p, len(pkt), espOff, hl, nhOff, udp)
						}
						if udp && (p.SrcPort != map[bool]uint16{false: 4500, true: 34567}[o.SrcPort != 0] || p.DstPort != 4500) {
							t.Errorf("ParseOuter ports %d->%d", p.SrcPort, p.DstPort)
						}
						payload, nh, err := c.Open(s, pkt[p.ESPOffset:p.Len], seq)
						if err != nil {
							t.Fatalf("Open: %v", err)
						}
						wantNH := byte(NextHeaderIPv4)
						if in6 {
							wantNH = NextHeaderIPv6
						}
						if nh != wantNH {
							t.Errorf("next header %d, want %d", nh, wantNH)
						}
						inner, err := DecapTunnel(payload, nh)
						if err != nil {
							t.Fatalf("DecapTunnel: %v", err)
						}
						if !bytes.Equal(inner, orig) {
							t.Errorf("inner packet differs:\n got %x\nwant %x", inner, orig)
						}
					})
				}
			}
		}
	}
}

func TestEncapTunnelBadInput(t *testing.T) {
	defer utRecover(t)
	s := NewScratch()
	c := testCipher(t, "aes128gcm16", false)
	orig := utBuild(t, utSpec{proto: 17, src: utIn4A, dst: utIn4B, size: 10})
	o := &Outer{Src: utV4A, Dst: utV4B}
	try := func(what string, want error, b []byte, off, n int, o *Outer) {
		t.Helper()
		defer utRecover(t)
		if _, err := c.EncapTunnel(s, b, off, n, 1, 1, o); !errors.Is(err, want) {
			t.Errorf("%s: err %v, want %v", what, err, want)
		}
	}
	b, off := utPlace(orig, MaxTailroom)
	try("mixed families", ErrMalformed, b, off, len(orig), &Outer{Src: utV4A, Dst: utV6B})
	b, off = utPlace(orig, MaxTailroom)
	try("no endpoints", ErrMalformed, b, off, len(orig), &Outer{})
	b, off = utPlace(orig, MaxTailroom)
	b[off] = 0x55
	try("inner version 5", ErrMalformed, b, off, len(orig), o)
	b, off = utPlace(orig, MaxTailroom)
	try("empty inner", ErrTruncated, b, off, 0, o)
	try("inner past len(b)", ErrTruncated, b, off, len(orig)+1, o)
	// A one-byte "IPv4 packet" at the very end of len(b) (tailroom only in
	// the capacity, as Seal documents) must be an error, not an index out
	// of range while reading the TOS byte.
	b, off = utPlace([]byte{0x45}, MaxTailroom)
	_, err := func() (_ []byte, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		return c.EncapTunnel(s, b, off, 1, 1, 1, o)
	}()
	if err != nil && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMalformed) {
		t.Errorf("one-byte IPv4 inner packet: %v, want ErrTruncated or ErrMalformed", err)
	}
	// A nil *Outer in tunnel mode is a caller error; the package promises
	// errors, not panics.
	b, off = utPlace(orig, MaxTailroom)
	_, err = func() (_ []byte, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		return c.EncapTunnel(s, b, off, len(orig), 1, 1, nil)
	}()
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("EncapTunnel with nil Outer: %v, want ErrMalformed", err)
	}
}

// utNAT rewrites the outer source address of pkt as a NAT would, fixing
// the IPv4 header checksum (an IPv6 NAT leaves the outer UDP checksum
// wrong; receivers of ESP-in-UDP ignore it).
func utNAT(pkt []byte, src netip.Addr) {
	if pkt[0]>>4 == 4 {
		a := src.As4()
		copy(pkt[12:16], a[:])
		utFixIPv4Checksum(pkt[:int(pkt[0]&0x0f)*4])
		return
	}
	a := src.As16()
	copy(pkt[8:24], a[:])
}

func TestEncapTransport(t *testing.T) {
	s := NewScratch()
	cases := []struct {
		name string
		sp   utSpec
	}{
		{"v4-tcp", utSpec{proto: 6, tos: 0x10, src: utV4A, dst: utV4B, size: 200}},
		{"v4-udp-ihl6", utSpec{proto: 17, tos: 0x2e, src: utV4A, dst: utV4B, ipOpts: 1, size: 101}},
		{"v4-tcp-ihl8", utSpec{proto: 6, src: utV4A, dst: utV4B, ipOpts: 3, size: 1}},
		{"v4-icmp", utSpec{proto: 1, src: utV4A, dst: utV4B, size: 56}},
		{"v6-tcp", utSpec{v6: true, proto: 6, tos: 0xb8, src: utV6A, dst: utV6B, size: 300}},
		{"v6-udp-hbh", utSpec{v6: true, proto: 17, src: utV6A, dst: utV6B, hbh: true, size: 77}},
		{"v6-tcp-hbh", utSpec{v6: true, proto: 6, src: utV6A, dst: utV6B, hbh: true, size: 0}},
	}
	k := 0
	for _, name := range []string{"aes128gcm16", "aes256gcm12", "aes192-sha384", "aes128ctr-sha256", "null-sha256", "3des-sha1"} {
		for _, tc := range cases {
			for _, udp := range []bool{false, true} {
				k++
				k := k
				t.Run(fmt.Sprintf("%s/%s/natt=%v", name, tc.name, udp), func(t *testing.T) {
					defer utRecover(t)
					esn := k%2 == 1
					c := testCipher(t, name, esn)
					orig := utBuild(t, tc.sp)
					hl, nhOff := utHeaderLen(tc.sp)
					var o *Outer // nil is allowed in transport mode
					if udp {
						o = &Outer{UDP: true}
						if k%3 == 0 {
							o.SrcPort, o.DstPort = 61000, 4501
						}
					} else if k%3 == 0 {
						o = &Outer{}
					}
					seq := uint64(5000 + k)
					if esn {
						seq |= 3 << 32
					}
					spi := uint32(0x7e570000 + k)
					b, off := utPlace(orig, c.TrailerRoom(len(orig)-hl))
					pkt, err := c.EncapTransport(s, b, off, len(orig), spi, seq, o)
					if err != nil {
						t.Fatalf("EncapTransport: %v", err)
					}
					udpLen := 0
					if udp {
						udpLen = UDPHeaderLen
					}
					if want := hl + udpLen + len(orig) - hl + c.Overhead(len(orig)-hl); len(pkt) != want {
						t.Errorf("packet %d bytes, want %d", len(pkt), want)
					}
					// The IP header is kept but for length, protocol and checksum.
					skip := map[int]bool{4: true, 5: true, nhOff: true}
					if !tc.sp.v6 {
						skip = map[int]bool{2: true, 3: true, 9: true, 10: true, 11: true}
					}
					for i := 0; i < hl; i++ {
						if !skip[i] && pkt[i] != orig[i] {
							t.Errorf("IP header byte %d changed: %#02x, was %#02x", i, pkt[i], orig[i])
						}
					}
					espOff := utCheckOuter(t, pkt, hl, nhOff, o, spi, seq)
					wire := append([]byte(nil), pkt...)

					nattPort := uint16(0)
					if o != nil && o.DstPort != 0 {
						nattPort = o.DstPort
					}
					var p Parsed
					if err := ParseOuter(pkt, nattPort, &p); err != nil {
						t.Fatalf("ParseOuter: %v", err)
					}
					if p.Len != len(pkt) || p.ESPOffset != espOff || p.HeaderLen != hl || p.NHOffset != nhOff || p.UDP != udp {
						t.Errorf("ParseOuter = %+v; want Len %d ESPOffset %d HeaderLen %d NHOffset %d", p, len(pkt), espOff, hl, nhOff)
					}
					payload, nh, err := c.Open(s, pkt[p.ESPOffset:p.Len], seq)
					if err != nil {
						t.Fatalf("Open: %v", err)
					}
					if nh != tc.sp.proto {
						t.Errorf("next header %d, want %d", nh, tc.sp.proto)
					}
					got, err := DecapTransport(pkt, &p, payload, nh)
					if err != nil {
						t.Fatalf("DecapTransport: %v", err)
					}
					if !bytes.Equal(got, orig) {
						t.Errorf("rebuilt packet differs:\n got %x\nwant %x", got, orig)
					}
					if !tc.sp.v6 {
						if s := utSum(got[:hl]); s != 0xffff {
							t.Errorf("rebuilt IPv4 header checksum invalid (sum %#04x)", s)
						}
					}
					if !udp {
						return
					}

					// A NAT between the peers rewrites the outer source
					// address; the rebuilt packet must be the original sent
					// from the new address, TCP/UDP checksum included
					// (RFC 3948 §3.1.2).
					natSrc := utV4N
					if tc.sp.v6 {
						natSrc = utV6N
					}
					nat := append([]byte(nil), wire...)
					utNAT(nat, natSrc)
					if err := ParseOuter(nat, nattPort, &p); err != nil {
						t.Fatalf("ParseOuter after NAT: %v", err)
					}
					if p.Src != natSrc {
						t.Errorf("ParseOuter Src %v, want %v", p.Src, natSrc)
					}
					payload, nh, err = c.Open(s, nat[p.ESPOffset:p.Len], seq)
					if err != nil {
						t.Fatalf("Open after NAT: %v", err)
					}
					got, err = DecapTransport(nat, &p, payload, nh)
					if err != nil {
						t.Fatalf("DecapTransport after NAT: %v", err)
					}
					natSpec := tc.sp
					natSpec.src = natSrc
					want := utBuild(t, natSpec)
					if !bytes.Equal(got, want) {
						t.Errorf("NATed packet differs from the original sent from %v:\n got %x\nwant %x", natSrc, got, want)
					}
					if tc.sp.proto == 6 || tc.sp.proto == 17 {
						utL4Check(t, got)
						// The test means something only if the original
						// checksum was wrong for the new address.
						seg := orig[hl:]
						if utSum(utPseudo(natSrc, tc.sp.dst, tc.sp.proto, len(seg)), seg) == 0xffff {
							t.Errorf("original checksum already valid after NAT; test is vacuous")
						}
					}
				})
			}
		}
	}
}

func TestEncapTunnelTFC(t *testing.T) {
	s := NewScratch()
	for _, tc := range []struct {
		name string
		tfc  int
		sp   utSpec
	}{
		{"aes128gcm16", 1000, utSpec{proto: 6, src: utIn4A, dst: utIn4B, size: 60}},
		{"aes256-sha256", 777, utSpec{v6: true, proto: 17, src: utIn6A, dst: utIn6B, size: 3}},
		{"chacha20poly1305", 200, utSpec{proto: 1, src: utIn4A, dst: utIn4B, size: 500}}, // longer than TFCPadTo
	} {
		t.Run(fmt.Sprintf("%s/tfc=%d", tc.name, tc.tfc), func(t *testing.T) {
			defer utRecover(t)
			tr := MustParseTransform(tc.name)
			key, auth := bytes.Repeat([]byte{0x42}, tr.KeyLen()), bytes.Repeat([]byte{0x24}, tr.AuthKeyLen())
			c, err := New(Config{Transform: tr, Key: key, AuthKey: auth, TFCPadTo: tc.tfc})
			if err != nil {
				t.Fatal(err)
			}
			plain, err := New(Config{Transform: tr, Key: key, AuthKey: auth})
			if err != nil {
				t.Fatal(err)
			}
			orig := utBuild(t, tc.sp)
			n := len(orig)
			if c.TrailerRoom(n) > MaxTailroom+max(tc.tfc-n, 0) {
				t.Errorf("TrailerRoom(%d) = %d exceeds MaxTailroom+TFC padding", n, c.TrailerRoom(n))
			}
			b, off := utPlace(orig, c.TrailerRoom(n))
			o := &Outer{Src: utV4A, Dst: utV4B}
			pkt, err := c.EncapTunnel(s, b, off, n, 9, 1, o)
			if err != nil {
				t.Fatalf("EncapTunnel: %v", err)
			}
			espLen := len(pkt) - 20
			if espLen != n+c.Overhead(n) {
				t.Errorf("ESP length %d, want n+Overhead(n) = %d", espLen, n+c.Overhead(n))
			}
			// Independently of Overhead: header, IV, max(n, tfc) padded
			// to the alignment with the 2 trailer bytes, ICV.
			a := max(tr.BlockSize(), 4)
			body := (max(n, tc.tfc) + 2 + a - 1) / a * a
			if want := HeaderLen + tr.IVLen() + body + tr.ICVLen(); espLen != want {
				t.Errorf("ESP length %d, want %d", espLen, want)
			}
			if n < tc.tfc && espLen <= n+plain.Overhead(n) {
				t.Errorf("TFC padding did not lengthen the packet: %d <= %d", espLen, n+plain.Overhead(n))
			}
			var p Parsed
			if err := ParseOuter(pkt, 0, &p); err != nil {
				t.Fatal(err)
			}
			payload, nh, err := c.Open(s, pkt[p.ESPOffset:p.Len], 1)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if len(payload) != max(n, tc.tfc) {
				t.Errorf("payload %d bytes, want %d with TFC padding", len(payload), max(n, tc.tfc))
			}
			if !bytes.Equal(payload[n:], make([]byte, len(payload)-n)) {
				t.Errorf("TFC padding not zero: %x", payload[n:])
			}
			inner, err := DecapTunnel(payload, nh)
			if err != nil {
				t.Fatalf("DecapTunnel: %v", err)
			}
			if !bytes.Equal(inner, orig) {
				t.Errorf("inner packet differs:\n got %x\nwant %x", inner, orig)
			}
		})
	}
}

func TestDummyPacket(t *testing.T) {
	s := NewScratch()
	for _, name := range []string{"aes128gcm16", "aes128gcm8", "aes256-sha512", "null-sha1", "aes256gmac", "chacha20poly1305"} {
		t.Run(name, func(t *testing.T) {
			defer utRecover(t)
			c := testCipher(t, name, true)
			junk := []byte("dummy packet, RFC 4303 section 2.6")
			buf := make([]byte, MaxHeadroom+len(junk), MaxHeadroom+len(junk)+MaxTailroom)
			copy(buf[MaxHeadroom:], junk)
			pkt, err := c.Seal(s, buf, MaxHeadroom, len(junk), 77, 1<<32|9, NextHeaderNone)
			if err != nil {
				t.Fatal(err)
			}
			wire := append([]byte(nil), pkt...)
			payload, nh, err := c.Open(s, pkt, 1<<32)
			if !errors.Is(err, ErrDummy) || nh != NextHeaderNone {
				t.Fatalf("Open dummy: nh %d err %v, want 59 and ErrDummy", nh, err)
			}
			if !bytes.Equal(payload, junk) {
				t.Errorf("dummy payload %q", payload)
			}
			// A dummy packet is authenticated first: a forged one is ErrAuth.
			wire[len(wire)-1] ^= 0x80
			if _, _, err := c.Open(s, wire, 1<<32); !errors.Is(err, ErrAuth) {
				t.Errorf("forged dummy: %v, want ErrAuth", err)
			}
			if _, err := DecapTunnel(payload, NextHeaderNone); !errors.Is(err, ErrDummy) {
				t.Errorf("DecapTunnel(nh 59): %v, want ErrDummy", err)
			}
		})
	}
	// Transport mode: the same through the outer headers.
	c := testCipher(t, "aes128gcm16", false)
	orig := utBuild(t, utSpec{proto: 17, src: utV4A, dst: utV4B, size: 30})
	b, off := utPlace(orig, MaxTailroom)
	pkt, err := c.EncapTransport(s, b, off, len(orig), 1, 1, &Outer{UDP: true})
	if err != nil {
		t.Fatal(err)
	}
	var p Parsed
	if err := ParseOuter(pkt, 0, &p); err != nil {
		t.Fatal(err)
	}
	payload, _, err := c.Open(s, pkt[p.ESPOffset:p.Len], 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecapTransport(pkt, &p, payload, NextHeaderNone); !errors.Is(err, ErrDummy) {
		t.Errorf("DecapTransport(nh 59): %v, want ErrDummy", err)
	}
}

// utUDP builds IPv4 or IPv6 / UDP sport->dport / payload with gopacket.
func utUDP(tb testing.TB, v6 bool, sport, dport uint16, payload []byte) []byte {
	tb.Helper()
	var ip gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	if v6 {
		l := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: net.IP(utV6A.AsSlice()), DstIP: net.IP(utV6B.AsSlice())}
		ip, nl = l, l
	} else {
		l := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP(utV4A.AsSlice()), DstIP: net.IP(utV4B.AsSlice())}
		ip, nl = l, l
	}
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	_ = udp.SetNetworkLayerForChecksum(nl)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, udp, gopacket.Payload(payload)); err != nil {
		tb.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// utRawIP returns an IP packet of exactly size bytes (protocol 253,
// RFC 3692 experimentation) with correct length fields.
func utRawIP(v6 bool, size int) []byte {
	p := make([]byte, size)
	for i := range p {
		p[i] = byte(i)
	}
	if v6 {
		binary.BigEndian.PutUint32(p[0:], 6<<28)
		binary.BigEndian.PutUint16(p[4:], uint16(size-40))
		p[6], p[7] = 253, 64
	} else {
		p[0], p[1] = 0x45, 0
		binary.BigEndian.PutUint16(p[2:], uint16(size))
		p[6], p[7], p[8], p[9] = 0, 0, 64, 253
		utFixIPv4Checksum(p[:20])
	}
	return p
}

func TestParseOuterNotESP(t *testing.T) {
	defer utRecover(t)
	esp := []byte{0, 0, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4}
	ike := append([]byte{0, 0, 0, 0}, bytes.Repeat([]byte{0x11}, 28)...) // non-ESP marker + IKE header
	frag6 := func(nh byte, frag []byte, rest []byte) []byte {
		p := make([]byte, 40)
		binary.BigEndian.PutUint32(p[0:], 6<<28)
		p[6], p[7] = nh, 64
		copy(p[8:], utV6A.AsSlice())
		copy(p[24:], utV6B.AsSlice())
		p = append(append(p, frag...), rest...)
		binary.BigEndian.PutUint16(p[4:], uint16(len(p)-40))
		return p
	}
	v4esp := func(flagsFrag uint16) []byte {
		p := utRawIP(false, 20+len(esp))
		p[9] = ProtocolESP
		binary.BigEndian.PutUint16(p[6:], flagsFrag)
		copy(p[20:], esp)
		utFixIPv4Checksum(p[:20])
		return p
	}
	tcp := utBuild(t, utSpec{proto: 6, src: utV4A, dst: utV4B, size: 10})
	badUDPLen := utUDP(t, false, 4500, 4500, esp)
	binary.BigEndian.PutUint16(badUDPLen[24:], 9)
	badIHL := v4esp(0)
	badIHL[0] = 0x44
	tooLong := v4esp(0)
	binary.BigEndian.PutUint16(tooLong[2:], uint16(len(tooLong)+1))
	for _, tc := range []struct {
		name string
		pkt  []byte
		port uint16
		want error
	}{
		{"v4 IKE", utUDP(t, false, 500, 4500, ike), 0, ErrNotESP},
		{"v6 IKE", utUDP(t, true, 4500, 4500, ike), 0, ErrNotESP},
		{"v4 keepalive", utUDP(t, false, 4500, 4500, []byte{0xff}), 0, ErrKeepalive},
		{"v6 keepalive", utUDP(t, true, 4500, 4500, []byte{0xff}), 0, ErrKeepalive},
		{"v4 UDP to 500", utUDP(t, false, 4500, 500, esp), 0, ErrUnsupported},
		{"v6 UDP to 4500, NAT-T port 4501", utUDP(t, true, 4500, 4500, esp), 4501, ErrUnsupported},
		{"v4 UDP 3 bytes", utUDP(t, false, 4500, 4500, []byte{1, 2, 3}), 0, ErrTruncated},
		{"v4 UDP length mismatch", badUDPLen, 0, ErrMalformed},
		{"v4 TCP", tcp, 0, ErrUnsupported},
		{"v4 MF", v4esp(0x2000), 0, ErrFragment},
		{"v4 offset", v4esp(185), 0, ErrFragment},
		{"v4 DF MF offset", v4esp(0x6000 | 3), 0, ErrFragment},
		{"v6 fragment header", frag6(44, []byte{50, 0, 0, 1, 0, 0, 0, 9}, esp), 0, ErrFragment},
		{"v6 hop-by-hop then fragment", frag6(0, []byte{44, 0, 1, 4, 0, 0, 0, 0, 50, 0, 0, 1, 0, 0, 0, 9}, esp), 0, ErrFragment},
		{"v4 IHL 4", badIHL, 0, ErrMalformed},
		{"v4 total length past end", tooLong, 0, ErrMalformed},
		{"version 5", append([]byte{0x55}, make([]byte, 40)...), 0, ErrMalformed},
		{"empty", nil, 0, ErrTruncated},
	} {
		var p Parsed
		if err := ParseOuter(tc.pkt, tc.port, &p); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// The positive counterparts of the cases above.
	for _, tc := range []struct {
		name         string
		pkt          []byte
		port         uint16
		espOff       int
		udp          bool
		sport, dport uint16
	}{
		{"v4 DF only", v4esp(0x4000), 0, 20, false, 0, 0},
		{"v4 UDP to 4501 with port 4501", utUDP(t, false, 1024, 4501, esp), 4501, 28, true, 1024, 4501},
		{"v6 UDP", utUDP(t, true, 4500, 4500, esp), 0, 48, true, 4500, 4500},
		{"v6 hop-by-hop then ESP", frag6(0, []byte{50, 0, 1, 4, 0, 0, 0, 0}, esp), 0, 48, false, 0, 0},
		{"v6 hbh, routing, dest opts", frag6(0, []byte{43, 0, 1, 4, 0, 0, 0, 0, 60, 0, 0, 0, 0, 0, 0, 0, 50, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, esp), 0, 72, false, 0, 0},
	} {
		var p Parsed
		if err := ParseOuter(tc.pkt, tc.port, &p); err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if p.ESPOffset != tc.espOff || p.Len != len(tc.pkt) || p.UDP != tc.udp || p.SrcPort != tc.sport || p.DstPort != tc.dport {
			t.Errorf("%s: %+v, want ESPOffset %d Len %d UDP %v ports %d->%d", tc.name, p, tc.espOff, len(tc.pkt), tc.udp, tc.sport, tc.dport)
		}
		if !bytes.Equal(tc.pkt[p.ESPOffset:p.Len], esp) {
			t.Errorf("%s: ESP bytes %x", tc.name, tc.pkt[p.ESPOffset:p.Len])
		}
	}
}

// utEncapSamples returns one encapsulated packet per outer variant.
func utEncapSamples(t *testing.T, c *Cipher, s *Scratch) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	add := func(name string, pkt []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = append([]byte(nil), pkt...)
	}
	inner := utBuild(t, utSpec{proto: 17, src: utIn4A, dst: utIn4B, size: 40})
	for _, v6 := range []bool{false, true} {
		for _, udp := range []bool{false, true} {
			o := &Outer{Src: utV4A, Dst: utV4B, UDP: udp}
			if v6 {
				o.Src, o.Dst = utV6A, utV6B
			}
			b, off := utPlace(inner, MaxTailroom)
			pkt, err := c.EncapTunnel(s, b, off, len(inner), 1, 1, o)
			add(fmt.Sprintf("tunnel v6=%v udp=%v", v6, udp), pkt, err)
		}
	}
	for _, sp := range []utSpec{
		{proto: 6, src: utV4A, dst: utV4B, ipOpts: 2, size: 12},
		{v6: true, hbh: true, proto: 17, src: utV6A, dst: utV6B, size: 12},
	} {
		for _, udp := range []bool{false, true} {
			orig := utBuild(t, sp)
			b, off := utPlace(orig, MaxTailroom)
			pkt, err := c.EncapTransport(s, b, off, len(orig), 1, 1, &Outer{UDP: udp})
			add(fmt.Sprintf("transport v6=%v udp=%v", sp.v6, udp), pkt, err)
		}
	}
	return out
}

func TestParseOuterTruncated(t *testing.T) {
	s := NewScratch()
	c := testCipher(t, "aes128gcm16", false)
	for name, pkt := range utEncapSamples(t, c, s) {
		t.Run(name, func(t *testing.T) {
			defer utRecover(t)
			var p Parsed
			if err := ParseOuter(pkt, 0, &p); err != nil {
				t.Fatalf("whole packet: %v", err)
			}
			for i := 0; i < len(pkt); i++ {
				err := func() (err error) {
					defer func() {
						if r := recover(); r != nil {
							err = fmt.Errorf("panic: %v", r)
						}
					}()
					return ParseOuter(pkt[:i:i], 0, &p)
				}()
				if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMalformed) {
					t.Errorf("truncated to %d of %d bytes: %v, want ErrTruncated or ErrMalformed", i, len(pkt), err)
				}
			}
		})
	}
}

func TestParseOuterEthernetPadding(t *testing.T) {
	s := NewScratch()
	c := testCipher(t, "aes256gcm16", false)
	for name, pkt := range utEncapSamples(t, c, s) {
		t.Run(name, func(t *testing.T) {
			defer utRecover(t)
			// Decapsulate a clean copy first to learn the expected result.
			clean := append([]byte(nil), pkt...)
			var pc Parsed
			if err := ParseOuter(clean, 0, &pc); err != nil {
				t.Fatal(err)
			}
			cleanPayload, nh, err := c.Open(s, clean[pc.ESPOffset:pc.Len], 1)
			if err != nil {
				t.Fatal(err)
			}
			want := append([]byte(nil), cleanPayload...)

			padded := append(append([]byte(nil), pkt...), make([]byte, 18)...) // frame padding
			padded[len(padded)-1] = 0xee
			var p Parsed
			if err := ParseOuter(padded, 0, &p); err != nil {
				t.Fatalf("padded: %v", err)
			}
			if p.Len != len(pkt) {
				t.Errorf("Len %d, want IP length %d (frame is %d)", p.Len, len(pkt), len(padded))
			}
			payload, nh2, err := c.Open(s, padded[p.ESPOffset:p.Len], 1)
			if err != nil || nh2 != nh || !bytes.Equal(payload, want) {
				t.Fatalf("Open of padded frame: nh %d err %v", nh2, err)
			}
			if nh == NextHeaderIPv4 || nh == NextHeaderIPv6 {
				return
			}
			ref, err := DecapTransport(clean, &pc, cleanPayload, nh)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecapTransport(padded, &p, payload, nh)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, ref) {
				t.Errorf("DecapTransport of padded frame:\n got %x\nwant %x", got, ref)
			}
		})
	}
}

func TestPlaintextMTU(t *testing.T) {
	s := NewScratch()
	for _, name := range []string{"aes128gcm16", "aes256gcm8", "chacha20poly1305", "aes128gmac", "aes128-sha256", "aes256-sha512", "3des-sha1", "aes192ctr-sha384", "null-sha1"} {
		c := testCipher(t, name, false)
		for _, mode := range []Mode{Tunnel, Transport} {
			for _, v6 := range []bool{false, true} {
				for _, udp := range []bool{false, true} {
					ipLen, udpLen := 20, 0
					if v6 {
						ipLen = 40
					}
					if udp {
						udpLen = UDPHeaderLen
					}
					// encap encapsulates a packet of n bytes and returns the
					// length on the wire, checking the ESP part against
					// Overhead on the way.
					encap := func(n int) int {
						o := &Outer{Src: utV4A, Dst: utV4B, UDP: udp}
						if v6 {
							o.Src, o.Dst = utV6A, utV6B
						}
						var pkt []byte
						var err error
						sealed := n
						if mode == Tunnel {
							in := utRawIP(false, n)
							b, off := utPlace(in, c.TrailerRoom(n))
							pkt, err = c.EncapTunnel(s, b, off, n, 1, 1, o)
						} else {
							in := utRawIP(v6, n)
							sealed = n - ipLen
							b, off := utPlace(in, c.TrailerRoom(sealed))
							pkt, err = c.EncapTransport(s, b, off, n, 1, 1, o)
						}
						if err != nil {
							t.Fatalf("%s %v v6=%v udp=%v n=%d: %v", name, mode, v6, udp, n, err)
						}
						if esp := len(pkt) - ipLen - udpLen; esp != sealed+c.Overhead(sealed) {
							t.Errorf("%s %v v6=%v udp=%v n=%d: ESP packet %d bytes, n+Overhead(n) = %d", name, mode, v6, udp, n, esp, sealed+c.Overhead(sealed))
						}
						return len(pkt)
					}
					for _, mtu := range []int{1500, 1400, 9000, 1280, 1499, 1497} {
						m := c.PlaintextMTU(mtu, mode, v6, udp)
						if m < ipLen || m > mtu {
							t.Errorf("%s %v v6=%v udp=%v mtu %d: PlaintextMTU %d out of range", name, mode, v6, udp, mtu, m)
							continue
						}
						if got := encap(m); got > mtu {
							t.Errorf("%s %v v6=%v udp=%v: a %d-byte packet (PlaintextMTU(%d)) becomes %d bytes", name, mode, v6, udp, m, mtu, got)
						}
						if got := encap(m + 1); got <= mtu {
							t.Errorf("%s %v v6=%v udp=%v: a %d-byte packet, PlaintextMTU(%d)+1, still fits (%d bytes)", name, mode, v6, udp, m+1, mtu, got)
						}
					}
				}
			}
		}
	}
}

func TestEncapDecapZeroAllocs(t *testing.T) {
	if race.Enabled || testing.CoverMode() != "" {
		t.Skip("allocation counts are not meaningful under -race or -cover; .ci/run checks them without")
	}
	s := NewScratch()
	inner := utBuild(t, utSpec{proto: 6, src: utIn4A, dst: utIn4B, size: 1000})
	orig := utBuild(t, utSpec{v6: true, hbh: true, proto: 17, src: utV6A, dst: utV6B, size: 1000})
	for _, name := range []string{"aes128gcm16", "aes128gcm8", "aes256gmac", "chacha20poly1305", "aes256-sha256", "3des-sha1", "aes128ctr-sha1", "null-sha512"} {
		for _, esn := range []bool{false, true} {
			c := testCipher(t, name, esn)
			buf := make([]byte, MaxHeadroom+len(orig)+MaxTailroom)
			o := &Outer{Src: utV4A, Dst: utV4B, UDP: true}
			seq := uint64(1)
			var p Parsed
			tunnel := func() {
				seq++
				n := copy(buf[MaxHeadroom:], inner)
				pkt, err := c.EncapTunnel(s, buf[:MaxHeadroom+n], MaxHeadroom, n, 5, seq, o)
				if err != nil {
					t.Fatal(err)
				}
				if err := ParseOuter(pkt, 0, &p); err != nil {
					t.Fatal(err)
				}
				payload, nh, err := c.Open(s, pkt[p.ESPOffset:p.Len], seq)
				if err != nil {
					t.Fatal(err)
				}
				got, err := DecapTunnel(payload, nh)
				if err != nil || !bytes.Equal(got, inner) {
					t.Fatal("tunnel round trip failed", err)
				}
			}
			transport := func() {
				seq++
				n := copy(buf[MaxHeadroom:], orig)
				pkt, err := c.EncapTransport(s, buf[:MaxHeadroom+n], MaxHeadroom, n, 5, seq, o)
				if err != nil {
					t.Fatal(err)
				}
				if err := ParseOuter(pkt, 0, &p); err != nil {
					t.Fatal(err)
				}
				payload, nh, err := c.Open(s, pkt[p.ESPOffset:p.Len], seq)
				if err != nil {
					t.Fatal(err)
				}
				got, err := DecapTransport(pkt, &p, payload, nh)
				if err != nil || !bytes.Equal(got, orig) {
					t.Fatal("transport round trip failed", err)
				}
			}
			tunnel() // warm the Scratch (hash states, growable buffer)
			transport()
			if a := testing.AllocsPerRun(50, tunnel); a != 0 {
				t.Errorf("%s esn=%v: %.1f allocs per EncapTunnel+ParseOuter+Open+DecapTunnel, want 0", name, esn, a)
			}
			if a := testing.AllocsPerRun(50, transport); a != 0 {
				t.Errorf("%s esn=%v: %.1f allocs per EncapTransport+ParseOuter+Open+DecapTransport, want 0", name, esn, a)
			}
		}
	}
}

func TestSealRoom(t *testing.T) {
	s := NewScratch()
	for _, name := range TransformNames() {
		t.Run(name, func(t *testing.T) {
			defer utRecover(t)
			c := testCipher(t, name, false)
			hl := c.HeaderLen()
			if hl+40+UDPHeaderLen > MaxHeadroom {
				t.Errorf("HeaderLen %d + IPv6 + UDP exceeds MaxHeadroom %d", hl, MaxHeadroom)
			}
			for _, n := range []int{0, 1, 13, 16, 100, 1421} {
				if c.TrailerRoom(n) > MaxTailroom {
					t.Errorf("TrailerRoom(%d) = %d > MaxTailroom %d", n, c.TrailerRoom(n), MaxTailroom)
				}
				plain := make([]byte, n)
				for i := range plain {
					plain[i] = byte(i + 1)
				}
				need := hl + n + c.TrailerRoom(n)
				mk := func(off, capacity int) []byte {
					b := make([]byte, off+n, capacity)
					copy(b[off:], plain)
					return b
				}
				b := mk(hl, need)
				pkt, err := c.Seal(s, b, hl, n, 1, 1, 4)
				if err != nil {
					t.Fatalf("n=%d with exactly HeaderLen and TrailerRoom: %v", n, err)
				}
				if len(pkt) != n+c.Overhead(n) {
					t.Errorf("n=%d: packet %d bytes, want %d", n, len(pkt), n+c.Overhead(n))
				}
				for _, tc := range []struct {
					what        string
					off, n, cap int
				}{
					{"tailroom one byte short", hl, n, need - 1},
					{"headroom one byte short", hl - 1, n, need + 16},
					{"payload past capacity", hl, n + 17, hl + n + 16},
					{"negative length", hl, -1, need},
				} {
					b := mk(tc.off, max(tc.cap, tc.off+n))
					b = b[:len(b):tc.cap]
					if _, err := c.Seal(s, b, tc.off, tc.n, 1, 1, 4); !errors.Is(err, ErrNoRoom) {
						t.Errorf("n=%d %s: %v, want ErrNoRoom", n, tc.what, err)
					}
					if !bytes.Equal(b[tc.off:tc.off+n], plain) {
						t.Errorf("n=%d %s: failed Seal modified the payload", n, tc.what)
					}
				}
			}
		})
	}
}

func TestEncapRoom(t *testing.T) {
	defer utRecover(t)
	s := NewScratch()
	for _, name := range []string{"aes128gcm16", "aes128-sha1", "null-sha256"} {
		c := testCipher(t, name, false)
		for _, v6 := range []bool{false, true} {
			for _, udp := range []bool{false, true} {
				ipLen, udpLen := 20, 0
				o := &Outer{Src: utV4A, Dst: utV4B, UDP: udp}
				if v6 {
					ipLen, o.Src, o.Dst = 40, utV6A, utV6B
				}
				if udp {
					udpLen = UDPHeaderLen
				}
				inner := utRawIP(false, 100)
				pre := ipLen + udpLen + c.HeaderLen()
				for _, off := range []int{pre, pre - 1} {
					b := make([]byte, off+len(inner), off+len(inner)+c.TrailerRoom(len(inner)))
					copy(b[off:], inner)
					_, err := c.EncapTunnel(s, b, off, len(inner), 1, 1, o)
					if off == pre && err != nil {
						t.Errorf("%s tunnel v6=%v udp=%v: headroom %d (exact) fails: %v", name, v6, udp, off, err)
					}
					if off < pre && !errors.Is(err, ErrNoRoom) {
						t.Errorf("%s tunnel v6=%v udp=%v: headroom %d: %v, want ErrNoRoom", name, v6, udp, off, err)
					}
				}
				b := make([]byte, pre+len(inner), pre+len(inner)+c.TrailerRoom(len(inner))-1)
				copy(b[pre:], inner)
				if _, err := c.EncapTunnel(s, b, pre, len(inner), 1, 1, o); !errors.Is(err, ErrNoRoom) {
					t.Errorf("%s tunnel v6=%v udp=%v: tailroom one short: %v, want ErrNoRoom", name, v6, udp, err)
				}

				orig := utRawIP(v6, 100)
				shift := udpLen + c.HeaderLen()
				tr := c.TrailerRoom(len(orig) - ipLen)
				for _, tc := range []struct {
					off, tail int
					want      error
				}{{shift, tr, nil}, {shift - 1, tr, ErrNoRoom}, {shift, tr - 1, ErrNoRoom}} {
					b := make([]byte, tc.off+len(orig), tc.off+len(orig)+tc.tail)
					copy(b[tc.off:], orig)
					_, err := c.EncapTransport(s, b, tc.off, len(orig), 1, 1, o)
					if !errors.Is(err, tc.want) {
						t.Errorf("%s transport v6=%v udp=%v headroom %d tailroom %d: %v, want %v", name, v6, udp, tc.off, tc.tail, err, tc.want)
					}
					if tc.want != nil && !bytes.Equal(b[tc.off:tc.off+len(orig)], orig) {
						t.Errorf("%s transport v6=%v udp=%v: failed EncapTransport left the packet modified", name, v6, udp)
					}
				}
			}
		}
	}
}

func TestTooBig(t *testing.T) {
	defer utRecover(t)
	s := NewScratch()
	const limit = 65535
	buf := make([]byte, MaxHeadroom+limit+40, MaxHeadroom+limit+40+MaxTailroom)
	udpLen := func(udp bool) int {
		if udp {
			return UDPHeaderLen
		}
		return 0
	}
	for _, name := range []string{"aes128gcm16", "aes256-sha256", "3des-sha1"} {
		c := testCipher(t, name, false)
		// boundary returns the largest n with f(n) <= limit.
		boundary := func(f func(n int) int) int {
			n := limit + 40
			for f(n) > limit {
				n--
			}
			return n
		}
		check := func(what string, n int, fits bool, err error) {
			t.Helper()
			if fits && err != nil {
				t.Errorf("%s %s n=%d: %v, want success", name, what, n, err)
			}
			if !fits && !errors.Is(err, ErrTooBig) {
				t.Errorf("%s %s n=%d: %v, want ErrTooBig", name, what, n, err)
			}
		}
		espLen := func(n int) int { return n + c.Overhead(n) }
		last := boundary(espLen)
		for n := last - 2; n <= last+2; n++ {
			pkt, err := c.Seal(s, buf, MaxHeadroom, n, 1, 1, 4)
			check("Seal", n, espLen(n) <= limit, err)
			if err == nil && len(pkt) > limit {
				t.Errorf("%s Seal n=%d: %d-byte ESP packet", name, n, len(pkt))
			}
		}
		for _, v6 := range []bool{false, true} {
			for _, udp := range []bool{false, true} {
				// Beyond the ESP packet, IPv4's total length counts the
				// 20-byte header; IPv6's payload length does not count its
				// 40 bytes.
				extra := 0
				if !v6 {
					extra = 20
				}
				if udp {
					extra += UDPHeaderLen
				}
				o := &Outer{Src: utV4A, Dst: utV4B, UDP: udp}
				if v6 {
					o.Src, o.Dst = utV6A, utV6B
				}
				last := boundary(func(n int) int { return extra + espLen(n) })
				for _, n := range []int{last, last + 1} {
					buf[MaxHeadroom] = 0x45
					pkt, err := c.EncapTunnel(s, buf[:MaxHeadroom+n], MaxHeadroom, n, 1, 1, o)
					check(fmt.Sprintf("EncapTunnel v6=%v udp=%v", v6, udp), n, n == last, err)
					if err == nil {
						var p Parsed
						if err := ParseOuter(pkt, 0, &p); err != nil || p.Len != len(pkt) {
							t.Errorf("%s: largest tunnel packet does not parse: %v", name, err)
						}
					}
				}
				// Transport: an original packet of n bytes (n <= 65535 for
				// IPv4, payload <= 65535 for IPv6).
				ipLen := 20
				if v6 {
					ipLen = 40
				}
				hidden := 0 // IPv6's fixed header is not in its payload length
				if v6 {
					hidden = 40
				}
				lastT := limit + hidden // the largest valid original packet
				for ipLen+udpLen(udp)+espLen(lastT-ipLen)-hidden > limit {
					lastT--
				}
				for _, n := range []int{lastT, lastT + 1} {
					orig := utRawIP(v6, n)
					copy(buf[MaxHeadroom:], orig)
					_, err := c.EncapTransport(s, buf[:MaxHeadroom+n], MaxHeadroom, n, 1, 1, o)
					check(fmt.Sprintf("EncapTransport v6=%v udp=%v", v6, udp), n, n == lastT, err)
				}
			}
		}
	}
}

// utSealRaw builds an ESP packet around body, the plaintext of the
// encrypted part exactly as given (payload, padding, Pad Length and Next
// Header, however wrong), and lets c encrypt it and compute a valid ICV.
func utSealRaw(c *Cipher, s *Scratch, spi uint32, seq uint64, body []byte) []byte {
	hl, icv := c.HeaderLen(), c.t.icv
	pkt := make([]byte, hl+len(body)+icv, hl+len(body)+icv+16) // GCM-8 writes its full tag past the end
	binary.BigEndian.PutUint32(pkt[0:], spi)
	binary.BigEndian.PutUint32(pkt[4:], uint32(seq))
	copy(pkt[hl:], body)
	c.seal(s, pkt, seq)
	return pkt
}

// utBody returns payload ‖ padding ‖ Pad Length ‖ Next Header with the
// given padding bytes and Pad Length byte.
func utBody(payload, padding []byte, padLen, nh byte) []byte {
	b := append(append([]byte(nil), payload...), padding...)
	return append(b, padLen, nh)
}

// utMonotonic is the RFC 4303 §2.4 default padding 1, 2, ..., n.
func utMonotonic(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i + 1)
	}
	return p
}

func TestOpenTruncated(t *testing.T) {
	s := NewScratch()
	for _, name := range TransformNames() {
		t.Run(name, func(t *testing.T) {
			defer utRecover(t)
			c := testCipher(t, name, false)
			tr := c.Transform()
			buf := make([]byte, MaxHeadroom+40, MaxHeadroom+40+MaxTailroom)
			pkt, err := c.Seal(s, buf, MaxHeadroom, 40, 3, 3, 6)
			if err != nil {
				t.Fatal(err)
			}
			wire := append([]byte(nil), pkt...)
			// RFC 4303 §2: SPI, sequence number, IV, at least Pad Length
			// and Next Header (one whole block for a block cipher), ICV.
			minLen := HeaderLen + tr.IVLen() + max(tr.BlockSize(), 2) + tr.ICVLen()
			for l := 0; l < len(wire); l++ {
				trunc := append([]byte(nil), wire[:l]...)
				payload, _, err := c.Open(s, trunc, 3)
				switch {
				case l < minLen && !errors.Is(err, ErrTruncated):
					t.Errorf("length %d < minimum %d: %v, want ErrTruncated", l, minLen, err)
				case l >= minLen && (l-HeaderLen-tr.IVLen()-tr.ICVLen())%tr.BlockSize() != 0 && !errors.Is(err, ErrMalformed):
					t.Errorf("length %d, ciphertext not a multiple of %d: %v, want ErrMalformed", l, tr.BlockSize(), err)
				case l >= minLen && !errors.Is(err, ErrAuth) && !errors.Is(err, ErrMalformed):
					t.Errorf("length %d of %d: %v, want ErrAuth or ErrMalformed", l, len(wire), err)
				}
				if payload != nil {
					t.Errorf("length %d: payload returned with error %v", l, err)
				}
			}
		})
	}
}

func TestOpenNotBlockMultiple(t *testing.T) {
	s := NewScratch()
	for _, name := range TransformNames() {
		c := testCipher(t, name, false)
		tr := c.Transform()
		if tr.BlockSize() == 1 {
			continue
		}
		for _, extra := range []int{1, tr.BlockSize() - 1, tr.BlockSize() + 3} {
			pkt := make([]byte, HeaderLen+tr.IVLen()+2*tr.BlockSize()+extra+tr.ICVLen())
			for i := range pkt {
				pkt[i] = byte(i*13 + 1)
			}
			if _, _, err := c.Open(s, pkt, 1); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: ciphertext of 2 blocks + %d bytes: %v, want ErrMalformed", name, extra, err)
			}
		}
	}
}

func TestOpenPadding(t *testing.T) {
	s := NewScratch()
	payload8 := []byte("payload!")
	// Bodies of 32 bytes: a multiple of every block size and of 4.
	for _, name := range TransformNames() {
		t.Run(name, func(t *testing.T) {
			defer utRecover(t)
			c := testCipher(t, name, true)
			badByte := utMonotonic(22)
			badByte[5] = 0
			badLast := utMonotonic(22)
			badLast[21] = 21
			fromZero := utMonotonic(22)
			for i := range fromZero {
				fromZero[i]--
			}
			for _, tc := range []struct {
				what string
				body []byte
				want error
				n    int // payload length when valid
			}{
				{"22 bytes of padding (more than needed)", utBody(payload8, utMonotonic(22), 22, 17), nil, 8},
				{"no padding", utBody(bytes.Repeat([]byte{7}, 30), nil, 0, 17), nil, 30},
				{"all padding, empty payload", utBody(nil, utMonotonic(30), 30, 17), nil, 0},
				{"255 bytes of padding", utBody(bytes.Repeat([]byte{9}, 15), utMonotonic(255), 255, 17), nil, 15},
				{"Pad Length one past the payload", utBody(nil, utMonotonic(30), 31, 17), ErrPadding, 0},
				{"Pad Length 255 in 32 bytes", utBody(payload8, utMonotonic(22), 255, 17), ErrPadding, 0},
				{"padding byte 6 is 0", utBody(payload8, badByte, 22, 17), ErrPadding, 0},
				{"last padding byte wrong", utBody(payload8, badLast, 22, 17), ErrPadding, 0},
				{"padding 0, 1, ..., 21", utBody(payload8, fromZero, 22, 17), ErrPadding, 0},
			} {
				seq := uint64(2<<32 | 40)
				pkt := utSealRaw(c, s, 0x99, seq, tc.body)
				payload, nh, err := c.Open(s, pkt, seq)
				if !errors.Is(err, tc.want) {
					t.Errorf("%s: %v, want %v", tc.what, err, tc.want)
					continue
				}
				if tc.want != nil {
					if payload != nil {
						t.Errorf("%s: payload returned with %v", tc.what, err)
					}
					continue
				}
				if nh != 17 || len(payload) != tc.n || !bytes.Equal(payload, tc.body[:tc.n]) {
					t.Errorf("%s: nh %d payload %x", tc.what, nh, payload)
				}
			}
		})
	}
}

// TestOpenPaddingNull crafts bad padding the direct way: Seal with NULL
// encryption, edit the trailer in the clear, recompute the HMAC.
func TestOpenPaddingNull(t *testing.T) {
	s := NewScratch()
	c := testCipher(t, "null-sha256", false)
	payload := []byte("abcd") // 4 + 2 -> 2 bytes of padding to reach 4-byte alignment
	seal := func() []byte {
		buf := make([]byte, MaxHeadroom+len(payload), MaxHeadroom+len(payload)+MaxTailroom)
		copy(buf[MaxHeadroom:], payload)
		pkt, err := c.Seal(s, buf, MaxHeadroom, len(payload), 1, 1, 41)
		if err != nil {
			t.Fatal(err)
		}
		return pkt
	}
	pkt := seal()
	trailer := pkt[len(pkt)-16-4 : len(pkt)-16] // padding 1 2, Pad Length 2, Next Header 41
	if !bytes.Equal(trailer, []byte{1, 2, 2, 41}) {
		t.Fatalf("trailer %x, want 01020229", trailer)
	}
	for _, tc := range []struct {
		what string
		edit func(tr []byte)
		want error
	}{
		{"unchanged", func([]byte) {}, nil},
		{"first padding byte 0", func(tr []byte) { tr[0] = 0 }, ErrPadding},
		{"second padding byte 0xff", func(tr []byte) { tr[1] = 0xff }, ErrPadding},
		{"Pad Length 7 > 4-byte payload + 2 padding", func(tr []byte) { tr[2] = 7 }, ErrPadding},
		{"Pad Length 0 (payload ends with 01 02)", func(tr []byte) { tr[2] = 0 }, nil},
	} {
		pkt := seal()
		tc.edit(pkt[len(pkt)-16-4 : len(pkt)-16])
		c.putMAC(s, pkt, 1)
		_, _, err := c.Open(s, pkt, 1)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.what, err, tc.want)
		}
		// Without the recomputed ICV the same edit is an authentication failure.
		if tc.want != nil {
			pkt := seal()
			tc.edit(pkt[len(pkt)-16-4 : len(pkt)-16])
			if _, _, err := c.Open(s, pkt, 1); !errors.Is(err, ErrAuth) {
				t.Errorf("%s without new ICV: %v, want ErrAuth", tc.what, err)
			}
		}
	}
}

// TestEncapTransportRoutingHeader: in IPv6 transport mode the routing
// header (and any destination options for the intermediate destinations
// in front of it) must stay in front of ESP (RFC 4303 §3.1.1, figure
// "AFTER APPLYING ESP": hop-by-hop, dest*, routing, fragment, ESP).
func TestEncapTransportRoutingHeader(t *testing.T) {
	defer utRecover(t)
	s := NewScratch()
	c := testCipher(t, "aes128gcm16", false)
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: 60, SrcIP: net.IP(utV6A.AsSlice()), DstIP: net.IP(utV6B.AsSlice())}
	destOpts := gopacket.Payload{43, 0, 1, 4, 0, 0, 0, 0}                                    // PadN
	routing := gopacket.Payload(append([]byte{17, 2, 2, 0, 0, 0, 0, 0}, utV6A.AsSlice()...)) // type 2, segments left 0
	udp := &layers.UDP{SrcPort: 1000, DstPort: 2000}
	_ = udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, destOpts, routing, udp, gopacket.Payload("data")); err != nil {
		t.Fatal(err)
	}
	orig := append([]byte(nil), buf.Bytes()...)
	b, off := utPlace(orig, MaxTailroom)
	pkt, err := c.EncapTransport(s, b, off, len(orig), 1, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	const hl = 40 + 8 + 24
	if pkt[6] != 60 || pkt[40] != 43 || pkt[48] != ProtocolESP {
		t.Errorf("ESP not after the routing header: next headers %d, %d, %d; want 60, 43, 50", pkt[6], pkt[40], pkt[48])
	}
	var p Parsed
	if err := ParseOuter(pkt, 0, &p); err != nil {
		t.Fatal(err)
	}
	if p.HeaderLen != hl {
		t.Errorf("ParseOuter HeaderLen %d, want %d", p.HeaderLen, hl)
	}
	payload, nh, err := c.Open(s, pkt[p.ESPOffset:p.Len], 1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecapTransport(pkt, &p, payload, nh)
	if err != nil || !bytes.Equal(got, orig) {
		t.Errorf("round trip: %v\n got %x\nwant %x", err, got, orig)
	}
}

// TestTFCTransportRefused: transport mode cannot carry TFC padding (the
// receiver has no length to strip it by: a 50-byte TCP segment came out
// of decryption 170 bytes longer), so EncapTransport refuses instead of
// corrupting the packet, and leaves the caller's packet as it was.
func TestTFCTransportRefused(t *testing.T) {
	tr := MustParseTransform("aes128gcm16")
	key := make([]byte, tr.KeyLen())
	c, err := New(Config{Transform: tr, Key: key, TFCPadTo: 220})
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, MaxHeadroom+100, MaxHeadroom+100+MaxTailroom+256)
	pkt := b[MaxHeadroom:]
	pkt[0], pkt[3], pkt[8], pkt[9] = 0x45, 50, 64, 6 // IPv4, 50 bytes, TCP
	before := append([]byte(nil), b...)
	_, err = c.EncapTransport(NewScratch(), b, MaxHeadroom, 50, 0x1000, 1, &Outer{})
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("EncapTransport with TFC padding: %v, want ErrUnsupported", err)
	}
	if !bytes.Equal(b, before) {
		t.Fatal("refused EncapTransport changed the packet")
	}
}

// TestTFCLimit: SetTFCLimit caps the padding (the sa package sets the
// plaintext MTU there), and 0 lifts the cap again.
func TestTFCLimit(t *testing.T) {
	tr := MustParseTransform("aes128gcm16")
	c, err := New(Config{Transform: tr, Key: make([]byte, tr.KeyLen()), TFCPadTo: 1400})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ limit, want int }{{0, 1400}, {1000, 1000}, {2000, 1400}, {0, 1400}} {
		c.SetTFCLimit(tc.limit)
		b := make([]byte, 64, 64+2048)
		out, err := c.Seal(NewScratch(), b, 32, 32, 0x1000, 1, 4)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(out), c.HeaderLen()+tc.want+c.padLen(tc.want)+2+tr.ICVLen(); got != want || c.Overhead(32) != want-32 {
			t.Errorf("limit %d: sealed %d bytes (Overhead %d), want %d", tc.limit, got, c.Overhead(32), want)
		}
	}
}
