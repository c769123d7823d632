//go:build linux

package xdp

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"encoding/binary"
	"errors"
	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/netns"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/sa"
)

// udpHdrs is the outer IPv4 and UDP header the UDP port puts before
// each received ESP packet (and takes off each encrypted one).
const udpHdrs = 20 + 8

// udpPort is the product UDP cipher port under its tests' name.
type udpPort = UDPPort

// newUDPPort returns a UDP port for local (port 0: a free one, see
// Addr) with the defaults (GSO and GRO on).
func newUDPPort(local netip.AddrPort) *UDPPort {
	return NewUDPPort(UDPPortConfig{Local: local, EphemeralPort: true})
}

// udpSide is one engine of TestUDPCipherPortTraffic: a UDP cipher port,
// an in-memory plaintext port.
type udpSide struct {
	e     *Engine
	udp   *udpPort
	plain *memPort
}

// newUDPPair starts two engines on loopback, each with workers workers
// of the given concurrency mode, whose cipher sides are udpPorts that
// carry ESP in UDP to each other: a at 127.0.0.1, b at 127.0.0.2.
// Nothing needs privileges: no XDP program, no interface.
func newUDPPair(t *testing.T, workers int, mode sa.Concurrency) (a, b *udpSide) {
	t.Helper()
	return newUDPPairOn(t, workers, mode, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"), UDPPortConfig{})
}

// newUDPPairOn is newUDPPair with the two ports on addrA and addrB (free
// ports) and the rest of their configuration from cfg.
func newUDPPairOn(t *testing.T, workers int, mode sa.Concurrency, addrA, addrB netip.Addr, cfg UDPPortConfig) (a, b *udpSide) {
	t.Helper()
	port := func(addr netip.Addr) *UDPPort {
		c := cfg
		c.Local, c.EphemeralPort = netip.AddrPortFrom(addr, 0), true
		return NewUDPPort(c)
	}
	a = &udpSide{udp: port(addrA), plain: &memPort{}}
	b = &udpSide{udp: port(addrB), plain: &memPort{}}
	// Bind once to learn the ports the SAs need, then let Start bind
	// again on them.
	for _, s := range []*udpSide{a, b} {
		if err := s.udp.Bind(PortEnv{Workers: 1}); err != nil {
			t.Skipf("loopback UDP: %v", err)
		}
		s.udp.Unbind()
	}
	// The processor takes UDP to its NATTPort as ESP in UDP: the
	// port's bound port.
	start := func(s *udpSide, out, in *sa.SA) {
		sad := sa.NewSAD(sa.SADOptions{})
		for _, x := range []*sa.SA{out, in} {
			if err := sad.Add(x); err != nil {
				t.Fatal(err)
			}
		}
		tun := sa.NewTunnel("peer")
		tun.SetOutbound(out)
		proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Tunnel: tun, Workers: workers, Concurrency: mode,
			NATTPort: s.udp.Addr().Port()})
		if err != nil {
			t.Fatal(err)
		}
		e := startEngineIn(t, nil, EngineConfig{Processor: proc, CipherPort: s.udp, PlainPort: s.plain, Workers: workers,
			UMEM: UMEMConfig{NumFrames: 2048, FillSize: 256, CompletionSize: 256}})
		s.e = e
	}
	la, lb := a.udp.Addr(), b.udp.Addr()
	start(a, udpEncapSA(t, 0x3001, sa.Out, la, lb), udpEncapSA(t, 0x3002, sa.In, la, lb))
	start(b, udpEncapSA(t, 0x3002, sa.Out, lb, la), udpEncapSA(t, 0x3001, sa.In, lb, la))
	return a, b
}

// TestUDPCipherPortTraffic runs two engines with no XDP program at all,
// each one's ciphertext side a UDP socket port (EngineConfig.CipherPort)
// and its plaintext side an in-memory port, connected over loopback,
// with two workers each, both ways at once, in each concurrency mode.
// Invariants: every packet injected on one side arrives exactly once and
// unchanged out of the other side's plaintext port (the outer headers
// the port writes pass the SAs' outer address and port checks), the
// ports' counters agree with the engines', one peer's ESP is received
// by one worker only (the SO_REUSEPORT steering), and every frame is
// back in its UMEM afterwards (checkFrames).
func TestUDPCipherPortTraffic(t *testing.T) {
	for _, mode := range []sa.Concurrency{sa.Shared, sa.Sharded, sa.Ordered} {
		t.Run(mode.String(), func(t *testing.T) {
			a, b := newUDPPair(t, 2, mode)
			const count = 300
			inner := func(from, to netip.Addr, base int) [][]byte {
				var ps [][]byte
				for i := range count {
					ps = append(ps, innerUDP(from, to, uint16(base+i), 20+i*3))
				}
				return ps
			}
			netA, netB := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
			ab, ba := inner(netA, netB, 0), inner(netB, netA, 5000)
			var wg sync.WaitGroup
			// Flow control: wait for the peer every 20 packets (socket
			// buffer drops on a loaded machine are not what this tests).
			send := func(from, to *udpSide, ps [][]byte) {
				defer wg.Done()
				for i, p := range ps {
					from.plain.Inject(i%2, p)
					if i%20 == 19 {
						netns.WaitFor(3*time.Second, func() bool { return len(to.plain.received()) >= i+1 })
					}
				}
			}
			wg.Add(2)
			go send(a, b, ab)
			go send(b, a, ba)
			wg.Wait()
			checkArrivedBothWays(t, a, b, ab, ba)
			for _, s := range []*udpSide{a, b} {
				st := s.e.Stats()
				var rx, dec, enc uint64
				for _, w := range st.Workers {
					rx, dec, enc = rx+w.CipherRX, dec+w.Decrypted, enc+w.Encrypted
				}
				if st.CipherPort == nil || st.CipherPort.RX != rx || st.CipherPort.TX != enc || dec != count || enc != count ||
					st.CipherPort.Drops != 0 {
					t.Errorf("counters: port %+v, workers CipherRX %d Decrypted %d Encrypted %d, want %d each", st.CipherPort, rx, dec, enc, count)
				}
				// Steering by SO_REUSEPORT: the one peer's packets all
				// reach one worker (its socket), in order.
				busy := 0
				for _, w := range st.Workers {
					if w.CipherRX > 0 {
						busy++
					}
				}
				if busy != 1 {
					t.Errorf("one peer's ESP received by %d workers, want 1: %+v", busy, st.Workers)
				}
				if st.CipherSockets != nil || st.CipherProgram.ESPRedirected != 0 {
					t.Errorf("AF_XDP cipher counters without an interface: %+v %+v", st.CipherSockets, st.CipherProgram)
				}
				checkFrames(t, s.e)
			}
		})
	}
}

// TestUDPCipherPortAlloc checks that the UDP port's batch loop, Receive
// of a batch of datagrams and Transmit of it back to the sender,
// allocates nothing per packet: the outer headers are written into the
// frames, the message arrays are the worker's own, the system calls are
// raw.
func TestUDPCipherPortAlloc(t *testing.T) {
	u, port, _ := bindLoopbackUDPPort(t, UMEMConfig{NumFrames: 256, FillSize: 64, CompletionSize: 64}, 16)
	peer := loopbackUDPPeer(t)
	unix.SetsockoptTimeval(peer, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2})
	const runs, batch = 20, 8
	to := &unix.SockaddrInet4{Addr: port.Addr().Addr().As4(), Port: int(port.Addr().Port())}
	payload := make([]byte, 100)
	payload[1] = 1 // ESP, not the non-ESP marker
	// AllocsPerRun runs the function once more than runs.
	for i := range (runs + 1) * batch {
		payload[0] = byte(i)
		if err := unix.Sendto(peer, payload, 0, to); err != nil {
			t.Fatal(err)
		}
	}
	pkts := make([]sa.Packet, batch)
	moved := 0
	allocs := testing.AllocsPerRun(runs, func() {
		n := 0
		for tries := 0; n < batch && tries < 1000; tries++ {
			n += port.Receive(0, pkts[n:])
		}
		for i := range n {
			// Back to the sender: swap the outer addresses and ports.
			b := pkts[i].Data()
			var a [4]byte
			copy(a[:], b[12:16])
			copy(b[12:16], b[16:20])
			copy(b[16:20], a[:])
			sp := binary.BigEndian.Uint16(b[20:])
			copy(b[20:22], b[22:24])
			binary.BigEndian.PutUint16(b[22:], sp)
		}
		port.Transmit(0, pkts[:n])
		moved += n
	})
	if allocs != 0 {
		t.Errorf("%v allocations per batch of %d", allocs, batch)
	}
	if moved != (runs+1)*batch {
		t.Fatalf("moved %d datagrams, want %d; port %+v", moved, (runs+1)*batch, port.Stats())
	}
	// The echoes arrive whole, and every frame is back.
	buf := make([]byte, 200)
	for i := range moved {
		n, _, err := unix.Recvfrom(peer, buf, 0)
		if err != nil || n != len(payload) {
			t.Fatalf("echo %d: %d bytes, %v", i, n, err)
		}
	}
	if st := port.Stats(); st.RX != uint64(moved) || st.TX != uint64(moved) || st.Drops != 0 {
		t.Errorf("port counters %+v, want %d received and sent", st, moved)
	}
	if c := u.Counts(); c.App != 0 {
		t.Errorf("frames not returned: %+v", c)
	}
}

// TestUDPCipherPortDrops checks the port's bad-input handling: a packet
// to transmit that is not IPv4/UDP is dropped and counted, never sent
// nor panicked on, and its frame is freed; a datagram too long for a
// frame is dropped (counted), never delivered in part.
func TestUDPCipherPortDrops(t *testing.T) {
	u, port, env := bindLoopbackUDPPort(t, UMEMConfig{NumFrames: 64, FillSize: 16, CompletionSize: 16}, 8)
	pkts := make([]sa.Packet, 3)
	if env.Alloc(pkts) != 3 {
		t.Fatal("no frames")
	}
	copy(pkts[0].Buf[pkts[0].Off:], ipv4(netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.1"), 50, 1, make([]byte, 40)))
	pkts[0].Len = 60 // bare ESP: not for a UDP socket
	pkts[1].Len = 10 // too short for the headers
	pkts[2].Len = 40
	pkts[2].Buf[pkts[2].Off] = 0x60 // IPv6
	port.Transmit(0, pkts)
	if st := port.Stats(); st.Drops != 3 || st.TX != 0 {
		t.Errorf("counters %+v, want 3 drops", st)
	}
	peer, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(peer) })
	to := &unix.SockaddrInet4{Addr: port.Addr().Addr().As4(), Port: int(port.Addr().Port())}
	if err := unix.Sendto(peer, make([]byte, env.MaxPacket()), 0, to); err != nil { // 28 bytes too long
		t.Fatal(err)
	}
	got := 0
	netns.WaitFor(2*time.Second, func() bool {
		got += port.Receive(0, pkts)
		return port.Stats().Drops == 4
	})
	if st := port.Stats(); got != 0 || st.Drops != 4 || st.RX != 0 {
		t.Errorf("oversized datagram: %d delivered, counters %+v", got, st)
	}
	if c := u.Counts(); c.App != 0 {
		t.Errorf("frames not returned: %+v", c)
	}
}

// TestEngineCipherPortConfig checks that an engine takes exactly one of
// Cipher and CipherPort.
func TestEngineCipherPortConfig(t *testing.T) {
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sa.NewSAD(sa.SADOptions{})})
	if err != nil {
		t.Fatal(err)
	}
	mac := []byte{2, 0, 0, 0, 0, 1}
	for _, c := range []struct {
		name string
		cfg  EngineConfig
		ok   bool
	}{
		{"neither", EngineConfig{Processor: proc, PlainPort: &memPort{}}, false},
		{"both", EngineConfig{Processor: proc, Cipher: Port{Name: "lo", NextHop: mac}, CipherPort: newUDPPort(netip.AddrPort{}), PlainPort: &memPort{}}, false},
		{"both, Cipher only a VLAN", EngineConfig{Processor: proc, Cipher: Port{VLAN: 5}, CipherPort: newUDPPort(netip.AddrPort{}), Deliver: func([][]byte) {}}, false},
		{"CipherPort", EngineConfig{Processor: proc, CipherPort: newUDPPort(netip.AddrPort{}), Deliver: func([][]byte) {}}, true},
		{"Cipher", EngineConfig{Processor: proc, Cipher: Port{Name: "lo", NextHop: mac}, Deliver: func([][]byte) {}}, true},
	} {
		_, err := NewEngine(c.cfg)
		if c.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalidConfig)) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// TestUDPCipherPortRandom hands the UDP port random packets to transmit
// (random bytes, some made IPv4/UDP to the port itself) and random
// datagrams to receive, over random batch sizes. Invariants: no panic;
// every packet handed to Transmit is either sent or counted as a drop
// (TX + Drops grows by the batch); every datagram received comes out as
// one packet whose outer IPv4 header has a valid checksum, total length
// Len, source the sender and destination the port, and whose payload is
// the datagram unchanged; every frame is back in the UMEM at the end.
func TestUDPCipherPortRandom(t *testing.T) {
	u, port, env := bindLoopbackUDPPort(t, UMEMConfig{NumFrames: 256, FillSize: 64, CompletionSize: 64}, 32)
	peer := loopbackUDPPeer(t)
	psa, _ := unix.Getsockname(peer)
	peerPort := uint16(psa.(*unix.SockaddrInet4).Port)
	to := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(port.Addr().Port())}
	rng := rand.New(rand.NewPCG(7, 13))
	pkts := make([]sa.Packet, 32)
	for round := range 300 {
		// Transmit a random batch.
		n := env.Alloc(pkts[:1+rng.IntN(len(pkts))])
		before := port.Stats()
		for i := range n {
			p := &pkts[i]
			p.Len = rng.IntN(200)
			b := p.Buf[p.Off : p.Off+p.Len]
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			if rng.IntN(2) == 0 && p.Len >= udpHdrs { // a well-formed one, to the peer
				putIPv4UDP(b, [4]byte{127, 0, 0, 1}, [4]byte{127, 0, 0, 1}, port.Addr().Port(), peerPort)
			}
		}
		port.Transmit(0, pkts[:n])
		after := port.Stats()
		if got := (after.TX + after.Drops) - (before.TX + before.Drops); got != uint64(n) {
			t.Fatalf("round %d: %d packets handed over, %d sent or dropped", round, n, got)
		}
		// Drain what reached the peer (not checked here).
		buf := make([]byte, 256)
		for {
			if _, _, err := unix.Recvfrom(peer, buf, unix.MSG_DONTWAIT); err != nil {
				break
			}
		}
		// Receive a random datagram.
		dg := make([]byte, 1+rng.IntN(300))
		for j := range dg {
			dg[j] = byte(rng.Uint32())
		}
		if len(dg) >= 4 && binary.BigEndian.Uint32(dg) == 0 || len(dg) == 1 && dg[0] == 0xff {
			dg[0] = 1 // not a marker: those are TestUDPPortHostile's
		}
		if err := unix.Sendto(peer, dg, 0, to); err != nil {
			t.Fatal(err)
		}
		k := 0
		netns.WaitFor(time.Second, func() bool { k = port.Receive(0, pkts[:4]); return k > 0 })
		if k != 1 {
			t.Fatalf("round %d: received %d packets for one datagram", round, k)
		}
		b := pkts[0].Data()
		var s uint32
		for i := 0; i < 20; i += 2 {
			s += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		for s > 0xffff {
			s = s>>16 + s&0xffff
		}
		if s != 0xffff || int(binary.BigEndian.Uint16(b[2:])) != len(b) || [4]byte(b[12:16]) != [4]byte{127, 0, 0, 1} ||
			binary.BigEndian.Uint16(b[20:]) != peerPort || binary.BigEndian.Uint16(b[22:]) != port.Addr().Port() ||
			!bytes.Equal(b[udpHdrs:], dg) {
			t.Fatalf("round %d: received packet % x for datagram % x", round, b, dg)
		}
		env.Free(pkts[:1])
	}
	if c := u.Counts(); c.App != 0 {
		t.Errorf("frames not returned: %+v", c)
	}
}

// TestUDPCipherPortWithAFXDPPlain runs an engine whose ciphertext side
// is a UDP socket port (192.0.2.1:4500 in nsE, no XDP program there)
// and whose plaintext side is the AF_XDP interface p.A, against a Go
// peer with a UDP socket at 192.0.2.2:4500 in nsC, both ways.
// Invariants: plaintext from nsP to the protected prefix leaves as ESP
// in UDP that the peer decrypts to the packets sent, unchanged and each
// once; ESP in UDP from the peer comes out of p.A decrypted, each once;
// no frame leaks (checkFrames).
func TestUDPCipherPortWithAFXDPPlain(t *testing.T) {
	requireNet(t)
	n := newEngNet(t)
	tr := esp.MustParseTransform("aes128gcm16")
	mk := func(spi uint32, dir sa.Direction, local, remote netip.Addr) *sa.SA {
		s, err := sa.New(sa.Config{SPI: spi, Direction: dir, Mode: esp.Tunnel, Local: local, Remote: remote,
			UDPEncap: true, Transform: tr, Key: engKey, ReplayWindow: 1024})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	sad, peerSAD := sa.NewSAD(sa.SADOptions{}), sa.NewSAD(sa.SADOptions{})
	out, peerOut := mk(0x4001, sa.Out, n.eC, n.pC), mk(0x4002, sa.Out, n.pC, n.eC)
	for _, x := range []struct {
		sad *sa.SAD
		s   *sa.SA
	}{{sad, out}, {sad, mk(0x4002, sa.In, n.eC, n.pC)}, {peerSAD, peerOut}, {peerSAD, mk(0x4001, sa.In, n.pC, n.eC)}} {
		if err := x.sad.Add(x.s); err != nil {
			t.Fatal(err)
		}
	}
	tun, peerTun := sa.NewTunnel("peer"), sa.NewTunnel("engine")
	tun.SetOutbound(out)
	peerTun.SetOutbound(peerOut)
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Tunnel: tun})
	if err != nil {
		t.Fatal(err)
	}
	peer, err := sa.NewProcessor(sa.ProcessorOptions{SAD: peerSAD, Tunnel: peerTun})
	if err != nil {
		t.Fatal(err)
	}
	cfg := n.config(&engSAs{proc: proc})
	cfg.Cipher, cfg.CipherPort = Port{}, newUDPPort(netip.AddrPortFrom(n.eC, 4500))
	e := startEngine(t, n, cfg)
	var pfd int
	if err := n.nsC.Do(func() (err error) {
		if pfd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		return unix.Bind(pfd, &unix.SockaddrInet4{Addr: n.pC.As4(), Port: 4500})
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(pfd) })
	unix.SetsockoptTimeval(pfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 3})
	capP := newCapture(t, n.p.B)

	const count = 50
	// Encrypt direction: nsP → protected prefix → ESP in UDP to the peer.
	var innerOut [][]byte
	for i := range count {
		innerOut = append(innerOut, innerUDP(n.pP, n.remote, uint16(i), 20+i*7))
	}
	if err := sendIPv4(n.nsP, unix.IPPROTO_RAW, innerOut...); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for _, p := range innerOut {
		want[string(p)]++
	}
	buf := make([]byte, 4096)
	for i := range count {
		m, from, err := unix.Recvfrom(pfd, buf[esp.MaxHeadroom+udpHdrs:len(buf)-esp.MaxTailroom], 0)
		if err != nil {
			t.Fatalf("peer received %d of %d: %v; stats %+v", i, count, err, e.Stats().CipherPort)
		}
		src := from.(*unix.SockaddrInet4)
		if src.Addr != n.eC.As4() || src.Port != 4500 {
			t.Errorf("ESP in UDP from %v:%d, want %v:4500", src.Addr, src.Port, n.eC)
		}
		pk := []sa.Packet{{Buf: buf, Off: esp.MaxHeadroom, Len: udpHdrs + m}}
		putIPv4UDP(buf[esp.MaxHeadroom:esp.MaxHeadroom+udpHdrs+m], src.Addr, n.pC.As4(), uint16(src.Port), 4500)
		peer.Worker(0).Inbound(pk)
		if pk[0].Verdict != sa.VerdictOK {
			t.Fatalf("peer decrypt %d: %v %v", i, pk[0].Verdict, pk[0].Reason)
		}
		if want[string(pk[0].Data())] == 0 {
			t.Errorf("peer decrypted packet %d that was not sent, or twice", i)
		}
		want[string(pk[0].Data())]--
	}
	// Decrypt direction: the peer's ESP in UDP → plaintext out of p.A.
	to := &unix.SockaddrInet4{Addr: n.eC.As4(), Port: 4500}
	var innerIn [][]byte
	for i := range count {
		p := innerUDP(n.remote, n.pP, uint16(100+i), 30+i*5)
		innerIn = append(innerIn, p)
		pk := []sa.Packet{{Buf: make([]byte, esp.MaxHeadroom+len(p)+esp.MaxTailroom), Off: esp.MaxHeadroom, Len: len(p)}}
		copy(pk[0].Buf[esp.MaxHeadroom:], p)
		peer.Worker(0).Outbound(pk)
		if pk[0].Verdict != sa.VerdictOK {
			t.Fatalf("peer encrypt: %v %v", pk[0].Verdict, pk[0].Reason)
		}
		if err := unix.Sendto(pfd, pk[0].Data()[udpHdrs:], 0, to); err != nil {
			t.Fatal(err)
		}
		if i%10 == 9 {
			netns.WaitFor(2*time.Second, func() bool { return e.Stats().Workers[0].Decrypted >= uint64(i+1) })
		}
	}
	got := capP.collect(count, 5*time.Second, fromTo(17, n.remote, n.pP))
	wantIn := map[string]int{}
	for _, p := range innerIn {
		wantIn[string(p)]++
	}
	for i, f := range got {
		if wantIn[string(f[14:])] == 0 {
			t.Errorf("frame %d on the plaintext side was not sent, or twice", i)
		}
		wantIn[string(f[14:])]--
	}
	if len(got) != count {
		t.Errorf("%d of %d decrypted packets left the plaintext side; stats %+v", len(got), count, e.Stats().Workers)
	}
	// TX counts what the engine encrypted: the packets above, and the
	// ICMP port unreachables nsP answers the decrypted UDP with.
	st := e.Stats()
	if st.CipherPort == nil || st.CipherPort.RX != count || st.CipherPort.TX != st.Workers[0].Encrypted ||
		st.CipherPort.TX < count || st.CipherPort.Drops != 0 || st.Workers[0].Decrypted != count {
		t.Errorf("cipher port counters %+v, workers %+v", st.CipherPort, st.Workers)
	}
	checkFrames(t, e)
}

// bindLoopbackUDPPort binds a UDP cipher port on 127.0.0.1 (a free UDP
// port) for one worker asking for batch packets at once, over a new
// UMEM of cfg; it skips t when loopback UDP cannot be bound. Port and
// UMEM are released when t ends.
func bindLoopbackUDPPort(t *testing.T, cfg UMEMConfig, batch int) (*UMEM, *udpPort, PortEnv) {
	t.Helper()
	u, err := NewUMEM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	port := newUDPPort(netip.MustParseAddrPort("127.0.0.1:0"))
	env := PortEnv{UMEM: u, Workers: 1, BatchSize: batch, Headroom: esp.MaxHeadroom, Tailroom: esp.MaxTailroom, Wake: func(int) {}}
	if err := port.Bind(env); err != nil {
		t.Skipf("loopback UDP: %v", err)
	}
	t.Cleanup(func() { port.Unbind() })
	return u, port, env
}

// loopbackUDPPeer returns a blocking UDP socket bound to 127.0.0.1 (a
// free port), closed when t ends.
func loopbackUDPPeer(t *testing.T) int {
	t.Helper()
	peer, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(peer) })
	if err := unix.Bind(peer, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	return peer
}

// checkArrivedBothWays waits (bounded) until b's plain side received as
// many packets as ab holds and a's as ba holds, then checks each side got
// exactly those packets, each once, in any order.
func checkArrivedBothWays(t *testing.T, a, b *udpSide, ab, ba [][]byte) {
	t.Helper()
	for _, c := range []struct {
		name string
		to   *udpSide
		want [][]byte
	}{{"a→b", b, ab}, {"b→a", a, ba}} {
		netns.WaitFor(5*time.Second, func() bool { return len(c.to.plain.received()) >= len(c.want) })
		want := map[string]int{}
		for _, p := range c.want {
			want[string(p)]++
		}
		got := c.to.plain.received()
		for i, p := range got {
			if want[string(p)] == 0 {
				t.Errorf("%s: packet %d (%d bytes) was not sent, or arrived twice", c.name, i, len(p))
			}
			want[string(p)]--
		}
		if len(got) != len(c.want) {
			t.Errorf("%s: %d of %d packets arrived; stats %+v", c.name, len(got), len(c.want), c.to.e.Stats().Workers)
		}
	}
}
