package vnet

import (
	"encoding/binary"
	"errors"
)

// HdrLen is the size of struct virtio_net_hdr, the header in front of
// every packet read from or written to a TUN opened with IFF_VNET_HDR.
const HdrLen = 10

// Flags and GSO types of the virtio-net header (linux/virtio_net.h).
const (
	// FlagNeedsCsum (VIRTIO_NET_HDR_F_NEEDS_CSUM): the L4 checksum is
	// partial: its field holds the pseudo-header sum, the rest is to be
	// summed from CsumStart to the end and stored complemented at
	// CsumStart+CsumOffset.
	FlagNeedsCsum = 1
	// FlagDataValid (VIRTIO_NET_HDR_F_DATA_VALID): the checksum was
	// verified.
	FlagDataValid = 2

	// GSONone: not a super-packet.
	GSONone = 0
	// GSOTCPv4: a TCP over IPv4 super-packet (TSO).
	GSOTCPv4 = 1
	// GSOUDP: UDP fragmentation offload (UFO); refused with
	// ErrUnsupported.
	GSOUDP = 3
	// GSOTCPv6: a TCP over IPv6 super-packet (TSO).
	GSOTCPv6 = 4
	// GSOUDPL4: a UDP super-packet split into datagrams (USO).
	GSOUDPL4 = 5
	// GSOECN: with GSOTCPv4 or GSOTCPv6: the first segment has CWR set
	// and the others must not.
	GSOECN = 0x80
)

// Errors of the package.
var (
	// ErrMalformed: the packet or its virtio-net header is inconsistent
	// (too short, lengths or protocols that contradict each other).
	ErrMalformed = errors.New("vnet: malformed packet or virtio-net header")
	// ErrUnsupported: a well-formed packet the package does not split
	// (UFO, some IPv6 extension headers, too many segments, unknown GSO
	// type).
	ErrUnsupported = errors.New("vnet: unsupported virtio-net packet")
	// ErrShortBuffer: the destination buffer cannot hold the next packet.
	ErrShortBuffer = errors.New("vnet: destination buffer too small")
)

// Hdr is struct virtio_net_hdr. Its 16-bit fields are in host byte
// order on the wire, as a TUN device without TUNSETVNETBE/LE uses on
// little-endian hosts (binary.NativeEndian).
type Hdr struct {
	// Flags is a set of FlagNeedsCsum and FlagDataValid.
	Flags uint8
	// GSOType is one of the GSO constants, TCP ones optionally |GSOECN.
	GSOType uint8
	// HdrLen is the length of the headers (IP and L4) of a super-packet.
	// Splitter does not trust it; it reads the headers themselves.
	HdrLen uint16
	// GSOSize is the payload length of each segment but the last.
	GSOSize uint16
	// CsumStart is the offset of the L4 header from the IP header.
	CsumStart uint16
	// CsumOffset is the offset of the L4 checksum field from CsumStart
	// (16 for TCP, 6 for UDP).
	CsumOffset uint16
}

// DecodeHdr reads a virtio-net header from the first HdrLen bytes of b.
// A shorter b is ErrMalformed. Field values are not checked here;
// Splitter.Reset does that.
func DecodeHdr(b []byte) (Hdr, error) {
	if len(b) < HdrLen {
		return Hdr{}, ErrMalformed
	}
	return Hdr{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     binary.NativeEndian.Uint16(b[2:]),
		GSOSize:    binary.NativeEndian.Uint16(b[4:]),
		CsumStart:  binary.NativeEndian.Uint16(b[6:]),
		CsumOffset: binary.NativeEndian.Uint16(b[8:]),
	}, nil
}

// Encode writes h into the first HdrLen bytes of b; it panics, like a
// slice index, if b is shorter.
func (h Hdr) Encode(b []byte) {
	_ = b[HdrLen-1]
	b[0] = h.Flags
	b[1] = h.GSOType
	binary.NativeEndian.PutUint16(b[2:], h.HdrLen)
	binary.NativeEndian.PutUint16(b[4:], h.GSOSize)
	binary.NativeEndian.PutUint16(b[6:], h.CsumStart)
	binary.NativeEndian.PutUint16(b[8:], h.CsumOffset)
}
