package inet

import "encoding/binary"

// IP protocol numbers and IPv6 extension headers used here.
const (
	protoHopByHop = 0
	protoICMP     = 1
	protoTCP      = 6
	protoRouting  = 43
	protoFragment = 44
	protoAH       = 51
	protoICMPv6   = 58
	protoDstOpts  = 60
)

// maxExtHeaders bounds the IPv6 extension header walk.
const maxExtHeaders = 8

// ipInfo is the layout of an IP packet.
type ipInfo struct {
	v     int  // 4 or 6
	n     int  // length of the packet by its header (at most len(pkt))
	l4    int  // offset of the upper-layer header (known only)
	proto byte // upper-layer protocol (known only)
	known bool // l4 and proto were found
	frag  bool // a fragment (IPv4 MF or offset; IPv6 fragment header)
	later bool // a fragment other than the first
}

// Version returns 4 or 6 when pkt starts with a well-formed IPv4 or
// IPv6 header whose length fields fit in pkt, else 0.
func Version(pkt []byte) int {
	info, ok := parseIP(pkt)
	if !ok {
		return 0
	}
	return info.v
}

// parseIP parses pkt's IP header (and IPv6 extension headers, bounded).
// ok is false when pkt does not start with a consistent IPv4 or IPv6
// header; an IPv6 extension chain that cannot be followed leaves known
// false.
func parseIP(pkt []byte) (info ipInfo, ok bool) {
	if len(pkt) < 20 {
		return info, false
	}
	switch pkt[0] >> 4 {
	case 4:
		ihl := int(pkt[0]&0x0f) * 4
		tot := int(binary.BigEndian.Uint16(pkt[2:]))
		if ihl < 20 || tot < ihl || tot > len(pkt) {
			return info, false
		}
		fo := binary.BigEndian.Uint16(pkt[6:])
		info.v, info.n = 4, tot
		info.later = fo&0x1fff != 0
		info.frag = info.later || fo&0x2000 != 0
		info.l4, info.proto, info.known = ihl, pkt[9], true
		return info, true
	case 6:
		if len(pkt) < 40 {
			return info, false
		}
		n := 40 + int(binary.BigEndian.Uint16(pkt[4:]))
		if n > len(pkt) {
			return info, false
		}
		info.v, info.n = 6, n
		nh, off := pkt[6], 40
		for range maxExtHeaders {
			switch nh {
			case protoHopByHop, protoRouting, protoDstOpts:
				if off+2 > n {
					return info, true
				}
				nh, off = pkt[off], off+(int(pkt[off+1])+1)*8
			case protoAH:
				if off+2 > n {
					return info, true
				}
				nh, off = pkt[off], off+(int(pkt[off+1])+2)*4
			case protoFragment:
				if off+8 > n {
					return info, true
				}
				info.frag = true
				if binary.BigEndian.Uint16(pkt[off+2:])&0xfff8 != 0 {
					info.later = true
					return info, true
				}
				nh, off = pkt[off], off+8
			default:
				if off > n {
					return info, true
				}
				info.l4, info.proto, info.known = off, nh, true
				return info, true
			}
		}
		return info, true
	}
	return info, false
}
