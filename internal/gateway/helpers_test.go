package gateway

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/sa"
)

// offlineYAML is a gateway configuration that New accepts without any
// interface existing (Start is never called on it).
const offlineYAML = `interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:0a:fe", local: 192.0.2.1}
  plain:  {name: lan0, next_hop: "02:00:00:00:01:02", address: 10.1.0.1}
protected: [10.2.0.0/24]
tunnels:
  - {name: peer, out: [a-to-b], in: [b-to-a]}
sas:
  - {name: a-to-b, direction: out, spi: 0x1001, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f10111213}
  - {name: b-to-a, direction: in, spi: 0x2001, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: 0x101112131415161718191a1b1c1d1e1f20212223}
`

// newYAMLGateway is New on the configuration y (never started), with a
// silent logger. The caller closes it (or, to model a crash, does not).
func newYAMLGateway(t *testing.T, y string) *Gateway {
	t.Helper()
	cfg, err := config.Parse("gw.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return gw
}

// yamlGateway is newYAMLGateway closed when the test ends.
func yamlGateway(t *testing.T, y string) *Gateway {
	t.Helper()
	gw := newYAMLGateway(t, y)
	t.Cleanup(func() { gw.Close() })
	return gw
}

// offlineGateway is yamlGateway on offlineYAML.
func offlineGateway(t *testing.T) *Gateway {
	t.Helper()
	return yamlGateway(t, offlineYAML)
}

// plainPacket is a minimal IPv4/UDP packet from src to dst in a buffer
// with the headroom and tailroom ESP needs, ready for Outbound or, after
// encryption by a peer, for Inbound.
func plainPacket(src, dst netip.Addr) sa.Packet {
	inner := udp4Packet(src, dst)
	buf := make([]byte, esp.MaxHeadroom+len(inner)+esp.MaxTailroom)
	copy(buf[esp.MaxHeadroom:], inner)
	return sa.Packet{Buf: buf, Off: esp.MaxHeadroom, Len: len(inner)}
}

func udp4Packet(src, dst netip.Addr) []byte {
	b := make([]byte, 28)
	b[0], b[8], b[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(b[2:], 28)
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[24:], 8)
	return b
}

// peerSender returns a function that seals one packet from the peer
// (10.2.0.2 → 10.1.0.2, outer 192.0.2.2 → 192.0.2.1) under offlineYAML's
// inbound SA b-to-a (SPI 0x2001, its key) with sequence number seq,
// runs it through gw's worker 0 and returns its drop reason.
func peerSender(t *testing.T) func(gw *Gateway, seq uint64) sa.DropReason {
	t.Helper()
	key := []byte{0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23}
	c, err := esp.New(esp.Config{Transform: esp.MustParseTransform("aes128gcm16"), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Wipe)
	scr := esp.NewScratch()
	return func(gw *Gateway, seq uint64) sa.DropReason {
		t.Helper()
		p := plainPacket(netip.MustParseAddr("10.2.0.2"), netip.MustParseAddr("10.1.0.2"))
		pkt, err := c.EncapTunnel(scr, p.Buf, p.Off, p.Len, 0x2001, seq,
			&esp.Outer{Src: netip.MustParseAddr("192.0.2.2"), Dst: netip.MustParseAddr("192.0.2.1")})
		if err != nil {
			t.Fatal(err)
		}
		ps := []sa.Packet{{Buf: p.Buf, Off: len(p.Buf) - cap(pkt), Len: len(pkt)}} // pkt starts at Buf[Off:]
		gw.Processor().Worker(0).Inbound(ps)
		return ps[0].Reason
	}
}
