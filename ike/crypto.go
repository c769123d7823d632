package ike

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"hash"
)

// prfFunc is one of the HMAC-SHA2 PRFs (RFC 4868).
type prfFunc struct {
	id  uint16
	new func() hash.Hash
	len int
}

func prfByID(id uint16) (prfFunc, bool) {
	switch id {
	case PRFHMACSHA256:
		return prfFunc{id, sha256.New, 32}, true
	case PRFHMACSHA384:
		return prfFunc{id, sha512.New384, 48}, true
	case PRFHMACSHA512:
		return prfFunc{id, sha512.New, 64}, true
	}
	return prfFunc{}, false
}

// sum computes prf(key, data...).
func (p prfFunc) sum(key []byte, data ...[]byte) []byte {
	m := hmac.New(p.new, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}

// plus computes the first n octets of prf+(K, S) (RFC 7296 §2.13):
// T1 = prf(K, S | 0x01), Tk = prf(K, Tk-1 | S | k). At most 255 blocks.
func (p prfFunc) plus(key, s []byte, n int) []byte {
	if n > 255*p.len {
		panic("ike: prf+ output too long") // callers ask for bounded lengths
	}
	out := make([]byte, 0, n+p.len)
	var t []byte
	for i := byte(1); len(out) < n; i++ {
		t = p.sum(key, t, s, []byte{i})
		out = append(out, t...)
	}
	return out[:n]
}

// integ is an IKE integrity algorithm (HMAC-SHA2 truncated, RFC 4868).
type integ struct {
	new    func() hash.Hash
	keyLen int
	icv    int
}

func integByID(id uint16) (integ, bool) {
	switch id {
	case IntegHMACSHA256_128:
		return integ{sha256.New, 32, 16}, true
	case IntegHMACSHA384_192:
		return integ{sha512.New384, 48, 24}, true
	case IntegHMACSHA512_256:
		return integ{sha512.New, 64, 32}, true
	}
	return integ{}, false
}

// suite is the negotiated IKE SA algorithms.
type suite struct {
	prf    prfFunc
	aead   bool
	encKey int // bytes, salt excluded
	integ  integ
	dh     DHGroup
}

func suiteFor(p Proposal) (suite, error) {
	var s suite
	e, ok1 := p.get(TransformEncr)
	pr, ok2 := p.get(TransformPRF)
	d, ok3 := p.get(TransformDH)
	if !ok1 || !ok2 || !ok3 {
		return s, errf(ErrMalformed, "IKE proposal lacks encryption, PRF or DH")
	}
	if s.prf, ok2 = prfByID(pr.ID); !ok2 {
		return s, errf(ErrUnsupported, "PRF %d", pr.ID)
	}
	if e.KeyLen != 128 && e.KeyLen != 192 && e.KeyLen != 256 {
		return s, errf(ErrUnsupported, "encryption key length %d", e.KeyLen)
	}
	s.encKey = int(e.KeyLen / 8)
	switch e.ID {
	case EncrAESGCM16:
		s.aead = true
	case EncrAESCBC:
		i, ok := p.get(TransformInteg)
		if !ok {
			return s, errf(ErrMalformed, "AES-CBC without integrity")
		}
		if s.integ, ok = integByID(i.ID); !ok {
			return s, errf(ErrUnsupported, "integrity %d", i.ID)
		}
	default:
		return s, errf(ErrUnsupported, "encryption %d", e.ID)
	}
	if _, ok := dhGroups[DHGroup(d.ID)]; !ok {
		return s, errf(ErrUnsupported, "DH group %d", d.ID)
	}
	s.dh = DHGroup(d.ID)
	return s, nil
}

// skeyLen is the length of SK_ei/SK_er: key plus the 4-byte salt of GCM
// (RFC 5282 §7.1).
func (s suite) skeyLen() int {
	if s.aead {
		return s.encKey + 4
	}
	return s.encKey
}

// keys holds an IKE SA's keys (RFC 7296 §2.14).
type keys struct {
	d, ai, ar, ei, er, pi, pr []byte
}

func (k *keys) wipe() {
	for _, b := range [][]byte{k.d, k.ai, k.ar, k.ei, k.er, k.pi, k.pr} {
		clear(b)
	}
}

// deriveKeys computes SKEYSEED = prf(Ni | Nr, g^ir) and
// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} =
// prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) (RFC 7296 §2.14).
func deriveKeys(s suite, ni, nr, gir []byte, spii, spir uint64) *keys {
	seed := s.prf.sum(append(append([]byte(nil), ni...), nr...), gir)
	defer clear(seed)
	return expandKeys(s, seed, ni, nr, spii, spir)
}

// expandKeys computes {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi |
// SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).
func expandKeys(s suite, seed, ni, nr []byte, spii, spir uint64) *keys {
	var spis [16]byte
	binary.BigEndian.PutUint64(spis[:], spii)
	binary.BigEndian.PutUint64(spis[8:], spir)
	S := append(append(append([]byte(nil), ni...), nr...), spis[:]...)
	n := 3*s.prf.len + 2*s.integ.keyLen + 2*s.skeyLen()
	km := s.prf.plus(seed, S, n)
	k := &keys{}
	take := func(l int) []byte { b := km[:l:l]; km = km[l:]; return b }
	k.d = take(s.prf.len)
	k.ai = take(s.integ.keyLen)
	k.ar = take(s.integ.keyLen)
	k.ei = take(s.skeyLen())
	k.er = take(s.skeyLen())
	k.pi = take(s.prf.len)
	k.pr = take(s.prf.len)
	return k
}

// pskAuth computes the PSK AUTH value (RFC 7296 §2.15):
// prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>) with
// SignedOctets = RealMessage | Nonce of the peer | prf(SK_p, RestOfIDPayload).
func pskAuth(p prfFunc, psk, realMsg, peerNonce, skp, idBody []byte) []byte {
	macedID := p.sum(skp, idBody)
	pad := p.sum(psk, []byte("Key Pad for IKEv2"))
	defer clear(pad)
	return p.sum(pad, realMsg, peerNonce, macedID)
}

// sealSK builds an encrypted message: the header h, unencrypted nothing,
// one SK payload holding inner (RFC 7296 §3.14; RFC 5282 for GCM).
// ke/ka are the sender's SK_e and SK_a.
func sealSK(s suite, ke, ka []byte, h Header, inner []Payload) ([]byte, error) {
	plain, first := appendChain(nil, inner)
	var ivLen, block, icv int
	if s.aead {
		ivLen, block, icv = 8, 4, 16
	} else {
		ivLen, block, icv = 16, 16, s.integ.icv
	}
	padLen := (block - (len(plain)+1)%block) % block
	for i := 0; i < padLen; i++ {
		plain = append(plain, 0)
	}
	plain = append(plain, byte(padLen))
	total := HeaderLen + 4 + ivLen + len(plain) + icv
	if total > MaxMessageLen {
		return nil, errf(ErrBadLength, "message of %d bytes", total)
	}
	b := make([]byte, HeaderLen+4, total)
	h.Next = PayloadSK
	h.Length = uint32(total)
	h.put(b)
	b[HeaderLen] = byte(first)
	binary.BigEndian.PutUint16(b[HeaderLen+2:], uint16(total-HeaderLen))
	iv := make([]byte, ivLen)
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	b = append(b, iv...)
	if s.aead {
		aead, err := gcmFor(ke)
		if err != nil {
			return nil, err
		}
		nonce := append(append([]byte(nil), ke[len(ke)-4:]...), iv...)
		b = aead.Seal(b, nonce, plain, b[:HeaderLen+4])
		return b, nil
	}
	blk, err := aes.NewCipher(ke)
	if err != nil {
		return nil, err
	}
	ct := make([]byte, len(plain))
	cipher.NewCBCEncrypter(blk, iv).CryptBlocks(ct, plain)
	b = append(b, ct...)
	m := hmac.New(s.integ.new, ka)
	m.Write(b)
	return append(b, m.Sum(nil)[:icv]...), nil
}

func gcmFor(ke []byte) (cipher.AEAD, error) {
	blk, err := aes.NewCipher(ke[:len(ke)-4])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

// openSK checks and decrypts the SK payload e of msg (the whole
// datagram) and parses the inner payloads.
func openSK(s suite, ke, ka []byte, msg []byte, e *Encrypted) ([]Payload, error) {
	var ivLen, icv int
	if s.aead {
		ivLen, icv = 8, 16
	} else {
		ivLen, icv = 16, s.integ.icv
	}
	d := e.Data
	if len(d) < ivLen+icv+1 {
		return nil, errf(ErrTruncated, "SK payload of %d bytes", len(d))
	}
	iv := d[:ivLen]
	var plain []byte
	if s.aead {
		aead, err := gcmFor(ke)
		if err != nil {
			return nil, err
		}
		nonce := append(append([]byte(nil), ke[len(ke)-4:]...), iv...)
		plain, err = aead.Open(nil, nonce, d[ivLen:], msg[:e.Offset+4])
		if err != nil {
			return nil, errf(ErrIntegrity, "AES-GCM")
		}
	} else {
		m := hmac.New(s.integ.new, ka)
		m.Write(msg[:len(msg)-icv])
		if subtle.ConstantTimeCompare(m.Sum(nil)[:icv], msg[len(msg)-icv:]) != 1 {
			return nil, errf(ErrIntegrity, "HMAC")
		}
		ct := d[ivLen : len(d)-icv]
		if len(ct) == 0 || len(ct)%16 != 0 {
			return nil, errf(ErrBadLength, "CBC ciphertext of %d bytes", len(ct))
		}
		blk, err := aes.NewCipher(ke)
		if err != nil {
			return nil, err
		}
		plain = make([]byte, len(ct))
		cipher.NewCBCDecrypter(blk, iv).CryptBlocks(plain, ct)
	}
	if len(plain) < 1 {
		return nil, errf(ErrTruncated, "empty SK plaintext")
	}
	pad := int(plain[len(plain)-1])
	if pad+1 > len(plain) {
		return nil, errf(ErrMalformed, "SK pad length %d", pad)
	}
	return parseChain(e.Next, plain[:len(plain)-1-pad], 0)
}
