package ike

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/espxdp/espxdp/sa"
)

// IKESAInfo is a snapshot of one IKE SA for status displays (no key material).
type IKESAInfo struct {
	// SPIi and SPIr are the IKE SA's SPIs (SPIr is 0 while the
	// IKE_SA_INIT request is unanswered).
	SPIi, SPIr uint64
	// Initiator tells whether we initiated the IKE SA (for a rekeyed
	// SA: whether we started the rekey that created it).
	Initiator bool
	// State is "connecting", "established", "rekeying" or "deleting".
	State string
	// Local and Remote are the IKE SA's addresses and ports.
	Local, Remote netip.AddrPort
	// LocalID and RemoteID are the identities (RemoteID empty until the
	// peer authenticated).
	LocalID, RemoteID string
	// Proposal is the chosen IKE proposal in ParseIKEProposal notation
	// (empty until IKE_SA_INIT completed).
	Proposal string
	// NATT tells whether the IKE SA is on the NAT-T port.
	NATT bool
	// NAT tells whether a NAT was detected (or forced): the child SAs
	// use UDP encapsulation.
	NAT bool
	// Established is when IKE_AUTH (or the rekey that created the SA)
	// completed; zero until then.
	Established time.Time
	// Children are the child SAs, oldest first.
	Children []ChildInfo
}

// ChildInfo describes one child SA of an IKE SA.
type ChildInfo struct {
	// ID groups the child's two SAs (sa.Config.Child).
	ID sa.ChildID
	// InSPI and OutSPI are the inbound and outbound ESP SPIs.
	InSPI, OutSPI uint32
	// Transform is the ESP transform name (esp.ParseTransform).
	Transform string
	// ESN tells whether extended sequence numbers are used.
	ESN bool
	// PFS is the DH group of the exchange that created the child (0:
	// none).
	PFS DHGroup
	// LocalTS and RemoteTS are the negotiated traffic selectors.
	LocalTS, RemoteTS []TrafficSelector
	// Established is when the child was negotiated.
	Established time.Time
}

// State names of IKESAInfo.State.
const (
	StateConnecting  = "connecting"
	StateEstablished = "established"
	StateRekeying    = "rekeying"
	StateDeleting    = "deleting"
)

// IKESAs returns a snapshot of the Endpoint's IKE SAs, sorted by SPIi
// then SPIr, taken under the Endpoint's lock. Half-open SAs and the new
// SA of our IKE SA rekey before its answer are "connecting"; an SA
// being deleted, or replaced by a rekey and awaiting its delete, is
// "deleting"; one whose rekey we started is "rekeying".
func (e *Endpoint) IKESAs() []IKESAInfo {
	e.mu.Lock()
	out := make([]IKESAInfo, 0, len(e.sas))
	for _, s := range e.sas {
		if s.state != stateDead {
			out = append(out, s.infoLocked())
		}
	}
	e.mu.Unlock()
	slices.SortFunc(out, func(a, b IKESAInfo) int {
		return cmp.Or(cmp.Compare(a.SPIi, b.SPIi), cmp.Compare(a.SPIr, b.SPIr))
	})
	return out
}

// Info returns a snapshot of the IKE SA (a deleted SA reports
// "deleting" and no children).
func (s *IKESA) Info() IKESAInfo {
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	return s.infoLocked()
}

func (s *IKESA) infoLocked() IKESAInfo {
	in := IKESAInfo{
		SPIi: s.spiI, SPIr: s.spiR, Initiator: s.initiator,
		Local: s.e.localAddr(s.natt), Remote: s.remote,
		LocalID: s.e.cfg.LocalID.String(), NATT: s.natt, NAT: s.nat,
		Established: s.established,
	}
	if s.remoteID.Type != 0 {
		in.RemoteID = s.remoteID.String()
	}
	if s.suite.prf.len != 0 {
		in.Proposal = ProposalString(s.chosenIKE)
	}
	switch {
	case s.state == stateDead || s.deleting || s.successor != nil || s.redundant:
		// Replaced or redundant after a rekey: its delete is due.
		in.State = StateDeleting
	case s.state == stateEstablished && s.rekeying:
		in.State = StateRekeying
	case s.state == stateEstablished:
		in.State = StateEstablished
	default:
		in.State = StateConnecting
	}
	for _, c := range s.children {
		in.Children = append(in.Children, ChildInfo{
			ID: c.ID, InSPI: c.In.SPI, OutSPI: c.Out.SPI, Transform: c.Transform, ESN: c.ESN, PFS: c.PFS,
			LocalTS: slices.Clone(c.LocalTS), RemoteTS: slices.Clone(c.RemoteTS), Established: c.created,
		})
	}
	return in
}

// ProposalString formats a proposal with one transform per type (a
// chosen proposal) in the notation of ParseIKEProposal, e.g.
// "aes128gcm16-prfsha256-x25519" or "aes256-sha256-prfsha256-ecp256";
// ESP proposals get the esp.ParseTransform name, then the DH group if
// any ("aes128gcm16-x25519") and "esn" with extended sequence numbers.
func ProposalString(p Proposal) string {
	var parts []string
	var ordered []Transform
	for _, typ := range []TransformType{TransformEncr, TransformInteg, TransformPRF, TransformDH, TransformESN} {
		for _, t := range p.Transforms {
			if t.Type == typ {
				ordered = append(ordered, t)
			}
		}
	}
	for _, t := range ordered {
		switch t.Type {
		case TransformEncr:
			if t.ID == EncrAESGCM16 {
				parts = append(parts, fmt.Sprintf("aes%dgcm16", t.KeyLen))
			} else if t.ID == EncrAESCBC {
				parts = append(parts, fmt.Sprintf("aes%d", t.KeyLen))
			} else {
				parts = append(parts, fmt.Sprintf("encr%d", t.ID))
			}
		case TransformInteg:
			if t.ID != IntegNone {
				parts = append(parts, transformName(integNames, "integ", t.ID))
			}
		case TransformPRF:
			parts = append(parts, transformName(prfNames, "prf", t.ID))
		case TransformDH:
			if t.ID != 0 {
				parts = append(parts, DHGroup(t.ID).String())
			}
		case TransformESN:
			if t.ID == ESNYes {
				parts = append(parts, "esn")
			}
		}
	}
	return strings.Join(parts, "-")
}

// integNames and prfNames are the proposal-notation names (those of
// ParseIKEProposal) of the integrity and PRF transforms this package
// implements.
var (
	integNames = map[uint16]string{IntegHMACSHA256_128: "sha256", IntegHMACSHA384_192: "sha384", IntegHMACSHA512_256: "sha512"}
	prfNames   = map[uint16]string{PRFHMACSHA256: "prfsha256", PRFHMACSHA384: "prfsha384", PRFHMACSHA512: "prfsha512"}
)

// transformName returns the name of id in names, else prefix and the
// number.
func transformName(names map[uint16]string, prefix string, id uint16) string {
	if n, ok := names[id]; ok {
		return n
	}
	return fmt.Sprintf("%s%d", prefix, id)
}
