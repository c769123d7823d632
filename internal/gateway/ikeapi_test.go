package gateway

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/sa"
)

// nattYAML is an offline NAT-T gateway whose inbound SA lets the peer's
// endpoint float; both SAs are also child 7.
const nattYAML = `interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:0a:fe", local: 192.0.2.1}
  plain:  {name: lan0, next_hop: "02:00:00:00:01:02", address: 10.1.0.1}
protected: [10.2.0.0/24]
tunnels:
  - {name: peer, out: [a-to-b], in: [b-to-a]}
sas:
  - {name: a-to-b, direction: out, spi: 0x1001, child: 7, local: 192.0.2.1, remote: 192.0.2.2, encap: udp, transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f10111213}
  - {name: b-to-a, direction: in, spi: 0x2001, child: 7, float_remote: true, local: 192.0.2.1, remote: 192.0.2.2, encap: udp, transform: aes128gcm16, key: 0x101112131415161718191a1b1c1d1e1f20212223}
`

// encrypt sends n packets through gw's worker 0 (default tunnel) and
// fails unless all leave.
func encrypt(t *testing.T, gw *Gateway, n int) {
	t.Helper()
	w := gw.Processor().Worker(0)
	pkts := make([]sa.Packet, 1)
	for range n {
		pkts[0] = plainPacket(netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("10.2.0.2"))
		w.Outbound(pkts)
		if pkts[0].Verdict != sa.VerdictOK {
			t.Fatalf("outbound drop %v", pkts[0].Reason)
		}
	}
}

func saOf(t *testing.T, gw *Gateway, name string) *sa.SA {
	t.Helper()
	gw.mu.Lock()
	defer gw.mu.Unlock()
	for _, e := range gw.sas {
		if e.conf.Name == name {
			return e.sa
		}
	}
	t.Fatalf("no SA %s", name)
	return nil
}

// TestFollowEndpoint drives the gateway's handler of EventEndpointChanged
// with a synthetic event: the outbound SA of the inbound SA's tunnel
// moves in place (same *sa.SA, sequence number kept), the SAD finds it
// at the new endpoint only, the gateway's key follows, keepalives go to
// the new endpoint, and a reload of the unchanged file keeps it there.
func TestFollowEndpoint(t *testing.T) {
	gw := yamlGateway(t, nattYAML)
	out, in := saOf(t, gw, "a-to-b"), saOf(t, gw, "b-to-a")
	encrypt(t, gw, 5)
	if out.Seq() != 5 {
		t.Fatalf("seq %d before the move", out.Seq())
	}
	old := netip.MustParseAddrPort("192.0.2.2:4500")
	to := netip.MustParseAddrPort("198.51.100.9:61000")
	if gw.SAD().GetOutPort(0x1001, old) != out {
		t.Fatal("outbound SA not at its configured endpoint")
	}

	// Events of another kind, of an unknown SA or without an endpoint
	// move nothing.
	stranger := mustGWSA(t, sa.In)
	for _, e := range []sa.Event{
		{Kind: sa.EventSoftExpire, SA: in, Endpoint: to},
		{Kind: sa.EventEndpointChanged, SA: stranger, Endpoint: to},
		{Kind: sa.EventEndpointChanged, SA: in},
	} {
		if moved := gw.followEndpoint(e); moved != nil {
			t.Fatalf("%v moved %v", e, moved)
		}
	}

	moved := gw.followEndpoint(sa.Event{Kind: sa.EventEndpointChanged, SA: in, SPI: in.SPI(), Endpoint: to})
	if fmt.Sprint(moved) != "[a-to-b]" {
		t.Fatalf("moved %v", moved)
	}
	if saOf(t, gw, "a-to-b") != out {
		t.Fatal("the outbound SA was replaced, not moved in place")
	}
	if out.Seq() != 5 {
		t.Fatalf("seq %d after the move, want 5 kept", out.Seq())
	}
	if c := out.Config(); c.Remote != to.Addr() || c.RemotePort != to.Port() {
		t.Fatalf("SA at %v:%d", c.Remote, c.RemotePort)
	}
	if gw.SAD().GetOutPort(0x1001, to) != out || gw.SAD().GetOutPort(0x1001, old) != nil {
		t.Fatal("SAD does not find the SA at the new endpoint only")
	}
	peers, _ := gw.nattPeers()
	if len(peers) != 1 || peers[0].remote != to {
		t.Fatalf("keepalive peers %v, want %v", peers, to)
	}
	encrypt(t, gw, 1)
	if out.Seq() != 6 {
		t.Fatalf("seq %d after one more packet", out.Seq())
	}
	// The same event again is a no-op.
	if moved := gw.followEndpoint(sa.Event{Kind: sa.EventEndpointChanged, SA: in, Endpoint: to}); moved != nil {
		t.Fatalf("second event moved %v", moved)
	}

	// Reloading the unchanged file keeps the learnt endpoint and the SA.
	cfg, err := config.Parse("gw.yaml", []byte(nattYAML))
	if err != nil {
		t.Fatal(err)
	}
	res, err := gw.Reload(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Added)+len(res.Removed)+len(res.Replaced)+len(res.Updated) != 0 {
		t.Fatalf("reload of the same file changed %+v", res)
	}
	if saOf(t, gw, "a-to-b") != out || gw.SAD().GetOutPort(0x1001, to) != out {
		t.Fatal("reload lost the learnt endpoint")
	}
	// The gateway keys the SA at its new peer: sa-del by remote finds it.
	if err := gw.DeleteSA(sa.Out, 0x1001, netip.MustParseAddr("192.0.2.2")); !errors.Is(err, sa.ErrNotFound) {
		t.Fatalf("delete at the old peer: %v", err)
	}
	if err := gw.DeleteSA(sa.Out, 0x1001, to.Addr()); err != nil {
		t.Fatal(err)
	}
}

// TestFollowEndpointChild: without a tunnel, the child group tells
// which outbound SA follows; an outbound SA of another child does not.
func TestFollowEndpointChild(t *testing.T) {
	y := strings.Replace(nattYAML, "tunnels:\n  - {name: peer, out: [a-to-b], in: [b-to-a]}\n", "", 1)
	y += `  - {name: other, direction: out, spi: 0x1002, child: 8, local: 192.0.2.1, remote: 192.0.2.2, encap: udp, transform: aes128gcm16, key: 0x202122232425262728292a2b2c2d2e2f30313233}
`
	gw := yamlGateway(t, y)
	in, out, other := saOf(t, gw, "b-to-a"), saOf(t, gw, "a-to-b"), saOf(t, gw, "other")
	to := netip.MustParseAddrPort("192.0.2.77:4501")
	if moved := gw.followEndpoint(sa.Event{Kind: sa.EventEndpointChanged, SA: in, Endpoint: to}); fmt.Sprint(moved) != "[a-to-b]" {
		t.Fatalf("moved %v", moved)
	}
	if gw.SAD().GetOutPort(0x1001, to) != out {
		t.Fatal("child's outbound SA not moved")
	}
	if c := other.Config(); c.Remote != netip.MustParseAddr("192.0.2.2") || c.RemotePort != 4500 {
		t.Fatalf("SA of another child moved to %v:%d", c.Remote, c.RemotePort)
	}
	// An IPv6 endpoint for an IPv4 SA moves nothing.
	if moved := gw.followEndpoint(sa.Event{Kind: sa.EventEndpointChanged, SA: in, Endpoint: netip.MustParseAddrPort("[2001:db8::1]:4500")}); moved != nil {
		t.Fatalf("moved %v across families", moved)
	}
}

func mustGWSA(t *testing.T, dir sa.Direction) *sa.SA {
	t.Helper()
	tr, err := esp.ParseTransform("aes128gcm16")
	if err != nil {
		t.Fatal(err)
	}
	s, err := sa.New(sa.Config{Name: "x", Direction: dir, SPI: 0x9999, Mode: esp.Tunnel,
		Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.MustParseAddr("192.0.2.2"),
		Transform: tr, Key: make([]byte, 20)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func saLine(name, dir string, spi uint32, extra string) string {
	return fmt.Sprintf(`{name: %s, direction: %s, spi: 0x%x, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f1011%04x%s}`, name, dir, spi, spi&0xffff, extra)
}

// installed returns the names of the gateway's SAs, in order.
func installed(gw *Gateway) []string {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	var out []string
	for _, k := range gw.order {
		out = append(out, gw.sas[k].conf.Name)
	}
	return out
}

// TestControlAddList: sa-add of a list adds all of its SAs, with their
// child id, or - when any one of them is invalid or conflicts - none.
func TestControlAddList(t *testing.T) {
	gw := offlineGateway(t)
	before := fmt.Sprint(installed(gw))
	nIn := gw.SAD().Len()
	for _, tc := range []struct{ name, sa string }{
		{"2nd does not parse", "[" + saLine("c-out", "out", 0x3001, ", child: 3") + ", {name: c-in, direction: in}]"},
		{"2nd has a bad transform", "[" + saLine("c-out", "out", 0x3001, "") + ", " + strings.Replace(saLine("c-in", "in", 0x3002, ""), "aes128gcm16", "rot13", 1) + "]"},
		{"2nd has an inbound SPI in use", "[" + saLine("c-out", "out", 0x3001, "") + ", " + saLine("c-in", "in", 0x2001, "") + "]"},
		{"2nd has a name in use", "[" + saLine("c-out", "out", 0x3001, "") + ", " + saLine("b-to-a", "in", 0x3002, "") + "]"},
		{"two with one name", "[" + saLine("c-out", "out", 0x3001, "") + ", " + saLine("c-out", "in", 0x3002, "") + "]"},
		{"two with one SPI", "[" + saLine("c-in", "in", 0x3002, "") + ", " + saLine("c-in2", "in", 0x3002, "") + "]"},
		{"child 0", "[" + saLine("c-out", "out", 0x3001, ", child: 0") + "]"},
		{"empty list", "[]"},
		{"not a list or mapping", "7"},
	} {
		resp := gw.Handle(Request{Cmd: "sa-add", SA: tc.sa, Tunnel: "peer"})
		if resp.OK || resp.Error == "" {
			t.Errorf("%s: accepted", tc.name)
		}
		if got := fmt.Sprint(installed(gw)); got != before {
			t.Errorf("%s: SAs now %s, want %s", tc.name, got, before)
		}
		if gw.SAD().Len() != nIn || gw.SAD().Child(3) != nil {
			t.Errorf("%s: the SAD changed", tc.name)
		}
	}
	if resp := gw.Handle(Request{Cmd: "sa-add", SA: "[" + saLine("c-out", "out", 0x3001, ", child: 3") + ", " + saLine("c-in", "in", 0x3002, ", child: 3") + "]", Tunnel: "nope"}); resp.OK {
		t.Error("unknown tunnel accepted")
	}
	resp := gw.Handle(Request{Cmd: "sa-add", SA: "[" + saLine("c-out", "out", 0x3001, ", child: 3") + ", " + saLine("c-in", "in", 0x3002, ", child: 3") + "]"})
	if !resp.OK {
		t.Fatal(resp.Error)
	}
	if got := len(gw.SAD().Child(3)); got != 2 {
		t.Fatalf("child 3 has %d SAs", got)
	}
	var children []sa.ChildID
	for _, st := range gw.SAStats() {
		if st.Name == "c-out" || st.Name == "c-in" {
			children = append(children, st.Child)
		}
	}
	if fmt.Sprint(children) != "[3 3]" {
		t.Fatalf("show sa child ids %v", children)
	}
	// A single mapping still works.
	if resp := gw.Handle(Request{Cmd: "sa-add", SA: saLine("d-in", "in", 0x3003, "")}); !resp.OK {
		t.Fatal(resp.Error)
	}
}

// TestControlChildDel: child-del deletes every SA of the child, from the
// gateway, its tunnel and the SAD; an unknown or missing child is an
// error that changes nothing.
func TestControlChildDel(t *testing.T) {
	gw := offlineGateway(t)
	if resp := gw.Handle(Request{Cmd: "sa-add", Tunnel: "peer", SA: "[" + saLine("c-out", "out", 0x3001, ", child: 5") + ", " + saLine("c-in", "in", 0x3002, ", child: 5") + "]"}); !resp.OK {
		t.Fatal(resp.Error)
	}
	out, in := saOf(t, gw, "c-out"), saOf(t, gw, "c-in")
	before := fmt.Sprint(installed(gw))
	for _, req := range []Request{{Cmd: "child-del"}, {Cmd: "child-del", Child: 6}} {
		if resp := gw.Handle(req); resp.OK {
			t.Errorf("%+v accepted", req)
		}
	}
	if got := fmt.Sprint(installed(gw)); got != before {
		t.Fatalf("failed child-del changed %s to %s", before, got)
	}
	resp := gw.Handle(Request{Cmd: "child-del", Child: 5})
	if !resp.OK || resp.Deleted != 2 {
		t.Fatalf("child-del: %+v", resp)
	}
	if got := fmt.Sprint(installed(gw)); got != "[a-to-b b-to-a]" {
		t.Fatalf("SAs after child-del: %s", got)
	}
	if out.State() != sa.StateDeleted || in.State() != sa.StateDeleted || gw.SAD().Child(5) != nil {
		t.Fatal("child SAs not deleted")
	}
	tn := gw.tunnels["peer"]
	for _, s := range append(tn.Inbound(), tn.Outbound()...) {
		if s == out || s == in {
			t.Fatal("a deleted SA is still bound to the tunnel")
		}
	}
	if resp := gw.Handle(Request{Cmd: "child-del", Child: 5}); resp.OK {
		t.Fatal("second child-del accepted")
	}
}

// TestControlAllocSPI: alloc-spi reserves an SPI in the range asked; an
// empty, bad or exhausted range and a bad ttl are errors; release-spi
// frees it once; an sa-add of an inbound SA with it consumes it.
func TestControlAllocSPI(t *testing.T) {
	gw := offlineGateway(t)
	resp := gw.Handle(Request{Cmd: "alloc-spi", Min: 0x5000, Max: 0x5001, TTL: "1m"})
	if !resp.OK || resp.SPI < 0x5000 || resp.SPI > 0x5001 {
		t.Fatalf("alloc-spi: %+v", resp)
	}
	first := resp.SPI
	resp = gw.Handle(Request{Cmd: "alloc-spi", Min: 0x5000, Max: 0x5001})
	if !resp.OK || resp.SPI == first || resp.SPI < 0x5000 || resp.SPI > 0x5001 {
		t.Fatalf("second alloc-spi: %+v", resp)
	}
	second := resp.SPI
	for _, req := range []Request{
		{Cmd: "alloc-spi", Min: 0x5000, Max: 0x5001}, // exhausted
		{Cmd: "alloc-spi", Min: 0x6000, Max: 0x5000}, // empty
		{Cmd: "alloc-spi", Min: 1, Max: 0xff},        // below MinSPI
		{Cmd: "alloc-spi", TTL: "soon"},
		{Cmd: "alloc-spi", TTL: "-5s"},
	} {
		if resp := gw.Handle(req); resp.OK {
			t.Errorf("%+v accepted: %+v", req, resp)
		}
	}
	// The inbound SPI of b-to-a (0x2001) is in use: never handed out.
	if resp := gw.Handle(Request{Cmd: "alloc-spi", Min: 0x2001, Max: 0x2001}); resp.OK {
		t.Errorf("live SPI handed out: %+v", resp)
	}
	if resp := gw.Handle(Request{Cmd: "release-spi", SPI: second}); !resp.OK {
		t.Fatal(resp.Error)
	}
	if resp := gw.Handle(Request{Cmd: "release-spi", SPI: second}); resp.OK {
		t.Fatal("second release accepted")
	}
	if resp := gw.Handle(Request{Cmd: "release-spi", SPI: 0x7777}); resp.OK {
		t.Fatal("release of an SPI never reserved accepted")
	}
	// An inbound SA with the reserved SPI consumes the reservation.
	if resp := gw.Handle(Request{Cmd: "sa-add", SA: saLine("r-in", "in", first, "")}); !resp.OK {
		t.Fatal(resp.Error)
	}
	if gw.SAD().Reserved(first) {
		t.Fatal("reservation not consumed")
	}
	if resp := gw.Handle(Request{Cmd: "release-spi", SPI: first}); resp.OK {
		t.Fatal("release of a consumed SPI accepted")
	}
	// The whole space (no range) works too.
	if resp := gw.Handle(Request{Cmd: "alloc-spi"}); !resp.OK || resp.SPI < sa.MinSPI {
		t.Fatalf("alloc-spi without range: %+v", resp)
	}
}

// checkConsistent checks the invariants the gateway keeps between its SA
// map and the SAD: every entry is in the SAD under the key the gateway
// files it by (outbound: SPI and the SA's current peer, which moves with
// followEndpoint), the SAD holds nothing else, every SA of a child group
// is an entry, and no reserved SPI is a live inbound SPI.
func checkConsistent(t *testing.T, gw *Gateway, step string) {
	t.Helper()
	gw.mu.Lock()
	defer gw.mu.Unlock()
	if len(gw.order) != len(gw.sas) || gw.sad.Len() != len(gw.sas) {
		t.Fatalf("%s: %d keys in order, %d entries, %d SAs in the SAD", step, len(gw.order), len(gw.sas), gw.sad.Len())
	}
	children := map[sa.ChildID]int{}
	for _, k := range gw.order {
		e := gw.sas[k]
		if e == nil {
			t.Fatalf("%s: key %v without entry", step, k)
		}
		c := e.sa.Config()
		if k.dir == sa.In {
			if gw.sad.Lookup(k.spi) != e.sa {
				t.Fatalf("%s: inbound 0x%x not in the SAD", step, k.spi)
			}
			if gw.sad.Reserved(k.spi) {
				t.Fatalf("%s: live inbound SPI 0x%x is reserved", step, k.spi)
			}
		} else {
			if k.remote != c.Remote || e.conf.Remote != c.Remote || e.conf.RemotePort != c.RemotePort {
				t.Fatalf("%s: %s keyed at %v, conf %v:%d, SA at %v:%d", step, e.conf.Name, k.remote, e.conf.Remote, e.conf.RemotePort, c.Remote, c.RemotePort)
			}
			if gw.sad.GetOutPort(k.spi, netip.AddrPortFrom(c.Remote, c.RemotePort)) != e.sa {
				t.Fatalf("%s: outbound %s not found at its endpoint", step, e.conf.Name)
			}
		}
		if c.Child != 0 {
			children[c.Child]++
		}
	}
	for id, n := range children {
		if got := len(gw.sad.Child(id)); got != n {
			t.Fatalf("%s: child %d has %d SAs in the SAD, %d entries", step, id, got, n)
		}
	}
}

// TestIKEAPIProperty runs random sequences of sa-add (single and lists,
// valid, invalid and conflicting), child-del, sa-del, alloc-spi,
// release-spi, endpoint changes and reloads of the file, and checks
// after every step that a list was added whole or not at all, that the
// gateway and the SAD agree (checkConsistent), and that the outbound SA
// of the file, moved around by endpoint changes, is always the same SA
// whose sequence number only grows.
func TestIKEAPIProperty(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 77))
			gw := yamlGateway(t, nattYAML)
			out, in := saOf(t, gw, "a-to-b"), saOf(t, gw, "b-to-a")
			var lastSeq uint64
			nextSPI, nextName := uint32(0x4000), 0
			var reserved []uint32
			for step := range 60 {
				name := func() string { nextName++; return fmt.Sprintf("s%d", nextName) }
				desc := ""
				switch op := r.IntN(8); op {
				case 0, 1: // a list, maybe with a bad or clashing member
					n := 1 + r.IntN(3)
					child := 1 + r.IntN(4)
					var items []string
					var names []string
					for range n {
						dir := []string{"in", "out"}[r.IntN(2)]
						spi := nextSPI
						nextSPI++
						if r.IntN(6) == 0 {
							spi = 0x2001 // in use inbound (and fine outbound)
						}
						if dir == "in" && len(reserved) > 0 && r.IntN(3) == 0 {
							spi = reserved[0] // consumes a reservation
						}
						nm := name()
						extra := fmt.Sprintf(", child: %d", child)
						if r.IntN(8) == 0 {
							extra += ", path_mtu: 3" // invalid
						}
						items = append(items, saLine(nm, dir, spi, extra))
						names = append(names, nm)
					}
					before := gw.SAD().Len()
					resp := gw.Handle(Request{Cmd: "sa-add", SA: "[" + strings.Join(items, ", ") + "]"})
					got := 0
					for _, nm := range installed(gw) {
						for _, want := range names {
							if nm == want {
								got++
							}
						}
					}
					if resp.OK && (got != n || gw.SAD().Len() != before+n) || !resp.OK && (got != 0 || gw.SAD().Len() != before) {
						t.Fatalf("step %d: list of %d: ok %v (%s), %d of its SAs installed", step, n, resp.OK, resp.Error, got)
					}
					desc = fmt.Sprintf("sa-add %d ok=%v", n, resp.OK)
				case 2:
					id := uint64(1 + r.IntN(5))
					want := len(gw.SAD().Child(sa.ChildID(id)))
					resp := gw.Handle(Request{Cmd: "child-del", Child: id})
					if resp.OK != (want > 0) || resp.Deleted != want || len(gw.SAD().Child(sa.ChildID(id))) != 0 {
						t.Fatalf("step %d: child-del %d of %d SAs: %+v", step, id, want, resp)
					}
					desc = "child-del"
				case 3:
					resp := gw.Handle(Request{Cmd: "alloc-spi", Min: 0x4000, Max: 0x4000 + uint32(r.IntN(64))})
					if resp.OK {
						reserved = append(reserved, resp.SPI)
					}
					desc = "alloc-spi"
				case 4:
					if len(reserved) > 0 {
						gw.Handle(Request{Cmd: "release-spi", SPI: reserved[len(reserved)-1]})
						reserved = reserved[:len(reserved)-1]
					}
					desc = "release-spi"
				case 5:
					ep := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + r.IntN(3))}), uint16(4500+r.IntN(3)))
					gw.followEndpoint(sa.Event{Kind: sa.EventEndpointChanged, SA: in, Endpoint: ep})
					if c := out.Config(); c.Remote != ep.Addr() || c.RemotePort != ep.Port() {
						t.Fatalf("step %d: a-to-b at %v:%d, want %v", step, c.Remote, c.RemotePort, ep)
					}
					desc = "endpoint"
				case 6:
					cfg, err := config.Parse("gw.yaml", []byte(nattYAML))
					if err != nil {
						t.Fatal(err)
					}
					if _, err := gw.Reload(cfg); err != nil {
						t.Fatalf("step %d: reload: %v", step, err)
					}
					desc = "reload"
				case 7:
					encrypt(t, gw, 1+r.IntN(3))
					desc = "encrypt"
				}
				checkConsistent(t, gw, fmt.Sprintf("step %d (%s)", step, desc))
				if saOf(t, gw, "a-to-b") != out || saOf(t, gw, "b-to-a") != in {
					t.Fatalf("step %d (%s): the file's SAs were replaced", step, desc)
				}
				if s := out.Seq(); s < lastSeq {
					t.Fatalf("step %d (%s): sequence went back from %d to %d", step, desc, lastSeq, s)
				} else {
					lastSeq = s
				}
				// Reservations consumed by an added SA are gone.
				reserved = slices.DeleteFunc(reserved, func(spi uint32) bool { return !gw.SAD().Reserved(spi) })
			}
		})
	}
}
