//go:build linux

package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/exampleenv"
	"github.com/espxdp/espxdp/internal/testenv"
)

// TestRun runs the example end to end: pings and a TCP transfer cross
// the tunnel, a route is all another subnet needs, both gateways agree
// on every counter, nothing was dropped for authentication or replay,
// and no namespace is left behind.
func TestRun(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "ip")
	const size = 8 << 20
	const pings = 5
	res, err := run(context.Background(), exampleenv.LogWriter(t), Options{Transform: "aes256gcm16", Pings: pings, Size: size, Timeout: 90 * time.Second})
	if res != nil {
		// Checked first: a failed run must clean up too.
		exampleenv.CheckNamespaces(t, res.Namespaces, 5)
	}
	if err != nil {
		t.Fatal(err)
	}
	if res.Ping.Sent != pings || res.Ping.Received != pings {
		t.Errorf("ping: %d sent, %d answered; want %d", res.Ping.Sent, res.Ping.Received, pings)
	}
	if !res.Transfer.Intact() || res.Transfer.Received != size {
		t.Errorf("transfer: sent %d, received %d, checksums equal %v", res.Transfer.Sent, res.Transfer.Received, res.Transfer.SentSum == res.Transfer.ReceivedSum)
	}
	// TCP found the TUN's MTU: segments fit the SA's plaintext MTU.
	if mss := res.Transfer.ClientMSS; mss == 0 || mss > res.PlaintextMTU-40 {
		t.Errorf("client MSS %d, want 1..%d (plaintext MTU %d - 40)", mss, res.PlaintextMTU-40, res.PlaintextMTU)
	}
	if res.SiteCBefore.Received != 0 {
		t.Errorf("10.3.0.1 answered %d pings before gwA had a route to it", res.SiteCBefore.Received)
	}
	if res.SiteCAfter.Sent == 0 || res.SiteCAfter.Received != res.SiteCAfter.Sent {
		t.Errorf("10.3.0.1 answered %d of %d pings after the route was added", res.SiteCAfter.Received, res.SiteCAfter.Sent)
	}
	if !res.Quiescent {
		t.Error("SA counters were still moving when read")
	}

	a, b := res.GwA, res.GwB
	// Every ESP packet one gateway sent, the other decrypted, except
	// those an interface on the way counted as dropped (a busy machine
	// can overflow a veth's XDP ring; TCP retransmits). Bytes can only
	// be checked when nothing was lost.
	exampleenv.CheckSAPair(t, "gwA → gwB", a.Out, b.In, res.WireDropsAtoB)
	exampleenv.CheckSAPair(t, "gwB → gwA", b.Out, a.In, res.WireDropsBtoA)
	// The transfer alone needs size/MSS data segments; bytes at least
	// the payload.
	if minPkts := uint64(size / res.PlaintextMTU); a.Out.EncapsPkts < minPkts || a.Out.EncapsBytes < size {
		t.Errorf("gwA encapsulated %d packets, %d bytes; want at least %d and %d", a.Out.EncapsPkts, a.Out.EncapsBytes, minPkts, size)
	}
	if b.Out.EncapsPkts < pings {
		t.Errorf("gwB encapsulated %d packets, want at least the %d echo replies", b.Out.EncapsPkts, pings)
	}
	for _, g := range []struct {
		name string
		st   GatewayStats
	}{{"gwA", a}, {"gwB", b}} {
		w := g.st.Engine.Workers[0]
		if w.Encrypted != g.st.Out.EncapsPkts || w.Decrypted != g.st.In.DecapsPkts {
			t.Errorf("%s engine: encrypted %d, decrypted %d; SAs: encaps %d, decaps %d",
				g.name, w.Encrypted, w.Decrypted, g.st.Out.EncapsPkts, g.st.In.DecapsPkts)
		}
		if w.Sent != w.Encrypted || w.SADrops != 0 || w.TXFull != 0 || g.st.TUNOversize != 0 {
			t.Errorf("%s engine: %d read from the TUN, %d encrypted, %d SA drops, %d TX full, %d oversize",
				g.name, w.Sent, w.Encrypted, w.SADrops, w.TXFull, g.st.TUNOversize)
		}
	}
}

// TestRunRejectsBadOptions: a bad transform or empty workload fails
// before anything is created.
func TestRunRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{
		{Transform: "rot13", Pings: 1, Size: 1},
		{Transform: "aes256gcm16", Pings: 0, Size: 1},
	} {
		if res, err := run(context.Background(), exampleenv.LogWriter(t), o); err == nil || res != nil {
			t.Errorf("run(%+v) = %v, %v; want an error and no result", o, res, err)
		}
	}
}

// TestRunCleansUpOnFailure: a run that runs out of time fails with the
// deadline and still removes every namespace it made.
func TestRunCleansUpOnFailure(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "ip")
	res, err := run(context.Background(), exampleenv.LogWriter(t), Options{Transform: "aes256gcm16", Pings: 1, Size: 1 << 30, Timeout: time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("run with a 1ms budget: %v, want a deadline error", err)
	}
	exampleenv.CheckNamespaces(t, res.Namespaces, 5)
}
