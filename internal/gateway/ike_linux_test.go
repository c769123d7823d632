//go:build linux

package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/internal/topo"
)

// ikeParams configures ikeGatewayYAML.
type ikeParams struct {
	psk      string // file contents
	start    bool   // start_action start (else none)
	rekey    string // rekey_time
	extra    string // appended to the peer
	proposal string // ike_proposals
	dpd      string // dpd_delay
	any      bool   // remote: "%any" (respond only)
	wan6     bool   // the IPv6 wan of buildTopologyWAN(t, true)
	udpPort  bool   // interfaces.cipher.mode udp (the UDP cipher port)
}

// writePSK writes a PSK file (mode 0600) and returns its path.
func writePSK(t *testing.T, psk string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "peer.psk")
	if err := os.WriteFile(f, []byte(psk+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// ikeGatewayYAML is the configuration of gateway side ("a" or "b") of
// buildTopology with an IKE peer instead of static SAs.
func ikeGatewayYAML(t *testing.T, s, peer *site, side string, p ikeParams) string {
	local, remote := wanA4, wanB4
	if p.wan6 {
		local, remote = wanA6, wanB6
	}
	lts, rts := "10.1.0.0/24", "10.2.0.0/24"
	if side == "b" {
		local, remote = remote, local
		lts, rts = rts, lts
	}
	start := "none"
	if p.start {
		start = "start"
	}
	if p.rekey == "" {
		p.rekey = "1h"
	}
	if p.dpd == "" {
		p.dpd = "0"
	}
	if p.any {
		remote = `"%any"`
	}
	var b strings.Builder
	fmt.Fprintf(&b, "gateway:\n  control: %s\n  log_drops: 200ms\n  mss_clamp: 1300\n", s.socket)
	mode := ""
	if p.udpPort {
		mode = ", mode: udp"
	}
	fmt.Fprintf(&b, "interfaces:\n  cipher: {name: wan0, next_hop: %q, local: %s%s}\n", peer.wanMAC.String(), local, mode)
	fmt.Fprintf(&b, "  plain: {name: lan0, next_hop: %q, address: %s}\nprotected: [%s]\n", s.hostMAC.String(), gwLAN(side), rts)
	fmt.Fprintf(&b, "tunnels:\n  - {name: peer}\n")
	fmt.Fprintf(&b, "peers:\n  - name: gw%s\n    local: %s\n    remote: %s\n    psk_file: %s\n", map[string]string{"a": "B", "b": "A"}[side], local, remote, writePSK(t, p.psk))
	fmt.Fprintf(&b, "    local_ts: [%s]\n    remote_ts: [%s]\n    start_action: %s\n    rekey_time: %s\n", lts, rts, start, p.rekey)
	fmt.Fprintf(&b, "    retransmit_timeout: 200ms\n    retransmit_tries: 3\n    dpd_delay: %s\n", p.dpd)
	if p.proposal != "" {
		fmt.Fprintf(&b, "    ike_proposals: [%s]\n", p.proposal)
	}
	b.WriteString(p.extra)
	return b.String()
}

// waitIKEUp waits until show-ike on socket reports the peer up with a
// child SA of an established IKE SA that the tunnel sends on (the
// primary child), and returns it.
//
// The primary child is part of the condition: the gateway marks the
// peer up when the IKE SA is established (ikePeer.established) and
// binds the tunnel to the new child just after (updatePrimary), so a
// show-ike between the two lists the child without Primary; on a
// loaded machine that window is long enough to be seen.
func waitIKEUp(t *testing.T, s *site, timeout time.Duration) IKEPeerInfo {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last []IKEPeerInfo
	for time.Now().Before(deadline) {
		resp, err := Call(s.socket, Request{Cmd: "show-ike"}, time.Second)
		if err == nil && len(resp.IKE) == 1 && resp.IKE[0].Up {
			for _, sa := range resp.IKE[0].IKESAs {
				if sa.State == "established" && slices.ContainsFunc(sa.Children, func(c IKEChildInfo) bool { return c.Primary }) {
					return resp.IKE[0]
				}
			}
		}
		last = resp.IKE
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("IKE peer not up after %v: %+v\nlog:\n%s", timeout, last, s.log)
	return IKEPeerInfo{}
}

// ikePair is two gateways negotiating with IKEv2 (startIKEPair): A the
// initiator, B a "%any" responder, with their peers' states when up and
// the primary children, paired.
type ikePair struct {
	a, b   *site
	ga, gb *Gateway
	ia, ib IKEPeerInfo
	ca, cb IKEChildInfo
}

// startIKEPair builds the two-site topology, starts B as a "%any"
// responder and A as the initiator with p (start and any set here),
// waits until both are up and checks that their primary children pair up
// (A's inbound SPI is B's outbound and back).
func startIKEPair(t *testing.T, p ikeParams) ikePair {
	t.Helper()
	var r ikePair
	r.a, r.b = buildTopology(t)
	p.start, p.any = false, true
	r.gb = startGateway(t, r.b, ikeGatewayYAML(t, r.b, r.a, "b", p))
	p.start, p.any = true, false
	r.ga = startGateway(t, r.a, ikeGatewayYAML(t, r.a, r.b, "a", p))
	r.ia, r.ib = waitIKEUp(t, r.a, 10*time.Second), waitIKEUp(t, r.b, 10*time.Second)
	var ok, ok2 bool
	r.ca, ok = primaryChild(r.ia)
	r.cb, ok2 = primaryChild(r.ib)
	if !ok || !ok2 || r.ca.SPIIn != r.cb.SPIOut || r.ca.SPIOut != r.cb.SPIIn {
		t.Fatalf("children do not pair up: A %+v, B %+v", r.ia, r.ib)
	}
	return r
}

// primaryChild returns the child the peer's tunnel sends on.
func primaryChild(info IKEPeerInfo) (IKEChildInfo, bool) {
	for _, s := range info.IKESAs {
		for _, c := range s.Children {
			if c.Primary {
				return c, true
			}
		}
	}
	return IKEChildInfo{}, false
}

// TestIKEGatewayPair brings up two espxdp gateways that negotiate with
// IKEv2 (B a "%any" responder): the tunnel comes up, pings and checksummed TCP transfers go
// both ways, show-sa names the owning IKE SA, the children of both
// sides pair up (our inbound SPI is the peer's outbound), terminate
// deletes the SAs on both sides and initiate brings them back with new
// SPIs.
func TestIKEGatewayPair(t *testing.T) {
	testenv.RequirePrivileged(t)
	pr := startIKEPair(t, ikeParams{psk: "correct horse battery staple 42"})
	a, b, ga, gb, ia, ca, cb := pr.a, pr.b, pr.ga, pr.gb, pr.ia, pr.ca, pr.cb
	if ca.LocalTS[0] != "10.1.0.0/24" || ca.RemoteTS[0] != "10.2.0.0/24" {
		t.Errorf("A's child selectors: %v ⇄ %v", ca.LocalTS, ca.RemoteTS)
	}
	if got := ping(t, a, b.hostAddr, 5); got != 5 {
		t.Fatalf("ping through the IKE tunnel: %d of 5\nlogA:\n%s\nlogB:\n%s", got, a.log, b.log)
	}
	transfer := func(srv, cli *site, port uint16) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res, err := topo.Transfer(ctx, srv.host, netip.AddrPortFrom(srv.hostAddr, port), cli.host, 1<<20, uint64(port), nil)
		if err != nil || !res.Intact() {
			t.Fatalf("transfer to %v: %+v, %v", srv.hostAddr, res, err)
		}
	}
	transfer(b, a, 5101)
	transfer(a, b, 5102)

	resp, err := Call(a.socket, Request{Cmd: "show-sa"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Owners) != 2 || resp.Owners[0].Peer != "gwB" || resp.Owners[0].IKESA != ia.IKESAs[0].SPIs {
		t.Errorf("show-sa owners: %+v (IKE SA %s)", resp.Owners, ia.IKESAs[0].SPIs)
	}
	// Prometheus: the peer is up, no authentication failure, no PSK.
	rec := httptest.NewRecorder()
	ga.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	m := rec.Body.String()
	for _, want := range []string{`espxdp_ike_sa_up{peer="gwB"} 1`, `espxdp_ike_auth_failures_total{peer="gwB"} 0`, `espxdp_ike_child_sas{peer="gwB"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(m, "horse") {
		t.Error("PSK in the metrics")
	}
	// No key material in the logs: the PSK text never appears.
	for _, l := range []string{a.log.String(), b.log.String()} {
		if strings.Contains(l, "horse") {
			t.Fatal("PSK in the log")
		}
	}

	// Terminate on the responder: A's SAs go, and A (start_action
	// start) negotiates again by itself, with new SPIs.
	if _, err := Call(b.socket, Request{Cmd: "ike-terminate", Peer: "gwA"}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	hasSPI := func(s *site, spi string) bool {
		r, err := Call(s.socket, Request{Cmd: "show-sa"}, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range r.SAs {
			if strings.HasSuffix(x.Name, strings.TrimPrefix(spi, "0x")) {
				return true
			}
		}
		return false
	}
	waitGone := func(s *site, spi string) {
		t.Helper()
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if !hasSPI(s, spi) {
				return
			}
		}
		t.Fatalf("SA %s left after terminate\nlog:\n%s", spi, s.log)
	}
	waitGone(a, ca.SPIIn)
	waitGone(b, cb.SPIIn)
	ia2 := waitIKEUp(t, a, 10*time.Second)
	ca2, _ := primaryChild(ia2)
	if ca2.SPIIn == ca.SPIIn || ca2.SPIOut == ca.SPIOut || ia2.IKESAs[len(ia2.IKESAs)-1].SPIs == ia.IKESAs[0].SPIs {
		t.Errorf("new negotiation reused SPIs: %+v then %+v", ca, ca2)
	}
	if got := ping(t, a, b.hostAddr, 3); got != 3 {
		t.Fatalf("ping after re-negotiation: %d of 3\nlogA:\n%s\nlogB:\n%s", got, a.log, b.log)
	}

	// Terminate on the initiator: it holds the peer down, both sides
	// lose every SA; ike-initiate brings the tunnel back.
	if _, err := Call(a.socket, Request{Cmd: "ike-terminate", Peer: "gwB"}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	waitNone := func(s *site) {
		t.Helper()
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			r, err := Call(s.socket, Request{Cmd: "show-sa"}, time.Second)
			if err == nil && len(r.SAs) == 0 {
				return
			}
		}
		t.Fatalf("SAs left after terminate\nlog:\n%s", s.log)
	}
	waitNone(a)
	waitNone(b)
	if got := pingNone(t, a, b.hostAddr, 2); got != 0 {
		t.Errorf("ping with the tunnel terminated: %d answered", got)
	}
	if _, err := Call(a.socket, Request{Cmd: "ike-initiate", Peer: "gwB"}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitIKEUp(t, b, 5*time.Second)
	if got := ping(t, a, b.hostAddr, 3); got != 3 {
		t.Fatalf("ping after ike-initiate: %d of 3", got)
	}
	if _, err := Call(a.socket, Request{Cmd: "ike-initiate", Peer: "nobody"}, time.Second); err == nil || !strings.Contains(err.Error(), "no such IKE peer") {
		t.Errorf("ike-initiate of an unknown peer: %v", err)
	}
	if st := gb.IKEInfo(); len(st) != 1 || st[0].Stats.AuthFailed != 0 {
		t.Errorf("B's IKE info: %+v", st)
	}
}

// TestIKERekeyUnderTraffic rekeys the child SA every few seconds (A's
// rekey_time 3s, with PFS) and the IKE SA (ike_rekey_time 5s) while
// pings flow every 20ms: not one is lost (make-before-break on both
// sides), the tunnel's child and the IKE SA change, and retired
// children are deleted.
func TestIKERekeyUnderTraffic(t *testing.T) {
	testenv.RequirePrivileged(t)
	a, b := buildTopology(t)
	// PFS in the child rekeys (x25519); B never rekeys, A rekeys the
	// children every ~3 s and the IKE SA every ~5 s.
	p := ikeParams{psk: "0x00112233445566778899aabbccddeeff", extra: "    esp_proposals: [aes128gcm16-x25519]\n    ike_rekey_time: 0\n"}
	startGateway(t, b, ikeGatewayYAML(t, b, a, "b", p))
	p.start, p.rekey = true, "3s"
	p.extra = "    esp_proposals: [aes128gcm16-x25519]\n    ike_rekey_time: 5s\n"
	ga := startGateway(t, a, ikeGatewayYAML(t, a, b, "a", p))
	firstIKE := waitIKEUp(t, a, 10*time.Second).IKESAs[0].SPIs
	ia := waitIKEUp(t, a, 10*time.Second)
	first, _ := primaryChild(ia)
	const n = 400 // 8 s at 20 ms
	r, err := topo.Ping(a.host, b.hostAddr, n, 56, 20*time.Millisecond, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Received != n {
		t.Errorf("%d of %d pings answered across rekeys\nlogA:\n%s\nlogB:\n%s", r.Received, n, a.log, b.log)
	}
	if k := ga.ikeRekeys.Load(); k < 2 {
		t.Errorf("%d rekeys in %d pings, want at least 2\nlogA:\n%s", k, n, a.log)
	}
	ia = waitIKEUp(t, a, time.Second)
	for _, x := range ia.IKESAs {
		if x.SPIs == firstIKE {
			t.Errorf("IKE SA %s not rekeyed in 8 s (ike_rekey_time 5s): %+v", firstIKE, ia.IKESAs)
		}
	}
	now, _ := primaryChild(ia)
	if now.SPIIn == first.SPIIn || now.SPIOut == first.SPIOut {
		t.Errorf("primary child unchanged by rekeys: %+v", now)
	}
	// Retired children are gone after retireGrace: at most the two of a
	// rekey in progress are left on each side.
	time.Sleep(retireGrace + 500*time.Millisecond)
	for _, s := range []*site{a, b} {
		resp, err := Call(s.socket, Request{Cmd: "show-sa"}, time.Second)
		if err != nil || len(resp.SAs) > 4 || len(resp.SAs) < 2 {
			t.Errorf("%d SAs installed after rekeys (want 2 to 4), %v", len(resp.SAs), err)
		}
	}
}

// TestIKERefused: a wrong PSK and a proposal mismatch are refused on
// both sides with a clear log line, no SA is installed, and the
// authentication failure is counted.
func TestIKERefused(t *testing.T) {
	testenv.RequirePrivileged(t)
	a, b := buildTopology(t)
	cases := []struct {
		name           string
		pa, pb         ikeParams
		wantA, wantB   string
		authFailedSide *site
	}{
		{name: "wrong-psk",
			pa:    ikeParams{psk: "the initiator's secret PSK", start: true},
			pb:    ikeParams{psk: "the responder's other PSK!"},
			wantA: "peer refused our authentication (AUTHENTICATION_FAILED)", wantB: "authentication failed (wrong PSK or identity)"},
		{name: "proposal-mismatch",
			pa:    ikeParams{psk: "one PSK for both sides", start: true, proposal: "aes256gcm16-prfsha384-ecp384"},
			pb:    ikeParams{psk: "one PSK for both sides", proposal: "aes128gcm16-prfsha256-x25519"},
			wantA: "NO_PROPOSAL_CHOSEN", wantB: "no acceptable IKE proposal"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a.log, b.log = &testenv.SyncBuffer{}, &testenv.SyncBuffer{}
			gb := startGateway(t, b, ikeGatewayYAML(t, b, a, "b", c.pb))
			ga := startGateway(t, a, ikeGatewayYAML(t, a, b, "a", c.pa))
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) && !(strings.Contains(a.log.String(), c.wantA) && strings.Contains(b.log.String(), c.wantB)) {
				time.Sleep(50 * time.Millisecond)
			}
			if !strings.Contains(a.log.String(), c.wantA) {
				t.Errorf("initiator's log lacks %q:\n%s", c.wantA, a.log)
			}
			if !strings.Contains(b.log.String(), c.wantB) {
				t.Errorf("responder's log lacks %q:\n%s", c.wantB, b.log)
			}
			for _, g := range []*Gateway{ga, gb} {
				if st := g.SAStats(); len(st) != 0 {
					t.Errorf("SAs installed: %+v", st)
				}
			}
			if c.name == "wrong-psk" {
				if st := gb.IKEInfo(); len(st) != 1 || st[0].Stats.AuthFailed == 0 || st[0].Up {
					t.Errorf("responder's peer: %+v", st)
				}
			}
			ga.Close()
			gb.Close()
		})
	}
}

// TestIKEReloadPeers: a reload with the same peers keeps the IKE SA; a
// changed peer is renegotiated; a removed peer's SAs are deleted on both
// sides (the peer is told); static SAs of the file and IKE SAs live
// side by side through reloads.
func TestIKEReloadPeers(t *testing.T) {
	testenv.RequirePrivileged(t)
	a, b := buildTopology(t)
	p := ikeParams{psk: "reload test pre-shared key"}
	startGateway(t, b, ikeGatewayYAML(t, b, a, "b", p))
	p.start = true
	ya := ikeGatewayYAML(t, a, b, "a", p)
	ga := startGateway(t, a, ya)
	ia := waitIKEUp(t, a, 10*time.Second)

	rr, err := reload(t, ga, ya)
	if err != nil || len(rr.PeersAdded)+len(rr.PeersRemoved)+len(rr.PeersChanged) != 0 {
		t.Fatalf("reload of the same file: %+v, %v", rr, err)
	}
	if now := waitIKEUp(t, a, time.Second); now.IKESAs[0].SPIs != ia.IKESAs[0].SPIs {
		t.Errorf("a reload without changes renegotiated: %s → %s", ia.IKESAs[0].SPIs, now.IKESAs[0].SPIs)
	}
	p2 := p
	p2.rekey = "2h"
	rr, err = reload(t, ga, ikeGatewayYAML(t, a, b, "a", p2))
	if err != nil || len(rr.PeersChanged) != 1 || rr.PeersChanged[0] != "gwB" {
		t.Fatalf("reload with a changed peer: %+v, %v", rr, err)
	}
	ia2 := waitIKEUp(t, a, 10*time.Second)
	if ia2.IKESAs[0].SPIs == ia.IKESAs[0].SPIs {
		t.Errorf("changed peer kept its IKE SA")
	}
	if got := ping(t, a, b.hostAddr, 3); got != 3 {
		t.Fatalf("ping after the peer changed: %d of 3", got)
	}
	// Remove the peer: its SAs go on both sides.
	noPeers := ya[:strings.Index(ya, "peers:")]
	rr, err = reload(t, ga, noPeers)
	if err != nil || len(rr.PeersRemoved) != 1 {
		t.Fatalf("reload without the peer: %+v, %v", rr, err)
	}
	for _, s := range []*site{a, b} {
		deadline := time.Now().Add(5 * time.Second)
		for {
			r, err := Call(s.socket, Request{Cmd: "show-sa"}, time.Second)
			if err == nil && len(r.SAs) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("SAs left after the peer was removed: %+v\n%s", r.SAs, s.log)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if r, _ := Call(a.socket, Request{Cmd: "show-ike"}, time.Second); len(r.IKE) != 0 {
		t.Errorf("show-ike after the peer was removed: %+v", r.IKE)
	}
	// No peer left: the IKE ports are free again (closeIdleSocks) ...
	if open := ikePortsHeld(t, a, wanA4); len(open) != 0 {
		t.Errorf("UDP %v still bound on %s after the reload removed every peer", open, wanA4)
	}
	// ... and the peer coming back binds them again and negotiates.
	rr, err = reload(t, ga, ya)
	if err != nil || len(rr.PeersAdded) != 1 {
		t.Fatalf("reload with the peer back: %+v, %v", rr, err)
	}
	waitIKEUp(t, a, 10*time.Second)
	if held := ikePortsHeld(t, a, wanA4); len(held) != 2 {
		t.Errorf("UDP ports %v held on %s with a peer back, want 500 and 4500", held, wanA4)
	}
	if got := ping(t, a, b.hostAddr, 3); got != 3 {
		t.Fatalf("ping after the peer came back: %d of 3", got)
	}
}

// ikePortsHeld returns which of UDP 500 and 4500 on addr are bound in
// s's gateway namespace (probing by binding them, closed at once).
func ikePortsHeld(t *testing.T, s *site, addr string) []int {
	t.Helper()
	var held []int
	err := topo.Do(s.gw.Path(), func() error {
		for _, port := range []int{500, 4500} {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(addr), uint16(port))))
			if err != nil {
				if !errors.Is(err, syscall.EADDRINUSE) {
					return err
				}
				held = append(held, port)
				continue
			}
			c.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return held
}
