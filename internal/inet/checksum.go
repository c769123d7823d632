package inet

import "encoding/binary"

// Sum returns the 16-bit ones' complement sum of b added to initial
// (RFC 1071), folded but not inverted. Odd-length b is padded with a
// zero byte.
func Sum(b []byte, initial uint32) uint16 {
	s := uint64(initial)
	for len(b) >= 8 {
		s += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	for len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// Checksum is the Internet checksum of b: the complement of Sum(b, 0).
// A header whose checksum field is correct has Checksum 0.
func Checksum(b []byte) uint16 { return ^Sum(b, 0) }

// UpdateChecksum returns checksum hc after a 16-bit word of the covered
// data changed from old to new (RFC 1624, equation 3).
func UpdateChecksum(hc, old, new uint16) uint16 {
	s := uint32(^hc) + uint32(^old) + uint32(new)
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return ^uint16(s)
}

// pseudoSum6 is the sum of the IPv6 pseudo-header (RFC 8200 §8.1) for
// addresses src and dst, upper-layer length n and next header nh.
func pseudoSum6(src, dst []byte, n int, nh byte) uint32 {
	s := uint32(Sum(src, 0)) + uint32(Sum(dst, 0))
	s += uint32(n>>16) + uint32(n&0xffff) + uint32(nh)
	return s
}
