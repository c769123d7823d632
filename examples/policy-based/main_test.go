//go:build linux

package main

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/exampleenv"
	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/sa"
)

// TestRun runs the example end to end and checks each policy did what
// it says: ICMP crossed in clear (bypass counters, clear ICMP on the
// wan), TCP crossed intact as ESP only (SA counters agree at both
// ends, no clear TCP on the wan), site C raised an acquire and was
// dropped with DropAcquire, traffic outside the protected prefixes
// never entered the engine, and no namespace is left behind.
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
	if !res.Quiescent {
		t.Error("counters were still moving when read")
	}
	a, b := res.GwA, res.GwB
	wa, wb := a.Engine.Workers[0], b.Engine.Workers[0]

	// Policy 10, bypass: every echo request (gwA) and reply (gwB) was
	// sent unchanged, and the wan router saw them in clear.
	if res.BypassPing.Sent != pings || res.BypassPing.Received != pings {
		t.Errorf("bypassed ping: %d sent, %d answered; want %d", res.BypassPing.Sent, res.BypassPing.Received, pings)
	}
	for _, g := range []struct {
		name string
		st   GatewayStats
	}{{"gwA", a}, {"gwB", b}} {
		if w, p := g.st.Engine.Workers[0].Bypassed, g.st.Engine.Processor.Bypass; w != pings || p != pings {
			t.Errorf("%s: engine bypassed %d, processor bypassed %d; want %d (the echo %s)", g.name, w, p, pings,
				map[string]string{"gwA": "requests", "gwB": "replies"}[g.name])
		}
	}
	if res.Wire.ClearICMP != 2*pings {
		t.Errorf("wan saw %d ICMP packets in clear between the sites, want %d", res.Wire.ClearICMP, 2*pings)
	}

	// Policy 20, protect: the transfer is intact, nothing of it crossed
	// in clear, and both ends' SA counters agree.
	if !res.Transfer.Intact() || res.Transfer.Received != size {
		t.Errorf("transfer: sent %d, received %d, checksums equal %v", res.Transfer.Sent, res.Transfer.Received, res.Transfer.SentSum == res.Transfer.ReceivedSum)
	}
	if res.Wire.ClearTCP != 0 || res.Wire.ClearOther != 0 {
		t.Errorf("wan saw %d TCP and %d other packets in clear between the sites, want none", res.Wire.ClearTCP, res.Wire.ClearOther)
	}
	if res.Wire.ESP == 0 || res.Wire.ESP > a.Out.EncapsPkts+b.Out.EncapsPkts {
		t.Errorf("wan saw %d ESP packets; the gateways sent %d and %d", res.Wire.ESP, a.Out.EncapsPkts, b.Out.EncapsPkts)
	}
	// The tap sees every ESP packet gwA sends and every one gwB sends
	// that reaches the router's link to gwA.
	if lo, hi := a.Out.EncapsPkts+a.In.DecapsPkts, a.Out.EncapsPkts+b.Out.EncapsPkts; res.Wire.Dropped == 0 && (res.Wire.ESP < lo || res.Wire.ESP > hi) {
		t.Errorf("wan saw %d ESP packets, want %d..%d (gwA sent %d, received %d; gwB sent %d)",
			res.Wire.ESP, lo, hi, a.Out.EncapsPkts, a.In.DecapsPkts, b.Out.EncapsPkts)
	}
	if minPkts := uint64(size / res.PlaintextMTU); a.Out.EncapsPkts < minPkts || a.Out.EncapsBytes < size {
		t.Errorf("gwA encapsulated %d packets, %d bytes; want at least %d and %d", a.Out.EncapsPkts, a.Out.EncapsBytes, minPkts, size)
	}
	exampleenv.CheckSAPair(t, "gwA → gwB", a.Out, b.In, res.WireDropsAtoB)
	exampleenv.CheckSAPair(t, "gwB → gwA", b.Out, a.In, res.WireDropsBtoA)
	// The clamped MSS fits the plaintext MTU, and each gateway clamped
	// the SYN it encrypted.
	if mss := res.Transfer.ClientMSS; mss == 0 || mss > res.PlaintextMTU-40 {
		t.Errorf("client MSS %d, want 1..%d", mss, res.PlaintextMTU-40)
	}
	if wa.MSSClamped == 0 || wb.MSSClamped == 0 {
		t.Errorf("MSS clamped %d times on gwA, %d on gwB; want at least once each", wa.MSSClamped, wb.MSSClamped)
	}
	if wa.MTUDrops != 0 || wb.MTUDrops != 0 {
		t.Errorf("MTU drops: gwA %d, gwB %d", wa.MTUDrops, wb.MTUDrops)
	}

	// Policy 30, protect without an SA: nothing answered, every request
	// dropped with DropAcquire, and an acquire event for the policy
	// naming the packet.
	if res.SiteCPing.Sent != pings || res.SiteCPing.Received != 0 {
		t.Errorf("site C ping: %d sent, %d answered; want %d and 0", res.SiteCPing.Sent, res.SiteCPing.Received, pings)
	}
	if d := a.Engine.Processor.Drops[sa.DropAcquire]; d != pings {
		t.Errorf("gwA dropped %d packets with DropAcquire, want %d", d, pings)
	}
	if len(res.Acquires) == 0 {
		t.Fatal("no acquire event")
	}
	for i, e := range res.Acquires {
		if e.Kind != sa.EventAcquire || e.Policy == nil || e.Policy.Name != polAtoC ||
			e.Packet.Src != netip.PrefixFrom(hostAAddr, 32) || e.Packet.Dst != netip.PrefixFrom(hostCAddr, 32) || e.Packet.Proto != 1 {
			t.Errorf("event %d: %v policy %v packet %+v; want an acquire for %q from %v to %v, ICMP", i, e.Kind, e.Policy, e.Packet, polAtoC, hostAAddr, hostCAddr)
		}
	}
	// Five pings in 250ms: the acquire is rate-limited to one a second.
	if len(res.Acquires) != 1 {
		t.Errorf("%d acquire events, want 1 (rate limit)", len(res.Acquires))
	}

	// Outside the protected prefixes: answered, passed to gwA's kernel
	// by its LAN XDP program, never seen by the engine.
	if res.OutsidePing.Received != pings {
		t.Errorf("ping outside the protected prefixes: %d of %d answered", res.OutsidePing.Received, res.OutsidePing.Sent)
	}
	if p := a.Engine.PlainProgram.PassedOther; p < pings {
		t.Errorf("gwA's LAN program passed %d packets to the kernel, want at least %d", p, pings)
	}
	// Everything the engine took from gwA's LAN was encrypted, bypassed
	// or dropped for want of an SA: nothing else.
	if wa.PlainRX != wa.Encrypted+wa.Bypassed+a.Engine.Processor.Drops[sa.DropAcquire] || wa.SADrops != pings {
		t.Errorf("gwA: %d from the LAN, %d encrypted, %d bypassed, %d SA drops", wa.PlainRX, wa.Encrypted, wa.Bypassed, wa.SADrops)
	}
	if wb.SADrops != 0 {
		t.Errorf("gwB: %d SA drops, want 0", wb.SADrops)
	}
}

// TestRunRejectsBadOptions: a bad transform or empty workload fails
// before anything is created.
func TestRunRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{
		{Transform: "rot13", Pings: 1, Size: 1},
		{Transform: "aes256gcm16", Pings: 1, Size: 0},
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
