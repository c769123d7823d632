package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/ike"
	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/sa"
)

// ikeOnlyYAML is a gateway whose tunnel carries IKE children only.
const ikeOnlyYAML = `interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:0a:fe", local: 192.0.2.1}
  plain:  {name: lan0, next_hop: "02:00:00:00:01:02", address: 10.1.0.1}
protected: [10.2.0.0/24]
tunnels:
  - {name: to-p}
`

// installChild installs an IKE child (outbound SPI out, inbound in) of
// peer "p" on tunnel to-p and makes it the peer's primary.
func installChild(t *testing.T, gw *Gateway, id sa.ChildID, out, in uint32) {
	t.Helper()
	tr, err := esp.ParseTransform("aes128gcm16")
	if err != nil {
		t.Fatal(err)
	}
	mk := func(dir config.Direction, spi uint32) *config.SA {
		return &config.SA{Name: "p-" + dir.String() + "-" + netip.AddrFrom4([4]byte{byte(spi >> 24), byte(spi >> 16), byte(spi >> 8), byte(spi)}).String(),
			Direction: dir, SPI: spi, Mode: esp.Tunnel, Local: netip.MustParseAddr("192.0.2.1"),
			Remote: netip.MustParseAddr("198.51.100.7"), Transform: tr, ReplayWindow: config.DefaultReplayWindow,
			Key: config.Secret(bytes.Repeat([]byte{byte(spi), byte(spi >> 8)}, 10)), PathMTU: 1500, Child: id,
			Selectors: []sa.Selector{{Src: netip.MustParsePrefix("10.2.0.0/24"), Dst: netip.MustParsePrefix("10.1.0.0/24")}}}
	}
	gw.mu.Lock()
	err = gw.addSAsLocked([]*config.SA{mk(config.Out, out), mk(config.In, in)}, "to-p", &ikeOwner{peer: "p", c: &ike.ChildSA{}, child: id})
	gw.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	gw.setPrimary("p", id)
}

// TestRedTeamOperatorDeletesIKEChildSA: the control socket's sa-delete
// and sa-update (DeleteSA, UpdateSA) took any SA, also one that an IKE
// SA owns. Deleting the outbound SA of a peer's live child left the
// tunnel without an outbound SA (a black hole: the IKE SA and its
// child are up, show ike says so, nothing is sent and nothing rekeys
// it); updating it to another key made the peer unable to decrypt.
// Invariant: whenever an IKE SA with a live child exists for a peer,
// its tunnel has an outbound SA the peer can decrypt - so the SAs of
// IKE children change only through IKE (ike terminate, rekeys).
func TestRedTeamOperatorDeletesIKEChildSA(t *testing.T) {
	gw := yamlGateway(t, ikeOnlyYAML)
	installChild(t, gw, ike.ChildIDBase+7, 0x7001, 0x7002)
	tun := gw.tunnels["to-p"]
	if n := len(tun.Outbound()); n != 1 {
		t.Fatalf("%d outbound SAs after the child was installed", n)
	}
	if err := gw.DeleteSA(sa.Out, 0x7001, netip.Addr{}); err == nil {
		t.Error("sa-delete removed the outbound SA of a live IKE child")
	}
	if err := gw.DeleteSA(sa.In, 0x7002, netip.Addr{}); err == nil {
		t.Error("sa-delete removed the inbound SA of a live IKE child")
	}
	if n := len(tun.Outbound()); n != 1 {
		t.Fatalf("the tunnel of a live IKE child has %d outbound SAs (black hole)", n)
	}
	tr, _ := esp.ParseTransform("aes128gcm16")
	c := &config.SA{Name: "p-out-x", Direction: config.Out, SPI: 0x7001, Mode: esp.Tunnel, Local: netip.MustParseAddr("192.0.2.1"),
		Remote: netip.MustParseAddr("198.51.100.7"), Transform: tr, Key: config.Secret(bytes.Repeat([]byte{0xee}, 20)), PathMTU: 1500}
	if err := gw.UpdateSA(c, ""); err == nil {
		t.Error("sa-update changed the key of a live IKE child's outbound SA: the peer cannot decrypt it")
	}
	// A static SA may not join the tunnel of a peer either (it would
	// share the per-CPU spreading with the peer's SA).
	s := &config.SA{Name: "static-out", Direction: config.Out, SPI: 0x9001, Mode: esp.Tunnel, Local: netip.MustParseAddr("192.0.2.1"),
		Remote: netip.MustParseAddr("198.51.100.9"), Transform: tr, Key: config.Secret(bytes.Repeat([]byte{0x99}, 20)), PathMTU: 1500}
	if err := gw.AddSA(s, "to-p"); err == nil {
		t.Error("sa-add put a static outbound SA in the tunnel of an IKE peer: the peer's traffic is spread over it")
	}
	if n := len(tun.Outbound()); n != 1 {
		t.Fatalf("the tunnel of a live IKE child has %d outbound SAs", n)
	}
}

// TestRedTeamNoBlackHoleProperty drives a peer through random
// sequences of IKE events with the gateway's real SA tables: IKE SAs
// negotiated (a peer that restarted), children installed (first ones,
// rekeys, additional ones), children deleted (by either side: retiring),
// the retire grace elapsing (DeleteChild), and IKE SAs dying (dead
// peer: all their children down). Invariant after every event: while
// the peer has a live (non-retiring) child, the tunnel has exactly one
// outbound SA and it is a live child's (whose inbound SA the peer has
// installed); with none, the tunnel sends on nothing (never on a child
// the peer deleted).
func TestRedTeamNoBlackHoleProperty(t *testing.T) {
	old := retireGrace
	retireGrace = time.Hour // the test elapses it itself
	defer func() { retireGrace = old }()
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 11))
		gw := yamlGateway(t, ikeOnlyYAML)
		tun := gw.tunnels["to-p"]
		p := &ikePeer{gw: gw, conf: &config.Peer{Name: "p"}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		outOf := map[uint32]sa.ChildID{}
		next := ike.ChildIDBase + 1
		for step := range 80 {
			op := r.IntN(5)
			switch {
			case op == 0 || len(p.sas) == 0: // an IKE SA comes up
				s := new(ike.IKESA)
				p.mu.Lock()
				p.current = s
				p.sas = append(p.sas, s)
				p.mu.Unlock()
			case op == 1: // a child is installed on a live IKE SA
				p.mu.Lock()
				s := p.sas[r.IntN(len(p.sas))]
				p.mu.Unlock()
				id := next
				next++
				out, in := 0x10000+uint32(id-ike.ChildIDBase)*2, 0x10001+uint32(id-ike.ChildIDBase)*2
				installChild(t, gw, id, out, in)
				outOf[out] = id
				p.mu.Lock()
				p.children = append(p.children, &ikeChild{id: id, c: &ike.ChildSA{}, ikeSA: s, in: in, out: out})
				p.mu.Unlock()
			case op == 2: // a child is deleted (retires)
				p.mu.Lock()
				if len(p.children) > 0 {
					p.children[r.IntN(len(p.children))].retiring = true
				}
				p.mu.Unlock()
			case op == 3: // a retired child's grace elapses
				p.mu.Lock()
				var ch *ikeChild
				for _, c := range p.children {
					if c.retiring {
						ch = c
						break
					}
				}
				p.mu.Unlock()
				if ch != nil {
					gw.deleteChild(ch.id, true)
					p.mu.Lock()
					p.children = slices.DeleteFunc(p.children, func(x *ikeChild) bool { return x == ch })
					p.mu.Unlock()
				}
			case op == 4: // an IKE SA dies (dead peer), its children down first
				p.mu.Lock()
				s := p.sas[r.IntN(len(p.sas))]
				for _, c := range p.children {
					if c.ikeSA == s {
						c.retiring = true
					}
				}
				p.mu.Unlock()
				p.forget(s)
			}
			p.updatePrimary()

			p.mu.Lock()
			live := map[sa.ChildID]bool{}
			for _, c := range p.children {
				if !c.retiring {
					live[c.id] = true
				}
			}
			p.mu.Unlock()
			outs := tun.Outbound()
			switch {
			case len(live) > 0 && len(outs) != 1:
				t.Fatalf("seed %d step %d (op %d): %d live children, %d outbound SAs", seed, step, op, len(live), len(outs))
			case len(live) > 0 && !live[outOf[outs[0].SPI()]]:
				t.Fatalf("seed %d step %d (op %d): the tunnel sends on child %d, not a live one %v", seed, step, op, outOf[outs[0].SPI()], live)
			case len(live) == 0 && len(outs) != 0:
				t.Fatalf("seed %d step %d (op %d): no live child, yet the tunnel sends on child %d", seed, step, op, outOf[outs[0].SPI()])
			}
		}
		gw.Close()
	}
}

// TestRedTeamChildDelOfIKEChild: the control socket's child-del (the
// API for an external IKE daemon, Gateway.DeleteChild) deleted any
// child, also one that a peer of the peers: section negotiated: its
// SAs went, the ike package still had the child (and its IKE SA) up,
// and the tunnel sent on nothing - the same black hole as sa-delete.
func TestRedTeamChildDelOfIKEChild(t *testing.T) {
	gw := yamlGateway(t, ikeOnlyYAML)
	installChild(t, gw, ike.ChildIDBase+7, 0x7001, 0x7002)
	resp := gw.Handle(Request{Cmd: "child-del", Child: uint64(ike.ChildIDBase + 7)})
	if resp.OK {
		t.Error("child-del deleted the child of an IKE peer")
	}
	if n := len(gw.tunnels["to-p"].Outbound()); n != 1 {
		t.Fatalf("the tunnel of a live IKE child has %d outbound SAs (black hole)", n)
	}
}

// TestRedTeamStrayESPNotSilent: ESP in UDP that the XDP program did
// not take (generic mode, a frame larger than the XDP buffer, a peer's
// NAT port the program does not know) reaches the NAT-T socket and is
// dropped there. It was counted in a Prometheus series only: without a
// metrics scraper the traffic vanished without a word. Now the first
// one (then at most one a minute) is logged, with the count.
func TestRedTeamStrayESPNotSilent(t *testing.T) {
	cfg, err := config.Parse("gw.yaml", []byte(ikeOnlyYAML))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	var mu sync.Mutex
	gw, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	from := netip.MustParseAddrPort("198.51.100.7:4500")
	for range 3 {
		gw.strayESP(from)
	}
	if n := gw.ikeESP.Load(); n != 3 {
		t.Errorf("counted %d of 3", n)
	}
	mu.Lock()
	logged := strings.Count(buf.String(), "ESP in UDP reached the IKE socket")
	mu.Unlock()
	if logged != 1 {
		t.Errorf("stray ESP logged %d times, want once (rate limited):\n%s", logged, buf.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// TestRedTeamIKEChildIDSharedWithStaticChild: the ike package numbered
// its child SAs 1, 2, 3... (a process-wide counter), the same space as
// the child: ids of static SAs (sas: ... child: 1, or sa-add), and the
// SAD groups SAs by that id alone. When a peer's child 1 retired, the
// gateway deleted SAD child group 1 - the static SAs with child: 1 of
// another tunnel with it: an IKE rekey took a static tunnel down. Fix:
// the id spaces are apart (ike.ChildIDBase), so an IKE child's group
// holds its own SAs only and deleting it whole is safe; a static child
// of the same small number stays.
func TestRedTeamIKEChildIDSharedWithStaticChild(t *testing.T) {
	gw := yamlGateway(t, staticAndPeerYAML)
	id := ike.ChildIDBase + 1 // the ike package's first child id
	installChild(t, gw, id, 0x7001, 0x7002)
	if n := len(gw.SAD().Child(id)); n != 2 {
		t.Fatalf("IKE child group %d holds %d SAs, want its 2", id, n)
	}
	if _, err := gw.deleteChild(id, true); err != nil {
		t.Fatal(err)
	}
	if n := len(gw.tunnels["to-s"].Outbound()); n != 1 {
		t.Errorf("the static tunnel lost its outbound SA when the IKE child retired (%d left)", n)
	}
	if n := len(gw.SAD().Child(1)); n != 2 {
		t.Errorf("static child group 1 holds %d SAs, want 2", n)
	}
	gw.mu.Lock()
	left := len(gw.sas)
	gw.mu.Unlock()
	if left != 2 {
		t.Errorf("%d SAs left, want the 2 static ones", left)
	}
	if n := len(gw.tunnels["to-p"].Outbound()); n != 0 {
		t.Errorf("the IKE child's outbound SA survived its deletion")
	}
}

// staticAndPeerYAML: a static tunnel (to-s, child: 1) beside a tunnel
// for IKE children (to-p).
const staticAndPeerYAML = `interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:0a:fe", local: 192.0.2.1}
  plain:  {name: lan0, next_hop: "02:00:00:00:01:02", address: 10.1.0.1}
protected: [10.2.0.0/24, 10.3.0.0/24]
tunnels:
  - {name: to-s, out: [a-to-s], in: [s-to-a]}
  - {name: to-p}
policies:
  - {name: s, src: 10.1.0.0/24, dst: 10.3.0.0/24, action: protect, tunnel: to-s}
  - {name: p, src: 10.1.0.0/24, dst: 10.2.0.0/24, action: protect, tunnel: to-p}
sas:
  - {name: a-to-s, direction: out, spi: 0x1002, local: 192.0.2.1, remote: 198.51.100.2, transform: aes128gcm16, key: 0x202122232425262728292a2b2c2d2e2f30313233, child: 1}
  - {name: s-to-a, direction: in, spi: 0x2002, local: 192.0.2.1, remote: 198.51.100.2, transform: aes128gcm16, key: 0x303132333435363738393a3b3c3d3e3f40414243, child: 1}
`

// TestIKEChildIDNeverStatic: an SAD child group holds static SAs or one
// IKE child's SAs, never both, over random sequences of static adds
// (sa-add, AddSAs, with ids anywhere in the 64-bit space), IKE child
// installs (ids from ike.ChildIDBase up, some with a wrong id) and
// deletions of either kind. After every step: every group is homogeneous
// (all static, or all of one IKE child), and deleting a whole IKE child
// group never touches a static SA.
func TestIKEChildIDNeverStatic(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 13))
		gw := yamlGateway(t, staticAndPeerYAML)
		nextSPI := uint32(0x10000)
		nextIKE := ike.ChildIDBase + 1
		var ikeIDs, staticIDs []sa.ChildID
		randomID := func() sa.ChildID {
			switch r.IntN(4) {
			case 0:
				return sa.ChildID(1 + r.IntN(5)) // small, shared with others
			case 1:
				return ike.ChildIDBase + sa.ChildID(r.IntN(5)) // in the IKE range
			case 2:
				return ike.ChildIDBase - 1
			default:
				return sa.ChildID(r.Uint64())
			}
		}
		for step := range 60 {
			switch op := r.IntN(5); op {
			case 0, 1: // a static SA pair over the control socket's API
				id := randomID()
				tr := esp.MustParseTransform("aes128gcm16")
				mk := func(dir config.Direction, spi uint32) *config.SA {
					return &config.SA{Name: fmt.Sprintf("s-%x", spi), Direction: dir, SPI: spi, Mode: esp.Tunnel,
						Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.MustParseAddr("198.51.100.9"), Transform: tr,
						ReplayWindow: config.DefaultReplayWindow, PathMTU: 1500, Child: id,
						Key: config.Secret(bytes.Repeat([]byte{byte(spi), byte(spi >> 8), byte(spi >> 16)}, 7)[:20])}
				}
				nextSPI += 2
				err := gw.AddSAs([]*config.SA{mk(config.Out, nextSPI), mk(config.In, nextSPI+1)}, "")
				if (err == nil) != (id < ike.ChildIDBase) {
					t.Fatalf("seed %d step %d: static child %d: AddSAs error %v", seed, step, id, err)
				}
				if err == nil {
					staticIDs = append(staticIDs, id)
				} else if !errors.Is(err, ErrChildID) {
					t.Fatalf("seed %d step %d: error %v, want ErrChildID", seed, step, err)
				}
			case 2: // an IKE child is installed
				id := nextIKE
				nextIKE++
				nextSPI += 2
				installChild(t, gw, id, nextSPI, nextSPI+1)
				ikeIDs = append(ikeIDs, id)
			case 3: // an IKE child retires
				if len(ikeIDs) > 0 {
					i := r.IntN(len(ikeIDs))
					static := len(staticSAs(gw))
					if _, err := gw.deleteChild(ikeIDs[i], true); err != nil {
						t.Fatalf("seed %d step %d: %v", seed, step, err)
					}
					if n := len(staticSAs(gw)); n != static {
						t.Fatalf("seed %d step %d: deleting IKE child %d took %d static SAs with it", seed, step, ikeIDs[i], static-n)
					}
					ikeIDs = slices.Delete(ikeIDs, i, i+1)
				}
			case 4: // an operator deletes a static child (never an IKE one)
				if len(staticIDs) > 0 {
					i := r.IntN(len(staticIDs))
					gw.DeleteChild(staticIDs[i]) // may be gone already (shared id)
					staticIDs = slices.Delete(staticIDs, i, i+1)
				}
			}
			gw.mu.Lock()
			groups := map[sa.ChildID]map[string]bool{}
			for _, e := range gw.sas {
				if id := e.sa.Config().Child; id != 0 {
					kind := "static"
					if e.owner != nil {
						kind = fmt.Sprint("ike ", e.owner.child)
					}
					if groups[id] == nil {
						groups[id] = map[string]bool{}
					}
					groups[id][kind] = true
				}
			}
			gw.mu.Unlock()
			for id, kinds := range groups {
				if len(kinds) != 1 {
					t.Fatalf("seed %d step %d: child group %d mixes %v", seed, step, id, kinds)
				}
			}
		}
	}
}

// staticSAs returns the names of gw's SAs that no IKE child owns.
func staticSAs(gw *Gateway) []string {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	var l []string
	for _, e := range gw.sas {
		if e.owner == nil {
			l = append(l, e.conf.Name)
		}
	}
	return l
}
