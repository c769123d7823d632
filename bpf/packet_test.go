package bpf

import (
	"encoding/binary"
	"net/netip"
)

// A hand-rolled packet builder: gopacket cannot serialise IPv6 fragment
// headers, and the tests need byte-exact control over lengths and
// truncation. TestBuilderAgreesWithGopacket decodes its output with
// gopacket to keep it honest.

var (
	macDst = []byte{0x02, 0, 0, 0, 0, 0x01}
	macSrc = []byte{0x02, 0, 0, 0, 0, 0x02}

	src4   = netip.MustParseAddr("192.0.2.2")
	local4 = netip.MustParseAddr("192.0.2.1")
	other4 = netip.MustParseAddr("192.0.2.99")
	src6   = netip.MustParseAddr("2001:db8::2")
	local6 = netip.MustParseAddr("2001:db8::1")
	other6 = netip.MustParseAddr("2001:db8::99")

	// Protected prefixes of the plaintext-mode tests and addresses in
	// and outside them.
	prot4      = netip.MustParsePrefix("198.51.100.0/24")
	prot6      = netip.MustParsePrefix("2001:db8:100::/48")
	protHost4  = netip.MustParseAddr("198.51.100.7")
	protHost6  = netip.MustParseAddr("2001:db8:100::7")
	unprotIn4  = netip.MustParseAddr("198.51.101.7")
	unprotIn6  = netip.MustParseAddr("2001:db8:101::7")
	protExact4 = netip.MustParseAddr("203.0.113.5") // protected as a /32
)

const (
	tpid8021Q  = 0x8100
	tpid8021AD = 0x88A8
	etherIPv4  = 0x0800
	etherIPv6  = 0x86DD
	etherARP   = 0x0806

	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoESP    = 50
	protoICMPv6 = 58

	ext6HopByHop = 0
	ext6Routing  = 43
	ext6Fragment = 44
	ext6DestOpts = 60
)

// ext6 is an IPv6 extension header.
type ext6 struct {
	typ  uint8
	size int // bytes, multiple of 8; fragment headers are always 8

	fragOffset uint16 // fragment header: offset in 8-byte units
	more       bool   // fragment header: M flag
}

// pkt describes a frame.
type pkt struct {
	tpids []uint16 // VLAN TPIDs, outermost first
	etype uint16   // EtherType after the tags; 0: from the IP version

	v6    bool
	src   netip.Addr // 0: src4/src6
	dst   netip.Addr // 0: local4/local6
	proto uint8
	ihl   int    // IPv4 header length in words; 0: 5
	frag4 uint16 // IPv4 flags+fragment offset field (host order)
	ext   []ext6 // IPv6 extension headers, in order

	l4  []byte // everything after the IP headers
	pad int    // Ethernet padding after the IP packet (not in IP length)
}

func (p pkt) bytes() []byte {
	b := append([]byte{}, macDst...)
	b = append(b, macSrc...)
	etype := p.etype
	if etype == 0 {
		etype = etherIPv4
		if p.v6 {
			etype = etherIPv6
		}
	}
	types := append(append([]uint16{}, p.tpids...), etype)
	b = binary.BigEndian.AppendUint16(b, types[0])
	for i := range p.tpids {
		b = binary.BigEndian.AppendUint16(b, uint16(100+i)) // TCI: VLAN 100, 101
		b = binary.BigEndian.AppendUint16(b, types[i+1])
	}
	if etype == etherIPv4 && !p.v6 {
		b = append(b, p.ipv4()...)
	} else if etype == etherIPv6 || p.v6 {
		b = append(b, p.ipv6()...)
	} else {
		b = append(b, p.l4...)
	}
	return append(b, make([]byte, p.pad)...)
}

func (p pkt) ipv4() []byte {
	ihl := p.ihl
	if ihl == 0 {
		ihl = 5
	}
	dst := p.dst
	if !dst.IsValid() {
		dst = local4
	}
	hlen := ihl * 4
	if hlen < 20 {
		hlen = 20 // the IHL field lies, the header is still 20 bytes
	}
	h := make([]byte, hlen)
	h[0] = 0x40 | byte(ihl&0xf)
	binary.BigEndian.PutUint16(h[2:], uint16(hlen+len(p.l4)))
	binary.BigEndian.PutUint16(h[4:], 0x1234)
	binary.BigEndian.PutUint16(h[6:], p.frag4)
	h[8] = 64
	h[9] = p.proto
	src := p.src
	if !src.IsValid() {
		src = src4
	}
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	for i := 20; i < hlen; i++ {
		h[i] = 1 // NOP options
	}
	binary.BigEndian.PutUint16(h[10:], ipChecksum(h))
	return append(h, p.l4...)
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func (p pkt) ipv6() []byte {
	dst := p.dst
	if !dst.IsValid() {
		dst = local6
	}
	var exts []byte
	for i, e := range p.ext {
		next := p.proto
		if i+1 < len(p.ext) {
			next = p.ext[i+1].typ
		}
		if e.typ == ext6Fragment {
			f := make([]byte, 8)
			f[0] = next
			fo := e.fragOffset << 3
			if e.more {
				fo |= 1
			}
			binary.BigEndian.PutUint16(f[2:], fo)
			binary.BigEndian.PutUint32(f[4:], 0xabcdef)
			exts = append(exts, f...)
			continue
		}
		size := e.size
		if size == 0 {
			size = 8
		}
		x := make([]byte, size)
		x[0] = next
		x[1] = byte(size/8 - 1)
		x[2] = 1 // PadN option covering the rest
		x[3] = byte(size - 4)
		if e.typ == ext6Routing {
			x[2], x[3] = 0, 0 // routing type 0, segments left 0
		}
		exts = append(exts, x...)
	}
	first := p.proto
	if len(p.ext) > 0 {
		first = p.ext[0].typ
	}
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(exts)+len(p.l4)))
	h[6] = first
	h[7] = 64
	src := p.src
	if !src.IsValid() {
		src = src6
	}
	s, d := src.As16(), dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return append(append(h, exts...), p.l4...)
}

// udp returns a UDP header (checksum 0) followed by payload.
func udp(dport uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], 4500)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	return append(b, payload...)
}

// esp returns an ESP header (SPI, sequence number 1) and n bytes of
// "ciphertext".
func esp(spi uint32, n int) []byte {
	b := binary.BigEndian.AppendUint32(nil, spi)
	b = binary.BigEndian.AppendUint32(b, 1)
	for i := range n {
		b = append(b, byte(i))
	}
	return b
}

// ikeMarker returns a NAT-T non-ESP marker (four zero bytes) and an IKE
// header-sized body.
func ikeMarker() []byte {
	return append(make([]byte, 4), make([]byte, 28)...)
}

// Frame layout of a packet built by pkt.bytes, for truncation tests.
type layout struct {
	ipOff int // offset of the IP header
	l4Off int // offset of the upper-layer header
}

func (p pkt) layout() layout {
	ipOff := 14 + 4*len(p.tpids)
	if !p.v6 {
		ihl := p.ihl
		if ihl == 0 {
			ihl = 5
		}
		return layout{ipOff, ipOff + ihl*4}
	}
	l4 := ipOff + 40
	for _, e := range p.ext {
		if e.typ == ext6Fragment || e.size == 0 {
			l4 += 8
		} else {
			l4 += e.size
		}
	}
	return layout{ipOff, l4}
}

// truncateFixed cuts frame b to n bytes and, if the IP header survives,
// rewrites the IP (and UDP) length fields to match, so that parsing
// fails at the first incomplete header and not already at a length
// check.
func (p pkt) truncateFixed(b []byte, n int) []byte {
	b = append([]byte{}, b[:n]...)
	lay := p.layout()
	if p.v6 {
		if n >= lay.ipOff+40 {
			binary.BigEndian.PutUint16(b[lay.ipOff+4:], uint16(n-lay.ipOff-40))
		}
	} else if n >= lay.ipOff+20 {
		binary.BigEndian.PutUint16(b[lay.ipOff+2:], uint16(n-lay.ipOff))
	}
	if p.proto == protoUDP && n >= lay.l4Off+8 {
		binary.BigEndian.PutUint16(b[lay.l4Off+4:], uint16(n-lay.l4Off))
	}
	return b
}
