//go:build linux

package gateway

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/internal/testenv"
)

// TestRedTeamTerminateDuringInitiation races the operator's ike
// terminate with a negotiation in flight: A's ike initiate is under way
// (B's answers dropped, A retransmitting) when the operator terminates
// the peer. Terminate deleted the IKE SAs A had (none: the new one was
// half-open, in no list) and held the peer; when B answered the
// retransmission, the negotiation finished and installed its child: the
// peer was up again, with SAs, although the operator had terminated it
// (and Terminate returned ok). Invariant: after Terminate returns, no
// IKE SA of the peer is established until Initiate or a reload.
func TestRedTeamTerminateDuringInitiation(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "nft")
	a, b := buildTopology(t)
	p := ikeParams{psk: "terminate race pre-shared key", any: true}
	startGateway(t, b, ikeGatewayYAML(t, b, a, "b", p))
	p.any = false // A: start_action none
	ga := startGateway(t, a, ikeGatewayYAML(t, a, b, "a", p))

	blockIKE(t, b, true)
	if err := ga.Initiate("gwB", 300*time.Millisecond); !errors.Is(err, ErrInProgress) {
		t.Fatalf("initiate while B is silent: %v, want ErrInProgress", err)
	}
	if err := ga.Terminate("gwB"); err != nil {
		t.Fatal(err)
	}
	blockIKE(t, b, false) // B answers A's next retransmission
	// The negotiation gives up after 200ms·(1+2+4+8); watch past that.
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		info := ga.IKEInfo()
		if len(info) != 1 {
			t.Fatalf("show ike: %+v", info)
		}
		for _, s := range info[0].IKESAs {
			if s.State == "established" {
				t.Fatalf("an IKE SA came up after ike terminate (held %v): %+v\nlog A:\n%s", info[0].Held, s, a.log)
			}
		}
		if owners := ga.SAOwners(); len(owners) != 0 {
			t.Fatalf("child SAs installed after ike terminate: %+v", owners)
		}
	}
}

// TestRedTeamTerminateInitiateReloadRace races ike terminate, ike
// initiate, reloads that keep the peer and reloads that change it
// (stopping and restarting it) with child rekeys every 2 s, under
// -race, bounded in count and time. Afterwards the peer comes up with
// one initiate and the invariant holds: the IKE SA's live child is the
// tunnel's primary, its outbound SA installed, and traffic passes.
func TestRedTeamTerminateInitiateReloadRace(t *testing.T) {
	testenv.RequirePrivileged(t)
	a, b := buildTopology(t)
	p := ikeParams{psk: "race of terminate and reload psk", any: true, rekey: "2s"}
	startGateway(t, b, ikeGatewayYAML(t, b, a, "b", p))
	p.any, p.start = false, true
	y1 := ikeGatewayYAML(t, a, b, "a", p)
	p.rekey = "3s"
	y2 := ikeGatewayYAML(t, a, b, "a", p)
	ga := startGateway(t, a, y1)
	waitIKEUp(t, a, 10*time.Second)
	cfgs := make([]*config.Config, 6)
	for i := range cfgs {
		y := y1
		if i%2 == 1 {
			y = y2
		}
		c, err := config.Parse("gw.yaml", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		cfgs[i] = c
	}
	var wg sync.WaitGroup
	stop := time.Now().Add(6 * time.Second)
	wg.Add(3)
	go func() {
		defer wg.Done()
		for i := 0; i < 15 && time.Now().Before(stop); i++ {
			ga.Terminate("gwB")
			time.Sleep(time.Duration(100+i*37%200) * time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 15 && time.Now().Before(stop); i++ {
			ga.Initiate("gwB", 150*time.Millisecond)
			time.Sleep(time.Duration(80+i*53%200) * time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < len(cfgs) && time.Now().Before(stop); i++ {
			ga.Reload(cfgs[i])
			ga.IKEInfo()
			ga.SAOwners()
			time.Sleep(400 * time.Millisecond)
		}
	}()
	wg.Wait()
	for _, c := range cfgs {
		c.Wipe()
	}
	// The checks below run without rekeys (1h): the state the race
	// left is stopped and restarted by this reload like any change.
	p.rekey = "1h"
	if _, err := reload(t, ga, ikeGatewayYAML(t, a, b, "a", p)); err != nil {
		t.Fatal(err)
	}
	if err := ga.Initiate("gwB", 8*time.Second); err != nil {
		t.Fatalf("initiate after the race: %v\nlog A:\n%s", err, a.log)
	}
	info := waitIKEUp(t, a, 10*time.Second)
	c, ok := primaryChild(info)
	if !ok {
		t.Fatalf("IKE SA up without a primary child: %+v", info)
	}
	found := false
	for _, o := range ga.SAOwners() {
		found = found || strings.HasSuffix(o.SA, strings.TrimPrefix(c.SPIOut, "0x"))
	}
	if !found {
		t.Fatalf("primary child %+v has no outbound SA installed: %+v", c, ga.SAOwners())
	}
	if got := ping(t, a, b.hostAddr, 3); got < 2 {
		t.Fatalf("ping after the race: %d of 3\nlog A:\n%s\nlog B:\n%s", got, a.log, b.log)
	}
}

// TestRedTeamReloadChangedPSK: a reload that changes only a peer's PSK
// (B keeps the old one) must not keep the IKE SA, or its children,
// authenticated by the old PSK: A's SAs go, on both sides, and A cannot
// come up again with the new PSK (B refuses it).
func TestRedTeamReloadChangedPSK(t *testing.T) {
	testenv.RequirePrivileged(t)
	a, b := buildTopology(t)
	p := ikeParams{psk: "the old pre-shared key, 1", any: true}
	gb := startGateway(t, b, ikeGatewayYAML(t, b, a, "b", p))
	p.any, p.start = false, true
	ga := startGateway(t, a, ikeGatewayYAML(t, a, b, "a", p))
	waitIKEUp(t, a, 10*time.Second)
	waitIKEUp(t, b, 10*time.Second)
	ga.ike.mu.Lock()
	oldPeer := ga.ike.peers[0]
	ga.ike.mu.Unlock()
	p.psk = "the new pre-shared key, 2"
	rr, err := reload(t, ga, ikeGatewayYAML(t, a, b, "a", p))
	if err != nil || len(rr.PeersChanged) != 1 {
		t.Fatalf("reload with a new PSK: %+v, %v", rr, err)
	}
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		for name, gw := range map[string]*Gateway{"A": ga, "B": gb} {
			for _, pi := range gw.IKEInfo() {
				for _, s := range pi.IKESAs {
					if s.State == "established" && len(s.Children) > 0 && time.Now().After(end.Add(-2*time.Second)) {
						t.Fatalf("%s: an IKE SA with children is up after the PSK changed: %+v\nlog A:\n%s", name, s, a.log)
					}
				}
			}
		}
	}
	if o := ga.SAOwners(); len(o) != 0 {
		t.Fatalf("A keeps child SAs of the old PSK: %+v", o)
	}
	// The stopped peer's copy of the old PSK (its Endpoint's) is wiped,
	// not left in the heap until the collector reuses it.
	if len(oldPeer.psk) == 0 || strings.Trim(string(oldPeer.psk), "\x00") != "" {
		t.Errorf("the removed peer's PSK copy is not wiped (%d bytes)", len(oldPeer.psk))
	}
	if strings.Contains(a.log.String(), "pre-shared key") {
		t.Error("a PSK in A's log")
	}
}
