//go:build linux

package xdp

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/esp/reasm"
	"github.com/espxdp/espxdp/internal/netns"
	"github.com/espxdp/espxdp/internal/race"
	"github.com/espxdp/espxdp/internal/scapypeer"
	"github.com/espxdp/espxdp/sa"
)

// fragment4 splits an IPv4 packet into fragments carrying size bytes of
// its payload each (a multiple of 8; the last carries the rest), with
// identification id and DF clear.
func fragment4(p []byte, id uint16, size int) [][]byte {
	hl := int(p[0]&0x0f) * 4
	data := p[hl:]
	var out [][]byte
	for off := 0; off < len(data); off += size {
		n := min(size, len(data)-off)
		f := make([]byte, hl+n)
		copy(f, p[:hl])
		copy(f[hl:], data[off:off+n])
		binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
		binary.BigEndian.PutUint16(f[4:], id)
		fo := uint16(off / 8)
		if off+n < len(data) {
			fo |= 0x2000 // MF
		}
		binary.BigEndian.PutUint16(f[6:], fo)
		f[10], f[11] = 0, 0
		binary.BigEndian.PutUint16(f[10:], csum(f[:hl]))
		out = append(out, f)
	}
	return out
}

// sendRawESP4 sends payload (an ESP packet) as IPv4 protocol 50 from ns
// with a kernel-built header: the kernel fragments it when it exceeds the
// link MTU.
func sendRawESP4(ns *netns.NS, dst netip.Addr, payload []byte) error {
	return ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ESP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT); err != nil {
			return err
		}
		return unix.Sendto(fd, payload, 0, &unix.SockaddrInet4{Addr: dst.As4()})
	})
}

// TestEngineReassembly: with EngineConfig.Reassembly, ESP and ESP-in-UDP
// fragmented on the outer path reach the workers (bpf SteerFragments),
// are reassembled and decrypted: fragments built here and sent in order,
// reversed and shuffled (one with a duplicate), and packets too big for
// the link fragmented by the sender's kernel (raw ESP and NAT-T over a
// UDP socket). An overlapping set is dropped and counted.
func TestEngineReassembly(t *testing.T) {
	requireNet(t)
	n := newEngNet(t)
	// Decrypted packets larger than 1500 bytes leave on the plaintext
	// side.
	n.nsE.IP(t, "link", "set", n.p.A.Name, "mtu", "3000")
	n.nsP.IP(t, "link", "set", n.p.B.Name, "mtu", "3000")
	s := newEngSAs(t, n)
	cfg := n.config(s)
	cfg.Reassembly = &reasm.Config{MaxSets: 8}
	e := startEngine(t, n, cfg)
	capP := newCapture(t, n.p.B)
	rng := rand.New(rand.NewPCG(4, 303))

	// Built here: 3 to 4 fragments each.
	const count = 12
	var inner, innerN [][]byte
	for i := range count {
		inner = append(inner, innerUDP(n.remote, n.pP, uint16(i), 900+40*i))
		innerN = append(innerN, innerUDP(n.remote, n.pP, uint16(100+i), 1000+30*i))
	}
	espPkts := encryptScapy(t, scapySA(spiIn, n, false), inner, 1)
	nattPkts := encryptScapy(t, scapySA(spiInNATT, n, true), innerN, 1)
	sent := 0
	for i := range count {
		for j, p := range [][]byte{espPkts[i], nattPkts[i]} {
			fs := fragment4(p, uint16(2*i+j+1), 400)
			switch i % 4 {
			case 1:
				for a, b := 0, len(fs)-1; a < b; a, b = a+1, b-1 {
					fs[a], fs[b] = fs[b], fs[a]
				}
			case 2:
				rng.Shuffle(len(fs), func(a, b int) { fs[a], fs[b] = fs[b], fs[a] })
			case 3:
				fs = append(fs[:2], append([][]byte{fs[0]}, fs[2:]...)...) // a duplicate
			}
			n.send(t, fs...)
			sent += len(fs)
		}
	}
	// An overlapping set: its second fragment moved 8 bytes back.
	extra := encryptScapy(t, scapySA(spiIn, n, false), [][]byte{innerUDP(n.remote, n.pP, 999, 1000)}, 500)
	fs := fragment4(extra[0], 999, 400)
	fo := binary.BigEndian.Uint16(fs[1][6:])
	binary.BigEndian.PutUint16(fs[1][6:], fo-1)
	fs[1][10], fs[1][11] = 0, 0
	binary.BigEndian.PutUint16(fs[1][10:], csum(fs[1][:20]))
	n.send(t, fs[:2]...)
	sent += 2

	// Fragmented by the kernel of the sender.
	const big = 3
	var innerB, innerBN [][]byte
	for i := range big {
		innerB = append(innerB, innerUDP(n.remote, n.pP, uint16(200+i), 2400+100*i))
		innerBN = append(innerBN, innerUDP(n.remote, n.pP, uint16(300+i), 2500+100*i))
	}
	bigESP := encryptScapy(t, scapySA(spiIn, n, false), innerB, 1000)
	bigNATT := encryptScapy(t, scapySA(spiInNATT, n, true), innerBN, 1000)
	for i := range big {
		if err := sendRawESP4(n.nsC, n.eC, bigESP[i][20:]); err != nil {
			t.Fatal(err)
		}
		if err := sendUDP(n.nsC, netip.AddrPortFrom(n.pC, 4500), netip.AddrPortFrom(n.eC, 4500), bigNATT[i][28:]); err != nil {
			t.Fatal(err)
		}
	}

	want := 2*count + 2*big
	got := capP.collect(want, 5*time.Second, fromTo(17, n.remote, n.pP))
	st := e.Stats()
	if len(got) != want {
		t.Fatalf("got %d decrypted packets, want %d; worker %+v program %+v", len(got), want, st.Workers[0], st.CipherProgram)
	}
	wantSet := map[string]bool{}
	for _, l := range [][][]byte{inner, innerN, innerB, innerBN} {
		for _, p := range l {
			wantSet[string(p)] = true
		}
	}
	for i, f := range got {
		if !wantSet[string(f[14:])] {
			t.Errorf("packet %d (%d bytes) is not one of the originals", i, len(f)-14)
		}
		delete(wantSet, string(f[14:]))
	}
	w := st.Workers[0]
	r := w.Reassembly
	if r.Reassembled != uint64(want) || r.Overlap != 1 || r.Duplicates != count/4*2 || !r.Balanced() || w.ReasmNoFrame != 0 {
		t.Errorf("reassembly stats %+v (no frame %d)", r, w.ReasmNoFrame)
	}
	if st.CipherProgram.FragmentRedirected < uint64(sent+4*big) || st.CipherProgram.FragmentPassed != 0 {
		t.Errorf("program: %d fragments redirected (want >= %d), %d passed", st.CipherProgram.FragmentRedirected, sent+4*big, st.CipherProgram.FragmentPassed)
	}
	if w.Decrypted != uint64(want) || w.SADrops != 0 {
		t.Errorf("worker %+v", w)
	}
	if ss := s.in.Stats(); ss.DecapsPkts != count+big {
		t.Errorf("SA %x: decaps %d, want %d", spiIn, ss.DecapsPkts, count+big)
	}
	if ss := s.inN.Stats(); ss.DecapsPkts != count+big {
		t.Errorf("SA %x: decaps %d, want %d", spiInNATT, ss.DecapsPkts, count+big)
	}
	if bytes.Equal(got[0][:6], n.p.A.MAC) {
		t.Error("decrypted packet sent to ourselves")
	}
	checkFrames(t, e)
}

// TestEngineReassemblyLoadAlloc drives a worker's load with a
// reassembler on frames of a UMEM (no sockets, no privileges): fragment
// frames are freed, the one completing a packet carries the reassembled
// packet where its data started (room for the new Ethernet header in
// front), a packet too big for a frame is a counted drop, and none of it
// allocates.
func TestEngineReassemblyLoadAlloc(t *testing.T) {
	u, err := NewUMEM(UMEMConfig{NumFrames: 64, FillSize: 32, CompletionSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	ew := &engineWorker{e: &Engine{}, rt: &engineRun{u: u, epoch: time.Now()}, ra: reasm.New(reasm.Config{})}
	src, dst := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.1")
	whole := ipv4(src, dst, 50, 0, espPayload(0x1001, 1, 1200))
	plain := ipv4(src, dst, 50, 0, espPayload(0x1001, 2, 100))
	huge := ipv4(src, dst, 50, 0, espPayload(0x1001, 3, u.FrameSize()))
	macA, macB := []byte{2, 0, 0, 0, 0, 1}, []byte{2, 0, 0, 0, 0, 2}
	var frames [][]byte
	wf := fragment4(whole, 7, 400)
	last := len(wf) - 1 // completes the packet
	for _, f := range wf {
		frames = append(frames, ether(macA, macB, 0x0800, f))
	}
	frames = append(frames, ether(macA, macB, 0x0800, plain))
	for _, f := range fragment4(huge, 8, 1480) {
		frames = append(frames, ether(macA, macB, 0x0800, f))
	}
	descs := make([]Desc, len(frames))
	if u.Alloc(descs) != len(frames) {
		t.Fatal("no frames")
	}
	load := func() int {
		for i, f := range frames {
			buf, off := u.Frame(descs[i])
			copy(buf[off:], f)
			descs[i].Len = uint32(len(f))
			ew.rx[i] = descs[i]
		}
		ew.nFree = 0
		return ew.load(len(frames), 0, ew.ra, 0)
	}
	k := load()
	if k != 2 || ew.nFree != len(frames)-2 {
		t.Fatalf("batch of %d, %d frames freed", k, ew.nFree)
	}
	if p := &ew.pk[0]; !bytes.Equal(p.Data(), wholeNoDF(whole)) {
		t.Errorf("reassembled packet differs:\n got %x\nwant %x", p.Data(), wholeNoDF(whole))
	} else if _, off := u.Frame(descs[last]); p.Off != off || p.Meta != descs[last].Addr&^u.frameMask {
		t.Errorf("reassembled packet at %d in frame %#x, want %d in the last fragment's frame %#x", p.Off, p.Meta, off, descs[last].Addr&^u.frameMask)
	}
	if p := &ew.pk[1]; !bytes.Equal(p.Data(), plain) {
		t.Error("non-fragment changed")
	}
	if ew.c.reasmNoFrame.Load() != 1 || ew.reasmStats().Reassembled != 2 {
		t.Errorf("no frame %d, stats %+v", ew.c.reasmNoFrame.Load(), ew.reasmStats())
	}
	if race.Enabled {
		return
	}
	if allocs := testing.AllocsPerRun(50, func() { load() }); allocs != 0 {
		t.Errorf("%v allocations per batch", allocs)
	}
}

// wholeNoDF is what reassembling fragment4's fragments of p gives: p
// with identification 7, DF clear (fragment4 clears it) and its checksum
// fixed.
func wholeNoDF(p []byte) []byte {
	q := bytes.Clone(p)
	binary.BigEndian.PutUint16(q[4:], 7)
	q[6] &^= 0x40
	q[10], q[11] = 0, 0
	binary.BigEndian.PutUint16(q[10:], csum(q[:20]))
	return q
}

// fragment6 splits an IPv6 packet without extension headers into
// fragments of size bytes of its payload each (a multiple of 8), with a
// hop-by-hop options header (PadN) before the fragment header if hbh.
func fragment6(p []byte, id uint32, size int, hbh bool) [][]byte {
	data := p[40:]
	unf := 40
	if hbh {
		unf = 48
	}
	var out [][]byte
	for off := 0; off < len(data); off += size {
		n := min(size, len(data)-off)
		f := make([]byte, unf+8+n)
		copy(f, p[:40])
		fh := f[unf:]
		if hbh {
			f[6] = 0
			f[40], f[41], f[42], f[43] = 44, 0, 1, 4 // next header, length, PadN of 4
		} else {
			f[6] = 44
		}
		fh[0] = p[6]
		fo := uint16(off/8) << 3
		if off+n < len(data) {
			fo |= 1
		}
		binary.BigEndian.PutUint16(fh[2:], fo)
		binary.BigEndian.PutUint32(fh[4:], id)
		copy(f[unf+8:], data[off:off+n])
		binary.BigEndian.PutUint16(f[4:], uint16(len(f)-40))
		out = append(out, f)
	}
	return out
}

// TestEngineReassemblyIPv6: IPv6 ESP fragmented by the sender's kernel,
// and fragments built here behind a hop-by-hop header (in order and
// reversed), are reassembled by the engine and decrypted.
func TestEngineReassemblyIPv6(t *testing.T) {
	requireNet(t)
	n := newEngNet(t)
	n.nsE.IP(t, "link", "set", n.p.A.Name, "mtu", "3000")
	n.nsP.IP(t, "link", "set", n.p.B.Name, "mtu", "3000")
	eC6, pC6 := netip.MustParseAddr("2001:db8:c::1"), netip.MustParseAddr("2001:db8:c::2")
	n.c.A.AddAddr(t, netip.PrefixFrom(eC6, 64))
	n.c.B.AddAddr(t, netip.PrefixFrom(pC6, 64))
	n.c.A.SetNeighbour(t, pC6, n.c.B.MAC)
	n.c.B.SetNeighbour(t, eC6, n.c.A.MAC)
	s := newEngSAs(t, n)
	const spi6 = 0x1006
	in6, err := sa.New(sa.Config{Name: "in6", SPI: spi6, Direction: sa.In, Mode: esp.Tunnel, Local: eC6, Remote: pC6,
		Transform: esp.MustParseTransform("aes128gcm16"), Key: engKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.sad.Add(in6); err != nil {
		t.Fatal(err)
	}
	cfg := n.config(s)
	cfg.Reassembly = &reasm.Config{}
	e := startEngine(t, n, cfg)
	capP := newCapture(t, n.p.B)

	sa6 := scapypeer.SA{SPI: spi6, CryptAlgo: "AES-GCM", CryptKey: engKey, CryptICVSize: 16,
		Tunnel: true, TunnelSrc: pC6.String(), TunnelDst: eC6.String()}
	const count = 4
	var inner [][]byte
	for i := range count {
		inner = append(inner, innerUDP(n.remote, n.pP, uint16(600+i), 1800+200*i))
	}
	outer := encryptScapy(t, sa6, inner, 1)
	for i, p := range outer {
		if i%2 == 0 {
			if err := sendESP6(n.nsC, eC6, p[40:]); err != nil { // fragmented by the kernel
				t.Fatal(err)
			}
			continue
		}
		fs := fragment6(p, uint32(i), 600, true)
		if i == 3 {
			for a, b := 0, len(fs)-1; a < b; a, b = a+1, b-1 {
				fs[a], fs[b] = fs[b], fs[a]
			}
		}
		for j, f := range fs {
			fs[j] = ether(n.c.A.MAC, n.c.B.MAC, 0x86dd, f)
		}
		if err := sendFrames(n.c.B, fs...); err != nil {
			t.Fatal(err)
		}
	}
	got := capP.collect(count, 5*time.Second, fromTo(17, n.remote, n.pP))
	st := e.Stats()
	if len(got) != count {
		t.Fatalf("got %d decrypted packets, want %d; worker %+v program %+v", len(got), count, st.Workers[0], st.CipherProgram)
	}
	want := map[string]bool{}
	for _, p := range inner {
		want[string(p)] = true
	}
	for i, f := range got {
		if !want[string(f[14:])] {
			t.Errorf("packet %d is not one of the originals", i)
		}
		delete(want, string(f[14:]))
	}
	if r := st.Workers[0].Reassembly; r.Reassembled != count || !r.Balanced() {
		t.Errorf("reassembly stats %+v", r)
	}
	// At least two fragments per packet from the kernel, four from here.
	if fr := st.CipherProgram.FragmentRedirected; fr < 2*2+2*4 {
		t.Errorf("%d fragments redirected", fr)
	}
	if ss := in6.Stats(); ss.DecapsPkts != count {
		t.Errorf("decaps %d, want %d", ss.DecapsPkts, count)
	}
	checkFrames(t, e)
}
