package inet

import "encoding/binary"

// DecTTL decrements the IPv4 TTL (updating the header checksum
// incrementally) or the IPv6 hop limit of pkt, as a router does before
// forwarding it. It returns false, leaving pkt unchanged, when the
// packet must not be forwarded: its TTL or hop limit is 1 or 0 (the
// caller then drops it and may send TimeExceeded), or pkt does not
// start with a well-formed IPv4 or IPv6 header (see Version).
func DecTTL(pkt []byte) (ok bool) {
	switch Version(pkt) {
	case 4:
		ttl := pkt[8]
		if ttl <= 1 {
			return false
		}
		old := binary.BigEndian.Uint16(pkt[8:])
		pkt[8] = ttl - 1
		hc := binary.BigEndian.Uint16(pkt[10:])
		binary.BigEndian.PutUint16(pkt[10:], UpdateChecksum(hc, old, binary.BigEndian.Uint16(pkt[8:])))
		return true
	case 6:
		if pkt[7] <= 1 {
			return false
		}
		pkt[7]--
		return true
	}
	return false
}
