package ike

import (
	"bytes"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"
)

// FuzzParse: the codec never panics, and what it accepts re-marshals to
// the same payloads.
func FuzzParse(f *testing.F) {
	f.Add(sampleInit().Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		checkParse(t, b)
	})
}

// FuzzOpenSK: decrypting arbitrary SK payloads (both AEAD and CBC+HMAC)
// never panics, and nothing that was not sealed with the keys is
// accepted.
func FuzzOpenSK(f *testing.F) {
	gcm, _ := ParseIKEProposal("aes128gcm16-prfsha256-x25519")
	cbc, _ := ParseIKEProposal("aes256-sha256-x25519")
	suites := []suite{}
	for _, p := range []Proposal{gcm, cbc} {
		s, err := suiteFor(p)
		if err != nil {
			f.Fatal(err)
		}
		suites = append(suites, s)
	}
	f.Add([]byte{0, 1, 2, 3}, false)
	f.Add(bytes.Repeat([]byte{1}, 64), true)
	f.Fuzz(func(t *testing.T, body []byte, useCBC bool) {
		s := suites[0]
		if useCBC {
			s = suites[1]
		}
		k := deriveKeys(s, bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 16), []byte("g"), 1, 2)
		h := Header{SPIi: 1, SPIr: 2, Exchange: Informational, Next: PayloadSK}
		msg := make([]byte, HeaderLen+4, HeaderLen+4+len(body))
		msg = append(msg, body...)
		h.Length = uint32(len(msg))
		h.put(msg)
		msg[HeaderLen+2], msg[HeaderLen+3] = byte((len(body)+4)>>8), byte(len(body)+4)
		m, err := Parse(msg)
		if err != nil {
			return
		}
		if _, err := openSK(s, k.ei, k.ai, msg, m.Payloads[0].(*Encrypted)); err == nil {
			t.Fatal("forged SK payload accepted")
		}
	})
}

// FuzzEndpoint: a responder fed arbitrary datagrams (on both ports)
// never panics; a valid IKE_SA_INIT seed makes it reach the
// key-exchange code.
func FuzzEndpoint(f *testing.F) {
	k, _ := newDH(Curve25519)
	p, _ := ParseIKEProposal("aes128gcm16-prfsha256-x25519")
	p.Num = 1
	init := &Message{Header: Header{SPIi: 42, Exchange: IKESAInit, Flags: FlagInitiator},
		Payloads: []Payload{&SA{Proposals: []Proposal{p}}, &KE{Group: Curve25519, Data: k.pub}, &Nonce{Data: bytes.Repeat([]byte{1}, 32)}}}
	f.Add(init.Marshal(), false)
	f.Add(append([]byte{0, 0, 0, 0}, init.Marshal()...), true)
	f.Fuzz(func(t *testing.T, b []byte, natt bool) {
		e, err := NewEndpoint(Config{PSK: testPSK, LocalID: FQDN("r"), LocalTS: ts("10.0.0.0/8"), RemoteTS: ts("10.1.0.0/16"),
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, &fakeConn{}, &fakeConn{})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		from := netip.MustParseAddrPort("192.0.2.1:500")
		e.HandlePacket(b, from, natt)
		e.HandlePacket(b, from, natt) // as a retransmission
	})
}

// fuzzEstablished returns a responder Endpoint holding an established
// IKE SA (SPIs 1 and 2, with one child) and that SA.
func fuzzEstablished(t testing.TB) (*Endpoint, *IKESA) {
	e, err := NewEndpoint(Config{PSK: testPSK, LocalID: FQDN("r"), LocalTS: ts("10.0.0.0/8"), RemoteTS: ts("10.1.0.0/16"),
		ESPTransforms: []string{"aes128gcm16-x25519"}, IKELifetime: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, &fakeConn{}, &fakeConn{})
	if err != nil {
		t.Fatal(err)
	}
	p := e.ikeProps[0]
	st, err := suiteFor(p)
	if err != nil {
		t.Fatal(err)
	}
	ni, nr := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	s := &IKESA{e: e, spiI: 1, spiR: 2, remote: netip.MustParseAddrPort("192.0.2.1:500"), suite: st, chosenIKE: p,
		keys: deriveKeys(st, ni, nr, []byte("g^ir"), 1, 2), ni: ni, nr: nr, state: stateEstablished, done: make(chan error, 1)}
	prop := stripDH(e.espProp)
	prop.SPI = []byte{0, 0, 0x10, 0}
	c, err := s.makeChild(prop, []byte{0, 0, 0x20, 0}, ni, nr, nil, false, ts("10.1.0.0/16"), ts("10.0.0.0/8"))
	if err != nil {
		t.Fatal(err)
	}
	s.children = []*ChildSA{c}
	e.sas[2] = s
	return e, s
}

// FuzzEstablished: requests of an authenticated peer (the payloads of
// the fuzzed message sealed with the IKE SA's keys: IKE SA and child SA
// rekeys with or without KE, deletes, anything) never panic, and each
// is answered or counted (Sent, Dropped or Malformed).
func FuzzEstablished(f *testing.F) {
	k, _ := newDH(Curve25519)
	ikeProp, _ := ParseIKEProposal("aes128gcm16-prfsha256-x25519")
	ikeProp.Num, ikeProp.SPI = 1, []byte{0, 0, 0, 0, 0, 0, 0, 9}
	espProp, _ := ESPProposal([]string{"aes128gcm16-x25519"}, "no")
	espProp.Num, espProp.SPI = 1, []byte{0, 0, 0x30, 0}
	nonce := &Nonce{Data: bytes.Repeat([]byte{3}, 32)}
	hdr := func(x ExchangeType, id uint32) Header { return Header{Exchange: x, MsgID: id, Flags: FlagInitiator} }
	for _, m := range []*Message{
		{Header: hdr(CreateChildSA, 0), Payloads: []Payload{&SA{Proposals: []Proposal{ikeProp}}, nonce, &KE{Group: Curve25519, Data: k.pub}}},
		{Header: hdr(CreateChildSA, 0), Payloads: []Payload{&SA{Proposals: []Proposal{ikeProp}}, nonce, &KE{Group: ECP256, Data: k.pub}}},
		{Header: hdr(CreateChildSA, 0), Payloads: []Payload{&Notify{Proto: ProtoESP, SPI: []byte{0, 0, 0x20, 0}, NotifyType: RekeySA},
			&SA{Proposals: []Proposal{espProp}}, nonce, &KE{Group: Curve25519, Data: k.pub},
			&TS{Selectors: ts("10.1.0.0/16")}, &TS{Responder: true, Selectors: ts("10.0.0.0/8")}}},
		{Header: hdr(CreateChildSA, 0), Payloads: []Payload{&Notify{Proto: ProtoESP, SPI: []byte{0, 0, 0x20, 0}, NotifyType: RekeySA},
			&SA{Proposals: []Proposal{espProp}}, nonce, &TS{Selectors: ts("10.1.0.0/16")}, &TS{Responder: true, Selectors: ts("10.0.0.0/8")}}},
		{Header: hdr(Informational, 0), Payloads: []Payload{&Delete{Proto: ProtoESP, SPISize: 4, SPIs: [][]byte{{0, 0, 0x20, 0}}}}},
		{Header: hdr(Informational, 0), Payloads: []Payload{&Delete{Proto: ProtoIKE}}},
		{Header: hdr(Informational, 0)},
	} {
		f.Add(m.Marshal())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil || m.Exchange == IKESAInit {
			return
		}
		e, s := fuzzEstablished(t)
		defer e.Close()
		h := Header{SPIi: 1, SPIr: 2, Exchange: m.Exchange, MsgID: m.MsgID, Flags: m.Flags}
		raw, err := sealSK(s.suite, s.keys.ei, s.keys.ai, h, m.Payloads)
		if err != nil {
			return
		}
		before := e.Stats()
		e.HandlePacket(raw, s.remote, false)
		e.HandlePacket(raw, s.remote, false) // as a retransmission
		after := e.Stats()
		if after.Sent+after.Dropped+after.Malformed < before.Sent+before.Dropped+before.Malformed+2 {
			t.Fatalf("a request was neither answered nor counted: %+v -> %+v", before, after)
		}
	})
}

// TestFuzzEstablishedReaches checks that FuzzEstablished's harness
// reaches the handlers: a peer's IKE SA rekey creates the new SA.
func TestFuzzEstablishedReaches(t *testing.T) {
	e, s := fuzzEstablished(t)
	defer e.Close()
	k, _ := newDH(Curve25519)
	p := e.ikeProps[0]
	p.SPI = []byte{0, 0, 0, 0, 0, 0, 0, 9}
	raw, err := sealSK(s.suite, s.keys.ei, s.keys.ai, Header{SPIi: 1, SPIr: 2, Exchange: CreateChildSA, Flags: FlagInitiator},
		[]Payload{&SA{Proposals: []Proposal{p}}, &Nonce{Data: bytes.Repeat([]byte{3}, 32)}, &KE{Group: Curve25519, Data: k.pub}})
	if err != nil {
		t.Fatal(err)
	}
	e.cfg.Retransmit, e.cfg.Retries = time.Millisecond, 1 // reap quickly
	e.HandlePacket(raw, s.remote, false)
	e.mu.Lock()
	if len(e.sas) != 2 || s.successor == nil || len(s.successor.children) != 1 || s.successor.spiI != 9 {
		t.Fatalf("the peer's IKE SA rekey was not taken: %d SAs, successor %v", len(e.sas), s.successor)
	}
	e.mu.Unlock()
	// The peer never deletes the old SA: it is reaped.
	if !waitFor(func() bool { e.mu.Lock(); defer e.mu.Unlock(); return s.state == stateDead && len(e.sas) == 1 }) {
		t.Fatal("the replaced IKE SA was not reaped")
	}
}
