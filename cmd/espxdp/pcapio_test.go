package main

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// ipv4Packet returns a minimal IPv4 header + n payload bytes.
func ipv4Packet(n int) []byte {
	b := make([]byte, 20+n)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	b[8], b[9] = 64, 17
	return b
}

func ether(et uint16, tags []uint16, payload []byte) []byte {
	b := []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	for _, tag := range tags {
		b = binary.BigEndian.AppendUint16(b, tag)
		b = binary.BigEndian.AppendUint16(b, 100)
	}
	b = binary.BigEndian.AppendUint16(b, et)
	return append(b, payload...)
}

func TestLinkHeaderLen(t *testing.T) {
	ip4 := ipv4Packet(8)
	ip6 := make([]byte, 40)
	ip6[0] = 0x60
	sll := make([]byte, 16)
	binary.BigEndian.PutUint16(sll[14:], etherTypeIPv6)
	tests := []struct {
		name  string
		lt    layers.LinkType
		frame []byte
		n     int
		err   error
	}{
		{"raw v4", layers.LinkTypeRaw, ip4, 0, nil},
		{"raw v6", layers.LinkTypeRaw, ip6, 0, nil},
		{"DLT_RAW 12", linkTypeDLTRaw, ip4, 0, nil},
		{"raw garbage", layers.LinkTypeRaw, []byte{0x20, 0}, 0, errNotIP},
		{"raw empty", layers.LinkTypeIPv4, nil, 0, nil}, // nil frame: only the link type is checked
		{"raw zero length", layers.LinkTypeIPv4, []byte{}, 0, errNotIP},
		{"ether v4", layers.LinkTypeEthernet, ether(etherTypeIPv4, nil, ip4), 14, nil},
		{"ether v6", layers.LinkTypeEthernet, ether(etherTypeIPv6, nil, ip6), 14, nil},
		{"ether vlan", layers.LinkTypeEthernet, ether(etherTypeIPv4, []uint16{etherTypeVLAN}, ip4), 18, nil},
		{"ether qinq", layers.LinkTypeEthernet, ether(etherTypeIPv6, []uint16{etherTypeQinQ, etherTypeVLAN}, ip6), 22, nil},
		{"ether arp", layers.LinkTypeEthernet, ether(0x0806, nil, make([]byte, 28)), 14, errNotIP},
		{"ether says v4 holds v6", layers.LinkTypeEthernet, ether(etherTypeIPv4, nil, ip6), 14, errNotIP},
		{"ether short", layers.LinkTypeEthernet, []byte{1, 2, 3}, 0, errShortFrame},
		{"ether vlan short", layers.LinkTypeEthernet, ether(etherTypeVLAN, nil, nil), 0, errShortFrame},
		{"sll v6", layers.LinkTypeLinuxSLL, append(sll, ip6...), 16, nil},
		{"sll short", layers.LinkTypeLinuxSLL, sll[:10], 0, errShortFrame},
		{"ppp", layers.LinkTypePPP, ip4, 0, errUnsupportedLnk},
	}
	for _, tc := range tests {
		n, err := linkHeaderLen(tc.lt, tc.frame)
		if !errors.Is(err, tc.err) || (err == nil && n != tc.n) {
			t.Errorf("%s: got %d, %v; want %d, %v", tc.name, n, err, tc.n, tc.err)
		}
	}
}

func TestSetLinkProto(t *testing.T) {
	f := ether(etherTypeIPv4, []uint16{etherTypeVLAN}, nil)
	setLinkProto(layers.LinkTypeEthernet, f, 6)
	if et := binary.BigEndian.Uint16(f[16:]); et != etherTypeIPv6 {
		t.Errorf("EtherType after VLAN tag = %#x, want IPv6", et)
	}
	if tag := binary.BigEndian.Uint16(f[12:]); tag != etherTypeVLAN {
		t.Errorf("VLAN tag overwritten: %#x", tag)
	}
	if f[0] != 1 || f[11] != 12 {
		t.Error("MAC addresses changed")
	}
	sll := make([]byte, 16)
	setLinkProto(layers.LinkTypeLinuxSLL, sll, 4)
	if binary.BigEndian.Uint16(sll[14:]) != etherTypeIPv4 {
		t.Error("SLL protocol not set")
	}
}

func TestIPLen(t *testing.T) {
	p := append(ipv4Packet(10), 0, 0, 0, 0) // Ethernet padding
	if n, err := ipLen(p); err != nil || n != 30 {
		t.Errorf("ipLen = %d, %v; want 30", n, err)
	}
	binary.BigEndian.PutUint16(p[2:], 100)
	if _, err := ipLen(p); !errors.Is(err, errMalformedIP) {
		t.Errorf("length beyond the frame: %v", err)
	}
	if _, err := ipLen([]byte{0x45}); !errors.Is(err, errMalformedIP) {
		t.Errorf("short: %v", err)
	}
}

func TestOpenPcapFormats(t *testing.T) {
	dir := t.TempDir()
	ts := time.Unix(1700000000, 123456789)
	pkt := ether(etherTypeIPv4, nil, ipv4Packet(4))

	// pcapng with nanosecond timestamps.
	ngPath := filepath.Join(dir, "a.pcapng")
	f, err := os.Create(ngPath)
	if err != nil {
		t.Fatal(err)
	}
	ng, err := pcapgo.NewNgWriter(f, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(pkt), Length: len(pkt)}
	if err := ng.WritePacket(ci, pkt); err != nil {
		t.Fatal(err)
	}
	// A packet cut short by the snaplen.
	short := ci
	short.CaptureLength, short.Length = 20, len(pkt)
	if err := ng.WritePacket(short, pkt[:20]); err != nil {
		t.Fatal(err)
	}
	ng.Flush()
	f.Close()

	in, err := openPcap(ngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if in.lt != layers.LinkTypeEthernet {
		t.Errorf("link type %v", in.lt)
	}
	data, got, err := in.next()
	if err != nil || string(data) != string(pkt) || !got.Timestamp.Equal(ts) {
		t.Errorf("pcapng packet: %v, ts %v, data equal %v", err, got.Timestamp, string(data) == string(pkt))
	}
	if _, _, err := in.next(); !errors.Is(err, errTruncatedCapt) {
		t.Errorf("snaplen-truncated packet: %v", err)
	}
	if _, _, err := in.next(); !isEOF(err) {
		t.Errorf("end: %v", err)
	}

	// Round trip through the classic pcap writer.
	outPath := filepath.Join(dir, "b.pcap")
	out, err := createPcap(outPath, layers.LinkTypeEthernet, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := out.write(ci, pkt); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	in2, err := openPcap(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer in2.Close()
	data, got, err = in2.next()
	if err != nil || string(data) != string(pkt) || !got.Timestamp.Equal(ts) || !in2.nanos {
		t.Errorf("pcap round trip: %v, ts %v (nanos %v)", err, got.Timestamp, in2.nanos)
	}

	// Microsecond pcap.
	usPath := filepath.Join(dir, "us.pcap")
	us, err := createPcap(usPath, layers.LinkTypeRaw, false)
	if err != nil {
		t.Fatal(err)
	}
	us.Close()
	in3, err := openPcap(usPath)
	if err != nil {
		t.Fatal(err)
	}
	in3.Close()
	if in3.nanos || in.nanos == false {
		t.Errorf("resolution: microsecond pcap says nanos=%v, nanosecond pcapng says %v", in3.nanos, in.nanos)
	}

	// Not a capture, and an unsupported link type.
	junk := writeFile(t, dir, "junk.pcap", "this is not a pcap file at all")
	if _, err := openPcap(junk); err == nil {
		t.Error("junk accepted")
	}
	pppPath := filepath.Join(dir, "ppp.pcap")
	o, err := createPcap(pppPath, layers.LinkTypePPP, false)
	if err != nil {
		t.Fatal(err)
	}
	o.Close()
	if _, err := openPcap(pppPath); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("PPP link type: %v", err)
	}
}

func TestOutputLinkType(t *testing.T) {
	for in, want := range map[layers.LinkType]layers.LinkType{
		layers.LinkTypeEthernet: layers.LinkTypeEthernet,
		layers.LinkTypeRaw:      layers.LinkTypeRaw,
		layers.LinkTypeIPv4:     layers.LinkTypeRaw,
		layers.LinkTypeIPv6:     layers.LinkTypeRaw,
		linkTypeDLTRaw:          linkTypeDLTRaw,
	} {
		if got := outputLinkType(in); got != want {
			t.Errorf("outputLinkType(%v) = %v, want %v", in, got, want)
		}
	}
}
