package ike

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/espxdp/espxdp/sa"
)

// TestLoopbackAdditionalChild: either side creates an additional child
// SA (CREATE_CHILD_SA without REKEY_SA, RFC 7296 §1.3.1) on an
// established IKE SA, with and without PFS: both sides report it with
// matching keys, fresh SPIs and child ID, the responder's narrowed
// selectors, and the first child stays.
func TestLoopbackAdditionalChild(t *testing.T) {
	for _, tc := range []struct {
		who, esp string
		pfs      DHGroup
	}{
		{"initiator", "aes128gcm16", 0},
		{"responder", "aes128gcm16", 0},
		{"initiator", "aes256gcm16-x25519", Curve25519},
		{"responder", "aes256-sha256-ecp256", ECP256},
	} {
		t.Run(tc.who+"/"+tc.esp, func(t *testing.T) {
			cfg := Config{ESPTransforms: []string{tc.esp}}
			i, r := pair(t, cfg, cfg)
			ctx, ike, ic := establish(t, i, r)
			rc := recv(t, r.children)
			creator, other := ike, rc.IKE
			if tc.who == "responder" {
				creator, other = rc.IKE, ike
			}
			nc, err := creator.CreateChild(ctx)
			if err != nil {
				t.Fatal(err)
			}
			in2, rn2 := recv(t, i.children), recv(t, r.children)
			if nc != in2 && nc != rn2 {
				t.Fatal("CreateChild's result was not reported to OnChild")
			}
			if !bytes.Equal(in2.Out.Key, rn2.In.Key) || !bytes.Equal(in2.In.Key, rn2.Out.Key) ||
				in2.Out.SPI != rn2.In.SPI || in2.In.SPI != rn2.Out.SPI {
				t.Fatal("additional child keys or SPIs differ between the sides")
			}
			if in2.ID == ic.ID || in2.In.SPI == ic.In.SPI || in2.Out.SPI == ic.Out.SPI || bytes.Equal(in2.Out.Key, ic.Out.Key) {
				t.Fatal("additional child reuses the first child's ID, SPIs or keys")
			}
			if in2.PFS != tc.pfs || rn2.PFS != tc.pfs {
				t.Fatalf("PFS %v/%v, want %v", in2.PFS, rn2.PFS, tc.pfs)
			}
			// The responder narrowed 10.2.0.0/16 to its 10.2.0.0/24.
			if got := in2.RemoteTS; len(got) != 1 || got[0] != ts("10.2.0.0/24")[0] {
				t.Fatalf("initiator's remote selectors %v, want the narrowed 10.2.0.0/24", got)
			}
			for _, s := range []*IKESA{creator, other} {
				if n := len(s.Info().Children); n != 2 {
					t.Fatalf("%v has %d children, want 2", s, n)
				}
			}
			select {
			case d := <-i.down:
				t.Fatalf("child %d went down", d.ID)
			case d := <-r.down:
				t.Fatalf("child %d went down", d.ID)
			default:
			}
			espRoundTrip(t, in2, rn2)
			espRoundTrip(t, rn2, in2)
			espRoundTrip(t, ic, rc)
			// The new child can be rekeyed like any other.
			if _, err := creator.RekeyChild(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLoopbackAdditionalChildPFSRequired: a responder configured with
// PFS refuses an additional child without it (as it refuses such a
// rekey).
func TestLoopbackAdditionalChildPFSRequired(t *testing.T) {
	i, r := pair(t, Config{ESPTransforms: []string{"aes128gcm16"}}, Config{ESPTransforms: []string{"aes128gcm16-x25519"}})
	ctx, ike, _ := establish(t, i, r)
	recv(t, r.children)
	if _, err := ike.CreateChild(ctx); !errors.Is(err, ErrNoProposalChosen) {
		t.Fatalf("CreateChild without PFS against a PFS responder: %v, want ErrNoProposalChosen", err)
	}
	if n := len(ike.Info().Children); n != 1 {
		t.Fatalf("%d children after the refusal, want 1", n)
	}
}

// TestAdditionalChildBound: random sequences of additional children
// created by either side, also past the creator's own bound (the
// exchange sent directly), rekeys and child deletes. Invariants: an
// IKE SA never holds more than maxChildren child SAs, on either side;
// after every operation both sides hold the same children (same SPI
// pairs); every child reported to OnChild is reported to OnChildDown
// at most once, and only after OnChild.
func TestAdditionalChildBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	type tally struct {
		mu         sync.Mutex
		up, down   map[sa.ChildID]bool
		downBefore bool
		downTwice  bool
	}
	newTally := func() *tally { return &tally{up: map[sa.ChildID]bool{}, down: map[sa.ChildID]bool{}} }
	hooks := func(tl *tally) Config {
		return Config{
			OnChild: func(c *ChildSA) { tl.mu.Lock(); tl.up[c.ID] = true; tl.mu.Unlock() },
			OnChildDown: func(c *ChildSA) {
				tl.mu.Lock()
				defer tl.mu.Unlock()
				if !tl.up[c.ID] {
					tl.downBefore = true
				}
				if tl.down[c.ID] {
					tl.downTwice = true
				}
				tl.down[c.ID] = true
			},
		}
	}
	for iter := 0; iter < 3; iter++ {
		ti, tr := newTally(), newTally()
		i, r := pair(t, hooks(ti), hooks(tr))
		ctx := deadline(t, 60*time.Second)
		ike, err := i.ep.Initiate(ctx, port(r.conn))
		if err != nil {
			t.Fatal(err)
		}
		var rike *IKESA
		if !waitFor(func() bool { sas := r.ep.IKESAs(); return len(sas) == 1 && len(sas[0].Children) == 1 }) {
			t.Fatal("responder has no child")
		}
		r.ep.mu.Lock()
		for _, s := range r.ep.sas {
			rike = s
		}
		r.ep.mu.Unlock()
		spiPairs := func(s *IKESA, flip bool) [][2]uint32 {
			var out [][2]uint32
			for _, c := range s.Info().Children {
				p := [2]uint32{c.InSPI, c.OutSPI}
				if flip {
					p = [2]uint32{c.OutSPI, c.InSPI}
				}
				out = append(out, p)
			}
			slices.SortFunc(out, func(a, b [2]uint32) int { return int(int64(a[0]) - int64(b[0])) })
			return out
		}
		for op := 0; op < 30; op++ {
			s := ike
			if rng.IntN(2) == 0 {
				s = rike
			}
			switch k := rng.IntN(10); {
			case k < 5:
				_, err = s.CreateChild(ctx)
				if err != nil && !errors.Is(err, ErrConfig) {
					t.Fatalf("op %d CreateChild: %v", op, err)
				}
			case k < 7:
				// Past our own bound: the peer must refuse.
				s.e.mu.Lock()
				spi, aerr := s.allocChildSPI()
				s.e.mu.Unlock()
				if aerr != nil {
					t.Fatal(aerr)
				}
				_, _, err = s.rekeyChildOnce(ctx, nil, spi, 0)
				if err != nil {
					s.e.cfg.SAD.ReleaseSPI(binary.BigEndian.Uint32(spi))
				}
				if err != nil && !errors.Is(err, ErrPeerError) {
					t.Fatalf("op %d forced CREATE_CHILD_SA: %v", op, err)
				}
			case k < 8:
				if _, err = s.RekeyChild(ctx); err != nil && !errors.Is(err, ErrConfig) && !errors.Is(err, errTemporary) {
					t.Fatalf("op %d RekeyChild: %v", op, err)
				}
			default:
				s.e.mu.Lock()
				var c *ChildSA
				if n := len(s.children); n > 0 {
					c = s.children[rng.IntN(n)]
				}
				s.e.mu.Unlock()
				if c != nil {
					if err := s.deleteChild(ctx, c); err != nil {
						t.Fatalf("op %d delete: %v", op, err)
					}
				}
			}
			var a, b [][2]uint32
			if !waitFor(func() bool {
				a, b = spiPairs(ike, false), spiPairs(rike, true)
				return slices.Equal(a, b)
			}) {
				t.Fatalf("op %d: the sides disagree on the children: %v vs %v", op, a, b)
			}
			if len(a) > maxChildren {
				t.Fatalf("op %d: %d children, bound %d", op, len(a), maxChildren)
			}
		}
		for _, tl := range []*tally{ti, tr} {
			tl.mu.Lock()
			if tl.downBefore || tl.downTwice {
				t.Fatalf("OnChildDown before OnChild %v, twice %v", tl.downBefore, tl.downTwice)
			}
			tl.mu.Unlock()
		}
	}
}

// TestLoopbackIPv6: IKE over IPv6 outer addresses: the child SAs'
// Local and Remote are the IPv6 endpoints, ESP round-trips, and a
// rekey and an additional child work.
func TestLoopbackIPv6(t *testing.T) {
	l6 := func() net.PacketConn {
		c, err := net.ListenPacket("udp6", "[::1]:0")
		if err != nil {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		return c
	}
	rcfg := Config{LocalID: FQDN("responder.test"), LocalTS: ts("10.2.0.0/24"), RemoteTS: ts("10.1.0.0/16")}
	r := newSideConn(t, rcfg, l6(), l6())
	icfg := Config{LocalID: FQDN("initiator.test"), LocalTS: ts("10.1.0.0/16"), RemoteTS: ts("10.2.0.0/16"), PeerNATTPort: port(r.natt).Port()}
	i := newSideConn(t, icfg, l6(), l6())
	ctx, ike, ic := establish(t, i, r)
	rc := recv(t, r.children)
	lo := netip.IPv6Loopback()
	for _, c := range []*ChildSA{ic, rc} {
		if c.In.Local != lo || c.In.Remote != lo || c.Out.Local != lo || c.Out.Remote != lo {
			t.Fatalf("child %d: in %v→%v out %v→%v, want ::1", c.ID, c.In.Remote, c.In.Local, c.Out.Local, c.Out.Remote)
		}
	}
	espRoundTrip(t, ic, rc)
	espRoundTrip(t, rc, ic)
	if _, err := ike.RekeyChild(ctx); err != nil {
		t.Fatal(err)
	}
	recv(t, i.children)
	recv(t, r.children)
	if _, err := ike.CreateChild(ctx); err != nil {
		t.Fatal(err)
	}
	n1, n2 := recv(t, i.children), recv(t, r.children)
	espRoundTrip(t, n1, n2)
}

// TestLoopbackRekeyChildSA: with two children (the first and an
// additional one), RekeyChildSA rekeys the older one: its successor is
// reported, it goes down, the other child stays; DeleteChild then
// deletes one child and leaves the IKE SA and the other child up; a
// deleted or replaced child is refused.
func TestLoopbackRekeyChildSA(t *testing.T) {
	i, r := pair(t, Config{}, Config{})
	ctx, ike, first := establish(t, i, r)
	recv(t, r.children)
	extra, err := ike.CreateChild(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, i.children)
	recv(t, r.children)
	succ, err := ike.RekeyChildSA(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, i.children)
	recv(t, r.children)
	if d := <-i.down; d != first {
		t.Fatalf("child %d went down, want the first %d", d.ID, first.ID)
	}
	<-r.down
	ids := func() []sa.ChildID {
		var out []sa.ChildID
		for _, c := range ike.Info().Children {
			out = append(out, c.ID)
		}
		return out
	}
	if got := ids(); len(got) != 2 || !slices.Contains(got, extra.ID) || !slices.Contains(got, succ.ID) {
		t.Fatalf("children %v, want the additional %d and the successor %d", got, extra.ID, succ.ID)
	}
	if _, err := ike.RekeyChildSA(ctx, first); !errors.Is(err, ErrConfig) {
		t.Fatalf("rekey of a replaced child: %v", err)
	}
	if err := ike.DeleteChild(ctx, extra); err != nil {
		t.Fatal(err)
	}
	if d := <-i.down; d != extra {
		t.Fatalf("child %d went down, want %d", d.ID, extra.ID)
	}
	if !waitFor(func() bool { return len(r.ep.IKESAs()) == 1 && len(r.ep.IKESAs()[0].Children) == 1 }) {
		t.Fatalf("responder: %+v", r.ep.IKESAs())
	}
	if got := ids(); len(got) != 1 || got[0] != succ.ID || !ike.Established() {
		t.Fatalf("after DeleteChild: %v, established %v", got, ike.Established())
	}
	if err := ike.DeleteChild(ctx, extra); !errors.Is(err, ErrConfig) {
		t.Fatalf("DeleteChild of a deleted child: %v", err)
	}
	if _, err := ike.RekeyChildSA(ctx, extra); !errors.Is(err, ErrConfig) {
		t.Fatalf("rekey of a deleted child: %v", err)
	}
}
