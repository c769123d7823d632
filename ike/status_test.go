package ike

import (
	"context"
	"errors"
	"testing"
	"time"
)

func recvDown(t *testing.T, ch chan ikeDownEv) ikeDownEv {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no OnIKEDown")
		return ikeDownEv{}
	}
}

func TestProposalStringRoundTrip(t *testing.T) {
	for _, in := range []string{"aes128gcm16-prfsha256-x25519", "aes256-sha256-prfsha256-ecp256", "aes192-sha512-prfsha384-modp2048", "aes256gcm16-prfsha512-ecp384"} {
		p, err := ParseIKEProposal(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := ProposalString(p); got != in {
			t.Fatalf("ProposalString(ParseIKEProposal(%q)) = %q", in, got)
		}
	}
}

func TestLoopbackStatus(t *testing.T) {
	i, r := pair(t, Config{IKEProposals: []string{"aes256-sha256-ecp256"}, ESN: "yes", RemoteID: FQDN("responder.test")},
		Config{IKEProposals: []string{"aes256-sha256-ecp256"}, ESN: "both"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before := time.Now()
	ike, err := i.ep.Initiate(ctx, port(r.conn))
	if err != nil {
		t.Fatal(err)
	}
	ic, rc := recv(t, i.children), recv(t, r.children)
	if up := <-i.ikeUp; up != ike {
		t.Fatal("OnIKEUp got another IKE SA")
	}
	if up := <-r.ikeUp; up != rc.IKE {
		t.Fatal("responder's OnIKEUp got another IKE SA")
	}
	ii, ri := i.ep.IKESAs(), r.ep.IKESAs()
	if len(ii) != 1 || len(ri) != 1 {
		t.Fatalf("%d and %d IKE SAs listed", len(ii), len(ri))
	}
	if ii[0].SPIi != ri[0].SPIi || ii[0].SPIr != ri[0].SPIr || ii[0].SPIi == 0 || ii[0].SPIr == 0 {
		t.Fatalf("SPIs differ: %x/%x vs %x/%x", ii[0].SPIi, ii[0].SPIr, ri[0].SPIi, ri[0].SPIr)
	}
	a, b := ii[0], ri[0]
	if !a.Initiator || b.Initiator || a.State != StateEstablished || b.State != StateEstablished {
		t.Fatalf("roles/states: %+v %+v", a, b)
	}
	if a.Local != b.Remote || a.Remote != b.Local {
		t.Fatalf("addresses: %v-%v vs %v-%v", a.Local, a.Remote, b.Local, b.Remote)
	}
	if a.LocalID != "initiator.test" || a.RemoteID != "responder.test" || b.RemoteID != "initiator.test" || b.LocalID != "responder.test" {
		t.Fatalf("identities: %+v %+v", a, b)
	}
	if a.Proposal != "aes256-sha256-prfsha256-ecp256" || b.Proposal != a.Proposal {
		t.Fatalf("proposals %q %q", a.Proposal, b.Proposal)
	}
	if a.Established.Before(before) || b.Established.IsZero() {
		t.Fatal("Established not set")
	}
	if len(a.Children) != 1 || len(b.Children) != 1 {
		t.Fatal("children missing")
	}
	ca, cb := a.Children[0], b.Children[0]
	if ca.ID != ic.ID || cb.ID != rc.ID || ca.InSPI != cb.OutSPI || ca.OutSPI != cb.InSPI || !ca.ESN || ca.Transform != "aes128gcm16" || ca.Established.IsZero() {
		t.Fatalf("children: %+v %+v", ca, cb)
	}
	if ike.Info().SPIi != a.SPIi {
		t.Fatal("Info differs from IKESAs")
	}
	// Deleted by the responder: both sides report it down, after the child.
	if err := rc.IKE.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*side{i, r} {
		ev := recvDown(t, s.ikeDown)
		if len(s.down) == 0 {
			t.Fatal("OnChildDown did not run before OnIKEDown")
		}
		if !errors.Is(ev.err, ErrClosed) {
			t.Fatalf("OnIKEDown error %v", ev.err)
		}
	}
	if !waitFor(func() bool { return len(i.ep.IKESAs()) == 0 && len(r.ep.IKESAs()) == 0 }) {
		t.Fatal("IKE SAs still listed after the delete")
	}
	if ike.Info().State != StateDeleting {
		t.Fatal("a deleted SA's Info state is not deleting")
	}
}

func TestLoopbackIKEDownTimeout(t *testing.T) {
	i, r := pair(t, Config{Retries: 2}, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ike, err := i.ep.Initiate(ctx, port(r.conn))
	if err != nil {
		t.Fatal(err)
	}
	recv(t, i.children)
	r.ep.Close()
	if err := ike.Ping(ctx); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Ping to a closed peer: %v", err)
	}
	recv(t, i.down)
	if ev := recvDown(t, i.ikeDown); ev.s != ike || !errors.Is(ev.err, ErrTimeout) {
		t.Fatalf("OnIKEDown(%v, %v)", ev.s, ev.err)
	}
}
