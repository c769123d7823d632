package ike

import (
	"context"
	"encoding/binary"
	"fmt"
)

// Child SA rekeying with CREATE_CHILD_SA (RFC 7296 §1.3.3, §2.8),
// make-before-break: the new child is reported through Config.OnChild
// (install it and switch the tunnel's outbound SA to it) before the old
// one is deleted, so no packet is without an SA. Without PFS (no KE
// payload): KEYMAT = prf+(SK_d, Ni | Nr) with the exchange's fresh
// nonces, keys for the exchange initiator's outbound direction first.

// RekeyChild rekeys the newest child SA: a CREATE_CHILD_SA exchange
// with REKEY_SA creates its successor (reported to Config.OnChild),
// then an INFORMATIONAL exchange deletes the old one (reported to
// Config.OnChildDown). It returns the new child.
func (s *IKESA) RekeyChild(ctx context.Context) (*ChildSA, error) {
	e := s.e
	e.mu.Lock()
	if len(s.children) == 0 {
		e.mu.Unlock()
		return nil, errf(ErrConfig, "no child SA to rekey")
	}
	old := s.children[len(s.children)-1]
	spi, err := s.allocChildSPI()
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	ni := newNonce()
	prop := e.espProp
	prop.SPI = spi
	ps := []Payload{
		&Notify{Proto: ProtoESP, SPI: binary.BigEndian.AppendUint32(nil, old.In.SPI), NotifyType: RekeySA},
		&SA{Proposals: []Proposal{prop}}, &Nonce{Data: ni},
		&TS{Selectors: old.LocalTS}, &TS{Responder: true, Selectors: old.RemoteTS},
	}
	var child *ChildSA
	var cerr error
	err = s.request(ctx, CreateChildSA, ps, func(m *Message) []func() {
		child, cerr = s.rekeyReply(m, spi, ni, old)
		if cerr != nil {
			return nil
		}
		s.children = append(s.children, child)
		e.log.Info("ike: child SA rekeyed", "peer", s.remote, "old", old.ID, "new", child.ID,
			"spi_in", fmt.Sprintf("%08x", child.In.SPI), "spi_out", fmt.Sprintf("%08x", child.Out.SPI))
		if f := e.cfg.OnChild; f != nil {
			return []func(){func() { f(child) }}
		}
		return nil
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		if e.cfg.SAD != nil {
			e.cfg.SAD.ReleaseSPI(binary.BigEndian.Uint32(spi))
		}
		return nil, err
	}
	// The new child is installed: delete the old one.
	derr := s.request(ctx, Informational, []Payload{&Delete{Proto: ProtoESP, SPISize: 4,
		SPIs: [][]byte{binary.BigEndian.AppendUint32(nil, old.In.SPI)}}}, nil)
	e.mu.Lock()
	removed := s.removeChild(binary.BigEndian.AppendUint32(nil, old.Out.SPI))
	e.mu.Unlock()
	if removed != nil {
		s.childDown(removed)()
	}
	return child, derr
}

func (s *IKESA) rekeyReply(m *Message, spi, ni []byte, old *ChildSA) (*ChildSA, error) {
	for _, n := range m.Notifies() {
		if n.NotifyType.IsError() {
			return nil, notifyErr(n.NotifyType)
		}
	}
	sap, _ := m.Get(PayloadSA).(*SA)
	nr, _ := m.Get(PayloadNonce).(*Nonce)
	tsi, _ := m.Get(PayloadTSi).(*TS)
	tsr, _ := m.Get(PayloadTSr).(*TS)
	if sap == nil || nr == nil || tsi == nil || tsr == nil || len(sap.Proposals) != 1 || m.Get(PayloadKE) != nil {
		return nil, errf(ErrMalformed, "CREATE_CHILD_SA response lacks SA, Nr or TS (or has a KE we did not ask for)")
	}
	chosen := sap.Proposals[0]
	if chosen.Protocol != ProtoESP || len(chosen.SPI) != 4 || !acceptable([]Proposal{s.e.espProp}, chosen) {
		return nil, errf(ErrNoProposalChosen, "responder chose an ESP proposal we did not offer")
	}
	if !within(tsi.Selectors, old.LocalTS) || !within(tsr.Selectors, old.RemoteTS) {
		return nil, errf(ErrTSUnacceptable, "responder widened the traffic selectors")
	}
	return s.makeChild(chosen, spi, ni, nr.Data, true, tsi.Selectors, tsr.Selectors)
}

// respondCreateChild answers CREATE_CHILD_SA (e.mu held): rekeying of
// a child SA is supported; new child SAs and IKE SA rekeying are
// refused with NO_ADDITIONAL_SAS.
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
	if rekey == nil || sap == nil || nonce == nil || tsi == nil || tsr == nil {
		s.respond(m, []Payload{&Notify{NotifyType: NoAdditionalSAs}})
		return nil
	}
	var old *ChildSA
	for _, c := range s.children {
		if len(rekey.SPI) == 4 && binary.BigEndian.Uint32(rekey.SPI) == c.Out.SPI {
			old = c
		}
	}
	if old == nil {
		s.respond(m, []Payload{&Notify{Proto: ProtoESP, SPI: rekey.SPI, NotifyType: ChildSANotFound}})
		return nil
	}
	if m.Get(PayloadKE) != nil { // PFS is not implemented
		s.respond(m, []Payload{&Notify{NotifyType: NoProposalChosen}})
		return nil
	}
	chosen, ok := choose([]Proposal{e.espProp}, sap.Proposals)
	if !ok || len(chosen.SPI) != 4 {
		s.respond(m, []Payload{&Notify{NotifyType: NoProposalChosen}})
		return nil
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
	c, err := s.makeChild(chosen, spi, nonce.Data, ourNonce, false, ni, nr)
	if err != nil {
		if e.cfg.SAD != nil {
			e.cfg.SAD.ReleaseSPI(binary.BigEndian.Uint32(spi))
		}
		s.respond(m, []Payload{&Notify{NotifyType: NoProposalChosen}})
		return nil
	}
	ours := chosen
	ours.SPI = spi
	s.respond(m, []Payload{&SA{Proposals: []Proposal{ours}}, &Nonce{Data: ourNonce}, &TS{Selectors: ni}, &TS{Responder: true, Selectors: nr}})
	s.children = append(s.children, c)
	e.log.Info("ike: child SA rekeyed by peer", "peer", s.remote, "old", old.ID, "new", c.ID,
		"spi_in", fmt.Sprintf("%08x", c.In.SPI), "spi_out", fmt.Sprintf("%08x", c.Out.SPI))
	if f := e.cfg.OnChild; f != nil {
		return []func(){func() { f(c) }}
	}
	return nil
}
