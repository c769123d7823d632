package inet

import "encoding/binary"

// MSSFor returns the TCP MSS that fits an IP MTU: mtu-40 for IPv4 (IP
// and TCP headers without options), mtu-60 for IPv6.
func MSSFor(mtu int, ipv6 bool) int {
	if ipv6 {
		return mtu - 60
	}
	return mtu - 40
}

// findMSS locates the MSS option of a TCP SYN (or SYN-ACK) in pkt: it
// returns the offset of the TCP header and of the option's 16-bit value.
// Fragments, other protocols, segments without SYN, malformed options
// and segments without an MSS option give ok false.
func findMSS(pkt []byte) (tcp, at int, ok bool) {
	info, ok := parseIP(pkt)
	if !ok || !info.known || info.frag || info.proto != protoTCP {
		return 0, 0, false
	}
	tcp = info.l4
	if tcp+20 > info.n || pkt[tcp+13]&0x02 == 0 {
		return 0, 0, false
	}
	end := tcp + int(pkt[tcp+12]>>4)*4
	if end < tcp+20 || end > info.n {
		return 0, 0, false
	}
	// Each pass moves i forward by at least one byte, so at most 40
	// passes (the most options a TCP header holds).
	for i := tcp + 20; i < end; {
		switch kind := pkt[i]; kind {
		case 0: // end of option list
			return 0, 0, false
		case 1: // no-operation
			i++
		default:
			if i+1 >= end {
				return 0, 0, false
			}
			l := int(pkt[i+1])
			if l < 2 || i+l > end {
				return 0, 0, false
			}
			if kind == 2 {
				if l != 4 {
					return 0, 0, false
				}
				return tcp, i + 2, true
			}
			i += l
		}
	}
	return 0, 0, false
}

// MSS returns the value of the MSS option of a TCP SYN or SYN-ACK
// segment in pkt (an IPv4 or IPv6 packet); ok is false for anything
// else, including fragments and malformed options.
func MSS(pkt []byte) (mss int, ok bool) {
	_, at, ok := findMSS(pkt)
	if !ok {
		return 0, false
	}
	return int(binary.BigEndian.Uint16(pkt[at:])), true
}

// SetMSS sets the MSS option of a TCP SYN or SYN-ACK segment in pkt to
// mss (1..65535) and updates the TCP checksum incrementally. It returns
// false, leaving pkt unchanged, where MSS would.
func SetMSS(pkt []byte, mss int) bool {
	if mss < 1 || mss > 0xffff {
		return false
	}
	tcp, at, ok := findMSS(pkt)
	if !ok {
		return false
	}
	setMSS(pkt, tcp, at, uint16(mss))
	return true
}

func setMSS(pkt []byte, tcp, at int, mss uint16) {
	old := binary.BigEndian.Uint16(pkt[at:])
	if old == mss {
		return
	}
	binary.BigEndian.PutUint16(pkt[at:], mss)
	o, n := old, mss
	if (at-tcp)%2 == 1 {
		// The value straddles two checksum words: in a ones' complement
		// sum it counts byte-swapped.
		o, n = o<<8|o>>8, n<<8|n>>8
	}
	hc := binary.BigEndian.Uint16(pkt[tcp+16:])
	binary.BigEndian.PutUint16(pkt[tcp+16:], UpdateChecksum(hc, o, n))
}

// ClampMSS lowers the MSS option of a TCP SYN or SYN-ACK segment in pkt
// (an IPv4 or IPv6 packet, starting at its IP header) to mss when it is
// larger, updating the TCP checksum incrementally, and reports whether
// it changed the packet. mss is used as given for both families (see
// MSSFor). Fragments (IPv4 MF or non-zero offset, an IPv6 fragment
// header), segments without an MSS option, malformed TCP options and
// IPv6 extension chains longer than a few headers are left untouched.
func ClampMSS(pkt []byte, mss int) (clamped bool) {
	if mss < 1 || mss > 0xffff {
		return false
	}
	tcp, at, ok := findMSS(pkt)
	if !ok || int(binary.BigEndian.Uint16(pkt[at:])) <= mss {
		return false
	}
	setMSS(pkt, tcp, at, uint16(mss))
	return true
}
