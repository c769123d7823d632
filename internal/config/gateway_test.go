package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/sa"
)

const gwYAML = `gateway:
  control: /run/espxdp/a.sock
  queues: 2
  concurrency: percpu
  mss_clamp: 1360
  decrement_ttl: true
  icmp_errors: yes
  keepalive: 5s
interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:0a:fe", local: 192.0.2.1}
  plain:  {name: lan0, next_hop: "02:00:00:00:01:02", address: 10.1.0.1}
protected: [10.2.0.0/24, "2001:db8:2::/48"]
tunnels:
  - {name: to-B, out: [a-to-b], in: [b-to-a]}
policies:
  - {name: web, src: 10.1.0.0/24, dst: 10.2.0.0/24, proto: tcp, dst_ports: 80-443, action: protect, tunnel: to-B}
  - {name: dns, dst: 10.2.0.53/32, proto: udp, dst_ports: 53, action: bypass}
  - {name: rest, dst: 10.2.0.0/24, action: protect, sa: a-to-b}
sas:
  - {name: a-to-b, direction: out, spi: 0x1001, local: 192.0.2.1, remote: 198.51.100.1, transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f10111213}
  - {name: b-to-a, direction: in, spi: 0x2001, local: 192.0.2.1, remote: 198.51.100.1, transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f10111213}
`

func TestGatewaySections(t *testing.T) {
	cfg, err := Parse("gw.yaml", []byte(gwYAML))
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Gateway
	if g == nil {
		t.Fatal("no gateway section")
	}
	if g.Control != "/run/espxdp/a.sock" || g.Queues != 2 || g.Concurrency != sa.PerCPU || g.MSSClamp != 1360 ||
		!g.DecrementTTL || !g.ICMPErrors || g.Keepalive != 5*time.Second || g.LogDrops != DefaultLogDrops {
		t.Errorf("options: %+v", g)
	}
	if g.Cipher.Name != "wan0" || g.Cipher.NextHop.String() != "02:00:00:00:0a:fe" || len(g.Cipher.Local) != 1 ||
		g.Cipher.Local[0] != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("cipher: %+v", g.Cipher)
	}
	if g.Plain == nil || g.Plain.Address != netip.MustParseAddr("10.1.0.1") || g.TUN != nil {
		t.Errorf("plain: %+v tun %+v", g.Plain, g.TUN)
	}
	if len(g.Protected) != 2 || g.Protected[1] != netip.MustParsePrefix("2001:db8:2::/48") {
		t.Errorf("protected: %v", g.Protected)
	}
	if len(g.Tunnels) != 1 || g.Tunnels[0].Out[0] != "a-to-b" || g.Tunnels[0].In[0] != "b-to-a" {
		t.Errorf("tunnels: %+v", g.Tunnels)
	}
	if len(g.Policies) != 3 {
		t.Fatalf("policies: %+v", g.Policies)
	}
	web := g.Policies[0]
	if web.Selector.Proto != 6 || web.Selector.DstPorts != (sa.PortRange{Lo: 80, Hi: 443}) || web.Action != sa.Protect || web.Tunnel != "to-B" {
		t.Errorf("web policy: %+v", web)
	}
	if dns := g.Policies[1]; dns.Action != sa.Bypass || dns.Selector.DstPorts != (sa.PortRange{Lo: 53, Hi: 53}) {
		t.Errorf("dns policy: %+v", dns)
	}
	if g.Policies[2].SA != "a-to-b" {
		t.Errorf("rest policy: %+v", g.Policies[2])
	}

	// Without gateway sections the file is SAs only.
	plain, err := Parse("sas.yaml", []byte(gwYAML[strings.Index(gwYAML, "sas:"):]))
	if err != nil || plain.Gateway != nil {
		t.Errorf("sas-only file: gateway %+v, err %v", plain.Gateway, err)
	}
}

func TestGatewayTUNAndEmptySAs(t *testing.T) {
	cfg, err := Parse("tun.yaml", []byte(`interfaces:
  cipher: {name: eth0, next_hop: "02:00:00:00:00:01"}
  tun: {name: vti0, address: 169.254.0.1/30, mtu: 1400, routes: [10.2.0.0/16]}
sas: []
`))
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Gateway
	if g.TUN == nil || g.TUN.Name != "vti0" || g.TUN.MTU != 1400 || g.TUN.Address != netip.MustParsePrefix("169.254.0.1/30") ||
		len(g.TUN.Routes) != 1 || g.Plain != nil || g.Queues != 1 || g.Keepalive != DefaultKeepalive {
		t.Errorf("tun gateway: %+v %+v", g, g.TUN)
	}
}

func TestGatewayErrors(t *testing.T) {
	sas := gwYAML[strings.Index(gwYAML, "sas:"):]
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"no interfaces", "gateway: {queues: 1}\n" + sas, "gw.yaml:1: interfaces: missing"},
		{"bad mac", "interfaces:\n  cipher: {name: a, next_hop: zz}\n  tun: {name: t}\n" + sas, "gw.yaml:2: interfaces.cipher.next_hop: want a 6-byte MAC"},
		{"plain and tun", "interfaces:\n  cipher: {name: a, next_hop: \"02:00:00:00:00:01\"}\n  tun: {name: t}\n  plain: {name: b, next_hop: \"02:00:00:00:00:02\"}\nprotected: [10.0.0.0/8]\n" + sas, "plain and tun are alternatives"},
		{"plain without protected", "interfaces:\n  cipher: {name: a, next_hop: \"02:00:00:00:00:01\"}\n  plain: {name: b, next_hop: \"02:00:00:00:00:02\"}\n" + sas, "protected: missing"},
		{"host bits", "interfaces:\n  cipher: {name: a, next_hop: \"02:00:00:00:00:01\"}\n  plain: {name: b, next_hop: \"02:00:00:00:00:02\"}\nprotected: [10.1.2.3/8]\n" + sas, "gw.yaml:4: protected[0]: 10.1.2.3/8 has host bits set"},
		{"unknown SA in tunnel", "interfaces:\n  cipher: {name: a, next_hop: \"02:00:00:00:00:01\"}\n  tun: {name: t}\ntunnels:\n  - {name: x, out: [nope]}\n" + sas, "gw.yaml:5: tunnels[0].out: no SA named \"nope\""},
		{"wrong direction", "interfaces:\n  cipher: {name: a, next_hop: \"02:00:00:00:00:01\"}\n  tun: {name: t}\ntunnels:\n  - {name: x, out: [b-to-a]}\n" + sas, "SA \"b-to-a\" is in, want out"},
		{"bad ports", "interfaces:\n  cipher: {name: a, next_hop: \"02:00:00:00:00:01\"}\n  tun: {name: t}\npolicies:\n  - {name: p, dst_ports: 90-80, proto: tcp, action: bypass}\n" + sas, "gw.yaml:5: policies[0].dst_ports: want a port or a range"},
		{"ports without proto", "interfaces:\n  cipher: {name: a, next_hop: \"02:00:00:00:00:01\"}\n  tun: {name: t}\npolicies:\n  - {name: p, dst_ports: 80, action: bypass}\n" + sas, "ports need proto"},
		{"unknown option", "gateway: {turbo: true}\ninterfaces:\n  cipher: {name: a, next_hop: \"02:00:00:00:00:01\"}\n  tun: {name: t}\n" + sas, "gw.yaml:1: gateway.turbo: unknown field"},
		{"mss range", "gateway: {mss_clamp: 100}\ninterfaces:\n  cipher: {name: a, next_hop: \"02:00:00:00:00:01\"}\n  tun: {name: t}\n" + sas, "gateway.mss_clamp: want 0 (off) or 536..65495"},
		{"icmp without address", "gateway: {icmp_errors: true}\ninterfaces:\n  cipher: {name: a, next_hop: \"02:00:00:00:00:01\"}\n  plain: {name: b, next_hop: \"02:00:00:00:00:02\"}\nprotected: [10.0.0.0/8]\n" + sas, "gw.yaml:4: interfaces.plain.address: missing"},
		{"inbound SA in policy", "interfaces:\n  cipher: {name: a, next_hop: \"02:00:00:00:00:01\"}\n  tun: {name: t}\npolicies:\n  - {name: p, action: protect, sa: b-to-a}\n" + sas, "a policy needs an outbound SA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("gw.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestGatewayFailClosed(t *testing.T) {
	cfg, err := Parse("gw.yaml", []byte(gwYAML))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Gateway.FailClosed {
		t.Error("fail_closed is not on by default")
	}
	off := strings.Replace(gwYAML, "  keepalive: 5s\n", "  keepalive: 5s\n  fail_closed: false\n", 1)
	cfg, err = Parse("gw.yaml", []byte(off))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Gateway.FailClosed {
		t.Error("fail_closed: false not taken")
	}
	bad := strings.Replace(gwYAML, "  keepalive: 5s\n", "  keepalive: 5s\n  fail_closed: maybe\n", 1)
	if _, err := Parse("gw.yaml", []byte(bad)); err == nil || !strings.Contains(err.Error(), "fail_closed") {
		t.Errorf("fail_closed: maybe: %v", err)
	}
}
