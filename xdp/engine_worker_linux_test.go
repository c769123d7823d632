//go:build linux

package xdp

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/race"
	"github.com/espxdp/espxdp/sa"
)

// loopPort is an allocation-free EnginePort for driving a worker without
// sockets: Receive copies the packets queued in its preallocated ring
// into frames, Transmit copies what the worker sends into another
// preallocated ring and frees the frames. Only one goroutine uses it.
type loopPort struct {
	env              PortEnv
	inBuf, outBuf    [][]byte // MaxBatch buffers each
	inLen, outLen    []int
	nIn, nOut        int
	rx, tx, maintain int
}

func newLoopPort() *loopPort {
	p := &loopPort{inLen: make([]int, MaxBatch), outLen: make([]int, MaxBatch)}
	for range MaxBatch {
		p.inBuf = append(p.inBuf, make([]byte, 2048))
		p.outBuf = append(p.outBuf, make([]byte, 2048))
	}
	return p
}

func (p *loopPort) Bind(env PortEnv) error { p.env = env; return nil }
func (p *loopPort) Unbind() error          { return nil }
func (p *loopPort) PollFDs(int) []int      { return nil }
func (p *loopPort) Stats() PortStats       { return PortStats{RX: uint64(p.rx), TX: uint64(p.tx)} }
func (p *loopPort) Maintain(int, bool)     { p.maintain++ }
func (p *loopPort) InFlight(int) int       { return 0 }

// queue puts b on the receive ring.
func (p *loopPort) queue(b []byte) { p.inLen[p.nIn] = copy(p.inBuf[p.nIn], b); p.nIn++ }

func (p *loopPort) Receive(_ int, pkts []sa.Packet) int {
	n := p.env.Alloc(pkts[:min(len(pkts), p.nIn)])
	for i := range n {
		pkts[i].Len = copy(pkts[i].Buf[pkts[i].Off:], p.inBuf[i][:p.inLen[i]])
	}
	p.nIn = 0 // what found no frame is dropped
	p.rx += n
	return n
}

func (p *loopPort) Transmit(_ int, pkts []sa.Packet) {
	for i := range pkts {
		if pkts[i].Off < LinkHeadroom {
			panic("no link headroom")
		}
		p.outLen[p.nOut] = copy(p.outBuf[p.nOut], pkts[i].Data())
		p.nOut++
	}
	p.tx += len(pkts)
	p.env.Free(pkts)
}

// TestWorkerLoopPorts drives the generic worker loop with two loopPorts
// as its sides and no sockets: plaintext from the plaintext port leaves
// the ciphertext port as ESP, which fed back into the ciphertext port
// (the processor's inbound SA has the outbound SA's key and SPI) comes
// out of the plaintext port as the original packet. Invariants: every
// packet makes the round trip unchanged, each frame goes back to the
// UMEM (none held by the application afterwards), and a round of the
// loop allocates nothing.
// loopWorker is a worker with loopPorts on both sides, its processor's
// inbound SA the mirror of its outbound one, and a batch of inner
// packets.
type loopWorker struct {
	ew     *engineWorker
	cp, pp *loopPort
	u      *UMEM
	proc   *sa.Processor
	inner  [loopBatch][]byte
}

const loopBatch = 32

func newLoopWorker(t testing.TB) *loopWorker {
	u, err := NewUMEM(UMEMConfig{NumFrames: 256, FillSize: 64, CompletionSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	tr := esp.MustParseTransform("aes128gcm16")
	key := bytes.Repeat([]byte{7}, tr.KeyLen())
	out, err := sa.New(sa.Config{SPI: 0x3001, Direction: sa.Out, Mode: esp.Tunnel, Local: a, Remote: b, Transform: tr, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	in, err := sa.New(sa.Config{SPI: 0x3001, Direction: sa.In, Mode: esp.Tunnel, Local: b, Remote: a, Transform: tr, Key: key,
		ReplayWindow: sa.ReplayDisabled})
	if err != nil {
		t.Fatal(err)
	}
	sad := sa.NewSAD(sa.SADOptions{})
	for _, s := range []*sa.SA{out, in} {
		if err := sad.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	tun := sa.NewTunnel("loop")
	tun.SetOutbound(out)
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Tunnel: tun})
	if err != nil {
		t.Fatal(err)
	}
	cp, pp := newLoopPort(), newLoopPort()
	env := PortEnv{UMEM: u, Workers: 1, BatchSize: DefaultBatch, Headroom: esp.MaxHeadroom, Tailroom: esp.MaxTailroom}
	for _, p := range []EnginePort{cp, pp} {
		if err := p.Bind(env); err != nil {
			t.Fatal(err)
		}
	}
	ew := &engineWorker{e: &Engine{cfg: EngineConfig{BatchSize: DefaultBatch, Processor: proc}},
		rt: &engineRun{u: u, epoch: time.Now()}, w: proc.Worker(0),
		ports: [2]EnginePort{cp, pp}}
	ew.sources = []source{{port: cp, dir: sa.In, rounds: 1, rx: &ew.c.cipherRX}, {port: pp, dir: sa.Out, rounds: 1, rx: &ew.c.plainRX}}

	lw := &loopWorker{ew: ew, cp: cp, pp: pp, u: u, proc: proc}
	for i := range lw.inner {
		lw.inner[i] = innerUDP(netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("10.9.0.5"), uint16(i), 10+i*37)
	}
	return lw
}

// round sends the batch through the worker both ways (and, with check,
// compares what comes back with what went in).
func (lw *loopWorker) round(t testing.TB, check bool) {
	ew, cp, pp := lw.ew, lw.cp, lw.pp
	for _, p := range lw.inner {
		pp.queue(p)
	}
	if n := ew.step(); n != loopBatch {
		t.Fatalf("encrypt step took %d packets, want %d", n, loopBatch)
	}
	if cp.nOut != loopBatch {
		t.Fatalf("%d ESP packets out, want %d; SA drops %d", cp.nOut, loopBatch, ew.c.saDrops.Load())
	}
	for i := range cp.nOut {
		cp.queue(cp.outBuf[i][:cp.outLen[i]])
	}
	cp.nOut = 0
	if n := ew.step(); n != loopBatch {
		t.Fatalf("decrypt step took %d packets, want %d", n, loopBatch)
	}
	if pp.nOut != loopBatch {
		t.Fatalf("%d packets decrypted, want %d", pp.nOut, loopBatch)
	}
	for i := range pp.nOut {
		if check && !bytes.Equal(pp.outBuf[i][:pp.outLen[i]], lw.inner[i]) {
			t.Fatalf("packet %d changed on the round trip", i)
		}
	}
	pp.nOut = 0
	if ew.step() != 0 {
		t.Fatal("an idle step took packets")
	}
}

// TestWorkerLoopPorts drives the generic worker loop with two loopPorts
// as its sides and no sockets: plaintext from the plaintext port leaves
// the ciphertext port as ESP, which fed back into the ciphertext port
// (the processor's inbound SA has the outbound SA's key and SPI) comes
// out of the plaintext port as the original packet. Invariants: every
// packet makes the round trip unchanged, each frame goes back to the
// UMEM (none held by the application afterwards), and a round of the
// loop allocates nothing.
func TestWorkerLoopPorts(t *testing.T) {
	lw := newLoopWorker(t)
	ew := lw.ew
	lw.round(t, true)
	if c := lw.u.Counts(); c.App != 0 {
		t.Errorf("%d frames still held by the application", c.App)
	}
	if ew.c.encrypted.Load() != loopBatch || ew.c.decrypted.Load() != loopBatch || ew.c.plainRX.Load() != loopBatch || ew.c.cipherRX.Load() != loopBatch {
		t.Errorf("encrypted %d, decrypted %d, PlainRX %d, CipherRX %d; want %d", ew.c.encrypted.Load(), ew.c.decrypted.Load(),
			ew.c.plainRX.Load(), ew.c.cipherRX.Load(), loopBatch)
	}
	if race.Enabled {
		return
	}
	if allocs := testing.AllocsPerRun(50, func() { lw.round(t, true) }); allocs != 0 {
		t.Errorf("%v allocations per round trip of %d packets", allocs, loopBatch)
	}
}

// BenchmarkWorkerLoop measures the generic worker loop with in-memory
// ports (loop) against the same work without it (direct: the same
// copies into and out of UMEM frames, the processor called directly):
// the difference is what the loop and the port interface cost per
// packet. ns/op is per packet, encrypted and decrypted once.
func BenchmarkWorkerLoop(b *testing.B) {
	b.Run("loop", func(b *testing.B) {
		lw := newLoopWorker(b)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i += loopBatch {
			lw.round(b, false)
		}
	})
	b.Run("direct", func(b *testing.B) {
		lw := newLoopWorker(b)
		env := lw.pp.env
		w := lw.proc.Worker(0)
		var pk [loopBatch]sa.Packet
		var esp [loopBatch][2048]byte
		var espLen [loopBatch]int
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i += loopBatch {
			env.Alloc(pk[:])
			for j := range pk {
				pk[j].Len = copy(pk[j].Buf[pk[j].Off:], lw.inner[j])
			}
			w.Outbound(pk[:])
			for j := range pk {
				espLen[j] = copy(esp[j][:], pk[j].Data())
			}
			env.Free(pk[:])
			env.Alloc(pk[:])
			for j := range pk {
				pk[j].Len = copy(pk[j].Buf[pk[j].Off:], esp[j][:espLen[j]])
			}
			w.Inbound(pk[:])
			for j := range pk {
				if pk[j].Verdict != sa.VerdictOK {
					b.Fatalf("packet %d: %v %v", j, pk[j].Verdict, pk[j].Reason)
				}
				copy(lw.pp.outBuf[j], pk[j].Data())
			}
			env.Free(pk[:])
		}
	})
}
