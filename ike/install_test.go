package ike

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestResponderInstallsBeforeResponding: the responder's OnChild (where a
// gateway installs the child's inbound SA) runs before its response
// announcing the child leaves, for the first child (IKE_AUTH) and for a
// rekeyed one (CREATE_CHILD_SA): while the responder's OnChild runs, the
// initiator has not got the child, even with the initiator retransmitting
// its request meanwhile (every 50 ms here). Without it the peer could send
// on a new SA before the gateway knew its SPI (no-sa drops in a rekey).
func TestResponderInstallsBeforeResponding(t *testing.T) {
	var initGot, early, installs atomic.Int32
	ich := make(chan *ChildSA, 4)
	icfg := Config{OnChild: func(c *ChildSA) { initGot.Add(1); ich <- c }}
	rcfg := Config{OnChild: func(c *ChildSA) {
		n := initGot.Load()
		installs.Add(1)
		// Longer than the initiator's retransmission timeout: a response
		// already sent, or sent to a retransmission, arrives meanwhile.
		time.Sleep(200 * time.Millisecond)
		if initGot.Load() != n {
			early.Add(1)
		}
	}}
	i, r := pair(t, icfg, rcfg)
	ctx := deadline(t, 10*time.Second)
	ike, err := i.ep.Initiate(ctx, port(r.conn))
	if err != nil {
		t.Fatalf("Initiate: %v", err)
	}
	recv(t, ich)
	if _, err := ike.RekeyChild(ctx); err != nil {
		t.Fatalf("RekeyChild: %v", err)
	}
	recv(t, ich)
	if n := installs.Load(); n != 2 {
		t.Fatalf("responder's OnChild ran %d times, want 2", n)
	}
	if n := early.Load(); n != 0 {
		t.Errorf("%d of 2 child SAs reached the initiator while the responder was still installing them", n)
	}
}
