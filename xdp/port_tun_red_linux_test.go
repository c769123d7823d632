//go:build linux

package xdp

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/netns"
	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/sa"
)

// udpBurst sends one UDP GSO burst of segs datagrams of seg bytes from
// p's namespace A to addrB:port (routed into tunA): the kernel hands
// tunA's reader one USO super-packet.
func (p *offloadPair) udpBurst(t testing.TB, port uint16, seg, segs int) {
	t.Helper()
	dst := netip.AddrPortFrom(p.addrB, port)
	var sc *net.UDPConn
	if err := p.nsA.Do(func() (err error) { sc, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst)); return err }); err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	raw, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, seg) })
	if serr != nil {
		t.Skipf("UDP_SEGMENT: %v", serr)
	}
	if _, err := sc.Write(make([]byte, seg*segs)); err != nil {
		t.Fatal(err)
	}
}

// quiet turns IPv6 off on tunA (no router or neighbour solicitations
// among the packets a test counts) and drains port's worker 0 until it
// has nothing for 100 ms (bounded: 3 s).
func (p *offloadPair) quiet(t testing.TB, port *TUNPort, env PortEnv) {
	t.Helper()
	if err := p.nsA.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/"+p.tunA.Name()+"/disable_ipv6", []byte("1"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	pkts := make([]sa.Packet, DefaultBatch)
	fds := []unix.PollFd{{Fd: int32(port.PollFDs(0)[0]), Events: unix.POLLIN}}
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		k := port.Receive(0, pkts)
		env.Free(pkts[:k])
		if k == 0 {
			if n, _ := unix.Poll(fds, 100); n == 0 {
				return
			}
		}
	}
	t.Fatal("the TUN never went quiet")
}

// receiveWait calls port.Receive(w) until it returns packets or a
// second passed.
func receiveWait(port *TUNPort, w int, pkts []sa.Packet) int {
	for deadline := time.Now().Add(time.Second); ; {
		fds := []unix.PollFd{{Fd: int32(port.PollFDs(w)[0]), Events: unix.POLLIN}}
		unix.Poll(fds, 100)
		if k := port.Receive(w, pkts); k > 0 || time.Now().After(deadline) {
			return k
		}
	}
}

// TestTUNPortFramesExhausted: a super-packet read while only a few
// frames are free gives those frames its first segments; the rest of it
// is dropped and counted exactly (port Drops), not as oversize, and
// every frame goes back.
func TestTUNPortFramesExhausted(t *testing.T) {
	pp := newOffloadPair(t, false)
	u, err := NewUMEM(UMEMConfig{NumFrames: 64, FillSize: 32, CompletionSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	env := PortEnv{UMEM: u, Workers: 1, BatchSize: DefaultBatch, Headroom: esp.MaxHeadroom, Tailroom: esp.MaxTailroom}
	port, err := NewTUNPort([]*TUN{pp.tunA})
	if err != nil {
		t.Fatal(err)
	}
	if err := port.Bind(env); err != nil {
		t.Fatal(err)
	}
	pp.quiet(t, port, env)
	st0, ts0 := port.Stats(), pp.tunA.Stats()
	const free, segs = 3, 8
	held := make([]sa.Packet, 64-free)
	if k := env.Alloc(held); k != len(held) {
		t.Fatalf("held %d frames of %d", k, len(held))
	}
	pp.udpBurst(t, 5711, 1000, segs)
	pkts := make([]sa.Packet, DefaultBatch)
	k := receiveWait(port, 0, pkts)
	st, ts := port.Stats(), pp.tunA.Stats()
	st.RX -= st0.RX
	st.Drops -= st0.Drops
	ts.OversizeDrops -= ts0.OversizeDrops
	if k != free || st.RX != free || st.Drops != segs-free || ts.OversizeDrops != 0 {
		t.Errorf("%d packets received (RX %d), %d dropped, %d oversize; want %d, %d, 0 (%+v)",
			k, st.RX, st.Drops, ts.OversizeDrops, free, segs-free, ts)
	}
	for i := range k {
		if pkts[i].Len != 20+8+1000 {
			t.Errorf("segment %d: %d bytes % x", i, pkts[i].Len, pkts[i].Buf[pkts[i].Off:pkts[i].Off+pkts[i].Len])
		}
	}
	env.Free(pkts[:k])
	env.Free(held)
	if c := u.Counts(); c.Free != c.Total {
		t.Errorf("frames not all free: %+v", c)
	}
	if err := u.CheckFrames(); err != nil {
		t.Error(err)
	}
}

// TestTUNPortSmallMSS: a peer that announces a small MSS (here B's
// route's advmss, as a remote host behind the tunnel may) makes A's
// stack send super-packets of hundreds of small segments (up to 64 KiB
// in MSS-sized pieces, the TUN's gso_max_segs is 65535): they are split
// like any other, not refused, and the transfer completes byte for
// byte, over IPv4 and IPv6.
func TestTUNPortSmallMSS(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) {
			p := newPortPair(t, v6)
			peer := netip.PrefixFrom(p.addrA, 24).Masked().String()
			if v6 {
				peer = netip.PrefixFrom(p.addrA, 64).Masked().String()
			}
			p.nsB.IP(t, "route", "change", peer, "dev", p.tunB.Name(), "advmss", "120")
			p.forward(t)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			srv, cli := &topo.NS{Name: p.nsB.Name, Label: "B"}, &topo.NS{Name: p.nsA.Name, Label: "A"}
			if _, err := topo.Transfer(ctx, srv, netip.AddrPortFrom(p.addrB, 5811), cli, 2<<20, 5811, nil); err != nil {
				t.Fatalf("tcp: %v (A %+v)", err, p.tunA.Stats())
			}
			a := p.tunA.Stats()
			if a.SplitSuperPackets == 0 {
				t.Errorf("A read no super-packets: %+v", a)
			}
			if a.ReadDrops != 0 || a.OversizeDrops != 0 {
				t.Errorf("A dropped: %+v", a)
			}
		})
	}
}

// tunEngine starts an engine of workers workers whose plaintext side is
// a TUNPort over queues queues of an offload TUN named name in a new
// namespace (address 10.62.1.1/24, 10.62.2.0/24 routed into it) and
// whose ciphertext side is an in-memory port; it is stopped at cleanup.
func tunEngine(t *testing.T, name string, queues, workers int) (*Engine, *netns.NS, []*TUN) {
	t.Helper()
	requireNet(t)
	ns := netns.New(t)
	var tuns []*TUN
	if err := ns.Do(func() (err error) { tuns, err = OpenTUNQueues(name, queues); return err }); err != nil {
		t.Fatalf("OpenTUNQueues: %v", err)
	}
	t.Cleanup(func() {
		for _, q := range tuns {
			q.Close()
		}
	})
	ns.IP(t, "link", "set", name, "mtu", "1400", "up")
	ns.IP(t, "addr", "add", "10.62.1.1/24", "dev", name)
	ns.IP(t, "route", "add", "10.62.2.0/24", "dev", name)
	local, remote := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	out, err := sa.New(sa.Config{SPI: spiOut, Direction: sa.Out, Mode: esp.Tunnel, Local: local, Remote: remote,
		Transform: esp.MustParseTransform("aes128gcm16"), Key: engKey})
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
	port, err := NewTUNPort(tuns)
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(EngineConfig{Processor: proc, CipherPort: &memPort{}, PlainPort: port, Workers: workers,
		UMEM: UMEMConfig{NumFrames: 1024, FillSize: 256, CompletionSize: 256}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Errorf("Engine.Stop: %v", err)
		}
	})
	return e, ns, tuns
}

// sleeps is the sum of the engine's workers' Sleeps.
func sleeps(e *Engine) uint64 {
	var n uint64
	for _, w := range e.Stats().Workers {
		n += w.Sleeps
	}
	return n
}

// TestTUNPortDeviceDeleted: the TUN deleted (ip link del) under a
// running engine must not make its workers spin: a deleted TUN's
// descriptor polls as an error forever (EPOLLERR), and reads fail with
// EBADFD. Invariant: once the device is gone the workers sleep their
// full idle timeout, so over half a second they sleep a handful of
// times (idleSleep 100 ms), not thousands; Stop still works.
func TestTUNPortDeviceDeleted(t *testing.T) {
	e, ns, _ := tunEngine(t, "esptdel0", 2, 2)
	ns.IP(t, "link", "del", "esptdel0")
	time.Sleep(200 * time.Millisecond)
	before := sleeps(e)
	time.Sleep(500 * time.Millisecond)
	if n := sleeps(e) - before; n > 50 {
		t.Errorf("%d sleeps of 2 workers in 500 ms after the TUN was deleted: they spin", n)
	}
}

// TestTUNPortIPv6ExtensionHeaders: a local TCP sender whose packets
// carry an IPv6 destination options header (IPV6_DSTOPTS, a PadN
// option) routed into the TUN hands the port TSO super-packets with the
// extension header between IPv6 and TCP: they are split (not refused,
// which would stall the connection), and 1 MiB crosses byte for byte.
func TestTUNPortIPv6ExtensionHeaders(t *testing.T) {
	p := newPortPair(t, true)
	p.forward(t)
	dst := netip.AddrPortFrom(p.addrB, 5911)
	var ln net.Listener
	if err := p.nsB.Do(func() (err error) { ln, err = net.Listen("tcp", dst.String()); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const size = 1 << 20
	want := make([]byte, size)
	for i := range want {
		want[i] = byte(i*7 + i>>9)
	}
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(8 * time.Second))
		b, _ := io.ReadAll(c)
		got <- b
	}()
	// Next header 6 (TCP, the kernel fills it in), length 0 (8 bytes),
	// PadN of 4 bytes of zeros.
	opts := string([]byte{0, 0, 1, 4, 0, 0, 0, 0})
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.IPPROTO_IPV6, unix.IPV6_DSTOPTS, opts)
		}); err != nil {
			return err
		}
		return serr
	}}
	var c net.Conn
	if err := p.nsA.Do(func() (err error) { c, err = d.Dial("tcp", dst.String()); return err }); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(8 * time.Second))
	if _, err := c.Write(want); err != nil {
		t.Errorf("write: %v (A %+v)", err, p.tunA.Stats())
	}
	c.Close()
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("received %d bytes of %d, or different ones (A %+v)", len(b), size, p.tunA.Stats())
	}
	if a := p.tunA.Stats(); a.ReadDrops != 0 || a.SplitSuperPackets == 0 {
		t.Errorf("A: %+v", a)
	}
}
