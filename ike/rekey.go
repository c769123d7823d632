package ike

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// Child SA rekeying with CREATE_CHILD_SA (RFC 7296 §1.3.3, §2.8),
// make-before-break: the new child is reported through Config.OnChild
// (install it and switch the tunnel's outbound SA to it) before the old
// one is deleted, so no packet is without an SA.
//
// KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) with the exchange's fresh
// nonces, keys for the exchange initiator's outbound direction first
// (§2.17); g^ir when the chosen ESP proposal has a DH group (PFS:
// Config.ESPTransforms "aes128gcm16-x25519"), whose KE payloads the
// exchange then carries.
//
// Collisions (§2.8.1): when both sides rekey the same child at once,
// each answers the other's request (the child made that way is kept in
// old.peerSucc) and, when its own response arrives, compares the four
// nonces: the exchange holding the lowest one made a redundant child
// that its initiator deletes; the other one's initiator deletes the old
// child. Both children were reported to OnChild, so every child is
// reported once to OnChild and once to OnChildDown (TestRekeyProperty).
//
// While an IKE SA rekey is under way, a peer's child rekey is answered
// with TEMPORARY_FAILURE (§2.25); RekeyChild retries such refusals a
// few times.

// maxTempRetries bounds RekeyChild's and RekeyIKE's retries after
// TEMPORARY_FAILURE.
const maxTempRetries = 4

// maxChildren bounds the child SAs of an IKE SA: the live one, its
// successors of a rekey (two in a collision) and replaced ones whose
// delete is under way. A peer's rekey beyond it is refused with
// TEMPORARY_FAILURE until the peer deletes the replaced ones.
const maxChildren = 8

// errTemporary marks a refusal worth retrying.
var errTemporary = errors.New("temporary failure")

// RekeyChild rekeys the newest child SA: a CREATE_CHILD_SA exchange
// with REKEY_SA creates its successor (reported to Config.OnChild),
// then an INFORMATIONAL exchange deletes the old one (reported to
// Config.OnChildDown). It returns the new child (after a collision with
// the peer's rekey of the same child, the surviving one). On an IKE SA
// that was rekeyed it rekeys the successor's child.
func (s *IKESA) RekeyChild(ctx context.Context) (*ChildSA, error) {
	return s.rekeyChild(ctx, nil)
}

// RekeyChildSA is RekeyChild for the child SA c of this IKE SA (or of
// its successor after IKE SA rekeys), e.g. an older one of several
// children (additional child SAs). It fails with ErrConfig when c is
// no longer held (deleted) or was rekeyed already.
func (s *IKESA) RekeyChildSA(ctx context.Context, c *ChildSA) (*ChildSA, error) {
	if c == nil {
		return nil, errf(ErrConfig, "no child SA")
	}
	return s.rekeyChild(ctx, c)
}

func (s *IKESA) rekeyChild(ctx context.Context, target *ChildSA) (*ChildSA, error) {
	var err error
	for try := 0; ; try++ {
		s.e.mu.Lock()
		h := s.home()
		s.e.mu.Unlock()
		var c *ChildSA
		c, err = h.rekeyChildAttempt(ctx, target)
		// A request on an IKE SA that the peer replaced and deleted
		// meanwhile (ErrRekeyed) is retried on the successor.
		if !(errors.Is(err, errTemporary) || errors.Is(err, ErrRekeyed)) || try >= maxTempRetries {
			return c, err
		}
		s.e.log.Debug("ike: child SA rekey deferred", "sa", h, "err", err)
		if werr := tempWait(ctx, s.e.cfg.Retransmit, try); werr != nil {
			return nil, werr
		}
	}
}

// tempWait sleeps a random while before retrying after a temporary
// refusal.
func tempWait(ctx context.Context, base time.Duration, try int) error {
	d := base<<try + rand.N(base)
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// rekeyChildAttempt rekeys target, or with target nil the newest child
// that is not being rekeyed.
func (s *IKESA) rekeyChildAttempt(ctx context.Context, target *ChildSA) (*ChildSA, error) {
	e := s.e
	e.mu.Lock()
	if err := s.childExchangeOKLocked(); err != nil {
		e.mu.Unlock()
		return nil, err
	}
	var old *ChildSA
	for k := len(s.children) - 1; k >= 0 && old == nil; k-- {
		c := s.children[k]
		if target != nil && c != target {
			continue
		}
		if target != nil && (c.succ != nil || c.redundant) {
			e.mu.Unlock()
			return nil, errf(ErrConfig, "child SA %d was rekeyed already", c.ID)
		}
		if c.succ == nil && !c.ourRekey && !c.redundant && c.peerSucc == nil {
			old = c
		}
	}
	if target != nil && old == nil && !slices.Contains(s.children, target) {
		e.mu.Unlock()
		return nil, errf(ErrConfig, "child SA %d is not held by %v", target.ID, s)
	}
	if old == nil {
		busy := len(s.children) > 0
		e.mu.Unlock()
		if busy {
			return nil, fmt.Errorf("%w: %w", errTemporary, errf(ErrConfig, "child SA rekey under way"))
		}
		return nil, errf(ErrConfig, "no child SA to rekey")
	}
	spi, err := s.allocChildSPI()
	if err != nil {
		e.mu.Unlock()
		return nil, err
	}
	old.ourRekey = true
	group := dhOf(e.espProp)
	e.mu.Unlock()

	child, err := s.createChildRetry(ctx, old, spi, group)
	e.mu.Lock()
	old.ourRekey = false
	lost := false
	if err != nil && old.peerSucc != nil && old.succ == nil {
		// Ours failed, the peer's rekey of the same child made its
		// successor: the peer deletes the old child.
		old.succ, child, err, lost = old.peerSucc, old.peerSucc, nil, true
		if e.cfg.SAD != nil {
			e.cfg.SAD.ReleaseSPI(binary.BigEndian.Uint32(spi))
		}
	}
	e.mu.Unlock()
	if err != nil {
		if e.cfg.SAD != nil {
			e.cfg.SAD.ReleaseSPI(binary.BigEndian.Uint32(spi))
		}
		return nil, err
	}
	if lost {
		return child, nil
	}
	if child.redundant {
		// Our child lost the collision: delete it; the peer deletes the
		// old one.
		e.mu.Lock()
		winner := old.succ
		e.mu.Unlock()
		e.log.Info("ike: child SA rekey collision lost, deleting the redundant child", "redundant", child.ID, "winner", winner.ID)
		return winner, s.deleteChild(ctx, child)
	}
	// The new child is installed: delete the old one.
	return child, s.deleteChild(ctx, old)
}

// DeleteChild deletes the child SA c (held by this IKE SA or its
// successor) with an INFORMATIONAL exchange and reports it to
// Config.OnChildDown (also when the peer does not answer); the IKE SA
// and its other children stay.
func (s *IKESA) DeleteChild(ctx context.Context, c *ChildSA) error {
	if c == nil {
		return errf(ErrConfig, "no child SA")
	}
	s.e.mu.Lock()
	held := slices.Contains(s.home().children, c)
	s.e.mu.Unlock()
	if !held {
		return errf(ErrConfig, "child SA %d is not held by %v", c.ID, s)
	}
	return s.deleteChild(ctx, c)
}

// deleteChild deletes c with an INFORMATIONAL exchange on the IKE SA
// holding it and reports it down (also when the peer does not answer).
func (s *IKESA) deleteChild(ctx context.Context, c *ChildSA) error {
	e := s.e
	e.mu.Lock()
	h := s.home()
	e.mu.Unlock()
	err := h.request(ctx, Informational, []Payload{&Delete{Proto: ProtoESP, SPISize: 4,
		SPIs: [][]byte{binary.BigEndian.AppendUint32(nil, c.In.SPI)}}}, nil)
	e.mu.Lock()
	removed := s.home().removeChild(binary.BigEndian.AppendUint32(nil, c.Out.SPI))
	e.mu.Unlock()
	if removed != nil {
		s.childDown(removed)()
	}
	return err
}

// CreateChild creates an additional child SA on the IKE SA (RFC 7296
// §1.3.1: CREATE_CHILD_SA without REKEY_SA) with the configured
// traffic selectors and ESP proposal (a KE payload when it names a DH
// group: PFS), reported to Config.OnChild and returned. An IKE SA holds
// at most 8 child SAs; a peer's NO_ADDITIONAL_SAS gives an error
// wrapping ErrPeerError. TEMPORARY_FAILURE (e.g. an IKE SA rekey under
// way) is retried a few times; on an IKE SA that was rekeyed the child
// is created on the successor.
func (s *IKESA) CreateChild(ctx context.Context) (*ChildSA, error) {
	for try := 0; ; try++ {
		s.e.mu.Lock()
		h := s.home()
		s.e.mu.Unlock()
		c, err := h.createChildAttempt(ctx)
		if !(errors.Is(err, errTemporary) || errors.Is(err, ErrRekeyed)) || try >= maxTempRetries {
			return c, err
		}
		s.e.log.Debug("ike: additional child SA deferred", "sa", h, "err", err)
		if werr := tempWait(ctx, s.e.cfg.Retransmit, try); werr != nil {
			return nil, werr
		}
	}
}

func (s *IKESA) createChildAttempt(ctx context.Context) (*ChildSA, error) {
	e := s.e
	e.mu.Lock()
	if err := s.childExchangeOKLocked(); err != nil {
		e.mu.Unlock()
		return nil, err
	}
	// Invariant (TestAdditionalChildBound): we create no child beyond
	// maxChildren either (the peer would refuse it).
	if len(s.children) >= maxChildren {
		e.mu.Unlock()
		return nil, errf(ErrConfig, "IKE SA already has %d child SAs", maxChildren)
	}
	spi, err := s.allocChildSPI()
	if err != nil {
		e.mu.Unlock()
		return nil, err
	}
	group := dhOf(e.espProp)
	e.mu.Unlock()
	child, err := s.createChildRetry(ctx, nil, spi, group)
	if err != nil {
		if e.cfg.SAD != nil {
			e.cfg.SAD.ReleaseSPI(binary.BigEndian.Uint32(spi))
		}
		return nil, err
	}
	return child, nil
}

// rekeyChildOnce runs one CREATE_CHILD_SA exchange rekeying old (or,
// with old nil, creating an additional child) (with a
// KE of group when group is not 0); retry is the group the peer asked
// for with INVALID_KE_PAYLOAD.
func (s *IKESA) rekeyChildOnce(ctx context.Context, old *ChildSA, spi []byte, group DHGroup) (child *ChildSA, retry DHGroup, err error) {
	e := s.e
	var dh *dhKey
	if group != 0 {
		if dh, err = newDH(group); err != nil {
			return nil, 0, err
		}
	}
	ni := newNonce()
	prop := e.espProp
	prop.SPI = spi
	var ps []Payload
	// An additional child (old nil) proposes the configured selectors,
	// as IKE_AUTH does; a rekey the old child's.
	localTS, remoteTS := e.cfg.LocalTS, e.cfg.RemoteTS
	if old != nil {
		ps = append(ps, &Notify{Proto: ProtoESP, SPI: binary.BigEndian.AppendUint32(nil, old.In.SPI), NotifyType: RekeySA})
		localTS, remoteTS = old.LocalTS, old.RemoteTS
	}
	ps = append(ps, &SA{Proposals: []Proposal{prop}}, &Nonce{Data: ni})
	if dh != nil {
		ps = append(ps, &KE{Group: group, Data: dh.pub})
	}
	ps = append(ps, &TS{Selectors: localTS}, &TS{Responder: true, Selectors: remoteTS})
	var cerr error
	err = s.request(ctx, CreateChildSA, ps, func(m *Message) []func() {
		if n := m.Notify(InvalidKEPayload); n != nil && len(n.Data) == 2 {
			g := DHGroup(binary.BigEndian.Uint16(n.Data))
			if g != group && offersGroup(e.espProp, g) {
				retry = g
			}
			cerr = errf(ErrNoProposalChosen, "peer wants DH group %v", g)
			return nil
		}
		if n := m.Notify(TemporaryFailure); n != nil {
			cerr = fmt.Errorf("%w: %w", errTemporary, notifyErr(n.NotifyType))
			return nil
		}
		child, cerr = s.rekeyReply(m, spi, ni, localTS, remoteTS, dh, group)
		if cerr != nil {
			return nil
		}
		h := s.home() // an IKE SA rekey by the peer may have moved the children
		child.owner = h
		h.children = append(h.children, child)
		if old == nil {
			e.log.Info("ike: additional child SA created", "peer", s.remote, "new", child.ID, "pfs", child.PFS,
				"spi_in", fmt.Sprintf("%08x", child.In.SPI), "spi_out", fmt.Sprintf("%08x", child.Out.SPI))
			if f := e.cfg.OnChild; f != nil {
				c := child
				return []func(){func() { f(c) }}
			}
			return nil
		}
		if p := old.peerSucc; p != nil {
			// A collision: the exchange with the lowest nonce made the
			// redundant child (RFC 7296 §2.8.1).
			if nonceLess(lowerNonce(child.ni, child.nr), lowerNonce(p.ni, p.nr)) {
				child.redundant, old.succ = true, p
			} else {
				p.redundant, old.succ = true, child
			}
			e.log.Info("ike: child SA rekey collision", "old", old.ID, "ours", child.ID, "peers", p.ID, "winner", old.succ.ID)
		} else {
			old.succ = child
		}
		e.log.Info("ike: child SA rekeyed", "peer", s.remote, "old", old.ID, "new", child.ID, "pfs", child.PFS,
			"spi_in", fmt.Sprintf("%08x", child.In.SPI), "spi_out", fmt.Sprintf("%08x", child.Out.SPI))
		if f := e.cfg.OnChild; f != nil {
			c := child
			return []func(){func() { f(c) }}
		}
		return nil
	})
	if err == nil {
		err = cerr
	}
	return child, retry, err
}

func offersGroup(p Proposal, g DHGroup) bool {
	for _, t := range p.Transforms {
		if t.Type == TransformDH && DHGroup(t.ID) == g {
			return true
		}
	}
	return false
}

func (s *IKESA) rekeyReply(m *Message, spi, ni []byte, localTS, remoteTS []TrafficSelector, dh *dhKey, group DHGroup) (*ChildSA, error) {
	for _, n := range m.Notifies() {
		if n.NotifyType.IsError() {
			return nil, notifyErr(n.NotifyType)
		}
	}
	sap, _ := m.Get(PayloadSA).(*SA)
	nr, _ := m.Get(PayloadNonce).(*Nonce)
	tsi, _ := m.Get(PayloadTSi).(*TS)
	tsr, _ := m.Get(PayloadTSr).(*TS)
	ke, _ := m.Get(PayloadKE).(*KE)
	if sap == nil || nr == nil || tsi == nil || tsr == nil || len(sap.Proposals) != 1 {
		s.e.malformed.Add(1)
		return nil, errf(ErrMalformed, "CREATE_CHILD_SA response lacks SA, Nr or TS")
	}
	chosen := sap.Proposals[0]
	if chosen.Protocol != ProtoESP || len(chosen.SPI) != 4 || !acceptable([]Proposal{s.e.espProp}, chosen) {
		return nil, errf(ErrNoProposalChosen, "responder chose an ESP proposal we did not offer")
	}
	if len(nr.Data) < 16 || len(nr.Data) > 256 {
		s.e.malformed.Add(1)
		return nil, errf(ErrMalformed, "nonce of %d bytes", len(nr.Data))
	}
	// PFS: the chosen group must be the one of our KE, and the KE is
	// answered; without a group in our proposal, no KE.
	g := dhOf(chosen)
	if g != group || (g == 0) != (ke == nil) || (ke != nil && ke.Group != g) {
		s.e.malformed.Add(1)
		return nil, errf(ErrNoProposalChosen, "CREATE_CHILD_SA response: DH group %v, KE %v, ours %v", g, ke != nil, group)
	}
	if !within(tsi.Selectors, localTS) || !within(tsr.Selectors, remoteTS) {
		return nil, errf(ErrTSUnacceptable, "responder widened the traffic selectors")
	}
	var gir []byte
	if ke != nil {
		var err error
		if gir, err = dh.shared(ke.Data); err != nil {
			s.e.malformed.Add(1)
			return nil, err
		}
		defer clear(gir)
	}
	return s.makeChild(chosen, spi, ni, nr.Data, gir, true, tsi.Selectors, tsr.Selectors)
}

// respondCreateChild answers CREATE_CHILD_SA (e.mu held): rekeying of
// a child SA (REKEY_SA) and new, additional child SAs (RFC 7296
// §1.3.1), both with PFS when the chosen proposal has a DH group and
// with the traffic selectors narrowed as in IKE_AUTH.
func (s *IKESA) respondCreateChild(m *Message) []func() {
	e := s.e
	var rekey *Notify
	for _, n := range m.Notifies() {
		if n.NotifyType == RekeySA && n.Proto == ProtoESP {
			rekey = n
		}
	}
	sap, _ := m.Get(PayloadSA).(*SA)
	nonce, _ := m.Get(PayloadNonce).(*Nonce)
	tsi, _ := m.Get(PayloadTSi).(*TS)
	tsr, _ := m.Get(PayloadTSr).(*TS)
	if sap == nil || nonce == nil || tsi == nil || tsr == nil {
		e.malformed.Add(1)
		s.respond(m, []Payload{&Notify{NotifyType: InvalidSyntax}})
		return nil
	}
	if len(nonce.Data) < 16 || len(nonce.Data) > 256 {
		e.malformed.Add(1)
		s.respond(m, []Payload{&Notify{NotifyType: InvalidSyntax}})
		return nil
	}
	// RFC 7296 §2.25: not while the IKE SA is being rekeyed.
	if s.successor != nil || s.rekeying || s.deleting {
		e.log.Debug("ike: peer's CREATE_CHILD_SA refused during an IKE SA rekey", "sa", s)
		s.respond(m, []Payload{&Notify{NotifyType: TemporaryFailure}})
		return nil
	}
	var old *ChildSA
	if rekey != nil {
		for _, c := range s.children {
			if len(rekey.SPI) == 4 && binary.BigEndian.Uint32(rekey.SPI) == c.Out.SPI {
				old = c
			}
		}
		if old == nil {
			s.respond(m, []Payload{&Notify{Proto: ProtoESP, SPI: rekey.SPI, NotifyType: ChildSANotFound}})
			return nil
		}
		// Invariant (TestRedTeamChildRekeyChain): at most maxChildren
		// child SAs per IKE SA, whatever the peer rekeys without
		// deleting.
		if len(s.children) >= maxChildren {
			e.log.Warn("ike: peer rekeys child SAs without deleting the old ones, refused", "sa", s, "children", len(s.children))
			s.respond(m, []Payload{&Notify{NotifyType: TemporaryFailure}})
			return nil
		}
		if old.succ != nil || old.peerSucc != nil || old.redundant {
			// Already replaced (its delete is on the way) or a second
			// colliding rekey.
			s.respond(m, []Payload{&Notify{NotifyType: TemporaryFailure}})
			return nil
		}
	} else {
		// An additional child SA (RFC 7296 §1.3.1), e.g. one the peer
		// recreates after a hard expiry. Invariant
		// (TestAdditionalChildBound): these count against the same
		// maxChildren bound, beyond it NO_ADDITIONAL_SAS.
		if len(s.children) >= maxChildren {
			e.log.Warn("ike: peer's additional child SA refused: too many child SAs", "sa", s, "children", len(s.children))
			s.respond(m, []Payload{&Notify{NotifyType: NoAdditionalSAs}})
			return nil
		}
		if m.Notify(UseTransportMode) != nil {
			s.respond(m, []Payload{&Notify{NotifyType: NoProposalChosen}})
			return nil
		}
	}
	chosen, ok := choose([]Proposal{e.espProp}, sap.Proposals)
	if !ok || len(chosen.SPI) != 4 || (dhOf(e.espProp) != 0 && dhOf(chosen) == 0) {
		s.respond(m, []Payload{&Notify{NotifyType: NoProposalChosen}})
		return nil
	}
	var gir []byte
	var ourKE *KE
	if g := dhOf(chosen); g != 0 {
		ke, _ := m.Get(PayloadKE).(*KE)
		if ke == nil || ke.Group != g {
			s.respond(m, []Payload{&Notify{NotifyType: InvalidKEPayload, Data: binary.BigEndian.AppendUint16(nil, uint16(g))}})
			return nil
		}
		dh, err := newDH(g)
		if err != nil {
			s.respond(m, []Payload{&Notify{NotifyType: NoProposalChosen}})
			return nil
		}
		if gir, err = dh.shared(ke.Data); err != nil {
			e.malformed.Add(1)
			s.respond(m, []Payload{&Notify{NotifyType: InvalidSyntax}})
			return nil
		}
		defer clear(gir)
		ourKE = &KE{Group: g, Data: dh.pub}
	}
	ni := narrow(tsi.Selectors, e.cfg.RemoteTS)
	nr := narrow(tsr.Selectors, e.cfg.LocalTS)
	if len(ni) == 0 || len(nr) == 0 {
		s.respond(m, []Payload{&Notify{NotifyType: TSUnacceptable}})
		return nil
	}
	spi, err := s.allocChildSPI()
	if err != nil {
		s.respond(m, []Payload{&Notify{NotifyType: TemporaryFailure}})
		return nil
	}
	ourNonce := newNonce()
	c, err := s.makeChild(chosen, spi, nonce.Data, ourNonce, gir, false, ni, nr)
	if err != nil {
		if e.cfg.SAD != nil {
			e.cfg.SAD.ReleaseSPI(binary.BigEndian.Uint32(spi))
		}
		s.respond(m, []Payload{&Notify{NotifyType: NoProposalChosen}})
		return nil
	}
	ours := chosen
	ours.SPI = spi
	ps := []Payload{&SA{Proposals: []Proposal{ours}}, &Nonce{Data: ourNonce}}
	if ourKE != nil {
		ps = append(ps, ourKE)
	}
	send := s.respondLater(m, append(ps, &TS{Selectors: ni}, &TS{Responder: true, Selectors: nr}))
	s.children = append(s.children, c)
	switch {
	case old == nil:
		e.log.Info("ike: additional child SA created by peer", "peer", s.remote, "new", c.ID, "pfs", c.PFS,
			"spi_in", fmt.Sprintf("%08x", c.In.SPI), "spi_out", fmt.Sprintf("%08x", c.Out.SPI))
	case old.ourRekey:
		old.peerSucc = c // a collision, decided when our response arrives
	default:
		old.succ = c
	}
	if old != nil {
		e.log.Info("ike: child SA rekeyed by peer", "peer", s.remote, "old", old.ID, "new", c.ID, "pfs", c.PFS,
			"spi_in", fmt.Sprintf("%08x", c.In.SPI), "spi_out", fmt.Sprintf("%08x", c.Out.SPI))
	}
	if f := e.cfg.OnChild; f != nil {
		return []func(){func() { f(c) }, send} // see respondLater
	}
	return []func(){send}
}

// createChildRetry runs one CREATE_CHILD_SA exchange (a rekey of old,
// or an additional child when old is nil) and, when the peer answers
// INVALID_KE_PAYLOAD naming another group, retries it once with that
// group.
func (s *IKESA) createChildRetry(ctx context.Context, old *ChildSA, spi []byte, group DHGroup) (*ChildSA, error) {
	var child *ChildSA
	var err error
	for try := 0; try < 2; try++ {
		var retry DHGroup
		child, retry, err = s.rekeyChildOnce(ctx, old, spi, group)
		if retry == 0 {
			break
		}
		group = retry
	}
	return child, err
}

// childExchangeOKLocked reports (with e.mu held) whether s may run a
// CREATE_CHILD_SA exchange for a child now: a temporary error while the
// IKE SA itself is being rekeyed, ErrClosed unless it is established and
// not being deleted.
func (s *IKESA) childExchangeOKLocked() error {
	if s.successor != nil || s.rekeying {
		return fmt.Errorf("%w: %w", errTemporary, errf(ErrConfig, "IKE SA rekey under way"))
	}
	if s.state != stateEstablished || s.deleting {
		return errf(ErrClosed, "IKE SA not established")
	}
	return nil
}
