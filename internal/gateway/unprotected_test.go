package gateway

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/espxdp/espxdp/bpf"
	"github.com/espxdp/espxdp/internal/config"
)

const unprotYAML = `interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:0a:fe"}
  plain:  {name: lan0, next_hop: "02:00:00:00:01:02"}
protected: [10.2.0.0/24, "fd00:2::/64"]
tunnels:
  - {name: to-B, out: [a-to-b], in: [b-to-a]}
  - {name: to-C, out: [a-to-c], in: [c-to-a]}
policies:
  - {name: web, src: 10.1.0.0/24, dst: 10.2.0.0/24, proto: tcp, dst_ports: 80-443, action: protect, tunnel: to-B}
  - {name: dns, dst: 10.2.0.53/32, proto: udp, dst_ports: 53, action: bypass}
  - {name: c, src: 10.1.0.0/24, dst: 10.3.0.0/16, action: protect, sa: a-to-c}
  - {name: junk, dst: 10.4.0.0/16, action: discard}
sas:
  - {name: a-to-b, direction: out, spi: 0x1001, local: 192.0.2.1, remote: 198.51.100.1, transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f10111213}
  - {name: b-to-a, direction: in, spi: 0x2001, local: 192.0.2.1, remote: 198.51.100.1, transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f10111213}
  - {name: a-to-c, direction: out, spi: 0x1002, local: 192.0.2.1, remote: 198.51.100.2, transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f10111299}
  - {name: c-to-a, direction: in, spi: 0x2002, local: 192.0.2.1, remote: 198.51.100.2, transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f10111213}
`

func parseGW(t *testing.T, y string) *config.Gateway {
	t.Helper()
	cfg, err := config.Parse("gw.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Gateway
}

func TestUnprotectedFromConfig(t *testing.T) {
	g := parseGW(t, unprotYAML)
	u, err := Unprotected(g)
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	pkt := func(src, dst string, proto uint8, sport, dport uint16) bpf.Packet {
		return bpf.Packet{Src: a(src), Dst: a(dst), Proto: proto, Ports: proto == 6 || proto == 17, SPort: sport, DPort: dport}
	}
	for _, c := range []struct {
		p      bpf.Packet
		want   bpf.UnprotectedVerdict
		tunnel string
	}{
		{pkt("10.2.0.5", "10.1.0.2", 17, 1, 2), bpf.Discard, "to-B"},           // protected prefix, default tunnel
		{pkt("fd00:2::5", "fd00:1::2", 6, 1, 2), bpf.Discard, "to-B"},          // IPv6 too
		{pkt("10.2.0.5", "10.1.0.2", 6, 443, 5000), bpf.Discard, "to-B"},       // web, read inbound
		{pkt("10.2.0.53", "10.1.0.2", 17, 53, 5000), bpf.Exempt, ""},           // dns bypass, read inbound
		{pkt("10.2.0.53", "10.1.0.2", 17, 5000, 53), bpf.Discard, "to-B"},      // ports not swapped: not the bypass
		{pkt("10.3.7.7", "10.1.0.2", 1, 0, 0), bpf.Discard, "to-C"},            // policy c, tunnel of its SA
		{pkt("10.3.7.7", "192.0.2.1", 1, 0, 0), bpf.NotProtected, ""},          // policy c covers 10.1.0.0/24 only
		{pkt("10.4.1.1", "10.1.0.2", 17, 1, 2), bpf.Discard, "-"},              // discard policy
		{pkt("198.18.0.1", "10.1.0.2", 17, 1, 2), bpf.NotProtected, ""},        // the Internet
		{pkt("198.51.100.1", "192.0.2.1", 17, 500, 500), bpf.NotProtected, ""}, // the peer
	} {
		v, idx := u.Classify(c.p)
		if v != c.want || (v == bpf.Discard && tunnelLabel(g, idx) != c.tunnel) {
			t.Errorf("%+v: %v tunnel %q, want %v %q", c.p, v, tunnelLabel(g, idx), c.want, c.tunnel)
		}
	}
}

func TestUnprotectedTooManyPolicies(t *testing.T) {
	var b strings.Builder
	b.WriteString(strings.SplitN(unprotYAML, "policies:", 2)[0] + "policies:\n")
	for i := range bpf.MaxUnprotectedRules + 1 {
		fmt.Fprintf(&b, "  - {name: p%d, dst: 10.9.%d.0/24, action: bypass}\n", i, i)
	}
	b.WriteString("sas:" + strings.SplitN(unprotYAML, "sas:", 2)[1])
	g := parseGW(t, b.String())
	if _, err := Unprotected(g); !errors.Is(err, ErrTooManyPolicies) {
		t.Errorf("%d policies: %v", len(g.Policies), err)
	}
}

// A reload that changes what is discarded needs a restart: the XDP
// program and the table would keep the old rules (a removed bypass would
// stay open).
func TestReloadRefusesUnprotectedChange(t *testing.T) {
	a := parseGW(t, unprotYAML)
	if why := restartNeeded(a, parseGW(t, unprotYAML)); why != "" {
		t.Errorf("same file: %s", why)
	}
	noBypass := strings.Replace(unprotYAML, "  - {name: dns, dst: 10.2.0.53/32, proto: udp, dst_ports: 53, action: bypass}\n", "", 1)
	if why := restartNeeded(a, parseGW(t, noBypass)); !strings.Contains(why, "clear text") {
		t.Errorf("bypass removed: %q", why)
	}
	off := strings.Replace(unprotYAML, "interfaces:", "gateway:\n  fail_closed: false\ninterfaces:", 1)
	if why := restartNeeded(a, parseGW(t, off)); why == "" {
		t.Error("fail_closed changed without a restart")
	}
}

func TestFailClosedRulesetNames(t *testing.T) {
	g := parseGW(t, strings.Replace(unprotYAML, "name: wan0", `name: "wan.0-x"`, 1))
	if got := FailClosedTable(g); got != "espxdp_wan_0_x" {
		t.Errorf("table %q", got)
	}
	s, err := FailClosedRuleset(g)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"table inet espxdp_wan_0_x\ndelete table inet espxdp_wan_0_x\ntable inet espxdp_wan_0_x {",
		`iifname "wan.0-x" jump from_remote`,
		"ip saddr 10.2.0.53/32 meta l4proto 17 th sport 53 accept",
		"ip daddr 10.2.0.53/32 meta l4proto 17 th dport 53 accept",
		"elements = { 10.2.0.0/24, 10.3.0.0/16, 10.4.0.0/16 }",
		"elements = { fd00:2::/64 }",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, s)
		}
	}
	if strings.Count(s, "delete table") != 1 || strings.Contains(s, "flush ruleset") {
		t.Errorf("the ruleset touches more than its table:\n%s", s)
	}
}
