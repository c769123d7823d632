package sa

import (
	"runtime"
	"sync/atomic"
)

// The Ordered concurrency mode: one SA's serial work in arrival order,
// its AEAD work on all workers, packets out in the order they came in.
//
// The worker that receives a batch (the sequencer) does the serial steps
// of every run itself (batch.go): replay pre-check and window update, or
// the sequence numbers. While no other worker is idle, it does the whole
// run alone, as in the Shared mode: the other workers have input of
// their own, and each job one of them took would move its packet's
// buffer between the caches twice for nothing. While some worker is
// idle (poll: it called Drain or Pending without a batch of its own
// since its previous such call; Processor.idle counts them, read once
// per run) and the sequencer's gate finds that helpers make it faster
// (gate.go: it measures both ways on itself and re-probes), the AEAD of
// the run (up to maxRun packets) goes on the sequencer's board, a bounded array of jobs that any worker may
// claim, a few at a time, with one compare-and-swap: the sequencer
// claims jobs too, and idle workers claim them from Worker.Drain. A
// claim hands out a range of jobs; whoever does a job first takes it
// alone with one compare-and-swap on the job's own stamp (take), right
// before doing it, on the claimer's own scratch, in place in the
// packet's buffer, and counts it done. When the sequencer has no jobs
// left to claim it takes back (steals) the jobs that helpers claimed
// but have not started - a helper preempted after its claim would
// otherwise stall the run for its whole time slice - and then waits
// only for the jobs helpers are doing at that moment, at most one per
// helper. Only then does it finish the packets (window update,
// decapsulation, counters) and move on. The packets never leave the
// caller's batch, so the batch is its own reorder buffer: it comes back
// in the order it went in, and nothing can overflow.
//
// Invariant: a job is done by exactly one worker - the one whose take
// succeeded - between its publication and the sequencer seeing it done,
// and the SA it uses is held (busy) by the sequencer's run all that
// time, so its keys cannot be wiped under a helper. An in-place AEAD
// open that has started cannot be redone (it overwrites the ciphertext,
// and a failed open wipes what it wrote), which is why jobs are stolen
// only before they start, never while they run.
type board struct {
	// ctl is epoch<<16 | claimed<<8 | total, total ≤ maxRun < 256, with
	// the low 48 bits of the run's epoch. The sequencer stores it to
	// publish a run; claimers take jobs with a compare-and-swap that
	// raises claimed, so a claimer holding a stale value (an older
	// epoch) cannot claim a job of a newer run.
	ctl atomic.Uint64
	// epoch is the current run's full epoch (it never wraps), stored
	// before ctl. A claimer reads it after its compare-and-swap and keeps
	// the claim only if its low bits are ctl's: else the sequencer has
	// finished that run already (it took the jobs back) and moved on.
	epoch atomic.Uint64
	_     [cacheLine - 16]byte
	// done counts the jobs of the current run that are finished.
	done atomic.Uint32
	_    [cacheLine - 4]byte
	// stamp[i] is the run (its full epoch) in which job i was last
	// taken. A job of run e is taken by raising its stamp from below e to
	// e; the stamps only grow, so a worker still holding a claim of an
	// older run cannot take a job of a newer one. One line each: the
	// sequencer and a helper take neighbouring jobs at the same time.
	stamp [maxRun]struct {
		v atomic.Uint64
		_ [cacheLine - 8]byte
	}
	// Written by the sequencer before it publishes ctl, read by a worker
	// only after it took a job of the run (take): until that job is done
	// the run cannot end, so the next run cannot rewrite them.
	jobs []job
	sa   *SA
	at   *attrs
	nw   uint64 // workers of the processor, set once
}

// epochBits is how many bits of the epoch ctl carries.
const epochBits = 48

// claim hands out the next jobs of the current run: lo..hi-1 and the
// run's full epoch, for take.
func (b *board) claim() (lo, hi int, e uint64, ok bool) {
	for {
		c := b.ctl.Load()
		total, cl := c&0xff, (c>>8)&0xff
		if cl >= total {
			return 0, 0, 0, false
		}
		n := b.chunk(total - cl)
		if b.ctl.CompareAndSwap(c, c+n<<8) {
			e = b.epoch.Load()
			if e&(1<<epochBits-1) != c>>16 {
				return 0, 0, 0, false // that run is over
			}
			return int(cl), int(cl + n), e, true
		}
	}
}

// chunk is how many of the left unclaimed jobs one claim takes: a share
// that shrinks as the run is taken (guided self-scheduling), so that the
// first claims keep the claim word off the hot path and the last ones
// leave the sequencer little to wait for; 8 at most.
func (b *board) chunk(left uint64) uint64 {
	return min(8, max(1, left/(2*b.nw)))
}

// take makes job i of run e the caller's to do; false if another worker
// took it (or a newer run reuses the slot).
func (b *board) take(i int, e uint64) bool {
	s := &b.stamp[i].v
	for {
		v := s.Load()
		if v >= e {
			return false
		}
		if s.CompareAndSwap(v, e) {
			return true
		}
	}
}

// do takes and does the jobs lo..hi-1 of run e; it returns how many it
// did.
func (b *board) do(w *Worker, lo, hi int, e uint64) uint32 {
	n := uint32(0)
	for i := lo; i < hi; i++ {
		if b.take(i, e) {
			crypt(w, b.sa, b.at, &b.jobs[i])
			n++
		}
	}
	if n > 0 {
		b.done.Add(n)
	}
	return n
}

// publish puts the jobs from..to-1 of w's current run (w.pend) on the
// board: from 0 it starts a new run, else it adds them to the run.
func (b *board) publish(w *Worker, from, to int) {
	if from == 0 {
		b.jobs, b.sa, b.at = w.pend[:], w.run.sa, w.run.at
		b.done.Store(0)
		e := b.epoch.Load() + 1
		b.epoch.Store(e)
		b.ctl.Store((e&(1<<epochBits-1))<<16 | uint64(to))
		return
	}
	// Raises total; claimers holding the old value retry.
	b.ctl.Add(uint64(to - from))
}

// run publishes js (the current run of w, a sequencer; its first
// published jobs are on the board already) and returns when every job
// is done.
func (b *board) run(w *Worker, js []job, published int) {
	if len(js) > published {
		b.publish(w, published, len(js))
	}
	e := b.epoch.Load()
	for {
		lo, hi, _, ok := b.claim()
		if !ok {
			break
		}
		b.do(w, lo, hi, e)
	}
	// Wait for the jobs other workers took. While they make progress it
	// only spins: the wait is for the jobs helpers are doing, a
	// microsecond or so. When the done count has not moved for longer
	// than a job takes, the helpers are not running: take back the jobs
	// they claimed but did not start (the scan is not done sooner, as it
	// pulls the stamps' lines away from a helper that is running), and
	// from then on take jobs of the other workers' boards meanwhile (a
	// sequencer waiting on a helper that is itself a sequencer helps it
	// finish). Neither steal nor help ever waits, so two sequencers
	// cannot wait on each other. Helping sooner would have two busy
	// sequencers do each other's jobs, moving packet buffers between
	// their caches for nothing.
	//
	// It spins rather than yield at once: runtime.Gosched on a worker
	// locked to its OS thread (as AF_XDP workers are) parks the thread,
	// which costs more than a job. It yields once the done count has not
	// moved for yieldAfter polls, tens of microseconds, many times a
	// job: then a helper was evidently preempted in the middle of one,
	// and spinning on would only burn the CPU its kernel thread may need
	// to finish it.
	last, still := b.done.Load(), 0
	for last != uint32(len(js)) {
		switch still++; {
		case still == stealAfter:
			b.do(w, 0, len(js), e)
		case still > stealAfter && w.help() != 0:
			still = stealAfter + 1
		case still > yieldAfter:
			runtime.Gosched()
			still = stealAfter + 1
		}
		if d := b.done.Load(); d != last {
			last, still = d, 0
		}
	}
}

// stealAfter is how many idle polls of the done count (tens of
// nanoseconds each) without progress make a sequencer take back the jobs
// helpers claimed and have not started: a few times the AEAD of one
// packet.
const stealAfter = 256

// yieldAfter is how many polls without progress make a waiting
// sequencer yield its thread (then again after as many).
const yieldAfter = 1 << 12

// feed notes a batch of n packets of the worker's own: a worker with
// input is not idle (poll).
func (w *Worker) feed(n int) {
	if n == 0 {
		return
	}
	w.fed = true
	if w.idle {
		w.idle = false
		w.p.idle.Add(-1)
	}
}

// poll, from Drain and Pending, reports whether the worker is idle: it
// had no batch of its own since the previous poll. An idle worker is
// counted in Processor.idle until its next batch (feed), so that the
// sequencers know someone may take their jobs.
//
// Invariant: w.idle is true exactly when w is counted in
// Processor.idle; only w's goroutine changes either.
func (w *Worker) poll() bool {
	if w.fed {
		w.fed = false
		return false
	}
	if !w.idle {
		w.idle = true
		w.p.idle.Add(1)
	}
	return true
}

// solo reports whether the run starting now is done without the board:
// one worker, another mode, no worker idle to help (Processor.idle), so
// that publishing its jobs would only add the board's atomics to a run
// the sequencer does all alone, or the gate found that helpers do not
// make this worker faster (gate.go). It is read once per run.
func (w *Worker) solo() bool {
	return w.board == nil || w.gate[gateOf(w.run.sa.dir)].off || w.p.idle.Load() == 0
}

// gateStart, at the start of a batch of n packets in direction d,
// returns the time for gateEnd when d's gate samples the batch (Ordered
// mode with a worker idle, so that the board is possible), else -1.
// Each direction has its gate: their costs per packet differ, and so
// may what helpers save.
func (w *Worker) gateStart(d Direction, n int) int64 {
	if w.board == nil || n == 0 || w.p.idle.Load() == 0 {
		return -1
	}
	return gateNow()
}

// Publishes reports whether this worker, as an Ordered-mode sequencer,
// currently puts the AEAD jobs of its runs in direction d (In: Inbound,
// Out: Outbound) on its board when another worker is idle: d's gate is
// open, or probing with the board (gate.go). It is false in the other
// modes, with one worker, and while d's gate keeps helpers out of the
// way because they do not make this worker faster. An I/O layer that
// wakes sleeping helpers before a batch (as the xdp engine does) can
// skip the wake-up, a system call, when it is false for the batch's
// direction: nothing would be published for them. Each direction has
// its own gate, and a gate that never sees a batch (no traffic that
// way) stays as it started, open, so asking about the other direction
// would wake helpers for nothing. Call it from the worker's goroutine.
func (w *Worker) Publishes(d Direction) bool {
	return w.board != nil && !w.gate[gateOf(d)].off
}

// gateOf is the index of direction d's gate in Worker.gate.
func gateOf(d Direction) int {
	if d == Out {
		return 1
	}
	return 0
}

// gateEnd gives the gate the batch's time, if gateStart sampled it.
func (w *Worker) gateEnd(d Direction, t0 int64, n int) {
	if t0 >= 0 {
		w.gate[gateOf(d)].sample(gateNow()-t0, n)
	}
}

// help claims and does AEAD jobs on the other workers' boards (Ordered
// mode); it returns how many it did.
func (w *Worker) help() int {
	n := 0
	bs := w.p.boards
	for k := 1; k < len(bs); k++ {
		b := bs[(w.id+k)%len(bs)]
		for {
			lo, hi, e, ok := b.claim()
			if !ok {
				break
			}
			n += int(b.do(w, lo, hi, e))
		}
	}
	return n
}

// unclaimed counts the jobs on the other workers' boards that no worker
// has taken yet.
func (w *Worker) unclaimed() int {
	n := 0
	bs := w.p.boards
	for k := 1; k < len(bs); k++ {
		c := bs[(w.id+k)%len(bs)].ctl.Load()
		if total, cl := c&0xff, (c>>8)&0xff; cl < total {
			n += int(total - cl)
		}
	}
	return n
}
