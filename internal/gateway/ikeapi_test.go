package gateway

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
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

func yamlGateway(t *testing.T, y string) *Gateway {
	t.Helper()
	cfg, err := config.Parse("gw.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	return gw
}

// encrypt sends n packets through gw's worker 0 (default tunnel) and
// fails unless all leave.
func encrypt(t *testing.T, gw *Gateway, n int) {
	t.Helper()
	w := gw.Processor().Worker(0)
	pkts := make([]sa.Packet, 1)
	for range n {
		inner := udp4Packet(netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("10.2.0.2"))
		buf := make([]byte, esp.MaxHeadroom+len(inner)+esp.MaxTailroom)
		copy(buf[esp.MaxHeadroom:], inner)
		pkts[0] = sa.Packet{Buf: buf, Off: esp.MaxHeadroom, Len: len(inner)}
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
