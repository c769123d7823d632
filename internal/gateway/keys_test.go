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
  - {name: to-c, direction: out, spi: 0x5000, local: 192.0.2.1, remote: 203.0.113.3, transform: aes128gcm16, key: ` + key + `}
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
	// Reload unchanged: both stay.
	res, err := gw.Reload(cfg)
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
