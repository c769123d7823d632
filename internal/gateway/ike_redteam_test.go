package gateway

import (
	"bytes"
	"net/netip"
	"testing"

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
	installChild(t, gw, 7, 0x7001, 0x7002)
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
