package sa

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// probeLen is the sampled batches of one probe.
const probeLen = 2 * gateBlocks * gateBlock

// runGate feeds g n sampled batches of 32 packets whose cost per packet
// cost returns for the arm in force (board: off false); it returns how
// many ran with the board allowed.
func runGate(g *gate, n int, cost func(off bool, i int) float64) (board int) {
	for i := range n {
		if !g.off {
			board++
		}
		g.sample(int64(cost(g.off, i)*32), 32)
	}
	return board
}

// TestGateChooses: a probe ends with the board when it is clearly
// faster, and with solo when it is slower or saves less than the margin;
// the choice holds gateHold sampled batches, then the gate probes again.
func TestGateChooses(t *testing.T) {
	for _, tc := range []struct {
		name        string
		board, solo float64
		wantOff     bool
	}{
		{"board faster", 300, 400, false},
		{"board slower", 500, 400, true},
		{"board equal", 400, 400, true},
		{"board within margin", 395, 400, true},
	} {
		g := newGate()
		if g.off {
			t.Fatalf("%s: a new gate starts without the board", tc.name)
		}
		w := &Worker{board: &board{}}
		w.gate[0], w.gate[1] = g, gate{off: true}
		if !w.Publishes(In) {
			t.Fatalf("%s: a worker with an open inbound gate does not publish", tc.name)
		}
		if w.Publishes(Out) {
			t.Fatalf("%s: a worker with a closed outbound gate publishes outbound", tc.name)
		}
		cost := func(off bool, _ int) float64 {
			if off {
				return tc.solo
			}
			return tc.board
		}
		runGate(&g, probeLen, cost)
		if g.decisions != 1 || g.probing || g.off != tc.wantOff {
			t.Fatalf("%s: after a probe: decisions %d probing %v off %v, want 1 false %v", tc.name, g.decisions, g.probing, g.off, tc.wantOff)
		}
		if w.gate[0] = g; w.Publishes(In) != !tc.wantOff {
			t.Fatalf("%s: Publishes %v with the gate off %v", tc.name, w.Publishes(In), g.off)
		}
		// The other direction's gate, never sampled (no outbound
		// traffic), stays open: it must not make an inbound batch wake
		// helpers the inbound gate keeps out.
		if w.gate[1] = newGate(); w.Publishes(In) != !tc.wantOff || !w.Publishes(Out) {
			t.Fatalf("%s: with a fresh outbound gate: Publishes(In) %v Publishes(Out) %v, want %v true",
				tc.name, w.Publishes(In), w.Publishes(Out), !tc.wantOff)
		}
		runGate(&g, gateHold, cost)
		if !g.probing || g.decisions != 1 {
			t.Fatalf("%s: after the hold: probing %v decisions %d, want a new probe", tc.name, g.probing, g.decisions)
		}
		runGate(&g, probeLen, cost)
		if g.decisions != 2 || g.off != tc.wantOff {
			t.Fatalf("%s: second probe: decisions %d off %v, want 2 %v", tc.name, g.decisions, g.off, tc.wantOff)
		}
	}
}

// TestGateBoundProperty: over random costs and noise, a board that makes
// the sequencer slower (by 10 % or more) is never chosen, and runs in at
// most its probe share of the sampled batches (the invariant in
// gate.go); a board that makes it faster by as much is always chosen and
// runs in at least the hold's share. The noise: per-batch jitter of
// ±3 % and, in up to two blocks of each arm per probe, a preemption that
// makes a batch take milliseconds - what the median over blocks is for.
func TestGateBoundProperty(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 14))
		solo := 200 + 600*rng.Float64()
		slower := rng.IntN(2) == 0
		f := 1.1 + rng.Float64()
		board := solo * f
		if !slower {
			board = solo / f
		}
		cycles := 1 + rng.IntN(4)
		n := cycles * (probeLen + gateHold)
		spikes := 0
		cost := func(off bool, i int) float64 {
			c := board
			if off {
				c = solo
			}
			c *= 1 + 0.03*(2*rng.Float64()-1)
			// At most two spikes per probe, each in another block: a
			// minority of each arm's five blocks.
			if i%(probeLen+gateHold) < probeLen && i%gateBlock == 0 && spikes < 2 && rng.IntN(4) == 0 {
				spikes++
				c += 5e6 / 32
			}
			if i%(probeLen+gateHold) == probeLen {
				spikes = 0
			}
			return c
		}
		g := newGate()
		got := runGate(&g, n, cost)
		if slower {
			if max := cycles * gateBlocks * gateBlock; got > max {
				t.Fatalf("seed %d: board %.2fx slower ran %d of %d batches, want at most %d (probe share)", seed, f, got, n, max)
			}
		} else if min := cycles * (gateBlocks*gateBlock + gateHold); got < min {
			t.Fatalf("seed %d: board %.2fx faster ran %d of %d batches, want at least %d", seed, f, got, n, min)
		}
		if g.decisions != uint64(cycles) {
			t.Fatalf("seed %d: %d probes decided, want %d", seed, g.decisions, cycles)
		}
	}
}

// TestOrderedGateOffPublishesNothing: with the gate on solo, a sequencer
// does its runs without the board although a worker is idle, and every
// packet is accepted in arrival order all the same.
func TestOrderedGateOffPublishesNothing(t *testing.T) {
	s := newTwoSides(t, Ordered, 2, 1, "aes128gcm16")
	for _, p := range []*Processor{s.rx, s.tx} {
		p.Worker(1).Pending() // idle
		w := p.Worker(0)
		w.gate = [2]gate{{off: true, left: 1 << 30}, {off: true, left: 1 << 30}}
	}
	for _, d := range []Direction{In, Out} {
		if s.rx.Worker(0).Publishes(d) || s.tx.Worker(0).Publishes(d) {
			t.Fatalf("Publishes(%v) with both gates off", d)
		}
	}
	next := sendInOrder(t, s, 500, 7, false)
	if ein, eout := s.rx.Worker(0).board.epoch.Load(), s.tx.Worker(0).board.epoch.Load(); ein != 0 || eout != 0 {
		t.Fatalf("%d inbound and %d outbound runs published with the gate off", ein, eout)
	}
	if st := s.ins[0].Stats(); st.DecapsPkts != next {
		t.Fatalf("%d packets accepted, want %d", st.DecapsPkts, next)
	}
}

// TestOrderedOneWorkerIsShared: with one worker there is nobody to help,
// so an Ordered processor runs the Shared mode's code: no board, no gate
// sampling, no window lock (the same worker fields as Shared's), and the
// same packets out both ways (outbound: the headers and lengths, as the
// keys are random; inbound: the inner packets byte for byte). (An Ordered cell at one
// worker that measures slower than Shared's is the machine, not the
// mode.)
func TestOrderedOneWorkerIsShared(t *testing.T) {
	var outs [2][][]byte
	for k, mode := range []Concurrency{Shared, Ordered} {
		s := newTwoSides(t, mode, 1, 1, "aes128gcm16")
		for _, p := range []*Processor{s.tx, s.rx} {
			w := p.Worker(0)
			if w.board != nil || w.locked || w.gate != [2]gate{} {
				t.Fatalf("%v, one worker: board %v locked %v gate %+v, want none, false, zero", mode, w.board != nil, w.locked, w.gate)
			}
			if w.Publishes(In) || w.Publishes(Out) {
				t.Fatalf("%v, one worker: Publishes", mode)
			}
			if w.gateStart(In, 32) != -1 || w.gateStart(Out, 32) != -1 {
				t.Fatalf("%v, one worker: the gate samples a batch", mode)
			}
		}
		rng := rand.New(rand.NewPCG(3, 3))
		for id := 0; id < 300; {
			b := make([]Packet, 1+rng.IntN(2*maxRun))
			for i := range b {
				b[i] = packetFor(udpPacket(hostA, hostB, 1, 2, 200, uint64(id+i)))
				b[i].Tunnel = s.tuns[0]
			}
			id += len(b)
			s.tx.Worker(0).Outbound(b)
			for i := range b {
				// The keys are random: the outer and ESP headers and the
				// length must match.
				d := b[i].Data()
				outs[k] = append(outs[k], append(binary.BigEndian.AppendUint32(nil, uint32(len(d))), d[:28]...))
			}
			s.rx.Worker(0).Inbound(b)
			for i := range b {
				if b[i].Verdict != VerdictOK {
					t.Fatalf("%v: inbound %v %v", mode, b[i].Verdict, b[i].Reason)
				}
				outs[k] = append(outs[k], append([]byte(nil), b[i].Data()...))
			}
		}
	}
	if len(outs[0]) != len(outs[1]) {
		t.Fatalf("Shared gave %d packets, Ordered %d", len(outs[0]), len(outs[1]))
	}
	for i := range outs[0] {
		if !bytes.Equal(outs[0][i], outs[1][i]) {
			d := 0
			for d < len(outs[0][i]) && d < len(outs[1][i]) && outs[0][i][d] == outs[1][i][d] {
				d++
			}
			t.Fatalf("packet %d differs between Shared and Ordered at one worker (from byte %d of %d)", i, d, len(outs[0][i]))
		}
	}
}
