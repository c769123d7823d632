package sa

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// twoSides builds sender and receiver processors with nw workers in the
// given mode and n tunnels, each with one SA pair.
type twoSides struct {
	sadA, sadB *SAD
	tx, rx     *Processor
	tuns       []*Tunnel
	outs, ins  []*SA
}

func newTwoSides(tb testing.TB, mode Concurrency, nw, n int, transform string) *twoSides {
	tb.Helper()
	s := &twoSides{sadA: NewSAD(SADOptions{}), sadB: NewSAD(SADOptions{})}
	var err error
	if s.tx, err = NewProcessor(ProcessorOptions{SAD: s.sadA, Workers: nw, Concurrency: mode, QueueLen: 256}); err != nil {
		tb.Fatal(err)
	}
	if s.rx, err = NewProcessor(ProcessorOptions{SAD: s.sadB, Workers: nw, Concurrency: mode, QueueLen: 256}); err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < n; i++ {
		out, in := mustPair(tb, transform, uint32(0x10000+i), nil)
		s.sadA.Add(out)
		s.sadB.Add(in)
		t := NewTunnel(fmt.Sprint("t", i))
		t.SetOutbound(out)
		t.AddInbound(in)
		s.tuns = append(s.tuns, t)
		s.outs, s.ins = append(s.outs, out), append(s.ins, in)
	}
	return s
}

func TestShardedHandOff(t *testing.T) {
	s := newTwoSides(t, Sharded, 3, 12, "aes128gcm16")
	owners := map[int]bool{}
	for _, in := range s.ins {
		o := s.rx.OwnerOf(in.SPI())
		if o < 0 || o >= 3 || o != s.rx.OwnerOfSA(in) {
			t.Fatalf("OwnerOf %d", o)
		}
		owners[o] = true
	}
	if len(owners) < 2 {
		t.Fatalf("12 SAs all on %v", owners)
	}
	// Encrypt each tunnel's packet on its owner (no hand-off), then feed
	// everything to worker 0 of the receiver.
	var wire []Packet
	for i, tun := range s.tuns {
		b := []Packet{packetFor(udpPacket(hostA, hostB, 1, 2, 30, uint64(i)))}
		b[0].Tunnel = tun
		s.tx.Worker(s.tx.OwnerOfSA(s.outs[i])).Outbound(b)
		if b[0].Verdict != VerdictOK {
			t.Fatalf("outbound on owner: %v %v", b[0].Verdict, b[0].Reason)
		}
		wire = append(wire, b[0])
	}
	// Outbound on a non-owner hands off too.
	b := []Packet{packetFor(udpPacket(hostA, hostB, 1, 2, 30, 99))}
	b[0].Tunnel = s.tuns[0]
	notOwner := (s.tx.OwnerOfSA(s.outs[0]) + 1) % 3
	s.tx.Worker(notOwner).Outbound(b)
	if b[0].Verdict != VerdictHandedOff {
		t.Fatalf("outbound on non-owner: %v", b[0].Verdict)
	}
	d := make([]Packet, 4)
	if n := s.tx.Worker(s.tx.OwnerOfSA(s.outs[0])).Drain(d); n != 1 || d[0].Verdict != VerdictOK || d[0].Dir != Out || d[0].Tunnel != s.tuns[0] {
		t.Fatalf("Drain outbound: %d %+v", n, d[0])
	}

	s.rx.Worker(0).Inbound(wire)
	handed := 0
	for i, p := range wire {
		own := s.rx.OwnerOf(s.ins[i].SPI())
		switch {
		case own == 0 && p.Verdict != VerdictOK:
			t.Fatalf("owned packet: %v %v", p.Verdict, p.Reason)
		case own != 0 && p.Verdict != VerdictHandedOff:
			t.Fatalf("foreign packet: %v", p.Verdict)
		case own != 0:
			handed++
		}
	}
	got := 0
	for w := 1; w < 3; w++ {
		if s.rx.Worker(w).Pending() == 0 {
			continue
		}
		out := make([]Packet, 16)
		n := s.rx.Worker(w).Drain(out)
		for _, p := range out[:n] {
			if p.Verdict != VerdictOK || p.Dir != In || s.rx.OwnerOfSA(p.SA) != w || p.Tunnel != p.SA.Tunnel() {
				t.Fatalf("drained on %d: %v %v SA %v", w, p.Verdict, p.Reason, p.SA)
			}
			id := binary.BigEndian.Uint64(p.Data()[28:])
			if s.ins[id] != p.SA {
				t.Fatalf("packet %d decrypted by %v", id, p.SA)
			}
			got++
		}
	}
	if got != handed || handed == 0 {
		t.Fatalf("drained %d of %d handed off", got, handed)
	}
	if st := s.rx.Stats(); st.HandedOff != uint64(handed) || st.InPkts != 12 || st.InOK != 12 {
		t.Fatalf("stats %+v", st)
	}
}

func TestHandOffQueueFull(t *testing.T) {
	s := newTwoSides(t, Sharded, 2, 1, "aes128gcm16")
	own := s.tx.OwnerOfSA(s.outs[0])
	other := s.tx.Worker(1 - own)
	const n = 300 // queue holds 256
	b := make([]Packet, n)
	for i := range b {
		b[i] = packetFor(udpPacket(hostA, hostB, 1, 2, 10, uint64(i)))
		b[i].Tunnel = s.tuns[0]
	}
	other.Outbound(b)
	full := 0
	for _, p := range b {
		if p.Reason == DropQueueFull {
			full++
		}
	}
	if full != n-256 || s.tx.Stats().Drops[DropQueueFull] != uint64(full) {
		t.Fatalf("queue-full drops %d, want %d", full, n-256)
	}
	if s.tx.Worker(own).Pending() != 256 {
		t.Fatalf("pending %d", s.tx.Worker(own).Pending())
	}
}

func TestPerCPUOutbound(t *testing.T) {
	const nw = 3
	sadA, sadB := NewSAD(SADOptions{}), NewSAD(SADOptions{})
	tx, _ := NewProcessor(ProcessorOptions{SAD: sadA, Workers: nw, Concurrency: PerCPU})
	rx, _ := NewProcessor(ProcessorOptions{SAD: sadB, Workers: nw, Concurrency: PerCPU})
	tun := NewTunnel("pcpu")
	var outs []*SA
	for i := 0; i < nw; i++ {
		out, in := mustPair(t, "aes128gcm16", uint32(0x700+i), func(c *Config) { c.Worker, c.PinWorker = i, true })
		sadA.Add(out)
		sadB.Add(in)
		outs = append(outs, out)
	}
	tun.SetOutbound(outs...)
	if len(tun.Outbound()) != nw {
		t.Fatal("SetOutbound")
	}
	for w := 0; w < nw; w++ {
		b := []Packet{packetFor(udpPacket(hostA, hostB, 1, 2, 10, 0))}
		b[0].Tunnel = tun
		tx.Worker(w).Outbound(b)
		if b[0].Verdict != VerdictOK || b[0].SA != outs[w] {
			t.Fatalf("worker %d used %v (%v)", w, b[0].SA, b[0].Reason)
		}
		// The receiver's per-CPU SA is pinned to worker w as well.
		if rx.OwnerOf(outs[w].SPI()) != w {
			t.Fatalf("pinned owner %d", rx.OwnerOf(outs[w].SPI()))
		}
		rx.Worker(w).Inbound(b)
		if b[0].Verdict != VerdictOK {
			t.Fatalf("inbound on pinned worker: %v", b[0].Reason)
		}
	}
}

// TestRekeyNoLoss sends continuously while the control plane rekeys the
// tunnel make-before-break, deleting old SAs as soon as it safely can,
// and checks that every packet arrives exactly once.
func TestRekeyNoLoss(t *testing.T) {
	for _, mode := range []Concurrency{Shared, PerCPU, Ordered} {
		t.Run(mode.String(), func(t *testing.T) {
			sadA, sadB := NewSAD(SADOptions{}), NewSAD(SADOptions{})
			tx, _ := NewProcessor(ProcessorOptions{SAD: sadA, Concurrency: mode})
			rx, _ := NewProcessor(ProcessorOptions{SAD: sadB, Concurrency: mode})
			tun := NewTunnel("rk")
			spi := uint32(0x800)
			install := func() (out, in *SA) {
				spi++
				out, in = mustPair(t, "aes128gcm16", spi, nil)
				if err := sadB.Add(in); err != nil { // inbound first
					t.Error(err)
				}
				tun.AddInbound(in)
				if err := sadA.Add(out); err != nil {
					t.Error(err)
				}
				tun.SetOutbound(out) // traffic moves here, atomically
				return out, in
			}
			curOut, curIn := install()

			const total = 20000
			wire := make(chan Packet, 64)
			var sent, done atomic.Bool
			go func() { // sender
				defer close(wire)
				w := tx.Worker(0)
				b := make([]Packet, 8)
				for id := 0; id < total; {
					for i := range b {
						b[i] = packetFor(udpPacket(hostA, hostB, 1, 2, 20, uint64(id+i)))
						b[i].Tunnel = tun
					}
					w.Outbound(b)
					for _, p := range b {
						if p.Verdict != VerdictOK {
							t.Errorf("send %d: %v %v", id, p.Verdict, p.Reason)
						}
						wire <- p
					}
					id += len(b)
				}
				sent.Store(true)
			}()
			seen := make([]bool, total)
			var got atomic.Int64
			recvDone := make(chan struct{})
			go func() { // receiver
				defer close(recvDone)
				w := rx.Worker(0)
				b := make([]Packet, 1)
				for p := range wire {
					b[0] = p
					w.Inbound(b)
					if b[0].Verdict != VerdictOK {
						t.Errorf("receive: %v %v (SA %v)", b[0].Verdict, b[0].Reason, b[0].SA)
						continue
					}
					id := binary.BigEndian.Uint64(b[0].Data()[28:])
					if seen[id] {
						t.Errorf("packet %d twice", id)
					}
					seen[id] = true
					got.Add(1)
				}
				done.Store(true)
			}()
			rekeys := 0
			for !sent.Load() {
				time.Sleep(200 * time.Microsecond)
				oldOut, oldIn := curOut, curIn
				curOut, curIn = install()
				// The old outbound SA can go at once: workers that
				// picked it either finish their batch first or pick
				// again.
				if err := sadA.Delete(Out, oldOut.SPI()); err != nil {
					t.Fatal(err)
				}
				// The old inbound SA goes once the new one carried
				// traffic: the wire is FIFO, so nothing sealed under
				// the old SA is still in flight.
				for curIn.Stats().DecapsPkts == 0 && !done.Load() {
					time.Sleep(50 * time.Microsecond)
				}
				tun.RemoveInbound(oldIn)
				if err := sadB.Delete(In, oldIn.SPI()); err != nil {
					t.Fatal(err)
				}
				rekeys++
			}
			<-recvDone
			if got.Load() != total {
				t.Fatalf("received %d of %d across %d rekeys", got.Load(), total, rekeys)
			}
			if rekeys < 2 {
				t.Fatalf("only %d rekeys happened", rekeys)
			}
			if sadA.Len() != 1 || sadB.Len() != 1 || len(tun.Inbound()) != 1 {
				t.Fatalf("leftover SAs: %d %d %d", sadA.Len(), sadB.Len(), len(tun.Inbound()))
			}
			t.Logf("%d packets, %d rekeys, no loss", total, rekeys)
		})
	}
}

// TestConcurrentChurn runs workers in every mode while the control plane
// adds, replaces and deletes SAs (run it with -race). Packets may be
// dropped for SAs that disappear; nothing may panic or race, and every
// packet must get a verdict.
func TestConcurrentChurn(t *testing.T) {
	for _, mode := range []Concurrency{Shared, Sharded, PerCPU, Ordered} {
		t.Run(mode.String(), func(t *testing.T) {
			const nw, ntun = 3, 4
			s := newTwoSides(t, mode, nw, ntun, "aes128gcm16")
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var ok, total atomic.Int64
			for w := 0; w < nw; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					tw, rw := s.tx.Worker(w), s.rx.Worker(w)
					b := make([]Packet, 16)
					d := make([]Packet, 64)
					for it := 0; it < 400; it++ {
						select {
						case <-stop:
							return
						default:
						}
						for i := range b {
							b[i] = packetFor(udpPacket(hostA, hostB, 1, 2, 40, uint64(i)))
							b[i].Tunnel = s.tuns[(it+i)%ntun]
						}
						tw.Outbound(b)
						tw.Drain(d)
						rw.Inbound(b)
						n := rw.Drain(d)
						for _, p := range append(b, d[:n]...) {
							total.Add(1)
							switch p.Verdict {
							case VerdictOK:
								ok.Add(1)
							case VerdictDrop, VerdictHandedOff:
							default:
								t.Errorf("verdict %v", p.Verdict)
							}
						}
						_ = s.ins[0].Stats()
					}
				}(w)
			}
			// Control plane churn.
			wg.Add(1)
			go func() {
				defer wg.Done()
				spi := uint32(0x50000)
				for i := 0; i < 60; i++ {
					spi++
					k := i % ntun
					out, in := mustPair(t, "aes128gcm16", spi, nil)
					s.sadB.Add(in)
					s.sadA.Add(out)
					old := s.tuns[k].Outbound()[0]
					s.tuns[k].SetOutbound(out)
					s.sadA.Delete(Out, old.SPI())
					// Replace an inbound SA in place (same SPI).
					_, rep := mustPair(t, "aes128gcm16", spi, nil)
					if _, err := s.sadB.Replace(rep); err != nil {
						t.Error(err)
					}
					// Unrelated SAs come and go, forcing table growth.
					for j := uint32(0); j < 20; j++ {
						s.sadB.Add(bareSA(0x900000+uint32(i)*32+j, In))
					}
					if i > 2 {
						for j := uint32(0); j < 20; j++ {
							s.sadB.Remove(In, 0x900000+uint32(i-2)*32+j)
						}
					}
					s.sadA.Sweep(time.Time{})
					time.Sleep(100 * time.Microsecond)
				}
			}()
			wg.Wait()
			close(stop)
			if total.Load() == 0 || ok.Load() == 0 {
				t.Fatalf("ok %d of %d", ok.Load(), total.Load())
			}
			for _, sa := range s.sadA.All() {
				sa.Stats()
			}
		})
	}
}

// TestSharedReplayConcurrent has several workers decrypt copies of the
// same packets at once on a shared SA: each sequence number must be
// accepted exactly once.
func TestSharedReplayConcurrent(t *testing.T) {
	const nw, n = 4, 200
	out, in := mustPair(t, "aes128gcm16", 0xabc, nil)
	sadA, sadB := NewSAD(SADOptions{}), NewSAD(SADOptions{})
	sadA.Add(out)
	sadB.Add(in)
	tun := NewTunnel("r")
	tun.SetOutbound(out)
	tx, _ := NewProcessor(ProcessorOptions{SAD: sadA, Tunnel: tun})
	rx, _ := NewProcessor(ProcessorOptions{SAD: sadB, Workers: nw, Concurrency: Shared})
	wire := make([]Packet, n)
	for i := range wire {
		wire[i] = packetFor(udpPacket(hostA, hostB, 1, 2, 20, uint64(i)))
	}
	tx.Worker(0).Outbound(wire)
	var accepted atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < nw; w++ {
		copies := make([]Packet, n)
		for i := range wire {
			copies[i] = clonePacket(wire[i])
		}
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < n; i += 8 {
				b := copies[i:min(i+8, n)]
				rx.Worker(w).Inbound(b)
				for _, p := range b {
					if p.Verdict == VerdictOK {
						accepted.Add(1)
					} else if p.Reason != DropReplay {
						t.Errorf("reason %v", p.Reason)
					}
				}
			}
		}(w)
	}
	wg.Wait()
	if accepted.Load() != n {
		t.Fatalf("accepted %d of %d sequence numbers (×%d copies)", accepted.Load(), n, nw)
	}
	if st := in.Stats(); st.Drops[DropReplay] != n*(nw-1) || st.DecapsPkts != n {
		t.Fatalf("stats: replay %d decaps %d", st.Drops[DropReplay], st.DecapsPkts)
	}
}
