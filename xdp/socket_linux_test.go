//go:build linux

package xdp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/espxdp/espxdp/bpf"
)

// TestReceive attaches the steering program to a veth in a throw-away
// namespace, sends ESP over IPv4 and IPv6 and ESP-in-UDP from the peer
// namespace, and checks the frames arrive on the AF_XDP socket byte for
// byte, while ping and IKE still reach the kernel.
func TestReceive(t *testing.T) {
	requireNet(t)
	n := newTestNet(t, 1)
	prog := loadProgram(t, bpf.Options{Queues: 1})
	att := attach(t, prog, n.v.A)
	t.Cleanup(func() { att.Close() })

	u := newTestUMEM(t, UMEMConfig{NumFrames: 256, FillSize: 128, CompletionSize: 128})
	s := openSocket(t, n.xns, u, SocketConfig{Ifindex: n.v.A.Index, RXSize: 128, TXSize: 128})
	if s.Mode() != ModeCopy {
		t.Errorf("veth socket in %v mode, want copy (veth has no zero-copy)", s.Mode())
	}
	if !s.OwnsFillRing() {
		t.Error("first socket of a UMEM does not own its fill ring")
	}
	register(t, prog, 0, s)
	if got := s.Refill(); got != 128 {
		t.Errorf("first Refill put %d frames on a 128-entry fill ring", got)
	}

	// A kernel UDP socket on the NAT-T port, for the IKE check.
	var ike *net.UDPConn
	if err := n.xns.Do(func() (err error) {
		ike, err = net.ListenUDP("udp4", &net.UDPAddr{IP: n.x4.AsSlice(), Port: 4500})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ike.Close()

	before, err := prog.Stats()
	if err != nil {
		t.Fatal(err)
	}

	// IPv4 ESP through a raw socket, header included: the whole frame is
	// known.
	esp4 := ipv4(n.p4, n.x4, 50, 0x1234, espPayload(0x01020304, 1, 61))
	if err := sendIPv4(n.peer, 50, esp4); err != nil {
		t.Fatal(err)
	}
	got := receive(t, s, 1, 2*time.Second)
	if len(got) != 1 {
		t.Fatalf("received %d packets, want the IPv4 ESP one", len(got))
	}
	if want := ether(n.v.A.MAC, n.v.B.MAC, 0x0800, esp4); !bytes.Equal(got[0].data, want) {
		t.Errorf("IPv4 ESP frame differs:\n got %x\nwant %x", got[0].data, want)
	}
	// The kernel put the packet after the configured headroom, and the
	// whole frame is ours to write.
	frame, off := u.Frame(got[0].desc)
	if off != u.DataOffset() || len(frame) != u.FrameSize() {
		t.Errorf("packet at offset %d of a %d-byte frame, want %d of %d", off, len(frame), u.DataOffset(), u.FrameSize())
	}

	// IPv6 ESP (kernel-built header).
	p6 := espPayload(0x0a0b0c0d, 2, 37)
	if err := sendESP6(n.peer, n.x6, p6); err != nil {
		t.Fatal(err)
	}
	// NAT-T: ESP in UDP to port 4500.
	nattPayload := espPayload(0x11223344, 3, 20)
	if err := sendUDP(n.peer, netip.AddrPortFrom(n.p4, 4500), netip.AddrPortFrom(n.x4, 4500), nattPayload); err != nil {
		t.Fatal(err)
	}
	// IKE behind the non-ESP marker on the same port: for the kernel.
	ikeMsg := append([]byte{0, 0, 0, 0}, []byte("IKE_SA_INIT")...)
	if err := sendUDP(n.peer, netip.AddrPortFrom(n.p4, 4500), netip.AddrPortFrom(n.x4, 4500), ikeMsg); err != nil {
		t.Fatal(err)
	}
	got = receive(t, s, 2, 2*time.Second)
	if len(got) != 2 {
		t.Fatalf("received %d packets, want IPv6 ESP and NAT-T", len(got))
	}
	slices.SortFunc(got, func(a, b rxFrame) int { return bytes.Compare(a.data[12:14], b.data[12:14]) })
	nat, v6 := got[0].data, got[1].data
	if !bytes.Equal(v6[:14], ether(n.v.A.MAC, n.v.B.MAC, 0x86dd, nil)) || len(v6) != 14+40+len(p6) ||
		v6[14+6] != 50 || !bytes.Equal(v6[14+8:14+24], n.p6.AsSlice()) || !bytes.Equal(v6[14+24:14+40], n.x6.AsSlice()) ||
		!bytes.Equal(v6[14+40:], p6) {
		t.Errorf("IPv6 ESP frame %x does not carry %x from %v to %v", v6, p6, n.p6, n.x6)
	}
	if !bytes.Equal(nat[:14], ether(n.v.A.MAC, n.v.B.MAC, 0x0800, nil)) || len(nat) != 14+20+8+len(nattPayload) ||
		nat[14+9] != 17 || binary.BigEndian.Uint16(nat[14+20+2:]) != 4500 || !bytes.Equal(nat[14+28:], nattPayload) {
		t.Errorf("NAT-T frame %x does not carry %x to port 4500", nat, nattPayload)
	}

	ike.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 100)
	if k, _, err := ike.ReadFromUDP(buf); err != nil || !bytes.Equal(buf[:k], ikeMsg) {
		t.Errorf("IKE on port 4500 did not reach the kernel socket: %v %x", err, buf[:k])
	}
	// Ping still works (XDP_PASS) with the program attached.
	if err := ping(n.peer, n.x4, 1); err != nil {
		t.Errorf("ping through the XDP program: %v", err)
	}
	if extra := receive(t, s, 1, 100*time.Millisecond); len(extra) != 0 {
		t.Errorf("AF_XDP socket received %d unexpected packets, first %x", len(extra), extra[0].data)
	}

	after, err := prog.Stats()
	if err != nil {
		t.Fatal(err)
	}
	d := after.Sub(before)
	if d.ESPRedirected != 2 || d.NATTRedirected != 1 || d.IKEPassed != 1 || d.RedirectNoSocket != 0 {
		t.Errorf("program counters: %+v", d)
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.RXPackets != 3 || st.RXBytes != uint64(len(esp4)+len(v6)+len(nat)+14) || st.RXBadDesc != 0 ||
		st.Kernel.RxDropped != 0 || st.Kernel.RxRingFull != 0 || st.Kernel.RxInvalidDescs != 0 {
		t.Errorf("socket stats: %+v", st)
	}
	quiet(t, u, s)

	if err := att.Close(); err != nil {
		t.Fatal(err)
	}
	if n.v.A.XDPAttached(t) {
		t.Error("XDP program still attached after Close")
	}
}

// TestModes checks the copy / zero-copy choice on veth, which has no
// zero-copy support.
func TestModes(t *testing.T) {
	requireNet(t)
	n := newTestNet(t, 1)
	for _, c := range []struct {
		ask, want Mode
		err       error
	}{
		{ModeAuto, ModeCopy, nil},
		{ModeCopy, ModeCopy, nil},
		{ModeZeroCopy, 0, ErrNotSupported},
	} {
		u := newTestUMEM(t, UMEMConfig{NumFrames: 64, FillSize: 64, CompletionSize: 64})
		s, err := tryOpenSocket(n.xns, u, SocketConfig{Ifindex: n.v.A.Index, Mode: c.ask, RXSize: 64, TXSize: 64})
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%v: %v, want %v", c.ask, err, c.err)
			}
			if u.NumSockets() != 0 {
				t.Errorf("%v: failed socket left on the UMEM", c.ask)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", c.ask, err)
		}
		if s.Mode() != c.want {
			t.Errorf("asked for %v, got %v, want %v", c.ask, s.Mode(), c.want)
		}
		// A second socket on the same queue must share this one's rings
		// and cannot insist on the other mode.
		if _, err := tryOpenSocket(n.xns, u, SocketConfig{Ifindex: n.v.A.Index, Mode: ModeZeroCopy, RXSize: 64}); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("zero-copy socket on a copy-mode UMEM: %v", err)
		}
		// Another UMEM cannot bind the same queue (this takes bindBusyWait).
		if c.ask == ModeAuto {
			u2 := newTestUMEM(t, UMEMConfig{NumFrames: 64, FillSize: 64, CompletionSize: 64})
			if _, err := tryOpenSocket(n.xns, u2, SocketConfig{Ifindex: n.v.A.Index, RXSize: 64}); !errors.Is(err, ErrBusy) {
				t.Errorf("second UMEM on a bound queue: %v, want ErrBusy", err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Unknown interface and queue.
	u := newTestUMEM(t, UMEMConfig{NumFrames: 64, FillSize: 64, CompletionSize: 64})
	if _, err := tryOpenSocket(n.xns, u, SocketConfig{Ifindex: 9999, RXSize: 64}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("unknown interface: %v", err)
	}
	if _, err := tryOpenSocket(n.xns, u, SocketConfig{Ifindex: n.v.A.Index, Queue: 5, RXSize: 64}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("queue 5 of a one-queue veth: %v", err)
	}
}

// spisForSlot returns count SPIs that SPIHash steers to slot of n.
func spisForSlot(slot, n, count int) []uint32 {
	var out []uint32
	for spi := uint32(0x1000); len(out) < count; spi++ {
		if bpf.SPIHashSlot(spi, n) == slot {
			out = append(out, spi)
		}
	}
	return out
}

// TestSharedUMEMSameQueue binds two sockets of one UMEM to the same queue
// (XDP_SHARED_UMEM with one fill and completion ring pair) and steers ESP
// to them by SPI.
func TestSharedUMEMSameQueue(t *testing.T) {
	requireNet(t)
	n := newTestNet(t, 1)
	prog := loadProgram(t, bpf.Options{Queues: 1, SocketsPerQueue: 2, SPIHash: true})
	att := attach(t, prog, n.v.A)
	t.Cleanup(func() { att.Close() })
	u := newTestUMEM(t, UMEMConfig{NumFrames: 128, FillSize: 64, CompletionSize: 64})
	cfg := SocketConfig{Ifindex: n.v.A.Index, RXSize: 64, TXSize: 64}
	s0 := openSocket(t, n.xns, u, cfg)
	s1 := openSocket(t, n.xns, u, cfg)
	if !s0.OwnsFillRing() || s1.OwnsFillRing() {
		t.Errorf("ring ownership: first %v, second %v; want only the first", s0.OwnsFillRing(), s1.OwnsFillRing())
	}
	register(t, prog, 0, s0)
	register(t, prog, 1, s1)
	// One fill ring: refilling through either socket fills the same one.
	if a, b := s0.Refill(), s1.Refill(); a != 64 || b != 0 {
		t.Errorf("Refill through both sockets put %d and %d frames, want 64 and 0", a, b)
	}

	send := func(spis []uint32, seq uint32) {
		t.Helper()
		var pkts [][]byte
		for _, spi := range spis {
			pkts = append(pkts, ipv4(n.p4, n.x4, 50, uint16(spi), espPayload(spi, seq, 16)))
		}
		if err := sendIPv4(n.peer, 50, pkts...); err != nil {
			t.Fatal(err)
		}
	}
	spiOf := func(fs []rxFrame) []uint32 {
		var out []uint32
		for _, f := range fs {
			out = append(out, binary.BigEndian.Uint32(f.data[34:]))
		}
		slices.Sort(out)
		return out
	}
	slot0, slot1 := spisForSlot(0, 2, 5), spisForSlot(1, 2, 5)
	send(append(slices.Clone(slot0), slot1...), 1)
	got0 := receive(t, s0, 5, 2*time.Second)
	got1 := receive(t, s1, 5, 2*time.Second)
	if g := spiOf(got0); !slices.Equal(g, slot0) {
		t.Errorf("socket 0 got SPIs %x, want %x", g, slot0)
	}
	if g := spiOf(got1); !slices.Equal(g, slot1) {
		t.Errorf("socket 1 got SPIs %x, want %x", g, slot1)
	}
	quiet(t, u, s0, s1)

	// Closing the socket whose mapping the shared rings are leaves them
	// working for the other one.
	if err := s0.Close(); err != nil {
		t.Fatal(err)
	}
	send(slot1, 2)
	if g := spiOf(receive(t, s1, 5, 2*time.Second)); !slices.Equal(g, slot1) {
		t.Errorf("after closing socket 0, socket 1 got SPIs %x, want %x", g, slot1)
	}
	quiet(t, u, s1)
}

// TestMultiQueue binds one socket per queue of a two-queue veth, all on
// one UMEM (XDP_SHARED_UMEM across queues: each queue has its own fill
// and completion rings), and sends from an AF_XDP generator on the
// matching queue of the peer, so each queue gets known packets.
func TestMultiQueue(t *testing.T) {
	requireNet(t)
	const queues, perQueue = 2, 20
	n := newTestNet(t, queues)
	prog := loadProgram(t, bpf.Options{Queues: queues})
	att := attach(t, prog, n.v.A)
	t.Cleanup(func() { att.Close() })
	u := newTestUMEM(t, UMEMConfig{NumFrames: 256, FillSize: 64, CompletionSize: 64})
	var socks []*Socket
	for q := range queues {
		s := openSocket(t, n.xns, u, SocketConfig{Ifindex: n.v.A.Index, Queue: q, RXSize: 64, TXSize: 64})
		if !s.OwnsFillRing() {
			t.Errorf("socket on queue %d shares a fill ring; each queue needs its own", q)
		}
		register(t, prog, q, s)
		socks = append(socks, s)
	}
	for _, s := range socks {
		if got := s.Refill(); got != 64 {
			t.Errorf("queue %d: Refill put %d frames, want 64 (a fill ring per queue)", s.Config().Queue, got)
		}
	}
	for q := range queues {
		// Queue 1's generator runs without XDP_USE_NEED_WAKEUP.
		g := newGenerator(t, n.v.B, q, q == 1)
		sent := g.send(perQueue, 0, 2*time.Second, func(i int, buf []byte) int {
			pkt := ether(n.v.A.MAC, n.v.B.MAC, 0x0800,
				ipv4(n.p4, n.x4, 50, uint16(i), espPayload(0x5000+uint32(q), uint32(i), 32)))
			return copy(buf, pkt)
		})
		if sent != perQueue {
			t.Fatalf("generator on queue %d sent %d of %d", q, sent, perQueue)
		}
		if st := socketStats(t, g.s); st.TXPackets != perQueue || st.TXCompleted != perQueue || st.Wakeups == 0 || st.WakeupErrors != 0 {
			t.Errorf("generator on queue %d: %+v", q, st)
		}
	}
	for q, s := range socks {
		got := receive(t, s, perQueue, 2*time.Second)
		if len(got) != perQueue {
			t.Errorf("queue %d: received %d packets, want %d", q, len(got), perQueue)
		}
		for i, f := range got {
			if spi := binary.BigEndian.Uint32(f.data[34:]); spi != 0x5000+uint32(q) {
				t.Errorf("queue %d got SPI %#x (sent on queue %d)", q, spi, spi-0x5000)
			}
			if seq := binary.BigEndian.Uint32(f.data[38:]); seq != uint32(i) {
				t.Errorf("queue %d: packet %d has sequence number %d", q, i, seq)
			}
		}
	}
	quiet(t, u, socks...)
}
