package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/rand"
	"crypto/subtle"
	"encoding"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"
)

// Config is what New needs to build the crypto state of one SA.
type Config struct {
	// Transform is the ESP transform (see ParseTransform).
	Transform Transform
	// Key is the encryption key material in RFC / Linux xfrm layout: for
	// AES-GCM, AES-GMAC and ChaCha20-Poly1305 the cipher key followed by
	// the 4-byte salt; for AES-CTR the key followed by the 4-byte nonce;
	// empty for NULL encryption. Its length must be Transform.KeyLen().
	Key []byte
	// AuthKey is the HMAC key of non-AEAD transforms; its length must be
	// Transform.AuthKeyLen().
	AuthKey []byte
	// ESN enables 64-bit Extended Sequence Numbers (RFC 4303 §2.2.1 and
	// Appendix A): the high 32 bits enter the ICV (or the AEAD AAD, as in
	// RFC 4106 §5) but are not sent.
	ESN bool
	// TFCPadTo, when positive, pads every sealed payload shorter than it
	// with zero bytes up to that length (Traffic Flow Confidentiality,
	// RFC 4303 §2.4), or up to the limit set by SetTFCLimit when that is
	// lower. Only for payloads that carry their own length, as
	// tunnel-mode IP packets do: EncapTransport refuses to pad.
	TFCPadTo int
}

// Cipher is the resolved crypto state of one SA: key schedules, HMAC
// states and salt, built once by New so that nothing is derived per
// packet. A Cipher is safe for concurrent use by any number of goroutines
// provided each passes its own Scratch.
type Cipher struct {
	t        Transform
	esn      bool
	tfc      int
	tfcLimit atomic.Int32 // SetTFCLimit; 0: none
	aead     cipher.AEAD  // GCM (16-byte tag when gcm8), GMAC, ChaCha20-Poly1305
	block    cipher.Block // AES/3DES for CBC and CTR; AES for GCM with an 8-byte ICV
	gcm8     bool
	salt     [4]byte
	ivGen    cipher.Block // per-SA random AES key that turns sequence numbers into CBC IVs
	inner    []byte       // marshalled HMAC inner state after the ipad block
	outer    []byte       // marshalled HMAC outer state after the opad block
	encModes sync.Pool    // CBC encrypters (cipher.BlockMode with SetIV)
	decModes sync.Pool    // CBC decrypters
	testIV   []byte       // known-answer tests only: use this IV instead of the generator
}

// cbcMode is the interface the standard library's CBC modes implement so
// that one mode value can be reused with a new IV (crypto/tls relies on it).
type cbcMode interface {
	cipher.BlockMode
	SetIV([]byte)
}

// New builds the crypto state for cfg. Key material is copied; the caller
// may wipe its slices afterwards.
func New(cfg Config) (*Cipher, error) {
	t := cfg.Transform
	if t.IsZero() {
		return nil, fmt.Errorf("%w: zero Transform", ErrUnsupported)
	}
	if len(cfg.Key) != t.KeyLen() {
		return nil, fmt.Errorf("%w: %s needs a %d-byte key (got %d)", ErrKeySize, t.name, t.KeyLen(), len(cfg.Key))
	}
	if len(cfg.AuthKey) != t.AuthKeyLen() {
		return nil, fmt.Errorf("%w: %s needs a %d-byte authentication key (got %d)", ErrKeySize, t.name, t.AuthKeyLen(), len(cfg.AuthKey))
	}
	if cfg.TFCPadTo < 0 || cfg.TFCPadTo > 65535 {
		return nil, fmt.Errorf("%w: TFCPadTo %d out of range", ErrUnsupported, cfg.TFCPadTo)
	}
	c := &Cipher{t: t, esn: cfg.ESN, tfc: cfg.TFCPadTo}
	key, salt := cfg.Key[:t.encKey], cfg.Key[t.encKey:]
	copy(c.salt[:], salt)
	var err error
	switch t.enc {
	case encAESGCM, encAESGMAC:
		var b cipher.Block
		if b, err = aes.NewCipher(key); err != nil {
			return nil, err
		}
		if t.enc == encAESGCM && t.icv >= 12 {
			c.aead, err = cipher.NewGCMWithTagSize(b, t.icv)
		} else {
			// The standard library refuses tags under 12 bytes; an 8-byte
			// ICV is the full tag truncated (NIST SP 800-38D §7.1).
			c.aead, err = cipher.NewGCM(b)
			c.gcm8 = t.enc == encAESGCM
			c.block = b
		}
	case encChaCha:
		c.aead, err = chacha20poly1305.New(key)
	case encAESCBC, encAESCTR:
		c.block, err = aes.NewCipher(key)
	case enc3DESCBC:
		c.block, err = des.NewTripleDESCipher(key)
	case encNull:
	default:
		err = fmt.Errorf("%w: %s", ErrUnsupported, t.name)
	}
	if err != nil {
		return nil, err
	}
	if t.enc == encAESCBC || t.enc == enc3DESCBC {
		var k [16]byte
		if _, err := rand.Read(k[:]); err != nil {
			return nil, err
		}
		c.ivGen, _ = aes.NewCipher(k[:])
		clear(k[:])
		blk := c.block
		zero := make([]byte, blk.BlockSize())
		c.encModes.New = func() any { return cipher.NewCBCEncrypter(blk, zero).(cbcMode) }
		c.decModes.New = func() any { return cipher.NewCBCDecrypter(blk, zero).(cbcMode) }
	}
	if t.integ != integNone {
		c.inner, c.outer = hmacStates(t.integ, cfg.AuthKey)
	}
	return c, nil
}

// hmacStates precomputes HMAC's keyed inner and outer hash states
// (RFC 2104) so each packet starts from a copy instead of re-hashing the
// padded key twice.
func hmacStates(alg integAlg, key []byte) (inner, outer []byte) {
	h := newHash(alg)
	bs := h.BlockSize()
	k := make([]byte, bs)
	if len(key) > bs {
		h.Write(key)
		h.Sum(k[:0])
		h.Reset()
	} else {
		copy(k, key)
	}
	pad := make([]byte, bs)
	state := func(x byte) []byte {
		for i := range pad {
			pad[i] = k[i] ^ x
		}
		h.Reset()
		h.Write(pad)
		st, err := h.(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			panic("esp: hash state not marshalable: " + err.Error())
		}
		return st
	}
	inner, outer = state(0x36), state(0x5c)
	clear(k)
	clear(pad)
	h.Reset()
	return inner, outer
}

// Transform returns the SA's transform.
func (c *Cipher) Transform() Transform { return c.t }

// ESN reports whether the SA uses Extended Sequence Numbers.
func (c *Cipher) ESN() bool { return c.esn }

// HeaderLen is the number of bytes Seal writes in front of the payload:
// SPI, sequence number and IV.
func (c *Cipher) HeaderLen() int { return HeaderLen + c.t.ivLen }

func (c *Cipher) align() int { return max(c.t.block, 4) }

// padLen returns the RFC 4303 padding for a payload of n bytes.
func (c *Cipher) padLen(n int) int {
	a := c.align()
	return (a - (n+2)%a) % a
}

// TrailerRoom is the tailroom Seal needs beyond a payload of n bytes:
// TFC padding, padding, Pad Length, Next Header, ICV, and scratch space
// some transforms use while computing the ICV.
func (c *Cipher) TrailerRoom(n int) int {
	m := max(n, c.tfcTo())
	extra := 0
	if c.gcm8 {
		extra = 8
	}
	return (m - n) + c.padLen(m) + 2 + c.t.icv + extra
}

// Overhead is the number of bytes ESP adds to a payload of n bytes
// (header, IV, TFC padding, padding, trailer and ICV), not counting any
// outer IP or UDP header.
func (c *Cipher) Overhead(n int) int {
	m := max(n, c.tfcTo())
	return c.HeaderLen() + (m - n) + c.padLen(m) + 2 + c.t.icv
}

// SetTFCLimit caps TFC padding (Config.TFCPadTo) at n bytes of payload;
// 0 removes the cap. The sa package sets it to the SA's plaintext MTU, so
// that padding never makes a packet larger than the path MTU allows. It
// is safe to call while other goroutines seal.
func (c *Cipher) SetTFCLimit(n int) {
	c.tfcLimit.Store(int32(min(max(n, 0), 65535)))
}

// tfcTo is the length TFC padding pads payloads up to (0: none).
func (c *Cipher) tfcTo() int {
	if l := int(c.tfcLimit.Load()); l > 0 && l < c.tfc {
		return l
	}
	return c.tfc
}

// Wipe clears the key material this Cipher holds (salt, HMAC states, CBC IV
// key) and makes further Seal and Open calls fail with ErrUnsupported.
// It must not run concurrently with Seal or Open: the sa package wipes an
// SA only once no worker can still reach it.
// The expanded AES key schedules live inside crypto/aes, which offers no
// way to clear them; once the Cipher is unreachable they are garbage.
func (c *Cipher) Wipe() {
	clear(c.salt[:])
	clear(c.inner)
	clear(c.outer)
	c.inner, c.outer = nil, nil
	c.aead, c.block, c.ivGen = nil, nil, nil
	c.encModes.New, c.decModes.New = nil, nil
	c.t = Transform{}
}

// Seal encrypts and authenticates, in place, the payload b[off:off+n] as
// one ESP packet with the given SPI and sequence number (the full 64-bit
// value when ESN is on; its low 32 bits are sent). It writes the ESP header
// and IV into the headroom b[off-HeaderLen():off] and the padding, trailer
// and ICV after the payload, within cap(b), and returns the ESP packet
// (SPI to ICV) as a slice of b. nextHeader is the protocol of the payload
// (4 for IPv4 and 41 for IPv6 in tunnel mode, the transport protocol in
// transport mode, 59 for a dummy packet).
//
// The IV is never repeated under a key: AEAD and CTR transforms use the
// sequence number (RFC 4106 §3.1), CBC transforms the sequence number
// encrypted under a random per-SA key, which is unpredictable as RFC 3602
// requires. The caller must therefore never reuse a sequence number.
func (c *Cipher) Seal(s *Scratch, b []byte, off, n int, spi uint32, seq uint64, nextHeader byte) ([]byte, error) {
	if c.t.IsZero() {
		return nil, errWiped
	}
	hl := c.HeaderLen()
	if off < hl || n < 0 || off+n > cap(b) {
		return nil, ErrNoRoom
	}
	m := max(n, c.tfcTo())
	pad := c.padLen(m)
	end := off + m + pad + 2 + c.t.icv
	need := end
	if c.gcm8 {
		need += 8
	}
	if need > cap(b) {
		return nil, ErrNoRoom
	}
	if end-(off-hl) > 65535 {
		return nil, ErrTooBig
	}
	b = b[:need]
	clear(b[off+n : off+m])
	t := b[off+m:]
	for i := 0; i < pad; i++ {
		t[i] = byte(i + 1)
	}
	t[pad] = byte(pad)
	t[pad+1] = nextHeader
	pkt := b[off-hl : end]
	binary.BigEndian.PutUint32(pkt[0:4], spi)
	binary.BigEndian.PutUint32(pkt[4:8], uint32(seq))
	c.seal(s, pkt, seq)
	return pkt, nil
}

func (c *Cipher) aadFor(s *Scratch, pkt []byte, seq uint64) []byte {
	if !c.esn {
		return pkt[:HeaderLen]
	}
	copy(s.aad[0:4], pkt[0:4])
	binary.BigEndian.PutUint32(s.aad[4:8], uint32(seq>>32))
	copy(s.aad[8:12], pkt[4:8])
	return s.aad[:]
}

func (c *Cipher) nonceFor(s *Scratch, iv []byte) []byte {
	copy(s.nonce[:4], c.salt[:])
	copy(s.nonce[4:], iv)
	return s.nonce[:]
}

// seal fills in the IV, encrypts pkt[hl:len-icv] and writes the ICV.
func (c *Cipher) seal(s *Scratch, pkt []byte, seq uint64) {
	hl, icv := c.HeaderLen(), c.t.icv
	iv := pkt[HeaderLen:hl]
	c.makeIV(s, iv, seq)
	body := pkt[hl : len(pkt)-icv]
	switch c.t.enc {
	case encAESGCM, encChaCha:
		nonce := c.nonceFor(s, iv)
		c.aead.Seal(body[:0], nonce, body, c.aadFor(s, pkt, seq))
		// With an 8-byte ICV the 16-byte tag ran 8 bytes past pkt, into
		// the room Seal reserved; the ICV is its first half.
	case encAESGMAC:
		nonce := c.nonceFor(s, iv)
		tag := c.aead.Seal(s.tag[:0], nonce, nil, c.gmacAAD(s, pkt, seq))
		copy(pkt[len(pkt)-icv:], tag)
	case encAESCBC, enc3DESCBC:
		m := c.encModes.Get().(cbcMode)
		m.SetIV(iv)
		m.CryptBlocks(body, body)
		c.encModes.Put(m)
		c.putMAC(s, pkt, seq)
	case encAESCTR:
		c.ctr(s, iv, 1, body)
		c.putMAC(s, pkt, seq)
	case encNull:
		c.putMAC(s, pkt, seq)
	}
}

// makeIV writes a fresh IV for sequence number seq.
func (c *Cipher) makeIV(s *Scratch, iv []byte, seq uint64) {
	switch {
	case len(iv) == 0:
	case c.testIV != nil:
		copy(iv, c.testIV)
	case c.ivGen != nil:
		clear(s.iv[:])
		binary.BigEndian.PutUint64(s.iv[:8], seq)
		c.ivGen.Encrypt(s.iv[:], s.iv[:])
		copy(iv, s.iv[:])
	default:
		binary.BigEndian.PutUint64(iv, seq)
	}
}

// gmacAAD returns the RFC 4543 §3.2 AAD: SPI, sequence number (both halves
// with ESN), IV and the whole unencrypted payload with its trailer.
func (c *Cipher) gmacAAD(s *Scratch, pkt []byte, seq uint64) []byte {
	body := pkt[:len(pkt)-c.t.icv]
	if !c.esn {
		return body
	}
	a := s.grow(len(body) + 4)
	copy(a[0:4], body[0:4])
	binary.BigEndian.PutUint32(a[4:8], uint32(seq>>32))
	copy(a[8:], body[4:])
	return a
}

// mac computes the truncated HMAC ICV over pkt[:len-icv], followed with ESN
// by the high 32 bits of the sequence number (RFC 4303 §2.2.1).
func (c *Cipher) mac(s *Scratch, pkt []byte, seq uint64) []byte {
	h := s.hash(c.t.integ)
	u := h.(encoding.BinaryUnmarshaler)
	_ = u.UnmarshalBinary(c.inner)
	h.Write(pkt[:len(pkt)-c.t.icv])
	if c.esn {
		binary.BigEndian.PutUint32(s.hi[:], uint32(seq>>32))
		h.Write(s.hi[:])
	}
	sum := h.Sum(s.tag[:0])
	_ = u.UnmarshalBinary(c.outer)
	h.Write(sum)
	return h.Sum(s.tag[:0])[:c.t.icv]
}

func (c *Cipher) putMAC(s *Scratch, pkt []byte, seq uint64) {
	copy(pkt[len(pkt)-c.t.icv:], c.mac(s, pkt, seq))
}

// ctr XORs data with the AES-CTR keystream for counter blocks
// salt‖iv‖counter starting at counter first: RFC 3686 uses first = 1, the
// GCM encryption keystream (for the 8-byte-ICV path) first = 2.
func (c *Cipher) ctr(s *Scratch, iv []byte, first uint32, data []byte) {
	copy(s.ctr[0:4], c.salt[:])
	copy(s.ctr[4:12], iv)
	for i := first; len(data) > 0; i++ {
		binary.BigEndian.PutUint32(s.ctr[12:16], i)
		c.block.Encrypt(s.ks[:], s.ctr[:])
		n := subtle.XORBytes(data, data, s.ks[:])
		data = data[n:]
	}
}

// Open authenticates and decrypts, in place, the ESP packet pkt (from the
// SPI to the end of the ICV). seq is the full sequence number: with ESN the
// caller supplies the high 32 bits it inferred from its replay window
// (RFC 4303 Appendix A). Only those high bits of seq are used: the low 32
// bits are always taken from the header, which the ICV covers. On success it
// returns the payload, as a slice of pkt without padding or trailer, and
// the Next Header value. A dummy packet (Next Header 59) returns ErrDummy
// after it authenticated. Nothing is returned of a packet whose ICV fails.
func (c *Cipher) Open(s *Scratch, pkt []byte, seq uint64) (payload []byte, nextHeader byte, err error) {
	if c.t.IsZero() {
		return nil, 0, errWiped
	}
	hl, icv := c.HeaderLen(), c.t.icv
	minBody := 2
	if c.t.block > 1 {
		minBody = c.t.block
	}
	if len(pkt) < hl+minBody+icv {
		return nil, 0, ErrTruncated
	}
	bodyLen := len(pkt) - hl - icv
	if bodyLen%c.t.block != 0 {
		return nil, 0, ErrMalformed
	}
	if !c.open(s, pkt, seq) {
		return nil, 0, ErrAuth
	}
	body := pkt[hl : hl+bodyLen]
	pad := int(body[bodyLen-2])
	nh := body[bodyLen-1]
	if pad+2 > bodyLen {
		return nil, 0, ErrPadding
	}
	p := body[bodyLen-2-pad : bodyLen-2]
	for i, v := range p {
		if v != byte(i+1) {
			return nil, 0, ErrPadding
		}
	}
	payload = body[:bodyLen-2-pad]
	if nh == NextHeaderNone {
		return payload, nh, ErrDummy
	}
	return payload, nh, nil
}

// open verifies and decrypts in place; it reports whether the ICV verified.
func (c *Cipher) open(s *Scratch, pkt []byte, seq uint64) bool {
	hl, icv := c.HeaderLen(), c.t.icv
	iv := pkt[HeaderLen:hl]
	body := pkt[hl : len(pkt)-icv]
	switch c.t.enc {
	case encAESGCM, encChaCha:
		nonce := c.nonceFor(s, iv)
		aad := c.aadFor(s, pkt, seq)
		if !c.gcm8 {
			_, err := c.aead.Open(body[:0], nonce, pkt[hl:], aad)
			return err == nil
		}
		// 8-byte ICV: GCM encryption is its keystream XOR, so sealing the
		// ciphertext yields the plaintext (its tag is meaningless); sealing
		// that plaintext again yields the real full tag, whose first 8
		// bytes must match. Two passes of the assembly GCM beat one pass of
		// block-at-a-time CTR. The plaintext is erased if the tag differs.
		buf := s.grow(len(body) + 16)
		copy(body, c.aead.Seal(buf[:0], nonce, body, aad)[:len(body)])
		out := c.aead.Seal(buf[:0], nonce, body, aad)
		if subtle.ConstantTimeCompare(out[len(body):len(body)+icv], pkt[len(pkt)-icv:]) != 1 {
			clear(body)
			return false
		}
		return true
	case encAESGMAC:
		nonce := c.nonceFor(s, iv)
		tag := c.aead.Seal(s.tag[:0], nonce, nil, c.gmacAAD(s, pkt, seq))
		return subtle.ConstantTimeCompare(tag, pkt[len(pkt)-icv:]) == 1
	}
	if subtle.ConstantTimeCompare(c.mac(s, pkt, seq), pkt[len(pkt)-icv:]) != 1 {
		return false
	}
	switch c.t.enc {
	case encAESCBC, enc3DESCBC:
		m := c.decModes.Get().(cbcMode)
		m.SetIV(iv)
		m.CryptBlocks(body, body)
		c.decModes.Put(m)
	case encAESCTR:
		c.ctr(s, iv, 1, body)
	}
	return true
}
