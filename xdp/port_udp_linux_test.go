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
	"fmt"
	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/netns"
	"net/netip"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/sa"
)

// udpHdrs is the outer IPv4 and UDP header udpPort puts before each
// received ESP packet (and takes off each encrypted one).
const udpHdrs = 20 + 8

// udpPort is a ciphertext-side EnginePort over UDP sockets: ESP in UDP
// (RFC 3948) as an embedder carries it without any XDP program. Worker
// w has a socket of its own, every one bound to the same address with
// SO_REUSEPORT, so the kernel's reuseport hash of the 4-tuple decides
// which worker receives a datagram: every packet from one peer address
// and port (so every packet of one SA) reaches the same worker, in
// order; the sa processor hands a packet to the SA's owner where the
// concurrency mode wants one (Sharded, PerCPU). Worker w sends on its
// own socket, so every packet leaves from the bound port (the SAs'
// LocalPort).
//
// Receive gives the engine whole IPv4/UDP/ESP packets: it writes an
// outer IPv4 header (the datagram's source, the bound address) and UDP
// header in front of the payload, so the SAs check their outer
// addresses and ports as they do on AF_XDP. Transmit takes the outer
// headers off again and sends each payload to the outer destination
// address and port with sendmmsg; a packet that is not IPv4/UDP (bare
// ESP cannot travel over a UDP socket) or that the socket does not take
// is dropped and counted. Datagrams go in and out of UMEM frames by
// copy; recvmmsg and sendmmsg move a batch per system call, and
// neither direction allocates.
type udpPort struct {
	local netip.AddrPort
	env   PortEnv
	q     []*udpQueue
}

// udpQueue is worker w's socket and its batch arrays (only worker w
// touches them).
type udpQueue struct {
	fd    int
	msgs  [MaxBatch]unix.Mmsghdr
	iov   [MaxBatch]unix.Iovec
	names [MaxBatch]unix.RawSockaddrInet4

	rx, tx, drops atomic.Uint64
}

// errUDPPort is returned by udpPort.Bind for an address it cannot serve.
var errUDPPort = errors.New("udp port: IPv4 address with a port needed")

// newUDPPort returns a port for local (an IPv4 address and a port: 0
// picks one at Bind, see Addr).
func newUDPPort(local netip.AddrPort) *udpPort { return &udpPort{local: local} }

// Addr returns the bound address (valid after Bind).
func (u *udpPort) Addr() netip.AddrPort { return u.local }

// Bind opens one non-blocking socket per worker on the same address.
func (u *udpPort) Bind(env PortEnv) (err error) {
	if !u.local.Addr().Is4() {
		return errUDPPort
	}
	u.env = env
	u.q = make([]*udpQueue, 0, env.Workers)
	defer func() {
		if err != nil {
			u.Unbind()
		}
	}()
	for range env.Workers {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("udp port: socket: %w", err)
		}
		q := &udpQueue{fd: fd}
		u.q = append(u.q, q)
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fmt.Errorf("udp port: SO_REUSEPORT: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: u.local.Addr().As4(), Port: int(u.local.Port())}); err != nil {
			return fmt.Errorf("udp port: bind %v: %w", u.local, err)
		}
		if u.local.Port() == 0 { // the first socket picked the port: the others share it
			sn, err := unix.Getsockname(fd)
			if err != nil {
				return fmt.Errorf("udp port: getsockname: %w", err)
			}
			u.local = netip.AddrPortFrom(u.local.Addr(), uint16(sn.(*unix.SockaddrInet4).Port))
		}
		for i := range q.msgs {
			q.msgs[i].Hdr.Iov = &q.iov[i]
			q.msgs[i].Hdr.SetIovlen(1)
			q.msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&q.names[i]))
		}
	}
	return nil
}

// Unbind closes the sockets.
func (u *udpPort) Unbind() error {
	var errs []error
	for _, q := range u.q {
		if q.fd >= 0 {
			errs = append(errs, unix.Close(q.fd))
			q.fd = -1
		}
	}
	return errors.Join(errs...)
}

// mmsg runs recvmmsg or sendmmsg (trap) on q's first n messages without
// waiting and returns how many it moved (0 on EAGAIN or an error).
func (q *udpQueue) mmsg(trap uintptr, n int) int {
	r, _, e := unix.Syscall6(trap, uintptr(q.fd), uintptr(unsafe.Pointer(&q.msgs[0])), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0
	}
	return int(r)
}

// Receive reads up to len(pkts) datagrams into fresh frames, past room
// for the outer headers it then writes.
func (u *udpPort) Receive(w int, pkts []sa.Packet) int {
	q := u.q[w]
	n := u.env.Alloc(pkts[:min(len(pkts), MaxBatch)])
	if n == 0 {
		return 0
	}
	maxPayload := u.env.MaxPacket() - udpHdrs
	for i := range n {
		p := &pkts[i]
		q.iov[i].Base = &p.Buf[p.Off+udpHdrs]
		q.iov[i].SetLen(maxPayload)
		q.msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
		q.msgs[i].Hdr.Flags = 0
	}
	got := q.mmsg(unix.SYS_RECVMMSG, n)
	k := 0
	for i := range got {
		m := &q.msgs[i]
		if m.Hdr.Flags&unix.MSG_TRUNC != 0 || q.names[i].Family != unix.AF_INET {
			q.drops.Add(1) // too long for a frame: never half a packet
			u.env.Free(pkts[i : i+1])
			continue
		}
		p := pkts[i]
		src := &q.names[i]
		sport := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&src.Port))[:])
		p.Len = udpHdrs + int(m.Len)
		putIPv4UDP(p.Buf[p.Off:p.Off+p.Len], src.Addr, u.local.Addr().As4(), sport, u.local.Port())
		pkts[k] = p
		k++
	}
	u.env.Free(pkts[got:n])
	q.rx.Add(uint64(k))
	return k
}

// putIPv4UDP writes an IPv4 header (TTL 64, checksum set) and a UDP
// header (checksum 0, which RFC 3948 §3.1.2 lets ESP in UDP use) for
// the payload after them in b.
func putIPv4UDP(b []byte, src, dst [4]byte, sport, dport uint16) {
	b[0], b[1] = 0x45, 0
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	clear(b[4:8]) // ID, flags, fragment offset
	b[8], b[9] = 64, unix.IPPROTO_UDP
	clear(b[10:12])
	copy(b[12:16], src[:])
	copy(b[16:20], dst[:])
	var s uint32
	for i := 0; i < 20; i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	s = s>>16 + s&0xffff
	s += s >> 16
	binary.BigEndian.PutUint16(b[10:], ^uint16(s))
	binary.BigEndian.PutUint16(b[20:], sport)
	binary.BigEndian.PutUint16(b[22:], dport)
	binary.BigEndian.PutUint16(b[24:], uint16(len(b)-20))
	clear(b[26:28])
}

// Transmit sends each packet's UDP payload to its outer destination and
// frees every frame.
func (u *udpPort) Transmit(w int, pkts []sa.Packet) {
	q := u.q[w]
	for len(pkts) > 0 {
		batch := pkts[:min(len(pkts), MaxBatch)]
		pkts = pkts[len(batch):]
		n := 0
		for i := range batch {
			b := batch[i].Data()
			if len(b) < udpHdrs || b[0] != 0x45 || b[9] != unix.IPPROTO_UDP ||
				int(binary.BigEndian.Uint16(b[2:])) != len(b) {
				q.drops.Add(1) // not IPv4/UDP without options: not ours to send
				continue
			}
			nm := &q.names[n]
			*nm = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: [4]byte(b[16:20])}
			copy((*[2]byte)(unsafe.Pointer(&nm.Port))[:], b[22:24]) // network order as it is
			// An empty datagram has no first byte to point at.
			q.iov[n].Base = nil
			if len(b) > udpHdrs {
				q.iov[n].Base = &b[udpHdrs]
			}
			q.iov[n].SetLen(len(b) - udpHdrs)
			q.msgs[n].Hdr.Namelen = unix.SizeofSockaddrInet4
			n++
		}
		done, sent := 0, 0
		for done < n {
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(q.fd), uintptr(unsafe.Pointer(&q.msgs[done])),
				uintptr(n-done), unix.MSG_DONTWAIT, 0, 0)
			if e == unix.EAGAIN || e == unix.ENOBUFS || (e == 0 && r == 0) {
				break // the socket buffer is full: drop the rest, never wait
			}
			if e != 0 {
				// A datagram the kernel refuses (unreachable, too long):
				// drop that one and go on with the rest.
				done++
				continue
			}
			done += int(r)
			sent += int(r)
		}
		q.tx.Add(uint64(sent))
		q.drops.Add(uint64(n - sent))
		u.env.Free(batch)
	}
}

// Maintain has nothing to do: Transmit sends at once.
func (u *udpPort) Maintain(int, bool) {}

// InFlight is 0: Transmit finishes every packet.
func (u *udpPort) InFlight(int) int { return 0 }

// PollFDs returns worker w's socket.
func (u *udpPort) PollFDs(w int) []int { return []int{u.q[w].fd} }

// Stats sums the workers' counters.
func (u *udpPort) Stats() PortStats {
	var st PortStats
	for _, q := range u.q {
		st.RX += q.rx.Load()
		st.TX += q.tx.Load()
		st.Drops += q.drops.Load()
	}
	return st
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
	addrA, addrB := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	a = &udpSide{udp: newUDPPort(netip.AddrPortFrom(addrA, 0)), plain: &memPort{}}
	b = &udpSide{udp: newUDPPort(netip.AddrPortFrom(addrB, 0)), plain: &memPort{}}
	// Bind once to learn the ports the SAs need, then let Start bind
	// again on them.
	for _, s := range []*udpSide{a, b} {
		if err := s.udp.Bind(PortEnv{Workers: 1}); err != nil {
			t.Skipf("loopback UDP: %v", err)
		}
		s.udp.Unbind()
	}
	tr := esp.MustParseTransform("aes128gcm16")
	mk := func(spi uint32, dir sa.Direction, local, remote netip.AddrPort) *sa.SA {
		s, err := sa.New(sa.Config{SPI: spi, Direction: dir, Mode: esp.Tunnel, Local: local.Addr(), Remote: remote.Addr(),
			UDPEncap: true, LocalPort: local.Port(), RemotePort: remote.Port(),
			Transform: tr, Key: engKey, ReplayWindow: 4096})
		if err != nil {
			t.Fatal(err)
		}
		return s
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
		e, err := NewEngine(EngineConfig{Processor: proc, CipherPort: s.udp, PlainPort: s.plain, Workers: workers,
			UMEM: UMEMConfig{NumFrames: 2048, FillSize: 256, CompletionSize: 256}})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Start(); err != nil {
			t.Fatalf("Engine.Start: %v", err)
		}
		t.Cleanup(func() {
			if err := e.Stop(); err != nil {
				t.Errorf("Engine.Stop: %v", err)
			}
		})
		s.e = e
	}
	la, lb := a.udp.Addr(), b.udp.Addr()
	start(a, mk(0x3001, sa.Out, la, lb), mk(0x3002, sa.In, la, lb))
	start(b, mk(0x3002, sa.Out, lb, la), mk(0x3001, sa.In, lb, la))
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
			for _, c := range []struct {
				name string
				to   *udpSide
				want [][]byte
			}{{"a→b", b, ab}, {"b→a", a, ba}} {
				netns.WaitFor(5*time.Second, func() bool { return len(c.to.plain.received()) >= count })
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
				if len(got) != count {
					t.Errorf("%s: %d of %d packets arrived; stats %+v", c.name, len(got), count, c.to.e.Stats().Workers)
				}
			}
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
		dg := make([]byte, rng.IntN(300))
		for j := range dg {
			dg[j] = byte(rng.Uint32())
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
