package ike

import (
	"crypto/ecdh"
	"crypto/rand"
	"math/big"
)

// DHGroup is a Diffie-Hellman group number (IANA "Transform Type 4").
type DHGroup uint16

// Supported groups.
const (
	MODP2048   DHGroup = 14 // RFC 3526
	ECP256     DHGroup = 19 // RFC 5903
	ECP384     DHGroup = 20 // RFC 5903
	Curve25519 DHGroup = 31 // RFC 8031
)

var dhGroups = map[DHGroup]string{MODP2048: "modp2048", ECP256: "ecp256", ECP384: "ecp384", Curve25519: "x25519"}

var dhByName = map[string]DHGroup{"modp2048": MODP2048, "ecp256": ECP256, "ecp384": ECP384, "x25519": Curve25519, "curve25519": Curve25519}

// String returns strongSwan's name of the group.
func (g DHGroup) String() string {
	if g == 0 {
		return "none"
	}
	if n, ok := dhGroups[g]; ok {
		return n
	}
	return "dh" + itoa(int(g))
}

func itoa(i int) string { return big.NewInt(int64(i)).String() }

// modp2048P is the 2048-bit MODP prime of RFC 3526 §3 (generator 2).
var modp2048P, _ = new(big.Int).SetString(
	"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1"+
		"29024E088A67CC74020BBEA63B139B22514A08798E3404DD"+
		"EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245"+
		"E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"+
		"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D"+
		"C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"+
		"83655D23DCA3AD961C62F356208552BB9ED529077096966D"+
		"670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"+
		"E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9"+
		"DE2BCBF6955817183995497CEA956AE515D2261898FA0510"+
		"15728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)

// dhKey is one side's ephemeral key.
type dhKey struct {
	group DHGroup
	ec    *ecdh.PrivateKey
	x     *big.Int // MODP private exponent
	pub   []byte
}

func newDH(g DHGroup) (*dhKey, error) {
	k := &dhKey{group: g}
	var err error
	switch g {
	case Curve25519:
		k.ec, err = ecdh.X25519().GenerateKey(rand.Reader)
	case ECP256:
		k.ec, err = ecdh.P256().GenerateKey(rand.Reader)
	case ECP384:
		k.ec, err = ecdh.P384().GenerateKey(rand.Reader)
	case MODP2048:
		// A 256-bit exponent is more than enough for a 2048-bit group
		// (RFC 3526 §8 estimates ~110 bits of strength).
		buf := make([]byte, 32)
		if _, err = rand.Read(buf); err != nil {
			return nil, err
		}
		k.x = new(big.Int).SetBytes(buf)
		k.x.SetBit(k.x, 255, 1)
		y := new(big.Int).Exp(big.NewInt(2), k.x, modp2048P)
		k.pub = y.FillBytes(make([]byte, 256))
		return k, nil
	default:
		return nil, errf(ErrUnsupported, "DH group %d", g)
	}
	if err != nil {
		return nil, err
	}
	k.pub = k.ec.PublicKey().Bytes()
	if g != Curve25519 {
		k.pub = k.pub[1:] // RFC 5903 §7: x | y without the point format octet
	}
	return k, nil
}

// keLen is the length of a group's public value on the wire.
func keLen(g DHGroup) int {
	switch g {
	case Curve25519:
		return 32
	case ECP256:
		return 64
	case ECP384:
		return 96
	case MODP2048:
		return 256
	}
	return -1
}

// shared computes g^ir from the peer's public value, checking it
// (length; ECP points on the curve; MODP 1 < y < p-1; x25519 not
// all-zero output, RFC 8031 §2).
func (k *dhKey) shared(peer []byte) ([]byte, error) {
	if len(peer) != keLen(k.group) {
		return nil, errf(ErrInvalidKE, "group %s: %d-byte public value, want %d", k.group, len(peer), keLen(k.group))
	}
	if k.group == MODP2048 {
		y := new(big.Int).SetBytes(peer)
		pm1 := new(big.Int).Sub(modp2048P, big.NewInt(1))
		if y.Cmp(big.NewInt(1)) <= 0 || y.Cmp(pm1) >= 0 {
			return nil, errf(ErrInvalidKE, "MODP public value out of range")
		}
		z := new(big.Int).Exp(y, k.x, modp2048P)
		return z.FillBytes(make([]byte, 256)), nil
	}
	raw := peer
	if k.group != Curve25519 {
		raw = append([]byte{4}, peer...)
	}
	pub, err := k.ec.Curve().NewPublicKey(raw)
	if err != nil {
		return nil, errf(ErrInvalidKE, "group %s: %v", k.group, err)
	}
	z, err := k.ec.ECDH(pub)
	if err != nil { // x25519: all-zero result (low-order point)
		return nil, errf(ErrInvalidKE, "group %s: %v", k.group, err)
	}
	return z, nil
}
