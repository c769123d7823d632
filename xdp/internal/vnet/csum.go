package vnet

import "github.com/espxdp/espxdp/internal/inet"

// Ones' complement arithmetic (RFC 1071) is internal/inet's 64-bit
// accumulator (inet.Add, inet.AddWord, inet.Fold). Consecutive Adds may
// split the data only at even offsets; every header length this package
// sums over is a multiple of 4.

// pseudoAddrs returns the sum of the pseudo-header's addresses and
// protocol (RFC 793 §3.1, RFC 768, RFC 8200 §8.1) for the IP packet p
// (version v6 or 4, header already validated long enough); the L4
// length is added per packet.
func pseudoAddrs(p []byte, v6 bool, proto uint8) uint64 {
	if v6 {
		return inet.AddWord(inet.Add(0, p[8:40]), uint64(proto))
	}
	return inet.AddWord(inet.Add(0, p[12:20]), uint64(proto))
}

// ipv4HdrChecksum returns the header checksum of the IPv4 header h,
// computed with its checksum field taken as zero.
func ipv4HdrChecksum(h []byte) uint16 {
	return ^inet.Fold(inet.Add(inet.Add(0, h[:10]), h[12:]))
}
