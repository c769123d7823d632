//go:build linux

package xdp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/netns"
	"github.com/espxdp/espxdp/internal/scapypeer"
	"github.com/espxdp/espxdp/sa"
)

// engNet is nsC —veth c— nsE —veth p— nsP: the engine runs in nsE with
// c.A as its ciphertext side (peer nsC at 192.0.2.2 speaks ESP to
// 192.0.2.1) and p.A as its plaintext side (peer nsP at 10.1.0.2 routes
// the protected prefix 10.9.0.0/16 through 10.1.0.1).
type engNet struct {
	nsC, nsE, nsP *netns.NS
	c, p          *netns.VethPair
	eC, pC        netip.Addr // engine and peer on the ciphertext side
	eP, pP        netip.Addr // engine and peer on the plaintext side
	remote        netip.Addr // a host behind the tunnel (protected prefix)
}

func newEngNet(t testing.TB) *engNet { return newEngNetQ(t, 1) }

func newEngNetQ(t testing.TB, queues int) *engNet {
	t.Helper()
	n := &engNet{nsC: netns.New(t), nsE: netns.New(t), nsP: netns.New(t),
		eC: netip.MustParseAddr("192.0.2.1"), pC: netip.MustParseAddr("192.0.2.2"),
		eP: netip.MustParseAddr("10.1.0.1"), pP: netip.MustParseAddr("10.1.0.2"),
		remote: netip.MustParseAddr("10.9.0.5")}
	n.c = netns.NewVethPairOpts(t, n.nsE, n.nsC, netns.VethOptions{Queues: queues})
	n.p = netns.NewVethPairOpts(t, n.nsE, n.nsP, netns.VethOptions{Queues: queues})
	n.c.A.AddAddr(t, netip.PrefixFrom(n.eC, 24))
	n.c.B.AddAddr(t, netip.PrefixFrom(n.pC, 24))
	n.p.A.AddAddr(t, netip.PrefixFrom(n.eP, 24))
	n.p.B.AddAddr(t, netip.PrefixFrom(n.pP, 24))
	n.c.A.SetNeighbour(t, n.pC, n.c.B.MAC)
	n.c.B.SetNeighbour(t, n.eC, n.c.A.MAC)
	n.p.A.SetNeighbour(t, n.pP, n.p.B.MAC)
	n.p.B.SetNeighbour(t, n.eP, n.p.A.MAC)
	n.nsP.IP(t, "route", "add", "10.9.0.0/16", "via", n.eP.String())
	return n
}

const (
	spiIn     = 0x1001 // inbound, raw ESP
	spiInNATT = 0x1002 // inbound, ESP-in-UDP
	spiOut    = 0x2001 // outbound
)

var engKey = bytes.Repeat([]byte{0x5a}, 20) // AES-128 key ‖ salt

// engSAs builds the SAD, the tunnel and a one-worker processor.
type engSAs struct {
	sad          *sa.SAD
	in, inN, out *sa.SA
	proc         *sa.Processor
}

func newEngSAs(t testing.TB, n *engNet) *engSAs {
	t.Helper()
	tr := esp.MustParseTransform("aes128gcm16")
	mk := func(spi uint32, dir sa.Direction, natt bool) *sa.SA {
		cfg := sa.Config{Name: fmt.Sprintf("sa-%x", spi), SPI: spi, Direction: dir, Mode: esp.Tunnel,
			Local: n.eC, Remote: n.pC, Transform: tr, Key: engKey, UDPEncap: natt}
		s, err := sa.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	e := &engSAs{sad: sa.NewSAD(sa.SADOptions{})}
	e.in, e.inN, e.out = mk(spiIn, sa.In, false), mk(spiInNATT, sa.In, true), mk(spiOut, sa.Out, false)
	for _, s := range []*sa.SA{e.in, e.inN, e.out} {
		if err := e.sad.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	tun := sa.NewTunnel("peer")
	tun.SetOutbound(e.out)
	var err error
	if e.proc, err = sa.NewProcessor(sa.ProcessorOptions{SAD: e.sad, Tunnel: tun}); err != nil {
		t.Fatal(err)
	}
	return e
}

func (n *engNet) config(s *engSAs) EngineConfig {
	return EngineConfig{
		Processor:         s.proc,
		Cipher:            Port{Name: n.c.A.Name, NextHop: n.c.B.MAC},
		Plain:             &Port{Name: n.p.A.Name, NextHop: n.p.B.MAC},
		ProtectedPrefixes: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")},
		UMEM:              UMEMConfig{NumFrames: 2048, FillSize: 512, CompletionSize: 512},
	}
}

// startEngine starts an engine in nsE and stops it with the test,
// checking that no frame leaked.
func startEngine(t testing.TB, n *engNet, cfg EngineConfig) *Engine {
	t.Helper()
	return startEngineIn(t, n.nsE.Do, cfg)
}

// checkFrames waits until the engine's UMEM holds no frame outside the
// free list and the fill rings, then audits it.
func checkFrames(t testing.TB, e *Engine) {
	t.Helper()
	e.mu.Lock()
	u := e.rt.u
	e.mu.Unlock()
	var c FrameCounts
	var err error
	// CheckFrames is exact only while no traffic moves: a packet that
	// arrives during the audit (an IPv6 neighbour solicitation, a late
	// TCP segment) moves a frame from the fill ring to an RX ring between
	// the two scans, so the audit is repeated until it sees a still
	// moment. A frame really owned twice stays owned twice and fails
	// every audit.
	netns.WaitFor(2*time.Second, func() bool {
		c = u.Counts()
		if c.App != 0 || c.TX != 0 || c.Completion != 0 || c.InKernel != 0 || c.RX != 0 {
			return false
		}
		err = u.CheckFrames()
		return err == nil
	})
	if c.App != 0 || c.TX != 0 || c.RX != 0 || c.Sum() != c.Total {
		t.Errorf("frames not all accounted for: %+v", c)
	}
	if err != nil {
		t.Error(err)
	}
}

// innerUDP builds an IPv4/UDP packet from src to dst with a distinct
// payload of n bytes.
func innerUDP(src, dst netip.Addr, id uint16, n int) []byte {
	pl := make([]byte, 8+n)
	binary.BigEndian.PutUint16(pl[0:], 4000+id)
	binary.BigEndian.PutUint16(pl[2:], 9)
	binary.BigEndian.PutUint16(pl[4:], uint16(8+n))
	for i := range n {
		pl[8+i] = byte(int(id) + i)
	}
	p := ipv4(src, dst, 17, id, pl)
	return p
}

func scapySA(spi uint32, n *engNet, natt bool) scapypeer.SA {
	return scapypeer.SA{SPI: spi, CryptAlgo: "AES-GCM", CryptKey: engKey, CryptICVSize: 16,
		Tunnel: true, TunnelSrc: n.pC.String(), TunnelDst: n.eC.String(), NATT: natt}
}

// encryptScapy has scapy encrypt inner packets i with seq seqs[i].
func encryptScapy(t testing.TB, s scapypeer.SA, inner [][]byte, seq0 uint32) [][]byte {
	t.Helper()
	cases := make([]scapypeer.Case, len(inner))
	for i, p := range inner {
		cases[i] = scapypeer.Case{Op: scapypeer.Encrypt, SA: s, Seq: seq0 + uint32(i), Packet: p}
	}
	resp := scapypeer.Run(t, cases)
	out := make([][]byte, len(inner))
	for i, r := range resp.Results {
		if r.Error != "" || len(r.Packet) == 0 {
			t.Fatalf("scapy encrypt %d: %s: %s", i, r.ErrorType, r.Error)
		}
		out[i] = r.Packet
		if s.NATT {
			// scapy 2.5 writes the UDP Length of its NAT-T header as 8
			// (esp/interop_test.go, bug 3); the checksum is zero, so only
			// the length needs fixing.
			ihl := int(r.Packet[0]&0x0f) * 4
			binary.BigEndian.PutUint16(r.Packet[ihl+4:], uint16(len(r.Packet)-ihl))
		}
	}
	return out
}

// fromTo matches IPv4 frames with the given protocol, source and
// destination.
func fromTo(proto byte, src, dst netip.Addr) func([]byte) bool {
	return func(f []byte) bool {
		return len(f) >= 34 && binary.BigEndian.Uint16(f[12:]) == 0x0800 && f[23] == proto &&
			netip.AddrFrom4([4]byte(f[26:30])) == src && netip.AddrFrom4([4]byte(f[30:34])) == dst
	}
}

func (n *engNet) send(t testing.TB, pkts ...[]byte) {
	t.Helper()
	if err := sendIPv4(n.nsC, unix.IPPROTO_RAW, pkts...); err != nil {
		t.Fatal(err)
	}
}

func TestEngineInbound(t *testing.T) {
	requireNet(t)
	n := newEngNet(t)
	s := newEngSAs(t, n)
	e := startEngine(t, n, n.config(s))
	capP := newCapture(t, n.p.B)

	const count = 40
	var inner, innerN [][]byte
	for i := range count {
		inner = append(inner, innerUDP(n.remote, n.pP, uint16(i), 20+i*30))
		innerN = append(innerN, innerUDP(n.remote, n.pP, uint16(1000+i), 1200))
	}
	espPkts := encryptScapy(t, scapySA(spiIn, n, false), inner, 1)
	nattPkts := encryptScapy(t, scapySA(spiInNATT, n, true), innerN, 1)
	for i := range count {
		n.send(t, espPkts[i], nattPkts[i])
	}
	got := capP.collect(2*count, 3*time.Second, fromTo(17, n.remote, n.pP))
	if len(got) != 2*count {
		t.Fatalf("got %d decrypted packets, want %d; stats %+v", len(got), 2*count, e.Stats())
	}
	want := map[string]bool{}
	for _, p := range append(append([][]byte{}, inner...), innerN...) {
		want[string(p)] = true
	}
	for i, f := range got {
		if !bytes.Equal(f[0:6], n.p.B.MAC) || !bytes.Equal(f[6:12], n.p.A.MAC) {
			t.Errorf("packet %d: Ethernet %x, want dst %v src %v", i, f[:14], n.p.B.MAC, n.p.A.MAC)
		}
		if !want[string(f[14:])] {
			t.Errorf("packet %d (%d bytes) is not one of scapy's originals", i, len(f)-14)
		}
		delete(want, string(f[14:]))
	}
	if st := s.in.Stats(); st.DecapsPkts != count || st.Seq != count {
		t.Errorf("SA %x: decaps %d seq %d, want %d", spiIn, st.DecapsPkts, st.Seq, count)
	}
	if st := s.inN.Stats(); st.DecapsPkts != count {
		t.Errorf("SA %x: decaps %d, want %d", spiInNATT, st.DecapsPkts, count)
	}
	st := e.Stats()
	if st.Workers[0].Decrypted != 2*count || st.CipherProgram.ESPRedirected != count || st.CipherProgram.NATTRedirected != count {
		t.Errorf("stats: worker %+v program %+v", st.Workers[0], st.CipherProgram)
	}
	checkFrames(t, e)
}

func TestEngineOutbound(t *testing.T) {
	requireNet(t)
	n := newEngNet(t)
	s := newEngSAs(t, n)
	e := startEngine(t, n, n.config(s))
	capC := newCapture(t, n.c.B)

	const count = 40
	var inner [][]byte
	for i := range count {
		inner = append(inner, innerUDP(n.pP, n.remote, uint16(i), 10+i*35))
	}
	if err := sendIPv4(n.nsP, unix.IPPROTO_RAW, inner...); err != nil {
		t.Fatal(err)
	}
	got := capC.collect(count, 3*time.Second, fromTo(50, n.eC, n.pC))
	if len(got) != count {
		t.Fatalf("got %d ESP packets, want %d; stats %+v", len(got), count, e.Stats())
	}
	dec := scapySA(spiOut, n, false)
	cases := make([]scapypeer.Case, len(got))
	for i, f := range got {
		if !bytes.Equal(f[0:6], n.c.B.MAC) || !bytes.Equal(f[6:12], n.c.A.MAC) {
			t.Errorf("packet %d: Ethernet %x, want dst %v src %v", i, f[:14], n.c.B.MAC, n.c.A.MAC)
		}
		cases[i] = scapypeer.Case{Op: scapypeer.Decrypt, SA: dec, Packet: f[14:]}
	}
	resp := scapypeer.Run(t, cases)
	want := map[string]bool{}
	for _, p := range inner {
		want[string(p)] = true
	}
	for i, r := range resp.Results {
		if r.Error != "" {
			t.Errorf("scapy decrypt %d: %s: %s", i, r.ErrorType, r.Error)
			continue
		}
		if !want[string(r.Packet)] {
			t.Errorf("decrypted packet %d is not one of the originals: %x", i, r.Packet)
		}
		delete(want, string(r.Packet))
	}
	if st := s.out.Stats(); st.EncapsPkts != count {
		t.Errorf("SA %x: encaps %d, want %d", spiOut, st.EncapsPkts, count)
	}
	if st := e.Stats(); st.Workers[0].Encrypted != count || st.PlainProgram.PlaintextRedirected != count {
		t.Errorf("stats: worker %+v program %+v", st.Workers[0], st.PlainProgram)
	}
	checkFrames(t, e)
}

// udpListener is a kernel UDP socket in nsE.
func udpListener(t testing.TB, ns *netns.NS, addr netip.Addr, port int) int {
	t.Helper()
	var fd int
	err := ns.Do(func() (err error) {
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		tv := unix.NsecToTimeval(int64(20 * time.Millisecond))
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		return unix.Bind(fd, &unix.SockaddrInet4{Addr: addr.As4(), Port: port})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func recvUDP(fd int, timeout time.Duration) [][]byte {
	var got [][]byte
	buf := make([]byte, 2048)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		k, _, err := unix.Recvfrom(fd, buf, 0)
		if err == nil {
			got = append(got, append([]byte(nil), buf[:k]...))
		}
	}
	return got
}

func TestEngineMixedTraffic(t *testing.T) {
	requireNet(t)
	n := newEngNet(t)
	s := newEngSAs(t, n)
	var ctlMu sync.Mutex
	var ctl int
	cfg := n.config(s)
	cfg.Control = func([]byte) { ctlMu.Lock(); ctl++; ctlMu.Unlock() }
	e := startEngine(t, n, cfg)
	capP := newCapture(t, n.p.B)
	ike500 := udpListener(t, n.nsE, n.eC, 500)
	ike4500 := udpListener(t, n.nsE, n.eC, 4500)

	// ARP: drop the peer's static entry, so the ping below needs ARP.
	n.nsC.IP(t, "neigh", "del", n.eC.String(), "dev", n.c.B.Name)

	const count = 10
	var inner, innerN [][]byte
	for i := range count {
		inner = append(inner, innerUDP(n.remote, n.pP, uint16(i), 100))
		innerN = append(innerN, innerUDP(n.remote, n.pP, uint16(100+i), 100))
	}
	espPkts := encryptScapy(t, scapySA(spiIn, n, false), inner, 1)
	nattPkts := encryptScapy(t, scapySA(spiInNATT, n, true), innerN, 1)
	ike := []byte("IKE_SA_INIT request, not really")
	for i := range count {
		if err := ping(n.nsC, n.eC, uint16(i)); err != nil {
			t.Errorf("ping %d through the engine's interface: %v", i, err)
		}
		n.send(t, espPkts[i], nattPkts[i])
		if err := sendUDP(n.nsC, netip.AddrPortFrom(n.pC, 500), netip.AddrPortFrom(n.eC, 500), ike); err != nil {
			t.Fatal(err)
		}
		// IKE on the NAT-T port: the non-ESP marker (four zero bytes).
		marked := append([]byte{0, 0, 0, 0}, ike...)
		if err := sendUDP(n.nsC, netip.AddrPortFrom(n.pC, 4500), netip.AddrPortFrom(n.eC, 4500), marked); err != nil {
			t.Fatal(err)
		}
	}
	got := capP.collect(2*count, 3*time.Second, fromTo(17, n.remote, n.pP))
	if len(got) != 2*count {
		t.Errorf("got %d decrypted packets, want %d", len(got), 2*count)
	}
	if g := recvUDP(ike500, 100*time.Millisecond); len(g) != count || !bytes.Equal(g[0], ike) {
		t.Errorf("kernel socket on UDP 500 got %d datagrams, want %d", len(g), count)
	}
	if g := recvUDP(ike4500, 100*time.Millisecond); len(g) != count || !bytes.HasSuffix(g[0], ike) {
		t.Errorf("kernel socket on UDP 4500 got %d datagrams, want %d", len(g), count)
	}
	st := e.Stats()
	p := st.CipherProgram
	if p.ESPRedirected != count || p.NATTRedirected != count || p.IKEPassed != 2*count || p.PassedNonIP == 0 {
		t.Errorf("program stats %+v", p)
	}
	if w := st.Workers[0]; w.CipherRX != 2*count || w.Decrypted != 2*count || w.SADrops != 0 {
		t.Errorf("worker stats %+v", w)
	}
	ctlMu.Lock()
	if ctl != 0 {
		t.Errorf("%d control packets reached the engine; the program should pass IKE to the kernel", ctl)
	}
	ctlMu.Unlock()
	checkFrames(t, e)
}

func TestEngineBadTraffic(t *testing.T) {
	requireNet(t)
	n := newEngNet(t)
	s := newEngSAs(t, n)
	e := startEngine(t, n, n.config(s))
	capP := newCapture(t, n.p.B)

	const count = 12
	var inner [][]byte
	for i := range count {
		inner = append(inner, innerUDP(n.remote, n.pP, uint16(i), 64))
	}
	good := encryptScapy(t, scapySA(spiIn, n, false), inner, 1)
	unknown := encryptScapy(t, scapySA(0xdead, n, false), inner[:count/2], 1)
	// Truncated packets carry sequence numbers never sent whole, so they
	// pass the anti-replay pre-check and fail on their length.
	fresh := encryptScapy(t, scapySA(spiIn, n, false), inner[:count/4], 1000)
	nUnknown, nReplay, nAuth, nTrunc := 0, 0, 0, 0
	for i := range count {
		n.send(t, good[i])
		switch i % 4 {
		case 0:
			n.send(t, unknown[i/2])
			nUnknown++
		case 1:
			n.send(t, good[i-1]) // replay of the previous packet
			nReplay++
		case 2:
			tampered := bytes.Clone(good[i+1])
			tampered[len(tampered)-1] ^= 0x80 // flip an ICV bit
			n.send(t, tampered)
			nAuth++
		case 3:
			n.send(t, fresh[i/4][:20+8+4]) // ESP header and 4 bytes of IV
			nTrunc++
		}
	}
	got := capP.collect(count, 3*time.Second, fromTo(17, n.remote, n.pP))
	if len(got) != count {
		t.Errorf("got %d decrypted packets, want all %d good ones", len(got), count)
	}
	for i, f := range got {
		if !bytes.Equal(f[14:], inner[i]) {
			t.Errorf("packet %d differs from the original", i)
		}
	}
	ps := e.Stats().Processor
	ss := s.in.Stats()
	if ps.Drops[sa.DropNoSA] != uint64(nUnknown) {
		t.Errorf("unknown SPI drops %d, want %d", ps.Drops[sa.DropNoSA], nUnknown)
	}
	if ss.Drops[sa.DropReplay] != uint64(nReplay) {
		t.Errorf("replay drops %d, want %d", ss.Drops[sa.DropReplay], nReplay)
	}
	if ss.Drops[sa.DropAuth] != uint64(nAuth) {
		t.Errorf("auth drops %d, want %d", ss.Drops[sa.DropAuth], nAuth)
	}
	trunc := ps.Drops[sa.DropTruncated] + ss.Drops[sa.DropTruncated] + ps.Drops[sa.DropMalformed] + ss.Drops[sa.DropMalformed]
	if trunc != uint64(nTrunc) {
		t.Errorf("truncated/malformed drops %d (processor %v, SA %v), want %d", trunc, ps.Drops, ss.Drops, nTrunc)
	}
	if ss.DecapsPkts != count {
		t.Errorf("decaps %d, want %d", ss.DecapsPkts, count)
	}
	w := e.Stats().Workers[0]
	if w.SADrops != uint64(nUnknown+nReplay+nAuth+nTrunc) {
		t.Errorf("worker SA drops %d, want %d", w.SADrops, nUnknown+nReplay+nAuth+nTrunc)
	}
	checkFrames(t, e)
}

func TestEngineStopStart(t *testing.T) {
	requireNet(t)
	n := newEngNet(t)
	s := newEngSAs(t, n)
	e, err := NewEngine(n.config(s))
	if err != nil {
		t.Fatal(err)
	}
	capP := newCapture(t, n.p.B)
	pkts := encryptScapy(t, scapySA(spiIn, n, false), [][]byte{
		innerUDP(n.remote, n.pP, 1, 50), innerUDP(n.remote, n.pP, 2, 50), innerUDP(n.remote, n.pP, 3, 50)}, 1)
	fds0 := openFDs(t)
	g0 := runtime.NumGoroutine()
	for cycle := range 3 {
		if err := n.nsE.Do(e.Start); err != nil {
			t.Fatalf("cycle %d: Start: %v", cycle, err)
		}
		if !n.c.A.XDPAttached(t) || !n.p.A.XDPAttached(t) {
			t.Errorf("cycle %d: program not attached after Start", cycle)
		}
		n.send(t, pkts[cycle])
		if got := capP.collect(1, 2*time.Second, fromTo(17, n.remote, n.pP)); len(got) != 1 {
			t.Errorf("cycle %d: %d packets through the engine, want 1", cycle, len(got))
		}
		if err := e.Stop(); err != nil {
			t.Fatalf("cycle %d: Stop: %v", cycle, err)
		}
		if err := e.Stop(); err != nil {
			t.Errorf("cycle %d: second Stop: %v", cycle, err)
		}
		if n.c.A.XDPAttached(t) || n.p.A.XDPAttached(t) {
			t.Errorf("cycle %d: program still attached after Stop", cycle)
		}
		if fds := openFDs(t); len(fds) != len(fds0) {
			t.Errorf("cycle %d: %d fds open, %d before:%s", cycle, len(fds), len(fds0), fdDiff(fds0, fds))
		}
		if !netns.WaitFor(time.Second, func() bool { return runtime.NumGoroutine() <= g0 }) {
			t.Errorf("cycle %d: %d goroutines, %d before", cycle, runtime.NumGoroutine(), g0)
		}
	}
	if d := s.in.Stats().DecapsPkts; d != 3 {
		t.Errorf("decaps %d after 3 cycles, want 3", d)
	}
}

func TestEngineConfigErrors(t *testing.T) {
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sa.NewSAD(sa.SADOptions{})})
	if err != nil {
		t.Fatal(err)
	}
	mac := []byte{2, 0, 0, 0, 0, 1}
	good := EngineConfig{Processor: proc, Cipher: Port{Name: "x", NextHop: mac}, Deliver: func([][]byte) {}}
	if _, err := NewEngine(good); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, mod := range map[string]func(*EngineConfig){
		"no processor":    func(c *EngineConfig) { c.Processor = nil },
		"no sink":         func(c *EngineConfig) { c.Deliver = nil },
		"bad next hop":    func(c *EngineConfig) { c.Cipher.NextHop = mac[:3] },
		"no interface":    func(c *EngineConfig) { c.Cipher.Name = "" },
		"too many queues": func(c *EngineConfig) { c.Queues = 2 },
		"batch":           func(c *EngineConfig) { c.BatchSize = MaxBatch + 1 },
		"plain without prefixes": func(c *EngineConfig) {
			c.Plain = &Port{Name: "y", NextHop: mac}
		},
	} {
		c := good
		mod(&c)
		if _, err := NewEngine(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err %v, want ErrInvalidConfig", name, err)
		}
	}
}

func TestEngineDeliver(t *testing.T) {
	requireNet(t)
	n := newEngNet(t)
	s := newEngSAs(t, n)
	var mu sync.Mutex
	var got [][]byte
	cfg := n.config(s)
	cfg.Plain, cfg.ProtectedPrefixes = nil, nil
	cfg.Deliver = func(pkts [][]byte) {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range pkts {
			got = append(got, bytes.Clone(p))
		}
	}
	e := startEngine(t, n, cfg)
	const count = 20
	var inner [][]byte
	for i := range count {
		inner = append(inner, innerUDP(n.remote, n.pP, uint16(i), 30+i))
	}
	n.send(t, encryptScapy(t, scapySA(spiIn, n, false), inner, 1)...)
	netns.WaitFor(2*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= count })
	mu.Lock()
	defer mu.Unlock()
	if len(got) != count {
		t.Fatalf("delivered %d packets, want %d", len(got), count)
	}
	for i := range got {
		if !bytes.Equal(got[i], inner[i]) {
			t.Errorf("delivered packet %d differs from the original", i)
		}
	}
	if st := e.Stats(); st.Workers[0].Decrypted != count || len(st.PlainSockets) != 0 {
		t.Errorf("stats %+v", st.Workers)
	}
	checkFrames(t, e)
}

// TestEngineSend encrypts packets given from Go (no plaintext
// interface) and has scapy decrypt what leaves the ciphertext side.
func TestEngineSend(t *testing.T) {
	requireNet(t)
	n := newEngNet(t)
	s := newEngSAs(t, n)
	cfg := n.config(s)
	cfg.Plain, cfg.ProtectedPrefixes = nil, nil
	cfg.Deliver = func([][]byte) {}
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Send(0, [][]byte{make([]byte, 40)}); !errors.Is(err, ErrClosed) {
		t.Errorf("Send before Start: %v, want ErrClosed", err)
	}
	if err := n.nsE.Do(e.Start); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := e.Stop(); err != nil {
			t.Error(err)
		}
		if _, err := e.Send(0, [][]byte{make([]byte, 40)}); !errors.Is(err, ErrClosed) {
			t.Errorf("Send after Stop: %v, want ErrClosed", err)
		}
	}()
	capC := newCapture(t, n.c.B)
	const count = 100 // more than one batch
	var inner [][]byte
	for i := range count {
		inner = append(inner, innerUDP(n.pP, n.remote, uint16(i), 10+i*7))
	}
	if _, err := e.Send(1, inner); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Send to queue 1 of 1: %v, want ErrInvalidConfig", err)
	}
	short := [][]byte{make([]byte, 10)}
	if k, err := e.Send(0, short); k != 0 || err != nil {
		t.Errorf("Send of a 10-byte packet: %d, %v; want 0, nil", k, err)
	}
	if k, err := e.Send(0, inner); k != count || err != nil {
		t.Fatalf("Send: %d, %v; want %d, nil", k, err, count)
	}
	got := capC.collect(count, 3*time.Second, fromTo(50, n.eC, n.pC))
	if len(got) != count {
		t.Fatalf("got %d ESP packets, want %d; stats %+v", len(got), count, e.Stats().Workers)
	}
	cases := make([]scapypeer.Case, len(got))
	for i, f := range got {
		cases[i] = scapypeer.Case{Op: scapypeer.Decrypt, SA: scapySA(spiOut, n, false), Packet: f[14:]}
	}
	for i, r := range scapypeer.Run(t, cases).Results {
		if r.Error != "" || !bytes.Equal(r.Packet, inner[i]) {
			t.Errorf("packet %d: scapy %s %s; decrypted equal to original: %v", i, r.ErrorType, r.Error, bytes.Equal(r.Packet, inner[i]))
		}
	}
	if w := e.Stats().Workers[0]; w.Sent != count || w.Encrypted != count || w.SendFull != 1 {
		t.Errorf("worker stats %+v", w)
	}
	checkFrames(t, e)
}

// TestEngineSharded runs two workers on two queues with the Sharded
// processor and each inbound SA pinned to a different worker, so
// whichever queue a packet arrives on, some packets are handed to the
// other worker and come out of its Worker.Drain.
func TestEngineSharded(t *testing.T) {
	requireNet(t)
	n := newEngNetQ(t, 2)
	tr := esp.MustParseTransform("aes128gcm16")
	sad := sa.NewSAD(sa.SADOptions{})
	var ins []*sa.SA
	for w, spi := range []uint32{spiIn, spiInNATT} {
		s, err := sa.New(sa.Config{SPI: spi, Direction: sa.In, Mode: esp.Tunnel, Local: n.eC, Remote: n.pC,
			Transform: tr, Key: engKey, UDPEncap: spi == spiInNATT, Worker: w, PinWorker: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := sad.Add(s); err != nil {
			t.Fatal(err)
		}
		ins = append(ins, s)
	}
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Workers: 2, Concurrency: sa.Sharded})
	if err != nil {
		t.Fatal(err)
	}
	cfg := n.config(&engSAs{proc: proc})
	cfg.Queues = 2
	e := startEngine(t, n, cfg)
	capP := newCapture(t, n.p.B)
	const count = 30
	var inner, innerN [][]byte
	for i := range count {
		inner = append(inner, innerUDP(n.remote, n.pP, uint16(i), 50))
		innerN = append(innerN, innerUDP(n.remote, n.pP, uint16(500+i), 70))
	}
	espPkts := encryptScapy(t, scapySA(spiIn, n, false), inner, 1)
	nattPkts := encryptScapy(t, scapySA(spiInNATT, n, true), innerN, 1)
	for i := range count {
		n.send(t, espPkts[i], nattPkts[i])
	}
	got := capP.collect(2*count, 3*time.Second, fromTo(17, n.remote, n.pP))
	st := e.Stats()
	if len(got) != 2*count {
		t.Fatalf("got %d decrypted packets, want %d; stats %+v %+v", len(got), 2*count, st.Workers, st.Processor)
	}
	var handed, rx uint64
	for _, w := range st.Workers {
		handed += w.HandedOff
		rx += w.CipherRX
	}
	if handed == 0 || handed != st.Processor.HandedOff {
		t.Errorf("handed off %d (processor %d), want > 0 and equal", handed, st.Processor.HandedOff)
	}
	if rx != 2*count {
		t.Errorf("received %d, want %d", rx, 2*count)
	}
	for _, s := range ins {
		if d := s.Stats().DecapsPkts; d != count {
			t.Errorf("SA %x: decaps %d, want %d", s.SPI(), d, count)
		}
	}
	checkFrames(t, e)
}

func TestL2Len(t *testing.T) {
	eth := func(types ...uint16) []byte {
		b := make([]byte, 12, 64)
		for _, ty := range types {
			b = binary.BigEndian.AppendUint16(b, ty)
			b = append(b, 0, 1) // VLAN TCI (ignored after the last type)
		}
		return append(b, make([]byte, 20)...)
	}
	for _, c := range []struct {
		name  string
		frame []byte
		want  int
	}{
		{"ipv4", eth(0x0800), 14},
		{"ipv6", eth(0x86dd), 14},
		{"vlan ipv4", eth(0x8100, 0x0800), 18},
		{"qinq ipv6", eth(0x88a8, 0x8100, 0x86dd), 22},
		{"three tags", eth(0x8100, 0x8100, 0x8100, 0x0800), 0},
		{"arp", eth(0x0806), 0},
		{"short", make([]byte, 13), 0},
		{"vlan cut", eth(0x8100)[:16], 0},
		{"empty", nil, 0},
	} {
		if got := l2Len(c.frame); got != c.want {
			t.Errorf("%s: l2Len %d, want %d", c.name, got, c.want)
		}
	}
}

// TestEngineLiveSAUpdate changes the SAD while the engine runs: packets
// for an SPI not yet installed are dropped as "no SA", the same SPI
// decrypts once the control plane adds it, and is dropped again after
// it is deleted.
func TestEngineLiveSAUpdate(t *testing.T) {
	requireNet(t)
	n := newEngNet(t)
	s := newEngSAs(t, n)
	e := startEngine(t, n, n.config(s))
	capP := newCapture(t, n.p.B)

	const spiNew = 0x3001
	const count = 8
	var inner [][]byte
	for i := range count {
		inner = append(inner, innerUDP(n.remote, n.pP, uint16(2000+i), 100))
	}
	pkts := encryptScapy(t, scapySA(spiNew, n, false), inner, 1)

	n.send(t, pkts[:2]...) // before the SA exists
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(3 * time.Second); !ok(); {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; processor %+v", what, e.Stats().Processor)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("2 no-SA drops", func() bool { return e.Stats().Processor.Drops[sa.DropNoSA] == 2 })

	in, err := sa.New(sa.Config{Name: "new", SPI: spiNew, Direction: sa.In, Mode: esp.Tunnel,
		Local: n.eC, Remote: n.pC, Transform: esp.MustParseTransform("aes128gcm16"), Key: engKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.sad.Add(in); err != nil {
		t.Fatal(err)
	}
	n.send(t, pkts[2:6]...)
	got := capP.collect(4, 3*time.Second, fromTo(17, n.remote, n.pP))
	if len(got) != 4 {
		t.Fatalf("after adding the SA: %d packets decrypted, want 4", len(got))
	}
	for i, f := range got {
		if !bytes.Equal(f[14:], inner[2+i]) {
			t.Errorf("packet %d differs from the original", 2+i)
		}
	}
	if st := in.Stats(); st.DecapsPkts != 4 {
		t.Errorf("new SA decaps %d, want 4", st.DecapsPkts)
	}

	if err := s.sad.Delete(sa.In, spiNew); err != nil {
		t.Fatal(err)
	}
	n.send(t, pkts[6:]...)
	waitFor("2 more no-SA drops", func() bool { return e.Stats().Processor.Drops[sa.DropNoSA] == 4 })
	checkFrames(t, e)
}
