package config

import (
	"strings"
	"testing"
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
