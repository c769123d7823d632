//go:build linux

package gateway

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/swan"
	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/internal/topo"
)

// waitLog waits until s's log contains want.
func waitLog(t *testing.T, s *site, want string, timeout time.Duration) {
	t.Helper()
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if strings.Contains(s.log.String(), want) {
			return
		}
	}
	t.Fatalf("log lacks %q:\n%s", want, s.log)
}

// waitNewIKE waits until s's peer is up on an IKE SA other than old
// (SPIs) and returns it.
func waitNewIKE(t *testing.T, s *site, old string, timeout time.Duration) IKEPeerInfo {
	t.Helper()
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		r, err := Call(s.socket, Request{Cmd: "show-ike"}, time.Second)
		if err == nil && len(r.IKE) == 1 && r.IKE[0].Up {
			for _, x := range r.IKE[0].IKESAs {
				if x.SPIs != old && len(x.Children) > 0 {
					return r.IKE[0]
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no new IKE SA (old %s)\nlog:\n%s", old, s.log)
	return IKEPeerInfo{}
}

// TestIKEHardExpiryRestarts: A's child rekeys all fail (B requires PFS,
// A offers none), so A's child reaches its hard lifetime without a
// successor: A deletes the IKE SA (B told) and, start_action start,
// negotiates a new one; traffic flows again through its child.
func TestIKEHardExpiryRestarts(t *testing.T) {
	testenv.RequirePrivileged(t)
	a, b := buildTopology(t)
	p := ikeParams{psk: "hard expiry psk 0123456789", any: true, extra: "    esp_proposals: [aes128gcm16-x25519]\n"}
	startGateway(t, b, ikeGatewayYAML(t, b, a, "b", p))
	pa := ikeParams{psk: p.psk, start: true, rekey: "2s"}
	startGateway(t, a, ikeGatewayYAML(t, a, b, "a", pa))
	ia := waitIKEUp(t, a, 10*time.Second)
	first := ia.IKESAs[len(ia.IKESAs)-1].SPIs
	if got := ping(t, a, b.hostAddr, 3); got != 3 {
		t.Fatalf("ping: %d of 3\nlogA:\n%s\nlogB:\n%s", got, a.log, b.log)
	}
	waitLog(t, a, "child SA rekey failed", 10*time.Second)
	waitLog(t, a, "reached its hard lifetime without a rekey", 10*time.Second)
	waitNewIKE(t, a, first, 10*time.Second)
	waitIKEUp(t, b, 5*time.Second)
	if got := ping(t, a, b.hostAddr, 3); got < 2 {
		t.Fatalf("ping after the renegotiation: %d of 3\nlogA:\n%s\nlogB:\n%s", got, a.log, b.log)
	}
}

// blockIKE drops (or, with block false, passes again) the IKE datagrams
// that s's gateway sends (UDP from ports 500 and 4500) with an nftables
// table of its own in s's namespace.
func blockIKE(t *testing.T, s *site, block bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !block {
		if out, err := s.gw.Exec(ctx, "nft", "delete", "table", "inet", "espxdp_test_block"); err != nil {
			t.Fatalf("nft: %v\n%s", err, out)
		}
		return
	}
	rf := filepath.Join(t.TempDir(), "block.nft")
	rules := "table inet espxdp_test_block {\n chain out {\n  type filter hook output priority 0; policy accept;\n  udp sport { 500, 4500 } drop\n }\n}\n"
	if err := os.WriteFile(rf, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := s.gw.Exec(ctx, "nft", "-f", rf); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
}

// TestIKEDPDRestart: A (start_action none, dpd_action restart) is
// brought up by ike-initiate; B then stops answering (its IKE replies
// dropped): A's DPD declares the peer dead, and A initiates again by
// itself, until B answers again; traffic flows through the new SA.
func TestIKEDPDRestart(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "nft")
	a, b := buildTopology(t)
	p := ikeParams{psk: "dpd restart psk 0123456789", any: true}
	startGateway(t, b, ikeGatewayYAML(t, b, a, "b", p))
	pa := ikeParams{psk: p.psk, dpd: "1s", extra: "    dpd_action: restart\n"}
	startGateway(t, a, ikeGatewayYAML(t, a, b, "a", pa))
	time.Sleep(500 * time.Millisecond)
	if r, err := Call(a.socket, Request{Cmd: "show-ike"}, time.Second); err != nil || len(r.IKE) != 1 || r.IKE[0].Up {
		t.Fatalf("start_action none initiated by itself: %+v, %v", r, err)
	}
	if _, err := Call(a.socket, Request{Cmd: "ike-initiate", Peer: "gwB"}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ia := waitIKEUp(t, a, 5*time.Second)
	first := ia.IKESAs[len(ia.IKESAs)-1].SPIs
	blockIKE(t, b, true)
	waitLog(t, a, "dead peer detected", 15*time.Second)
	// A keeps trying while B is silent; then B answers again.
	time.Sleep(1500 * time.Millisecond)
	blockIKE(t, b, false)
	waitNewIKE(t, a, first, 20*time.Second)
	if got := ping(t, a, b.hostAddr, 3); got < 2 {
		t.Fatalf("ping after the restart: %d of 3\nlogA:\n%s\nlogB:\n%s", got, a.log, b.log)
	}
}

// TestIKEGatewayIPv6: two espxdp gateways negotiate over an IPv6 wan:
// the child SAs have IPv6 outer addresses, pings and a rekey go
// through, and terminate/initiate work.
func TestIKEGatewayIPv6(t *testing.T) {
	testenv.RequirePrivileged(t)
	a, b := buildTopologyWAN(t, true)
	p := ikeParams{psk: "ipv6 wan psk 0123456789", any: true, wan6: true}
	startGateway(t, b, ikeGatewayYAML(t, b, a, "b", p))
	p.start, p.any, p.rekey = true, false, "3s"
	startGateway(t, a, ikeGatewayYAML(t, a, b, "a", p))
	ia, ib := waitIKEUp(t, a, 10*time.Second), waitIKEUp(t, b, 10*time.Second)
	ca, _ := primaryChild(ia)
	cb, _ := primaryChild(ib)
	if ca.SPIIn != cb.SPIOut || ca.SPIOut != cb.SPIIn {
		t.Fatalf("children do not pair up: A %+v, B %+v", ia, ib)
	}
	if s := ia.IKESAs[len(ia.IKESAs)-1]; !strings.Contains(s.Remote, wanB6) {
		t.Fatalf("A's IKE SA: %+v, want remote %s", s, wanB6)
	}
	r, err := Call(a.socket, Request{Cmd: "show-sa"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range r.SAs {
		if x.Remote.String() != wanB6 || x.Local.String() != wanA6 {
			t.Errorf("SA %s: local %s remote %s, want the IPv6 wan", x.Name, x.Local, x.Remote)
		}
	}
	if got := ping(t, a, b.hostAddr, 5); got != 5 {
		t.Fatalf("ping over the IPv6 wan: %d of 5\nlogA:\n%s\nlogB:\n%s", got, a.log, b.log)
	}
	// A rekey (rekey_time 3s) and traffic through the successor.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ia2 := waitIKEUp(t, a, 2*time.Second)
		if c, _ := primaryChild(ia2); c.SPIIn != ca.SPIIn {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no rekey over the IPv6 wan\nlogA:\n%s", a.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := ping(t, a, b.hostAddr, 3); got != 3 {
		t.Fatalf("ping after the rekey: %d of 3", got)
	}
}

// TestIKEStrongSwanRecreatedChild: strongSwan's child goes away while
// its IKE SA stays (swanctl --terminate --child, as after a hard expiry
// without rekey) and strongSwan creates it again on the same IKE SA
// (CREATE_CHILD_SA without REKEY_SA): the gateway installs it and the
// tunnel carries traffic again.
func TestIKEStrongSwanRecreatedChild(t *testing.T) {
	swan.Require(t)
	a, b := buildTopology(t)
	charon := swan.StartTest(t, b.gw.Name, swan.Options{})
	if err := charon.Load(swanConn()); err != nil {
		t.Fatal(err)
	}
	startGateway(t, a, ikeGatewayYAML(t, a, b, "a", ikeParams{psk: swanPSK, extra: swanPeerExtra}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := charon.Initiate(ctx, swan.DefaultChild); err != nil {
		t.Fatalf("charon initiate: %v\nlogA:\n%s", err, a.log)
	}
	ia := waitIKEUp(t, a, 10*time.Second)
	ca, _ := primaryChild(ia)
	ikeSPIs := ia.IKESAs[len(ia.IKESAs)-1].SPIs
	if got := ping(t, a, b.hostAddr, 3); got != 3 {
		t.Fatalf("ping: %d of 3", got)
	}
	if _, err := charon.Swanctl(ctx, "--terminate", "--child", swan.DefaultChild); err != nil {
		t.Fatalf("charon terminate child: %v", err)
	}
	waitSPIGone(t, a, ca.SPIIn)
	if err := charon.Initiate(ctx, swan.DefaultChild); err != nil {
		t.Fatalf("charon initiate the child again: %v\nlogA:\n%s\ncharon:\n%s", err, a.log, charon.Log())
	}
	ia2 := waitIKEUp(t, a, 10*time.Second)
	ca2, _ := primaryChild(ia2)
	if ca2.SPIIn == ca.SPIIn || len(ia2.IKESAs) != 1 || ia2.IKESAs[0].SPIs != ikeSPIs {
		t.Fatalf("want a new child on the same IKE SA %s: %+v", ikeSPIs, ia2)
	}
	if got := ping(t, a, b.hostAddr, 3); got != 3 {
		t.Fatalf("ping through the recreated child: %d of 3\nlogA:\n%s\ncharon:\n%s", got, a.log, charon.Log())
	}
}

// TestIKEStrongSwanIPv6: strongSwan initiates to espxdp over the IPv6
// wan; the tunnel carries pings and strongSwan's rekey.
func TestIKEStrongSwanIPv6(t *testing.T) {
	swan.Require(t)
	a, b := buildTopologyWAN(t, true)
	charon := swan.StartTest(t, b.gw.Name, swan.Options{})
	conn := swanConn()
	conn.LocalAddrs, conn.RemoteAddrs = wanB6, wanA6
	if err := charon.Load(conn); err != nil {
		t.Fatal(err)
	}
	startGateway(t, a, ikeGatewayYAML(t, a, b, "a", ikeParams{psk: swanPSK, extra: swanPeerExtra, wan6: true}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := charon.Initiate(ctx, swan.DefaultChild); err != nil {
		t.Fatalf("charon initiate: %v\nlogA:\n%s\ncharon:\n%s", err, a.log, charon.Log())
	}
	ia := waitIKEUp(t, a, 10*time.Second)
	ca, _ := primaryChild(ia)
	cs := charonChild(t, charon)
	if spiHex(ca.SPIIn) != cs.SPIOut || spiHex(ca.SPIOut) != cs.SPIIn {
		t.Fatalf("SPIs do not pair up: espxdp %+v, strongSwan %+v", ca, cs)
	}
	if s := ia.IKESAs[len(ia.IKESAs)-1]; !strings.Contains(s.Remote, wanB6) {
		t.Fatalf("IKE SA %+v, want remote %s", s, wanB6)
	}
	if got := ping(t, a, b.hostAddr, 5); got != 5 {
		t.Fatalf("ping through strongSwan over IPv6: %d of 5\nlogA:\n%s\ncharon:\n%s", got, a.log, charon.Log())
	}
	if err := charon.Rekey(ctx, swan.DefaultChild); err != nil {
		t.Fatal(err)
	}
	charonChild(t, charon, cs.SPIIn)
	if got := ping(t, a, b.hostAddr, 3); got != 3 {
		t.Fatalf("ping after strongSwan's rekey: %d of 3", got)
	}
}

// TestIKETwoChildren: an IKE SA holds two children (an additional
// child SA made with ike's CreateChild); A (rekey_time 2s) rekeys each
// of them, not only the newest, so neither reaches its hard lifetime
// and the IKE SA stays; traffic flows throughout.
func TestIKETwoChildren(t *testing.T) {
	testenv.RequirePrivileged(t)
	a, b := buildTopology(t)
	p := ikeParams{psk: "two children psk 0123456789", any: true}
	startGateway(t, b, ikeGatewayYAML(t, b, a, "b", p))
	ga := startGateway(t, a, ikeGatewayYAML(t, a, b, "a", ikeParams{psk: p.psk, start: true, rekey: "2s"}))
	ia := waitIKEUp(t, a, 10*time.Second)
	spis := ia.IKESAs[0].SPIs
	ga.ike.mu.Lock()
	peer := ga.ike.peers[0]
	ga.ike.mu.Unlock()
	peer.mu.Lock()
	cur := peer.current
	peer.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cur.CreateChild(ctx); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ia = waitIKEUp(t, a, 5*time.Second)
		if len(ia.IKESAs) == 1 && len(ia.IKESAs[0].Children) >= 2 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("no second child on the IKE SA: %+v", ia)
		}
	}
	// Several rekey periods (soft lifetime 2s minus up to 10 %, hard
	// 3s) under pings.
	r, err := topo.Ping(a.host, b.hostAddr, 250, 56, 20*time.Millisecond, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Received < 240 {
		t.Errorf("%d of 250 pings answered across the rekeys\nlogA:\n%s", r.Received, a.log)
	}
	if l := a.log.String(); strings.Contains(l, "reached its hard lifetime") {
		t.Fatalf("a child hard-expired:\n%s", l)
	}
	ia = waitIKEUp(t, a, 2*time.Second)
	if len(ia.IKESAs) != 1 || ia.IKESAs[0].SPIs != spis {
		t.Fatalf("the IKE SA changed: %+v (was %s)", ia, spis)
	}
	if n := len(ia.IKESAs[0].Children); n < 2 {
		t.Fatalf("%d children left, want both lines rekeyed: %+v", n, ia)
	}
	// The gateway's line (the ike package's has the address as well).
	if n := strings.Count(a.log.String(), `msg="ike: child SA rekeyed" peer=gwB old=`); n < 3 {
		t.Errorf("%d child rekeys in 5 s with two children and rekey_time 2s, want ≥ 3\nlogA:\n%s", n, a.log)
	}
}
