package main

import (
	"bytes"
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

// vlanFrame builds Ethernet (VLAN 100) / IP / UDP frames with gopacket.
func vlanFrame(t *testing.T, v6 bool, payload int) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeDot1Q}
	udp := &layers.UDP{SrcPort: 1234, DstPort: 5678}
	var ip gopacket.SerializableLayer
	vlan := &layers.Dot1Q{VLANIdentifier: 100}
	if v6 {
		vlan.Type = layers.EthernetTypeIPv6
		l := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: net.ParseIP("fd00::1"), DstIP: net.ParseIP("fd00::2")}
		udp.SetNetworkLayerForChecksum(l)
		ip = l
	} else {
		vlan.Type = layers.EthernetTypeIPv4
		l := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}}
		udp.SetNetworkLayerForChecksum(l)
		ip = l
	}
	body := make([]byte, payload)
	for i := range body {
		body[i] = byte(i)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, vlan, ip, udp, gopacket.Payload(body)); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// TestRoundTripVLANPcapng runs our own encrypt and decrypt back to back
// on a pcapng of VLAN-tagged Ethernet frames (with Ethernet padding, a
// non-IP frame and a snaplen-truncated one), without scapy.
func TestRoundTripVLANPcapng(t *testing.T) {
	dir := t.TempDir()
	key := randHex(t, 20)
	cfg := writeFile(t, dir, "rt.yaml", fmt.Sprintf(`sas:
  - {name: a-to-b, direction: out, spi: 0x500, local: 192.0.2.1, remote: 192.0.2.2, encap: udp, transform: aes128gcm16, key: %[1]s}
  - {name: b-from-a, direction: in, spi: 0x500, local: 192.0.2.2, remote: 192.0.2.1, encap: udp, transform: aes128gcm16, key: %[1]s}
`, key))

	var want [][]byte
	var stamps []time.Time
	plainPath := filepath.Join(dir, "plain.pcapng")
	f, err := os.Create(plainPath)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pcapgo.NewNgWriter(f, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	put := func(frame []byte, capLen int, ts time.Time) {
		ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: capLen, Length: len(frame)}
		if err := w.WritePacket(ci, frame[:capLen]); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Unix(1700000000, 0)
	for i, size := range []int{0, 1, 100, 1000} {
		for _, v6 := range []bool{false, true} {
			// gopacket pads short frames to the Ethernet minimum, as a NIC
			// would; the padding is not part of the IP packet, must not be
			// encrypted and does not come back.
			fr := vlanFrame(t, v6, size)
			n, err := ipLen(fr[18:])
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 && !v6 && len(fr) == 18+n {
				t.Fatal("test frame without Ethernet padding")
			}
			ts := base.Add(time.Duration(len(want)) * time.Millisecond)
			want, stamps = append(want, fr[:18+n]), append(stamps, ts)
			put(fr, len(fr), ts)
		}
	}
	arp := append([]byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x06}, make([]byte, 28)...)
	put(arp, len(arp), base.Add(time.Second))
	big := vlanFrame(t, false, 200)
	put(big, 60, base.Add(2*time.Second)) // cut by the snaplen
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	espPath, decPath := filepath.Join(dir, "esp.pcap"), filepath.Join(dir, "dec.pcap")
	r := runJSON(t, "pcap", "encrypt", "--config", cfg, "--sa", "a-to-b", "--in", plainPath, "--out", espPath)
	if r.counter("packets read") != uint64(len(want)+2) || r.counter("packets written") != uint64(len(want)) ||
		r.counter("skipped (not IP)") != 1 || r.counter("skipped (truncated capture)") != 1 {
		t.Errorf("encrypt counters: %+v", r.Counters)
	}
	enc, _ := readFrames(t, espPath)
	for i, fr := range enc {
		// MACs and VLAN tag kept; EtherType now that of the outer IPv4.
		if !bytes.Equal(fr.data[:16], want[i][:16]) || fr.data[16] != 0x08 || fr.data[17] != 0x00 || fr.data[18]>>4 != 4 {
			t.Errorf("ESP frame %d link header % x", i, fr.data[:19])
		}
		if !fr.ts.Equal(stamps[i]) {
			t.Errorf("ESP frame %d timestamp %v, want %v", i, fr.ts, stamps[i])
		}
	}
	r = runJSON(t, "pcap", "decrypt", "--config", cfg, "--in", espPath, "--out", decPath)
	if s := r.sa("b-from-a"); s == nil || s.DecapsPkts != uint64(len(want)) || sumDrops(s.Drops) != 0 {
		t.Errorf("decrypt counters: %+v", s)
	}
	got, _ := readFrames(t, decPath)
	if len(got) != len(want) {
		t.Fatalf("%d frames back, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].data, want[i]) || !got[i].ts.Equal(stamps[i]) {
			t.Errorf("frame %d:\n got %x %v\nwant %x %v", i, got[i].data, got[i].ts, want[i], stamps[i])
		}
	}
}
