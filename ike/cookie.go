package ike

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"net/netip"
	"time"
)

// Defaults of the responder's DoS protection (Config.CookieThreshold,
// Config.MaxHalfOpen, Config.MaxIKESAs).
const (
	DefaultCookieThreshold = 64
	DefaultMaxHalfOpen     = 4096
	DefaultMaxIKESAs       = 4096
	// DefaultMaxHalfOpenPerSource is Config.MaxHalfOpenPerSource's
	// default (strongSwan's block_threshold).
	DefaultMaxHalfOpenPerSource = 5
)

// Bounds of the retransmission schedule (Config.Retries,
// Config.Retransmit): Retransmit << Retries, and the schedules derived
// from it, stay far within a time.Duration.
const (
	MaxRetries    = 16
	MaxRetransmit = time.Minute
)

// maxInitLen bounds the IKE_SA_INIT requests the responder keeps state
// for (a half-open SA holds the request for the AUTH payload).
const maxInitLen = 8192

// cookieRotation is how long a cookie secret is the current one; a
// cookie stays valid for up to two rotations (the current and the
// previous secret, told apart by the version byte).
const cookieRotation = 60 * time.Second

// maxCookieTries bounds how often an initiator retries IKE_SA_INIT
// with a new cookie.
const maxCookieTries = 3

// maxKETries bounds how often an initiator retries IKE_SA_INIT with
// the DH group an INVALID_KE_PAYLOAD asks for.
const maxKETries = 3

// cookieLen is the length of our cookies: a version byte and 64 bits of
// SHA-256.
const cookieLen = 9

// cookieSecrets makes and checks stateless cookies (RFC 7296 §2.6):
//
//	Cookie = <VersionIDofSecret> | first 64 bits of SHA-256(Ni | IPi | SPIi | <secret>)
//
// The secret rotates every cookieRotation (lazily, on use); the version
// byte names the secret, and the previous one is still accepted. The
// zero value is ready (e.mu held for every call).
type cookieSecrets struct {
	version byte
	cur     [32]byte
	prev    [32]byte
	hasPrev bool
	since   time.Time
}

// rotate installs a new secret when the current one is older than
// cookieRotation (or missing).
func (c *cookieSecrets) rotate(now time.Time) {
	if !c.since.IsZero() && now.Sub(c.since) < cookieRotation {
		return
	}
	if !c.since.IsZero() {
		c.prev, c.hasPrev = c.cur, now.Sub(c.since) < 2*cookieRotation
		c.version++
	}
	rand.Read(c.cur[:])
	c.since = now
}

func cookieHash(version byte, secret *[32]byte, ni []byte, ip netip.Addr, spiI uint64) []byte {
	h := sha256.New()
	h.Write(ni)
	h.Write(ip.AsSlice())
	h.Write(binary.BigEndian.AppendUint64(nil, spiI))
	h.Write(secret[:])
	return append([]byte{version}, h.Sum(nil)[:cookieLen-1]...)
}

// issue returns the cookie for an IKE_SA_INIT with nonce ni and SPIi
// spiI from ip.
func (c *cookieSecrets) issue(ni []byte, ip netip.Addr, spiI uint64, now time.Time) []byte {
	c.rotate(now)
	return cookieHash(c.version, &c.cur, ni, ip, spiI)
}

// valid reports whether got is a cookie this responder made (with the
// current or the previous secret) for ni, ip and spiI.
func (c *cookieSecrets) valid(got, ni []byte, ip netip.Addr, spiI uint64, now time.Time) bool {
	c.rotate(now)
	if len(got) != cookieLen {
		return false
	}
	var want []byte
	switch {
	case got[0] == c.version:
		want = cookieHash(c.version, &c.cur, ni, ip, spiI)
	case got[0] == c.version-1 && c.hasPrev:
		want = cookieHash(c.version-1, &c.prev, ni, ip, spiI)
	default:
		return false
	}
	return subtle.ConstantTimeCompare(got, want) == 1
}
