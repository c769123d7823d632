package vnet

import (
	"encoding/binary"
	"math/bits"
)

// Ones' complement arithmetic (RFC 1071). The accumulator is a 64-bit
// ones' complement sum (end-around carry) of the data read as big-endian
// 64-bit words; folding it to 16 bits gives the same value as summing
// 16-bit words, because 2^16 ≡ 1 modulo 2^16-1. Consecutive calls of
// csumAdd may split the data only at even offsets (16-bit alignment);
// every header length this package sums over is a multiple of 4.

// csumAdd adds b (an odd length padded with a zero byte) to acc.
func csumAdd(acc uint64, b []byte) uint64 {
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
	return csumAddWord(acc, c)
}

// csumAddWord adds the value x to acc with end-around carry.
func csumAddWord(acc, x uint64) uint64 {
	s, c := bits.Add64(acc, x, 0)
	return s + c // no overflow: with c == 1, s <= 2^64-2
}

// csumFold folds acc to the 16-bit ones' complement sum (not inverted).
func csumFold(acc uint64) uint16 {
	s := acc>>32 + acc&0xffffffff
	s = s>>32 + s&0xffffffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return uint16(s)
}

// pseudoAddrs returns the sum of the pseudo-header's addresses and
// protocol (RFC 793 §3.1, RFC 768, RFC 8200 §8.1) for the IP packet p
// (version v6 or 4, header already validated long enough); the L4
// length is added per packet.
func pseudoAddrs(p []byte, v6 bool, proto uint8) uint64 {
	if v6 {
		return csumAddWord(csumAdd(0, p[8:40]), uint64(proto))
	}
	return csumAddWord(csumAdd(0, p[12:20]), uint64(proto))
}

// ipv4HdrChecksum returns the header checksum of the IPv4 header h,
// computed with its checksum field taken as zero.
func ipv4HdrChecksum(h []byte) uint16 {
	acc := csumAdd(0, h[:10])
	acc = csumAdd(acc, h[12:])
	return ^csumFold(acc)
}
