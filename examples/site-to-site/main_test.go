//go:build linux

package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/exampleenv"
	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/sa"
)

// TestRun runs the example end to end: pings and a TCP transfer cross
// the tunnel, a route is all another subnet needs, both gateways agree
// on every counter, nothing was dropped for authentication or replay,
// the wan carried ESP only, and no namespace is left behind.
func TestRun(t *testing.T) {
	testRun(t, false)
}

// TestRunIPv6 runs the example with -ipv6: ESP between IPv6 wan
// addresses, and through the one tunnel an IPv4 and an IPv6 flow, each
// both ways (echo requests and replies; the IPv4 stream hostA → hostB,
// the IPv6 one hostB → hostA, with their ACKs); all the checks of
// TestRun hold, and the wan carried only ESP over IPv6.
func TestRunIPv6(t *testing.T) {
	testRun(t, true)
}

func testRun(t *testing.T, ipv6 bool) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "ip")
	const size = 8 << 20
	const pings = 5
	opts := Options{Workload: exampleenv.Workload{Transform: "aes256gcm16", Pings: pings, Size: size, Timeout: 90 * time.Second}, IPv6: ipv6}
	res, err := run(context.Background(), exampleenv.LogWriter(t), opts)
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
	if ipv6 {
		if res.Ping6.Sent != pings || res.Ping6.Received != pings {
			t.Errorf("IPv6 ping: %d sent, %d answered; want %d", res.Ping6.Sent, res.Ping6.Received, pings)
		}
		if !res.Transfer6.Intact() || res.Transfer6.Received != size {
			t.Errorf("IPv6 transfer: sent %d, received %d, checksums equal %v", res.Transfer6.Sent, res.Transfer6.Received, res.Transfer6.SentSum == res.Transfer6.ReceivedSum)
		}
		// IPv6 header: 40 bytes, TCP 20.
		if mss := res.Transfer6.ClientMSS; mss == 0 || mss > res.PlaintextMTU-60 {
			t.Errorf("IPv6 client MSS %d, want 1..%d (plaintext MTU %d - 60)", mss, res.PlaintextMTU-60, res.PlaintextMTU)
		}
	} else if res.Ping6.Sent != 0 || res.Transfer6.Sent != 0 {
		t.Errorf("IPv6 traffic without -ipv6: %+v, %+v", res.Ping6, res.Transfer6)
	}

	a, b := res.GwA, res.GwB
	// The SAs run between the wan addresses of the chosen family.
	for _, s := range []sa.Stats{a.Out, a.In, b.Out, b.In} {
		if s.Local.Is6() != ipv6 || s.Remote.Is6() != ipv6 {
			t.Errorf("SA %s between %v and %v, want IPv6 %v", s.Name, s.Local, s.Remote, ipv6)
		}
	}
	// The wan router's link to gwA carried ESP and nothing else between
	// the sites: every packet either gateway decrypted crossed it, and
	// at most what both encrypted. (With -ipv6 the link also carries
	// its own neighbour discovery and MLD, counted apart.)
	wire := res.Wire
	if wire.Clear != 0 || wire.Other != 0 {
		t.Errorf("wan saw %d packets in clear between the sites and %d other packets, want none", wire.Clear, wire.Other)
	}
	if lo, hi := a.In.DecapsPkts+b.In.DecapsPkts, a.Out.EncapsPkts+b.Out.EncapsPkts; wire.ESP == 0 || wire.ESP > hi || (wire.Dropped == 0 && wire.ESP < lo) {
		t.Errorf("wan saw %d ESP packets (%d not counted), want %d..%d", wire.ESP, wire.Dropped, lo, hi)
	}
	if !ipv6 && wire.LinkLocal != 0 {
		t.Errorf("IPv4 only, yet the wan saw %d link-local frames", wire.LinkLocal)
	}
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
	// With -ipv6, the IPv6 stream goes the other way: gwB carried it.
	if minPkts := uint64(size / res.PlaintextMTU); ipv6 && (b.Out.EncapsPkts < minPkts || b.Out.EncapsBytes < size) {
		t.Errorf("gwB encapsulated %d packets, %d bytes; want at least %d and %d", b.Out.EncapsPkts, b.Out.EncapsBytes, minPkts, size)
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
		{Workload: exampleenv.Workload{Transform: "rot13", Pings: 1, Size: 1}},
		{Workload: exampleenv.Workload{Transform: "aes256gcm16", Pings: 0, Size: 1}, IPv6: true},
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
	res, err := run(context.Background(), exampleenv.LogWriter(t), Options{Workload: exampleenv.Workload{Transform: "aes256gcm16", Pings: 1, Size: 1 << 30, Timeout: time.Millisecond}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("run with a 1ms budget: %v, want a deadline error", err)
	}
	exampleenv.CheckNamespaces(t, res.Namespaces, 5)
}
