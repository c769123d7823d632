package vnet

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Test helpers: packets are built with gopacket (lengths and checksums
// computed by gopacket, independently of this package), and checked
// with refSum, a plain 16-bit RFC 1071 loop.

// refSum is the folded ones' complement sum of b (RFC 1071, 16-bit
// words, an odd byte padded with zero), initial s.
func refSum(b []byte, s uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
		s = s>>16 + s&0xffff
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return s
}

// refPseudo is the pseudo-header sum of IP packet p for proto and L4
// length n.
func refPseudo(p []byte, proto uint8, n int) uint32 {
	var s uint32
	if p[0]>>4 == 6 {
		s = refSum(p[8:40], 0)
	} else {
		s = refSum(p[12:20], 0)
	}
	return refSum([]byte{0, proto, byte(n >> 8), byte(n)}, s)
}

// refL4 returns the IP header length, protocol and whether the packet's
// IP header (IPv4: checksum) and L4 checksum verify; the IPv6 header
// length includes hop-by-hop, routing and destination options headers.
// ok is false if p is not a plain IPv4/IPv6 packet.
func refL4(p []byte) (ipLen int, proto uint8, valid, ok bool) {
	if len(p) < 20 {
		return 0, 0, false, false
	}
	switch p[0] >> 4 {
	case 4:
		ipLen = int(p[0]&0xf) * 4
		proto = p[9]
		if ipLen < 20 || ipLen > len(p) || int(binary.BigEndian.Uint16(p[2:])) != len(p) {
			return 0, 0, false, false
		}
		if refSum(p[:ipLen], 0) != 0xffff {
			return ipLen, proto, false, true
		}
	case 6:
		if len(p) < 40 || int(binary.BigEndian.Uint16(p[4:]))+40 != len(p) {
			return 0, 0, false, false
		}
		ipLen, proto = 40, p[6]
		// Hop-by-hop, routing and destination options headers, as
		// RFC 8200 chains them (written independently of walkExt6).
		for proto == 0 || proto == 43 || proto == 60 {
			if ipLen+8 > len(p) {
				return 0, 0, false, false
			}
			proto = p[ipLen]
			ipLen += 8 * (1 + int(p[ipLen+1]))
			if ipLen > len(p) {
				return 0, 0, false, false
			}
		}
	default:
		return 0, 0, false, false
	}
	l4 := p[ipLen:]
	return ipLen, proto, refSum(l4, refPseudo(p, proto, len(l4))) == 0xffff, true
}

var (
	src4 = net.IP{10, 1, 0, 1}
	dst4 = net.IP{10, 2, 0, 2}
	src6 = net.ParseIP("fd00::1")
	dst6 = net.ParseIP("fd00:1::2")
)

// pkt is the description of one TCP or UDP test packet.
type pkt struct {
	v6        bool
	udp       bool
	src, dst  net.IP // nil: src4/dst4 or src6/dst6
	sport     uint16
	dport     uint16
	id        uint16
	tos, ttl  uint8
	noDF      bool
	flow      uint32
	seq, ack  uint32
	flags     uint8
	win       uint16
	opts      bool // TCP: NOP, NOP, timestamps
	tsval     uint32
	payload   []byte
	badL4Csum bool // corrupt the L4 checksum after serializing
}

// build serializes p with gopacket (FixLengths, ComputeChecksums).
func build(t testing.TB, p pkt) []byte {
	t.Helper()
	ttl := p.ttl
	if ttl == 0 {
		ttl = 64
	}
	var ip gopacket.NetworkLayer
	var ipl gopacket.SerializableLayer
	proto := layers.IPProtocolTCP
	if p.udp {
		proto = layers.IPProtocolUDP
	}
	if p.v6 {
		s, d := p.src, p.dst
		if s == nil {
			s, d = src6, dst6
		}
		l := &layers.IPv6{Version: 6, TrafficClass: p.tos, FlowLabel: p.flow, NextHeader: proto, HopLimit: ttl, SrcIP: s, DstIP: d}
		ip, ipl = l, l
	} else {
		s, d := p.src, p.dst
		if s == nil {
			s, d = src4, dst4
		}
		l := &layers.IPv4{Version: 4, IHL: 5, TOS: p.tos, Id: p.id, TTL: ttl, Protocol: proto, SrcIP: s, DstIP: d}
		if !p.noDF {
			l.Flags = layers.IPv4DontFragment
		}
		ip, ipl = l, l
	}
	var l4 gopacket.SerializableLayer
	if p.udp {
		u := &layers.UDP{SrcPort: layers.UDPPort(p.sport), DstPort: layers.UDPPort(p.dport)}
		if err := u.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		l4 = u
	} else {
		f := p.flags
		tc := &layers.TCP{
			SrcPort: layers.TCPPort(p.sport), DstPort: layers.TCPPort(p.dport),
			Seq: p.seq, Ack: p.ack, Window: p.win,
			FIN: f&tcpFIN != 0, SYN: f&tcpSYN != 0, RST: f&tcpRST != 0, PSH: f&tcpPSH != 0,
			ACK: f&tcpACK != 0, URG: f&tcpURG != 0, ECE: f&tcpECE != 0, CWR: f&tcpCWR != 0,
		}
		if p.opts {
			ts := make([]byte, 8)
			binary.BigEndian.PutUint32(ts, p.tsval)
			binary.BigEndian.PutUint32(ts[4:], 0x01020304)
			tc.Options = []layers.TCPOption{
				{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
				{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
				{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: ts},
			}
		}
		if err := tc.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		l4 = tc
	}
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		ipl, l4, gopacket.Payload(p.payload))
	if err != nil {
		t.Fatal(err)
	}
	b := append([]byte(nil), buf.Bytes()...)
	if p.badL4Csum {
		ipLen := 20
		if p.v6 {
			ipLen = 40
		}
		off := ipLen + 16
		if p.udp {
			off = ipLen + 6
		}
		b[off] ^= 0x5a
	}
	return b
}

// payloadOf returns n bytes of a recognizable pattern from offset o.
func payloadOf(n, o int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((o+i)*7 + (o+i)>>8)
	}
	return b
}

// setPartial replaces the L4 checksum of p (IP header length ipLen,
// checksum at ipLen+off) by the folded pseudo-header sum, as a kernel
// with CHECKSUM_PARTIAL leaves it.
func setPartial(p []byte, ipLen, off int, proto uint8) {
	binary.BigEndian.PutUint16(p[ipLen+off:], uint16(refPseudo(p, proto, len(p)-ipLen)))
}
