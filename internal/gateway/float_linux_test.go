//go:build linux

package gateway

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/exampleenv"
	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/sa"
)

// TestGatewayFloatRemote runs hostA — gwA — nat — gwB — hostB with ESP
// in UDP. gwB's inbound SA has float_remote. First the middle routes
// without translation; then it starts translating gwA's source port
// 4500 to 4600 (a NAT whose mapping changed) and drops what still goes
// to the old mapping. Traffic continues both ways only if gwB moved its
// outbound SA to the new port: the same SA (sequence numbers continue),
// and its keepalives now reach gwA through the new mapping too.
func TestGatewayFloatRemote(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "nft")
	tp, _ := topo.NewForTest(t, "gwf")
	ip := netip.MustParseAddr
	n, err := exampleenv.Build(tp, exampleenv.Plan{
		MidLabel: "nat",
		HostIf:   "eth0", GwLANIf: "lan0", GwWANIf: "wan0", MidAIf: "in0", MidBIf: "out0",
		HostA: ip("10.1.0.2"), GwALAN: ip("10.1.0.1"), GwAWAN: ip("192.0.2.1"), MidA: ip("192.0.2.254"),
		MidB: ip("198.51.100.254"), GwBWAN: ip("198.51.100.2"), GwBLAN: ip("10.2.0.1"), HostB: ip("10.2.0.2"),
		Bits: 24, MTU: 1500, IPv4Only: true, HostTXChecksumOff: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.RouteHosts(netip.MustParsePrefix("10.2.0.0/24"), netip.MustParsePrefix("10.1.0.0/24"), 1400); err != nil {
		t.Fatal(err)
	}
	// The gateways' kernels send the keepalives: they route through the
	// middle.
	if err := exampleenv.AddRoutes(
		exampleenv.Route{NS: n.GwA, Dst: netip.MustParsePrefix("198.51.100.0/24"), Via: ip("192.0.2.254")},
		exampleenv.Route{NS: n.GwB, Dst: netip.MustParsePrefix("192.0.2.0/24"), Via: ip("198.51.100.254")},
	); err != nil {
		t.Fatal(err)
	}
	keyAB, keyBA := randKey(t), randKey(t)
	a := &site{gw: n.GwA, socket: filepath.Join(t.TempDir(), "a.sock"), log: &testenv.SyncBuffer{}}
	b := &site{gw: n.GwB, socket: filepath.Join(t.TempDir(), "b.sock"), log: &testenv.SyncBuffer{}}
	conf := func(s *site, cipherNH, plainNH string, local, remote, lan, protected, out, in, outSPI, inSPI, outKey, inKey, float string) string {
		var y strings.Builder
		fmt.Fprintf(&y, "gateway:\n  control: %s\n  keepalive: 100ms\n", s.socket)
		fmt.Fprintf(&y, "interfaces:\n  cipher: {name: wan0, next_hop: %q, local: %s}\n  plain: {name: lan0, next_hop: %q, address: %s}\n", cipherNH, local, plainNH, lan)
		fmt.Fprintf(&y, "protected: [%s]\ntunnels:\n  - {name: peer, out: [%s], in: [%s]}\nsas:\n", protected, out, in)
		fmt.Fprintf(&y, "  - {name: %s, direction: out, spi: %s, local: %s, remote: %s, encap: udp, transform: aes128gcm16, key: %s}\n", out, outSPI, local, remote, outKey)
		fmt.Fprintf(&y, "  - {name: %s, direction: in, spi: %s, local: %s, remote: %s, encap: udp, transform: aes128gcm16, key: %s%s}\n", in, inSPI, local, remote, inKey, float)
		return y.String()
	}
	startGateway(t, a, conf(a, n.MidA.MAC.String(), n.HostAEth.MAC.String(), "192.0.2.1", "198.51.100.2", "10.1.0.1", "10.2.0.0/24",
		"a-to-b", "b-to-a", "0x1001", "0x2001", keyAB, keyBA, ""))
	gwB := startGateway(t, b, conf(b, n.MidB.MAC.String(), n.HostBEth.MAC.String(), "198.51.100.2", "192.0.2.1", "10.2.0.1", "10.1.0.0/24",
		"b-to-a", "a-to-b", "0x2001", "0x1001", keyBA, keyAB, ", float_remote: true"))
	logs := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rules, _ := n.Mid.Exec(ctx, "nft", "list", "ruleset")
		return "\nlogA:\n" + a.log.String() + "\nlogB:\n" + b.log.String() + "\nnat ruleset:\n" + string(rules)
	}

	pings := func(count int) int {
		r, err := topo.Ping(n.HostA, ip("10.2.0.2"), count, 56, 20*time.Millisecond, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return r.Received
	}
	if got := pings(5); got != 5 {
		t.Fatalf("ping before the NAT: %d of 5%s", got, logs())
	}
	oldEP, newEP := netip.MustParseAddrPort("192.0.2.1:4500"), netip.MustParseAddrPort("192.0.2.1:4600")
	out := gwB.SAD().GetOutPort(0x2001, oldEP)
	if out == nil {
		t.Fatalf("gwB's outbound SA is not at %v", oldEP)
	}
	seqBefore := out.Seq()

	// The NAT's mapping changes: gwA's port 4500 now leaves as 4600, and
	// whatever is still sent to 4500 from outside is dropped.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// One file, one transaction: with the nat chain in place before its
	// rule, a packet in between would make a conntrack entry without
	// translation that later packets of the flow would keep.
	ruleset := `table ip float {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "out0" ip saddr 192.0.2.1 udp sport 4500 counter snat to 192.0.2.1:4600
	}
	chain filterfw {
		type filter hook forward priority filter; policy accept;
		iifname "out0" ct state new ip daddr 192.0.2.1 udp dport 4500 counter drop
	}
}
`
	rf := filepath.Join(t.TempDir(), "float.nft")
	if err := os.WriteFile(rf, []byte(ruleset), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := n.Mid.Exec(ctx, "nft", "-f", rf); err != nil {
		t.Fatalf("nft -f: %v: %s", err, out)
	}
	// The first replies may still go to the old mapping until gwB has
	// seen the event; after that, everything arrives.
	pings(10)
	deadline := time.Now().Add(5 * time.Second)
	for gwB.SAD().GetOutPort(0x2001, newEP) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("gwB's outbound SA did not move to %v%s", newEP, logs())
		}
		pings(1)
	}
	if got := pings(5); got != 5 {
		t.Fatalf("ping after the NAT's mapping changed: %d of 5%s", got, logs())
	}
	ctxT, cancelT := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelT()
	res, err := topo.Transfer(ctxT, n.HostB, netip.AddrPortFrom(ip("10.2.0.2"), 5021), n.HostA, 256<<10, 21, nil)
	if err != nil || !res.Intact() {
		t.Fatalf("transfer after the move: %+v, %v%s", res, err, logs())
	}
	if moved := gwB.SAD().GetOutPort(0x2001, newEP); moved != out {
		t.Fatal("the outbound SA was replaced, not moved in place")
	}
	if gwB.SAD().GetOutPort(0x2001, oldEP) != nil {
		t.Fatal("an outbound SA is still at the old endpoint")
	}
	if s := out.Seq(); s <= seqBefore {
		t.Fatalf("sequence %d after the move, was %d: it must continue", s, seqBefore)
	}
	st := statsOf(t, b.socket, "b-to-a")
	if st.Remote != ip("192.0.2.1") || st.RemotePort != 4600 || st.State != sa.StateActive {
		t.Fatalf("show sa on gwB: b-to-a at %v:%d, %v", st.Remote, st.RemotePort, st.State)
	}
	if !strings.Contains(b.log.String(), "outbound SA moved to the peer's new endpoint") {
		t.Errorf("gwB did not log the move%s", logs())
	}
	// gwB's keepalives follow the SA: through the new mapping they
	// still reach gwA's port 4500.
	before := statsA(t, a)
	deadline = time.Now().Add(3 * time.Second)
	for statsA(t, a) < before+2 {
		if time.Now().After(deadline) {
			t.Fatalf("gwA received no keepalives from gwB after the move%s", logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// statsA returns the keepalives the gateway of s received.
func statsA(t *testing.T, s *site) uint64 {
	t.Helper()
	resp, err := Call(s.socket, Request{Cmd: "show-stats"}, time.Second)
	if err != nil || resp.Stats == nil {
		t.Fatalf("show-stats: %v", err)
	}
	return resp.Stats.KeepalivesReceived
}
