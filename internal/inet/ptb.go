package inet

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// PTB is what an ICMPv4 "fragmentation needed" (type 3 code 4, RFC
// 1191) or ICMPv6 "packet too big" (type 2, RFC 4443 §3.2) says about a
// packet we sent: the MTU of the next hop and the quoted packet's
// header fields that identify the ESP SA it belonged to.
type PTB struct {
	// MTU is the next-hop MTU the message reports.
	MTU int
	// Src and Dst are the quoted packet's addresses (ours and the
	// peer's).
	Src, Dst netip.Addr
	// UDP is set when the quoted packet is ESP in UDP (RFC 3948);
	// SrcPort and DstPort are then its ports.
	UDP              bool
	SrcPort, DstPort uint16
	// SPI is the quoted ESP header's SPI.
	SPI uint32
}

// Errors of ParsePTB.
var (
	// ErrNotPTB: the message is not "fragmentation needed" / "packet too
	// big" (another ICMP message, which the caller just ignores).
	ErrNotPTB = errors.New("inet: not an ICMP fragmentation-needed / packet-too-big message")
	// ErrPTBQuote: the quoted packet is truncated or malformed, or too
	// short to hold the SPI.
	ErrPTBQuote = errors.New("inet: ICMP packet-too-big quote truncated or malformed")
	// ErrPTBNotESP: the quoted packet is not ESP or ESP in UDP (a zero
	// SPI in UDP is IKE behind the non-ESP marker).
	ErrPTBNotESP = errors.New("inet: ICMP packet-too-big about a packet that is not ESP")
)

// ParsePTB parses an ICMP error message (msg starts at the ICMP header:
// a raw IPPROTO_ICMP socket's data past the IPv4 header, or a raw
// IPPROTO_ICMPV6 socket's data) and returns what it says about an ESP
// packet. v6 selects ICMPv6. It does not check the addresses, SPI or MTU
// against any SA; that is the caller's job. It never panics and does not
// allocate.
func ParsePTB(msg []byte, v6 bool) (PTB, error) {
	var p PTB
	if len(msg) < 8 {
		return p, ErrNotPTB
	}
	var q []byte
	if v6 {
		if msg[0] != 2 || msg[1] != 0 {
			return p, ErrNotPTB
		}
		p.MTU = int(min(binary.BigEndian.Uint32(msg[4:]), 1<<31-1))
		q = msg[8:]
		if len(q) < 40 || q[0]>>4 != 6 {
			return p, ErrPTBQuote
		}
		p.Src, p.Dst = netip.AddrFrom16([16]byte(q[8:24])), netip.AddrFrom16([16]byte(q[24:40]))
		nh, off := q[6], 40
		// The gateway's ESP carries no extension headers; skip the
		// usual ones anyway, bounded.
		for range maxExtHeaders {
			if nh != protoHopByHop && nh != protoRouting && nh != protoDstOpts {
				break
			}
			if off+2 > len(q) {
				return p, ErrPTBQuote
			}
			nh, off = q[off], off+(int(q[off+1])+1)*8
		}
		return p, quotedESP(&p, nh, q, off)
	}
	if msg[0] != 3 || msg[1] != 4 {
		return p, ErrNotPTB
	}
	p.MTU = int(binary.BigEndian.Uint16(msg[6:]))
	q = msg[8:]
	if len(q) < 20 || q[0]>>4 != 4 {
		return p, ErrPTBQuote
	}
	ihl := int(q[0]&0x0f) * 4
	if ihl < 20 || len(q) < ihl {
		return p, ErrPTBQuote
	}
	if binary.BigEndian.Uint16(q[6:])&0x1fff != 0 {
		// A non-first fragment holds no ESP header.
		return p, ErrPTBNotESP
	}
	p.Src, p.Dst = netip.AddrFrom4([4]byte(q[12:16])), netip.AddrFrom4([4]byte(q[16:20]))
	return p, quotedESP(&p, q[9], q, ihl)
}

// quotedESP reads the SPI (and UDP ports) of the quoted packet q whose
// upper-layer protocol nh starts at off.
func quotedESP(p *PTB, nh byte, q []byte, off int) error {
	switch nh {
	case 50:
	case 17:
		if off+8 > len(q) {
			return ErrPTBQuote
		}
		p.UDP = true
		p.SrcPort, p.DstPort = binary.BigEndian.Uint16(q[off:]), binary.BigEndian.Uint16(q[off+2:])
		off += 8
	default:
		return ErrPTBNotESP
	}
	if off+4 > len(q) {
		return ErrPTBQuote
	}
	p.SPI = binary.BigEndian.Uint32(q[off:])
	if p.SPI == 0 {
		return ErrPTBNotESP
	}
	return nil
}
