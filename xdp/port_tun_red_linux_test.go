//go:build linux

package xdp

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
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
	sc := dialUDPGSO(t, p.nsA, netip.AddrPortFrom(p.addrB, port), seg)
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
	proc := outboundProc(t, workers)
	port, err := NewTUNPort(tuns)
	if err != nil {
		t.Fatal(err)
	}
	e := startEngineIn(t, nil, EngineConfig{Processor: proc, CipherPort: &memPort{}, PlainPort: port, Workers: workers,
		UMEM: UMEMConfig{NumFrames: 1024, FillSize: 256, CompletionSize: 256}})
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

// redSeg describes one hostile TCP segment of TestTUNPortTransmitKernelSplit.
type redSeg struct {
	v6      bool
	flow    int // source port 40000+flow
	seq     uint32
	id      uint16
	ttl     uint8
	flags   uint8
	tsval   uint32 // with opts: the timestamp option's value
	opts    bool   // TCP NOP, NOP, timestamps
	ipOpts  bool   // IPv4: 4 bytes of options (NOP NOP NOP EOL)
	payload int
	corrupt bool // flip a payload byte after the checksum
}

// redSrc and redDst are the addresses of TestTUNPortTransmitKernelSplit:
// from behind the offload TUN to behind the plain one.
var (
	redSrc4, redDst4 = netip.MustParseAddr("10.63.1.9"), netip.MustParseAddr("10.63.9.9")
	redSrc6, redDst6 = netip.MustParseAddr("fd63:1::9"), netip.MustParseAddr("fd63:9::9")
)

// build serializes s: IPv4 (DF) or IPv6, TCP with valid checksums
// unless corrupt.
func (s redSeg) build() []byte {
	doff := 20
	if s.opts {
		doff = 32
	}
	tcp := make([]byte, doff+s.payload)
	binary.BigEndian.PutUint16(tcp[0:], uint16(40000+s.flow))
	binary.BigEndian.PutUint16(tcp[2:], 80)
	binary.BigEndian.PutUint32(tcp[4:], s.seq)
	binary.BigEndian.PutUint32(tcp[8:], 77)
	tcp[12] = byte(doff/4) << 4
	tcp[13] = s.flags
	binary.BigEndian.PutUint16(tcp[14:], 512)
	if s.flags&0x20 != 0 {
		binary.BigEndian.PutUint16(tcp[18:], 3)
	}
	if s.opts {
		copy(tcp[20:], []byte{1, 1, 8, 10})
		binary.BigEndian.PutUint32(tcp[24:], s.tsval)
		binary.BigEndian.PutUint32(tcp[28:], 99)
	}
	for i := doff; i < len(tcp); i++ {
		tcp[i] = byte(int(s.seq) + i*31 + s.flow)
	}
	var p []byte
	var pseudo []byte
	if s.v6 {
		p = make([]byte, 40, 40+len(tcp))
		p[0] = 0x60
		binary.BigEndian.PutUint16(p[4:], uint16(len(tcp)))
		p[6], p[7] = 6, s.ttl
		a, b := redSrc6.As16(), redDst6.As16()
		copy(p[8:], a[:])
		copy(p[24:], b[:])
		pseudo = append(append([]byte(nil), p[8:40]...), 0, 0, byte(len(tcp)>>8), byte(len(tcp)), 0, 0, 0, 6)
	} else {
		ihl := 20
		if s.ipOpts {
			ihl = 24
		}
		p = make([]byte, ihl, ihl+len(tcp))
		p[0] = 0x40 | byte(ihl/4)
		binary.BigEndian.PutUint16(p[2:], uint16(ihl+len(tcp)))
		binary.BigEndian.PutUint16(p[4:], s.id)
		p[6] = 0x40
		p[8], p[9] = s.ttl, 6
		a, b := redSrc4.As4(), redDst4.As4()
		copy(p[12:], a[:])
		copy(p[16:], b[:])
		if s.ipOpts {
			copy(p[20:], []byte{1, 1, 1, 0})
		}
		binary.BigEndian.PutUint16(p[10:], csum(p[:ihl]))
		pseudo = append(append([]byte(nil), p[12:20]...), 0, 6, byte(len(tcp)>>8), byte(len(tcp)))
	}
	binary.BigEndian.PutUint16(tcp[16:], csum(append(pseudo, tcp...)))
	if s.corrupt && s.payload > 0 {
		tcp[len(tcp)-1] ^= 0x5a
	} else if s.corrupt {
		tcp[17] ^= 1
	}
	return append(p, tcp...)
}

// forwarded is p as the kernel forwards it: TTL or hop limit one less,
// the IPv4 header checksum updated.
func forwarded(p []byte) []byte {
	q := append([]byte(nil), p...)
	if q[0]>>4 == 6 {
		q[7]--
		return q
	}
	q[8]--
	ihl := int(q[0]&0xf) * 4
	q[10], q[11] = 0, 0
	binary.BigEndian.PutUint16(q[10:], csum(q[:ihl]))
	return q
}

// TestTUNPortTransmitKernelSplit: hostile inner packets handed to
// Transmit, judged by the kernel's own GSO. The offload TUN's packets
// are forwarded to a plain TUN (no offloads), so every super-packet
// Transmit writes is segmented by the kernel in software, and what the
// plain TUN reads is what the kernel made of the writes.
//
// Invariants, over random batches (up to 300 packets, IPv4 and IPv6,
// several flows interleaved, mostly mergeable runs mixed with pure
// ACKs, PSH, FIN, RST, URG, SYN, retransmitted and skipped sequence
// numbers, wrap-around at 2^32, IPv4 ID jumps, TTL and timestamp
// changes, IPv4 options, corrupted checksums): each flow's packets come
// out in order and byte for byte as handed in (TTL/hop limit one less),
// in particular a corrupted one still corrupted (never coalesced, so
// never re-checksummed); every frame is freed.
func TestTUNPortTransmitKernelSplit(t *testing.T) {
	requireNet(t)
	ns := netns.New(t)
	var off, plain *TUN
	if err := ns.Do(func() (err error) {
		if off, err = OpenTUNOffload("esprt0"); err != nil {
			return err
		}
		plain, err = OpenTUN("esprp0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { off.Close(); plain.Close() })
	for _, c := range [][]string{
		{"link", "set", "esprt0", "mtu", "1500", "up"},
		{"link", "set", "esprp0", "mtu", "1500", "up"},
		{"addr", "add", "10.63.0.1/24", "dev", "esprt0"},
		{"addr", "add", "fd63::1/64", "dev", "esprt0", "nodad"},
		{"route", "add", "10.63.1.0/24", "dev", "esprt0"},
		{"route", "add", "fd63:1::/64", "dev", "esprt0"},
		{"route", "add", "10.63.9.0/24", "dev", "esprp0"},
		{"route", "add", "fd63:9::/64", "dev", "esprp0"},
	} {
		ns.IP(t, c...)
	}
	if err := ns.Do(func() error {
		for _, f := range []string{"ipv4/ip_forward", "ipv6/conf/all/forwarding", "ipv4/conf/all/rp_filter", "ipv4/conf/esprt0/rp_filter"} {
			v := "1"
			if strings.Contains(f, "rp_filter") {
				v = "0"
			}
			if err := os.WriteFile("/proc/sys/net/"+f, []byte(v), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	u, err := NewUMEM(UMEMConfig{NumFrames: 1024, FillSize: 256, CompletionSize: 256})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	port, err := NewTUNPort([]*TUN{off})
	if err != nil {
		t.Fatal(err)
	}
	if err := port.Bind(PortEnv{UMEM: u, Workers: 1, BatchSize: DefaultBatch, Headroom: esp.MaxHeadroom, Tailroom: esp.MaxTailroom}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { port.Unbind() })

	rng := rand.New(rand.NewPCG(11, 12))
	buf := make([]byte, 70000)
	type flowState struct {
		v6    bool
		seq   uint32
		id    uint16
		tsval uint32
		size  int
		opts  bool
	}
	for round := range 40 {
		nflows := 1 + rng.IntN(5)
		flows := make([]flowState, nflows)
		for f := range flows {
			flows[f] = flowState{v6: rng.IntN(2) == 0, seq: rng.Uint32(), id: uint16(rng.Uint32()),
				size: 100 + rng.IntN(1300), opts: rng.IntN(2) == 0, tsval: rng.Uint32()}
			if rng.IntN(4) == 0 {
				flows[f].seq = 0xffffffff - uint32(rng.IntN(20000)) // wraps within the batch
			}
		}
		n := 1 + rng.IntN(300)
		raw := make([][]byte, n)
		want := make(map[int][][]byte)
		for i := range raw {
			f := rng.IntN(nflows)
			fs := &flows[f]
			s := redSeg{v6: fs.v6, flow: round*8 + f, seq: fs.seq, id: fs.id, ttl: 64, flags: 0x10,
				opts: fs.opts, tsval: fs.tsval, payload: fs.size}
			switch r := rng.IntN(40); r {
			case 0:
				s.payload = 0 // pure ACK
			case 1:
				s.flags |= 0x08 // PSH
			case 2:
				s.flags |= 0x01 // FIN
			case 3:
				s.flags = 0x04 // RST
			case 4:
				s.flags |= 0x20 // URG
			case 5:
				s.flags = 0x02 // SYN
				s.payload = 0
			case 6:
				s.flags |= 0x80 // CWR
			case 7:
				s.flags |= 0x40 // ECE
			case 8:
				s.seq -= uint32(fs.size) // retransmission
			case 9:
				s.seq += 1000 // a hole
			case 10:
				s.id += 5
			case 11:
				s.ttl = 63
			case 12:
				s.tsval++
			case 13:
				s.payload = 1 + rng.IntN(fs.size) // short
			case 14:
				s.ipOpts = !s.v6
			case 15, 16, 17:
				s.corrupt = true
			}
			fs.seq = s.seq + uint32(s.payload)
			fs.id = s.id + 1
			raw[i] = s.build()
			want[s.flow] = append(want[s.flow], forwarded(raw[i]))
		}
		port.Transmit(0, framesOf(t, u, raw))
		got := make(map[int][][]byte)
		plain.SetReadDeadline(time.Now().Add(2 * time.Second))
		for k := 0; k < n; k++ {
			m, err := plain.Read(buf)
			if err != nil {
				t.Fatalf("round %d: %d of %d packets forwarded: %v (%+v)", round, k, n, err, off.Stats())
			}
			p := append([]byte(nil), buf[:m]...)
			ipLen, proto := 40, p[6]
			if p[0]>>4 == 4 {
				ipLen, proto = int(p[0]&0xf)*4, p[9]
			}
			if proto != 6 || len(p) < ipLen+20 || binary.BigEndian.Uint16(p[ipLen+2:]) != 80 {
				k-- // the plain TUN's own (router solicitations, MLD)
				continue
			}
			f := int(binary.BigEndian.Uint16(p[ipLen:])) - 40000
			got[f] = append(got[f], p)
		}
		for f, w := range want {
			g := got[f]
			if len(g) != len(w) {
				desc := func(ps [][]byte) string {
					var b strings.Builder
					for _, p := range ps {
						ipLen := 40
						if p[0]>>4 == 4 {
							ipLen = int(p[0]&0xf) * 4
						}
						fmt.Fprintf(&b, " [len %d seq %d flags %#x]", len(p), binary.BigEndian.Uint32(p[ipLen+4:]), p[ipLen+13])
					}
					return b.String()
				}
				t.Fatalf("round %d flow %d: %d packets out, %d in\n got%s\nwant%s", round, f, len(g), len(w), desc(g), desc(w))
			}
			for i := range w {
				if !bytes.Equal(g[i], w[i]) {
					t.Fatalf("round %d flow %d packet %d of %d differs:\n got % x\nwant % x", round, f, i, len(w), g[i], w[i])
				}
			}
		}
		if c := u.Counts(); c.Free != c.Total {
			t.Fatalf("round %d: frames not all free: %+v", round, c)
		}
	}
	st := off.Stats()
	t.Logf("%+v", st)
	if st.CoalescedSuperPackets == 0 || st.WriteErrors != 0 {
		t.Errorf("nothing coalesced, or write errors: %+v", st)
	}
}

// TestTUNPortEngineTCP: two full engines, each with a TUNPort as its
// plaintext side (the offload TUNs of an offloadPair, one queue, two
// workers sharing it) and a UDP socket port as its ciphertext side (ESP
// in UDP over loopback in this namespace): TCP from A's namespace to
// B's, IPv4 and IPv6 inside, crosses split → encrypt → UDP → decrypt →
// coalesce; the stream is checked byte for byte (topo.Transfer), so
// every TCP checksum was right end to end. Afterwards no frame is
// missing and the engines stop cleanly.
func TestTUNPortEngineTCP(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) {
			p := newOffloadPair(t, v6)
			mkPort := func() *UDPPort {
				u := NewUDPPort(UDPPortConfig{Local: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0), EphemeralPort: true})
				if err := u.Bind(PortEnv{Workers: 1}); err != nil {
					t.Skipf("loopback UDP: %v", err)
				}
				u.Unbind()
				return u
			}
			ua, ub := mkPort(), mkPort()
			la, lb := ua.Addr(), ub.Addr()
			start := func(tun *TUN, udp *UDPPort, out, in *sa.SA) *Engine {
				sad := sa.NewSAD(sa.SADOptions{})
				for _, x := range []*sa.SA{out, in} {
					if err := sad.Add(x); err != nil {
						t.Fatal(err)
					}
				}
				tn := sa.NewTunnel("peer")
				tn.SetOutbound(out)
				proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Tunnel: tn, Workers: 2, NATTPort: udp.Addr().Port()})
				if err != nil {
					t.Fatal(err)
				}
				plain, err := NewTUNPort([]*TUN{tun})
				if err != nil {
					t.Fatal(err)
				}
				e := startEngineIn(t, nil, EngineConfig{Processor: proc, CipherPort: udp, PlainPort: plain, Workers: 2,
					UMEM: UMEMConfig{NumFrames: 4096, FillSize: 256, CompletionSize: 256}})
				return e
			}
			ea := start(p.tunA, ua, udpEncapSA(t, 0x5001, sa.Out, la, lb), udpEncapSA(t, 0x5002, sa.In, la, lb))
			eb := start(p.tunB, ub, udpEncapSA(t, 0x5002, sa.Out, lb, la), udpEncapSA(t, 0x5001, sa.In, lb, la))
			if err := p.tcpTransfer(6011, 4<<20); err != nil {
				t.Fatalf("tcp: %v\nA %+v\nB %+v", err, ea.Stats().PlainPort, eb.Stats().PlainPort)
			}
			var enc, dec uint64
			for _, e := range []*Engine{ea, eb} {
				for _, w := range e.Stats().Workers {
					enc += w.Encrypted
					dec += w.Decrypted
				}
			}
			a, b := p.tunA.Stats(), p.tunB.Stats()
			t.Logf("encrypted %d decrypted %d\nA %+v\nB %+v", enc, dec, a, b)
			if a.SplitSuperPackets == 0 || b.CoalescedSuperPackets == 0 || enc == 0 || dec == 0 {
				t.Errorf("no super-packets split or coalesced, or nothing through the SAs")
			}
			if a.WriteErrors+b.WriteErrors+a.OversizeDrops+b.OversizeDrops != 0 {
				t.Errorf("write errors or oversize drops")
			}
		})
	}
}

// TestTUNPortStopStart: an engine with two workers sharing one TUN
// queue (a TUNPort over fewer queues than workers) is stopped and
// started again and again while a local sender pushes UDP GSO bursts of
// 100 segments into the TUN (super-packets a Stop may cut in the middle
// of their split). Invariants: after each round's traffic every frame
// is back in the UMEM (none held by the application), and once stopped no goroutine and no descriptor (the port's epoll
// instances) is left behind.
func TestTUNPortStopStart(t *testing.T) {
	e, ns, tuns := tunEngine(t, "esptss0", 1, 2)
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	fds0, g0 := openFDs(t), runtime.NumGoroutine()
	sc := dialUDPGSO(t, ns, netip.MustParseAddrPort("10.62.2.9:9"), 500)
	burst := make([]byte, 500*100)
	for round := range 8 {
		if err := e.Start(); err != nil {
			t.Fatalf("round %d: Start: %v", round, err)
		}
		for range 20 {
			if _, err := sc.Write(burst); err != nil {
				t.Fatal(err)
			}
		}
		if round%2 == 1 {
			// Stop right away: segments may still wait in the splitter.
			if err := e.Stop(); err != nil {
				t.Fatalf("round %d: Stop: %v", round, err)
			}
			continue
		}
		u := e.rt.u
		var prev uint64
		ok := netns.WaitFor(3*time.Second, func() bool {
			var n uint64
			for _, w := range e.Stats().Workers {
				n += w.PlainRX + w.SADrops
			}
			done := n == prev && u.Counts().App == 0
			prev = n
			time.Sleep(20 * time.Millisecond)
			return done
		})
		if !ok {
			t.Fatalf("round %d: frames still held: %+v", round, u.Counts())
		}
		if err := e.Stop(); err != nil {
			t.Fatalf("round %d: Stop: %v", round, err)
		}
	}
	sc.Close()
	st := tuns[0].Stats()
	t.Logf("%+v", st)
	if st.SplitSuperPackets == 0 {
		t.Errorf("no super-packets split: %+v", st)
	}
	if !netns.WaitFor(2*time.Second, func() bool { return runtime.NumGoroutine() <= g0 }) {
		t.Errorf("%d goroutines after the cycles, %d before", runtime.NumGoroutine(), g0)
	}
	if d := fdDiff(fds0, openFDs(t)); d != "" {
		t.Errorf("descriptors left open or closed: %s", d)
	}
}

// TestTUNPortMTUChanges: both TUNs' MTUs change (1280, 1500, 2000, 3000:
// all within a frame) while a TCP transfer runs through the ports; the
// transfer completes byte for byte, nothing is dropped as oversize and
// every frame goes back.
func TestTUNPortMTUChanges(t *testing.T) {
	p := newPortPair(t, false)
	p.forward(t)
	if room := (&PortEnv{UMEM: p.u, Tailroom: esp.MaxTailroom}).MaxPacket(); room < 3000 {
		t.Skipf("frames take %d bytes", room)
	}
	done := make(chan error, 1)
	go func() { done <- p.tcpTransfer(6111, 16<<20) }()
	mtus := []string{"1280", "1500", "2000", "3000"}
	for i := 0; ; i++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("tcp after %d MTU changes: %v", i, err)
			}
			if s := p.tunA.Stats(); s.OversizeDrops != 0 {
				t.Errorf("oversize drops: %+v", s)
			}
			for deadline := time.Now().Add(time.Second); ; time.Sleep(time.Millisecond) {
				if c := p.u.Counts(); c.Free == c.Total {
					return
				} else if time.Now().After(deadline) {
					t.Fatalf("frames not all free: %+v", c)
				}
			}
		case <-time.After(5 * time.Millisecond):
			m := mtus[i%len(mtus)]
			p.nsA.IP(t, "link", "set", p.tunA.Name(), "mtu", m)
			p.nsB.IP(t, "link", "set", p.tunB.Name(), "mtu", mtus[(i+1)%len(mtus)])
		}
	}
}
