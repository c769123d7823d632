package gateway

import (
	"bytes"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/ike"
	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/sa"
)

// TestIKEPrimaryProperty checks, over random sequences of IKE SAs
// negotiated, child SAs installed (first children and rekeys), retired
// and deleted, the invariants of the child a peer's tunnel sends on
// (ike.go):
//
//   - it is never a retiring or deleted child (a child the peer deleted
//     or is deleting has no inbound SA there any more);
//   - when the newest IKE SA has a live child, it is one of that IKE
//     SA's (a stale IKE SA of a peer that restarted is not used);
//   - installing a child of the same IKE SA (a rekey's successor) never
//     moves it: the old child stays until it retires (make-before-break:
//     the peer may not have the successor's inbound SA yet).
func TestIKEPrimaryProperty(t *testing.T) {
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 7))
		gw := offlineGateway(t)
		p := &ikePeer{gw: gw, conf: &config.Peer{Name: "p"}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		var ikes []*ike.IKESA
		next := sa.ChildID(1)
		for step := range 60 {
			before := gw.primary["p"]
			op := r.IntN(4)
			p.mu.Lock()
			switch {
			case op == 0 || len(ikes) == 0: // a new IKE SA
				s := new(ike.IKESA)
				ikes = append(ikes, s)
				p.current = s
			case op == 1: // a child of some IKE SA
				s := ikes[r.IntN(len(ikes))]
				p.children = append(p.children, &ikeChild{id: next, c: &ike.ChildSA{}, ikeSA: s})
				next++
			case op == 2 && len(p.children) > 0: // a child goes down
				p.children[r.IntN(len(p.children))].retiring = true
			case op == 3 && len(p.children) > 0: // a retired child's SAs are deleted
				i := r.IntN(len(p.children))
				if p.children[i].retiring {
					p.children = slices.Delete(p.children, i, i+1)
				}
			}
			addedToSame := op == 1 && len(ikes) > 0
			p.mu.Unlock()
			p.updatePrimary()
			got := gw.primary["p"]

			var live, liveCur []*ikeChild
			for _, c := range p.children {
				if !c.retiring {
					live = append(live, c)
					if c.ikeSA == p.current {
						liveCur = append(liveCur, c)
					}
				}
			}
			find := func(id sa.ChildID) *ikeChild {
				for _, c := range p.children {
					if c.id == id {
						return c
					}
				}
				return nil
			}
			switch c := find(got); {
			case got == 0 && len(live) > 0:
				t.Fatalf("seed %d step %d: no primary with live children", seed, step)
			case got != 0 && (c == nil || c.retiring):
				t.Fatalf("seed %d step %d: primary %d is retiring or deleted", seed, step, got)
			case len(liveCur) > 0 && c.ikeSA != p.current:
				t.Fatalf("seed %d step %d: primary %d belongs to an older IKE SA", seed, step, got)
			}
			if b := find(before); addedToSame && before != 0 && b != nil && !b.retiring && b.ikeSA == p.current && got != before {
				t.Fatalf("seed %d step %d: installing a child moved the primary from %d to %d", seed, step, before, got)
			}
		}
	}
}

// TestIKEChildConfig: a negotiated child becomes two config.SAs with
// copies of the keys (wiped by addSAs without touching the ike
// package's), the peer's lifetimes, a replay window, and the negotiated
// selectors.
func TestIKEChildConfig(t *testing.T) {
	pc := &config.Peer{Name: "siteB", RekeyTime: 100e9}
	key := []byte("0123456789abcdef0123")
	c := &ike.ChildSA{ID: 9, In: sa.Config{Direction: sa.In, SPI: 0xc0000001, Key: key, UDPEncap: true, LocalPort: 4500, RemotePort: 4500,
		Selectors: []sa.Selector{{}}}}
	x := childConfig(pc, c, c.In, pc.SoftHard(0))
	if x.Name != "siteB-in-c0000001" || x.Direction != config.In || x.Child != 9 || x.ReplayWindow != config.DefaultReplayWindow ||
		x.Encap != config.EncapUDP || x.Lifetime.SoftTime != 100e9 || x.Lifetime.HardTime != 110e9 || len(x.Selectors) != 1 || x.PathMTU != config.DefaultPathMTU {
		t.Errorf("child config: %+v", x)
	}
	x.Key.Wipe()
	if string(key) != "0123456789abcdef0123" {
		t.Error("wiping the config's key wiped the ike package's copy")
	}
}

// TestIKEPrimaryConcurrent: callbacks run on several goroutines (socket
// readers, Terminate, ike timers). One chooses the primary (no child
// yet) and is held between its choice and the binding; meanwhile a child
// is installed and another updatePrimary runs: once both are done the
// bound primary is the installed child, never the stale choice (that
// lost update left a tunnel without an SA).
func TestIKEPrimaryConcurrent(t *testing.T) {
	gw := offlineGateway(t)
	p := &ikePeer{gw: gw, conf: &config.Peer{Name: "p"}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s := new(ike.IKESA)
	p.current = s
	inWindow, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	primaryYield = func() {
		if first.CompareAndSwap(false, true) { // only the first caller is held
			close(inWindow)
			<-release
		}
	}
	defer func() { primaryYield = nil }()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.updatePrimary() }() // chooses 0, held
	<-inWindow
	p.mu.Lock()
	p.children = append(p.children, &ikeChild{id: 5, c: &ike.ChildSA{}, ikeSA: s})
	p.mu.Unlock()
	go func() { defer wg.Done(); p.updatePrimary() }()
	time.Sleep(20 * time.Millisecond) // let it run (or block on the first one)
	close(release)
	wg.Wait()
	if got := gw.primary["p"]; got != 5 {
		t.Fatalf("primary %d after both updates, want the installed child 5", got)
	}
}

// TestIKEMoveChildren: a peer that moved behind its NAT (ike
// OnRemoteChanged) moves its children's outbound SAs in place - the
// same sa.SA, so its sequence numbers go on - and leaves another
// peer's outbound SA alone.
func TestIKEMoveChildren(t *testing.T) {
	gw := offlineGateway(t)
	tr, err := esp.ParseTransform("aes128gcm16")
	if err != nil {
		t.Fatal(err)
	}
	mk := func(name string, child sa.ChildID, spi uint32, remote string) *config.SA {
		return &config.SA{Name: name, Direction: config.Out, SPI: spi, Mode: esp.Tunnel, Local: netip.MustParseAddr("192.0.2.1"),
			Remote: netip.MustParseAddr(remote), Encap: config.EncapUDP, LocalPort: 4500, RemotePort: 4500,
			Transform: tr, Key: config.Secret(bytes.Repeat([]byte{byte(spi >> 8)}, 20)), PathMTU: 1500, Child: child}
	}
	gw.mu.Lock()
	err = gw.addSAsLocked([]*config.SA{mk("p-out-1", ike.ChildIDBase+7, 0x7001, "198.51.100.7")}, "peer", &ikeOwner{peer: "p", c: &ike.ChildSA{}, child: ike.ChildIDBase + 7})
	if err == nil {
		err = gw.addSAsLocked([]*config.SA{mk("q-out-1", ike.ChildIDBase+8, 0x8001, "198.51.100.8")}, "peer", &ikeOwner{peer: "q", c: &ike.ChildSA{}, child: ike.ChildIDBase + 8})
	}
	gw.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	find := func(name string) *sa.SA {
		gw.mu.Lock()
		defer gw.mu.Unlock()
		for _, e := range gw.sas {
			if e.conf.Name == name {
				return e.sa
			}
		}
		return nil
	}
	before := find("p-out-1")
	to := netip.MustParseAddrPort("203.0.113.9:61000")
	gw.moveChildren([]sa.ChildID{ike.ChildIDBase + 7}, to)
	after := find("p-out-1")
	if after != before {
		t.Fatal("the outbound SA was replaced, not moved in place")
	}
	if c := after.Config(); c.Remote != to.Addr() || c.RemotePort != to.Port() {
		t.Errorf("moved SA goes to %v:%d, want %v", c.Remote, c.RemotePort, to)
	}
	if c := find("q-out-1").Config(); c.Remote != netip.MustParseAddr("198.51.100.8") || c.RemotePort != 4500 {
		t.Errorf("another peer's SA moved to %v:%d", c.Remote, c.RemotePort)
	}
	gw.mu.Lock()
	k := gw.sas[key{sa.Out, 0x7001, to.Addr()}]
	gw.mu.Unlock()
	if k == nil {
		t.Error("the gateway's key of the moved SA did not follow")
	}
}
