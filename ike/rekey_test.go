package ike

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// gateConn holds the datagrams written while closed, so two requests
// can be made to cross deterministically.
type gateConn struct {
	net.PacketConn
	mu     sync.Mutex
	closed bool
	held   []heldPkt
}

type heldPkt struct {
	b []byte
	a net.Addr
}

func (g *gateConn) WriteTo(b []byte, a net.Addr) (int, error) {
	g.mu.Lock()
	if g.closed {
		g.held = append(g.held, heldPkt{append([]byte(nil), b...), a})
		g.mu.Unlock()
		return len(b), nil
	}
	g.mu.Unlock()
	return g.PacketConn.WriteTo(b, a)
}

func (g *gateConn) hold() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

func (g *gateConn) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.held)
}

// release sends the held datagrams, in order, before any new one.
func (g *gateConn) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, h := range g.held {
		g.PacketConn.WriteTo(h.b, h.a)
	}
	g.held, g.closed = nil, false
}

// crossing runs fi and fr at once with both sides' first requests held
// until both were sent, so they cross on the wire (RFC 7296 §2.8.1).
func crossing(t *testing.T, gi, gr *gateConn, fi, fr func() error) (erri, errr error) {
	t.Helper()
	gi.hold()
	gr.hold()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); erri = fi() }()
	go func() { defer wg.Done(); errr = fr() }()
	if !waitFor(func() bool { return gi.count() >= 1 && gr.count() >= 1 }) {
		gi.release()
		gr.release()
		wg.Wait()
		t.Fatal("requests not sent")
	}
	gi.release()
	gr.release()
	wg.Wait()
	return erri, errr
}

func gatedPair(t *testing.T, icfg, rcfg Config) (i, r *side, gi, gr *gateConn) {
	t.Helper()
	for _, c := range []*Config{&icfg, &rcfg} {
		if c.LocalTS == nil {
			c.LocalTS, c.RemoteTS = ts("10.1.0.0/16"), ts("10.2.0.0/16")
		}
	}
	rcfg.LocalTS, rcfg.RemoteTS = rcfg.RemoteTS, rcfg.LocalTS
	if icfg.LocalID.Type == 0 {
		icfg.LocalID = FQDN("initiator.test")
	}
	if rcfg.LocalID.Type == 0 {
		rcfg.LocalID = FQDN("responder.test")
	}
	gr = &gateConn{PacketConn: listen(t)}
	r = newSideConn(t, rcfg, gr, listen(t))
	icfg.PeerNATTPort = port(r.natt).Port()
	gi = &gateConn{PacketConn: listen(t)}
	i = newSideConn(t, icfg, gi, listen(t))
	return i, r, gi, gr
}

func onlySA(t *testing.T, s *side) IKESAInfo {
	t.Helper()
	var in []IKESAInfo
	if !waitFor(func() bool {
		in = s.ep.IKESAs()
		return len(in) == 1 && in[0].State == StateEstablished
	}) {
		t.Fatalf("IKE SAs: %+v", in)
	}
	return in[0]
}

func TestLoopbackRekeyIKE(t *testing.T) {
	for _, who := range []string{"initiator", "responder"} {
		t.Run(who, func(t *testing.T) {
			prop := []string{"aes256-sha256-ecp256", "aes128gcm16-prfsha256-x25519"}
			i, r := pair(t, Config{IKEProposals: prop}, Config{IKEProposals: prop})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ike, err := i.ep.Initiate(ctx, port(r.conn))
			if err != nil {
				t.Fatal(err)
			}
			ic, rc := recv(t, i.children), recv(t, r.children)
			<-i.ikeUp
			<-r.ikeUp
			old := map[*side]*IKESA{i: ike, r: rc.IKE}
			i.ep.mu.Lock()
			oldD := append([]byte(nil), ike.keys.d...)
			i.ep.mu.Unlock()
			rekeyer, other := i, r
			if who == "responder" {
				rekeyer, other = r, i
			}
			n, err := old[rekeyer].RekeyIKE(ctx)
			if err != nil {
				t.Fatal(err)
			}
			a, b := onlySA(t, rekeyer), onlySA(t, other)
			if a.SPIi != b.SPIi || a.SPIr != b.SPIr || a.SPIi == ike.spiI || !a.Initiator || b.Initiator {
				t.Fatalf("after the rekey: %+v / %+v", a, b)
			}
			if n.Info().SPIi != a.SPIi {
				t.Fatal("RekeyIKE returned another SA")
			}
			for _, s := range []*side{i, r} {
				up := <-s.ikeUp
				if up == old[s] {
					t.Fatal("OnIKEUp for the old SA")
				}
				ev := recvDown(t, s.ikeDown)
				if ev.s != old[s] || !errors.Is(ev.err, ErrRekeyed) {
					t.Fatalf("OnIKEDown(%v, %v), want the old SA with ErrRekeyed", ev.s, ev.err)
				}
				if len(s.down) != 0 {
					t.Fatal("a child was reported down by the IKE SA rekey")
				}
				if c := old[s].Child(); c == nil || c.Owner() != up {
					t.Fatal("the child did not move to the new IKE SA")
				}
			}
			if len(a.Children) != 1 || len(b.Children) != 1 || a.Children[0].InSPI != b.Children[0].OutSPI {
				t.Fatalf("children after the IKE SA rekey: %+v / %+v", a.Children, b.Children)
			}
			if a.Children[0].ID != ic.ID && a.Children[0].ID != rc.ID {
				t.Fatal("the child changed")
			}
			// Same keys on both sides, new ones.
			ns := map[*side]*IKESA{}
			for _, s := range []*side{i, r} {
				s.ep.mu.Lock()
				for _, x := range s.ep.sas {
					ns[s] = x
				}
				s.ep.mu.Unlock()
			}
			if !bytes.Equal(ns[i].keys.ei, ns[r].keys.ei) || !bytes.Equal(ns[i].keys.d, ns[r].keys.d) || bytes.Equal(ns[i].keys.d, oldD) {
				t.Fatal("rekeyed IKE SA keys differ between the sides or repeat the old ones")
			}
			// The new SA works: ping, child rekey (SK_d), from both sides.
			if err := ns[i].Ping(ctx); err != nil {
				t.Fatal(err)
			}
			if err := ns[r].Ping(ctx); err != nil {
				t.Fatal(err)
			}
			if err := ike.Ping(ctx); err != nil { // forwarded to the successor
				t.Fatal(err)
			}
			if _, err := ike.RekeyChild(ctx); err != nil { // forwarded to the successor
				t.Fatal(err)
			}
			in2, rn2 := recv(t, i.children), recv(t, r.children)
			espRoundTrip(t, in2, rn2)
			espRoundTrip(t, rn2, in2)
			// A second IKE SA rekey from the other side.
			if _, err := ns[other].RekeyIKE(ctx); err != nil {
				t.Fatal(err)
			}
			onlySA(t, i)
			onlySA(t, r)
			// Delete on the original handle deletes the current SA.
			if err := ike.Delete(ctx); err != nil {
				t.Fatal(err)
			}
			if !waitFor(func() bool { return len(i.ep.IKESAs()) == 0 && len(r.ep.IKESAs()) == 0 }) {
				t.Fatal("IKE SAs left after deleting through the original handle")
			}
			for _, s := range []*side{i, r} {
				recv(t, s.down) // the child replaced by RekeyChild
				if d := recv(t, s.down); d.In.SPI != in2.In.SPI && d.In.SPI != rn2.In.SPI {
					t.Fatal("the current child was not reported down")
				}
			}
		})
	}
}

func TestLoopbackRekeyPFS(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ie, re   string
		want     DHGroup
		transfrm string
	}{
		{"x25519", "aes128gcm16-x25519", "aes128gcm16-x25519", Curve25519, "aes128gcm16"},
		{"modp2048-cbc", "aes256-sha256-modp2048", "aes256-sha256-modp2048", MODP2048, "aes256-sha256"},
		// The initiator's KE is x25519, the responder wants ecp256:
		// INVALID_KE_PAYLOAD, then a retry with ecp256.
		{"invalid-ke", "aes128gcm16-x25519-ecp256", "aes128gcm16-ecp256", ECP256, "aes128gcm16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i, r := pair(t, Config{ESPTransforms: []string{tc.ie}}, Config{ESPTransforms: []string{tc.re}})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ike, err := i.ep.Initiate(ctx, port(r.conn))
			if err != nil {
				t.Fatal(err)
			}
			ic, rc := recv(t, i.children), recv(t, r.children)
			if ic.PFS != 0 || rc.PFS != 0 {
				t.Fatal("the IKE_AUTH child has a DH group")
			}
			for _, rekeyer := range []*IKESA{ike, rc.IKE} {
				nc, err := rekeyer.RekeyChild(ctx)
				if err != nil {
					t.Fatal(err)
				}
				a, b := recv(t, i.children), recv(t, r.children)
				if a.PFS != tc.want || b.PFS != tc.want || nc.PFS != tc.want || a.Transform != tc.transfrm {
					t.Fatalf("PFS %v/%v, want %v (%s)", a.PFS, b.PFS, tc.want, a.Transform)
				}
				if !bytes.Equal(a.Out.Key, b.In.Key) || !bytes.Equal(a.In.Key, b.Out.Key) {
					t.Fatal("PFS child keys differ between the sides")
				}
				espRoundTrip(t, a, b)
				espRoundTrip(t, b, a)
				recv(t, i.down)
				recv(t, r.down)
			}
		})
	}
	t.Run("mismatch", func(t *testing.T) {
		i, r := pair(t, Config{ESPTransforms: []string{"aes128gcm16-x25519"}}, Config{})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ike, err := i.ep.Initiate(ctx, port(r.conn))
		if err != nil {
			t.Fatal(err) // IKE_AUTH strips the group: the first child is fine
		}
		recv(t, i.children)
		if _, err := ike.RekeyChild(ctx); !errors.Is(err, ErrNoProposalChosen) {
			t.Fatalf("PFS rekey with a peer without PFS: %v", err)
		}
		if in := onlySA(t, r); len(in.Children) != 1 {
			t.Fatal("the responder lost its child after refusing the rekey")
		}
		if !ike.Established() {
			t.Fatal("a refused rekey killed the IKE SA")
		}
	})
}

func TestESPProposalDH(t *testing.T) {
	p, err := ESPProposal([]string{"aes128gcm16-x25519-ecp256", "aes256-sha256-modp2048"}, "no")
	if err != nil {
		t.Fatal(err)
	}
	var groups []DHGroup
	for _, tr := range p.Transforms {
		if tr.Type == TransformDH {
			groups = append(groups, DHGroup(tr.ID))
		}
	}
	if len(groups) != 3 || groups[0] != Curve25519 || groups[1] != ECP256 || groups[2] != MODP2048 {
		t.Fatalf("groups %v", groups)
	}
	if dhOf(stripDH(p)) != 0 {
		t.Fatal("stripDH kept a group")
	}
	if _, err := ESPProposal([]string{"aes128gcm16-bogus"}, "no"); err == nil {
		t.Fatal("unknown token accepted")
	}
}

func TestLoopbackRekeyCollision(t *testing.T) {
	for k := 0; k < 4; k++ { // the nonces decide who wins: run it a few times
		t.Run("child", func(t *testing.T) {
			i, r, gi, gr := gatedPair(t, Config{ESPTransforms: []string{"aes128gcm16-x25519"}}, Config{ESPTransforms: []string{"aes128gcm16-x25519"}})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ike, err := i.ep.Initiate(ctx, port(r.conn))
			if err != nil {
				t.Fatal(err)
			}
			recv(t, i.children)
			rc := recv(t, r.children)
			var ci, cr *ChildSA
			ei, er := crossing(t, gi, gr,
				func() (err error) { ci, err = ike.RekeyChild(ctx); return },
				func() (err error) { cr, err = rc.IKE.RekeyChild(ctx); return })
			if ei != nil || er != nil {
				t.Fatal(ei, er)
			}
			if ci.In.SPI != cr.Out.SPI || ci.Out.SPI != cr.In.SPI {
				t.Fatalf("the sides kept different children: %08x/%08x vs %08x/%08x", ci.In.SPI, ci.Out.SPI, cr.In.SPI, cr.Out.SPI)
			}
			for _, s := range []*side{i, r} {
				recv(t, s.children)
				recv(t, s.children) // both new children were reported...
				recv(t, s.down)
				recv(t, s.down) // ...and the redundant and the old one deleted
			}
			a, b := onlySA(t, i), onlySA(t, r)
			if !waitFor(func() bool { a, b = onlySA(t, i), onlySA(t, r); return len(a.Children) == 1 && len(b.Children) == 1 }) {
				t.Fatalf("children %+v / %+v", a.Children, b.Children)
			}
			if a.Children[0].InSPI != ci.In.SPI || b.Children[0].InSPI != cr.In.SPI {
				t.Fatal("the surviving child is not the one RekeyChild returned")
			}
			espRoundTrip(t, ci, cr)
		})
		t.Run("ike", func(t *testing.T) {
			i, r, gi, gr := gatedPair(t, Config{}, Config{})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ike, err := i.ep.Initiate(ctx, port(r.conn))
			if err != nil {
				t.Fatal(err)
			}
			recv(t, i.children)
			rc := recv(t, r.children)
			<-i.ikeUp
			<-r.ikeUp
			var ni, nr *IKESA
			ei, er := crossing(t, gi, gr,
				func() (err error) { ni, err = ike.RekeyIKE(ctx); return },
				func() (err error) { nr, err = rc.IKE.RekeyIKE(ctx); return })
			if ei != nil || er != nil {
				t.Fatal(ei, er)
			}
			a, b := onlySA(t, i), onlySA(t, r)
			if a.SPIi != b.SPIi || a.SPIr != b.SPIr || ni.Info().SPIi != a.SPIi || nr.Info().SPIi != a.SPIi {
				t.Fatalf("after the collision: %+v / %+v", a, b)
			}
			if len(a.Children) != 1 || len(b.Children) != 1 || a.Children[0].InSPI != b.Children[0].OutSPI {
				t.Fatal("children lost in the IKE SA rekey collision")
			}
			for _, s := range []*side{i, r} {
				if len(s.down) != 0 {
					t.Fatal("a child was reported down")
				}
				if up := <-s.ikeUp; up.Info().SPIi != a.SPIi {
					t.Fatal("OnIKEUp for the redundant SA")
				}
				if ev := recvDown(t, s.ikeDown); !errors.Is(ev.err, ErrRekeyed) {
					t.Fatal(ev.err)
				}
				if len(s.ikeUp) != 0 || len(s.ikeDown) != 0 {
					t.Fatal("more IKE SA events than one up and one down")
				}
			}
			if err := ni.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := nr.RekeyChild(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}
