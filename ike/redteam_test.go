package ike

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
)

// captureConn records the datagrams an Endpoint sends.
type captureConn struct {
	fakeConn
	mu   sync.Mutex
	last []byte
}

func (c *captureConn) WriteTo(b []byte, a net.Addr) (int, error) {
	c.mu.Lock()
	c.last = append([]byte(nil), b...)
	c.mu.Unlock()
	return len(b), nil
}

// TestRedTeamHalfOpenFlood breaks "a half-open flood cannot lock out a
// legitimate peer" (RFC 7296 §2.6): the responder keeps state (and does
// a DH) for every IKE_SA_INIT, from any source address, and refuses
// everything with TEMPORARY_FAILURE once 4096 IKE SAs (half-open ones
// included) exist. 4096 spoofed IKE_SA_INIT datagrams - one per source
// address, no round trip needed - keep every real peer out until the
// half-open SAs expire ((Retries+1)*Retransmit*8: 24 s by default), and
// the attacker just repeats. Fix: above a threshold of half-open SAs
// answer IKE_SA_INIT with a stateless COOKIE notify (RFC 7296 §2.6) and
// create state only for requests that echo a valid cookie; never count
// half-open SAs against the room of established ones.
func TestRedTeamHalfOpenFlood(t *testing.T) {
	conn := &captureConn{}
	e, err := NewEndpoint(Config{PSK: testPSK, LocalID: FQDN("r"), LocalTS: ts("10.0.0.0/8"), RemoteTS: ts("10.1.0.0/16"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, conn, &fakeConn{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p, _ := ParseIKEProposal("aes128gcm16-prfsha256-x25519")
	p.Num = 1
	init := func(spi uint64) []byte {
		k, _ := newDH(Curve25519)
		m := &Message{Header: Header{SPIi: spi, Exchange: IKESAInit, Flags: FlagInitiator},
			Payloads: []Payload{&SA{Proposals: []Proposal{p}}, &KE{Group: Curve25519, Data: k.pub}, &Nonce{Data: bytes.Repeat([]byte{1}, 32)}}}
		return m.Marshal()
	}
	// The flood: spoofed sources 198.18.x.y, no reply ever read.
	for i := range 4096 {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], 0xc6120000+uint32(i))
		e.HandlePacket(init(uint64(1000+i)), netip.AddrPortFrom(netip.AddrFrom4(a), 500), false)
	}
	// A legitimate peer, which answers a cookie challenge.
	legit := netip.MustParseAddrPort("192.0.2.77:500")
	req := init(0xfeed)
	for try := 0; try < 2; try++ {
		e.HandlePacket(req, legit, false)
		conn.mu.Lock()
		b := conn.last
		conn.mu.Unlock()
		m, err := Parse(b)
		if err != nil {
			t.Fatalf("response: %v", err)
		}
		if m.Get(PayloadKE) != nil {
			return // served
		}
		n, _ := m.Get(PayloadNotify).(*Notify)
		if n == nil || n.NotifyType != Cookie {
			t.Fatalf("legitimate peer refused after a spoofed half-open flood: notify %+v", n)
		}
		// Retry with the cookie first, as RFC 7296 §2.6 asks.
		m2, _ := Parse(req)
		m2.Payloads = append([]Payload{&Notify{NotifyType: Cookie, Data: n.Data}}, m2.Payloads...)
		req = m2.Marshal()
	}
	t.Fatal("legitimate peer never served")
}

// TestRedTeamSelectorBlowup: an authenticated peer controls the traffic
// selectors the responder installs (narrowed to the configured ones,
// but not bounded in number): each proposed range splits into up to 256
// prefixes (rangePrefixes), and saSelectors takes the cross product of
// source and destination prefixes over every TSi x TSr pair. A single
// IKE_AUTH of a few kilobytes (12 ranges each side, inside the
// configured 10.1.0.0/16 and 10.0.0.0/8) makes the SA carry hundreds of
// thousands of sa.Selectors (40 ranges: 1.4 million), which every packet of the SA scans
// linearly (matchAny): memory and per-packet CPU chosen by the peer.
// Fix: cap the number of negotiated selectors (TS_UNACCEPTABLE or
// narrowing to fewer, wider ones) and/or the prefixes per range.
func TestRedTeamSelectorBlowup(t *testing.T) {
	var tsi, tsr []TrafficSelector
	for i := range 12 {
		tsi = append(tsi, TrafficSelector{StartPort: 0, EndPort: 65535,
			Start: netip.AddrFrom4([4]byte{10, 1, byte(i), 1}), End: netip.AddrFrom4([4]byte{10, 1, byte(i + 100), 254})})
		tsr = append(tsr, TrafficSelector{StartPort: 0, EndPort: 65535,
			Start: netip.AddrFrom4([4]byte{10, byte(i), 0, 1}), End: netip.AddrFrom4([4]byte{10, byte(i + 100), 255, 254})})
	}
	ni := narrow(tsi, ts("10.1.0.0/16"))
	nr := narrow(tsr, ts("10.0.0.0/8"))
	n := len(saSelectors(ni, nr))
	if n > 4096 {
		t.Fatalf("peer-chosen selectors (12 ranges each side) expand to %d sa.Selectors on one SA", n)
	}
}
