//go:build linux

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/exampleenv"
	"github.com/espxdp/espxdp/internal/testenv"
)

// TestRun runs the example and checks that the tunnel worked through
// the NAT and only through it: gwB learned the NAT's public address from
// the keepalives, pings and a TCP stream went through, both gateways'
// SA counters agree with each other and with what crossed the NAT's
// outside (ESP-in-UDP, no private address), and nothing was left
// behind.
func TestRun(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "nft")
	var out bytes.Buffer
	const size = 1 << 20
	res, err := run(context.Background(), &out, Options{Transform: "aes256gcm16", Keepalive: 250 * time.Millisecond,
		Pings: 4, Size: size, Timeout: 60 * time.Second})
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.NFTRuleset, "masquerade") || !strings.Contains(res.NFTRuleset, "out0") {
		t.Errorf("NAT ruleset has no masquerade on out0:\n%s", res.NFTRuleset)
	}
	// One mapping: gwA's keepalives and ESP-in-UDP are one UDP flow
	// 4500 → 4500 for the NAT.
	if res.MasqueradedFlows != 1 {
		t.Errorf("NAT masqueraded %d flows, want 1", res.MasqueradedFlows)
	}
	exampleenv.CheckTraffic(t, res.Traffic, 4, res.PlaintextMTU, size)

	// gwB found gwA at the NAT's public address, not at gwA's own.
	if res.LearnedPeer.Addr() != natPublic || res.LearnedPeer.Port() == 0 {
		t.Errorf("gwB learned peer %v, want %v:<mapped port>", res.LearnedPeer, natPublic)
	}
	if res.KeepalivesReceived < 2 || res.KeepalivesReceived > res.KeepalivesSent || res.KeepalivesMoved != 0 {
		t.Errorf("keepalives: %d sent, %d received, %d from elsewhere", res.KeepalivesSent, res.KeepalivesReceived, res.KeepalivesMoved)
	}
	// The XDP program passed them to gwB's kernel, and took ESP-in-UDP.
	if res.B.Program.KeepalivePassed < res.KeepalivesReceived {
		t.Errorf("gwB's XDP program passed %d keepalives, the socket got %d", res.B.Program.KeepalivePassed, res.KeepalivesReceived)
	}

	a, b := res.A, res.B
	// The SAs are ESP-in-UDP with the right ports and addresses.
	if !a.Out.UDPEncap || a.Out.LocalPort != esp.NATTPort || a.Out.RemotePort != esp.NATTPort || a.Out.Remote != gwBWan || a.Out.Local != gwAWan {
		t.Errorf("gwA outbound SA: udp %v %v:%d → %v:%d", a.Out.UDPEncap, a.Out.Local, a.Out.LocalPort, a.Out.Remote, a.Out.RemotePort)
	}
	if !b.Out.UDPEncap || b.Out.Remote != res.LearnedPeer.Addr() || b.Out.RemotePort != res.LearnedPeer.Port() || b.Out.Local != gwBWan {
		t.Errorf("gwB outbound SA: udp %v %v:%d → %v:%d, want → %v", b.Out.UDPEncap, b.Out.Local, b.Out.LocalPort, b.Out.Remote, b.Out.RemotePort, res.LearnedPeer)
	}
	if b.Out.EncapsPkts < size/uint64(res.PlaintextMTU)/16 || a.Out.EncapsPkts < size/uint64(res.PlaintextMTU) {
		t.Errorf("too few packets: gwA encaps %d, gwB encaps %d", a.Out.EncapsPkts, b.Out.EncapsPkts)
	}
	eq := func(what string, x, y uint64) { t.Helper(); exampleenv.CheckEqual(t, what, x, y) }
	eq("gwA SA encaps vs gwB SA decaps", a.Out.EncapsPkts, b.In.DecapsPkts)
	eq("gwB SA encaps vs gwA SA decaps", b.Out.EncapsPkts, a.In.DecapsPkts)
	eq("gwA engine encrypted vs gwB engine decrypted", a.Engine.Encrypted, b.Engine.Decrypted)
	eq("gwB engine encrypted vs gwA engine decrypted", b.Engine.Encrypted, a.Engine.Decrypted)
	for _, g := range []GatewayResult{a, b} {
		if g.Out.Drops.Total() != 0 || g.In.Drops.Total() != 0 || g.Engine.SADrops != 0 {
			t.Errorf("drops: out SA %v, in SA %v, engine %d", g.Out.Drops, g.In.Drops, g.Engine.SADrops)
		}
	}

	// The NAT's outside carried the ESP-in-UDP packets of both
	// directions and the keepalives, all with the NAT's public address.
	o := res.Outside
	if o.Drops != 0 {
		t.Fatalf("capture dropped %d packets", o.Drops)
	}
	eq("ESP-in-UDP outside vs encaps of both gateways", o.ESPInUDP, a.Out.EncapsPkts+b.Out.EncapsPkts)
	if o.Keepalives < res.KeepalivesReceived || o.Keepalives > res.KeepalivesSent {
		t.Errorf("%d keepalives outside, %d sent, %d received", o.Keepalives, res.KeepalivesSent, res.KeepalivesReceived)
	}
	if o.Private != 0 || o.NotFromNAT != 0 {
		t.Errorf("outside: %d packets with a private address, %d to gwB not from the NAT", o.Private, o.NotFromNAT)
	}

	// Nothing left behind; the nftables ruleset died with its namespace.
	exampleenv.CheckNamespaces(t, res.Namespaces, 5)
	if len(res.LeftBehind) != 0 {
		t.Errorf("left behind: %v", res.LeftBehind)
	}
}
