package esp

import "encoding/binary"

// csumAdd adds b to a running one's-complement sum (RFC 1071).
func csumAdd(sum uint32, b []byte) uint32 {
	for len(b) >= 8 {
		sum += uint32(binary.BigEndian.Uint16(b[0:])) + uint32(binary.BigEndian.Uint16(b[2:])) +
			uint32(binary.BigEndian.Uint16(b[4:])) + uint32(binary.BigEndian.Uint16(b[6:]))
		b = b[8:]
	}
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

// csumFold folds a running sum to the 16-bit one's-complement checksum.
func csumFold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = (sum >> 16) + (sum & 0xffff)
	}
	return ^uint16(sum)
}

// ipv4HeaderChecksum sets the checksum of the IPv4 header h.
func ipv4HeaderChecksum(h []byte) {
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:], csumFold(csumAdd(0, h)))
}

// pseudoSum returns the sum of the TCP/UDP pseudo-header for the IP header
// ip (version taken from it), protocol proto and upper-layer length n.
func pseudoSum(ip []byte, proto byte, n int) uint32 {
	var sum uint32
	if ip[0]>>4 == 4 {
		sum = csumAdd(0, ip[12:20])
	} else {
		sum = csumAdd(0, ip[8:40])
	}
	return sum + uint32(proto) + uint32(n)
}
