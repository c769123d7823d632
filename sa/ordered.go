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
// per run), the AEAD of the run (up to maxRun packets) goes on the
// sequencer's board, a bounded array of jobs that any worker may claim.
// Helpers (idle workers, from Worker.Drain) claim a few jobs at a time
// from the front of the run with one compare-and-swap; the sequencer
// claims jobs from the back (claimBack), so they meet once.
// Whoever does a job first takes it alone with one compare-and-swap on
// the job's own stamp (take), right before doing it, on its own
// scratch, in place in the packet's buffer, and marks it done on the
// same stamp. Meanwhile the sequencer settles the run's jobs in order
// as they are done, several at a time (window update or results,
// decapsulation, counters): it finishes the front of the run while
// helpers still decrypt the rest. When it has no jobs left to claim and
// the next job is not done, it waits, and once the helpers have made no
// progress for a while it takes back (steals) the jobs they claimed but
// have not started - a helper preempted after its claim would otherwise
// stall the run for its whole time slice - so it waits only for the jobs
// helpers are doing at that moment, at most one per helper. The packets
// never leave the caller's batch, so the batch is its own reorder
// buffer: it comes back in the order it went in, and nothing can
// overflow.
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
	// done counts the jobs of the current run that do finished (those of
	// helpers, and the ones the sequencer took back): the sequencer's
	// sign of progress while it waits (run). Each job's own stamp says
	// whether it is done.
	done atomic.Uint32
	_    [cacheLine - 4]byte
	// stamp[i] is 2e while job i is being done in run e (its full
	// epoch), 2e+1 once it is done. A job of run e is taken by raising
	// its stamp from below 2e to 2e, and marked done by its taker; the
	// stamps only grow, so a worker still holding a claim of an older run
	// cannot take a job of a newer one, and the sequencer, which settles
	// the jobs in order as they are done (run), cannot mistake an older
	// run's done job for one of its current run. One line each: the
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

// claim hands out the next jobs of the current run from its front:
// lo..hi-1 and the run's full epoch, for take.
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

// claimBack hands the sequencer the last unclaimed jobs of its run (all
// of whose jobs are published), lo..hi-1, as many as a helper's claim
// would take (chunk): it lowers total, so that helpers, which claim from
// the front, and the sequencer meet only once, and it touches the claim
// word, which helpers poll, once per chunk rather than once per job.
func (b *board) claimBack() (lo, hi int, ok bool) {
	for {
		c := b.ctl.Load()
		total, cl := c&0xff, (c>>8)&0xff
		if cl >= total {
			return 0, 0, false
		}
		n := b.chunk(total - cl)
		if b.ctl.CompareAndSwap(c, c-n) {
			return int(total - n), int(total), true
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
		if v >= 2*e {
			return false
		}
		if s.CompareAndSwap(v, 2*e) {
			return true
		}
	}
}

// isDone reports whether job i of run e is done.
func (b *board) isDone(i int, e uint64) bool { return b.stamp[i].v.Load() == 2*e+1 }

// do takes and does the jobs lo..hi-1 of run e; it returns how many it
// did. Each job is marked done (its stamp) when its results are written:
// the sequencer may settle it from then on.
func (b *board) do(w *Worker, lo, hi int, e uint64) uint32 {
	n := uint32(0)
	for i := lo; i < hi; i++ {
		if b.take(i, e) {
			crypt(w, b.sa, b.at, &b.jobs[i])
			b.stamp[i].v.Store(2*e + 1)
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
// published jobs are on the board already) and settles them (w.settle:
// window update or results, then per packet decapsulation and counters)
// in order, as they are done; it returns when every job is settled.
//
// Helpers claim jobs from the front of the run, the sequencer from the
// back (claimBack), a few at a time, so that they meet once. The
// sequencer's own work comes first: whenever at least settleStep jobs
// in a row from the first unsettled one are done, or it has no job left
// to claim, it settles the done ones; else it does one more job from the
// back. So it finishes the packets at the front while helpers still
// decrypt the rest, instead of idling them while it finishes a whole
// run.
//
// Invariant (order): js[k] is settled only after js[0..k-1] were, and
// only once it is done (its stamp is 2e+1, stored by the one worker that
// took it, after its results): the run leaves in its arrival order, and
// the window is updated in it.
func (b *board) run(w *Worker, js []job, published int) {
	if len(js) > published {
		b.publish(w, published, len(js))
	}
	e := b.epoch.Load()
	n := len(js)
	k := 0 // js[:k] are settled
	// Waiting for the jobs other workers took: while they make progress
	// it only spins, the wait is for the jobs helpers are doing, a
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
	for k < n {
		m := k
		for m < n && b.isDone(m, e) {
			m++
		}
		if m-k >= settleStep {
			w.settle(js[k:m])
			k, still = m, 0
			continue
		}
		if lo, hi, ok := b.claimBack(); ok {
			for i := hi - 1; i >= lo; i-- { // away from the helpers
				if b.take(i, e) {
					crypt(w, b.sa, b.at, &js[i])
					b.stamp[i].v.Store(2*e + 1)
				}
			}
			continue
		}
		if m > k {
			w.settle(js[k:m])
			k, still = m, 0
			continue
		}
		switch still++; {
		case still == stealAfter:
			b.do(w, k, n, e)
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

// settleStep is how many done jobs in a row a sequencer settles at once
// while it still has jobs of its own to do: the window's lock is taken
// once per settle.
const settleStep = 8

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
// one worker, another mode, or no worker idle to help (Processor.idle),
// so that publishing its jobs would only add the board's atomics to a
// run the sequencer does all alone. It is read once per run.
func (w *Worker) solo() bool {
	return w.board == nil || w.p.idle.Load() == 0
}

// help claims and does AEAD jobs on the other workers' boards (Ordered
// mode); it returns how many it did.
func (w *Worker) help() int {
	n := 0
	ws := w.p.workers
	for k := 1; k < len(ws); k++ {
		b := ws[(w.id+k)%len(ws)].board
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
	ws := w.p.workers
	for k := 1; k < len(ws); k++ {
		c := ws[(w.id+k)%len(ws)].board.ctl.Load()
		if total, cl := c&0xff, (c>>8)&0xff; cl < total {
			n += int(total - cl)
		}
	}
	return n
}
