package inet

import (
	"encoding/binary"
	"errors"
)

// Errors of Fragments4.
var (
	// ErrFragDF: the packet has Don't Fragment set; the caller answers
	// with PacketTooBig instead.
	ErrFragDF = errors.New("inet: packet has DF set")
	// ErrFragOptions: the packet has IPv4 options; the engine does not
	// fragment those (RFC 791 copies some options into every fragment
	// and not others), it drops them.
	ErrFragOptions = errors.New("inet: not fragmenting a packet with IPv4 options")
	// ErrFragMTU: the MTU leaves no room for 8 bytes of data per
	// fragment, or the packet already fits.
	ErrFragMTU = errors.New("inet: MTU too small to fragment into, or no fragmentation needed")
)

// Fragments4 plans the fragmentation of the IPv4 packet pkt (without DF,
// without options) into fragments of at most mtu bytes (RFC 791): count
// fragments, each carrying step bytes of pkt's data (a multiple of 8)
// except the last. A packet that is itself a fragment is fragmented
// further (offsets and More Fragments carried on). It does not allocate.
func Fragments4(pkt []byte, mtu int) (count, step int, err error) {
	info, ok := parseIP(pkt)
	if !ok || info.v != 4 {
		return 0, 0, ErrMalformed
	}
	if pkt[6]&0x40 != 0 {
		return 0, 0, ErrFragDF
	}
	if pkt[0]&0x0f != 5 {
		return 0, 0, ErrFragOptions
	}
	step = (mtu - 20) &^ 7
	if step < 8 || info.n <= mtu {
		return 0, 0, ErrFragMTU
	}
	data := info.n - 20
	return (data + step - 1) / step, step, nil
}

// WriteFragment4 writes fragment i (0-based) of pkt, as planned by
// Fragments4 with step, into dst and returns its length. dst must hold
// 20+step bytes. dst may be pkt itself for fragment 0, which must then be
// written last (the others copy pkt's header and data).
func WriteFragment4(dst, pkt []byte, i, step int) int {
	tot := int(binary.BigEndian.Uint16(pkt[2:]))
	fo := binary.BigEndian.Uint16(pkt[6:])
	from := 20 + i*step
	n := min(step, tot-from)
	last := from+n == tot
	copy(dst[:20], pkt[:20])
	copy(dst[20:20+n], pkt[from:from+n])
	off := fo&0x1fff + uint16(i*step/8)
	flags := fo & 0xe000
	if !last {
		flags |= 0x2000 // MF; the last keeps the original's MF
	}
	binary.BigEndian.PutUint16(dst[2:], uint16(20+n))
	binary.BigEndian.PutUint16(dst[6:], flags|off)
	dst[10], dst[11] = 0, 0
	binary.BigEndian.PutUint16(dst[10:], Checksum(dst[:20]))
	return 20 + n
}
