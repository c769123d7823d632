//go:build linux

package harness

import (
	"net/netip"
	"testing"
)

func TestIPv4UDP(t *testing.T) {
	src, dst := netip.MustParseAddr("10.7.0.1"), netip.MustParseAddr("10.9.0.1")
	p := ipv4UDP(src, dst, 5000, 9, 64)
	if len(p) != 64 || p[0] != 0x45 || p[9] != 17 || int(p[2])<<8|int(p[3]) != 64 || int(p[24])<<8|int(p[25]) != 44 {
		t.Fatalf("% x", p)
	}
	if sum16(p[:20]) != 0xffff {
		t.Errorf("IPv4 header checksum does not verify: %#x", sum16(p[:20]))
	}
	if netip.AddrFrom4([4]byte(p[12:16])) != src || netip.AddrFrom4([4]byte(p[16:20])) != dst {
		t.Errorf("addresses % x", p[12:20])
	}
	// innerSizes cycles the IMIX over the templates, every size in its share.
	count := map[int]int{}
	for _, n := range innerSizes(0) {
		count[n]++
	}
	if count[64] != 28 || count[576] != 16 || count[1420] != 4 || len(count) != 3 {
		t.Errorf("IMIX over %d templates: %v", e2eTemplates, count)
	}
	for _, n := range innerSizes(512) {
		if n != 512 {
			t.Fatalf("fixed size 512: got %d", n)
		}
	}
}
