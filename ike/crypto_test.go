package ike

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/big"
	"strings"
	"testing"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RFC 4868 §2.7.2.1, test case 1 (PRF-HMAC-SHA-256, 32-byte key) and its
// truncation to 128 bits for AUTH-HMAC-SHA-256-128.
func TestKATHMACSHA256RFC4868(t *testing.T) {
	p, _ := prfByID(PRFHMACSHA256)
	key := bytes.Repeat([]byte{0x0b}, 32)
	got := p.sum(key, []byte("Hi There"))
	want := unhex(t, "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7")
	if !bytes.Equal(got, want) {
		t.Fatalf("PRF = %x", got)
	}
	in, _ := integByID(IntegHMACSHA256_128)
	if in.icv != 16 || in.keyLen != 32 || !bytes.Equal(got[:in.icv], want[:16]) {
		t.Fatal("AUTH-HMAC-SHA-256-128 truncation")
	}
}

// RFC 7748 §6.1 (x25519, used by RFC 8031).
func TestKATX25519(t *testing.T) {
	a, err := ecdh.X25519().NewPrivateKey(unhex(t, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
	if err != nil {
		t.Fatal(err)
	}
	k := &dhKey{group: Curve25519, ec: a, pub: a.PublicKey().Bytes()}
	if !bytes.Equal(k.pub, unhex(t, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")) {
		t.Fatalf("public %x", k.pub)
	}
	z, err := k.shared(unhex(t, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(z, unhex(t, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")) {
		t.Fatalf("shared %x", z)
	}
	// RFC 8031 §2: an all-zero result (low-order point) is refused.
	if _, err := k.shared(make([]byte, 32)); !errors.Is(err, ErrInvalidKE) {
		t.Fatalf("low-order point: %v", err)
	}
}

// RFC 5903 §8.1 (256-bit random ECP group): the initiator's and
// responder's public values and the shared secret (x of g^ir).
func TestKATECP256RFC5903(t *testing.T) {
	i, err := ecdh.P256().NewPrivateKey(unhex(t, "C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433"))
	if err != nil {
		t.Fatal(err)
	}
	k := &dhKey{group: ECP256, ec: i, pub: i.PublicKey().Bytes()[1:]}
	wantGi := unhex(t, "DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180"+
		"5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3")
	if !bytes.Equal(k.pub, wantGi) {
		t.Fatalf("g^i = %x", k.pub)
	}
	gr := unhex(t, "D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63"+
		"56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB")
	z, err := k.shared(gr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(z, unhex(t, "D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE")) {
		t.Fatalf("g^ir = %x", z)
	}
	// A point not on the curve is refused.
	bad := append([]byte(nil), gr...)
	bad[63] ^= 1
	if _, err := k.shared(bad); !errors.Is(err, ErrInvalidKE) {
		t.Fatalf("point off the curve: %v", err)
	}
	if _, err := k.shared(gr[:40]); !errors.Is(err, ErrInvalidKE) {
		t.Fatalf("short value: %v", err)
	}
}

// The RFC 3526 prime is a safe prime (a typo would break that), and
// the public-value checks refuse 0, 1, p-1 and p.
func TestMODP2048(t *testing.T) {
	if modp2048P.BitLen() != 2048 || !modp2048P.ProbablyPrime(20) {
		t.Fatal("MODP-2048 prime is not a 2048-bit prime")
	}
	q := new(big.Int).Rsh(modp2048P, 1)
	if !q.ProbablyPrime(20) {
		t.Fatal("(p-1)/2 is not prime")
	}
	a, err := newDH(MODP2048)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newDH(MODP2048)
	za, err := a.shared(b.pub)
	if err != nil {
		t.Fatal(err)
	}
	zb, _ := b.shared(a.pub)
	if !bytes.Equal(za, zb) || len(za) != 256 {
		t.Fatal("MODP shared secrets differ")
	}
	pm1 := new(big.Int).Sub(modp2048P, big.NewInt(1))
	for _, y := range []*big.Int{big.NewInt(0), big.NewInt(1), pm1, modp2048P} {
		if _, err := a.shared(y.FillBytes(make([]byte, 256))); !errors.Is(err, ErrInvalidKE) {
			t.Fatalf("public value %v accepted: %v", y, err)
		}
	}
}

// prf+ against its definition, computed independently.
func TestPRFPlus(t *testing.T) {
	p, _ := prfByID(PRFHMACSHA256)
	key, s := []byte("key"), []byte("seed")
	mac := func(d ...[]byte) []byte {
		m := hmac.New(sha256.New, key)
		for _, x := range d {
			m.Write(x)
		}
		return m.Sum(nil)
	}
	t1 := mac(s, []byte{1})
	t2 := mac(t1, s, []byte{2})
	t3 := mac(t2, s, []byte{3})
	want := append(append(append([]byte(nil), t1...), t2...), t3...)[:80]
	if got := p.plus(key, s, 80); !bytes.Equal(got, want) {
		t.Fatalf("prf+ = %x", got)
	}
}

// The PSK AUTH of RFC 7296 §2.15, computed independently.
func TestPSKAuth(t *testing.T) {
	p, _ := prfByID(PRFHMACSHA256)
	psk, msg, nonce, skp, id := []byte("secret"), []byte("message1"), []byte("nonce"), []byte("skpi"), []byte{2, 0, 0, 0, 'a'}
	h := func(k []byte, d ...[]byte) []byte {
		m := hmac.New(sha256.New, k)
		for _, x := range d {
			m.Write(x)
		}
		return m.Sum(nil)
	}
	want := h(h(psk, []byte("Key Pad for IKEv2")), msg, nonce, h(skp, id))
	if got := pskAuth(p, psk, msg, nonce, skp, id); !bytes.Equal(got, want) {
		t.Fatal("PSK AUTH differs")
	}
}

// SK payloads: sealed messages open with the same keys, and any bit
// flip anywhere in the message is refused as ErrIntegrity (or a parse
// error), never accepted.
func TestSKSealOpenTamper(t *testing.T) {
	for _, prop := range []string{"aes128gcm16-prfsha256-x25519", "aes256-sha384-ecp256", "aes192-sha512-x25519", "aes256gcm16-prfsha512-x25519"} {
		p, err := ParseIKEProposal(prop)
		if err != nil {
			t.Fatal(err)
		}
		one := Proposal{Protocol: ProtoIKE}
		for _, typ := range []TransformType{TransformEncr, TransformPRF, TransformInteg, TransformDH} {
			if tr, ok := p.get(typ); ok {
				one.Transforms = append(one.Transforms, tr)
			}
		}
		s, err := suiteFor(one)
		if err != nil {
			t.Fatal(err)
		}
		k := deriveKeys(s, bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), []byte("gir"), 1, 2)
		inner := []Payload{&Notify{NotifyType: InitialContact}, &Delete{Proto: ProtoIKE}}
		msg, err := sealSK(s, k.ei, k.ai, Header{SPIi: 1, SPIr: 2, Exchange: Informational, MsgID: 7}, inner)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Parse(msg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := openSK(s, k.ei, k.ai, msg, m.Payloads[0].(*Encrypted))
		if err != nil || len(got) != 2 || got[0].(*Notify).NotifyType != InitialContact {
			t.Fatalf("%s: open: %v %v", prop, got, err)
		}
		if _, err := openSK(s, k.er, k.ar, msg, m.Payloads[0].(*Encrypted)); !errors.Is(err, ErrIntegrity) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("%s: opened with the other direction's keys: %v", prop, err)
		}
		for i := 0; i < len(msg); i++ {
			for bit := 0; bit < 8; bit += 3 {
				bad := append([]byte(nil), msg...)
				bad[i] ^= 1 << bit
				m, err := Parse(bad)
				if err != nil {
					continue
				}
				e, ok := m.Payloads[len(m.Payloads)-1].(*Encrypted)
				if !ok {
					continue
				}
				if _, err := openSK(s, k.ei, k.ai, bad, e); err == nil {
					t.Fatalf("%s: flip of bit %d of byte %d accepted", prop, bit, i)
				}
			}
		}
	}
}
