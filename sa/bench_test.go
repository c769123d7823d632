package sa

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/espxdp/espxdp/esp"
)

func BenchmarkSADLookup(b *testing.B) {
	for _, n := range []int{1, 1000, 100_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			d := NewSAD(SADOptions{})
			spis := make([]uint32, n)
			for i := range spis {
				spis[i] = uint32(i+1) * 2654435761 // scattered, like random SPIs
				if err := d.Add(bareSA(spis[i], In)); err != nil {
					b.Fatal(err)
				}
			}
			// Look up in a random-looking order so that large tables
			// pay their cache misses, as real traffic would.
			b.ReportAllocs()
			b.ResetTimer()
			var hit int
			for i := 0; i < b.N; i++ {
				if d.Lookup(spis[(uint64(i)*0x9E3779B97F4A7C15>>32)%uint64(n)]) != nil {
					hit++
				}
			}
			if hit != b.N {
				b.Fatal("miss")
			}
		})
	}
}

func BenchmarkSADUpdate(b *testing.B) {
	// Add + Remove with a million SAs present: stays O(1).
	d := NewSAD(SADOptions{})
	for i := 1; i <= 1_000_000; i++ {
		d.Add(bareSA(uint32(i), In))
	}
	churn := make([]*SA, 1000)
	for i := range churn {
		churn[i] = bareSA(uint32(2_000_000+i), In)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := churn[i%len(churn)]
		if err := d.Add(s); err != nil {
			b.Fatal(err)
		}
		if _, err := d.Remove(In, s.spi); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReplaySA measures the anti-replay check+update as the data
// path does it: unlocked (Sharded, PerCPU) and under the SA's mutex
// (Shared), uncontended and contended.
func BenchmarkReplaySA(b *testing.B) {
	_, ic := pairCfg("aes128gcm16", 0x101, func(c *Config) { c.ESN = true })
	for _, locked := range []bool{false, true} {
		b.Run(fmt.Sprintf("locked=%v", locked), func(b *testing.B) {
			s := mustSA(b, ic)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if seq, ok := s.replayCheck(uint32(i+1), locked); ok {
					s.replayUpdate(seq, locked)
				}
			}
		})
	}
	b.Run("locked-parallel", func(b *testing.B) {
		s := mustSA(b, ic)
		var next atomic.Uint32
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if seq, ok := s.replayCheck(next.Add(1), true); ok {
					s.replayUpdate(seq, true)
				}
			}
		})
	})
}

// espRoundTrip is the work of one packet with esp alone: encapsulate,
// parse, decrypt, decapsulate, no SA machinery.
type espRoundTrip struct {
	c     *esp.Cipher
	s     *esp.Scratch
	o     esp.Outer
	buf   []byte
	inner []byte
	seq   uint64
	p     esp.Parsed
}

func (e *espRoundTrip) run(tb testing.TB) {
	copy(e.buf[esp.MaxHeadroom:], e.inner)
	e.seq++
	pkt, err := e.c.EncapTunnel(e.s, e.buf, esp.MaxHeadroom, len(e.inner), 0x1001, e.seq, &e.o)
	if err != nil {
		tb.Fatal(err)
	}
	if err := esp.ParseOuter(pkt, 0, &e.p); err != nil {
		tb.Fatal(err)
	}
	ep := pkt[e.p.ESPOffset:e.p.Len]
	pl, nh, err := e.c.Open(e.s, ep, e.seq)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := esp.DecapTunnel(pl, nh); err != nil {
		tb.Fatal(err)
	}
}

const benchBatch = 32

// BenchmarkVsESP compares the processor's round trip (Outbound then
// Inbound, batches of 32, 1420-byte inner packets) with esp alone doing
// the same crypto and encapsulation, and reports the ratio (overhead of
// SA lookup, replay window, lifetimes, counters, batching).
func BenchmarkVsESP(b *testing.B) {
	for _, tr := range []string{"aes128gcm16", "aes256-sha256", "chacha20poly1305"} {
		inner := udpPacket(hostA, hostB, 1, 2, 1420-28, 0)
		b.Run(tr, func(b *testing.B) {
			r := newRig(b, tr, func(c *Config) { c.PathMTU = 9000 })
			bb := newBatchBufs(benchBatch, inner, nil)
			b.SetBytes(int64(len(inner)) * benchBatch)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				bb.refill()
				r.wSend.Outbound(bb.pkts)
				r.wRecv.Inbound(bb.pkts)
			}
			b.StopTimer()
			if bb.pkts[0].Verdict != VerdictOK {
				b.Fatalf("%v %v", bb.pkts[0].Verdict, bb.pkts[0].Reason)
			}
			perPkt := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / benchBatch
			// The same number of packets through esp alone, in the
			// same run (timer stopped).
			e := newESPRoundTrip(b, tr, inner)
			n := b.N * benchBatch
			t0 := time.Now()
			for i := 0; i < n; i++ {
				e.run(b)
			}
			espNs := float64(time.Since(t0).Nanoseconds()) / float64(n)
			b.ReportMetric(perPkt, "ns/pkt")
			b.ReportMetric(espNs, "esp-ns/pkt")
			b.ReportMetric(perPkt/espNs, "x-esp")
		})
	}
}

// newESPRoundTrip sets up esp alone for transform tr.
func newESPRoundTrip(tb testing.TB, tr string, inner []byte) *espRoundTrip {
	oc, _ := pairCfg(tr, 0x101, nil)
	c, err := esp.New(esp.Config{Transform: oc.Transform, Key: oc.Key, AuthKey: oc.AuthKey})
	if err != nil {
		tb.Fatal(err)
	}
	return &espRoundTrip{c: c, s: esp.NewScratch(), o: esp.Outer{Src: gwA, Dst: gwB},
		buf: make([]byte, esp.MaxHeadroom+len(inner)+esp.MaxTailroom), inner: inner}
}

// BenchmarkModes runs the round trip on every worker at once
// (RunParallel; vary the worker count with -cpu 1,2,4) in each
// concurrency mode:
//   - shared: every worker uses the same SA pair (sequence counter,
//     replay mutex and lifetime counters touched once per run);
//   - sharded: one SA pair per worker, each owned by its worker (steered,
//     so no hand-off);
//   - per-cpu: one tunnel with one outbound SA per worker;
//   - ordered: the shared SA pair, each worker the sequencer of its own
//     batches, helping the others' runs from Drain between batches.
//
// Reported per packet; "drop%" counts replay-window drops caused by
// reordering between workers in the shared mode.
func BenchmarkModes(b *testing.B) {
	inner := udpPacket(hostA, hostB, 1, 2, 1420-28, 0)
	for _, mode := range []Concurrency{Shared, Sharded, PerCPU, Ordered} {
		b.Run(mode.String(), func(b *testing.B) {
			nw := runtime.GOMAXPROCS(0)
			sadA, sadB := NewSAD(SADOptions{}), NewSAD(SADOptions{})
			tx, _ := NewProcessor(ProcessorOptions{SAD: sadA, Workers: nw, Concurrency: mode})
			rx, _ := NewProcessor(ProcessorOptions{SAD: sadB, Workers: nw, Concurrency: mode})
			tuns := make([]*Tunnel, nw)
			var pcpu []*SA
			shared := NewTunnel("shared")
			for w := 0; w < nw; w++ {
				out, in := mustPair(b, "aes128gcm16", uint32(0x100+w), func(c *Config) {
					c.Worker, c.PinWorker = w, true
					c.ReplayWindow = MaxReplayWindow
				})
				sadA.Add(out)
				sadB.Add(in)
				switch mode {
				case Shared, Ordered:
					if w == 0 {
						shared.SetOutbound(out)
					}
					tuns[w] = shared
				case Sharded:
					tuns[w] = NewTunnel("t")
					tuns[w].SetOutbound(out)
				case PerCPU:
					pcpu = append(pcpu, out)
					tuns[w] = shared
				}
			}
			if mode == PerCPU {
				shared.SetOutbound(pcpu...)
			}
			var ids atomic.Int32
			var okN, dropN atomic.Int64
			b.SetBytes(int64(len(inner)) * benchBatch)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				w := int(ids.Add(1)-1) % nw
				bb := newBatchBufs(benchBatch, inner, tuns[w])
				var ok, drop int64
				for pb.Next() {
					bb.refill()
					tx.Worker(w).Outbound(bb.pkts)
					rx.Worker(w).Inbound(bb.pkts)
					if mode == Ordered { // help the other workers' runs
						tx.Worker(w).Drain(nil)
						rx.Worker(w).Drain(nil)
					}
					for i := range bb.pkts {
						if bb.pkts[i].Verdict == VerdictOK {
							ok++
						} else {
							drop++
						}
					}
				}
				okN.Add(ok)
				dropN.Add(drop)
			})
			b.StopTimer()
			total := okN.Load() + dropN.Load()
			if total > 0 {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchBatch, "ns/pkt")
				b.ReportMetric(100*float64(dropN.Load())/float64(total), "drop%")
			}
		})
	}
}

// BenchmarkOrderedLoneSequencer decrypts one SA's batches on worker 0 of
// a 2-worker Ordered processor, with worker 1 either absent from the
// loop or polling Pending (and Drain when jobs wait) the whole time, as
// an idle engine worker does. The two should cost the same per packet
// when the sequencer's gate keeps the board closed, and no more than a
// 1-worker processor: an idle helper's polls must not touch lines the
// sequencer writes (Processor.boards).
func BenchmarkOrderedLoneSequencer(b *testing.B) {
	inner := udpPacket(hostA, hostB, 1, 2, 1420-28, 0)
	for _, c := range []struct {
		name    string
		workers int
		poll    bool
	}{{"one-worker", 1, false}, {"helper-absent", 2, false}, {"helper-polling", 2, true}} {
		b.Run(c.name, func(b *testing.B) {
			sadA, sadB := NewSAD(SADOptions{}), NewSAD(SADOptions{})
			tx, _ := NewProcessor(ProcessorOptions{SAD: sadA, Workers: 1})
			rx, _ := NewProcessor(ProcessorOptions{SAD: sadB, Workers: c.workers, Concurrency: Ordered})
			out, in := mustPair(b, "aes128gcm16", 0x100, nil)
			sadA.Add(out)
			sadB.Add(in)
			tun := NewTunnel("t")
			tun.SetOutbound(out)
			bb := newBatchBufs(64, inner, tun)
			var stop atomic.Bool
			done := make(chan struct{})
			go func() {
				defer close(done)
				for c.poll && !stop.Load() {
					if rx.Worker(1).Pending() > 0 {
						rx.Worker(1).Drain(nil)
					}
				}
			}()
			var inNS int64
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				bb.refill()
				tx.Worker(0).Outbound(bb.pkts)
				t0 := time.Now()
				rx.Worker(0).Inbound(bb.pkts)
				rx.Worker(0).Drain(nil)
				inNS += int64(time.Since(t0))
			}
			b.StopTimer()
			stop.Store(true)
			<-done
			b.ReportMetric(float64(inNS)/float64(b.N)/float64(len(bb.pkts)), "in-ns/pkt")
		})
	}
}
