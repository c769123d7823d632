package sa

import (
	"slices"
	"time"
)

// The Ordered mode's gate: whether helping pays.
//
// A sequencer publishes its runs' AEAD jobs while some worker is idle
// (solo). Whether that makes the sequencer faster depends on what a job
// costs on another core - its packet's buffer moves between the caches,
// often as much as the AEAD itself - and on how much of each run the
// helpers get through before the sequencer has done the rest; steered to
// one sequencer with a helper that pays more per job than it saves, the
// SA measured slower at two workers than at one. The sequencer has no
// other way to know than to try, so each worker measures it on itself,
// with one gate per direction (their costs differ): the wall-clock time
// its Inbound (or Outbound) calls take per packet, for batches in which
// another worker was idle (those in which helping was possible), once
// with the board allowed and once without.
//
// A probe alternates blocks of gateBlock such batches between the two
// arms, gateBlocks blocks each, and ends with the arm whose median block
// (nanoseconds per packet) was lower: the board only if it was at least
// gateMargin faster, since a board that saves nothing still costs the
// helpers' CPU and the cache lines. The arm then holds for gateHold
// sampled batches, after which the worker probes again (the load, the
// helpers and the traffic change). A median over blocks, each of several
// batches and both arms interleaved, keeps a preemption in one block or
// a change of load during the probe from deciding it.
//
// Invariant (the bound on what a losing board costs): while the board
// is not chosen, at most gateBlocks*gateBlock of every
// 2*gateBlocks*gateBlock+gateHold sampled batches run with it (the
// probe's board blocks), so a sequencer whose helpers slow it down runs
// at least gateHold/(2*gateBlocks*gateBlock+gateHold) of its sampled
// batches - 93 % - exactly as with nobody to help. The gate only chooses
// between two ways of doing the same work: every packet gets the same
// verdict either way, so it cannot weaken the anti-replay or sequence
// number invariants.
//
// The gate's state is the worker's own (written only by its goroutine),
// so it adds no shared write; its cost is two clock reads per batch in
// which a worker was idle.
type gate struct {
	// off: the board is not allowed for the current batch (the solo arm).
	off bool
	// probing: a probe is under way; else the arm holds for left batches.
	probing bool
	left    int
	// The current block: its sampled batches, their time and packets.
	n         int
	ns, pkts  int64
	blocks    int                    // blocks finished in this probe
	per       [2][gateBlocks]float64 // ns per packet of each finished block, [0] board, [1] solo
	nper      [2]int
	decisions uint64 // probes finished (tests)
}

// Tuning of the gate (see above).
const (
	gateBlock  = 8    // sampled batches per block
	gateBlocks = 5    // blocks per arm and probe (odd: a true median)
	gateHold   = 2048 // sampled batches between probes
	gateMargin = 0.97 // the board must take at most this share of solo's time
)

// gateEpoch is the origin of gateNow.
var gateEpoch = time.Now()

// gateNow is a monotonic clock in nanoseconds (the gate measures wall
// time spent in a batch; ProcessorOptions.Clock may be coarse).
func gateNow() int64 { return int64(time.Since(gateEpoch)) }

// newGate returns a gate that starts with a probe, board first.
func newGate() gate { return gate{probing: true} }

// sample records a batch of pkts packets that took ns nanoseconds, in
// which another worker was idle, under the current arm (off), and moves
// the gate on: to the next block or arm, or to a decision.
func (g *gate) sample(ns int64, pkts int) {
	if !g.probing {
		if g.left--; g.left <= 0 {
			*g = gate{probing: true, decisions: g.decisions}
		}
		return
	}
	g.n++
	g.ns += ns
	g.pkts += int64(pkts)
	if g.n < gateBlock {
		return
	}
	arm := 0
	if g.off {
		arm = 1
	}
	if g.pkts > 0 && g.nper[arm] < gateBlocks {
		g.per[arm][g.nper[arm]] = float64(g.ns) / float64(g.pkts)
		g.nper[arm]++
	}
	g.n, g.ns, g.pkts = 0, 0, 0
	g.blocks++
	g.off = !g.off // alternate the arms block by block
	if g.blocks < 2*gateBlocks {
		return
	}
	g.decide()
}

// decide ends a probe: the board holds if its median block was at
// least gateMargin faster than solo's, else solo holds.
func (g *gate) decide() {
	board := g.nper[0] > 0 && g.nper[1] > 0 &&
		median(g.per[0][:g.nper[0]]) <= gateMargin*median(g.per[1][:g.nper[1]])
	g.decisions++
	*g = gate{off: !board, left: gateHold, decisions: g.decisions}
}

// median returns the median of v (not empty); it sorts v.
func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}
