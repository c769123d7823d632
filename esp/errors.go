package esp

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every failure of Open, Seal and the decapsulation helpers
// wraps or is one of these, so a caller can count drops by reason with
// errors.Is. None of them carries key material or packet contents.
var (
	// ErrAuth means the ICV did not verify (RFC 4303 §3.4.4). It is
	// deliberately opaque: it does not say which byte or why.
	ErrAuth = errors.New("esp: authentication failed")
	// ErrPadding means the ESP trailer's Pad Length or the padding bytes
	// were not the RFC 4303 §2.4 default monotonic sequence.
	ErrPadding = errors.New("esp: bad padding")
	// ErrTruncated means the packet is shorter than its headers or the
	// transform's minimum.
	ErrTruncated = errors.New("esp: truncated packet")
	// ErrMalformed means a header field is inconsistent (bad IP version,
	// length fields that disagree, ciphertext not a multiple of the block
	// size, zero SPI, ...).
	ErrMalformed = errors.New("esp: malformed packet")
	// ErrUnsupported means a transform, key size or packet feature that
	// this package does not implement.
	ErrUnsupported = errors.New("esp: unsupported")
	// ErrKeySize means the key material has the wrong length for the
	// transform (remember the 4-byte salt/nonce for GCM, GMAC, CTR and
	// ChaCha20-Poly1305).
	ErrKeySize = errors.New("esp: wrong key size")
	// ErrNoRoom means the buffer lacks the headroom or tailroom the
	// transform needs; see Cipher.HeaderLen and Cipher.TrailerRoom.
	ErrNoRoom = errors.New("esp: not enough headroom or tailroom")
	// ErrTooBig means the resulting packet would exceed 65535 bytes (IPv4
	// total length or IPv6 payload length).
	ErrTooBig = errors.New("esp: packet too big")
	// ErrDummy reports a dummy packet (Next Header 59, RFC 4303 §2.6):
	// valid, authenticated, and to be discarded silently by the receiver.
	ErrDummy = errors.New("esp: dummy packet")
)

// Outer-header outcomes of ParseOuter that are not ESP. They are not
// attacks: a data plane passes IKE and keepalives on to the control plane
// and counts fragments it does not reassemble.
var (
	// ErrNotESP is a UDP datagram on the NAT-T port starting with the
	// four-zero-byte non-ESP marker: IKE (RFC 3948 §2.2).
	ErrNotESP = errors.New("esp: not ESP (non-ESP marker, IKE)")
	// ErrKeepalive is a NAT-keepalive: a UDP payload of one 0xFF byte
	// (RFC 3948 §2.3).
	ErrKeepalive = errors.New("esp: NAT-keepalive")
	// ErrFragment is an outer IP fragment; ESP is processed after
	// reassembly (RFC 4303 §3.4.1).
	ErrFragment = errors.New("esp: outer IP fragment")
)

// Per-packet errors with detail, built once: the packet paths return these
// values instead of formatting new ones, so a flood of junk costs no
// allocations. Each wraps one of the sentinels above.
var (
	errNotIP        = fmt.Errorf("%w: not IPv4 or IPv6", ErrMalformed)
	errInnerNotIP   = fmt.Errorf("%w: inner packet is not IPv4 or IPv6", ErrMalformed)
	errEndpoints    = fmt.Errorf("%w: tunnel endpoints missing or of different families", ErrMalformed)
	errTunnelNH     = fmt.Errorf("%w: next header is not IPv4, IPv6 or none in tunnel mode", ErrMalformed)
	errNotSlice     = fmt.Errorf("%w: payload is not a slice of the packet", ErrMalformed)
	errOtherPort    = fmt.Errorf("%w: UDP not to the NAT-T port", ErrUnsupported)
	errOtherProto   = fmt.Errorf("%w: IP protocol neither ESP nor UDP", ErrUnsupported)
	errWiped        = fmt.Errorf("%w: wiped cipher", ErrUnsupported)
	errTFCTransport = fmt.Errorf("%w: TFC padding in transport mode (the payload carries no length to strip it by)", ErrUnsupported)
)
