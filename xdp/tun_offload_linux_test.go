//go:build linux

package xdp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/netns"
	"github.com/espxdp/espxdp/internal/race"
	"github.com/espxdp/espxdp/internal/topo"
)

// offloadPair is two namespaces, each with an offload TUN: a (addrA,
// routes netB into its TUN) and b (addrB, routes netA into its TUN).
// What one TUN reads is written to the other by forwarders, so a TCP
// connection from a to b crosses ReadBatch (splitting the sender's TSO
// super-packets) and WriteBatch (coalescing them again).
type offloadPair struct {
	nsA, nsB     *netns.NS
	tunA, tunB   *TUN
	addrA, addrB netip.Addr
}

func newOffloadPair(t testing.TB, v6 bool) *offloadPair {
	t.Helper()
	requireNet(t)
	p := &offloadPair{nsA: netns.New(t), nsB: netns.New(t)}
	pa, pb := netip.MustParsePrefix("10.61.1.1/24"), netip.MustParsePrefix("10.61.2.1/24")
	if v6 {
		pa, pb = netip.MustParsePrefix("fd61:1::1/64"), netip.MustParsePrefix("fd61:2::1/64")
	}
	p.addrA, p.addrB = pa.Addr(), pb.Addr()
	open := func(ns *netns.NS, self, peer netip.Prefix) *TUN {
		var tun *TUN
		if err := ns.Do(func() (err error) { tun, err = OpenTUNOffload("espoff0"); return err }); err != nil {
			t.Fatalf("OpenTUNOffload: %v", err)
		}
		t.Cleanup(func() { tun.Close() })
		if !tun.Offload() || !tun.Stats().Offload || tun.Name() != "espoff0" {
			t.Fatalf("device %q: offload %v", tun.Name(), tun.Offload())
		}
		ns.IP(t, "link", "set", tun.Name(), "mtu", "1400", "up")
		if v6 {
			ns.IP(t, "addr", "add", self.String(), "dev", tun.Name(), "nodad")
		} else {
			ns.IP(t, "addr", "add", self.String(), "dev", tun.Name())
		}
		ns.IP(t, "route", "add", peer.Masked().String(), "dev", tun.Name())
		return tun
	}
	p.tunA, p.tunB = open(p.nsA, pa, pb), open(p.nsB, pb, pa)
	return p
}

// forward copies what each device reads into the other; it runs until
// the test's cleanup closes the devices.
func (p *offloadPair) forward(t testing.TB) {
	pump(t, [2]*TUN{p.tunA, p.tunB}, [2]*TUN{p.tunB, p.tunA})
}

// pump copies, for each d of dirs in a goroutine of its own, what d[0]
// reads into d[1] until d[0] is closed, which t's cleanup does (and
// waits for the goroutines).
func pump(t testing.TB, dirs ...[2]*TUN) {
	var wg sync.WaitGroup
	for _, d := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fwd := newTUNPump()
			for fwd.step(d[0], d[1]) == nil {
			}
		}()
	}
	t.Cleanup(func() {
		for _, d := range dirs {
			d[0].Close()
		}
		wg.Wait()
	})
}

// tunPump holds the buffers of one direction, allocated once.
type tunPump struct {
	bufs  [][]byte
	sizes []int
	pkts  [][]byte
}

func newTUNPump() *tunPump {
	f := &tunPump{bufs: make([][]byte, tunReadSlots), sizes: make([]int, tunReadSlots), pkts: make([][]byte, tunReadSlots)}
	for i := range f.bufs {
		f.bufs[i] = make([]byte, TUNBufSize)
	}
	return f
}

// step reads one batch from src and writes it to dst.
func (f *tunPump) step(src, dst *TUN) error {
	n, err := src.ReadBatch(f.bufs, f.sizes)
	if err != nil {
		return err
	}
	for i := range n {
		f.pkts[i] = f.bufs[i][:f.sizes[i]]
	}
	_, err = dst.WriteBatch(f.pkts[:n])
	if errors.Is(err, ErrClosed) {
		return err
	}
	return nil
}

// tcpTransfer sends size pseudo-random bytes from a to b over TCP and
// checks that b received exactly them (topo.Transfer: SHA-256 of the
// stream at both ends), all within 40 seconds.
func (p *offloadPair) tcpTransfer(port uint16, size int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	srv, cli := &topo.NS{Name: p.nsB.Name, Label: "B"}, &topo.NS{Name: p.nsA.Name, Label: "A"}
	_, err := topo.Transfer(ctx, srv, netip.AddrPortFrom(p.addrB, port), cli, int64(size), uint64(port), nil)
	return err
}

// udpExchange sends datagrams from a to b: one at a time, then a UDP GSO
// burst (UDP_SEGMENT) that the kernel hands the TUN as one super-packet
// where it has USO, and checks each arrives intact.
func (p *offloadPair) udpExchange(t *testing.T, port uint16) {
	t.Helper()
	dst := netip.AddrPortFrom(p.addrB, port)
	var rc, sc *net.UDPConn
	if err := p.nsB.Do(func() (err error) { rc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(dst)); return err }); err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := p.nsA.Do(func() (err error) { sc, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst)); return err }); err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	buf := make([]byte, 65536)
	recv := func(want []byte) {
		t.Helper()
		rc.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := rc.Read(buf)
		if err != nil || !bytes.Equal(buf[:n], want) {
			t.Fatalf("udp: got %d bytes (err %v), want %d", n, err, len(want))
		}
	}
	for i := range 20 {
		msg := bytes.Repeat([]byte{byte(i)}, 100+50*i)
		if _, err := sc.Write(msg); err != nil {
			t.Fatal(err)
		}
		recv(msg)
	}
	const seg, segs = 1200, 8
	setUDPSegment(t, sc, seg)
	burst := make([]byte, seg*segs)
	for i := range burst {
		burst[i] = byte(i / seg)
	}
	if _, err := sc.Write(burst); err != nil {
		t.Fatal(err)
	}
	for i := range segs {
		recv(burst[i*seg : (i+1)*seg])
	}
}

// TestTUNOffloadForward: TCP (checked byte for byte) and UDP cross two
// offload TUNs joined by user-space forwarders, over IPv4 and IPv6; the
// TCP sender's super-packets are split on read and coalesced on write.
func TestTUNOffloadForward(t *testing.T) {
	forEachFamily(t, func(t *testing.T, v6 bool) {
		p := newOffloadPair(t, v6)
		p.forward(t)
		p.transferBoth(t, 5201)
	})
}

// forEachFamily runs f as subtests "ipv4" and "ipv6" (v6 false, true).
func forEachFamily(t *testing.T, f func(t *testing.T, v6 bool)) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) { f(t, v6) })
	}
}

// transferBoth sends TCP (port) and UDP (port+1) from a to b through
// whatever forwards between the two devices and checks their counters:
// A split the TCP sender's super-packets, B coalesced what it wrote, one
// system call per super-packet or packet, nothing dropped.
func (p *offloadPair) transferBoth(t *testing.T, port uint16) {
	t.Helper()
	if err := p.tcpTransfer(port, 8<<20); err != nil {
		t.Fatalf("tcp: %v", err)
	}
	p.udpExchange(t, port+1)
	a, b := p.tunA.Stats(), p.tunB.Stats()
	t.Logf("A %+v", a)
	t.Logf("B %+v", b)
	if a.SplitSuperPackets == 0 || a.SplitSegments <= a.SplitSuperPackets {
		t.Errorf("A read no TCP super-packets: %+v", a)
	}
	if b.CoalescedSuperPackets == 0 || b.CoalescedSegments <= b.CoalescedSuperPackets {
		t.Errorf("B coalesced nothing: %+v", b)
	}
	if a.Reads < a.SplitSuperPackets || a.Reads >= a.SplitSegments || b.Writes < b.CoalescedSuperPackets {
		t.Errorf("read(2)/write(2) counts: A %+v B %+v", a, b)
	}
	if a.ReadDrops+b.ReadDrops+a.WriteErrors+b.WriteErrors+a.OversizeDrops+b.OversizeDrops != 0 {
		t.Errorf("drops or errors: A %+v B %+v", a, b)
	}
}

// tcpSegment is an IPv4 TCP segment src:1 → dst:port with seq and
// payload, checksums filled in.
func tcpSegment(src, dst netip.Addr, port uint16, seq uint32, payload []byte) []byte {
	tcp := make([]byte, 20+len(payload))
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], port)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], 1)
	tcp[12] = 5 << 4
	tcp[13] = 0x10 // ACK
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	copy(tcp[20:], payload)
	pseudo := make([]byte, 12, 12+len(tcp))
	s4, d4 := src.As4(), dst.As4()
	copy(pseudo[0:], s4[:])
	copy(pseudo[4:], d4[:])
	pseudo[9] = syscall.IPPROTO_TCP
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(tcp)))
	binary.BigEndian.PutUint16(tcp[16:], csum(append(pseudo, tcp...)))
	return ipv4(src, dst, syscall.IPPROTO_TCP, uint16(seq), tcp)
}

// TestTUNOffloadAlloc: the offload write path (staging, GRO) and the
// read path (one read(2) split into packets) do not allocate. Writes are
// consecutive segments of one TCP flow, which the GRO coalesces; the
// reads are the forwarded segments of a TCP transfer, split from the
// sender's super-packets.
func TestTUNOffloadAlloc(t *testing.T) {
	if race.Enabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	p := newOffloadPair(t, false)
	src := netip.MustParseAddr("10.61.2.9")
	const batch = 16
	pkts := make([][]byte, batch)
	seq := uint32(1000)
	for i := range pkts {
		pkts[i] = tcpSegment(src, p.addrA, 9, seq, bytes.Repeat([]byte{byte(i)}, 1000))
		seq += 1000
	}
	allocs := testing.AllocsPerRun(50, func() {
		if k, err := p.tunA.WriteBatch(pkts); k != batch || err != nil {
			t.Fatalf("WriteBatch: %d, %v", k, err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per WriteBatch", allocs)
	}
	if s := p.tunA.Stats(); s.CoalescedSuperPackets == 0 || s.CoalescedSegments < batch {
		t.Errorf("written TCP segments were not coalesced: %+v", s)
	}
	// One flow's consecutive segments: one write(2) per WriteBatch (51
	// of them: AllocsPerRun runs once more than asked), and every packet
	// handed over is in a written super-packet or written alone.
	if s := p.tunA.Stats(); s.Writes != 51 || s.Writes+s.CoalescedSegments-s.CoalescedSuperPackets != 51*batch {
		t.Errorf("%d write(2) for 51 batches of %d segments of one flow: %+v", s.Writes, batch, s)
	}

	// Reads: B → A is forwarded by a goroutine; A → B by this one, whose
	// steps are measured while a transfer runs.
	pump(t, [2]*TUN{p.tunB, p.tunA})
	stop := make(chan struct{})
	fwdA := newTUNPump()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			p.tunA.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			fwdA.step(p.tunA, p.tunB)
		}
	}()
	// The handshake and the first super-packets go through the loop
	// above; then it is stopped and the measured steps take over.
	before := p.tunA.Stats().SplitSuperPackets
	transferred := make(chan error, 1)
	go func() { transferred <- p.tcpTransfer(5301, 64<<20) }()
	for deadline := time.Now().Add(5 * time.Second); p.tunA.Stats().SplitSuperPackets-before < 4; {
		if time.Now().After(deadline) {
			t.Fatal("no super-packets from the TCP sender")
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	<-done
	p.tunA.SetReadDeadline(time.Now().Add(10 * time.Second))
	allocs = testing.AllocsPerRun(200, func() {
		if err := fwdA.step(p.tunA, p.tunB); err != nil {
			t.Fatalf("forwarding step: %v", err)
		}
	})
	// Let the transfer finish.
	p.tunA.SetReadDeadline(time.Time{})
	go func() {
		for fwdA.step(p.tunA, p.tunB) == nil {
		}
	}()
	if err := <-transferred; err != nil {
		t.Errorf("tcp: %v", err)
	}
	if allocs != 0 {
		t.Errorf("%v allocations per read-split-write step", allocs)
	}
	if s := p.tunA.Stats(); s.SplitSuperPackets-before < 4 {
		t.Errorf("no super-packets split: %+v", s)
	}
}

// BenchmarkTUNOffloadForward: one read-split and coalesce-write step of
// a TCP stream between two offload TUNs per op (b.ReportAllocs: none in
// steady state); it reports the packets per step.
func BenchmarkTUNOffloadForward(b *testing.B) {
	p := newOffloadPair(b, false)
	pump(b, [2]*TUN{p.tunB, p.tunA})
	dst := netip.AddrPortFrom(p.addrB, 5401)
	var ln net.Listener
	if err := p.nsB.Do(func() (err error) { ln, err = net.Listen("tcp", dst.String()); return err }); err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.SetDeadline(time.Now().Add(60 * time.Second))
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	stop := make(chan struct{})
	sent := make(chan struct{})
	var c net.Conn
	go func() {
		defer close(sent)
		for i := range 100 {
			if err := p.nsA.Do(func() (err error) { c, err = net.DialTimeout("tcp", dst.String(), 5*time.Second); return err }); err == nil {
				break
			}
			if i == 99 {
				return
			}
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		chunk := make([]byte, 1<<20)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	fwd := newTUNPump()
	p.tunA.SetReadDeadline(time.Now().Add(30 * time.Second))
	before := p.tunA.Stats()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := fwd.step(p.tunA, p.tunB); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	after := p.tunA.Stats()
	close(stop)
	p.tunA.Close()
	<-sent
	b.ReportMetric(float64(after.SplitSegments-before.SplitSegments)/float64(b.N), "segments/op")
}

// TestTUNOffloadQueues: a multi-queue offload TUN (two queues, each read
// by its own forwarder, written through DeliverTUNs) carries four TCP
// flows at once intact; the queues' split counters add up.
func TestTUNOffloadQueues(t *testing.T) {
	p := newOffloadPair(t, false)
	// Replace A's device by a two-queue one of the same name.
	p.tunA.Close()
	var qs []*TUN
	if err := p.nsA.Do(func() (err error) { qs, err = OpenTUNQueues("espoff0", 2); return err }); err != nil {
		t.Fatalf("OpenTUNQueues: %v", err)
	}
	if _, err := OpenTUNQueues("x", 0); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("OpenTUNQueues with 0 queues: %v", err)
	}
	for _, q := range qs {
		if q.Name() != "espoff0" || !q.Offload() {
			t.Fatalf("queue %q offload %v", q.Name(), q.Offload())
		}
	}
	p.nsA.IP(t, "link", "set", "espoff0", "mtu", "1400", "up")
	p.nsA.IP(t, "addr", "add", "10.61.1.1/24", "dev", "espoff0")
	p.nsA.IP(t, "route", "add", "10.61.2.0/24", "dev", "espoff0")
	var wg sync.WaitGroup
	closeAll := func() {
		for _, q := range qs {
			q.Close()
		}
		p.tunB.Close()
		wg.Wait()
	}
	t.Cleanup(closeAll)
	for _, q := range qs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := newTUNPump()
			for f.step(q, p.tunB) == nil {
			}
		}()
	}
	deliver := DeliverTUNs(qs)
	wg.Add(1)
	go func() {
		defer wg.Done()
		f := newTUNPump()
		for {
			n, err := p.tunB.ReadBatch(f.bufs, f.sizes)
			if err != nil {
				return
			}
			for i := range n {
				f.pkts[i] = f.bufs[i][:f.sizes[i]]
			}
			deliver(f.pkts[:n])
		}
	}()
	errs := make(chan error, 4)
	for i := range 4 {
		go func() { errs <- p.tcpTransfer(uint16(5501+i), 2<<20) }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("tcp: %v", err)
		}
	}
	var split uint64
	for i, q := range qs {
		s := q.Stats()
		t.Logf("queue %d: %+v", i, s)
		split += s.SplitSuperPackets
	}
	if split == 0 {
		t.Error("no queue split a super-packet")
	}
}

// TestFlowHashSymmetric: flowHash gives both directions of a flow the
// same value (so DeliverTUNs and the kernel's steering agree on a
// queue), over random IPv4 and IPv6 TCP and UDP packets, and never
// panics on truncated input.
func TestFlowHashSymmetric(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		v6 := i%2 == 1
		hl := 20
		if v6 {
			hl = 40
		}
		p := make([]byte, hl+8+rng.IntN(64))
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		proto := []byte{6, 17}[rng.IntN(2)]
		var q []byte
		if v6 {
			p[0], p[6] = 0x60, proto
			q = bytes.Clone(p)
			copy(q[8:24], p[24:40])
			copy(q[24:40], p[8:24])
		} else {
			p[0], p[9], p[6], p[7] = 0x45, proto, 0, 0
			q = bytes.Clone(p)
			copy(q[12:16], p[16:20])
			copy(q[16:20], p[12:16])
		}
		copy(q[hl:hl+2], p[hl+2:hl+4])
		copy(q[hl+2:hl+4], p[hl:hl+2])
		if flowHash(p) != flowHash(q) {
			t.Fatalf("flowHash differs by direction: % x / % x", p[:hl+4], q[:hl+4])
		}
		for n := range len(p) {
			flowHash(p[:n])
		}
	}
}

// tcpInCsumErrors reads Tcp InCsumErrors of the calling
// thread's namespace (run it in ns.Do).
func tcpInCsumErrors() (uint64, error) {
	b, err := os.ReadFile("/proc/thread-self/net/snmp")
	if err != nil {
		return 0, err
	}
	var names []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		if i := slices.Index(names, "InCsumErrors"); i > 0 && i < len(f) {
			return strconv.ParseUint(f[i], 10, 64)
		}
	}
	return 0, errors.New("no Tcp InCsumErrors")
}

// TestTUNOffloadKeepsBadChecksums: the coalescing write never launders
// a corrupted TCP checksum. Invariant (wireguard's GRO checks every
// segment's checksum before it merges it into a super-packet, whose
// checksum the kernel then trusts as CHECKSUM_PARTIAL): a segment with a
// wrong checksum is written on its own, unmarked, and the kernel counts
// it as a checksum error. Random batches of consecutive segments with a
// random subset corrupted: the kernel's InCsumErrors grows by exactly
// the number corrupted.
func TestTUNOffloadKeepsBadChecksums(t *testing.T) {
	p := newOffloadPair(t, false)
	p.checkBadChecksums(t, 3, 16, func(raw [][]byte) {
		if k, err := p.tunA.WriteBatch(raw); k != len(raw) || err != nil {
			t.Fatalf("WriteBatch: %d of %d, %v", k, len(raw), err)
		}
	})
}

// checkBadChecksums writes, through write, 20 random batches of 2 to
// max consecutive TCP segments of one flow to a's address (equal sizes
// but for the last, so they coalesce; consecutive IPv4 IDs), a random
// third of them corrupted (a payload byte flipped), and checks that
// a's stack counts exactly the corrupted ones as checksum errors: none
// was merged into a super-packet whose checksum the kernel would
// compute afresh. Something must have been coalesced.
func (p *offloadPair) checkBadChecksums(t *testing.T, seed uint64, max int, write func(raw [][]byte)) {
	t.Helper()
	src := netip.MustParseAddr("10.61.2.9")
	rng := rand.New(rand.NewPCG(seed, seed+1))
	read := func() uint64 {
		var n uint64
		if err := p.nsA.Do(func() (err error) { n, err = tcpInCsumErrors(); return err }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	seq := uint32(5000 + 1000*seed)
	for round := range 20 {
		n := 2 + rng.IntN(max-1)
		raw := make([][]byte, n)
		bad := 0
		for i := range raw {
			size := 200 + rng.IntN(1000)
			if i < n-1 {
				size = 1000 // equal sizes: coalescable
			}
			raw[i] = withID(tcpSegment(src, p.addrA, 9, seq, bytes.Repeat([]byte{byte(round + i)}, size)), uint16(round*64+i))
			seq += uint32(size)
			if rng.IntN(3) == 0 {
				raw[i][len(raw[i])-1] ^= 0x5a // payload changed, checksum now wrong
				bad++
			}
		}
		before := read()
		write(raw)
		if got := read() - before; got != uint64(bad) {
			t.Fatalf("round %d: %d corrupted segments of %d, kernel counted %d checksum errors", round, bad, n, got)
		}
	}
	if s := p.tunA.Stats(); s.CoalescedSuperPackets == 0 {
		t.Errorf("nothing was coalesced: %+v", s)
	}
}

// TestTUNOffloadOversizeSegments: with the TUN's MTU above TUNBufSize,
// the kernel hands ReadBatch super-packets whose segments do not fit its
// buffers: they are dropped and counted, never a panic or a truncated
// packet.
func TestTUNOffloadOversizeSegments(t *testing.T) {
	p := newOffloadPair(t, false)
	p.forward(t)
	p.oversize(t, 5601, func(s TUNStats) uint64 { return s.ReadDrops })
}

// oversize raises both devices' MTU to 9000 and starts a TCP transfer
// from a to b (it cannot finish: a's big segments are all dropped; it
// only has to make them), then waits up to 5 s for a's drops, as
// counted by drops, to be counted.
func (p *offloadPair) oversize(t *testing.T, port uint16, drops func(TUNStats) uint64) {
	t.Helper()
	p.nsA.IP(t, "link", "set", p.tunA.Name(), "mtu", "9000")
	p.nsB.IP(t, "link", "set", p.tunB.Name(), "mtu", "9000")
	go p.tcpTransfer(port, 1<<20)
	for deadline := time.Now().Add(5 * time.Second); drops(p.tunA.Stats()) == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no drop counted: %+v", p.tunA.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
