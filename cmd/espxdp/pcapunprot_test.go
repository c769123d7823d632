package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// ipv4UDP builds an Ethernet/IPv4/UDP frame.
func ipv4UDP(t *testing.T, src, dst net.IP, sport, dport uint16) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src, DstIP: dst}
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, udp, gopacket.Payload("clear text")); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// TestPcapDecryptReportsUnprotected: in an ESP capture, clear text that
// the gateway configuration protects is reported as "unprotected, would
// be discarded", bypass-policy clear text as such, and neither is
// written; ESP is decrypted as before and other clear text stays a
// not-esp drop.
func TestPcapDecryptReportsUnprotected(t *testing.T) {
	dir := t.TempDir()
	key := randHex(t, 20)
	cfg := writeFile(t, dir, "gw.yaml", fmt.Sprintf(`interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:00:01"}
  plain: {name: lan0, next_hop: "02:00:00:00:00:02"}
protected: [10.2.0.0/24]
tunnels:
  - {name: peer, out: [a-to-b], in: [b-from-a]}
policies:
  - {name: dns, dst: 10.2.0.0/24, proto: udp, dst_ports: 53, action: bypass}
sas:
  - {name: a-to-b, direction: out, spi: 0x500, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: %[1]s}
  - {name: b-from-a, direction: in, spi: 0x500, local: 192.0.2.2, remote: 192.0.2.1, transform: aes128gcm16, key: %[1]s}
`, key))
	writePcap := func(name string, frames ...[]byte) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		w := pcapgo.NewWriter(f)
		if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
			t.Fatal(err)
		}
		for i, fr := range frames {
			ci := gopacket.CaptureInfo{Timestamp: time.Unix(1700000000+int64(i), 0), CaptureLength: len(fr), Length: len(fr)}
			if err := w.WritePacket(ci, fr); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	remote, lan, inet := net.IP{10, 2, 0, 5}, net.IP{10, 1, 0, 2}, net.IP{198, 18, 0, 1}
	// What the peer sends us through the tunnel: from its protected
	// network to ours (the inbound SA's traffic selectors, derived from
	// protected:, accept only that).
	plain := writePcap("plain.pcap", ipv4UDP(t, remote, lan, 1000, 2000))
	espPath := filepath.Join(dir, "esp.pcap")
	runJSON(t, "pcap", "encrypt", "--config", cfg, "--sa", "a-to-b", "--in", plain, "--out", espPath)
	enc, _ := readFrames(t, espPath)
	if len(enc) != 1 {
		t.Fatalf("%d ESP frames", len(enc))
	}
	mixed := writePcap("mixed.pcap",
		enc[0].data,
		ipv4UDP(t, remote, lan, 1000, 2000), // protected, in clear: discarded
		ipv4UDP(t, remote, lan, 53, 3000),   // bypass policy read inbound
		ipv4UDP(t, inet, lan, 1000, 2000),   // not protected: the processor's not-esp
		ipv4UDP(t, remote, lan, 1000, 2000),
	)
	r := runJSON(t, "pcap", "decrypt", "--config", cfg, "--in", mixed, "--out", filepath.Join(dir, "dec.pcap"))
	if got := r.counter("unprotected, would be discarded"); got != 2 {
		t.Errorf("unprotected, would be discarded = %d, want 2 (%+v)", got, r.Counters)
	}
	if got := r.counter("unprotected, bypass policy (not written)"); got != 1 {
		t.Errorf("bypass = %d, want 1", got)
	}
	if r.counter("packets read") != 5 || r.counter("packets written") != 1 {
		t.Errorf("counters %+v", r.Counters)
	}
	if s := r.sa("b-from-a"); s == nil || s.DecapsPkts != 1 {
		t.Errorf("SA b-from-a: %+v", s)
	}
}
