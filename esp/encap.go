package esp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Mode is the IPsec mode of an SA.
type Mode uint8

const (
	// Transport mode protects the payload of the packet and keeps its IP
	// header (RFC 4301 §4.1); used host to host and for GRE over IPsec.
	Transport Mode = iota + 1
	// Tunnel mode protects a whole inner IP packet inside a new outer IP
	// header; used between gateways and by route-based tunnels.
	Tunnel
)

func (m Mode) String() string {
	switch m {
	case Transport:
		return "transport"
	case Tunnel:
		return "tunnel"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// Outer describes the outer headers Encap writes for an SA.
type Outer struct {
	// Src and Dst are the tunnel endpoints (tunnel mode only; both of the
	// same family). Transport mode keeps the packet's own addresses.
	Src, Dst netip.Addr
	// UDP enables ESP-in-UDP encapsulation (RFC 3948) with these ports;
	// zero ports mean 4500.
	UDP              bool
	SrcPort, DstPort uint16
	// TTL is the outer TTL / hop limit in tunnel mode; 0 means 64.
	TTL uint8
	// DF sets Don't Fragment on an outer IPv4 header in tunnel mode.
	DF bool
}

func (o *Outer) ports() (uint16, uint16) {
	sp, dp := o.SrcPort, o.DstPort
	if sp == 0 {
		sp = NATTPort
	}
	if dp == 0 {
		dp = NATTPort
	}
	return sp, dp
}

func (o *Outer) udpLen() int {
	if o != nil && o.UDP {
		return UDPHeaderLen
	}
	return 0
}

// EncapTunnel encrypts the inner IP packet b[off:off+n] in tunnel mode and
// writes the outer IP header (and UDP header with NAT-T) in front of it,
// in place. It needs MaxHeadroom bytes of headroom and TrailerRoom(n) of
// tailroom. The outer DSCP and ECN bits are copied from the inner packet
// (RFC 4301 §5.1.2, RFC 6040 normal mode). The IPv4 Identification is the
// low 16 bits of the sequence number, unique within any reassembly window.
func (c *Cipher) EncapTunnel(s *Scratch, b []byte, off, n int, spi uint32, seq uint64, o *Outer) ([]byte, error) {
	if n < 1 || off+n > len(b) {
		return nil, ErrTruncated
	}
	var nh byte
	var tos uint8
	switch b[off] >> 4 {
	case 4:
		if n < 20 {
			return nil, ErrTruncated
		}
		nh, tos = NextHeaderIPv4, b[off+1]
	case 6:
		if n < 40 {
			return nil, ErrTruncated
		}
		nh, tos = NextHeaderIPv6, uint8(binary.BigEndian.Uint16(b[off:])>>4)
	default:
		return nil, errInnerNotIP
	}
	if o == nil || !o.Src.IsValid() || o.Src.Is4() != o.Dst.Is4() {
		return nil, errEndpoints
	}
	ipLen := 40
	if o.Src.Is4() {
		ipLen = 20
	}
	pre := ipLen + o.udpLen() + c.HeaderLen()
	if off < pre {
		return nil, ErrNoRoom
	}
	// Check the size first, so that the caller's packet is left intact.
	size := o.udpLen() + n + c.Overhead(n) // IPv6 payload length
	if ipLen == 20 {
		size += 20 // IPv4 total length
	}
	if size > 65535 {
		return nil, ErrTooBig
	}
	pkt, err := c.Seal(s, b, off, n, spi, seq, nh)
	if err != nil {
		return nil, err
	}
	start := off - pre
	out := b[start : start+pre-c.HeaderLen()+len(pkt)]
	ttl := o.TTL
	if ttl == 0 {
		ttl = 64
	}
	proto := byte(ProtocolESP)
	if o.UDP {
		proto = 17
	}
	if ipLen == 20 {
		if len(out) > 65535 {
			return nil, ErrTooBig
		}
		h := out[:20]
		h[0], h[1] = 0x45, tos
		binary.BigEndian.PutUint16(h[2:], uint16(len(out)))
		binary.BigEndian.PutUint16(h[4:], uint16(seq))
		h[6], h[7] = 0, 0
		if o.DF {
			h[6] = 0x40
		}
		h[8], h[9] = ttl, proto
		a, d := o.Src.As4(), o.Dst.As4()
		copy(h[12:16], a[:])
		copy(h[16:20], d[:])
		ipv4HeaderChecksum(h)
	} else {
		if len(out)-40 > 65535 {
			return nil, ErrTooBig
		}
		h := out[:40]
		binary.BigEndian.PutUint32(h[0:], 6<<28|uint32(tos)<<20)
		binary.BigEndian.PutUint16(h[4:], uint16(len(out)-40))
		h[6], h[7] = proto, ttl
		a, d := o.Src.As16(), o.Dst.As16()
		copy(h[8:24], a[:])
		copy(h[24:40], d[:])
	}
	if o.UDP {
		putUDP(out, ipLen, o)
	}
	return out, nil
}

// putUDP writes the NAT-T UDP header at out[ipLen:]. Over IPv4 its
// checksum is zero (RFC 3948 §2.1); over IPv6 it is computed, since a zero
// UDP checksum is not generally allowed there (RFC 8200 §8.1).
func putUDP(out []byte, ipLen int, o *Outer) {
	sp, dp := o.ports()
	u := out[ipLen:]
	binary.BigEndian.PutUint16(u[0:], sp)
	binary.BigEndian.PutUint16(u[2:], dp)
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	u[6], u[7] = 0, 0
	if out[0]>>4 == 6 {
		sum := csumFold(csumAdd(pseudoSum(out, 17, len(u)), u))
		if sum == 0 {
			sum = 0xffff
		}
		binary.BigEndian.PutUint16(u[6:], sum)
	}
}

// EncapTransport encrypts, in transport mode, the IP packet b[off:off+n]:
// its IP header (IPv4 with options, or IPv6 with the hop-by-hop, routing
// and fragment headers before the upper layer) moves forward into the
// headroom, ESP (and the UDP header with NAT-T) goes after it, and the
// protocol, length and checksum fields are fixed up. Only o.UDP and the
// ports of o are used; o may be nil.
func (c *Cipher) EncapTransport(s *Scratch, b []byte, off, n int, spi uint32, seq uint64, o *Outer) ([]byte, error) {
	if c.tfc > 0 {
		// The receiver could not strip the padding: a transport payload
		// (TCP, say) has no length of its own (RFC 4303 §2.4).
		return nil, errTFCTransport
	}
	if off+n > len(b) {
		return nil, ErrTruncated
	}
	ip := b[off : off+n]
	hl, nhOff, err := transportSplit(ip)
	if err != nil {
		return nil, err
	}
	nh := ip[nhOff]
	udp := o.udpLen()
	shift := udp + c.HeaderLen()
	if off < shift {
		return nil, ErrNoRoom
	}
	// Check the size first, so that the caller's packet is left intact.
	size := n + udp + c.Overhead(n-hl) // IPv4 total length
	if ip[0]>>4 == 6 {
		size -= 40 // IPv6 payload length
	}
	if size > 65535 {
		return nil, ErrTooBig
	}
	// Move the IP header forward, then seal the upper layer where it is.
	start := off - shift
	copy(b[start:start+hl], ip[:hl])
	pkt, err := c.Seal(s, b, off+hl, n-hl, spi, seq, nh)
	if err != nil {
		copy(b[off:off+hl], b[start:start+hl]) // put the header back
		return nil, err
	}
	out := b[start : start+hl+udp+len(pkt)]
	proto := byte(ProtocolESP)
	if udp > 0 {
		proto = 17
	}
	out[nhOff] = proto
	if out[0]>>4 == 4 {
		if len(out) > 65535 {
			return nil, ErrTooBig
		}
		binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
		ipv4HeaderChecksum(out[:hl])
	} else {
		if len(out)-40 > 65535 {
			return nil, ErrTooBig
		}
		binary.BigEndian.PutUint16(out[4:], uint16(len(out)-40))
	}
	if udp > 0 {
		putUDP(out, hl, o)
	}
	return out, nil
}

// transportSplit validates the IP packet ip and returns the length of the
// part that stays in front of ESP in transport mode and the offset of the
// protocol / next-header byte that must then say ESP.
func transportSplit(ip []byte) (hl, nhOff int, err error) {
	if len(ip) < 1 {
		return 0, 0, ErrTruncated
	}
	switch ip[0] >> 4 {
	case 4:
		if len(ip) < 20 {
			return 0, 0, ErrTruncated
		}
		hl = int(ip[0]&0x0f) * 4
		if hl < 20 || hl > len(ip) || int(binary.BigEndian.Uint16(ip[2:])) != len(ip) {
			return 0, 0, ErrMalformed
		}
		if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
			return 0, 0, ErrFragment
		}
		return hl, 9, nil
	case 6:
		if len(ip) < 40 {
			return 0, 0, ErrTruncated
		}
		if int(binary.BigEndian.Uint16(ip[4:]))+40 != len(ip) {
			return 0, 0, ErrMalformed
		}
		hl, nhOff = 40, 6
		for i := 0; i < 8; i++ {
			switch ip[nhOff] {
			case 0, 43, 60:
				// Hop-by-hop and routing headers stay in front of ESP
				// (RFC 4303 §3.1.1); so do destination options meant for
				// the hops of a routing header that follows them. Other
				// destination options belong to the final destination and
				// are protected with the payload.
				if hl+8 > len(ip) {
					return 0, 0, ErrTruncated
				}
				if ip[nhOff] == 60 && ip[hl] != 43 {
					return hl, nhOff, nil
				}
				n := 8 + int(ip[hl+1])*8
				if hl+n > len(ip) {
					return 0, 0, ErrTruncated
				}
				nhOff, hl = hl, hl+n
			case 44:
				return 0, 0, ErrFragment
			default:
				return hl, nhOff, nil
			}
		}
		return 0, 0, ErrMalformed
	}
	return 0, 0, errNotIP
}

// Parsed describes the outer headers of a received packet, as found by
// ParseOuter. It holds offsets into the packet, not copies.
type Parsed struct {
	// Len is the packet length according to its IP header; bytes past it
	// (Ethernet padding) are not part of the packet.
	Len int
	// ESPOffset is where the ESP header (the SPI) starts.
	ESPOffset int
	// HeaderLen is the length of the IP header, with IPv4 options or the
	// IPv6 extension headers in front of ESP.
	HeaderLen int
	// NHOffset is the offset of the protocol / next-header byte that
	// announced ESP (or UDP).
	NHOffset int
	// UDP is true for ESP-in-UDP (NAT-T); then SrcPort and DstPort are set.
	UDP              bool
	SrcPort, DstPort uint16
	// Src and Dst are the outer addresses.
	Src, Dst netip.Addr
}

// ParseOuter parses the outer IP header (and UDP header when the packet is
// UDP to nattPort; 0 means 4500) of pkt, which starts at the IP header.
// It reports ErrNotESP for IKE behind the non-ESP marker, ErrKeepalive for
// a NAT-keepalive, ErrFragment for fragments, ErrTruncated or ErrMalformed
// for broken headers and ErrUnsupported for other protocols. p is filled
// in place so that the call does not allocate.
func ParseOuter(pkt []byte, nattPort uint16, p *Parsed) error {
	*p = Parsed{}
	if nattPort == 0 {
		nattPort = NATTPort
	}
	if len(pkt) < 1 {
		return ErrTruncated
	}
	var proto byte
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return ErrTruncated
		}
		hl := int(pkt[0]&0x0f) * 4
		tl := int(binary.BigEndian.Uint16(pkt[2:]))
		if hl < 20 || tl < hl || tl > len(pkt) {
			return ErrMalformed
		}
		if binary.BigEndian.Uint16(pkt[6:])&0x3fff != 0 {
			return ErrFragment
		}
		p.Len, p.HeaderLen, p.NHOffset, proto = tl, hl, 9, pkt[9]
		p.Src = netip.AddrFrom4([4]byte(pkt[12:16]))
		p.Dst = netip.AddrFrom4([4]byte(pkt[16:20]))
	case 6:
		if len(pkt) < 40 {
			return ErrTruncated
		}
		tl := int(binary.BigEndian.Uint16(pkt[4:])) + 40
		if tl > len(pkt) {
			return ErrMalformed
		}
		p.Len, p.HeaderLen, p.NHOffset = tl, 40, 6
		p.Src = netip.AddrFrom16([16]byte(pkt[8:24]))
		p.Dst = netip.AddrFrom16([16]byte(pkt[24:40]))
	loop:
		for i := 0; ; i++ {
			proto = pkt[p.NHOffset]
			switch proto {
			case 0, 43, 60:
				if i == 8 {
					return ErrMalformed
				}
				if p.HeaderLen+8 > tl {
					return ErrTruncated
				}
				n := 8 + int(pkt[p.HeaderLen+1])*8
				if p.HeaderLen+n > tl {
					return ErrTruncated
				}
				p.NHOffset, p.HeaderLen = p.HeaderLen, p.HeaderLen+n
			case 44:
				return ErrFragment
			default:
				break loop
			}
		}
	default:
		return errNotIP
	}
	switch proto {
	case ProtocolESP:
		if p.Len-p.HeaderLen < HeaderLen {
			return ErrTruncated
		}
		p.ESPOffset = p.HeaderLen
	case 17:
		u := pkt[p.HeaderLen:p.Len]
		if len(u) < UDPHeaderLen {
			return ErrTruncated
		}
		if int(binary.BigEndian.Uint16(u[4:])) != len(u) {
			return ErrMalformed
		}
		p.UDP = true
		p.SrcPort = binary.BigEndian.Uint16(u[0:])
		p.DstPort = binary.BigEndian.Uint16(u[2:])
		if p.DstPort != nattPort {
			return errOtherPort
		}
		pl := u[UDPHeaderLen:]
		switch {
		case len(pl) == 1 && pl[0] == 0xff:
			return ErrKeepalive
		case len(pl) >= 4 && binary.BigEndian.Uint32(pl) == 0:
			return ErrNotESP
		case len(pl) < HeaderLen:
			return ErrTruncated
		}
		p.ESPOffset = p.HeaderLen + UDPHeaderLen
	default:
		return errOtherProto
	}
	return nil
}

// DecapTunnel checks that the decrypted tunnel-mode payload is an IP
// packet of the family nextHeader announces and returns it without any
// TFC padding (the inner header's length decides).
func DecapTunnel(payload []byte, nextHeader byte) ([]byte, error) {
	switch nextHeader {
	case NextHeaderIPv4:
		if len(payload) < 20 {
			return nil, ErrTruncated
		}
		tl := int(binary.BigEndian.Uint16(payload[2:]))
		if payload[0]>>4 != 4 || payload[0]&0x0f < 5 || tl < 20 || tl > len(payload) {
			return nil, ErrMalformed
		}
		return payload[:tl], nil
	case NextHeaderIPv6:
		if len(payload) < 40 {
			return nil, ErrTruncated
		}
		tl := int(binary.BigEndian.Uint16(payload[4:])) + 40
		if payload[0]>>4 != 6 || tl > len(payload) {
			return nil, ErrMalformed
		}
		return payload[:tl], nil
	case NextHeaderNone:
		return nil, ErrDummy
	}
	return nil, errTunnelNH
}

// DecapTransport rebuilds the original packet of a transport-mode SA: the
// outer IP header of pkt (as ParseOuter described it in p) moves back to
// sit right before payload (which Open returned, a slice of pkt), its
// protocol becomes nextHeader and its length and checksum are fixed up.
// With NAT-T (p.UDP) the TCP or UDP checksum is recomputed over the
// addresses as received, since a NAT between the peers changed them
// (RFC 3948 §3.1.2). It returns the packet as a slice of pkt.
func DecapTransport(pkt []byte, p *Parsed, payload []byte, nextHeader byte) ([]byte, error) {
	if nextHeader == NextHeaderNone {
		return nil, ErrDummy
	}
	if len(payload) == 0 && cap(payload) == 0 {
		return nil, ErrTruncated
	}
	// Locate payload inside pkt.
	pos := cap(pkt) - cap(payload)
	if pos < p.HeaderLen || pos+len(payload) > len(pkt) || p.HeaderLen > len(pkt) {
		return nil, errNotSlice
	}
	start := pos - p.HeaderLen
	copy(pkt[start:pos], pkt[:p.HeaderLen])
	out := pkt[start : pos+len(payload)]
	out[p.NHOffset] = nextHeader
	if out[0]>>4 == 4 {
		binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
		ipv4HeaderChecksum(out[:p.HeaderLen])
	} else {
		if len(out)-40 > 65535 {
			return nil, ErrTooBig
		}
		binary.BigEndian.PutUint16(out[4:], uint16(len(out)-40))
	}
	if p.UDP {
		fixTransportChecksum(out, p.HeaderLen, nextHeader)
	}
	return out, nil
}

// fixTransportChecksum recomputes the TCP or UDP checksum of the segment
// at pkt[hl:].
func fixTransportChecksum(pkt []byte, hl int, proto byte) {
	seg := pkt[hl:]
	var at int
	switch {
	case proto == 6 && len(seg) >= 20:
		at = 16
	case proto == 17 && len(seg) >= 8:
		at = 6
	default:
		return
	}
	seg[at], seg[at+1] = 0, 0
	sum := csumFold(csumAdd(pseudoSum(pkt, proto, len(seg)), seg))
	if proto == 17 && sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(seg[at:], sum)
}

// PlaintextMTU returns the largest packet that fits the path MTU after
// encapsulation by this SA: in tunnel mode the largest inner IP packet, in
// transport mode the largest original IP packet (assuming an IP header
// without options or extension headers). ipv6 is the family of the outer
// header (and, in transport mode, of the packet); udp is NAT-T. TFC
// padding (Config.TFCPadTo) beyond the result is not accounted for: an SA
// that pads to more than its plaintext MTU exceeds the path MTU.
func (c *Cipher) PlaintextMTU(pathMTU int, mode Mode, ipv6, udp bool) int {
	ipLen := 20
	if ipv6 {
		ipLen = 40
	}
	fixed := ipLen + c.HeaderLen() + c.t.icv
	if udp {
		fixed += UDPHeaderLen
	}
	a := c.align()
	body := (pathMTU - fixed) / a * a // encrypted part: payload, padding, 2
	p := body - 2
	if p < 0 {
		return 0
	}
	if mode == Transport {
		p += ipLen
	}
	return p
}
