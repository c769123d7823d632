package ike

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/espxdp/espxdp/esp"
)

// TransformType is a transform type (RFC 7296 §3.3.2).
type TransformType uint8

// Transform types.
const (
	TransformEncr  TransformType = 1
	TransformPRF   TransformType = 2
	TransformInteg TransformType = 3
	TransformDH    TransformType = 4
	TransformESN   TransformType = 5
)

// Transform IDs used by this package.
const (
	EncrAESCBC   uint16 = 12
	EncrAESGCM16 uint16 = 20

	PRFHMACSHA256 uint16 = 5
	PRFHMACSHA384 uint16 = 6
	PRFHMACSHA512 uint16 = 7

	IntegNone           uint16 = 0
	IntegHMACSHA256_128 uint16 = 12
	IntegHMACSHA384_192 uint16 = 13
	IntegHMACSHA512_256 uint16 = 14

	ESNNo  uint16 = 0
	ESNYes uint16 = 1
)

// attrKeyLength is the Key Length attribute type (§3.3.5), TV format.
const attrKeyLength = 14

// Transform is one transform of a proposal; KeyLen is the Key Length
// attribute in bits (0: absent).
type Transform struct {
	// Type is the transform type.
	Type TransformType
	// ID is the transform ID.
	ID uint16
	// KeyLen is the Key Length attribute in bits (0: absent).
	KeyLen uint16
}

// Proposal is one proposal of an SA payload.
type Proposal struct {
	// Num is the proposal number (from 1).
	Num uint8
	// Protocol is ProtoIKE or ProtoESP.
	Protocol Protocol
	// SPI is the sender's SPI (none in IKE_SA_INIT, 4 bytes for ESP).
	SPI []byte
	// Transforms are the transforms offered (or the one chosen per type).
	Transforms []Transform
}

// SA is the SA payload (§3.3).
type SA struct {
	// Proposals are the proposals in order of preference.
	Proposals []Proposal
}

// Type implements Payload.
func (*SA) Type() PayloadType { return PayloadSA }
func (s *SA) body(b []byte) []byte {
	for i, p := range s.Proposals {
		start := len(b)
		last := byte(2)
		if i == len(s.Proposals)-1 {
			last = 0
		}
		b = append(b, last, 0, 0, 0, p.Num, byte(p.Protocol), byte(len(p.SPI)), byte(len(p.Transforms)))
		b = append(b, p.SPI...)
		for j, t := range p.Transforms {
			ts := len(b)
			last := byte(3)
			if j == len(p.Transforms)-1 {
				last = 0
			}
			b = append(b, last, 0, 0, 0, byte(t.Type), 0)
			b = binary.BigEndian.AppendUint16(b, t.ID)
			if t.KeyLen != 0 {
				b = binary.BigEndian.AppendUint16(b, 0x8000|attrKeyLength)
				b = binary.BigEndian.AppendUint16(b, t.KeyLen)
			}
			binary.BigEndian.PutUint16(b[ts+2:], uint16(len(b)-ts))
		}
		binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	}
	return b
}

func parseProposals(b []byte) ([]Proposal, error) {
	var out []Proposal
	off := 0
	for {
		if len(b)-off < 8 {
			return nil, errf(ErrTruncated, "proposal %d", len(out)+1)
		}
		last := b[off]
		l := int(binary.BigEndian.Uint16(b[off+2:]))
		if l < 8 || l > len(b)-off {
			return nil, errf(ErrBadLength, "proposal length %d", l)
		}
		if last != 0 && last != 2 {
			return nil, errf(ErrMalformed, "proposal last-substructure %d", last)
		}
		pb := b[off : off+l]
		p := Proposal{Num: pb[4], Protocol: Protocol(pb[5])}
		ss, nt := int(pb[6]), int(pb[7])
		if 8+ss > l {
			return nil, errf(ErrBadLength, "proposal SPI size %d", ss)
		}
		p.SPI = clone(pb[8 : 8+ss])
		toff := 8 + ss
		for i := 0; i < nt; i++ {
			if l-toff < 8 {
				return nil, errf(ErrTruncated, "transform %d of proposal %d", i, p.Num)
			}
			tl := int(binary.BigEndian.Uint16(pb[toff+2:]))
			if tl < 8 || tl > l-toff {
				return nil, errf(ErrBadLength, "transform length %d", tl)
			}
			tlast := pb[toff]
			if (tlast != 0 && tlast != 3) || (tlast == 0) != (i == nt-1) {
				return nil, errf(ErrMalformed, "transform last-substructure %d (transform %d of %d)", tlast, i+1, nt)
			}
			t := Transform{Type: TransformType(pb[toff+4]), ID: binary.BigEndian.Uint16(pb[toff+6:])}
			aoff := toff + 8
			for aoff < toff+tl {
				if toff+tl-aoff < 4 {
					return nil, errf(ErrTruncated, "transform attribute")
				}
				at := binary.BigEndian.Uint16(pb[aoff:])
				if at&0x8000 != 0 { // TV
					if at&0x7fff == attrKeyLength {
						t.KeyLen = binary.BigEndian.Uint16(pb[aoff+2:])
					}
					aoff += 4
					continue
				}
				al := int(binary.BigEndian.Uint16(pb[aoff+2:]))
				if al > toff+tl-aoff-4 {
					return nil, errf(ErrBadLength, "transform attribute length %d", al)
				}
				aoff += 4 + al
			}
			p.Transforms = append(p.Transforms, t)
			toff += tl
		}
		if toff != l {
			return nil, errf(ErrBadLength, "%d bytes after the transforms of proposal %d", l-toff, p.Num)
		}
		out = append(out, p)
		off += l
		if last == 0 {
			break
		}
		if len(out) >= 64 {
			return nil, errf(ErrMalformed, "more than 64 proposals")
		}
	}
	if off != len(b) {
		return nil, errf(ErrBadLength, "%d bytes after the last proposal", len(b)-off)
	}
	return out, nil
}

// get returns the proposal's first transform of type t.
func (p *Proposal) get(t TransformType) (Transform, bool) {
	for _, tr := range p.Transforms {
		if tr.Type == t {
			return tr, true
		}
	}
	return Transform{}, false
}

// ParseIKEProposal parses an IKE proposal in strongSwan's notation,
// e.g. "aes128gcm16-prfsha256-x25519" or "aes256-sha256-modp2048":
// encryption algorithms (aes128, aes192, aes256 CBC; aesNNNgcm16),
// integrity (sha256, sha384, sha512; none with GCM), PRFs (prfsha256,
// prfsha384, prfsha512; by default the PRF of each integrity
// algorithm) and DH groups (x25519/curve25519, ecp256, ecp384,
// modp2048). Several of one kind may be listed.
func ParseIKEProposal(s string) (Proposal, error) {
	p := Proposal{Protocol: ProtoIKE}
	var prfs []Transform
	aead := false
	for _, tok := range strings.Split(strings.ToLower(strings.TrimSpace(s)), "-") {
		if t, ok, isAEAD := encrToken(tok); ok {
			p.Transforms = append(p.Transforms, t)
			aead = aead || isAEAD
			continue
		}
		switch tok {
		case "sha256", "sha2_256":
			p.Transforms = append(p.Transforms, Transform{Type: TransformInteg, ID: IntegHMACSHA256_128})
			prfs = append(prfs, Transform{Type: TransformPRF, ID: PRFHMACSHA256})
		case "sha384", "sha2_384":
			p.Transforms = append(p.Transforms, Transform{Type: TransformInteg, ID: IntegHMACSHA384_192})
			prfs = append(prfs, Transform{Type: TransformPRF, ID: PRFHMACSHA384})
		case "sha512", "sha2_512":
			p.Transforms = append(p.Transforms, Transform{Type: TransformInteg, ID: IntegHMACSHA512_256})
			prfs = append(prfs, Transform{Type: TransformPRF, ID: PRFHMACSHA512})
		case "prfsha256":
			p.Transforms = append(p.Transforms, Transform{Type: TransformPRF, ID: PRFHMACSHA256})
		case "prfsha384":
			p.Transforms = append(p.Transforms, Transform{Type: TransformPRF, ID: PRFHMACSHA384})
		case "prfsha512":
			p.Transforms = append(p.Transforms, Transform{Type: TransformPRF, ID: PRFHMACSHA512})
		default:
			g, ok := dhByName[tok]
			if !ok {
				return Proposal{}, errf(ErrUnsupported, "IKE proposal %q: %q", s, tok)
			}
			p.Transforms = append(p.Transforms, Transform{Type: TransformDH, ID: uint16(g)})
		}
	}
	if _, ok := p.get(TransformPRF); !ok {
		p.Transforms = append(p.Transforms, prfs...)
	}
	_, hasEnc := p.get(TransformEncr)
	_, hasPRF := p.get(TransformPRF)
	_, hasDH := p.get(TransformDH)
	_, hasInteg := p.get(TransformInteg)
	if !hasEnc || !hasPRF || !hasDH || (!aead && !hasInteg) || (aead && hasInteg) {
		return Proposal{}, errf(ErrConfig, "IKE proposal %q needs an encryption algorithm, a PRF, a DH group and, without AEAD, an integrity algorithm (AEAD and integrity do not mix here)", s)
	}
	return p, nil
}

func encrToken(tok string) (Transform, bool, bool) {
	for _, bits := range []uint16{128, 192, 256} {
		switch tok {
		case fmt.Sprintf("aes%d", bits):
			return Transform{Type: TransformEncr, ID: EncrAESCBC, KeyLen: bits}, true, false
		case fmt.Sprintf("aes%dgcm16", bits), fmt.Sprintf("aes%dgcm", bits):
			return Transform{Type: TransformEncr, ID: EncrAESGCM16, KeyLen: bits}, true, true
		}
	}
	return Transform{}, false, false
}

// ESPProposal builds an ESP proposal from esp.ParseTransform names
// (aesNNNgcm16, aesNNN-sha256/384/512), each optionally followed by DH
// groups the strongSwan way ("aes128gcm16-x25519",
// "aes256-sha256-modp2048"): with groups, child SA rekeys use PFS (the
// groups of all names are offered together); esn selects the ESN
// transforms offered: "yes", "no" or "both".
func ESPProposal(names []string, esn string) (Proposal, error) {
	p := Proposal{Protocol: ProtoESP}
	seenInteg := map[uint16]bool{}
	var groups []Transform
	for _, n := range names {
		// strongSwan notation: DH groups (PFS in CREATE_CHILD_SA) follow
		// the ESP transform: "aes128gcm16-x25519".
		toks := strings.Split(strings.ToLower(strings.TrimSpace(n)), "-")
		k := len(toks)
		for k > 1 {
			if _, ok := dhByName[toks[k-1]]; !ok {
				break
			}
			k--
		}
		for _, tok := range toks[k:] {
			t := Transform{Type: TransformDH, ID: uint16(dhByName[tok])}
			if !slices.Contains(groups, t) {
				groups = append(groups, t)
			}
		}
		n = strings.Join(toks[:k], "-")
		tr, err := esp.ParseTransform(n)
		if err != nil {
			// "aes256gcm16-ecp521": an unknown group is not an
			// unknown cipher; name what is wrong.
			for j := 1; j < k; j++ {
				if _, perr := esp.ParseTransform(strings.Join(toks[:j], "-")); perr == nil {
					bad := toks[j]
					for _, tok := range toks[j:k] {
						if _, ok := dhByName[tok]; !ok {
							bad = tok
							break
						}
					}
					return Proposal{}, errf(ErrConfig, "ESP proposal %q: unsupported DH group %q (supported: %s)", n, bad, dhNames())
				}
			}
			return Proposal{}, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		e, i, err := ikeFromESP(tr)
		if err != nil {
			return Proposal{}, err
		}
		p.Transforms = append(p.Transforms, e)
		if i.ID != IntegNone && !seenInteg[i.ID] {
			seenInteg[i.ID] = true
			p.Transforms = append(p.Transforms, i)
		}
	}
	p.Transforms = append(p.Transforms, groups...)
	switch esn {
	case "", "no":
		p.Transforms = append(p.Transforms, Transform{Type: TransformESN, ID: ESNNo})
	case "yes":
		p.Transforms = append(p.Transforms, Transform{Type: TransformESN, ID: ESNYes})
	case "both":
		p.Transforms = append(p.Transforms, Transform{Type: TransformESN, ID: ESNYes}, Transform{Type: TransformESN, ID: ESNNo})
	default:
		return Proposal{}, errf(ErrConfig, "esn %q (yes, no or both)", esn)
	}
	if len(names) == 0 {
		return Proposal{}, errf(ErrConfig, "empty ESP proposal")
	}
	return p, nil
}

func ikeFromESP(tr esp.Transform) (Transform, Transform, error) {
	bits := uint16(tr.KeyLen()*8) - 32
	switch {
	case tr.AEAD() && strings.HasSuffix(tr.Name(), "gcm16"):
		return Transform{Type: TransformEncr, ID: EncrAESGCM16, KeyLen: bits}, Transform{Type: TransformInteg, ID: IntegNone}, nil
	case strings.HasPrefix(tr.Name(), "aes") && !strings.Contains(tr.Name(), "ctr") && !tr.AEAD():
		bits = uint16(tr.KeyLen() * 8)
		var id uint16
		switch tr.ICVLen() {
		case 16:
			id = IntegHMACSHA256_128
		case 24:
			id = IntegHMACSHA384_192
		case 32:
			id = IntegHMACSHA512_256
		default:
			return Transform{}, Transform{}, errf(ErrUnsupported, "ESP transform %s in IKE", tr.Name())
		}
		return Transform{Type: TransformEncr, ID: EncrAESCBC, KeyLen: bits}, Transform{Type: TransformInteg, ID: id}, nil
	}
	return Transform{}, Transform{}, errf(ErrUnsupported, "ESP transform %s in IKE", tr.Name())
}

// espFromIKE maps a chosen ESP proposal to the esp transform name.
func espFromIKE(p Proposal) (string, error) {
	e, ok := p.get(TransformEncr)
	if !ok {
		return "", errf(ErrMalformed, "ESP proposal without encryption")
	}
	switch e.ID {
	case EncrAESGCM16:
		return fmt.Sprintf("aes%dgcm16", e.KeyLen), nil
	case EncrAESCBC:
		i, _ := p.get(TransformInteg)
		s, ok := integNames[i.ID]
		if !ok {
			return "", errf(ErrUnsupported, "ESP integrity %d", i.ID)
		}
		return fmt.Sprintf("aes%d-%s", e.KeyLen, s), nil
	}
	return "", errf(ErrUnsupported, "ESP encryption %d", e.ID)
}

// supported reports whether this package implements transform t for
// protocol proto.
func supported(proto Protocol, t Transform) bool {
	switch t.Type {
	case TransformEncr:
		return (t.ID == EncrAESCBC || t.ID == EncrAESGCM16) && (t.KeyLen == 128 || t.KeyLen == 192 || t.KeyLen == 256)
	case TransformPRF:
		return proto == ProtoIKE && t.ID >= PRFHMACSHA256 && t.ID <= PRFHMACSHA512
	case TransformInteg:
		return t.ID == IntegNone || (t.ID >= IntegHMACSHA256_128 && t.ID <= IntegHMACSHA512_256)
	case TransformDH:
		_, ok := dhGroups[DHGroup(t.ID)]
		return ok || (proto == ProtoESP && t.ID == 0)
	case TransformESN:
		return proto == ProtoESP && t.ID <= 1
	}
	return false
}

// choose selects, as a responder, the first of the peer's proposals (in
// the peer's order) that one of ours accepts: for each transform type
// in the peer's proposal, the first of the peer's transforms that ours
// lists too. Types must match exactly (except an integrity "none"
// offered with AEAD). The result has one transform per type, the peer's
// number and SPI.
func choose(ours []Proposal, theirs []Proposal) (Proposal, bool) {
	for _, tp := range theirs {
		for _, op := range ours {
			if tp.Protocol != op.Protocol {
				continue
			}
			if r, ok := match(op, tp); ok {
				return r, true
			}
		}
	}
	return Proposal{}, false
}

func match(op, tp Proposal) (Proposal, bool) {
	r := Proposal{Num: tp.Num, Protocol: tp.Protocol, SPI: tp.SPI}
	types := []TransformType{TransformEncr, TransformPRF, TransformInteg, TransformDH, TransformESN}
	for _, typ := range types {
		var offered, accepted []Transform
		for _, t := range tp.Transforms {
			if t.Type == typ {
				offered = append(offered, t)
			}
		}
		for _, t := range op.Transforms {
			if t.Type == typ {
				accepted = append(accepted, t)
			}
		}
		if len(offered) == 0 && len(accepted) == 0 {
			continue
		}
		if len(offered) == 0 {
			// The peer omits integrity with AEAD, or DH in child SAs.
			if (typ == TransformInteg && onlyID(accepted, IntegNone)) || (typ == TransformDH && op.Protocol == ProtoESP) {
				continue
			}
			return Proposal{}, false
		}
		if len(accepted) == 0 {
			if (typ == TransformInteg && onlyID(offered, IntegNone)) || (typ == TransformDH && onlyID(offered, 0)) {
				continue
			}
			return Proposal{}, false
		}
		found := false
		for _, o := range offered {
			for _, a := range accepted {
				if o == a && supported(tp.Protocol, o) {
					if !(typ == TransformInteg && o.ID == IntegNone) && !(typ == TransformDH && o.ID == 0) {
						r.Transforms = append(r.Transforms, o)
					}
					found = true
					break
				}
			}
			if found {
				break
			}
		}
		if !found {
			return Proposal{}, false
		}
	}
	// AEAD and integrity must not be combined, CBC needs integrity.
	e, _ := r.get(TransformEncr)
	_, hasInteg := r.get(TransformInteg)
	if (e.ID == EncrAESGCM16) == hasInteg {
		return Proposal{}, false
	}
	return r, true
}

func onlyID(ts []Transform, id uint16) bool {
	for _, t := range ts {
		if t.ID != id {
			return false
		}
	}
	return true
}

// acceptable reports whether the responder's single choice r is one of
// the transforms offered in ours (initiator's check of the reply).
func acceptable(ours []Proposal, r Proposal) bool {
	for _, op := range ours {
		if op.Protocol != r.Protocol {
			continue
		}
		ok := true
		for _, t := range r.Transforms {
			found := false
			for _, o := range op.Transforms {
				found = found || o == t
			}
			ok = ok && found && supported(r.Protocol, t)
		}
		e, has := r.get(TransformEncr)
		if !has || !onePerType(op, r, e.ID == EncrAESGCM16) {
			ok = false
		}
		if ok {
			if _, err := (suiteFor(r)); err == nil || r.Protocol == ProtoESP {
				return true
			}
		}
	}
	return false
}

// onePerType reports whether the reply r has exactly one transform of
// each type that our proposal op lists (RFC 7296 §3.3), and no type
// twice; with an AEAD cipher (aead) integrity must be left out.
//
// Invariant (TestRedTeamReplyNotOffered): acceptable holds only for a
// reply that is one transform per offered type, all offered.
func onePerType(op, r Proposal, aead bool) bool {
	count := map[TransformType]int{}
	for _, t := range r.Transforms {
		count[t.Type]++
		if count[t.Type] > 1 {
			return false
		}
	}
	for _, t := range op.Transforms {
		n := count[t.Type]
		if t.Type == TransformInteg && aead {
			if n != 0 {
				return false
			}
			continue
		}
		if n != 1 {
			return false
		}
	}
	return true
}

// stripDH returns p without DH transforms (the child SA of IKE_AUTH,
// RFC 7296 §1.2).
func stripDH(p Proposal) Proposal {
	q := p
	q.Transforms = nil
	for _, t := range p.Transforms {
		if t.Type != TransformDH {
			q.Transforms = append(q.Transforms, t)
		}
	}
	return q
}

// dhOf returns the first DH group of p (0: none).
func dhOf(p Proposal) DHGroup {
	if t, ok := p.get(TransformDH); ok {
		return DHGroup(t.ID)
	}
	return 0
}

// dhNames lists the DH group names of dhByName, sorted.
func dhNames() string {
	names := make([]string, 0, len(dhByName))
	for n := range dhByName {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
