package esp

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// Algorithm parameters as the RFCs define them, kept apart from
// transform.go's tables.
var (
	// Encryption algorithms of the "<enc>-<integ>" transforms: key bytes
	// (with the 4-byte CTR nonce), IV bytes, block size for padding.
	tfEnc = map[string]struct {
		rfc            string
		key, iv, block int
		weak           bool
	}{
		"aes128":    {"RFC 3602", 16, 16, 16, false},
		"aes192":    {"RFC 3602", 24, 16, 16, false},
		"aes256":    {"RFC 3602", 32, 16, 16, false},
		"aes128ctr": {"RFC 3686 §5.1", 16 + 4, 8, 1, false},
		"aes192ctr": {"RFC 3686 §5.1", 24 + 4, 8, 1, false},
		"aes256ctr": {"RFC 3686 §5.1", 32 + 4, 8, 1, false},
		"3des":      {"RFC 2451", 24, 8, 8, true},
		"null":      {"RFC 2410", 0, 0, 1, true},
	}
	// Integrity algorithms: HMAC key bytes and truncated ICV bytes.
	tfInteg = map[string]struct {
		rfc      string
		key, icv int
		weak     bool
	}{
		"sha1":   {"RFC 2404", 20, 12, true},
		"sha256": {"RFC 4868 §2.1", 32, 16, false},
		"sha384": {"RFC 4868 §2.1", 48, 24, false},
		"sha512": {"RFC 4868 §2.1", 64, 32, false},
	}
)

type tfParams struct {
	name                         string
	rfc                          string
	key, authKey, iv, block, icv int
	aead, encrypts, weak         bool
}

// tfExpected lists every transform the package documents, with its
// parameters derived from the RFCs.
func tfExpected() []tfParams {
	var out []tfParams
	for _, bits := range []int{128, 192, 256} {
		b := map[int]string{128: "128", 192: "192", 256: "256"}[bits]
		for _, icv := range []int{8, 12, 16} {
			// RFC 4106 §8.1: key plus 4-byte salt; §3.1: 8-byte IV; §6: ICV 8, 12 or 16.
			out = append(out, tfParams{"aes" + b + "gcm" + map[int]string{8: "8", 12: "12", 16: "16"}[icv], "RFC 4106", bits/8 + 4, 0, 8, 1, icv, true, true, false})
		}
		// RFC 4543 §3.1, §3.5: key plus salt, 8-byte IV, 16-byte ICV, no confidentiality.
		out = append(out, tfParams{"aes" + b + "gmac", "RFC 4543", bits/8 + 4, 0, 8, 1, 16, true, false, false})
	}
	// RFC 7634 §2, §4: 32-byte key plus 4-byte salt, 8-byte IV, 16-byte tag.
	out = append(out, tfParams{"chacha20poly1305", "RFC 7634", 36, 0, 8, 1, 16, true, true, false})
	for e, ep := range tfEnc {
		for i, ip := range tfInteg {
			out = append(out, tfParams{e + "-" + i, ep.rfc + ", " + ip.rfc, ep.key, ip.key, ep.iv, ep.block, ip.icv, false, e != "null", ep.weak || ip.weak})
		}
	}
	return out
}

func TestTransformNames(t *testing.T) {
	names := TransformNames()
	if !slices.IsSorted(names) {
		t.Errorf("TransformNames not sorted: %v", names)
	}
	if len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Errorf("TransformNames has duplicates: %v", names)
	}
	var want []string
	for _, p := range tfExpected() {
		want = append(want, p.name)
	}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("TransformNames = %v\nwant %v", names, want)
	}
	for _, n := range names {
		tr, err := ParseTransform(n)
		if err != nil {
			t.Errorf("ParseTransform(%q): %v", n, err)
			continue
		}
		if tr.Name() != n || tr.String() != n || tr.IsZero() {
			t.Errorf("ParseTransform(%q) = %q / %q, zero %v", n, tr.Name(), tr.String(), tr.IsZero())
		}
		if again, err := ParseTransform(tr.Name()); err != nil || again != tr {
			t.Errorf("%q does not round-trip through Name: %v", n, err)
		}
	}
}

func TestTransformParameters(t *testing.T) {
	// A few rows spelled out, on top of the generated table.
	literal := []tfParams{
		{"aes256gcm12", "RFC 4106", 36, 0, 8, 1, 12, true, true, false},
		{"aes128gcm8", "RFC 4106", 20, 0, 8, 1, 8, true, true, false},
		{"chacha20poly1305", "RFC 7634", 36, 0, 8, 1, 16, true, true, false},
		{"aes192gmac", "RFC 4543", 28, 0, 8, 1, 16, true, false, false},
		{"3des-sha1", "RFC 2451, RFC 2404", 24, 20, 8, 8, 12, false, true, true},
		{"aes128-sha256", "RFC 3602, RFC 4868", 16, 32, 16, 16, 16, false, true, false},
		{"aes256ctr-sha512", "RFC 3686, RFC 4868", 36, 64, 8, 1, 32, false, true, false},
		{"null-sha384", "RFC 2410, RFC 4868", 0, 48, 0, 1, 24, false, false, true},
		{"aes192-sha1", "RFC 3602, RFC 2404", 24, 20, 16, 16, 12, false, true, true},
	}
	for _, p := range append(literal, tfExpected()...) {
		tr, err := ParseTransform(p.name)
		if err != nil {
			t.Errorf("%s: %v", p.name, err)
			continue
		}
		got := tfParams{p.name, p.rfc, tr.KeyLen(), tr.AuthKeyLen(), tr.IVLen(), tr.BlockSize(), tr.ICVLen(), tr.AEAD(), tr.Encrypts(), tr.Weak()}
		if got != p {
			t.Errorf("%s (%s):\n got key %d authkey %d iv %d block %d icv %d aead %v encrypts %v weak %v\nwant key %d authkey %d iv %d block %d icv %d aead %v encrypts %v weak %v",
				p.name, p.rfc, got.key, got.authKey, got.iv, got.block, got.icv, got.aead, got.encrypts, got.weak,
				p.key, p.authKey, p.iv, p.block, p.icv, p.aead, p.encrypts, p.weak)
		}
		if tr.IVLen() > MaxIVLen || tr.ICVLen() > MaxICVLen {
			t.Errorf("%s: IV %d / ICV %d above MaxIVLen / MaxICVLen", p.name, tr.IVLen(), tr.ICVLen())
		}
	}
}

func TestTransformAliases(t *testing.T) {
	for alias, canon := range map[string]string{
		"aes128gcm":            "aes128gcm16", // no ICV length means 16
		"aes192gcm":            "aes192gcm16",
		"aes256gcm":            "aes256gcm16",
		"AES256GCM12":          "aes256gcm12",
		"ChaCha20Poly1305":     "chacha20poly1305",
		" aes128-sha256 ":      "aes128-sha256",
		"aes-sha256":           "aes128-sha256",
		"aes-sha1":             "aes128-sha1",
		"aes128-sha2_256":      "aes128-sha256",
		"aes256-sha256_128":    "aes256-sha256",
		"3des-sha1_96":         "3des-sha1",
		"AES192-SHA2_384":      "aes192-sha384",
		"aes256ctr-sha384_192": "aes256ctr-sha384",
		"AES256CTR-SHA2_512":   "aes256ctr-sha512",
		"null-sha512_256":      "null-sha512",
		"Aes128Gmac":           "aes128gmac",
	} {
		tr, err := ParseTransform(alias)
		if err != nil {
			t.Errorf("ParseTransform(%q): %v", alias, err)
			continue
		}
		want := MustParseTransform(canon)
		if tr != want || tr.Name() != canon {
			t.Errorf("ParseTransform(%q) = %q, want %q", alias, tr.Name(), canon)
		}
	}
	if icv := MustParseTransform("aes128gcm").ICVLen(); icv != 16 {
		t.Errorf("aes128gcm ICV %d, want 16", icv)
	}
}

func TestTransformUnknown(t *testing.T) {
	for _, name := range []string{
		"", " ", "aes", "aes128", "null", "sha256", "aes512gcm16", "aes128gcm7",
		"aes128gcm32", "aes128gcm16x", "aes128-md5", "aes128-", "-sha256", "-",
		"des-sha1", "blowfish-sha1", "aes128gmac-sha256", "chacha20poly1305-sha1",
		"aes128-sha256-sha1", "aes128gcm16\x00", "aes 128gcm16", "rfc4106(gcm(aes))",
		"aes128-sha3", "aes128ctr", "aes128--sha1", "aes128_sha1", "\xff\xfe", strings.Repeat("a", 1000),
	} {
		tr, err := ParseTransform(name)
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("ParseTransform(%q): %v, want ErrUnsupported", name, err)
		}
		if !tr.IsZero() {
			t.Errorf("ParseTransform(%q) returned non-zero %q with the error", name, tr.Name())
		}
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Errorf("MustParseTransform of an unknown name did not panic")
			}
		}()
		MustParseTransform("rot13-crc32")
	}()
}

func TestNewKeySize(t *testing.T) {
	for _, name := range TransformNames() {
		tr := MustParseTransform(name)
		key, auth := make([]byte, tr.KeyLen()+1), make([]byte, tr.AuthKeyLen()+1)
		k, a := key[:tr.KeyLen()], auth[:tr.AuthKeyLen()]
		c, err := New(Config{Transform: tr, Key: k, AuthKey: a, ESN: true})
		if err != nil {
			t.Errorf("%s with right key sizes: %v", name, err)
			continue
		}
		if c.Transform() != tr || !c.ESN() {
			t.Errorf("%s: Cipher reports %q esn %v", name, c.Transform().Name(), c.ESN())
		}
		type badKeys struct {
			what      string
			key, auth []byte
		}
		bad := []badKeys{
			{"key one byte long", key, a},
			{"auth key one byte long", k, auth},
		}
		if tr.KeyLen() > 0 {
			bad = append(bad, badKeys{"key one byte short", k[:len(k)-1], a}, badKeys{"no key", nil, a})
		}
		if tr.KeyLen() >= 20 && tr.KeyLen()%8 == 4 {
			// The classic mistake: the cipher key without the 4-byte salt/nonce.
			bad = append(bad, badKeys{"key without salt", k[:len(k)-4], a})
		}
		if tr.AuthKeyLen() > 0 {
			bad = append(bad, badKeys{"auth key one byte short", k, a[:len(a)-1]})
		}
		for _, b := range bad {
			if _, err := New(Config{Transform: tr, Key: b.key, AuthKey: b.auth}); !errors.Is(err, ErrKeySize) {
				t.Errorf("%s, %s: %v, want ErrKeySize", name, b.what, err)
			}
		}
		for _, tfc := range []int{-1, 65536} {
			if _, err := New(Config{Transform: tr, Key: k, AuthKey: a, TFCPadTo: tfc}); !errors.Is(err, ErrUnsupported) {
				t.Errorf("%s TFCPadTo %d: %v, want ErrUnsupported", name, tfc, err)
			}
		}
	}
	if _, err := New(Config{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("New with zero Transform: %v, want ErrUnsupported", err)
	}
}

func TestCipherWipe(t *testing.T) {
	s := NewScratch()
	for _, name := range []string{"aes128gcm16", "aes256-sha256", "null-sha1"} {
		c := testCipher(t, name, false)
		buf := make([]byte, MaxHeadroom+10, MaxHeadroom+10+MaxTailroom)
		pkt, err := c.Seal(s, buf, MaxHeadroom, 10, 1, 1, 4)
		if err != nil {
			t.Fatal(err)
		}
		wire := append([]byte(nil), pkt...)
		c.Wipe()
		if _, err := c.Seal(s, buf, MaxHeadroom, 10, 1, 2, 4); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: Seal after Wipe: %v, want ErrUnsupported", name, err)
		}
		if _, _, err := c.Open(s, wire, 1); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: Open after Wipe: %v, want ErrUnsupported", name, err)
		}
	}
}
