package ike

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// IKE SA rekeying (RFC 7296 §1.3.2, §2.18): a CREATE_CHILD_SA exchange
// on the old IKE SA carrying an IKE proposal with the new SPI, nonces
// and a KE payload. The new keys are
//
//	SKEYSEED = prf_old(SK_d (old), g^ir (new) | Ni | Nr)
//	{SK_d | SK_ai | ...} = prf+_new(SKEYSEED, Ni | Nr | SPIi | SPIr)
//
// (the old IKE SA's PRF makes SKEYSEED, §2.18), the exchange's
// initiator is the new SA's original initiator, message IDs restart at
// 0, the children move to the new SA and the exchange's initiator
// deletes the old one.
//
// Collisions (§2.8.2): when both sides rekey the same IKE SA at once,
// each answers the other's request (the SA it creates that way is kept
// aside in peerNew) and, when its own response arrives, compares the
// four nonces: the exchange holding the lowest one made a redundant IKE
// SA that its initiator deletes; the children move to the other, whose
// initiator deletes the old SA.
//
// Invariant (TestRekeyProperty): a child SA belongs to exactly one live
// IKE SA at a time, and both sides move it to the same successor.

// isIKERekey tells whether a CREATE_CHILD_SA request rekeys the IKE SA
// (its SA payload proposes protocol IKE).
func isIKERekey(m *Message) bool {
	sap, _ := m.Get(PayloadSA).(*SA)
	return sap != nil && len(sap.Proposals) > 0 && sap.Proposals[0].Protocol == ProtoIKE
}

// home is the IKE SA currently holding s's children: s, or its latest
// successor (e.mu held).
func (s *IKESA) home() *IKESA {
	for s.successor != nil {
		s = s.successor
	}
	return s
}

// Successor returns the IKE SA that replaced s in an IKE SA rekey (the
// latest one after several), or nil.
func (s *IKESA) Successor() *IKESA {
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	if s.successor == nil {
		return nil
	}
	return s.home()
}

// nonceLess orders nonces as strongSwan does: the common prefix
// bytewise, then the shorter first.
func nonceLess(a, b []byte) bool {
	n := min(len(a), len(b))
	if c := bytes.Compare(a[:n], b[:n]); c != 0 {
		return c < 0
	}
	return len(a) < len(b)
}

// lowerNonce is the lower of an exchange's two nonces.
func lowerNonce(ni, nr []byte) []byte {
	if nonceLess(nr, ni) {
		return nr
	}
	return ni
}

// deriveRekeyKeys computes the keys of an IKE SA made by rekeying: see
// the comment at the top of this file.
func deriveRekeyKeys(old suite, oldD []byte, s suite, gir, ni, nr []byte, spii, spir uint64) *keys {
	seed := old.prf.sum(oldD, gir, ni, nr)
	defer clear(seed)
	return expandKeys(s, seed, ni, nr, spii, spir)
}

// moveTo makes w the successor of s and moves the children there
// (e.mu held); it returns the OnIKEUp call for w.
func (s *IKESA) moveTo(w *IKESA) []func() {
	s.successor = w
	for _, c := range s.children {
		c.owner = w
	}
	w.children = append(w.children, s.children...)
	s.children = nil
	s.childSP = nil // the SPI belongs to a child that lives on
	w.initiated, w.origRemote = s.initiated, s.origRemote
	w.established = time.Now()
	s.reapLater()
	s.e.log.Info("ike: IKE SA rekeyed", "old", s, "new", w, "children", len(w.children))
	return w.upAfter()
}

// newRekeyedSA returns the IKE SA a rekey creates, with s's peer.
func (s *IKESA) newRekeyedSA(initiator bool) *IKESA {
	return &IKESA{e: s.e, initiator: initiator, remote: s.remote, natt: s.natt, nat: s.nat,
		remoteID: s.remoteID, done: make(chan error, 1)}
}

// RekeyIKE rekeys the IKE SA (either side may): a CREATE_CHILD_SA
// exchange creates the new IKE SA, the children move to it (reported to
// OnIKEUp; the children are not reported again), and the old SA is
// deleted (reported to OnIKEDown with ErrRekeyed). It returns the new
// IKE SA: after a collision with the peer's rekey, the surviving one
// (then the peer deletes the old SA). On an IKE SA already replaced it
// rekeys the successor.
func (s *IKESA) RekeyIKE(ctx context.Context) (*IKESA, error) {
	e := s.e
	e.mu.Lock()
	if s.successor != nil { // a replaced handle: rekey the current SA
		h := s.home()
		e.mu.Unlock()
		return h.RekeyIKE(ctx)
	}
	if s.state != stateEstablished || s.deleting || s.redundant {
		e.mu.Unlock()
		return nil, errf(ErrClosed, "IKE SA not established or already rekeyed")
	}
	if s.rekeying {
		e.mu.Unlock()
		return nil, errf(ErrConfig, "an IKE SA rekey is already under way")
	}
	s.rekeying = true
	group := s.suite.dh
	e.mu.Unlock()

	var n *IKESA
	var err error
	for try, temp := 0, 0; try < 2; {
		var retry DHGroup
		n, retry, err = s.rekeyIKEOnce(ctx, group)
		if errors.Is(err, errTemporary) && temp < maxTempRetries {
			e.mu.Lock()
			adopt := s.peerNew != nil
			e.mu.Unlock()
			if adopt {
				break
			}
			if werr := tempWait(ctx, e.cfg.Retransmit, temp); werr != nil {
				err = werr
				break
			}
			temp++
			continue
		}
		if retry == 0 {
			break
		}
		group = retry
		try++
	}
	e.mu.Lock()
	s.rekeying = false
	var after []func()
	if err != nil && s.peerNew != nil && s.successor == nil && s.state == stateEstablished {
		// Our rekey failed but we took the peer's: it survives.
		after = s.moveTo(s.peerNew)
		err = nil
		n = s.peerNew
	}
	winner := s.successor
	e.mu.Unlock()
	for _, f := range after {
		f()
	}
	if err != nil {
		return nil, err
	}
	if n != winner {
		// Our new SA was redundant (lowest nonce): we delete it, the
		// peer deletes the old one.
		e.log.Info("ike: IKE SA rekey collision lost, deleting the redundant SA", "redundant", n, "winner", winner)
		derr := n.deleteIKE(ctx, errf(ErrRekeyed, "redundant after a rekey collision"))
		return winner, derr
	}
	return winner, s.deleteIKE(ctx, errf(ErrRekeyed, "replaced by %v", winner))
}

// rekeyIKEOnce runs one CREATE_CHILD_SA exchange with a KE of group;
// retry is the group the peer asked for with INVALID_KE_PAYLOAD.
func (s *IKESA) rekeyIKEOnce(ctx context.Context, group DHGroup) (n *IKESA, retry DHGroup, err error) {
	e := s.e
	dh, err := newDH(group)
	if err != nil {
		return nil, 0, err
	}
	e.mu.Lock()
	n = s.newRekeyedSA(true)
	n.spiI = e.newSPI()
	n.state = stateRekeyInit
	e.sas[n.spiI] = n
	e.mu.Unlock()
	ni := newNonce()
	props := make([]Proposal, len(e.ikeProps))
	for i, p := range e.ikeProps {
		p.SPI = binary.BigEndian.AppendUint64(nil, n.spiI)
		props[i] = p
	}
	ps := []Payload{&SA{Proposals: props}, &Nonce{Data: ni}, &KE{Group: group, Data: dh.pub}}
	var rerr error
	err = s.request(ctx, CreateChildSA, ps, func(m *Message) []func() {
		if nt := m.Notify(InvalidKEPayload); nt != nil && len(nt.Data) == 2 {
			retry = DHGroup(binary.BigEndian.Uint16(nt.Data))
			rerr = errf(ErrNoProposalChosen, "peer wants DH group %v", retry)
			return nil
		}
		rerr = s.rekeyIKEReply(m, n, dh, group, ni)
		if rerr != nil {
			return nil
		}
		winner := n
		if p := s.peerNew; p != nil {
			// A collision: the exchange with the lowest nonce made the
			// redundant SA (RFC 7296 §2.8.2).
			if nonceLess(lowerNonce(n.ni, n.nr), lowerNonce(p.ni, p.nr)) {
				winner, n.redundant = p, true
			} else {
				p.redundant = true
				p.reapLater()
			}
			e.log.Info("ike: IKE SA rekey collision", "ours", n, "peers", p, "winner", winner)
		}
		return s.moveTo(winner)
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		e.mu.Lock()
		if n.state != stateEstablished {
			n.setState(stateDead)
			delete(e.sas, n.spiI)
		}
		e.mu.Unlock()
		if retry != 0 {
			ok := false
			for _, p := range e.ikeProps {
				for _, t := range p.Transforms {
					ok = ok || (t.Type == TransformDH && DHGroup(t.ID) == retry)
				}
			}
			if !ok || retry == group {
				retry = 0
			}
		}
		return nil, retry, err
	}
	return n, 0, nil
}

// rekeyIKEReply checks the response to our IKE SA rekey and sets up n
// (e.mu held).
func (s *IKESA) rekeyIKEReply(m *Message, n *IKESA, dh *dhKey, group DHGroup, ni []byte) error {
	e := s.e
	if nt := m.Notify(TemporaryFailure); nt != nil {
		return fmt.Errorf("%w: %w", errTemporary, notifyErr(nt.NotifyType))
	}
	for _, nt := range m.Notifies() {
		if nt.NotifyType.IsError() {
			return notifyErr(nt.NotifyType)
		}
	}
	sap, _ := m.Get(PayloadSA).(*SA)
	nr, _ := m.Get(PayloadNonce).(*Nonce)
	ke, _ := m.Get(PayloadKE).(*KE)
	if sap == nil || nr == nil || ke == nil || len(sap.Proposals) != 1 {
		e.malformed.Add(1)
		return errf(ErrMalformed, "IKE SA rekey response lacks SA, Nr or KE")
	}
	chosen := sap.Proposals[0]
	if chosen.Protocol != ProtoIKE || len(chosen.SPI) != 8 || !acceptable(e.ikeProps, chosen) {
		return errf(ErrNoProposalChosen, "responder chose an IKE proposal we did not offer")
	}
	spiR := binary.BigEndian.Uint64(chosen.SPI)
	st, err := suiteFor(chosen)
	if err != nil {
		return err
	}
	if spiR == 0 || st.dh != group || ke.Group != group || len(nr.Data) < 16 || len(nr.Data) > 256 {
		e.malformed.Add(1)
		return errf(ErrMalformed, "IKE SA rekey response: SPI %x, group %v/%v, nonce of %d bytes", spiR, st.dh, ke.Group, len(nr.Data))
	}
	gir, err := dh.shared(ke.Data)
	if err != nil {
		e.malformed.Add(1)
		return err
	}
	defer clear(gir)
	chosen.SPI = nil
	n.spiR, n.suite, n.chosenIKE, n.ni, n.nr = spiR, st, chosen, ni, nr.Data
	n.keys = deriveRekeyKeys(s.suite, s.keys.d, st, gir, ni, nr.Data, n.spiI, n.spiR)
	n.setState(stateEstablished)
	n.expect, n.nextReq = 0, 0
	return nil
}

// respondRekeyIKE answers the peer's IKE SA rekey (e.mu held).
func (s *IKESA) respondRekeyIKE(m *Message) []func() {
	e := s.e
	fail := func(t NotifyType, data []byte) []func() {
		s.respond(m, []Payload{&Notify{NotifyType: t, Data: data}})
		return nil
	}
	// RFC 7296 §2.25: an SA already replaced or being deleted.
	if s.successor != nil || s.deleting || s.peerNew != nil {
		return fail(TemporaryFailure, nil)
	}
	// Replaced SAs linger until deleted (or reaped): bound them too.
	if len(e.sas)-e.halfOpen >= 2*e.cfg.MaxIKESAs {
		e.log.Warn("ike: IKE SA table full, refusing a rekey", "sa", s, "sas", len(e.sas))
		return fail(TemporaryFailure, nil)
	}
	sap, _ := m.Get(PayloadSA).(*SA)
	nonce, _ := m.Get(PayloadNonce).(*Nonce)
	ke, _ := m.Get(PayloadKE).(*KE)
	if nonce == nil || ke == nil || len(nonce.Data) < 16 || len(nonce.Data) > 256 {
		e.malformed.Add(1)
		return fail(InvalidSyntax, nil)
	}
	chosen, ok := choose(e.ikeProps, sap.Proposals)
	if !ok || len(chosen.SPI) != 8 || binary.BigEndian.Uint64(chosen.SPI) == 0 {
		e.log.Warn("ike: no acceptable IKE proposal in the peer's rekey", "sa", s)
		return fail(NoProposalChosen, nil)
	}
	st, err := suiteFor(chosen)
	if err != nil {
		return fail(NoProposalChosen, nil)
	}
	if ke.Group != st.dh {
		return fail(InvalidKEPayload, binary.BigEndian.AppendUint16(nil, uint16(st.dh)))
	}
	dh, err := newDH(st.dh)
	if err != nil {
		return fail(NoProposalChosen, nil)
	}
	gir, err := dh.shared(ke.Data)
	if err != nil {
		e.malformed.Add(1)
		e.log.Warn("ike: invalid KE payload in the peer's IKE SA rekey", "sa", s, "err", err)
		return fail(InvalidSyntax, nil)
	}
	defer clear(gir)
	n := s.newRekeyedSA(false)
	n.spiI, n.spiR = binary.BigEndian.Uint64(chosen.SPI), e.newSPI()
	n.ni, n.nr = nonce.Data, newNonce()
	n.suite = st
	ours := chosen
	ours.SPI = binary.BigEndian.AppendUint64(nil, n.spiR)
	chosen.SPI = nil
	n.chosenIKE = chosen
	n.keys = deriveRekeyKeys(s.suite, s.keys.d, st, gir, n.ni, n.nr, n.spiI, n.spiR)
	n.setState(stateEstablished)
	e.sas[n.spiR] = n
	s.respond(m, []Payload{&SA{Proposals: []Proposal{ours}}, &Nonce{Data: n.nr}, &KE{Group: st.dh, Data: dh.pub}})
	if s.rekeying {
		// Our own rekey is pending: decided when its response arrives.
		s.peerNew = n
		return nil
	}
	return s.moveTo(n)
}

// reapLater removes s locally if the peer has not deleted it within
// twice the retransmission schedule: a replaced or redundant IKE SA
// that its rekey's initiator should delete (e.mu held).
func (s *IKESA) reapLater() {
	e := s.e
	if s.expiry != nil {
		s.expiry.Stop()
	}
	grace := 2 * e.cfg.Retransmit * time.Duration(1<<(e.cfg.Retries+1)-1)
	s.expiry = time.AfterFunc(grace, func() {
		e.mu.Lock()
		var after []func()
		if s.state != stateDead && (s.successor != nil || s.redundant) {
			e.log.Info("ike: replaced IKE SA not deleted by the peer, removing it", "sa", s)
			after = s.dieLocked(errf(ErrRekeyed, "not deleted by the peer"))
		}
		e.mu.Unlock()
		for _, f := range after {
			f()
		}
	})
}
