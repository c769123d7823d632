package esp

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"hash"
)

// Scratch is per-worker working memory for Seal and Open: nonce and AAD
// buffers, HMAC hash states and a growable buffer for the rare transforms
// that need a copy (AES-GCM with an 8-byte ICV on decrypt, AES-GMAC with
// ESN). Passing these through a cipher.AEAD interface from the stack would
// make them escape to the heap on every packet; keeping them here is what
// makes the hot path allocation-free.
//
// A Scratch is not safe for concurrent use: give each worker goroutine its
// own. It holds no key material between calls beyond HMAC states derived
// from keys, which the next call overwrites; call Wipe to clear it.
type Scratch struct {
	nonce [12]byte
	aad   [12]byte
	hi    [4]byte
	tag   [64]byte
	iv    [16]byte
	ctr   [16]byte
	ks    [16]byte
	h     [5]hash.Hash // indexed by integAlg
	buf   []byte
}

// NewScratch returns a ready Scratch. The zero value is ready too.
func NewScratch() *Scratch { return new(Scratch) }

func (s *Scratch) hash(alg integAlg) hash.Hash {
	if h := s.h[alg]; h != nil {
		return h
	}
	h := newHash(alg)
	s.h[alg] = h
	return h
}

// grow returns s.buf resized to n bytes, reallocating only when it must.
func (s *Scratch) grow(n int) []byte {
	if cap(s.buf) < n {
		s.buf = make([]byte, n, n+n/4)
	}
	return s.buf[:n]
}

// Wipe clears the buffers and drops the hash states.
func (s *Scratch) Wipe() {
	clear(s.buf[:cap(s.buf)])
	*s = Scratch{buf: s.buf}
}

func newHash(alg integAlg) hash.Hash {
	switch alg {
	case integSHA1:
		return sha1.New()
	case integSHA256:
		return sha256.New()
	case integSHA384:
		return sha512.New384()
	case integSHA512:
		return sha512.New()
	}
	return nil
}
