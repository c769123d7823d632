//go:build linux

package xdp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/bpf"
	"github.com/espxdp/espxdp/internal/netns"
)

// fwdSetup is a Forwarder between a.B (In) and b.A (Out) of a fwdNet.
type fwdSetup struct {
	fw      *Forwarder
	in, out *Socket
	uIn     *UMEM
	uOut    *UMEM
	prog    *bpf.Program
}

// newForwarder loads and attaches the steering program on a.B, opens
// the sockets (on one UMEM if shared) and prepares a Forwarder that owns
// all of it. It does not start it and registers no cleanup: the caller
// stops it.
func newForwarder(t testing.TB, f *fwdNet, shared bool, hook BatchFunc) *fwdSetup {
	t.Helper()
	prog, err := bpf.Load(bpf.Options{Queues: 1})
	if err != nil {
		t.Fatal(err)
	}
	att := attach(t, prog, f.a.B)
	cfg := UMEMConfig{NumFrames: 4096, FillSize: 2048, CompletionSize: 2048}
	uIn, err := NewUMEM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	uOut := uIn
	if !shared {
		if uOut, err = NewUMEM(cfg); err != nil {
			t.Fatal(err)
		}
	}
	in, err := tryOpenSocket(f.nf, uIn, SocketConfig{Ifindex: f.a.B.Index, TXSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	out, err := tryOpenSocket(f.nf, uOut, SocketConfig{Ifindex: f.b.A.Index, RXSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	register(t, prog, 0, in)
	fw, err := NewForwarder(ForwarderConfig{In: in, Out: out, Batch: hook, Detach: []io.Closer{att, prog}})
	if err != nil {
		t.Fatal(err)
	}
	if fw.ZeroCopyHandover() != shared {
		t.Errorf("ZeroCopyHandover %v with shared UMEM %v", fw.ZeroCopyHandover(), shared)
	}
	return &fwdSetup{fw: fw, in: in, out: out, uIn: uIn, uOut: uOut, prog: prog}
}

// diag describes the forwarder's state for failure messages.
func (s *fwdSetup) diag(t testing.TB) string {
	in, _ := s.in.Stats()
	out, _ := s.out.Stats()
	ps, _ := s.prog.Stats()
	return fmt.Sprintf("forwarder %+v\nIn %+v\nOut %+v\nprogram %+v\nframes %+v",
		s.fw.Stats(), in, out, ps, s.uIn.Counts())
}

func (s *fwdSetup) start(t testing.TB) {
	t.Helper()
	if err := s.fw.Start(); err != nil {
		t.Fatal(err)
	}
}

// espFrames builds count IPv4 ESP packets from f.src to f.dst with SPI
// spi, sequence numbers from seq, of size bytes (IP packet).
func espPackets(f *fwdNet, spi uint32, seq, count, size int) [][]byte {
	var out [][]byte
	for i := range count {
		out = append(out, ipv4(f.src, f.dst, 50, uint16(seq+i), espPayload(spi, uint32(seq+i), size-28)))
	}
	return out
}

const fwdMagic = 0x45535058 // SPI prefix of the forwarder tests' packets

func isTestESP(b []byte) bool {
	return len(b) >= 42 && binary.BigEndian.Uint16(b[12:]) == 0x0800 && b[23] == 50 &&
		binary.BigEndian.Uint32(b[34:])&0xffff0000 == fwdMagic&0xffff0000
}

var (
	hookMarker  = []byte("ESPXDP\x00\x01")
	hookTrailer = []byte{0xde, 0xad, 0xbe, 0xef}
)

const dropSPI = fwdMagic&0xffff0000 | 0xd0d0

// testHook drops packets with dropSPI; from every other it moves the
// Ethernet header 8 bytes into the headroom, writes hookMarker between
// it and the IP header, and appends hookTrailer in the tailroom.
func testHook(pkts []Packet) {
	for i := range pkts {
		p := &pkts[i]
		if p.Len >= 42 && binary.BigEndian.Uint32(p.Buf[p.Off+34:]) == dropSPI {
			p.Drop = true
			continue
		}
		copy(p.Buf[p.Off-8:], p.Buf[p.Off:p.Off+14])
		copy(p.Buf[p.Off+6:], hookMarker)
		copy(p.Buf[p.Off+p.Len:], hookTrailer)
		p.Off -= 8
		p.Len += 8 + len(hookTrailer)
	}
}

// TestForwarder forwards ESP from ns1 through the forwarder namespace to
// ns2, with the frames handed over in one UMEM or copied between two,
// with and without a batch function, and checks what arrives in ns2
// byte for byte.
func TestForwarder(t *testing.T) {
	requireNet(t)
	for _, shared := range []bool{true, false} {
		for _, hook := range []bool{false, true} {
			name := fmt.Sprintf("shared=%v/hook=%v", shared, hook)
			t.Run(name, func(t *testing.T) { testForwarder(t, shared, hook) })
		}
	}
}

func testForwarder(t *testing.T, shared, withHook bool) {
	f := newFwdNet(t)
	var hook BatchFunc
	if withHook {
		hook = testHook
	}
	s := newForwarder(t, f, shared, hook)
	t.Cleanup(func() { s.fw.Stop() })
	s.start(t)
	capt := newCapture(t, f.b.B)

	const count = 40
	pkts := espPackets(f, fwdMagic|1, 0, count, 200)
	var drops [][]byte
	if withHook {
		drops = espPackets(f, dropSPI, 1000, 10, 100)
	}
	var all [][]byte
	for i, p := range pkts {
		all = append(all, p)
		if i%4 == 0 && len(drops) > 0 {
			all, drops = append(all, drops[0]), drops[1:]
		}
	}
	if err := sendIPv4(f.n1, 50, all...); err != nil {
		t.Fatal(err)
	}
	got := capt.collect(count, 3*time.Second, func(b []byte) bool {
		if withHook && len(b) > 22 && bytes.Equal(b[14:22], hookMarker) {
			return true
		}
		return isTestESP(b)
	})
	if len(got) != count {
		t.Fatalf("ns2 captured %d packets, want %d; %s", len(got), count, s.diag(t))
	}
	for i, p := range pkts {
		want := ether(f.a.B.MAC, f.a.A.MAC, 0x0800, p)
		if withHook {
			want = append(append(append(want[:14:14], hookMarker...), p...), hookTrailer...)
		}
		if !bytes.Equal(got[i], want) {
			t.Errorf("packet %d:\n got %x\nwant %x", i, got[i], want)
		}
	}

	st := s.fw.Stats()
	wantDrops := uint64(0)
	if withHook {
		wantDrops = uint64(len(all) - count)
	}
	wantCopied := uint64(0)
	if !shared {
		wantCopied = count
	}
	if st.RXPackets != uint64(len(all)) || st.TXPackets != count || st.HookDrops != wantDrops ||
		st.Copied != wantCopied || st.BadPackets != 0 || st.NoFrame != 0 || st.TXFull != 0 || st.Batches == 0 {
		t.Errorf("forwarder stats %+v (sent %d, want %d forwarded, %d dropped)", st, len(all), count, wantDrops)
	}
	// The forwarder is idle now: every frame is accounted for.
	quiet(t, s.uIn, s.in, s.out)
	if !shared {
		quiet(t, s.uOut, s.out)
	}
	if err := s.fw.Stop(); err != nil {
		t.Fatal(err)
	}
	if f.a.B.XDPAttached(t) {
		t.Error("XDP program still attached after Stop")
	}
	for _, u := range []*UMEM{s.uIn, s.uOut} {
		if c := u.Counts(); c.App != 0 || c.Free != c.Total || u.NumSockets() != 0 {
			t.Errorf("after Stop: %+v, %d sockets", c, u.NumSockets())
		}
	}
	if err := s.fw.Start(); err == nil {
		t.Error("Start after Stop succeeded")
	}
}

// TestForwarderStopStart runs three start/stop cycles on one topology
// and checks that each leaves no XDP program, file descriptor or
// goroutine behind.
func TestForwarderStopStart(t *testing.T) {
	requireNet(t)
	f := newFwdNet(t)
	capt := newCapture(t, f.b.B)
	fds, gs := openFDs(t), runtime.NumGoroutine()
	for cycle := range 3 {
		s := newForwarder(t, f, cycle%2 == 0, nil)
		pin := cycle == 1
		if pin {
			s.fw.cfg.PinCPU, s.fw.cfg.CPU = true, runtime.NumCPU()-1
		}
		s.start(t)
		if pin {
			var set unix.CPUSet
			if err := unix.SchedGetaffinity(int(s.fw.tid.Load()), &set); err != nil {
				t.Error(err)
			} else if set.Count() != 1 || !set.IsSet(runtime.NumCPU()-1) {
				t.Errorf("pinned forwarder thread may run on %d CPUs", set.Count())
			}
		}
		pkts := espPackets(f, fwdMagic|uint32(0x100+cycle), 0, 5, 100)
		if err := sendIPv4(f.n1, 50, pkts...); err != nil {
			t.Fatal(err)
		}
		got := capt.collect(len(pkts), 3*time.Second, isTestESP)
		if len(got) != len(pkts) {
			t.Errorf("cycle %d: %d of %d packets forwarded; %s", cycle, len(got), len(pkts), s.diag(t))
		}
		for _, g := range got {
			if spi := binary.BigEndian.Uint32(g[34:]); spi != fwdMagic|uint32(0x100+cycle) {
				t.Errorf("cycle %d: packet with SPI %#x", cycle, spi)
			}
		}
		quiet(t, s.uIn, s.in, s.out)
		if err := s.fw.Stop(); err != nil {
			t.Fatalf("cycle %d: Stop: %v", cycle, err)
		}
		if err := s.fw.Stop(); err != nil {
			t.Errorf("cycle %d: second Stop: %v", cycle, err)
		}
		if f.a.B.XDPAttached(t) {
			t.Errorf("cycle %d: XDP program left attached", cycle)
		}
		if now := openFDs(t); len(now) != len(fds) {
			t.Errorf("cycle %d: %d file descriptors open, %d before:%s", cycle, len(now), len(fds), fdDiff(fds, now))
		}
		if !netns.WaitFor(time.Second, func() bool { return runtime.NumGoroutine() <= gs }) {
			t.Errorf("cycle %d: %d goroutines, %d before", cycle, runtime.NumGoroutine(), gs)
		}
		if c := s.uIn.Counts(); c.Free != c.Total {
			t.Errorf("cycle %d: frames after Stop: %+v", cycle, c)
		}
	}
}

// TestForwarderStepAllocs queues packets on In's RX ring, then runs the
// forwarding step by hand and checks it allocates nothing, in both
// hand-over and copy mode, with a batch function.
func TestForwarderStepAllocs(t *testing.T) {
	requireNet(t)
	for _, shared := range []bool{true, false} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			f := newFwdNet(t)
			calls := 0
			s := newForwarder(t, f, shared, func(pkts []Packet) {
				calls++
				for i := range pkts {
					pkts[i].Buf[pkts[i].Off+pkts[i].Len-1] ^= 0xff
				}
			})
			t.Cleanup(func() { s.fw.Stop() })
			const runs = 20
			s.in.Refill()
			queueRX(t, f, s, (runs+1)*MaxBatch)
			allocs := testing.AllocsPerRun(runs, func() { s.fw.step() })
			if allocs != 0 {
				t.Errorf("%v allocations per step", allocs)
			}
			if st := s.fw.Stats(); st.RXPackets < (runs+1)*MaxBatch || st.TXPackets != st.RXPackets || calls < runs+1 {
				t.Errorf("steps forwarded %+v with %d batch calls", st, calls)
			}
			for s.fw.step() > 0 {
			}
			quiet(t, s.uIn, s.in, s.out)
		})
	}
}

// queueRX sends ESP packets from n1 until at least want of them wait on
// In's RX ring. It sends a chunk at a time and lets the ring catch up
// before the next: a raw socket outruns veth's NAPI ring (256 entries
// once XDP is attached), which drops what does not fit, so one burst of
// 1400 packets sometimes left only 1024 on the ring. It stops short of
// the ring's size so nothing is lost there either.
func queueRX(t *testing.T, f *fwdNet, s *fwdSetup, want int) {
	t.Helper()
	const chunk = 64
	rx := func() int { return s.uIn.Counts().RX }
	for sent := 0; rx() < want; sent += chunk {
		if sent+chunk > DefaultRingSize {
			t.Fatalf("only %d of %d packets sent reached the RX ring; %s", rx(), sent, s.diag(t))
		}
		before := rx()
		if err := sendIPv4(f.n1, 50, espPackets(f, fwdMagic|7, sent, chunk, 64)...); err != nil {
			t.Fatal(err)
		}
		// Wait until the chunk has arrived or the ring stops growing.
		netns.WaitFor(time.Second, func() bool {
			n := rx()
			if n >= before+chunk || n >= want {
				return true
			}
			time.Sleep(20 * time.Millisecond)
			return rx() == n && n > before
		})
	}
}

// TestForwarderUnstarted checks Stop closes everything even if the
// forwarder never ran.
func TestForwarderUnstarted(t *testing.T) {
	requireNet(t)
	f := newFwdNet(t)
	s := newForwarder(t, f, false, nil)
	if err := s.fw.Stop(); err != nil {
		t.Fatal(err)
	}
	if f.a.B.XDPAttached(t) || s.uIn.NumSockets() != 0 || s.uOut.NumSockets() != 0 {
		t.Error("Stop of an unstarted forwarder left the program or sockets")
	}
	if _, err := s.in.Stats(); err != ErrClosed {
		t.Errorf("Stats of a closed socket: %v", err)
	}
}
