// Package inet holds the gateway duties a router does to the plaintext
// (inner) IP packets it forwards into and out of a tunnel, as pure
// functions on packets that start at their IPv4 or IPv6 header:
//
//   - ClampMSS lowers the MSS option of TCP SYN and SYN-ACK segments
//     (like "ip tcp adjust-mss"), so TCP never sends segments that would
//     not fit the tunnel;
//   - DecTTL decrements the IPv4 TTL or IPv6 hop limit and tells the
//     caller when a packet must not be forwarded;
//   - PacketTooBig and TimeExceeded turn the offending packet, in place in
//     a buffer with headroom, into the ICMP error (ICMPv4 "fragmentation
//     needed" or "time exceeded", RFC 792/1191/1812; ICMPv6 "packet too
//     big" or "time exceeded", RFC 4443) addressed back to its source.
//
// Every function works in place, updates checksums incrementally
// (RFC 1624) where it changes a field, bounds every header walk, never
// panics on malformed input (it leaves such packets alone) and does not
// allocate: the data plane calls them per packet. Errors are pre-built
// sentinel values; errors.Is(err, ErrNoICMP) tells the cases where the
// rules of RFC 1812 §4.3.2.7 and RFC 4443 §2.4 forbid an ICMP error.
//
// The package does no I/O and keeps no state; rate limiting ICMP errors
// is the caller's job (the xdp Engine keeps a token bucket per worker).
package inet
