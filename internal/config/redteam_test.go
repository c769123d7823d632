package config

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// TestRedTeamDefaultTunnelAcceptsOtherPeersSources breaks the inbound
// policy check (RFC 4301 §5.2: a decrypted packet is delivered only if
// its inner header matches the SA's selectors, the mirror of what the
// gateway sends into that SA): InboundSelectors gives the first tunnel
// (the processor's default route) every prefix in protected:, including
// those the policies send into another tunnel. With peer B on the first
// tunnel and peer C on the second, B's inbound SA delivers packets whose
// inner source is in C's network 10.3.0.0/24: B can spoof C's hosts to
// the LAN. Fix: the first tunnel gets only the protected prefixes that
// no policy binds to another tunnel (or that its own policies cover).
func TestRedTeamDefaultTunnelAcceptsOtherPeersSources(t *testing.T) {
	y := `interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:0a:fe", local: 192.0.2.1}
  plain:  {name: lan0, next_hop: "02:00:00:00:01:02", address: 10.1.0.1}
protected: [10.2.0.0/24, 10.3.0.0/24]
tunnels:
  - {name: to-B, out: [a-to-b], in: [b-to-a]}
  - {name: to-C, out: [a-to-c], in: [c-to-a]}
policies:
  - {name: b, src: 10.1.0.0/24, dst: 10.2.0.0/24, action: protect, tunnel: to-B}
  - {name: c, src: 10.1.0.0/24, dst: 10.3.0.0/24, action: protect, tunnel: to-C}
sas:
  - {name: a-to-b, direction: out, spi: 0x1001, local: 192.0.2.1, remote: 198.51.100.1, transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f10111213}
  - {name: b-to-a, direction: in, spi: 0x2001, local: 192.0.2.1, remote: 198.51.100.1, transform: aes128gcm16, key: 0x101112131415161718191a1b1c1d1e1f20212223}
  - {name: a-to-c, direction: out, spi: 0x1002, local: 192.0.2.1, remote: 198.51.100.2, transform: aes128gcm16, key: 0x202122232425262728292a2b2c2d2e2f30313233}
  - {name: c-to-a, direction: in, spi: 0x2002, local: 192.0.2.1, remote: 198.51.100.2, transform: aes128gcm16, key: 0x303132333435363738393a3b3c3d3e3f40414243}
`
	cfg, err := Parse("gw.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Wipe()
	g := cfg.Gateway
	pkt := func(src string) []byte {
		b := make([]byte, 28)
		b[0], b[8], b[9] = 0x45, 64, 17
		binary.BigEndian.PutUint16(b[2:], 28)
		s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr("10.1.0.2").As4()
		copy(b[12:], s[:])
		copy(b[16:], d[:])
		binary.BigEndian.PutUint16(b[24:], 8)
		return b
	}
	for _, c := range []struct{ sa, own, other string }{{"b-to-a", "10.2.0.5", "10.3.0.5"}, {"c-to-a", "10.3.0.5", "10.2.0.5"}} {
		in, _ := cfg.Lookup(c.sa)
		sels := g.SelectorsOf(in, g.TunnelOf(in.Name))
		match := func(src string) bool {
			for _, s := range sels {
				if s.Matches(pkt(src)) {
					return true
				}
			}
			return false
		}
		if !match(c.own) {
			t.Errorf("%s: refuses its own peer's source %s (selectors %v)", c.sa, c.own, sels)
		}
		if match(c.other) {
			t.Errorf("%s delivers inner source %s, the other peer's network (selectors %v)", c.sa, c.other, sels)
		}
	}
}

// TestRedTeamTwoOutboundSAsOneKey: the configuration accepts two
// outbound SAs with the same AEAD key material (here to two peers).
// Each starts its sequence counter at 1, and with a counter IV
// (aes-gcm: nonce = salt from the key ‖ sequence number) the first
// packet of each repeats the (key, nonce) pair - the invariant "under
// one key no sequence number is sent twice" cannot hold, and the
// gateway's per-(direction, SPI, key) state record does not see it.
// Fix: refuse (or at least refuse for counter-IV transforms) two SAs
// with the same transform and key material, in Parse and in
// Gateway.AddSAs/UpdateSA/Reload against the installed SAs (the SAD
// already keeps keyed fingerprints for SameKey).
func TestRedTeamTwoOutboundSAsOneKey(t *testing.T) {
	y := `sas:
  - {name: a-to-b, direction: out, spi: 0x1001, local: 192.0.2.1, remote: 198.51.100.1, transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f10111213}
  - {name: a-to-c, direction: out, spi: 0x1002, local: 192.0.2.1, remote: 198.51.100.2, transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f10111213}
`
	cfg, err := Parse("sas.yaml", []byte(y))
	if err == nil {
		cfg.Wipe()
		t.Fatal("two outbound aes-gcm SAs with the same key accepted: both send sequence number 1 under one key")
	}
}
