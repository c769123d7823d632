package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// writeRawPcap writes IP packets into a LINKTYPE_RAW pcap, 1 ms apart.
func writeRawPcap(t *testing.T, path string, pkts [][]byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(snapLen, layers.LinkTypeRaw); err != nil {
		t.Fatal(err)
	}
	base := time.Unix(1700000000, 0)
	for i, p := range pkts {
		ci := gopacket.CaptureInfo{Timestamp: base.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(p), Length: len(p)}
		if err := w.WritePacket(ci, p); err != nil {
			t.Fatal(err)
		}
	}
}

// udpPacket builds an IPv4 or IPv6 UDP packet with n payload bytes.
func udpPacket(t *testing.T, v6 bool, n, seed int) []byte {
	t.Helper()
	udp := &layers.UDP{SrcPort: layers.UDPPort(1000 + seed), DstPort: 9}
	var ip gopacket.SerializableLayer
	if v6 {
		l := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: net.ParseIP("fd00::1"), DstIP: net.ParseIP("fd00::2")}
		udp.SetNetworkLayerForChecksum(l)
		ip = l
	} else {
		l := &layers.IPv4{Version: 4, TTL: 64, Id: uint16(seed), Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}}
		udp.SetNetworkLayerForChecksum(l)
		ip = l
	}
	body := make([]byte, n)
	for i := range body {
		body[i] = byte(i*7 + seed)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, udp, gopacket.Payload(body)); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(buf.Bytes())
}

// TestPcapDecryptFragments: ESP packets made by our own pcap encrypt
// (IPv4, IPv4 NAT-T and IPv6 outer, IPv4 and IPv6 inner), fragmented on
// the outer path by scapy (fragment, fragment6; IPv6 also behind a
// hop-by-hop header) and sent in order, reversed, shuffled, with a
// duplicate fragment and interleaved with another packet, all come back
// from pcap decrypt; hostile sets (an overlap in each family, a tiny
// first NAT-T fragment, an IPv4 fragment beyond 65535 bytes) are dropped
// and counted by reason in the summary.
func TestPcapDecryptFragments(t *testing.T) {
	requireScapy(t)
	dir := t.TempDir()
	key := randHex(t, 36)
	cfg := writeFile(t, dir, "frag.yaml", fmt.Sprintf(`sas:
  - {name: esp4-out, direction: out, spi: 0x601, local: 192.0.2.1, remote: 192.0.2.2, transform: aes256gcm16, key: %[1]s, path_mtu: 65535}
  - {name: esp4-in, direction: in, spi: 0x601, local: 192.0.2.2, remote: 192.0.2.1, transform: aes256gcm16, key: %[1]s}
  - {name: natt4-out, direction: out, spi: 0x602, local: 192.0.2.1, remote: 192.0.2.2, encap: udp, transform: aes256gcm16, key: %[2]s, path_mtu: 65535}
  - {name: natt4-in, direction: in, spi: 0x602, local: 192.0.2.2, remote: 192.0.2.1, encap: udp, transform: aes256gcm16, key: %[2]s}
  - {name: esp6-out, direction: out, spi: 0x603, local: 2001:db8::1, remote: 2001:db8::2, transform: aes256gcm16, key: %[3]s, path_mtu: 65535}
  - {name: esp6-in, direction: in, spi: 0x603, local: 2001:db8::2, remote: 2001:db8::1, transform: aes256gcm16, key: %[3]s}
`, key, randHex(t, 36), randHex(t, 36))) // one key per outbound SA
	type family struct {
		sa    string
		size  int      // fragment size for scapy
		modes []string // one packet each
	}
	good := []string{"inorder", "reverse", "shuffle", "dup", "mix", "shuffle"}
	fams := []family{
		{"esp4", 1000, append(good, "overlap", "toobig")},
		{"natt4", 1200, append(good, "overlap", "tiny")},
		{"esp6", 1280, append(good, "overlap")},
	}
	var want [][]byte // plaintext of the packets that must come back
	var specs []map[string]any
	for fi, f := range fams {
		var plain [][]byte
		for i, mode := range f.modes {
			p := udpPacket(t, i%2 == 1, 2500+333*i, 16*fi+i)
			plain = append(plain, p)
			if mode != "overlap" && mode != "tiny" && mode != "toobig" {
				want = append(want, p)
			}
		}
		plainPath, espPath := filepath.Join(dir, f.sa+"-plain.pcap"), filepath.Join(dir, f.sa+"-esp.pcap")
		writeRawPcap(t, plainPath, plain)
		r := runJSON(t, "pcap", "encrypt", "--config", cfg, "--sa", f.sa+"-out", "--in", plainPath, "--out", espPath)
		if r.counter("packets written") != uint64(len(plain)) {
			t.Fatalf("%s: encrypt counters %+v", f.sa, r.Counters)
		}
		for i, mode := range f.modes {
			specs = append(specs, map[string]any{"in": espPath, "index": i, "size": f.size, "how": mode, "hbh": i%2 == 0})
		}
	}

	fragPath, decPath := filepath.Join(dir, "frag.pcap"), filepath.Join(dir, "dec.pcap")
	job, _ := json.Marshal(map[string]any{"out": fragPath, "seed": 15, "packets": specs})
	jobPath := writeFile(t, dir, "frag.json", string(job))
	out, err := exec.Command(scapyPython, filepath.Join("testdata", "scapy_fragment.py"), jobPath).CombinedOutput()
	if err != nil {
		t.Fatalf("scapy_fragment.py: %v\n%s", err, out)
	}
	var res struct{ Fragments uint64 }
	if err := json.Unmarshal(out, &res); err != nil || res.Fragments < 3*uint64(len(specs)) {
		t.Fatalf("scapy_fragment.py: %v %s", err, out)
	}

	r := runJSON(t, "pcap", "decrypt", "--config", cfg, "--in", fragPath, "--out", decPath)
	for _, f := range fams {
		if s := r.sa(f.sa + "-in"); s == nil || s.DecapsPkts != uint64(len(good)) || sumDrops(s.Drops) != 0 {
			t.Errorf("%s: %+v", f.sa, s)
		}
	}
	if d := nonZero(r.Unowned); len(d) != 0 {
		t.Errorf("processor drops %v", d)
	}
	for name, v := range map[string]uint64{
		"packets read":                          res.Fragments,
		"outer fragments":                       res.Fragments,
		"reassembled packets":                   uint64(len(want)),
		"packets written":                       uint64(len(want)),
		"fragments: duplicates (ignored)":       3,
		"fragment drops: overlap (set dropped)": 3,
		"fragment drops: tiny first fragment":   1,
		"fragment drops: too big (set dropped)": 1,
		"fragment drops: malformed":             0,
		"fragment sets evicted":                 0,
	} {
		if got := r.counter(name); got != v {
			t.Errorf("%q = %d, want %d", name, got, v)
		}
	}
	if r.counter("fragments incomplete at end of capture") == 0 {
		t.Error("the rest of the hostile sets should be pending")
	}
	got, _ := readFrames(t, decPath)
	if len(got) != len(want) {
		t.Fatalf("%d packets decrypted, want %d", len(got), len(want))
	}
	sortBytes := func(ps [][]byte) {
		sort.Slice(ps, func(i, j int) bool { return bytes.Compare(ps[i], ps[j]) < 0 })
	}
	gotData := make([][]byte, len(got))
	for i, f := range got {
		gotData[i] = f.data
	}
	sortBytes(gotData)
	sortBytes(want)
	for i := range want {
		if !bytes.Equal(gotData[i], want[i]) {
			t.Fatalf("decrypted packets differ from the plaintext (sorted, #%d):\n got %x\nwant %x", i, gotData[i], want[i])
		}
	}
}
