//go:build linux

package xdp

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/bpf"
	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/sa"
)

// steerModes are the concurrency modes the steering tests run in.
var steerModes = []sa.Concurrency{sa.Shared, sa.Sharded, sa.PerCPU, sa.Ordered}

// steerKey returns a distinct AES-128-GCM key (with salt) per index: no
// two outbound SAs of a SAD may share a key.
func steerKey(i int) []byte {
	k := make([]byte, 20)
	for j := range k {
		k[j] = byte(0x30 + i*7 + j)
	}
	return k
}

// steerSAs is one SA each way through an engine of 2 workers in mode,
// as a gateway for one peer: inbound spiIn, outbound spiOut (and, for
// PerCPU, spiOut+1 for the second worker).
type steerSAs struct {
	sad  *sa.SAD
	in   *sa.SA
	outs []*sa.SA
	tun  *sa.Tunnel
	proc *sa.Processor
}

func newSteerSAs(t testing.TB, n *engNet, mode sa.Concurrency, workers int) *steerSAs {
	t.Helper()
	tr := esp.MustParseTransform("aes128gcm16")
	s := &steerSAs{sad: sa.NewSAD(sa.SADOptions{}), tun: sa.NewTunnel("peer")}
	var err error
	if s.in, err = sa.New(sa.Config{Name: "in", SPI: spiIn, Direction: sa.In, Mode: esp.Tunnel,
		Local: n.eC, Remote: n.pC, Transform: tr, Key: steerKey(0)}); err != nil {
		t.Fatal(err)
	}
	nOut := 1
	if mode == sa.PerCPU {
		nOut = workers
	}
	for i := range nOut {
		o, err := sa.New(sa.Config{Name: fmt.Sprintf("out%d", i), SPI: spiOut + uint32(i), Direction: sa.Out,
			Mode: esp.Tunnel, Local: n.eC, Remote: n.pC, Transform: tr, Key: steerKey(1 + i)})
		if err != nil {
			t.Fatal(err)
		}
		s.outs = append(s.outs, o)
	}
	for _, x := range append([]*sa.SA{s.in}, s.outs...) {
		if err := s.sad.Add(x); err != nil {
			t.Fatal(err)
		}
	}
	s.tun.SetOutbound(s.outs...)
	if s.proc, err = sa.NewProcessor(sa.ProcessorOptions{SAD: s.sad, Tunnel: s.tun, Workers: workers, Concurrency: mode}); err != nil {
		t.Fatal(err)
	}
	return s
}

// outDone counts the outbound packets the engine finished: encrypted by
// one of the outbound SAs, dropped by one with a reason, or dropped
// because an owner's hand-off queue was full.
func (s *steerSAs) outDone(st EngineStats) uint64 {
	n := st.Processor.Drops[sa.DropQueueFull]
	for _, o := range s.outs {
		os := o.Stats()
		n += os.EncapsPkts
		for _, d := range os.Drops {
			n += d
		}
	}
	return n
}

// peerSeal encrypts inner packets as the peer would for spi under key:
// an in-order stream with sequence numbers 1, 2, ...
func peerSeal(t testing.TB, n *engNet, spi uint32, key []byte, inner [][]byte) [][]byte {
	t.Helper()
	proc := oneSAProc(t, sa.Config{SPI: spi, Direction: sa.Out, Mode: esp.Tunnel, Local: n.pC, Remote: n.eC,
		Transform: esp.MustParseTransform("aes128gcm16"), Key: key}, 1)
	w := proc.Worker(0)
	res := make([][]byte, len(inner))
	buf := make([]byte, 4096)
	for i, p := range inner {
		pk := []sa.Packet{{Buf: buf, Off: 512, Len: copy(buf[512:], p)}}
		w.Outbound(pk)
		if pk[0].Verdict != sa.VerdictOK {
			t.Fatalf("peer seal %d: %v %v", i, pk[0].Verdict, pk[0].Reason)
		}
		res[i] = append([]byte(nil), pk[0].Data()...)
	}
	return res
}

// collector gathers matching frames on a capture concurrently with the
// sender (an AF_PACKET socket's buffer would overflow otherwise).
type collector struct {
	mu   sync.Mutex
	got  [][]byte
	done chan struct{}
}

func startCollect(t testing.TB, c *capture, want int, timeout time.Duration, match func([]byte) bool) *collector {
	t.Helper()
	unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
	col := &collector{done: make(chan struct{})}
	go func() {
		defer close(col.done)
		got := c.collect(want, timeout, match)
		col.mu.Lock()
		col.got = got
		col.mu.Unlock()
	}()
	return col
}

func (col *collector) wait() [][]byte {
	<-col.done
	col.mu.Lock()
	defer col.mu.Unlock()
	return col.got
}

// innerID is the IP ID of the inner IPv4 packet of an Ethernet frame.
func innerID(f []byte) int { return int(binary.BigEndian.Uint16(f[14+4:])) }

// sendFlowControlled sends pkts in bursts of burst with send and, after
// each, waits (up to 500 ms) until the engine has taken them all
// (rx(stats) counts up to what was sent): the test checks what the
// engine does with the packets, not how many a loaded machine's veth
// and rings drop when a test sends faster than it is scheduled.
func sendFlowControlled(t *testing.T, e *Engine, pkts [][]byte, burst int, send func([][]byte), rx func(EngineStats) uint64) {
	t.Helper()
	base := rx(e.Stats())
	for i := 0; i < len(pkts); i += burst {
		j := min(i+burst, len(pkts))
		send(pkts[i:j])
		deadline := time.Now().Add(500 * time.Millisecond)
		for rx(e.Stats())-base < uint64(j) && time.Now().Before(deadline) {
			time.Sleep(200 * time.Microsecond)
		}
	}
}

func cipherRX(st EngineStats) uint64 {
	var n uint64
	for _, w := range st.Workers {
		n += w.CipherRX
	}
	return n
}

// watchStatsOrder reads e.Stats in a loop while traffic flows, until the
// returned function is called, and checks the order Engine.Stats keeps:
// within one snapshot no stage counts more packets than a stage before
// it (the Cipher program redirected at least what the workers received,
// and they received at least what they decrypted).
func watchStatsOrder(t *testing.T, e *Engine) (stop func()) {
	t.Helper()
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		for i := 0; i < 100000; i++ {
			select {
			case <-done:
				return
			default:
			}
			st := e.Stats()
			var rx, dec uint64
			for _, w := range st.Workers {
				rx, dec = rx+w.CipherRX, dec+w.Decrypted
			}
			pc := st.CipherProgram
			redir := pc.ESPRedirected + pc.NATTRedirected + pc.FragmentRedirected + pc.PlaintextRedirected
			if rx < dec || redir < rx {
				t.Errorf("one Stats snapshot: program redirected %d, workers received %d, decrypted %d", redir, rx, dec)
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	return func() { close(done); <-exited }
}

// outOfOrder counts the items that arrive after a larger one: the
// packets a receiver sees out of order within one flow.
func outOfOrder(seq []int) int {
	n, top := 0, -1
	for _, v := range seq {
		if v < top {
			n++
		}
		top = max(top, v)
	}
	return n
}

// startOneQueueEngine starts an engine of 2 workers on one queue of a
// fresh engNet, its SAs steered in mode.
func startOneQueueEngine(t *testing.T, mode sa.Concurrency) (*engNet, *steerSAs, *Engine) {
	t.Helper()
	n := newEngNet(t)
	s := newSteerSAs(t, n, mode, 2)
	cfg := n.config(&engSAs{proc: s.proc})
	cfg.Workers = 2
	cfg.UMEM = UMEMConfig{NumFrames: 4096, FillSize: 1024, CompletionSize: 1024}
	return n, s, startEngine(t, n, cfg)
}

// TestEngineOneSAModes sends one SA's in-order stream through an engine
// of 2 workers on ONE queue (as RSS delivers one ESP flow), in every
// mode, both ways, and checks the steering invariants:
//   - every packet gets through, no replay drop, no sequence number sent
//     twice;
//   - Shared: the dealer spreads one SA over both workers;
//   - Sharded, PerCPU: every packet of the SPI is received by its
//     owner (Processor.OwnerOf), none handed off;
//   - Ordered: one sequencer receives the SA, and nothing leaves out of
//     order (inner packets after decryption, ESP sequence numbers after
//     encryption).
func TestEngineOneSAModes(t *testing.T) {
	requireNet(t)
	const count = 1500
	for _, mode := range steerModes {
		t.Run(mode.String(), func(t *testing.T) {
			n, s, e := startOneQueueEngine(t, mode)
			want := SteerSPI
			if mode == sa.Shared {
				want = SteerSpread
			}
			if got := e.cfg.Steering; got != want {
				t.Errorf("steering %v, want %v", got, want)
			}

			// Inbound.
			var inner [][]byte
			for i := range count {
				inner = append(inner, innerUDP(n.remote, n.pP, uint16(i), 200))
			}
			pkts := peerSeal(t, n, spiIn, steerKey(0), inner)
			col := startCollect(t, newCapture(t, n.p.B), count, 10*time.Second, fromTo(17, n.remote, n.pP))
			stopWatch := watchStatsOrder(t, e)
			sendFlowControlled(t, e, pkts, 50, func(b [][]byte) { n.send(t, b...) }, cipherRX)
			got := col.wait()
			stopWatch()
			st := e.Stats()
			ids := make([]int, len(got))
			for i, f := range got {
				ids[i] = innerID(f)
			}
			ooo := outOfOrder(ids)
			t.Logf("%v inbound: %d/%d decrypted, %d out of order; workers rx %d/%d",
				mode, len(got), count, ooo, st.Workers[0].CipherRX, st.Workers[1].CipherRX)
			if len(got) != count {
				t.Errorf("decrypted %d of %d; processor %+v", len(got), count, st.Processor)
			}
			if d := s.in.Stats().Drops[sa.DropReplay]; d != 0 {
				t.Errorf("%d replay drops", d)
			}
			if cpu := st.Workers[0].CPU + st.Workers[1].CPU; cpu <= 0 {
				t.Errorf("workers used %v CPU for %d packets", cpu, count)
			}
			if mode == sa.Ordered && ooo != 0 {
				t.Errorf("Ordered: %d packets out of order at egress", ooo)
			}
			switch mode {
			case sa.Shared:
				if st.Workers[0].CipherRX == 0 || st.Workers[1].CipherRX == 0 {
					t.Errorf("Shared: one SA not spread: workers received %d and %d", st.Workers[0].CipherRX, st.Workers[1].CipherRX)
				}
				// The floor the dealer needs: a worker's RX ring behind.
				if w := s.in.Stats().ReplayWindow; w < spreadWindowFloor(2, DefaultBatch) {
					t.Errorf("Shared: replay window %d, below the spreading floor %d", w, spreadWindowFloor(2, DefaultBatch))
				}
			default:
				owner := s.proc.OwnerOf(spiIn)
				if owner != bpf.SPIHashSlot(spiIn, 2) {
					t.Errorf("owner %d, steering slot %d", owner, bpf.SPIHashSlot(spiIn, 2))
				}
				if st.Workers[owner].CipherRX != count || st.Workers[1-owner].CipherRX != 0 {
					t.Errorf("SPI %#x not always on its owner %d: workers received %d and %d", spiIn, owner,
						st.Workers[0].CipherRX, st.Workers[1].CipherRX)
				}
				// Received by the owner, so processed there: a worker
				// hands off only packets of SAs it does not own. (The
				// processor's HandedOff may still count the plaintext
				// host's ICMP errors about the stream, outbound.)
				if d := s.in.Stats().DecapsPkts; d != count {
					t.Errorf("SA decapsulated %d of %d", d, count)
				}
			}

			// Outbound: the plaintext host sends one flow to a protected
			// host; the ESP leaving on the cipher side is checked.
			var plain [][]byte
			for i := range count {
				plain = append(plain, innerUDP(n.pP, n.remote, uint16(i), 200))
			}
			isESP := fromTo(50, n.eC, n.pC)
			colC := startCollect(t, newCapture(t, n.c.B), count, 10*time.Second, isESP)
			// Flow control on what the SA's owner finished, not on what
			// the receiving worker took: in Sharded mode the plaintext
			// side cannot steer by SA, so the worker that receives a
			// packet hands it to the owner through a bounded queue
			// (1024); counting PlainRX let the sender run ahead of an
			// owner a loaded machine did not schedule, and the queue
			// overflowed (counted DropQueueFull, as documented: a
			// hand-off queue drops rather than blocking a worker). The
			// test is about steering, order and sequence numbers, so it
			// keeps at most one burst in flight past the receiver;
			// queue-full drops still count as done, so a lapse shows
			// below as a loss with its reason, not as a stalled sender.
			sendFlowControlled(t, e, plain, 50, func(b [][]byte) {
				if err := sendIPv4(n.nsP, unix.IPPROTO_RAW, b...); err != nil {
					t.Fatal(err)
				}
			}, s.outDone)
			esps := colC.wait()
			seen := map[[2]uint32]bool{}
			perSPI := map[uint32][]int{}
			for _, f := range esps {
				spi, seq := binary.BigEndian.Uint32(f[34:]), binary.BigEndian.Uint32(f[38:])
				if seen[[2]uint32{spi, seq}] {
					t.Errorf("SPI %#x sent sequence number %d twice", spi, seq)
				}
				seen[[2]uint32{spi, seq}] = true
				perSPI[spi] = append(perSPI[spi], int(seq))
			}
			if len(esps) != count {
				t.Errorf("encrypted %d of %d; processor %+v", len(esps), count, e.Stats().Processor)
			}
			// Accounting: every packet the plaintext host sent was
			// encrypted by an outbound SA or counted as a drop with a
			// reason; none silently lost between workers.
			if done := s.outDone(e.Stats()); done < count {
				t.Errorf("outbound: %d of %d packets encrypted or counted as dropped; processor %+v", done, count, e.Stats().Processor)
			}
			for spi, seqs := range perSPI {
				ooo := outOfOrder(seqs)
				t.Logf("%v outbound: SPI %#x: %d packets, %d out of order", mode, spi, len(seqs), ooo)
				if mode == sa.Ordered && ooo != 0 {
					t.Errorf("Ordered: SPI %#x left %d packets out of order", spi, ooo)
				}
			}
			if mode == sa.PerCPU && len(perSPI) != 1 {
				// One inner destination: one worker, one of its SAs.
				t.Errorf("PerCPU: one inner flow used %d SAs, want 1 (destination hash)", len(perSPI))
			}
			checkFrames(t, e)
		})
	}
}

// TestEngineSteeringConfig checks how Steering resolves and what it
// refuses.
func TestEngineSteeringConfig(t *testing.T) {
	mk := func(mode sa.Concurrency, workers int) *sa.Processor {
		p, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sa.NewSAD(sa.SADOptions{}), Workers: workers, Concurrency: mode})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := func(p *sa.Processor) EngineConfig {
		return EngineConfig{Processor: p, Cipher: Port{Name: "x", NextHop: make([]byte, 6)},
			Deliver: func([][]byte) {}}
	}
	for _, c := range []struct {
		mode             sa.Concurrency
		workers, queues  int
		steer, wantSteer Steering
	}{
		{sa.Shared, 1, 1, SteerAuto, SteerQueue},
		{sa.Shared, 1, 2, SteerAuto, SteerSpread},
		{sa.Sharded, 1, 2, SteerAuto, SteerSPI},
		{sa.Shared, 2, 1, SteerAuto, SteerSpread},
		{sa.Sharded, 2, 1, SteerAuto, SteerSPI},
		{sa.PerCPU, 4, 2, SteerAuto, SteerSPI},
		{sa.Ordered, 2, 2, SteerAuto, SteerSPI},
		{sa.Sharded, 2, 2, SteerQueue, SteerQueue},
		{sa.Shared, 3, 2, SteerSPI, SteerSPI},
	} {
		cfg := base(mk(c.mode, c.workers))
		cfg.Workers, cfg.Queues, cfg.Steering = c.workers, c.queues, c.steer
		got, err := cfg.normalize()
		if err != nil || got.Steering != c.wantSteer {
			t.Errorf("%v %d workers %d queues %v: %v %v, want %v", c.mode, c.workers, c.queues, c.steer, got.Steering, err, c.wantSteer)
		}
	}
	for _, cfg := range []EngineConfig{
		func() EngineConfig {
			c := base(mk(sa.Shared, 2))
			c.Workers, c.Queues, c.Steering = 2, 1, SteerQueue
			return c
		}(),
		func() EngineConfig { c := base(mk(sa.Shared, 1)); c.Workers = 2; return c }(),
		func() EngineConfig { c := base(mk(sa.Shared, 2)); c.Workers, c.SpreadChunk = 2, 3; return c }(),
		func() EngineConfig { c := base(mk(sa.Sharded, 2)); c.Workers, c.SpreadChunk = 2, 4; return c }(),
		func() EngineConfig { c := base(mk(sa.Shared, 2)); c.Workers, c.Steering = 2, Steering(9); return c }(),
	} {
		if _, err := cfg.normalize(); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// TestEngineSAChurnMultiWorker changes the SAD while one SA's traffic
// flows through an engine of 2 workers on one queue, in every mode: other
// SAs are added, updated and deleted, and the busy SA itself is updated
// in place, concurrently with the workers (run it with -race). The
// stream loses nothing and no replay drop happens.
func TestEngineSAChurnMultiWorker(t *testing.T) {
	requireNet(t)
	const count = 1200
	for _, mode := range steerModes {
		t.Run(mode.String(), func(t *testing.T) {
			n, s, e := startOneQueueEngine(t, mode)
			var inner [][]byte
			for i := range count {
				inner = append(inner, innerUDP(n.remote, n.pP, uint16(i), 100))
			}
			pkts := peerSeal(t, n, spiIn, steerKey(0), inner)
			col := startCollect(t, newCapture(t, n.p.B), count, 15*time.Second, fromTo(17, n.remote, n.pP))

			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(mode), 7))
				tr := esp.MustParseTransform("aes128gcm16")
				live := map[uint32]bool{}
				for i := 0; i < 5000; i++ {
					select {
					case <-stop:
						return
					default:
					}
					spi := 0x5000 + uint32(rng.IntN(16))
					switch {
					case live[spi] && rng.IntN(2) == 0:
						if err := s.sad.Delete(sa.In, spi); err != nil {
							t.Errorf("delete %#x: %v", spi, err)
							return
						}
						delete(live, spi)
					case live[spi]:
						mtu := 1300 + rng.IntN(100)
						x := s.sad.Lookup(spi)
						if x != nil {
							x.Update(sa.Changes{PathMTU: &mtu})
						}
					default:
						x, err := sa.New(sa.Config{SPI: spi, Direction: sa.In, Mode: esp.Tunnel, Local: n.eC, Remote: n.pC,
							Transform: tr, Key: steerKey(100 + int(spi&0xff))})
						if err != nil {
							t.Error(err)
							return
						}
						if err := s.sad.Add(x); err != nil {
							t.Errorf("add %#x: %v", spi, err)
							return
						}
						live[spi] = true
					}
					mtu := 1400 + rng.IntN(50)
					if err := s.in.Update(sa.Changes{PathMTU: &mtu}); err != nil {
						t.Error(err)
						return
					}
					if i%64 == 0 {
						time.Sleep(time.Millisecond)
					}
				}
			}()
			sendFlowControlled(t, e, pkts, 40, func(b [][]byte) { n.send(t, b...) }, cipherRX)
			got := col.wait()
			close(stop)
			wg.Wait()
			if len(got) != count {
				t.Errorf("decrypted %d of %d; processor %+v", len(got), count, e.Stats().Processor)
			}
			if d := s.in.Stats().Drops[sa.DropReplay]; d != 0 {
				t.Errorf("%d replay drops", d)
			}
			if mode == sa.Ordered {
				ids := make([]int, len(got))
				for i, f := range got {
					ids[i] = innerID(f)
				}
				if ooo := outOfOrder(ids); ooo != 0 {
					t.Errorf("Ordered: %d out of order", ooo)
				}
			}
			checkFrames(t, e)
		})
	}
}

// TestOwnerMatchesSteering is the invariant SteerSPI relies on: for any
// SPI and worker count, the sa package's owner of an unpinned SA is the
// socket slot the XDP program hashes the SPI to.
func TestOwnerMatchesSteering(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, workers := range []int{1, 2, 3, 4, 7, 8, 64} {
		p, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sa.NewSAD(sa.SADOptions{}), Workers: workers, Concurrency: sa.Sharded})
		if err != nil {
			t.Fatal(err)
		}
		for range 2000 {
			spi := rng.Uint32()
			if got, want := p.OwnerOf(spi), bpf.SPIHashSlot(spi, workers); got != want {
				t.Fatalf("%d workers, SPI %#x: owner %d, steered to %d", workers, spi, got, want)
			}
		}
	}
}

// TestWakeHelpersAlloc: an Ordered sequencer wakes exactly the workers
// that sleep, once each (their flag cleared), without allocating; outside
// the Ordered mode, or for a batch of one packet, it wakes nobody.
func TestWakeHelpersAlloc(t *testing.T) {
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sa.NewSAD(sa.SADOptions{}), Workers: 3, Concurrency: sa.Ordered})
	if err != nil {
		t.Fatal(err)
	}
	if !proc.Worker(0).Publishes(sa.In) || !proc.Worker(0).Publishes(sa.Out) {
		t.Fatal("a new Ordered worker's gate is closed")
	}
	rt := &engineRun{}
	for i := range 3 {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		rt.workers = append(rt.workers, &engineWorker{id: i, rt: rt, wfd: fd, ordered: true, w: proc.Worker(i)})
	}
	seq := rt.workers[0]
	read := func(ew *engineWorker) uint64 {
		var v [8]byte
		if n, err := unix.Read(ew.wfd, v[:]); n != 8 || err != nil {
			return 0
		}
		return binary.LittleEndian.Uint64(v[:])
	}
	rt.workers[2].asleep.Store(true)
	seq.asleep.Store(true) // itself: never woken by itself
	seq.wakeHelpers(64, sa.In)
	if got := []uint64{read(rt.workers[0]), read(rt.workers[1]), read(rt.workers[2])}; got[0] != 0 || got[1] != 0 || got[2] != 1 {
		t.Errorf("wakeups %v, want only the sleeping helper 2 woken once", got)
	}
	if rt.workers[2].asleep.Load() {
		t.Error("woken helper still marked asleep")
	}
	rt.workers[1].asleep.Store(true)
	seq.wakeHelpers(1, sa.In)
	seq.ordered = false
	seq.wakeHelpers(64, sa.In)
	if read(rt.workers[1]) != 0 {
		t.Error("woken for a one-packet batch or outside the Ordered mode")
	}
	seq.ordered = true
	if allocs := testing.AllocsPerRun(100, func() {
		rt.workers[1].asleep.Store(true)
		seq.wakeHelpers(64, sa.In)
	}); allocs != 0 {
		t.Errorf("%v allocations per wake", allocs)
	}
}

// TestEngineSPISteeringManySAs: with several inbound SAs interleaved on
// one queue, each worker of a Sharded or PerCPU engine receives exactly
// the packets of the SAs it owns (so every SPI's packets are processed
// by one worker, and nothing needs a hand-off), and every SA decrypts
// all of its packets.
func TestEngineSPISteeringManySAs(t *testing.T) {
	requireNet(t)
	const nSA, per = 8, 40
	for _, mode := range []sa.Concurrency{sa.Sharded, sa.PerCPU} {
		t.Run(mode.String(), func(t *testing.T) {
			n := newEngNet(t)
			s := newSteerSAs(t, n, mode, 2)
			tr := esp.MustParseTransform("aes128gcm16")
			var ins []*sa.SA
			var pkts [][][]byte
			want := make([]uint64, 2)
			for i := range nSA {
				spi := uint32(0x7000 + 17*i)
				in, err := sa.New(sa.Config{SPI: spi, Direction: sa.In, Mode: esp.Tunnel, Local: n.eC, Remote: n.pC,
					Transform: tr, Key: steerKey(50 + i)})
				if err != nil {
					t.Fatal(err)
				}
				if err := s.sad.Add(in); err != nil {
					t.Fatal(err)
				}
				ins = append(ins, in)
				var inner [][]byte
				for j := range per {
					inner = append(inner, innerUDP(n.remote, n.pP, uint16(i*per+j), 80))
				}
				pkts = append(pkts, peerSeal(t, n, spi, steerKey(50+i), inner))
				want[s.proc.OwnerOf(spi)] += per
			}
			if want[0] == 0 || want[1] == 0 {
				t.Fatalf("the SPIs all hash to one worker: %v", want)
			}
			cfg := n.config(&engSAs{proc: s.proc})
			cfg.Workers = 2
			e := startEngine(t, n, cfg)
			col := startCollect(t, newCapture(t, n.p.B), nSA*per, 10*time.Second, fromTo(17, n.remote, n.pP))
			var all [][]byte
			for j := range per {
				for i := range nSA {
					all = append(all, pkts[i][j])
				}
			}
			sendFlowControlled(t, e, all, nSA, func(b [][]byte) { n.send(t, b...) }, cipherRX)
			got := col.wait()
			st := e.Stats()
			if len(got) != nSA*per {
				t.Errorf("decrypted %d of %d", len(got), nSA*per)
			}
			for w := range 2 {
				if st.Workers[w].CipherRX != want[w] {
					t.Errorf("worker %d received %d ESP packets, owns SAs with %d", w, st.Workers[w].CipherRX, want[w])
				}
			}
			for i, in := range ins {
				if d := in.Stats().DecapsPkts; d != per {
					t.Errorf("SA %d (%#x, owner %d): decapsulated %d of %d", i, in.SPI(), s.proc.OwnerOf(in.SPI()), d, per)
				}
			}
			checkFrames(t, e)
		})
	}
}
