//go:build linux

package xdp

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/bpf"
	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/netns"
	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/sa"
)

func requireNet(t testing.TB) {
	t.Helper()
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "ip")
}

// testNet is a veth pair between an XDP namespace (end A) and a peer
// namespace (end B) that sends traffic, with IPv4 and IPv6 addresses
// and static neighbours both ways.
type testNet struct {
	xns, peer *netns.NS
	v         *netns.VethPair
	x4, p4    netip.Addr
	x6, p6    netip.Addr
}

func newTestNet(t testing.TB, queues int) *testNet {
	t.Helper()
	n := &testNet{
		xns: netns.New(t), peer: netns.New(t),
		x4: netip.MustParseAddr("192.0.2.1"), p4: netip.MustParseAddr("192.0.2.2"),
		x6: netip.MustParseAddr("2001:db8::1"), p6: netip.MustParseAddr("2001:db8::2"),
	}
	n.v = netns.NewVethPairOpts(t, n.xns, n.peer, netns.VethOptions{Queues: queues})
	n.v.A.AddAddr(t, netip.PrefixFrom(n.x4, 24))
	n.v.B.AddAddr(t, netip.PrefixFrom(n.p4, 24))
	n.v.A.AddAddr(t, netip.PrefixFrom(n.x6, 64))
	n.v.B.AddAddr(t, netip.PrefixFrom(n.p6, 64))
	n.v.A.SetNeighbour(t, n.p4, n.v.B.MAC)
	n.v.B.SetNeighbour(t, n.x4, n.v.A.MAC)
	n.v.A.SetNeighbour(t, n.p6, n.v.B.MAC)
	n.v.B.SetNeighbour(t, n.x6, n.v.A.MAC)
	return n
}

// fwdNet is ns1 —veth a— nsF —veth b— ns2: traffic from ns1 to ns2's
// address is routed to nsF, where a Forwarder takes it from a.B and puts
// it on b.A.
type fwdNet struct {
	n1, nf, n2 *netns.NS
	a, b       *netns.VethPair
	src, dst   netip.Addr
}

func newFwdNet(t testing.TB) *fwdNet {
	t.Helper()
	f := &fwdNet{n1: netns.New(t), nf: netns.New(t), n2: netns.New(t),
		src: netip.MustParseAddr("10.1.0.1"), dst: netip.MustParseAddr("10.2.0.2")}
	gw1, gw2 := netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("10.2.0.1")
	f.a = netns.NewVethPair(t, f.n1, f.nf)
	f.b = netns.NewVethPair(t, f.nf, f.n2)
	f.a.A.AddAddr(t, netip.PrefixFrom(f.src, 24))
	f.a.B.AddAddr(t, netip.PrefixFrom(gw1, 24))
	f.b.A.AddAddr(t, netip.PrefixFrom(gw2, 24))
	f.b.B.AddAddr(t, netip.PrefixFrom(f.dst, 24))
	f.n1.IP(t, "route", "add", "10.2.0.0/24", "via", gw1.String())
	f.a.A.SetNeighbour(t, gw1, f.a.B.MAC)
	f.a.B.SetNeighbour(t, f.src, f.a.A.MAC)
	f.b.A.SetNeighbour(t, f.dst, f.b.B.MAC)
	f.b.B.SetNeighbour(t, gw2, f.b.A.MAC)
	return f
}

// loadProgram loads the steering program; it is closed with the test.
func loadProgram(t testing.TB, opts bpf.Options) *bpf.Program {
	t.Helper()
	p, err := bpf.Load(opts)
	if err != nil {
		t.Fatalf("bpf.Load(%+v): %v", opts, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// attach attaches p to l inside l's namespace.
func attach(t testing.TB, p *bpf.Program, l *netns.Link) *bpf.Attachment {
	t.Helper()
	var a *bpf.Attachment
	err := l.NS.Do(func() (err error) {
		a, err = p.Attach(l.Index, bpf.AttachAuto)
		return err
	})
	if err != nil {
		t.Fatalf("attach to %s: %v", l.Name, err)
	}
	return a
}

// openSocket creates a socket on u inside ns; it is closed with the test.
func openSocket(t testing.TB, ns *netns.NS, u *UMEM, cfg SocketConfig) *Socket {
	t.Helper()
	s, err := tryOpenSocket(ns, u, cfg)
	if err != nil {
		t.Fatalf("NewSocket(%+v): %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Socket.Close: %v", err)
		}
	})
	return s
}

func tryOpenSocket(ns *netns.NS, u *UMEM, cfg SocketConfig) (s *Socket, err error) {
	err = ns.Do(func() (err error) {
		s, err = u.NewSocket(cfg)
		return err
	})
	return s, err
}

func register(t testing.TB, p *bpf.Program, index int, s *Socket) {
	t.Helper()
	if err := p.RegisterSocket(index, s.FD()); err != nil {
		t.Fatalf("RegisterSocket(%d): %v", index, err)
	}
}

// rxFrame is a received packet, copied out of the UMEM.
type rxFrame struct {
	data []byte
	desc Desc
}

// receive collects want packets from s within timeout, refilling as it
// goes, and gives every frame back.
func receive(t testing.TB, s *Socket, want int, timeout time.Duration) []rxFrame {
	t.Helper()
	var got []rxFrame
	descs := make([]Desc, 64)
	deadline := time.Now().Add(timeout)
	s.Refill()
	for len(got) < want && time.Now().Before(deadline) {
		if _, err := s.Wait(20 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		n := s.Receive(descs)
		for _, d := range descs[:n] {
			got = append(got, rxFrame{data: append([]byte(nil), s.UMEM().Packet(d)...), desc: d})
		}
		if freed := s.UMEM().Free(descs[:n]); freed != n {
			t.Fatalf("freed %d of %d received frames", freed, n)
		}
		s.Refill()
	}
	return got
}

// quiet waits until the kernel holds no frames of u, then audits it.
func quiet(t testing.TB, u *UMEM, socks ...*Socket) FrameCounts {
	t.Helper()
	var c FrameCounts
	netns.WaitFor(2*time.Second, func() bool {
		for _, s := range socks {
			s.Complete()
		}
		c = u.Counts()
		return c.InKernel == 0 && c.TX == 0 && c.Completion == 0
	})
	if c.InKernel != 0 || c.TX != 0 || c.Completion != 0 || c.App != 0 || c.Sum() != c.Total {
		t.Errorf("frames not all accounted for: %+v", c)
	}
	if err := u.CheckFrames(); err != nil {
		t.Error(err)
	}
	return c
}

// Packet building.

func csum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// ipv4 builds an IPv4 packet (no options) around payload.
func ipv4(src, dst netip.Addr, proto byte, id uint16, payload []byte) []byte {
	h := make([]byte, 20, 20+len(payload))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(h[4:], id)
	h[6] = 0x40 // DF
	h[8] = 64
	h[9] = proto
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	binary.BigEndian.PutUint16(h[10:], csum(h))
	return append(h, payload...)
}

// espPayload is an ESP header (SPI, sequence number) and n body bytes.
func espPayload(spi, seq uint32, n int) []byte {
	b := make([]byte, 8+n)
	binary.BigEndian.PutUint32(b, spi)
	binary.BigEndian.PutUint32(b[4:], seq)
	for i := range n {
		b[8+i] = byte(int(spi) + int(seq) + i)
	}
	return b
}

func ether(dst, src net.HardwareAddr, typ uint16, payload []byte) []byte {
	b := make([]byte, 14, 14+len(payload))
	copy(b, dst)
	copy(b[6:], src)
	binary.BigEndian.PutUint16(b[12:], typ)
	return append(b, payload...)
}

// sendIPv4 sends complete IPv4 packets from ns through a raw socket of
// protocol proto with IP_HDRINCL, so the bytes on the wire are exactly
// pkt (the kernel recomputes the same checksum).
func sendIPv4(ns *netns.NS, proto int, pkts ...[]byte) error {
	return ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_HDRINCL, 1); err != nil {
			return err
		}
		for _, p := range pkts {
			dst := [4]byte(p[16:20])
			if err := unix.Sendto(fd, p, 0, &unix.SockaddrInet4{Addr: dst}); err != nil {
				return err
			}
		}
		return nil
	})
}

// sendESP6 sends payload as IPv6 protocol 50 from ns (kernel-built
// header).
func sendESP6(ns *netns.NS, dst netip.Addr, payload []byte) error {
	return ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ESP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, payload, 0, &unix.SockaddrInet6{Addr: dst.As16()})
	})
}

// sendUDP sends payload from src:sport to dst:dport through a UDP socket
// in ns.
func sendUDP(ns *netns.NS, src netip.AddrPort, dst netip.AddrPort, payload []byte) error {
	return ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.Addr().As4(), Port: int(src.Port())}); err != nil {
			return err
		}
		return unix.Sendto(fd, payload, 0, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())})
	})
}

// ping sends one ICMP echo request from ns to dst and waits up to a
// second for the reply.
func ping(ns *netns.NS, dst netip.Addr, seq uint16) error {
	return ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		id := uint16(os.Getpid())
		req := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), byte(seq >> 8), byte(seq), 'e', 's', 'p', 'x', 'd', 'p', '!', '!'}
		binary.BigEndian.PutUint16(req[2:], csum(req))
		if err := unix.Sendto(fd, req, 0, &unix.SockaddrInet4{Addr: dst.As4()}); err != nil {
			return err
		}
		buf := make([]byte, 1500)
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return err
			}
			ihl := int(buf[0]&0x0f) * 4
			if n < ihl+8 {
				continue
			}
			r := buf[ihl:n]
			if r[0] == 0 && binary.BigEndian.Uint16(r[4:]) == id && binary.BigEndian.Uint16(r[6:]) == seq &&
				netip.AddrFrom4([4]byte(buf[12:16])) == dst {
				return nil
			}
		}
		return fmt.Errorf("no echo reply from %v", dst)
	})
}

// capture is an AF_PACKET socket on one interface of a namespace.
type capture struct{ fd int }

func newCapture(t testing.TB, l *netns.Link) *capture {
	t.Helper()
	proto := int(htons(unix.ETH_P_ALL))
	var c capture
	err := l.NS.Do(func() (err error) {
		if c.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto); err != nil {
			return err
		}
		tv := unix.NsecToTimeval(int64(20 * time.Millisecond))
		if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(c.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.Index})
	})
	if err != nil {
		t.Fatalf("capture on %s: %v", l.Name, err)
	}
	t.Cleanup(func() { unix.Close(c.fd) })
	return &c
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// collect returns the incoming frames matching match, until want have
// come or timeout passed; then it waits a little longer for extra ones
// (which it also returns, so the caller can tell there were too many).
func (c *capture) collect(want int, timeout time.Duration, match func([]byte) bool) [][]byte {
	var got [][]byte
	buf := make([]byte, 9000)
	deadline := time.Now().Add(timeout)
	extra := time.Time{}
	for {
		now := time.Now()
		if len(got) >= want && extra.IsZero() {
			extra = now.Add(50 * time.Millisecond)
		}
		if now.After(deadline) || (!extra.IsZero() && now.After(extra)) {
			return got
		}
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			continue
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if match(buf[:n]) {
			got = append(got, append([]byte(nil), buf[:n]...))
		}
	}
}

// generator sends frames from a TX-only AF_XDP socket with a UMEM of its
// own: a traffic source that needs no per-packet system call.
type generator struct {
	u     *UMEM
	s     *Socket
	descs []Desc
}

func newGenerator(t testing.TB, l *netns.Link, queue int, noNeedWakeup bool) *generator {
	t.Helper()
	u := newTestUMEM(t, UMEMConfig{NumFrames: 2048, FillSize: 64, CompletionSize: 1024})
	s := openSocket(t, l.NS, u, SocketConfig{Ifindex: l.Index, Queue: queue, RXSize: -1, TXSize: 1024, NoNeedWakeup: noNeedWakeup})
	return &generator{u: u, s: s, descs: make([]Desc, MaxBatch)}
}

// fillAll writes template at DataOffset into every frame, so sends need
// no copy.
func (g *generator) fillAll(template []byte) {
	all := make([]Desc, g.u.Config().NumFrames)
	n := g.u.Alloc(all)
	for _, d := range all[:n] {
		f, off := g.u.Frame(d)
		copy(f[off:], template)
	}
	g.u.Free(all[:n])
}

// send transmits count packets of length size (frames prepared with
// fillAll) or, with build set, lets build write packet i into buf and
// return its length. It stops at timeout and returns how many it sent.
func (g *generator) send(count, size int, timeout time.Duration, build func(i int, buf []byte) int) int {
	deadline := time.Now().Add(timeout)
	sent := 0
	for sent < count {
		g.s.Complete()
		k := g.u.Alloc(g.descs[:min(len(g.descs), count-sent)])
		for j := range k {
			if build != nil {
				f, off := g.u.Frame(g.descs[j])
				g.descs[j].Len = uint32(build(sent+j, f[off:]))
			} else {
				g.descs[j].Len = uint32(size)
			}
		}
		n := g.s.Transmit(g.descs[:k])
		g.u.Free(g.descs[n:k])
		sent += n
		if n < k {
			if time.Now().After(deadline) {
				break
			}
			runtime.Gosched()
		}
	}
	netns.WaitFor(time.Second, func() bool { g.s.Complete(); return g.s.TXOutstanding() == 0 })
	return sent
}

// openFDs returns the open file descriptors of the process with what
// they point to, after letting finalizers close what garbage holds.
func openFDs(t testing.TB) map[string]string {
	t.Helper()
	runtime.GC()
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := map[string]string{}
	for _, e := range ents {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		fds[e.Name()] = target
	}
	return fds
}

// fdDiff describes the descriptors open now that were not before.
func fdDiff(before, now map[string]string) string {
	var b strings.Builder
	for fd, target := range now {
		if before[fd] != target {
			fmt.Fprintf(&b, " %s→%s", fd, target)
		}
	}
	for fd, target := range before {
		if _, ok := now[fd]; !ok {
			fmt.Fprintf(&b, " closed:%s→%s", fd, target)
		}
	}
	return b.String()
}

// rxPackets reads the RX packet counter of l.
func rxPackets(t testing.TB, l *netns.Link) uint64 {
	t.Helper()
	var info []struct {
		Stats struct {
			RX struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	out := l.NS.IP(t, "-s", "-j", "link", "show", "dev", l.Name)
	if err := json.Unmarshal([]byte(out), &info); err != nil || len(info) != 1 {
		t.Fatalf("parse ip -s -j link show %s: %v: %q", l.Name, err, out)
	}
	return info[0].Stats.RX.Packets
}

// startEngineIn creates an engine with cfg, starts it (through do, e.g.
// a namespace's Do; nil: on the calling thread) and stops it, checking
// that Stop succeeded, when the test ends.
func startEngineIn(t testing.TB, do func(func() error) error, cfg EngineConfig) *Engine {
	t.Helper()
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if do == nil {
		do = func(f func() error) error { return f() }
	}
	if err := do(e.Start); err != nil {
		t.Fatalf("Engine.Start: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Errorf("Engine.Stop: %v", err)
		}
	})
	return e
}

// dialUDPGSO dials dst from namespace ns with UDP segmentation offload
// on (UDP_SEGMENT: each write of n×seg bytes leaves as n datagrams of
// seg), skipping the test where the kernel lacks it; the socket closes
// when the test ends.
func dialUDPGSO(t testing.TB, ns *netns.NS, dst netip.AddrPort, seg int) *net.UDPConn {
	t.Helper()
	var sc *net.UDPConn
	if err := ns.Do(func() (err error) { sc, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst)); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	setUDPSegment(t, sc, seg)
	return sc
}

// setUDPSegment turns UDP_SEGMENT on for sc, skipping the test where
// the kernel lacks it.
func setUDPSegment(t testing.TB, sc *net.UDPConn, seg int) {
	t.Helper()
	raw, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, seg) })
	if serr != nil {
		t.Skipf("UDP_SEGMENT: %v", serr)
	}
}

// outboundProc returns a processor of workers workers whose tunnel
// encrypts everything with one outbound SA (spiOut, aes128gcm16,
// 192.0.2.1 → 192.0.2.2, tunnel mode).
func outboundProc(t testing.TB, workers int) *sa.Processor {
	t.Helper()
	return oneSAProc(t, sa.Config{SPI: spiOut, Direction: sa.Out, Mode: esp.Tunnel,
		Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.MustParseAddr("192.0.2.2"),
		Transform: esp.MustParseTransform("aes128gcm16"), Key: engKey}, workers)
}

// oneSAProc returns a processor of workers workers whose tunnel encrypts
// everything with one outbound SA made from cfg.
func oneSAProc(t testing.TB, cfg sa.Config, workers int) *sa.Processor {
	t.Helper()
	out, err := sa.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sad := sa.NewSAD(sa.SADOptions{})
	if err := sad.Add(out); err != nil {
		t.Fatal(err)
	}
	tun := sa.NewTunnel("peer")
	tun.SetOutbound(out)
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Tunnel: tun, Workers: workers})
	if err != nil {
		t.Fatal(err)
	}
	return proc
}

// udpEncapSA returns an SA of ESP in UDP between local and remote
// (aes128gcm16, engKey, replay window 4096).
func udpEncapSA(t testing.TB, spi uint32, dir sa.Direction, local, remote netip.AddrPort) *sa.SA {
	t.Helper()
	s, err := sa.New(sa.Config{SPI: spi, Direction: dir, Mode: esp.Tunnel, Local: local.Addr(), Remote: remote.Addr(),
		UDPEncap: true, LocalPort: local.Port(), RemotePort: remote.Port(),
		Transform: esp.MustParseTransform("aes128gcm16"), Key: engKey, ReplayWindow: 4096})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
