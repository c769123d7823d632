package esp

import "encoding/binary"

// Protocol numbers and sizes from RFC 4303 and the IANA registry.
const (
	// ProtocolESP is the IP protocol number of ESP.
	ProtocolESP = 50
	// HeaderLen is the length of the ESP header: SPI and sequence number.
	HeaderLen = 8
	// NextHeaderIPv4 marks an IPv4 packet as the payload (tunnel mode).
	NextHeaderIPv4 = 4
	// NextHeaderIPv6 marks an IPv6 packet as the payload (tunnel mode).
	NextHeaderIPv6 = 41
	// NextHeaderNone marks a dummy packet (RFC 4303 §2.6).
	NextHeaderNone = 59
	// NATTPort is the UDP port of ESP-in-UDP encapsulation (RFC 3948).
	NATTPort = 4500
	// UDPHeaderLen is the length of a UDP header.
	UDPHeaderLen = 8
)

// Implementation limits that follow from the transforms above.
const (
	// MaxIVLen is the longest IV of any transform (AES-CBC).
	MaxIVLen = 16
	// MaxICVLen is the longest ICV of any transform (HMAC-SHA-512-256).
	MaxICVLen = 32
	// MaxHeadroom is enough headroom in front of a payload for the
	// largest outer header Encap writes: IPv6 (40) + UDP (8) + ESP header
	// (8) + IV (16).
	MaxHeadroom = 40 + UDPHeaderLen + HeaderLen + MaxIVLen
	// MaxTailroom is enough tailroom after a payload for any transform
	// without TFC padding: padding to a 16-byte block (15), Pad Length and
	// Next Header (2), the ICV (32) and 8 bytes of working room.
	MaxTailroom = 15 + 2 + MaxICVLen + 8
)

// ParseHeader returns the SPI and the (low 32 bits of the) sequence number
// of the ESP packet b, which starts at the SPI. SPI 0 is reserved
// (RFC 4303 §2.1) and reported as ErrMalformed; SPIs 1-255 are reserved by
// IANA but accepted here, since a control plane may use them.
func ParseHeader(b []byte) (spi, seq uint32, err error) {
	if len(b) < HeaderLen {
		return 0, 0, ErrTruncated
	}
	spi = binary.BigEndian.Uint32(b[0:4])
	if spi == 0 {
		return 0, 0, ErrMalformed
	}
	return spi, binary.BigEndian.Uint32(b[4:8]), nil
}
