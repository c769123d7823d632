package config

import (
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/sa"
)

// TestGatewayVLAN: interfaces take an 802.1Q VLAN ID; out of range is
// an error naming the line and field.
func TestGatewayVLAN(t *testing.T) {
	sas := gwYAML[strings.Index(gwYAML, "sas:"):]
	cfg, err := Parse("gw.yaml", []byte("interfaces:\n  cipher: {name: a, next_hop: \"02:00:00:00:00:01\", vlan: 100}\n"+
		"  plain: {name: b, next_hop: \"02:00:00:00:00:02\", vlan: 0x0fe}\nprotected: [10.0.0.0/8]\n"+sas))
	if err != nil {
		t.Fatal(err)
	}
	if g := cfg.Gateway; g.Cipher.VLAN != 100 || g.Plain.VLAN != 254 {
		t.Errorf("VLANs: cipher %d plain %d, want 100 and 254", g.Cipher.VLAN, g.Plain.VLAN)
	}
	for _, v := range []string{"4095", "-1", "x"} {
		_, err := Parse("gw.yaml", []byte("interfaces:\n  cipher: {name: a, next_hop: \"02:00:00:00:00:01\", vlan: "+v+"}\n  tun: {name: t}\n"+sas))
		if err == nil || !strings.Contains(err.Error(), "gw.yaml:2: interfaces.cipher.vlan") {
			t.Errorf("vlan %s: %v", v, err)
		}
	}
}

// TestGatewayWireOptions: pmtu_age and fragmentation, their defaults and
// errors.
func TestGatewayWireOptions(t *testing.T) {
	sas := gwYAML[strings.Index(gwYAML, "sas:"):]
	ifs := "interfaces:\n  cipher: {name: a, next_hop: \"02:00:00:00:00:01\"}\n  tun: {name: t}\n"
	cfg, err := Parse("gw.yaml", []byte(ifs+sas))
	if err != nil {
		t.Fatal(err)
	}
	if g := cfg.Gateway; g.PMTUAge != DefaultPMTUAge || g.Fragmentation != "before-encryption" || !g.Reassembly {
		t.Errorf("defaults: pmtu_age %v, fragmentation %q, reassembly %v", g.PMTUAge, g.Fragmentation, g.Reassembly)
	}
	cfg, err = Parse("gw.yaml", []byte("gateway: {pmtu_age: 30s, fragmentation: off, reassembly: false}\n"+ifs+sas))
	if err != nil {
		t.Fatal(err)
	}
	if g := cfg.Gateway; g.PMTUAge != 30*time.Second || g.Fragmentation != "off" || g.Reassembly {
		t.Errorf("set: pmtu_age %v, fragmentation %q, reassembly %v", g.PMTUAge, g.Fragmentation, g.Reassembly)
	}
	for _, bad := range []string{"{pmtu_age: soon}", "{fragmentation: after-encryption}", "{reassembly: maybe}"} {
		if _, err := Parse("gw.yaml", []byte("gateway: "+bad+"\n"+ifs+sas)); err == nil || !strings.Contains(err.Error(), "gw.yaml:1: gateway.") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

// TestGatewayConcurrencyModes: every concurrency mode of the sa package
// can be chosen in the configuration, Ordered included; others are
// refused with the line.
func TestGatewayConcurrencyModes(t *testing.T) {
	sas := gwYAML[strings.Index(gwYAML, "sas:"):]
	ifs := "interfaces:\n  cipher: {name: a, next_hop: \"02:00:00:00:00:01\"}\n  tun: {name: t}\n"
	for name, want := range map[string]sa.Concurrency{"shared": sa.Shared, "sharded": sa.Sharded, "percpu": sa.PerCPU, "per-cpu": sa.PerCPU, "ordered": sa.Ordered} {
		cfg, err := Parse("gw.yaml", []byte("gateway: {concurrency: "+name+"}\n"+ifs+sas))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if cfg.Gateway.Concurrency != want {
			t.Errorf("%s: %v, want %v", name, cfg.Gateway.Concurrency, want)
		}
	}
	if _, err := Parse("gw.yaml", []byte("gateway: {concurrency: chaotic}\n"+ifs+sas)); err == nil || !strings.Contains(err.Error(), "gw.yaml:1: gateway.concurrency") {
		t.Errorf("unknown mode: %v", err)
	}
}
