package inet

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// The tests build their packets with gopacket and check the results with
// gopacket's decoders and with checksums recomputed from scratch by the
// independent code below (not the package's Sum).

// onesSum is a byte-by-byte ones' complement sum.
func onesSum(parts ...[]byte) uint16 {
	var s uint64
	for _, b := range parts {
		for i := 0; i < len(b); i++ {
			if i%2 == 0 {
				s += uint64(b[i]) << 8
			} else {
				s += uint64(b[i])
			}
		}
		if len(b)%2 == 1 {
			panic("onesSum: odd part")
		}
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// evenPad returns b, or b and a zero byte when b has odd length.
func evenPad(b []byte) []byte {
	if len(b)%2 == 1 {
		return append(append([]byte(nil), b...), 0)
	}
	return b
}

// ipv4HeaderOK verifies the IPv4 header checksum from scratch.
func ipv4HeaderOK(pkt []byte) bool {
	ihl := int(pkt[0]&0x0f) * 4
	return onesSum(pkt[:ihl]) == 0xffff
}

// l4ChecksumOK verifies the checksum of the upper-layer message at
// pkt[l4:n] with the pseudo-header of the packet's addresses.
func l4ChecksumOK(pkt []byte, l4, n int, proto byte) bool {
	var ph []byte
	ln := n - l4
	if pkt[0]>>4 == 4 {
		ph = append(ph, pkt[12:20]...)
		ph = append(ph, 0, proto, byte(ln>>8), byte(ln))
		if proto == 1 { // ICMPv4 has no pseudo-header
			ph = nil
		}
	} else {
		ph = append(ph, pkt[8:40]...)
		ph = append(ph, byte(ln>>24), byte(ln>>16), byte(ln>>8), byte(ln), 0, 0, 0, proto)
	}
	return onesSum(ph, evenPad(pkt[l4:n])) == 0xffff
}

var (
	src4 = netip.MustParseAddr("10.1.0.2")
	dst4 = netip.MustParseAddr("10.9.0.5")
	rtr4 = netip.MustParseAddr("10.1.0.1")
	src6 = netip.MustParseAddr("2001:db8:1::2")
	dst6 = netip.MustParseAddr("2001:db8:9::5")
	rtr6 = netip.MustParseAddr("2001:db8:1::1")
)

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	b := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(b, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), b.Bytes()...)
}

func ip4(src, dst netip.Addr, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, Flags: layers.IPv4DontFragment,
		SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
}

func ip6(src, dst netip.Addr, nh layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: nh, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
}

func mssOpt(mss uint16) layers.TCPOption {
	return layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionLength: 4,
		OptionData: binary.BigEndian.AppendUint16(nil, mss)}
}

var (
	nop    = layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1}
	sackOK = layers.TCPOption{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2}
	wscale = layers.TCPOption{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}}
)

func tcpSeg(syn, ack bool, opts ...layers.TCPOption) *layers.TCP {
	return &layers.TCP{SrcPort: 40000, DstPort: 5201, Seq: 1000, SYN: syn, ACK: ack, Window: 64240, Options: opts}
}

// tcp4 is an IPv4 TCP segment with the given options and payload.
func tcp4(t testing.TB, syn, ack bool, payload []byte, opts ...layers.TCPOption) []byte {
	t.Helper()
	ip := ip4(src4, dst4, layers.IPProtocolTCP)
	tcp := tcpSeg(syn, ack, opts...)
	tcp.SetNetworkLayerForChecksum(ip)
	return serialize(t, ip, tcp, gopacket.Payload(payload))
}

// tcp6 is an IPv6 TCP segment behind the given raw extension headers
// (each starting with its next-header byte, which is filled in).
func tcp6(t testing.TB, ext [][]byte, opts ...layers.TCPOption) []byte {
	t.Helper()
	ip := ip6(src6, dst6, layers.IPProtocolTCP)
	tcp := tcpSeg(true, false, opts...)
	tcp.SetNetworkLayerForChecksum(ip)
	seg := serialize(t, tcp)
	return withExt(t, ip, ext, 6, seg)
}

// withExt assembles an IPv6 header, extension headers ext (types from
// their first byte's position: types[i]) and an upper-layer message.
func withExt(t testing.TB, ip *layers.IPv6, ext [][]byte, proto byte, l4 []byte) []byte {
	t.Helper()
	hdr := serialize(t, ip, gopacket.Payload(l4))[:40]
	first := proto
	if len(ext) > 0 {
		first = ext[0][0]
		// Chain: each header's first byte names the next one.
		ext = append([][]byte(nil), ext...)
		for i := range ext {
			h := append([]byte(nil), ext[i]...)
			if i+1 < len(ext) {
				h[0] = ext[i+1][0]
			} else {
				h[0] = proto
			}
			ext[i] = h
		}
	}
	// ext[i][0] is the type of header i on input (rewritten above to the
	// next header's type); the first type goes into the IPv6 header.
	hdr[6] = first
	out := append([]byte(nil), hdr...)
	for _, h := range ext {
		out = append(out, h...)
	}
	out = append(out, l4...)
	binary.BigEndian.PutUint16(out[4:], uint16(len(out)-40))
	return out
}

// extHdr is an 8-byte extension header of type typ (hop-by-hop,
// destination options: PadN; routing: type 0 segments left 0; fragment:
// offset and M flag).
func extHdr(typ byte) []byte {
	if typ == protoRouting {
		return []byte{typ, 0, 0, 0, 0, 0, 0, 0}
	}
	return []byte{typ, 0, 1, 4, 0, 0, 0, 0}
}

func fragHdr(offset int, more bool) []byte {
	v := uint16(offset) << 3
	if more {
		v |= 1
	}
	return []byte{protoFragment, 0, byte(v >> 8), byte(v), 0, 0, 0, 42}
}

func udp4(t testing.TB, n int, df bool) []byte {
	t.Helper()
	ip := ip4(src4, dst4, layers.IPProtocolUDP)
	if !df {
		ip.Flags = 0
	}
	u := &layers.UDP{SrcPort: 4000, DstPort: 9}
	u.SetNetworkLayerForChecksum(ip)
	pl := make([]byte, n-28)
	for i := range pl {
		pl[i] = byte(i * 7)
	}
	return serialize(t, ip, u, gopacket.Payload(pl))
}

func udp6(t testing.TB, n int) []byte {
	t.Helper()
	ip := ip6(src6, dst6, layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: 4000, DstPort: 9}
	u.SetNetworkLayerForChecksum(ip)
	pl := make([]byte, n-48)
	for i := range pl {
		pl[i] = byte(i * 5)
	}
	return serialize(t, ip, u, gopacket.Payload(pl))
}

// icmp4Msg is an IPv4 ICMP message of type typ.
func icmp4Msg(t testing.TB, typ uint8) []byte {
	t.Helper()
	ip := ip4(src4, dst4, layers.IPProtocolICMPv4)
	return serialize(t, ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: 1, Seq: 1},
		gopacket.Payload(make([]byte, 32)))
}

// icmp6Msg is an IPv6 ICMPv6 message of type typ behind ext.
func icmp6Msg(t testing.TB, typ uint8, ext ...[]byte) []byte {
	t.Helper()
	ip := ip6(src6, dst6, layers.IPProtocolICMPv6)
	m := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	m.SetNetworkLayerForChecksum(ip)
	return withExt(t, ip, ext, protoICMPv6, serialize(t, m, gopacket.Payload(make([]byte, 36))))
}

// inBuf places pkt after room bytes of headroom (and some tailroom).
func inBuf(pkt []byte, room int) (buf []byte, off int) {
	buf = make([]byte, room+len(pkt)+64)
	for i := range buf {
		buf[i] = 0xee
	}
	copy(buf[room:], pkt)
	return buf, room
}
