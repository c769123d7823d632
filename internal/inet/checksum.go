package inet

import (
	"encoding/binary"
	"math/bits"
)

// Sum returns the 16-bit ones' complement sum of b added to initial
// (RFC 1071), folded but not inverted. Odd-length b is padded with a
// zero byte.
func Sum(b []byte, initial uint32) uint16 { return Fold(Add(uint64(initial), b)) }

// Add adds b (an odd length padded with a zero byte) to the ones'
// complement accumulator acc and returns it. The accumulator is a
// 64-bit ones' complement sum (end-around carry) of the data read as
// big-endian 64-bit words; Fold gives the same value as summing 16-bit
// words, because 2^16 ≡ 1 modulo 2^16-1. Consecutive Adds may split the
// data only at even offsets (16-bit alignment).
func Add(acc uint64, b []byte) uint64 {
	var c uint64
	for len(b) >= 32 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[8:]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[16:]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[24:]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b), c)
		b = b[8:]
	}
	if len(b) > 0 {
		var w uint64
		for i, x := range b {
			w |= uint64(x) << (56 - 8*uint(i))
		}
		acc, c = bits.Add64(acc, w, c)
	}
	return AddWord(acc, c)
}

// AddWord adds the value x to the accumulator acc (end-around carry).
func AddWord(acc, x uint64) uint64 {
	s, c := bits.Add64(acc, x, 0)
	return s + c // no overflow: with c == 1, s <= 2^64-2
}

// Fold folds the accumulator acc to the 16-bit ones' complement sum
// (not inverted).
func Fold(acc uint64) uint16 {
	s := acc>>32 + acc&0xffffffff
	s = s>>32 + s&0xffffffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
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
