//go:build linux

package xdp

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/netns"
	"github.com/espxdp/espxdp/internal/scapypeer"
	"github.com/espxdp/espxdp/internal/testenv"
)

// tunNet is peer —veth c— gw: the engine runs in gw with c.A as its
// ciphertext side and a TUN device (10.1.0.1/24, route 10.2.0.0/24 into
// it) as its plaintext side.
func newTUNNet(t *testing.T) *engNet {
	t.Helper()
	n := &engNet{nsC: netns.New(t), nsE: netns.New(t),
		eC: netip.MustParseAddr("192.0.2.1"), pC: netip.MustParseAddr("192.0.2.2")}
	n.c = netns.NewVethPair(t, n.nsE, n.nsC)
	n.c.A.AddAddr(t, netip.PrefixFrom(n.eC, 24))
	n.c.B.AddAddr(t, netip.PrefixFrom(n.pC, 24))
	n.c.A.SetNeighbour(t, n.pC, n.c.B.MAC)
	n.c.B.SetNeighbour(t, n.eC, n.c.A.MAC)
	return n
}

// tunConfig is an engine configuration without a plaintext port.
func tunConfig(n *engNet, s *engSAs) EngineConfig {
	return EngineConfig{
		Processor: s.proc,
		Cipher:    Port{Name: n.c.A.Name, NextHop: n.c.B.MAC},
		UMEM:      UMEMConfig{NumFrames: 2048, FillSize: 512, CompletionSize: 512},
	}
}

// openTUN opens a TUN device in ns and closes it with the test.
func openTUN(t *testing.T, ns *netns.NS) *TUN {
	t.Helper()
	var tun *TUN
	if err := ns.Do(func() (err error) { tun, err = OpenTUN("esptun0"); return err }); err != nil {
		t.Fatalf("OpenTUN: %v", err)
	}
	t.Cleanup(func() { tun.Close() })
	if tun.Name() != "esptun0" {
		t.Errorf("Name %q, want esptun0", tun.Name())
	}
	return tun
}

func icmpEcho(typ byte, src, dst netip.Addr, id, seq uint16) []byte {
	m := make([]byte, 8+32)
	m[0] = typ
	binary.BigEndian.PutUint16(m[4:], id)
	binary.BigEndian.PutUint16(m[6:], seq)
	for i := range 32 {
		m[8+i] = byte(seq) + byte(i)
	}
	binary.BigEndian.PutUint16(m[2:], csum(m))
	return ipv4(src, dst, 1, seq, m)
}

// TestEngineTUN: scapy-made ESP carrying echo requests 10.2.0.5 →
// 10.1.0.1 is decrypted into the TUN, gw's kernel answers through the
// route into the TUN, and the engine encrypts the replies.
func TestEngineTUN(t *testing.T) {
	requireNet(t)
	n := newTUNNet(t)
	s := newEngSAs(t, n)
	testenv.RequireCommand(t, "sysctl")
	tun := openTUN(t, n.nsE)
	// No IPv6 on the TUN: its link-local address would bring router
	// solicitations and MLD reports into the tunnel.
	if out, err := n.nsE.Exec(context.Background(), "sysctl", "-w", "net.ipv6.conf."+tun.Name()+".disable_ipv6=1"); err != nil {
		t.Fatalf("sysctl: %v: %s", err, out)
	}
	n.nsE.IP(t, "link", "set", tun.Name(), "up")
	n.nsE.IP(t, "addr", "add", "10.1.0.1/24", "dev", tun.Name())
	n.nsE.IP(t, "route", "add", "10.2.0.0/24", "dev", tun.Name())

	cfg := tunConfig(n, s)
	cfg.Deliver = tun.Deliver
	e := startEngine(t, n, cfg)
	if r := e.SendRoom(0); r != srcQueueLen {
		t.Errorf("SendRoom of an idle engine = %d, want %d", r, srcQueueLen)
	}
	if r := e.SendRoom(1); r != -1 {
		t.Errorf("SendRoom(1) of a one-queue engine = %d, want -1", r)
	}
	stop := make(chan struct{})
	served := make(chan error, 1)
	go func() { served <- ServeTUN(e, tun, 0, stop) }()

	capC := newCapture(t, n.c.B)
	const count = 20
	host, gw := netip.MustParseAddr("10.2.0.5"), netip.MustParseAddr("10.1.0.1")
	const id = 0x4242
	var reqs [][]byte
	for i := range count {
		reqs = append(reqs, icmpEcho(8, host, gw, id, uint16(i+1)))
	}
	n.send(t, encryptScapy(t, scapySA(spiIn, n, false), reqs, 1)...)
	got := capC.collect(count, 3*time.Second, fromTo(50, n.eC, n.pC))

	// A packet larger than ServeTUN's buffers is dropped and counted,
	// never sent truncated.
	n.nsE.IP(t, "link", "set", tun.Name(), "mtu", "9000")
	if err := n.nsE.Do(func() error {
		c, err := net.Dial("udp4", "10.2.0.9:9")
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(make([]byte, 5000)) // a 5028-byte IPv4 packet into the TUN
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Second); tun.OversizeDrops() == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if d := tun.OversizeDrops(); d != 1 {
		t.Errorf("OversizeDrops = %d after one 5028-byte packet, want 1", d)
	}

	close(stop)
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ServeTUN: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ServeTUN did not return after stop")
	}
	if len(got) != count {
		t.Fatalf("got %d ESP packets, want %d; stats %+v", len(got), count, e.Stats().Workers)
	}
	cases := make([]scapypeer.Case, len(got))
	for i, f := range got {
		cases[i] = scapypeer.Case{Op: scapypeer.Decrypt, SA: scapySA(spiOut, n, false), Packet: f[14:]}
	}
	seen := map[uint16]bool{}
	for i, r := range scapypeer.Run(t, cases).Results {
		p := r.Packet
		if r.Error != "" || len(p) < 28 {
			t.Errorf("packet %d: scapy %s %s", i, r.ErrorType, r.Error)
			continue
		}
		ihl := int(p[0]&0x0f) * 4
		icmp := p[ihl:]
		src, dst := netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20]))
		if p[9] != 1 || icmp[0] != 0 || src != gw || dst != host || binary.BigEndian.Uint16(icmp[4:]) != id {
			t.Errorf("packet %d is not an echo reply %v → %v id %#x: % x", i, gw, host, id, p)
			continue
		}
		seen[binary.BigEndian.Uint16(icmp[6:])] = true
	}
	for i := range count {
		if !seen[uint16(i+1)] {
			t.Errorf("no reply to echo request seq %d", i+1)
		}
	}
	w := e.Stats().Workers[0]
	if w.Decrypted != count || w.Encrypted != count || w.Sent != count {
		t.Errorf("worker stats: decrypted %d, encrypted %d, sent %d; want %d each", w.Decrypted, w.Encrypted, w.Sent, count)
	}
	checkFrames(t, e)
}

// TestTUNCloseUnblocksRead: Close returns a blocked Read promptly.
func TestTUNCloseUnblocksRead(t *testing.T) {
	requireNet(t)
	tun := openTUN(t, netns.New(t))
	res := make(chan error, 1)
	go func() {
		_, err := tun.Read(make([]byte, 2048))
		res <- err
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-res:
		t.Fatalf("Read returned before Close: %v", err)
	default:
	}
	if err := tun.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Read after Close: %v, want ErrClosed", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Read still blocked 1s after Close")
	}
	if _, err := tun.WriteBatch([][]byte{icmpEcho(8, netip.MustParseAddr("10.2.0.5"), netip.MustParseAddr("10.1.0.1"), 1, 1)}); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteBatch after Close: %v, want ErrClosed", err)
	}
	if err := ServeTUN(nil, tun, 0, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("ServeTUN without an engine: %v, want ErrInvalidConfig", err)
	}
	if _, err := OpenTUN("a-name-longer-than-ifnamsiz"); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("OpenTUN with a long name: %v, want ErrInvalidConfig", err)
	}
	if _, err := tun.ReadBatch(make([][]byte, 2), make([]int, 1)); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("ReadBatch with too few sizes: %v, want ErrInvalidConfig", err)
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestEngineTUNStopStart: engine, TUN and ServeTUN started and stopped
// twice leave no goroutine or file descriptor behind.
func TestEngineTUNStopStart(t *testing.T) {
	requireNet(t)
	n := newTUNNet(t)
	s := newEngSAs(t, n)
	cfg := tunConfig(n, s)
	cycle := func() {
		var tun *TUN
		if err := n.nsE.Do(func() (err error) { tun, err = OpenTUN(""); return err }); err != nil {
			t.Fatal(err)
		}
		defer tun.Close()
		c := cfg
		c.Deliver = tun.Deliver
		e, err := NewEngine(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.nsE.Do(e.Start); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		served := make(chan error, 1)
		go func() { served <- ServeTUN(e, tun, 0, stop) }()
		time.Sleep(20 * time.Millisecond)
		close(stop)
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("ServeTUN: %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("ServeTUN did not return after stop")
		}
		if err := e.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := ServeTUN(e, tun, 1, nil); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("ServeTUN on queue 1 of 1: %v, want ErrInvalidConfig", err)
		}
		// A second ServeTUN on the stopped engine: the read deadline
		// was reset, and Send's ErrClosed ends it once a packet comes;
		// closing the TUN ends it too.
		go func() { served <- ServeTUN(e, tun, 0, nil) }()
		time.Sleep(20 * time.Millisecond)
		tun.Close()
		select {
		case err := <-served:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("ServeTUN after Close: %v, want ErrClosed", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("ServeTUN did not return after Close")
		}
	}
	cycle() // warm up lazily created runtime state (poller, threads)
	fds, gs := countFDs(t), runtime.NumGoroutine()
	cycle()
	cycle()
	var nfds, ngs int
	netns.WaitFor(time.Second, func() bool {
		nfds, ngs = countFDs(t), runtime.NumGoroutine()
		return nfds <= fds && ngs <= gs
	})
	if nfds > fds || ngs > gs {
		t.Errorf("after two cycles: %d fds (was %d), %d goroutines (was %d)", nfds, fds, ngs, gs)
	}
}

// TestTUNBatchNoAlloc: ReadBatch and WriteBatch do not allocate per
// packet. The kernel of a fresh namespace routes 10.2.0.0/24 into the
// TUN; written echo requests to its 10.1.0.1 are answered into the TUN,
// where ReadBatch picks the replies up.
func TestTUNBatchNoAlloc(t *testing.T) {
	requireNet(t)
	testenv.RequireCommand(t, "sysctl")
	ns := netns.New(t)
	tun := openTUN(t, ns)
	if out, err := ns.Exec(context.Background(), "sysctl", "-w", "net.ipv6.conf."+tun.Name()+".disable_ipv6=1"); err != nil {
		t.Fatalf("sysctl: %v: %s", err, out)
	}
	ns.IP(t, "link", "set", tun.Name(), "up")
	ns.IP(t, "addr", "add", "10.1.0.1/24", "dev", tun.Name())
	ns.IP(t, "route", "add", "10.2.0.0/24", "dev", tun.Name())
	host, gw := netip.MustParseAddr("10.2.0.5"), netip.MustParseAddr("10.1.0.1")
	const batch, runs = 4, 20
	pkts := make([][]byte, batch)
	seq := uint16(0)
	for i := range pkts {
		seq++
		pkts[i] = icmpEcho(8, host, gw, 7, seq)
	}
	allocs := testing.AllocsPerRun(runs, func() {
		if k, err := tun.WriteBatch(pkts); k != batch || err != nil {
			t.Fatalf("WriteBatch: %d, %v", k, err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per WriteBatch", allocs)
	}
	want := (runs + 1) * batch // AllocsPerRun makes one extra call
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	sizes := make([]int, batch)
	got := 0
	tun.SetReadDeadline(time.Now().Add(2 * time.Second))
	allocs = testing.AllocsPerRun(runs, func() {
		n, err := tun.ReadBatch(bufs, sizes)
		if err != nil {
			t.Fatalf("ReadBatch after %d packets: %v", got, err)
		}
		for i := range n {
			p := bufs[i][:sizes[i]]
			if sizes[i] < 28 || p[9] != 1 || p[20] != 0 || netip.AddrFrom4([4]byte(p[16:20])) != host {
				t.Fatalf("read packet is not an echo reply to %v: % x", host, p)
			}
		}
		got += n
	})
	if allocs != 0 {
		t.Errorf("%v allocations per ReadBatch", allocs)
	}
	if got == 0 || got > want {
		t.Errorf("read %d replies to %d requests", got, want)
	}
}
