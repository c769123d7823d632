// Package esp implements the IP Encapsulating Security Payload (RFC 4303)
// wire format and transforms, with no I/O and no state beyond keys.
//
// A Cipher is the crypto state of one Security Association, built once
// from a Config (transform, keys in RFC / Linux xfrm layout, ESN). Its Seal
// and Open work in place on the caller's buffer: Seal writes the ESP header
// and IV into headroom and the padding, trailer and ICV into tailroom;
// Open verifies and decrypts and returns the payload as a slice of the same
// buffer. With a per-worker Scratch neither allocates.
//
// Transforms: AES-GCM with 8, 12 and 16-byte ICVs (RFC 4106),
// ChaCha20-Poly1305 (RFC 7634), AES-GMAC (RFC 4543), AES-CBC (RFC 3602),
// AES-CTR (RFC 3686), NULL (RFC 2410) and 3DES-CBC (RFC 2451, legacy) with
// HMAC-SHA1-96 (RFC 2404) or HMAC-SHA-256-128, -384-192, -512-256
// (RFC 4868). See ParseTransform for the names.
//
// On top of Seal and Open, EncapTunnel and EncapTransport build complete
// outer packets (IPv4 or IPv6, optionally ESP-in-UDP per RFC 3948), and
// ParseOuter, DecapTunnel and DecapTransport take them apart again.
// Sequence numbers, anti-replay and SA lookup live in package sa.
//
// Every malformed input yields one of the sentinel errors (ErrAuth,
// ErrPadding, ErrTruncated, ErrMalformed, ...); no input makes this package
// panic.
package esp
