package ike

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// Red team, second round: each test names a defect found by attacking
// the package as a hostile peer or an on-path attacker, and fails
// without its fix.

// pendingID returns the message ID of s's pending request, waiting for
// one to be sent.
func pendingID(t *testing.T, s *IKESA) uint32 {
	t.Helper()
	var id uint32
	if !waitFor(func() bool {
		s.e.mu.Lock()
		defer s.e.mu.Unlock()
		if s.pending != nil {
			id = s.pending.id
			return true
		}
		return false
	}) {
		t.Fatal("no request sent")
	}
	return id
}

// TestRedTeamPlaintextResponse: a response whose header says
// IKE_SA_INIT skipped the SK check whatever request was pending, so
// anyone who sees the (cleartext) SPIs and message ID of an established
// IKE SA could answer its requests with unauthenticated payloads: a
// dead peer's DPD probe "answered" forever, a forged CREATE_CHILD_SA
// response installing a child SA the real peer does not have (and the
// old one then deleted), forged error notifies. Invariant: a response
// is matched to the pending request only when its exchange type is the
// request's, and it is processed only after the SK payload verified
// (except the IKE_SA_INIT response to our IKE_SA_INIT request).
func TestRedTeamPlaintextResponse(t *testing.T) {
	forge := func(s *IKESA, id uint32, ps ...Payload) []byte {
		m := &Message{Header: Header{SPIi: s.spiI, SPIr: s.spiR, Exchange: IKESAInit, MsgID: id,
			Flags: FlagInitiator | FlagResponse}, Payloads: ps}
		return m.Marshal()
	}
	t.Run("dpd", func(t *testing.T) {
		e, s := fuzzEstablished(t)
		defer e.Close()
		ctx, cancel := context.WithCancel(context.Background())
		res := make(chan error, 1)
		go func() { res <- s.Ping(ctx) }()
		id := pendingID(t, s)
		e.HandlePacket(forge(s, id), s.remote, false)
		select {
		case err := <-res:
			if err == nil {
				t.Fatal("a forged plaintext response answered the liveness check")
			}
		case <-time.After(100 * time.Millisecond):
		}
		cancel()
		<-res
	})
	t.Run("child-rekey", func(t *testing.T) {
		e, s := fuzzEstablished(t)
		defer e.Close()
		ctx, cancel := context.WithCancel(context.Background())
		res := make(chan error, 1)
		go func() { _, err := s.RekeyChild(ctx); res <- err }()
		id := pendingID(t, s)
		prop := e.espProp
		prop.SPI = []byte{0, 0, 0x66, 0x66}
		k, _ := newDH(Curve25519)
		e.HandlePacket(forge(s, id, &SA{Proposals: []Proposal{prop}}, &Nonce{Data: bytes.Repeat([]byte{7}, 32)},
			&KE{Group: Curve25519, Data: k.pub}, &TS{Selectors: ts("10.0.0.0/8")}, &TS{Responder: true, Selectors: ts("10.1.0.0/16")}),
			s.remote, false)
		e.mu.Lock()
		n := len(s.children)
		e.mu.Unlock()
		if n != 1 {
			t.Errorf("a forged plaintext CREATE_CHILD_SA response installed a child SA (%d children)", n)
		}
		cancel()
		<-res
	})
	t.Run("exchange-mismatch", func(t *testing.T) {
		// An authenticated response of another exchange type does not
		// answer the pending request either (RFC 7296 §3.1).
		e, s := fuzzEstablished(t)
		defer e.Close()
		ctx, cancel := context.WithCancel(context.Background())
		res := make(chan error, 1)
		go func() { res <- s.Ping(ctx) }()
		id := pendingID(t, s)
		raw, err := sealSK(s.suite, s.keys.ei, s.keys.ai, Header{SPIi: 1, SPIr: 2, Exchange: CreateChildSA, MsgID: id,
			Flags: FlagInitiator | FlagResponse}, nil)
		if err != nil {
			t.Fatal(err)
		}
		e.HandlePacket(raw, s.remote, false)
		e.mu.Lock()
		still := s.pending != nil && s.pending.id == id
		e.mu.Unlock()
		if !still {
			t.Error("a CREATE_CHILD_SA response answered an INFORMATIONAL request")
		}
		cancel()
		<-res
	})
}

// TestRedTeamCloseUnblocks: Endpoint.Close ended the pending request of
// each IKE SA but nothing else: an Initiate in progress (waiting for
// its IKE SA's result, which Close never delivered) and any request
// started after Close (the SAs stayed "established", the new request's
// retransmission timer returned early on a closed Endpoint) blocked
// forever without a deadline. Invariant: after Close, Initiate and
// every IKE SA operation return (ErrClosed) without waiting for the
// peer.
func TestRedTeamCloseUnblocks(t *testing.T) {
	wait := func(t *testing.T, what string, res chan error) {
		t.Helper()
		select {
		case err := <-res:
			if err == nil {
				t.Errorf("%s succeeded on a closed Endpoint", what)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still blocked 5s after Close", what)
		}
	}
	t.Run("initiate", func(t *testing.T) {
		e, _ := fuzzEstablished(t)
		res := make(chan error, 1)
		go func() {
			_, err := e.Initiate(context.Background(), netip.MustParseAddrPort("192.0.2.9:500"))
			res <- err
		}()
		if !waitFor(func() bool { e.mu.Lock(); defer e.mu.Unlock(); return len(e.sas) == 2 }) {
			t.Fatal("Initiate did not start")
		}
		e.Close()
		wait(t, "Initiate", res)
	})
	t.Run("after-close", func(t *testing.T) {
		e, s := fuzzEstablished(t)
		e.Close()
		for name, f := range map[string]func() error{
			"Ping":       func() error { return s.Ping(context.Background()) },
			"RekeyChild": func() error { _, err := s.RekeyChild(context.Background()); return err },
			"RekeyIKE":   func() error { _, err := s.RekeyIKE(context.Background()); return err },
			"Delete":     func() error { return s.Delete(context.Background()) },
		} {
			res := make(chan error, 1)
			go func() { res <- f() }()
			wait(t, name, res)
		}
	})
}

// peerRequest seals a request of the peer (the original initiator) of
// the IKE SA made by fuzzEstablished.
func peerRequest(t *testing.T, s *IKESA, x ExchangeType, id uint32, ps ...Payload) []byte {
	t.Helper()
	raw, err := sealSK(s.suite, s.keys.ei, s.keys.ai, Header{SPIi: s.spiI, SPIr: s.spiR, Exchange: x, MsgID: id, Flags: FlagInitiator}, ps)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// childRekeyRequest is the peer's CREATE_CHILD_SA rekeying the child
// whose outbound SPI is out, with PFS (x25519) as fuzzEstablished's
// Endpoint wants.
func childRekeyRequest(t *testing.T, s *IKESA, id, out, newSPI uint32) []byte {
	t.Helper()
	prop := s.e.espProp
	prop.SPI = binary.BigEndian.AppendUint32(nil, newSPI)
	k, _ := newDH(Curve25519)
	return peerRequest(t, s, CreateChildSA, id,
		&Notify{Proto: ProtoESP, SPI: binary.BigEndian.AppendUint32(nil, out), NotifyType: RekeySA},
		&SA{Proposals: []Proposal{prop}}, &Nonce{Data: newNonce()}, &KE{Group: Curve25519, Data: k.pub},
		&TS{Selectors: ts("10.1.0.0/16")}, &TS{Responder: true, Selectors: ts("10.0.0.0/8")})
}

// TestRedTeamChildRekeyChain: an authenticated peer that rekeys the
// child SA again and again without ever deleting the replaced ones
// (RFC 7296 §2.8: the rekey's initiator deletes the old SA) made the
// responder keep every one of them, keys and SAD SPIs included: child
// SAs without bound, one per CREATE_CHILD_SA. Invariant: an IKE SA
// holds at most maxChildren child SAs; a rekey beyond that is refused
// with TEMPORARY_FAILURE until the peer deletes the replaced ones.
func TestRedTeamChildRekeyChain(t *testing.T) {
	e, s := fuzzEstablished(t)
	defer e.Close()
	for i := range 40 {
		e.mu.Lock()
		out := s.children[len(s.children)-1].Out.SPI
		e.mu.Unlock()
		e.HandlePacket(childRekeyRequest(t, s, uint32(i), out, 0x1000+uint32(i)), s.remote, false)
	}
	e.mu.Lock()
	n := len(s.children)
	e.mu.Unlock()
	if n > maxChildren {
		t.Fatalf("40 rekeys without deletes left %d child SAs on one IKE SA", n)
	}
	// Once the peer deletes the replaced children, it may rekey again.
	e.mu.Lock()
	var del [][]byte
	for _, c := range s.children[:len(s.children)-1] {
		del = append(del, binary.BigEndian.AppendUint32(nil, c.Out.SPI))
	}
	e.mu.Unlock()
	e.HandlePacket(peerRequest(t, s, Informational, 40, &Delete{Proto: ProtoESP, SPISize: 4, SPIs: del}), s.remote, false)
	e.mu.Lock()
	out := s.children[len(s.children)-1].Out.SPI
	e.mu.Unlock()
	e.HandlePacket(childRekeyRequest(t, s, 41, out, 0x2000), s.remote, false)
	e.mu.Lock()
	n = len(s.children)
	e.mu.Unlock()
	if n != 2 {
		t.Fatalf("after the deletes and a new rekey: %d children, want 2", n)
	}
}

// initCounter counts the IKE_SA_INIT requests written.
type initCounter struct {
	net.PacketConn
	inits atomic.Int32
}

func (c *initCounter) WriteTo(b []byte, a net.Addr) (int, error) {
	if len(b) >= HeaderLen && ExchangeType(b[18]) == IKESAInit && b[19]&FlagResponse == 0 {
		c.inits.Add(1)
	}
	return c.PacketConn.WriteTo(b, a)
}

// TestRedTeamReplacedSATimeout: when the Delete of an IKE SA replaced
// by our rekey went unanswered, the old SA died with ErrTimeout like a
// dead peer's: OnIKEDown said ErrTimeout (not ErrRekeyed) and
// DPDAction "restart" initiated a second IKE SA (and child) to a peer
// whose successor SA was alive and holding the children. Invariant: an
// IKE SA replaced by a rekey (or redundant after a collision) goes
// down with ErrRekeyed whatever ends it, and never restarts.
func TestRedTeamReplacedSATimeout(t *testing.T) {
	var ups atomic.Int32
	rconn := &dropConn{PacketConn: listen(t)}
	rcfg := Config{LocalID: FQDN("responder.test"), LocalTS: ts("10.2.0.0/16"), RemoteTS: ts("10.1.0.0/16"), IKELifetime: -1,
		OnIKEUp: func(*IKESA) {
			// The peer answers the IKE SA rekey (its second OnIKEUp),
			// then nothing more: the Delete of the old SA times out.
			if ups.Add(1) == 2 {
				rconn.dropping.Store(true)
			}
		}}
	r := newSideConn(t, rcfg, rconn, listen(t))
	ic := &initCounter{PacketConn: listen(t)}
	i := newSideConn(t, Config{LocalID: FQDN("initiator.test"), LocalTS: ts("10.1.0.0/16"), RemoteTS: ts("10.2.0.0/16"),
		IKELifetime: -1, Retries: 2, DPDAction: "restart", PeerNATTPort: port(r.natt).Port()}, ic, listen(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	old, err := i.ep.Initiate(ctx, port(r.conn))
	if err != nil {
		t.Fatal(err)
	}
	recv(t, i.children)
	if _, err := old.RekeyIKE(ctx); err == nil {
		t.Fatal("the Delete of the old SA was not answered, yet RekeyIKE reported no error")
	}
	ev := recvDown(t, i.ikeDown)
	if ev.s != old || !errors.Is(ev.err, ErrRekeyed) || errors.Is(ev.err, ErrTimeout) {
		t.Errorf("OnIKEDown(%v, %v) for the replaced SA, want ErrRekeyed", ev.s, ev.err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := ic.inits.Load(); n != 1 {
		t.Errorf("%d IKE_SA_INIT requests: a restart next to the live successor", n)
	}
	if old.Successor() == nil || !old.Successor().Established() {
		t.Error("the successor is not established")
	}
}

// chanConn hands the datagrams written to a channel (dropped when full).
type chanConn struct {
	fakeConn
	out chan []byte
}

func (c *chanConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	select {
	case c.out <- append([]byte(nil), b...):
	default:
	}
	return len(b), nil
}

// TestRedTeamInvalidKEPingPong: the initiator answered every
// INVALID_KE_PAYLOAD naming another group it offers with a new
// IKE_SA_INIT (and a new DH key), without bound: an unauthenticated
// responder (or anyone seeing the SPIi) alternating between two
// offered groups kept Initiate going forever, never timing out, each
// round costing a key generation. Invariant: an initiator follows at
// most maxKETries INVALID_KE_PAYLOAD notifies per IKE SA (as it
// follows at most maxCookieTries COOKIE notifies).
func TestRedTeamInvalidKEPingPong(t *testing.T) {
	conn := &chanConn{out: make(chan []byte, 16)}
	e, err := NewEndpoint(Config{PSK: testPSK, LocalID: FQDN("i"), LocalTS: ts("10.0.0.0/8"), RemoteTS: ts("10.1.0.0/16"),
		IKEProposals: []string{"aes128gcm16-prfsha256-x25519-ecp256"}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	peer := netip.MustParseAddrPort("192.0.2.5:500")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := make(chan error, 1)
	go func() { _, err := e.Initiate(ctx, peer); res <- err }()
	for round := 0; round < 20; round++ {
		var req *Message
		for req == nil {
			select {
			case b := <-conn.out:
				if m, err := Parse(b); err == nil && m.Exchange == IKESAInit && !m.Response() {
					req = m
				}
			case err := <-res:
				if err == nil {
					t.Fatal("Initiate succeeded")
				}
				if round > maxKETries+1 {
					t.Fatalf("Initiate gave up only after %d INVALID_KE_PAYLOAD rounds", round)
				}
				return
			case <-time.After(5 * time.Second):
				t.Fatal("no IKE_SA_INIT")
			}
		}
		ke, _ := req.Get(PayloadKE).(*KE)
		want := Curve25519
		if ke.Group == Curve25519 {
			want = ECP256
		}
		resp := &Message{Header: Header{SPIi: req.SPIi, Exchange: IKESAInit, Flags: FlagResponse},
			Payloads: []Payload{&Notify{NotifyType: InvalidKEPayload, Data: binary.BigEndian.AppendUint16(nil, uint16(want))}}}
		e.HandlePacket(resp.Marshal(), peer, false)
	}
	t.Fatal("20 rounds of INVALID_KE_PAYLOAD and Initiate still goes on")
}

// TestRedTeamReplyNotOffered: the initiator's check of the
// responder's choice (acceptable) only looked at the transforms the
// reply listed, so a reply leaving out a transform type we offered, or
// listing two of one type, passed: e.g. ESN dropped from an offer of
// ESN only (the child SA then silently ran with 32-bit sequence
// numbers), or two ciphers of which each side may use another. RFC
// 7296 §3.3: the accepted suite has exactly one transform of each type
// proposed. Invariant: acceptable(ours, r) holds only when r is, type
// by type, exactly one transform of one of our proposals (integrity may
// be left out with an AEAD cipher), checked over random replies.
func TestRedTeamReplyNotOffered(t *testing.T) {
	espYes, _ := ESPProposal([]string{"aes128gcm16"}, "yes")
	gcm, cbc := Transform{Type: TransformEncr, ID: EncrAESGCM16, KeyLen: 128}, Transform{Type: TransformEncr, ID: EncrAESCBC, KeyLen: 256}
	esnYes, esnNo := Transform{Type: TransformESN, ID: ESNYes}, Transform{Type: TransformESN, ID: ESNNo}
	if acceptable([]Proposal{espYes}, Proposal{Protocol: ProtoESP, Transforms: []Transform{gcm}}) {
		t.Error("a reply without ESN accepted for an offer of ESN only")
	}
	if !acceptable([]Proposal{espYes}, Proposal{Protocol: ProtoESP, Transforms: []Transform{gcm, esnYes}}) {
		t.Error("the offered suite refused")
	}
	espTwo, _ := ESPProposal([]string{"aes128gcm16", "aes256-sha256"}, "both")
	if acceptable([]Proposal{espTwo}, Proposal{Protocol: ProtoESP, Transforms: []Transform{gcm, esnYes, esnNo}}) {
		t.Error("a reply with two ESN transforms accepted")
	}
	// Property: over random replies made of offered (and some foreign)
	// transforms, acceptable implies one transform per offered type.
	r := rand.New(rand.NewPCG(7, 8))
	ikeOffer, _ := ParseIKEProposal("aes128gcm16-aes256-sha256-prfsha256-x25519-ecp256")
	offers := []Proposal{espTwo, ikeOffer}
	foreign := []Transform{{Type: TransformEncr, ID: EncrAESCBC, KeyLen: 192}, {Type: TransformDH, ID: uint16(MODP2048)}, cbc}
	for range 20000 {
		op := offers[r.IntN(len(offers))]
		pool := append(append([]Transform(nil), op.Transforms...), foreign...)
		reply := Proposal{Protocol: op.Protocol}
		for range r.IntN(6) {
			reply.Transforms = append(reply.Transforms, pool[r.IntN(len(pool))])
		}
		if !acceptable([]Proposal{op}, reply) {
			continue
		}
		count := map[TransformType]int{}
		for _, tr := range reply.Transforms {
			count[tr.Type]++
		}
		e, _ := reply.get(TransformEncr)
		for _, tr := range op.Transforms {
			if n := count[tr.Type]; n != 1 && !(tr.Type == TransformInteg && n == 0 && e.ID == EncrAESGCM16) {
				t.Fatalf("accepted %+v for the offer %+v: %d transforms of type %d", reply.Transforms, op.Transforms, n, tr.Type)
			}
		}
	}
}

// TestRedTeamCanceledRequestDesync: a request whose context ended was
// dropped from the window, so the next request took the next message
// ID although the peer might never have received the dropped one (a
// Ping with a short deadline during a brief outage): a live peer,
// still expecting the old ID, drops everything after it (window of
// one, RFC 7296 §2.3), and the IKE SA died with ErrTimeout - DPD
// "detecting" a live peer. Invariant: message IDs are used in order
// without gaps the peer could not fill: a request stays in the window
// (retransmitted, its answer discarded) until answered or timed out,
// even when its caller stopped waiting.
func TestRedTeamCanceledRequestDesync(t *testing.T) {
	e, s := fuzzEstablished(t)
	defer e.Close()
	conn := &chanConn{out: make(chan []byte, 64)}
	e.conn = conn
	e.cfg.Retransmit = 20 * time.Millisecond
	ctx1, cancel1 := context.WithCancel(context.Background())
	res1 := make(chan error, 1)
	go func() { res1 <- s.Ping(ctx1) }()
	<-conn.out // lost on the way to the peer
	cancel1()
	<-res1
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- s.Ping(ctx) }()
	// A strict live peer: it answers the request with the message ID it
	// expects, and drops the others.
	expect := uint32(0)
	for {
		select {
		case err := <-res:
			if err != nil {
				t.Fatalf("Ping to a live peer after a canceled one: %v", err)
			}
			return
		case b := <-conn.out:
			m, err := Parse(b)
			if err != nil || m.Response() || m.MsgID != expect {
				continue
			}
			raw, err := sealSK(s.suite, s.keys.ei, s.keys.ai, Header{SPIi: 1, SPIr: 2, Exchange: m.Exchange, MsgID: m.MsgID,
				Flags: FlagInitiator | FlagResponse}, nil)
			if err != nil {
				t.Fatal(err)
			}
			expect++
			e.HandlePacket(raw, s.remote, false)
		case <-ctx.Done():
			t.Fatal("Ping never completed")
		}
	}
}

// TestRedTeamCallbackAfterClose: Close waited for the background
// rekeys and restarts but not for HandlePacket calls in flight, whose
// callbacks (OnChild installing a child SA, OnIKEUp...) then ran after
// Close returned, when the embedder tears its SAD down. Invariant: when
// Close returns, no callback of the Endpoint is running and none will
// start.
func TestRedTeamCallbackAfterClose(t *testing.T) {
	e, s := fuzzEstablished(t)
	entered, release := make(chan struct{}), make(chan struct{})
	e.cfg.OnChild = func(*ChildSA) { close(entered); <-release }
	e.mu.Lock()
	out := s.children[0].Out.SPI
	e.mu.Unlock()
	go e.HandlePacket(childRekeyRequest(t, s, 0, out, 0x3000), s.remote, false)
	<-entered
	closed := make(chan struct{})
	go func() { e.Close(); close(closed) }()
	select {
	case <-closed:
		t.Error("Close returned while OnChild was running")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return after the callback")
	}
}

// TestRedTeamWindowProperty checks over random sequences of genuine,
// replayed, tampered, out-of-window and forged (cleartext) messages,
// from random addresses, on an established IKE SA behind a NAT (so it
// follows its peer), the invariants of the message-ID window and of
// address following (RFC 7296 §2.3, §2.23):
//   - the peer's requests are processed once each, in order: expect
//     counts the genuine in-window requests;
//   - each of our requests is answered once, by a genuine response of
//     its message ID and exchange type;
//   - the SA moves only to the address of a genuine message that was
//     processed (not replays, tampered or forged ones);
//   - nothing else changes the SA's children.
func TestRedTeamWindowProperty(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 99))
		e, s := fuzzEstablished(t)
		e.cfg.Retransmit = time.Hour // no retransmission timers fire
		e.mu.Lock()
		s.nat = true
		e.mu.Unlock()
		addr := func() netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + r.IntN(4))}), uint16(4500+r.IntN(3)))
		}
		wantRemote := s.remote
		var expect uint32     // peer's next request ID
		var sentReqs [][]byte // genuine requests of the peer, by ID
		var oldResps [][]byte // genuine responses of the peer already used
		answered, wantAnswered := 0, 0
		var pendingID uint32
		pending := false
		for step := range 300 {
			from := addr()
			var pkt []byte
			accept := false // whether the packet must be processed
			switch k := r.IntN(8); {
			case k == 0 && !pending: // we send a request
				e.mu.Lock()
				b, err := s.seal(s.header(Informational, s.nextReq, false), nil)
				if err != nil {
					e.mu.Unlock()
					t.Fatal(err)
				}
				rq := s.startRequest(Informational, b, func(*Message, []byte, netip.AddrPort, bool) []func() {
					answered++
					return nil
				})
				pendingID, pending = rq.id, true
				e.mu.Unlock()
				continue
			case k == 1 && pending: // the genuine response
				pkt = sealResp(t, s, Informational, pendingID)
				oldResps = append(oldResps, pkt)
				accept, pending = true, false
				wantAnswered++
			case k == 2 && pending: // a cleartext forgery, or another exchange type
				if r.IntN(2) == 0 {
					m := &Message{Header: Header{SPIi: 1, SPIr: 2, Exchange: IKESAInit, MsgID: pendingID, Flags: FlagInitiator | FlagResponse}}
					pkt = m.Marshal()
				} else {
					pkt = sealResp(t, s, CreateChildSA, pendingID)
				}
			case k == 3 && len(oldResps) > 0: // a replayed response
				pkt = oldResps[r.IntN(len(oldResps))]
			case k == 4: // a genuine request in the window
				pkt = peerRequest(t, s, Informational, expect)
				sentReqs = append(sentReqs, pkt)
				expect++
				accept = true
			case k == 5 && len(sentReqs) > 0: // a replayed request
				pkt = sentReqs[r.IntN(len(sentReqs))]
			case k == 6: // out of the window
				pkt = peerRequest(t, s, Informational, expect+1+uint32(r.IntN(3)))
			default: // tampered
				pkt = peerRequest(t, s, Informational, expect)
				pkt[HeaderLen+4+r.IntN(len(pkt)-HeaderLen-4)] ^= byte(1 + r.IntN(255))
			}
			if natt := r.IntN(2) == 0; natt {
				e.HandlePacket(append([]byte{0, 0, 0, 0}, pkt...), from, true)
			} else {
				e.HandlePacket(pkt, from, false)
			}
			if accept {
				wantRemote = from
			}
			e.mu.Lock()
			gotRemote, gotExpect, nChildren := s.remote, s.expect, len(s.children)
			e.mu.Unlock()
			if gotRemote != wantRemote || gotExpect != expect || answered != wantAnswered || nChildren != 1 {
				t.Fatalf("seed %d step %d: remote %v (want %v), expect %d (want %d), answered %d (want %d), %d children",
					seed, step, gotRemote, wantRemote, gotExpect, expect, answered, wantAnswered, nChildren)
			}
		}
		e.Close()
	}
}

// sealResp seals a response of the peer (the original initiator) of
// fuzzEstablished's IKE SA.
func sealResp(t *testing.T, s *IKESA, x ExchangeType, id uint32) []byte {
	t.Helper()
	raw, err := sealSK(s.suite, s.keys.ei, s.keys.ai, Header{SPIi: 1, SPIr: 2, Exchange: x, MsgID: id, Flags: FlagInitiator | FlagResponse}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestRedTeamHalfOpenMemory: a half-open IKE SA keeps the IKE_SA_INIT
// request (for the AUTH payload) and the response, and the request's
// size was only bounded by MaxMessageLen: an initiator padding its
// IKE_SA_INIT with 60 KiB of Vendor ID payloads - answering cookies,
// no authentication needed - made each of the up to MaxHalfOpen
// half-open SAs hold 60 KiB, 240 MiB in all by default. Invariant: a
// half-open SA holds at most maxInitLen bytes of IKE_SA_INIT request;
// a longer one is refused before any DH or state (a real one is a few
// hundred bytes: IKE_SA_INIT cannot be fragmented, RFC 7383 §2.5).
func TestRedTeamHalfOpenMemory(t *testing.T) {
	e, err := NewEndpoint(Config{PSK: testPSK, LocalID: FQDN("r"), LocalTS: ts("10.0.0.0/8"), RemoteTS: ts("10.1.0.0/16"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, &fakeConn{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p, _ := ParseIKEProposal("aes128gcm16-prfsha256-x25519")
	p.Num = 1
	for i, pad := range []int{0, 60 << 10} {
		k, _ := newDH(Curve25519)
		m := &Message{Header: Header{SPIi: uint64(100 + i), Exchange: IKESAInit, Flags: FlagInitiator},
			Payloads: []Payload{&SA{Proposals: []Proposal{p}}, &KE{Group: Curve25519, Data: k.pub}, &Nonce{Data: newNonce()}}}
		for pad > 0 {
			n := min(pad, 4000)
			m.Payloads = append(m.Payloads, &Raw{T: PayloadVendor, Data: make([]byte, n)})
			pad -= n
		}
		e.HandlePacket(m.Marshal(), netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), 500), false)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.sas) != 1 {
		t.Errorf("%d half-open SAs, want 1 (the normal IKE_SA_INIT)", len(e.sas))
	}
	for _, s := range e.sas {
		if len(s.initReq) > maxInitLen {
			t.Errorf("a half-open SA holds a %d-byte IKE_SA_INIT request", len(s.initReq))
		}
	}
}

// TestRedTeamDeleteDuringRekey: IKESA.Delete picked the IKE SA to
// delete (the SA, or its successor) before waiting for the pending
// exchange; when that exchange was an IKE SA rekey (e.g. the
// IKELifetime one), the children moved to the new SA meanwhile, Delete
// deleted only the old, empty one, and the tunnel stayed up on the
// successor although Delete returned. Invariant: after Delete returns,
// neither the SA nor any successor holding its children is alive.
func TestRedTeamDeleteDuringRekey(t *testing.T) {
	i, r, gi, _ := gatedPair(t, Config{IKELifetime: -1}, Config{IKELifetime: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := i.ep.Initiate(ctx, port(r.conn))
	if err != nil {
		t.Fatal(err)
	}
	recv(t, i.children)
	recv(t, r.children)
	gi.hold()
	rekeyed := make(chan error, 1)
	go func() { _, err := s.RekeyIKE(ctx); rekeyed <- err }()
	if !waitFor(func() bool { return gi.count() >= 1 }) {
		t.Fatal("no rekey request")
	}
	deleted := make(chan error, 1)
	go func() { deleted <- s.Delete(ctx) }()
	if !waitFor(func() bool { i.ep.mu.Lock(); defer i.ep.mu.Unlock(); return s.deleting }) {
		t.Fatal("Delete did not start")
	}
	gi.release()
	<-rekeyed
	if err := <-deleted; err != nil {
		t.Logf("Delete: %v", err)
	}
	for name, sd := range map[string]*side{"initiator": i, "responder": r} {
		if !waitFor(func() bool { return len(sd.ep.IKESAs()) == 0 }) {
			t.Errorf("%s: IKE SAs left after Delete: %+v", name, sd.ep.IKESAs())
		}
	}
}

// TestRedTeamIKERekeyChain: an authenticated peer that rekeys the IKE
// SA again and again without deleting the replaced SAs kept every one
// of them (until reaped after twice the retransmission schedule, a
// minute by default) and they count against MaxIKESAs, which is
// global: one peer (any holder of the PSK) filled the table and locked
// every other initiator out with TEMPORARY_FAILURE. Invariant: at most
// maxReplacedIKE replaced SAs of one lineage await their delete; a
// rekey beyond that is refused with TEMPORARY_FAILURE.
func TestRedTeamIKERekeyChain(t *testing.T) {
	e, s := fuzzEstablished(t)
	defer e.Close()
	cur := s
	rekeys := 0
	for k := range 40 {
		p := e.ikeProps[0]
		p.SPI = binary.BigEndian.AppendUint64(nil, uint64(1000+k))
		dh, _ := newDH(Curve25519)
		e.mu.Lock()
		id := cur.expect
		e.mu.Unlock()
		e.HandlePacket(peerRequest(t, cur, CreateChildSA, id, &SA{Proposals: []Proposal{p}}, &Nonce{Data: newNonce()},
			&KE{Group: Curve25519, Data: dh.pub}), cur.remote, false)
		e.mu.Lock()
		next := cur.successor
		e.mu.Unlock()
		if next == nil {
			break
		}
		cur, rekeys = next, rekeys+1
	}
	e.mu.Lock()
	n := len(e.sas)
	e.mu.Unlock()
	if rekeys == 0 {
		t.Fatal("no rekey accepted")
	}
	if n > 1+maxReplacedIKE {
		t.Fatalf("%d rekeys without deletes: %d IKE SAs held (MaxIKESAs is shared by all peers)", rekeys, n)
	}
}
