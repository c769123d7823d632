package gateway

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/sa"
)

// TestOutboundSPIPerPeer: two peers chose the same SPI for our outbound
// SAs. Both are installed, each bound to its tunnel; deleting by SPI
// needs the peer; reload keeps them apart. No system resources: New
// only builds the SAD, SPD and tunnels.
func TestOutboundSPIPerPeer(t *testing.T) {
	const key = "0x000102030405060708090a0b0c0d0e0f10111213"
	yaml := `gateway: {}
interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:00:01", local: 192.0.2.1}
  plain: {name: lan0, next_hop: "02:00:00:00:00:02", address: 10.1.0.1}
protected: [10.2.0.0/24, 10.3.0.0/24]
policies:
  - {name: p-b, dst: 10.2.0.0/24, action: protect, tunnel: b}
  - {name: p-c, dst: 10.3.0.0/24, action: protect, tunnel: c}
tunnels:
  - {name: b, out: [to-b], in: [from-b]}
  - {name: c, out: [to-c], in: [from-c]}
sas:
  - {name: to-b, direction: out, spi: 0x5000, local: 192.0.2.1, remote: 198.51.100.2, transform: aes128gcm16, key: ` + key + `}
  - {name: to-c, direction: out, spi: 0x5000, local: 192.0.2.1, remote: 203.0.113.3, transform: aes128gcm16, key: ` + key[:len(key)-1] + `9}
  - {name: from-b, direction: in, spi: 0x6001, local: 192.0.2.1, remote: 198.51.100.2, transform: aes128gcm16, key: ` + key + `}
  - {name: from-c, direction: in, spi: 0x6002, local: 192.0.2.1, remote: 203.0.113.3, transform: aes128gcm16, key: ` + key + `}
`
	cfg, err := config.Parse("gw.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	b, c := netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("203.0.113.3")
	toB, toC := gw.SAD().GetOut(0x5000, b), gw.SAD().GetOut(0x5000, c)
	if toB == nil || toC == nil || toB == toC || toB.Name() != "to-b" || toC.Name() != "to-c" {
		t.Fatalf("outbound SAs: %v %v", toB, toC)
	}
	if o := gw.tunnels["b"].Outbound(); len(o) != 1 || o[0] != toB {
		t.Fatalf("tunnel b: %v", o)
	}
	if o := gw.tunnels["c"].Outbound(); len(o) != 1 || o[0] != toC {
		t.Fatalf("tunnel c: %v", o)
	}
	if len(gw.SAStats()) != 4 {
		t.Fatalf("%d SAs", len(gw.SAStats()))
	}
	// Reload unchanged (a fresh parse: New wiped cfg's keys): both stay.
	again, err := config.Parse("gw.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	res, err := gw.Reload(again)
	if err != nil || res.Unchanged != 4 {
		t.Fatalf("reload: %+v %v", res, err)
	}
	if err := gw.DeleteSA(sa.Out, 0x5000, netip.Addr{}); !errors.Is(err, sa.ErrAmbiguous) {
		t.Fatalf("delete by shared SPI alone: %v", err)
	}
	if err := gw.DeleteSA(sa.Out, 0x5000, c); err != nil {
		t.Fatal(err)
	}
	if toC.State() != sa.StateDeleted || len(gw.tunnels["c"].Outbound()) != 0 || gw.SAD().GetOut(0x5000, b) != toB {
		t.Fatal("deleting the SA to c touched the wrong SA")
	}
	// Now unique: the SPI alone is enough.
	if err := gw.DeleteSA(sa.Out, 0x5000, netip.Addr{}); err != nil || toB.State() != sa.StateDeleted {
		t.Fatalf("delete by unique SPI: %v", err)
	}
}

// TestReloadMovedPeerKeepsOutboundSA: a reload (and an sa update) that
// moves an outbound SA to another peer address, key unchanged, changes
// the SA in place: the same SA, its sequence number kept - not a new SA
// under the old key starting again at 1 (nonce reuse), even though the
// SAD and the gateway key outbound SAs by SPI and peer.
func TestReloadMovedPeerKeepsOutboundSA(t *testing.T) {
	const key = "0x000102030405060708090a0b0c0d0e0f10111213"
	conf := func(remote string) *config.Config {
		t.Helper()
		cfg, err := config.Parse("gw.yaml", []byte(`gateway: {}
interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:00:01", local: 192.0.2.1}
  plain: {name: lan0, next_hop: "02:00:00:00:00:02", address: 10.1.0.1}
protected: [10.2.0.0/24]
tunnels:
  - {name: b, out: [to-b], in: [from-b]}
sas:
  - {name: to-b, direction: out, spi: 0x5000, local: 192.0.2.1, remote: `+remote+`, transform: aes128gcm16, key: `+key+`}
  - {name: from-b, direction: in, spi: 0x6001, local: 192.0.2.1, remote: 198.51.100.2, transform: aes128gcm16, key: `+key+`}
`))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	gw, err := New(conf("198.51.100.2"), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	s := gw.SAD().GetOut(0x5000, netip.MustParseAddr("198.51.100.2"))
	if s == nil {
		t.Fatal("outbound SA not found")
	}
	// Packets sent so far: the SA continues after them.
	s.SetSeqLimit(0)
	for range 7 {
		tunnelSend(t, gw, "b")
	}
	if s.Seq() != 7 {
		t.Fatalf("seq %d after 7 packets", s.Seq())
	}
	res, err := gw.Reload(conf("198.51.100.9"))
	if err != nil || len(res.Updated) != 1 || len(res.Removed)+len(res.Added)+len(res.Replaced) != 0 {
		t.Fatalf("reload: %+v %v", res, err)
	}
	moved := netip.MustParseAddr("198.51.100.9")
	if gw.SAD().GetOut(0x5000, moved) != s || s.Config().Remote != moved || s.Seq() != 7 || s.State() == sa.StateDeleted {
		t.Fatalf("after the reload: SA %v (same %v), remote %v, seq %d", gw.SAD().GetOut(0x5000, moved), gw.SAD().GetOut(0x5000, moved) == s, s.Config().Remote, s.Seq())
	}
	if o := gw.tunnels["b"].Outbound(); len(o) != 1 || o[0] != s {
		t.Fatalf("tunnel b: %v", o)
	}
	// The same through sa update (the control socket's sa-update).
	c, err := config.ParseSA("control", []byte("{name: to-b, direction: out, spi: 0x5000, local: 192.0.2.1, remote: 198.51.100.10, transform: aes128gcm16, key: "+key+"}"))
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.UpdateSA(c, ""); err != nil {
		t.Fatal(err)
	}
	if s.Config().Remote != netip.MustParseAddr("198.51.100.10") || s.Seq() != 7 || s.State() == sa.StateDeleted {
		t.Fatalf("after sa update: remote %v seq %d state %v", s.Config().Remote, s.Seq(), s.State())
	}
	tunnelSend(t, gw, "b")
	if s.Seq() != 8 {
		t.Fatalf("next packet sent with seq %d, want 8", s.Seq())
	}
}

// tunnelSend encrypts one inner packet into tunnel name through the
// gateway's processor (no interfaces needed).
func tunnelSend(t *testing.T, gw *Gateway, name string) {
	t.Helper()
	buf := make([]byte, 2048)
	const off = 256
	inner := buf[off : off+28]
	inner[0], inner[3], inner[8], inner[9] = 0x45, 28, 64, 17 // IPv4, length 28, TTL 64, UDP
	copy(inner[12:16], []byte{10, 1, 0, 2})
	copy(inner[16:20], []byte{10, 2, 0, 2})
	inner[25] = 8 // UDP length
	p := []sa.Packet{{Buf: buf, Off: off, Len: 28, Tunnel: gw.tunnels[name]}}
	gw.proc.Worker(0).Outbound(p)
	if p[0].Verdict != sa.VerdictOK {
		t.Fatalf("outbound: %v %v", p[0].Verdict, p[0].Reason)
	}
}

// TestEngineConfigReassembly: outer reassembly is on by default (the
// engine then steers ESP fragments to the workers and reassembles them)
// and off with reassembly: false.
func TestEngineConfigReassembly(t *testing.T) {
	const key = "0x000102030405060708090a0b0c0d0e0f10111213"
	for _, c := range []struct {
		opt  string
		want bool
	}{{"{}", true}, {"{reassembly: true}", true}, {"{reassembly: false}", false}} {
		cfg, err := config.Parse("gw.yaml", []byte(`gateway: `+c.opt+`
interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:00:01", local: 192.0.2.1}
  plain: {name: lan0, next_hop: "02:00:00:00:00:02", address: 10.1.0.1}
protected: [10.2.0.0/24]
sas:
  - {name: to-b, direction: out, spi: 0x5000, local: 192.0.2.1, remote: 198.51.100.2, transform: aes128gcm16, key: `+key+`}
`))
		if err != nil {
			t.Fatal(err)
		}
		gw, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if got := gw.engineConfig().Reassembly != nil; got != c.want {
			t.Errorf("gateway %s: reassembly %v, want %v", c.opt, got, c.want)
		}
		gw.Close()
	}
}
