//go:build linux

package harness

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/xdp"
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

// TestChainLayout: the jumbo rows' frames laid out as descriptor
// chains. Every chain's descriptors, read back in order, are exactly
// its template's frame; each but the last has XDP_PKT_CONTD; each part
// fits its frame's room; shorter templates take fewer descriptors; the
// inner sizes follow the templates; and a frame needing more
// descriptors than the kernel takes is refused.
func TestChainLayout(t *testing.T) {
	n := &e2eNet{gwA: &topo.Link{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}, genEth: &topo.Link{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}}}
	const room = 4096 - 256
	for _, c := range []struct {
		name    string
		frames  []frame
		k       int
		nframes int
	}{
		{"jumbo", n.plainFrames(E2EDefaultJumbo), 3, chainFrames},
		{"largest jumbo", n.plainFrames(E2EMaxJumbo), 3, chainFrames},
		{"mixed", append(n.plainFrames(1420)[:2], n.plainFrames(E2EDefaultJumbo)[:3]...), 3, 30},
		{"one frame", n.plainFrames(1000), 1, 7},
	} {
		l, err := newChainLayout(c.frames, c.nframes, room)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if l.k != c.k || l.chains != c.nframes/c.k {
			t.Errorf("%s: %d chains of %d frames, want %d of %d", c.name, l.chains, l.k, c.nframes/c.k, c.k)
		}
		mem := make([]byte, c.nframes*room)
		l.write(c.frames, func(i int) []byte { return mem[i*room : (i+1)*room] })
		ds := make([]xdp.Desc, l.k)
		for ch := range l.chains {
			f := c.frames[ch%len(c.frames)]
			m := l.descs(ch, ds, func(i int) uint64 { return uint64(i * room) })
			var got []byte
			for j, d := range ds[:m] {
				if d.Len == 0 || d.Len > room {
					t.Fatalf("%s: chain %d part %d: %d bytes", c.name, ch, j, d.Len)
				}
				if last := j == m-1; (d.Options == unix.XDP_PKT_CONTD) == last || (d.Options != 0 && d.Options != unix.XDP_PKT_CONTD) {
					t.Errorf("%s: chain %d part %d of %d: options %#x", c.name, ch, j, m, d.Options)
				}
				got = append(got, mem[d.Addr:d.Addr+uint64(d.Len)]...)
			}
			if !bytes.Equal(got, f.wire) {
				t.Fatalf("%s: chain %d reads back %d bytes, not its %d-byte frame", c.name, ch, len(got), len(f.wire))
			}
			if want := (len(f.wire) + room - 1) / room; m != want {
				t.Errorf("%s: chain %d: %d descriptors for %d bytes, want %d", c.name, ch, m, len(f.wire), want)
			}
			if int(l.inner[ch]) != f.inner {
				t.Errorf("%s: chain %d: inner %d, want %d", c.name, ch, l.inner[ch], f.inner)
			}
		}
	}
	huge := []frame{{wire: make([]byte, (maxChainFrames+1)*100), inner: 1}}
	if _, err := newChainLayout(huge, 1000, 100); err == nil {
		t.Error("a frame of 19 descriptors was laid out")
	}
	if _, err := newChainLayout(nil, 1000, 100); err == nil {
		t.Error("no frames were laid out")
	}
	if _, err := newChainLayout(n.plainFrames(E2EDefaultJumbo), 2, room); err == nil {
		t.Error("a 3-frame chain was laid out in 2 frames")
	}
}

// TestE2EJumboSteps: with E2EJumbo set, every worker count gets a jumbo
// step after the four others; without it none.
func TestE2EJumboSteps(t *testing.T) {
	cfg := Config{Workers: []int{1, 2}, E2ESizes: []int{64}, E2EDurationNs: 1}
	label := func(s []suiteStep) []string {
		var ls []string
		for _, x := range s {
			ls = append(ls, x.label)
		}
		return ls
	}
	steps, done := E2ESteps(cfg)
	done()
	if got := label(steps); len(got) != 8 || slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, "jumbo") }) {
		t.Errorf("without E2EJumbo: %q", got)
	}
	cfg.E2EJumbo = E2EDefaultJumbo
	steps, done = E2ESteps(cfg)
	done()
	got := label(steps)
	if want := []string{"e2e forward 1 workers", "e2e kernel 1 workers", "e2e decrypt 1 workers", "e2e encrypt 1 workers", "e2e jumbo 1 workers",
		"e2e forward 2 workers", "e2e kernel 2 workers", "e2e decrypt 2 workers", "e2e encrypt 2 workers", "e2e jumbo 2 workers"}; !slices.Equal(got, want) {
		t.Errorf("with E2EJumbo: %q, want %q", got, want)
	}
	// The largest jumbo packet's ESP frame fits the MTU: inner + outer
	// IPv4 (20) + ESP header and IV (16) + at most 3 bytes of padding,
	// pad length and next header (5) + ICV (16).
	if E2EMaxJumbo+20+16+5+16 > E2EJumboMTU {
		t.Errorf("E2EMaxJumbo %d: its ESP packet exceeds MTU %d", E2EMaxJumbo, E2EJumboMTU)
	}
}
