package ike

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// floodInit returns a spoofed IKE_SA_INIT request (X25519), with
// cookie as the first payload when not nil.
func floodInit(t *testing.T, spi uint64, ni []byte, cookie []byte) []byte {
	t.Helper()
	p, err := ParseIKEProposal("aes128gcm16-prfsha256-x25519")
	if err != nil {
		t.Fatal(err)
	}
	p.Num = 1
	k, err := newDH(Curve25519)
	if err != nil {
		t.Fatal(err)
	}
	var ps []Payload
	if cookie != nil {
		ps = append(ps, &Notify{NotifyType: Cookie, Data: cookie})
	}
	ps = append(ps, &SA{Proposals: []Proposal{p}}, &KE{Group: Curve25519, Data: k.pub}, &Nonce{Data: ni})
	m := &Message{Header: Header{SPIi: spi, Exchange: IKESAInit, Flags: FlagInitiator}, Payloads: ps}
	return m.Marshal()
}

// TestLoopbackCookie: our initiator against our responder that demands
// a cookie for every IKE_SA_INIT (CookieThreshold < 0) establishes the
// SA after one COOKIE round trip.
func TestLoopbackCookie(t *testing.T) {
	// The initiator retransmits after 1 s, not the tests' 50 ms: on a
	// loaded machine a COOKIE reply later than 50 ms let it retransmit
	// its first request, which the responder rightly answered with a
	// second cookie.
	i, r := pair(t, Config{Retransmit: time.Second}, Config{CookieThreshold: -1})
	establish(t, i, r)
	recv(t, r.children)
	if n := r.ep.Stats().CookiesSent; n != 1 {
		t.Fatalf("responder sent %d cookies, want 1", n)
	}
}

// TestLoopbackFloodThenInitiate: after 4096 spoofed IKE_SA_INIT
// requests (more than the half-open threshold) our initiator still
// establishes an SA with the responder, which kept at most
// CookieThreshold half-open SAs.
func TestLoopbackFloodThenInitiate(t *testing.T) {
	// Retransmit 1s: the half-open SAs expire after 48 s, not during the flood.
	i, r := pair(t, Config{}, Config{CookieThreshold: 8, Retransmit: time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for n := range 4096 {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], 0xc6120000+uint32(n))
		r.ep.HandlePacket(floodInit(t, uint64(1000+n), bytes.Repeat([]byte{byte(n)}, 32), nil), netip.AddrPortFrom(netip.AddrFrom4(a), 500), false)
	}
	r.ep.mu.Lock()
	half, total := r.ep.halfOpen, len(r.ep.sas)
	r.ep.mu.Unlock()
	if half != 8 || total != 8 {
		t.Fatalf("after the flood: %d half-open, %d IKE SAs; want 8 (the cookie threshold)", half, total)
	}
	if n := r.ep.Stats().CookiesSent; n != 4096-8 {
		t.Fatalf("cookies sent %d, want %d", n, 4096-8)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := i.ep.Initiate(ctx, port(r.conn)); err != nil {
		t.Fatalf("legitimate initiator after the flood: %v", err)
	}
	recv(t, r.children)
}

// TestCookieSecrets: a cookie is bound to the nonce, the address and
// the SPIi, survives one rotation of the secret and no more, and its
// version byte names the secret.
func TestCookieSecrets(t *testing.T) {
	var c cookieSecrets
	now := time.Unix(1000, 0)
	ni := bytes.Repeat([]byte{7}, 32)
	ip := netip.MustParseAddr("192.0.2.1")
	ck := c.issue(ni, ip, 42, now)
	if len(ck) != cookieLen || !c.valid(ck, ni, ip, 42, now) {
		t.Fatalf("own cookie %x refused", ck)
	}
	for _, bad := range []struct {
		ni  []byte
		ip  netip.Addr
		spi uint64
	}{{bytes.Repeat([]byte{8}, 32), ip, 42}, {ni, netip.MustParseAddr("192.0.2.2"), 42}, {ni, ip, 43}} {
		if c.valid(ck, bad.ni, bad.ip, bad.spi, now) {
			t.Fatalf("cookie accepted for %x %v %d", bad.ni, bad.ip, bad.spi)
		}
	}
	flipped := bytes.Clone(ck)
	flipped[cookieLen-1] ^= 1
	if c.valid(flipped, ni, ip, 42, now) || c.valid(ck[:cookieLen-1], ni, ip, 42, now) || c.valid(nil, ni, ip, 42, now) {
		t.Fatal("altered cookie accepted")
	}
	now = now.Add(cookieRotation + time.Second)
	if !c.valid(ck, ni, ip, 42, now) {
		t.Fatal("cookie of the previous secret refused")
	}
	if ck2 := c.issue(ni, ip, 42, now); ck2[0] == ck[0] || bytes.Equal(ck2, ck) {
		t.Fatalf("no new secret after a rotation: %x %x", ck, ck2)
	}
	now = now.Add(cookieRotation + time.Second)
	if c.valid(ck, ni, ip, 42, now) {
		t.Fatal("cookie valid two rotations later")
	}
}

// TestCookieNoStateProperty checks over random sequences of
// IKE_SA_INIT requests (spoofed sources, with no cookie, a forged one,
// a valid one, or a replayed one for another source) the invariants of
// the responder: e.halfOpen equals the number of IKE SAs in
// stateInitDone; above the threshold, a request without a valid cookie
// leaves the SA table unchanged and is answered with a COOKIE; the
// half-open SAs never exceed MaxHalfOpen.
func TestCookieNoStateProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for iter := range 20 {
		conn := &captureConn{}
		thr, maxHalf := 1+r.IntN(6), 4+r.IntN(6)
		e, err := NewEndpoint(Config{PSK: testPSK, LocalID: FQDN("r"), LocalTS: ts("10.0.0.0/8"), RemoteTS: ts("10.1.0.0/16"),
			CookieThreshold: thr, MaxHalfOpen: maxHalf, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, conn, &fakeConn{})
		if err != nil {
			t.Fatal(err)
		}
		for op := range 60 {
			spi := r.Uint64() | 1
			ni := make([]byte, 32)
			for k := range ni {
				ni[k] = byte(r.Uint32())
			}
			from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(r.IntN(4)), byte(r.IntN(256))}), 500)
			var cookie []byte
			valid := false
			switch r.IntN(4) {
			case 1: // forged
				cookie = make([]byte, cookieLen)
				cookie[0] = e.cookies.version
			case 2: // valid
				e.mu.Lock()
				cookie = e.cookies.issue(ni, from.Addr(), spi, time.Now())
				e.mu.Unlock()
				valid = true
			case 3: // valid for another source
				e.mu.Lock()
				cookie = e.cookies.issue(ni, netip.MustParseAddr("192.0.2.9"), spi, time.Now())
				e.mu.Unlock()
			}
			e.mu.Lock()
			before, demand := len(e.sas), e.halfOpen >= thr
			e.mu.Unlock()
			e.HandlePacket(floodInit(t, spi, ni, cookie), from, false)
			e.mu.Lock()
			after, half := len(e.sas), e.halfOpen
			count := 0
			for _, s := range e.sas {
				if s.state == stateInitDone {
					count++
				}
			}
			e.mu.Unlock()
			if half != count {
				t.Fatalf("iter %d op %d: halfOpen %d, %d SAs half open", iter, op, half, count)
			}
			if half > maxHalf {
				t.Fatalf("iter %d op %d: %d half-open SAs, cap %d", iter, op, half, maxHalf)
			}
			conn.mu.Lock()
			resp, _ := Parse(conn.last)
			conn.mu.Unlock()
			if demand && !valid {
				n, _ := resp.Get(PayloadNotify).(*Notify)
				if after != before || n == nil || n.NotifyType != Cookie || resp.SPIr != 0 || len(resp.Payloads) != 1 {
					t.Fatalf("iter %d op %d: without a valid cookie above the threshold: SAs %d→%d, response %+v", iter, op, before, after, resp)
				}
			}
		}
		e.Close()
	}
}
