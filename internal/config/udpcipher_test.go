package config

import (
	"strings"
	"testing"
)

// TestCipherModeUDP: interfaces.cipher.mode udp parses (no next_hop
// needed), and the configuration errors it brings are reported with
// their line: not exactly one local address, a VLAN, an SA that is not
// ESP in UDP, an SA on another port or address, an unknown mode; mode
// xdp (the default) still needs next_hop.
func TestCipherModeUDP(t *testing.T) {
	sa := func(extra string) string {
		return "sas:\n  - {name: o, direction: out, spi: 0x100, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: 0x" +
			strings.Repeat("ab", 20) + extra + "}\n"
	}
	const tun = "  tun: {name: t, routes: [10.2.0.0/24]}\n"
	cfg, err := Parse("gw.yaml", []byte("interfaces:\n  cipher: {name: wan0, local: 192.0.2.1, mode: udp}\n"+tun+sa(", encap: udp")))
	if err != nil {
		t.Fatal(err)
	}
	if c := cfg.Gateway.Cipher; !c.UDP || len(c.Local) != 1 || c.NextHop != nil {
		t.Errorf("cipher %+v", c)
	}
	for _, c := range []struct{ name, yaml, want string }{
		{"two locals", "interfaces:\n  cipher: {name: wan0, local: [192.0.2.1, 192.0.2.9], mode: udp}\n" + tun + sa(", encap: udp"), "interfaces.cipher.local"},
		{"no local", "interfaces:\n  cipher: {name: wan0, mode: udp}\n" + tun + sa(", encap: udp"), "interfaces.cipher.local"},
		{"vlan", "interfaces:\n  cipher: {name: wan0, local: 192.0.2.1, mode: udp, vlan: 5}\n" + tun + sa(", encap: udp"), "interfaces.cipher.vlan"},
		{"bare ESP", "interfaces:\n  cipher: {name: wan0, local: 192.0.2.1, mode: udp}\n" + tun + sa(""), "sas[0].encap"},
		{"other port", "interfaces:\n  cipher: {name: wan0, local: 192.0.2.1, mode: udp}\n" + tun + sa(", encap: udp, local_port: 4501"), "sas[0].local_port"},
		{"other address", "interfaces:\n  cipher: {name: wan0, local: 192.0.2.7, mode: udp}\n" + tun + sa(", encap: udp"), "sas[0].local"},
		{"unknown mode", "interfaces:\n  cipher: {name: wan0, local: 192.0.2.1, mode: tcp}\n" + tun + sa(", encap: udp"), "interfaces.cipher.mode"},
		{"xdp needs next_hop", "interfaces:\n  cipher: {name: wan0, local: 192.0.2.1, mode: xdp}\n" + tun + sa(", encap: udp"), "interfaces.cipher.next_hop"},
	} {
		_, err := Parse("gw.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error about %s", c.name, err, c.want)
		}
	}
}
