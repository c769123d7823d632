package inet

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Header room the ICMP builders need in front of the offending packet.
const (
	// Headroom4 is the room for the IPv4 and ICMP headers.
	Headroom4 = 20 + 8
	// Headroom6 is the room for the IPv6 and ICMPv6 headers.
	Headroom6 = 40 + 8
	// MaxICMP4 is the largest ICMPv4 error built (RFC 1812 §4.3.2.3).
	MaxICMP4 = 576
	// MaxICMP6 is the largest ICMPv6 error built (RFC 4443 §2.4 (c)).
	MaxICMP6 = 1280
	// MinMTU6 is the IPv6 minimum link MTU (RFC 8200 §5); PacketTooBig
	// never reports less.
	MinMTU6 = 1280
	// MinMTU4 is the IPv4 minimum MTU (RFC 791); PacketTooBig never
	// reports less.
	MinMTU4 = 68
	// ErrorTTL is the TTL / hop limit of the ICMP errors built.
	ErrorTTL = 64
)

// ErrNoICMP is matched (errors.Is) by every error that means "the rules
// forbid an ICMP error about this packet" (RFC 1812 §4.3.2.7, RFC 4443
// §2.4 (e)): ErrAboutICMPError, ErrNotFirstFragment, ErrNotUnicast and
// ErrNoDF. The caller just drops the packet.
var ErrNoICMP = errors.New("inet: no ICMP error allowed about this packet")

type noICMPError struct{ msg string }

func (e *noICMPError) Error() string        { return e.msg }
func (e *noICMPError) Is(target error) bool { return target == ErrNoICMP }

// Reasons not to send an ICMP error; each matches ErrNoICMP.
var (
	// ErrAboutICMPError: the packet is itself an ICMP or ICMPv6 error
	// message.
	ErrAboutICMPError error = &noICMPError{"inet: no ICMP error about an ICMP error"}
	// ErrNotFirstFragment: the packet is a fragment other than the first.
	ErrNotFirstFragment error = &noICMPError{"inet: no ICMP error about a non-first fragment"}
	// ErrNotUnicast: the packet's source is not a unicast host address
	// (unspecified, multicast, broadcast, loopback, IPv4 class E) or its
	// destination is multicast or the limited broadcast (IPv6 "packet
	// too big" about a multicast destination is allowed, RFC 4443
	// §2.4 (e.3)).
	ErrNotUnicast error = &noICMPError{"inet: no ICMP error about a non-unicast packet"}
	// ErrNoDF: PacketTooBig about an IPv4 packet without DF: such a
	// packet may be fragmented, and "fragmentation needed" would be
	// wrong. A caller that does not fragment simply drops it.
	ErrNoDF error = &noICMPError{"inet: no fragmentation needed about a packet without DF"}
)

// Errors about the arguments.
var (
	// ErrMalformed: buf[off:off+n] is not a well-formed IPv4 or IPv6
	// packet (or lies outside buf, or its IPv6 extension headers cannot
	// be followed).
	ErrMalformed = errors.New("inet: malformed IP packet")
	// ErrNoHeadroom: off is less than Headroom4 / Headroom6.
	ErrNoHeadroom = errors.New("inet: no headroom for the ICMP error headers")
	// ErrSourceFamily: the router address given is not of the offending
	// packet's address family.
	ErrSourceFamily = errors.New("inet: ICMP source address of the wrong family")
)

// ICMP types and codes used.
const (
	icmp4DestUnreach  = 3
	icmp4FragNeeded   = 4 // code of icmp4DestUnreach
	icmp4TimeExceeded = 11
	icmp6PacketTooBig = 2
	icmp6TimeExceeded = 3
)

// PacketTooBig turns the packet at buf[off:off+n], which does not fit an
// MTU of mtu bytes, into the ICMP error that tells its source so, in
// place: ICMPv4 destination unreachable, fragmentation needed and DF set
// (type 3 code 4) with the next-hop MTU (RFC 1191 §4), or ICMPv6 packet
// too big (type 2, RFC 4443 §3.2) with the MTU (never below 1280). The
// error comes from src (the router's address, of the packet's family)
// and goes to the packet's source. Its headers are written into the
// headroom before off (Headroom4 / Headroom6 bytes are needed) and the
// packet's first bytes stay where they are as the quoted "as much of
// the invoking packet as possible" (the whole error at most MaxICMP4 /
// MaxICMP6 bytes). It returns the error's offset and length in buf.
//
// It refuses (errors matching ErrNoICMP, buf unchanged) packets the rules
// forbid an error about, including IPv4 packets without DF: the caller
// decides whether to fragment those or drop them.
func PacketTooBig(buf []byte, off, n int, src netip.Addr, mtu int) (int, int, error) {
	return icmpError(buf, off, n, src, true, mtu)
}

// TimeExceeded turns the packet at buf[off:off+n], whose TTL or hop
// limit expired in transit, into ICMPv4 time exceeded (type 11 code 0,
// RFC 792) or ICMPv6 time exceeded (type 3 code 0, RFC 4443 §3.3), in
// place, from src to the packet's source, as PacketTooBig does.
func TimeExceeded(buf []byte, off, n int, src netip.Addr) (int, int, error) {
	return icmpError(buf, off, n, src, false, 0)
}

func icmpError(buf []byte, off, n int, src netip.Addr, tooBig bool, mtu int) (int, int, error) {
	if off < 0 || n < 0 || off > len(buf) || n > len(buf)-off {
		return 0, 0, ErrMalformed
	}
	pkt := buf[off : off+n]
	info, ok := parseIP(pkt)
	if !ok {
		return 0, 0, ErrMalformed
	}
	if info.later {
		return 0, 0, ErrNotFirstFragment
	}
	if !info.known {
		return 0, 0, ErrMalformed
	}
	if info.v == 4 {
		return icmp4(buf, off, pkt, info, src, tooBig, mtu)
	}
	return icmp6(buf, off, pkt, info, src, tooBig, mtu)
}

// isICMPError4 tells ICMPv4 error messages from queries (RFC 1812
// §4.3.2.7: destination unreachable, source quench, redirect, time
// exceeded, parameter problem).
func isICMPError4(t byte) bool {
	switch t {
	case 3, 4, 5, 11, 12:
		return true
	}
	return false
}

func icmp4(buf []byte, off int, pkt []byte, info ipInfo, src netip.Addr, tooBig bool, mtu int) (int, int, error) {
	if info.proto == protoICMP {
		if info.l4 >= info.n {
			return 0, 0, ErrMalformed
		}
		if isICMPError4(pkt[info.l4]) {
			return 0, 0, ErrAboutICMPError
		}
	}
	s, d := [4]byte(pkt[12:16]), [4]byte(pkt[16:20])
	switch {
	case s[0] == 0 || s[0] == 127 || s[0] >= 224, // this network, loopback, multicast, class E, broadcast
		d[0] >= 224 && d[0] < 240, d == [4]byte{255, 255, 255, 255}:
		return 0, 0, ErrNotUnicast
	}
	if tooBig && binary.BigEndian.Uint16(pkt[6:])&0x4000 == 0 {
		return 0, 0, ErrNoDF
	}
	src = src.Unmap()
	if !src.Is4() {
		return 0, 0, ErrSourceFamily
	}
	if off < Headroom4 {
		return 0, 0, ErrNoHeadroom
	}
	q := min(info.n, MaxICMP4-Headroom4)
	start := off - Headroom4
	h := buf[start:off]
	h[0], h[1] = 0x45, 0xc0 // precedence: internetwork control
	binary.BigEndian.PutUint16(h[2:], uint16(Headroom4+q))
	binary.BigEndian.PutUint32(h[4:], 0x4000) // ID 0, DF (RFC 6864 §4.1)
	h[8], h[9] = ErrorTTL, protoICMP
	h[10], h[11] = 0, 0
	a := src.As4()
	copy(h[12:16], a[:])
	copy(h[16:20], s[:])
	binary.BigEndian.PutUint16(h[10:], Checksum(h[:20]))
	m := h[20:28]
	m[0], m[1], m[2], m[3] = icmp4TimeExceeded, 0, 0, 0
	binary.BigEndian.PutUint32(m[4:], 0)
	if tooBig {
		m[0], m[1] = icmp4DestUnreach, icmp4FragNeeded
		binary.BigEndian.PutUint16(m[6:], uint16(min(max(mtu, MinMTU4), 0xffff)))
	}
	binary.BigEndian.PutUint16(m[2:], ^Sum(pkt[:q], uint32(Sum(m, 0))))
	return start, Headroom4 + q, nil
}

func icmp6(buf []byte, off int, pkt []byte, info ipInfo, src netip.Addr, tooBig bool, mtu int) (int, int, error) {
	if info.proto == protoICMPv6 {
		if info.l4 >= info.n {
			return 0, 0, ErrMalformed
		}
		if pkt[info.l4] < 128 {
			return 0, 0, ErrAboutICMPError
		}
	}
	s := netip.AddrFrom16([16]byte(pkt[8:24]))
	if s.IsUnspecified() || s.IsMulticast() || s.IsLoopback() {
		return 0, 0, ErrNotUnicast
	}
	if pkt[24] == 0xff && !tooBig {
		return 0, 0, ErrNotUnicast
	}
	if !src.Is6() || src.Is4In6() {
		return 0, 0, ErrSourceFamily
	}
	if off < Headroom6 {
		return 0, 0, ErrNoHeadroom
	}
	q := min(info.n, MaxICMP6-Headroom6)
	start := off - Headroom6
	h := buf[start:off]
	binary.BigEndian.PutUint32(h[0:], 6<<28)
	binary.BigEndian.PutUint16(h[4:], uint16(8+q))
	h[6], h[7] = protoICMPv6, ErrorTTL
	a, sa := src.As16(), s.As16()
	copy(h[8:24], a[:])
	copy(h[24:40], sa[:])
	m := h[40:48]
	m[0], m[1], m[2], m[3] = icmp6TimeExceeded, 0, 0, 0
	binary.BigEndian.PutUint32(m[4:], 0)
	if tooBig {
		m[0] = icmp6PacketTooBig
		binary.BigEndian.PutUint32(m[4:], uint32(min(max(mtu, MinMTU6), 0x7fff_ffff)))
	}
	sum := pseudoSum6(h[8:24], h[24:40], 8+q, protoICMPv6) + uint32(Sum(m, 0))
	binary.BigEndian.PutUint16(m[2:], ^Sum(pkt[:q], sum))
	return start, Headroom6 + q, nil
}
