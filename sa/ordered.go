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
// the sequence numbers. The AEAD of a run (up to maxRun packets) goes on
// the sequencer's board, a bounded array of jobs that any worker may
// claim, a few at a time, with one compare-and-swap: the sequencer
// claims jobs too, and idle workers claim them from Worker.Drain. Each
// claimed job is done on the claimer's own scratch, in place in the
// packet's buffer, and counted done. The sequencer waits until the run's
// jobs are all done - at most for the jobs other workers already took -
// and only then finishes the packets (window update, decapsulation,
// counters) and moves on. The packets never leave the caller's batch, so
// the batch is its own reorder buffer: it comes back in the order it
// went in, and nothing can overflow.
//
// Invariant: a job is touched by at most one worker between its
// publication and the sequencer seeing it done, and the SA it uses is
// held (busy) by the sequencer's run all that time, so its keys cannot
// be wiped under a helper.
type board struct {
	// ctl is epoch<<16 | claimed<<8 | total, total ≤ maxRun < 256. The
	// sequencer stores it to publish a run; claimers take jobs with a
	// compare-and-swap that raises claimed, so a claimer holding a stale
	// value (an older epoch) cannot take a job of a newer run.
	ctl atomic.Uint64
	_   [cacheLine - 8]byte
	// done counts the jobs of the current run that are finished.
	done atomic.Uint32
	_    [cacheLine - 4]byte
	// Written by the sequencer before it publishes ctl, read by claimers
	// after their compare-and-swap succeeded.
	jobs  []job
	sa    *SA
	at    *attrs
	epoch uint64
}

func (b *board) claim() (lo, hi int, ok bool) {
	for {
		c := b.ctl.Load()
		total, cl := c&0xff, (c>>8)&0xff
		if cl >= total {
			return 0, 0, false
		}
		n := min(b.chunkOf(c), total-cl)
		if b.ctl.CompareAndSwap(c, c+n<<8) {
			return int(cl), int(cl + n), true
		}
	}
}

// chunkOf is how many jobs one claim takes: small enough to spread a run
// over the workers, large enough to keep the claims off the hot path.
func (b *board) chunkOf(c uint64) uint64 { return c >> 56 }

// run publishes js (the current run of w, a sequencer) and returns when
// every job is done.
func (b *board) run(w *Worker, js []job) {
	b.jobs, b.sa, b.at = js, w.run.sa, w.run.at
	b.done.Store(0)
	b.epoch = (b.epoch + 1) & (1<<40 - 1)
	chunk := uint64(min(8, max(1, len(js)/(2*len(w.p.workers)))))
	b.ctl.Store(chunk<<56 | b.epoch<<16 | uint64(len(js)))
	for {
		lo, hi, ok := b.claim()
		if !ok {
			break
		}
		for i := lo; i < hi; i++ {
			crypt(w.s, b.sa, b.at, &js[i])
		}
		b.done.Add(uint32(hi - lo))
	}
	// Wait for the jobs other workers took; meanwhile take jobs of
	// theirs (a sequencer waiting on a helper that is itself a sequencer
	// helps it finish). help never waits, so two sequencers cannot wait
	// on each other.
	//
	// It spins rather than yield at once: a job takes a microsecond or
	// so, and runtime.Gosched on a worker locked to its OS thread (as
	// AF_XDP workers are) parks the thread, which costs more than the
	// wait. It yields only after about a millisecond, when the helper
	// was evidently preempted.
	for i := 0; b.done.Load() != uint32(len(js)); i++ {
		if w.help() == 0 && i > 1<<14 {
			runtime.Gosched()
		}
	}
}

// help claims and does AEAD jobs on the other workers' boards (Ordered
// mode); it returns how many it did.
func (w *Worker) help() int {
	n := 0
	ws := w.p.workers
	for k := 1; k < len(ws); k++ {
		b := ws[(w.id+k)%len(ws)].board
		for {
			lo, hi, ok := b.claim()
			if !ok {
				break
			}
			for i := lo; i < hi; i++ {
				crypt(w.s, b.sa, b.at, &b.jobs[i])
			}
			n += hi - lo
			b.done.Add(uint32(hi - lo))
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
