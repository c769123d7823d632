package ike

import (
	"bytes"
	"io"
	"log/slog"
	"net/netip"
	"testing"
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
