package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/espxdp/espxdp/sa"
)

// TestPcapDecryptSelectors: pcap decrypt applies an inbound SA's traffic
// selectors as espxdp run does: with remote_ts 10.0.0.0/24 the IPv4
// packets from 10.0.0.1 come back and the IPv6 ones from fd00::1 are
// dropped as policy; a gateway configuration's derived selectors apply
// too (protected: the IPv6 prefix only).
func TestPcapDecryptSelectors(t *testing.T) {
	dir := t.TempDir()
	key := randHex(t, 20)
	sas := func(inExtra string) string {
		return fmt.Sprintf(`sas:
  - {name: a-to-b, direction: out, spi: 0x500, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: %[1]s}
  - {name: b-from-a, direction: in, spi: 0x500, local: 192.0.2.2, remote: 192.0.2.1, transform: aes128gcm16, key: %[1]s%[2]s}
`, key, inExtra)
	}
	cfg := writeFile(t, dir, "sel.yaml", sas(", remote_ts: [10.0.0.0/24]"))
	gwCfg := writeFile(t, dir, "gw.yaml", `interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:0a:fe", local: 192.0.2.2}
  plain:  {name: lan0, next_hop: "02:00:00:00:01:02"}
protected: ["fd00::/64"]
tunnels:
  - {name: peer, out: [a-to-b], in: [b-from-a]}
`+sas(""))

	plainPath := filepath.Join(dir, "plain.pcap")
	var frames [][]byte
	for _, v6 := range []bool{false, true, false, true} {
		frames = append(frames, vlanFrame(t, v6, 64))
	}
	writeEthPcap(t, plainPath, frames)
	espPath := filepath.Join(dir, "esp.pcap")
	runJSON(t, "pcap", "encrypt", "--config", cfg, "--sa", "a-to-b", "--in", plainPath, "--out", espPath)
	for _, c := range []struct {
		cfg      string
		okFamily string
	}{{cfg, "IPv4"}, {gwCfg, "IPv6"}} {
		r := runJSON(t, "pcap", "decrypt", "--config", c.cfg, "--in", espPath, "--out", filepath.Join(dir, "dec.pcap"))
		s := r.sa("b-from-a")
		if s == nil || s.DecapsPkts != 2 || s.Drops[sa.DropPolicy.String()] != 2 {
			t.Errorf("%s: want the 2 %s packets back and 2 policy drops: %+v", filepath.Base(c.cfg), c.okFamily, s)
		}
	}
}

// writeEthPcap writes Ethernet frames to a pcap file.
func writeEthPcap(t *testing.T, path string, frames [][]byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgoWriter(t, f)
	for _, fr := range frames {
		w(fr)
	}
}

func pcapgoWriter(t *testing.T, f *os.File) func([]byte) {
	t.Helper()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	return func(b []byte) {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, 0), CaptureLength: len(b), Length: len(b)}
		if err := w.WritePacket(ci, b); err != nil {
			t.Fatal(err)
		}
	}
}
