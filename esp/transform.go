package esp

import (
	"fmt"
	"sort"
	"strings"
)

// encAlg identifies the encryption (or combined-mode) algorithm.
type encAlg uint8

const (
	encNull    encAlg = iota + 1 // RFC 2410
	encAESCBC                    // RFC 3602
	encAESCTR                    // RFC 3686
	enc3DESCBC                   // RFC 2451
	encAESGCM                    // RFC 4106
	encAESGMAC                   // RFC 4543 (authentication only)
	encChaCha                    // RFC 7634
)

// integAlg identifies the integrity algorithm of a non-AEAD transform.
type integAlg uint8

const (
	integNone   integAlg = iota // AEAD transforms carry their own ICV
	integSHA1                   // HMAC-SHA1-96, RFC 2404
	integSHA256                 // HMAC-SHA-256-128, RFC 4868
	integSHA384                 // HMAC-SHA-384-192, RFC 4868
	integSHA512                 // HMAC-SHA-512-256, RFC 4868
)

// Transform describes an ESP transform: the algorithms, key sizes, IV,
// block and ICV lengths. It holds no keys. The zero value is invalid; get
// one from ParseTransform.
//
// Names follow the ESP proposal keywords that strongSwan and most IKEv2
// configurations use ("aes128gcm16", "aes256-sha256", "chacha20poly1305",
// "aes128gmac", "null-sha256", "3des-sha1"); Linux xfrm names such as
// "rfc4106(gcm(aes))" describe the same algorithms.
type Transform struct {
	name    string
	enc     encAlg
	encKey  int // cipher key bytes, without salt/nonce
	salt    int // bytes of salt (GCM, GMAC, ChaCha) or nonce (CTR) appended to the key
	integ   integAlg
	icv     int
	ivLen   int
	block   int // cipher block size for padding (1 for stream/AEAD)
	weak    bool
	authKey int
}

// Name returns the canonical transform name, as accepted by ParseTransform.
func (t Transform) Name() string { return t.name }

// String returns the canonical name.
func (t Transform) String() string { return t.name }

// IsZero reports whether t is the zero (invalid) Transform.
func (t Transform) IsZero() bool { return t.enc == 0 }

// AEAD reports whether the transform is a combined-mode algorithm
// (AES-GCM, AES-GMAC, ChaCha20-Poly1305) that needs no separate
// authentication key.
func (t Transform) AEAD() bool { return t.integ == integNone }

// Encrypts reports whether the payload is confidential (false for NULL
// encryption and AES-GMAC).
func (t Transform) Encrypts() bool { return t.enc != encNull && t.enc != encAESGMAC }

// KeyLen is the length of the encryption key material in bytes, including
// the 4-byte salt (GCM, GMAC, ChaCha20-Poly1305) or nonce (CTR) that
// RFC 4106, 4543, 7634 and 3686 append to the key, as Linux xfrm does.
func (t Transform) KeyLen() int { return t.encKey + t.salt }

// AuthKeyLen is the length of the HMAC key in bytes, 0 for AEAD.
func (t Transform) AuthKeyLen() int { return t.authKey }

// IVLen is the length of the IV carried in every packet.
func (t Transform) IVLen() int { return t.ivLen }

// ICVLen is the length of the Integrity Check Value.
func (t Transform) ICVLen() int { return t.icv }

// BlockSize is the alignment that padding must reach for the cipher; the
// packet is in addition always padded to a multiple of 4 bytes.
func (t Transform) BlockSize() int { return t.block }

// Weak reports legacy transforms kept for interoperability only
// (3DES-CBC, NULL encryption, HMAC-SHA1-96). Do not pick them for new
// deployments.
func (t Transform) Weak() bool { return t.weak }

var encNames = map[string]Transform{
	"null":      {enc: encNull, block: 1, weak: true},
	"aes128":    {enc: encAESCBC, encKey: 16, ivLen: 16, block: 16},
	"aes192":    {enc: encAESCBC, encKey: 24, ivLen: 16, block: 16},
	"aes256":    {enc: encAESCBC, encKey: 32, ivLen: 16, block: 16},
	"aes128ctr": {enc: encAESCTR, encKey: 16, salt: 4, ivLen: 8, block: 1},
	"aes192ctr": {enc: encAESCTR, encKey: 24, salt: 4, ivLen: 8, block: 1},
	"aes256ctr": {enc: encAESCTR, encKey: 32, salt: 4, ivLen: 8, block: 1},
	"3des":      {enc: enc3DESCBC, encKey: 24, ivLen: 8, block: 8, weak: true},
}

var integNames = map[string]struct {
	alg     integAlg
	icv     int
	key     int
	weak    bool
	aliases []string
}{
	"sha1":   {integSHA1, 12, 20, true, []string{"sha1_96"}},
	"sha256": {integSHA256, 16, 32, false, []string{"sha2_256", "sha256_128"}},
	"sha384": {integSHA384, 24, 48, false, []string{"sha2_384", "sha384_192"}},
	"sha512": {integSHA512, 32, 64, false, []string{"sha2_512", "sha512_256"}},
}

// aeadTransforms lists the combined-mode transforms by canonical name.
var aeadTransforms = func() map[string]Transform {
	m := map[string]Transform{
		"chacha20poly1305": {enc: encChaCha, encKey: 32, salt: 4, ivLen: 8, block: 1, icv: 16},
	}
	for _, bits := range []int{128, 192, 256} {
		for _, icv := range []int{8, 12, 16} {
			m[fmt.Sprintf("aes%dgcm%d", bits, icv)] = Transform{enc: encAESGCM, encKey: bits / 8, salt: 4, ivLen: 8, block: 1, icv: icv}
		}
		m[fmt.Sprintf("aes%dgmac", bits)] = Transform{enc: encAESGMAC, encKey: bits / 8, salt: 4, ivLen: 8, block: 1, icv: 16}
	}
	for n, t := range m {
		t.name = n
		m[n] = t
	}
	return m
}()

// ParseTransform returns the transform with the given name. Accepted:
//
//   - AEAD: aes{128,192,256}gcm{8,12,16} (aesNNNgcm alone means ICV 16),
//     aes{128,192,256}gmac, chacha20poly1305;
//   - encryption-integrity pairs "<enc>-<integ>" with enc one of aes128,
//     aes192, aes256 (CBC), aes128ctr, aes192ctr, aes256ctr, 3des, null and
//     integ one of sha1 (HMAC-SHA1-96), sha256 (HMAC-SHA-256-128), sha384
//     (HMAC-SHA-384-192), sha512 (HMAC-SHA-512-256); the aliases sha1_96,
//     sha2_256, sha256_128, sha2_384, sha2_512 and "aes" for aes128 are
//     accepted too.
//
// Names are case-insensitive.
func ParseTransform(name string) (Transform, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	if t, ok := aeadTransforms[n]; ok {
		return t, nil
	}
	for _, bits := range []string{"128", "192", "256"} {
		if n == "aes"+bits+"gcm" {
			return aeadTransforms[n+"16"], nil
		}
	}
	encName, integName, ok := strings.Cut(n, "-")
	if !ok {
		return Transform{}, fmt.Errorf("%w: transform %q (want e.g. aes128gcm16 or aes256-sha256)", ErrUnsupported, name)
	}
	if encName == "aes" {
		encName = "aes128"
	}
	t, ok := encNames[encName]
	if !ok {
		return Transform{}, fmt.Errorf("%w: encryption algorithm %q in transform %q", ErrUnsupported, encName, name)
	}
	for canon, in := range integNames {
		match := integName == canon
		for _, a := range in.aliases {
			match = match || integName == a
		}
		if match {
			t.integ, t.icv, t.authKey = in.alg, in.icv, in.key
			t.weak = t.weak || in.weak
			t.name = encName + "-" + canon
			return t, nil
		}
	}
	return Transform{}, fmt.Errorf("%w: integrity algorithm %q in transform %q", ErrUnsupported, integName, name)
}

// MustParseTransform is ParseTransform for names known to be valid; it
// panics on an error and is meant for package-level variables and tests.
func MustParseTransform(name string) Transform {
	t, err := ParseTransform(name)
	if err != nil {
		panic(err)
	}
	return t
}

// TransformNames lists the canonical names of every supported transform,
// sorted.
func TransformNames() []string {
	var out []string
	for n := range aeadTransforms {
		out = append(out, n)
	}
	for e := range encNames {
		for i := range integNames {
			out = append(out, e+"-"+i)
		}
	}
	sort.Strings(out)
	return out
}

// CounterIV reports whether the transform's IV is the sequence number and
// its key material ends with a salt or nonce that, with the IV, makes the
// per-packet nonce (AES-GCM, AES-GMAC, AES-CTR, ChaCha20-Poly1305): a
// sequence number used twice under the same key repeats a nonce.
func (t Transform) CounterIV() bool {
	switch t.enc {
	case encAESGCM, encAESGMAC, encAESCTR, encChaCha:
		return true
	}
	return false
}

// KeyFamily names the primitive the transform's key material (Key, the
// cipher key with its salt or nonce) drives, for telling whether two
// transforms given the same key material repeat (key, nonce) pairs.
// AES-GCM with any ICV length, AES-GMAC and AES-CTR all build their
// counter blocks from the 4-byte salt or nonce, the IV (the sequence
// number) and a block counter, so the same key and salt give the same
// keystream (and GCM/GMAC the same GHASH key) whatever the ICV length:
// they share one family per AES key size ("aes128-ctr", "aes192-ctr",
// "aes256-ctr"). ChaCha20-Poly1305 is "chacha20". Transforms with
// random IVs (CBC) and NULL are their own family: their name. For
// CounterIV transforms the family and Key alone identify the key; for
// the others the integrity key belongs to it too.
func (t Transform) KeyFamily() string {
	switch t.enc {
	case encAESGCM, encAESGMAC, encAESCTR:
		return fmt.Sprintf("aes%d-ctr", t.encKey*8)
	case encChaCha:
		return "chacha20"
	}
	return t.name
}
