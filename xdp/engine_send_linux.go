package xdp

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/sa"
)

// Engine.Send: the Send queue, a bounded ring per worker that Go code
// (an embedder, ServeTUN) fills with packets copied into UMEM frames and
// the worker empties once per round, beside its ports.
//
// Back-pressure for a plaintext source that can wait (ServeTUN): rather
// than handing Send more packets than the worker's Send queue holds,
// which Send drops (SendFull) and TCP then retransmits, the source
// waits for room, and what it cannot read meanwhile stays queued in the
// kernel (the TUN's queue), where TCP's own pacing sees it.

// sendWaitSpins is the number of yields before waitSendRoom sleeps.
const sendWaitSpins = 16

// sendWaitSleep is waitSendRoom's sleep between checks once spinning
// did not free room: about what a worker needs for a batch.
const sendWaitSleep = 20 * time.Microsecond

// SendRoom returns how many packets the Send queue of queue has room
// for now (-1 when the engine is not running or queue is out of range).
// A source that can wait waits for room rather than having Send drop
// what does not fit.
func (e *Engine) SendRoom(queue int) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.running || queue < 0 || queue >= len(e.rt.workers) {
		return -1
	}
	return srcQueueLen - int(e.rt.send.q[queue].n.Load())
}

// waitSendRoom waits until the Send queue of queue has room for n
// packets (at most its capacity), the engine stops, or stop is closed;
// it reports false in the last case only.
func (e *Engine) waitSendRoom(queue, n int, stop <-chan struct{}) bool {
	return waitRoom(func() int { return e.SendRoom(queue) }, min(n, srcQueueLen), stop)
}

// waitRoom polls room (yielding, then sleeping sendWaitSleep) until it
// returns at least n or a negative value (true), or stop is closed
// (false).
func waitRoom(room func() int, n int, stop <-chan struct{}) bool {
	for i := 0; ; i++ {
		if r := room(); r < 0 || r >= n {
			return true // room, or Send will say why not
		}
		select {
		case <-stop:
			return false
		default:
		}
		if i < sendWaitSpins {
			runtime.Gosched()
		} else {
			time.Sleep(sendWaitSleep)
		}
	}
}

// srcQueueLen is the capacity of a worker's Send queue.
const srcQueueLen = 1024

// sendPort is the receive side of Engine.Send as an EnginePort: worker
// w's Receive takes from the Send queue q[w]. Nothing is transmitted on
// it; Send wakes the worker through its eventfd, which every worker
// polls anyway, when the worker sleeps (or is about to).
type sendPort struct {
	u *UMEM
	q []*sendQueue
}

// sendQueue is one worker's Send queue: a ring of frames guarded by mu;
// n is read without it (a worker checks it every round).
type sendQueue struct {
	mu   sync.Mutex
	ring [srcQueueLen]Desc
	head int
	n    atomic.Int32
	pop  [MaxBatch]Desc // the worker's: what Receive took
}

func newSendPort(u *UMEM, workers int) *sendPort {
	sp := &sendPort{u: u, q: make([]*sendQueue, workers)}
	for i := range sp.q {
		sp.q[i] = &sendQueue{}
	}
	return sp
}

func (sp *sendPort) Bind(PortEnv) error        { return nil }
func (sp *sendPort) Unbind() error             { return nil }
func (sp *sendPort) Transmit(int, []sa.Packet) {}
func (sp *sendPort) Maintain(int, bool)        {}
func (sp *sendPort) InFlight(int) int          { return 0 }
func (sp *sendPort) PollFDs(int) []int         { return nil }
func (sp *sendPort) Stats() PortStats          { return PortStats{} }

// Receive takes up to len(pkts) packets from worker w's Send queue.
func (sp *sendPort) Receive(w int, pkts []sa.Packet) int {
	q := sp.q[w]
	if q.n.Load() == 0 {
		return 0
	}
	k := q.popN(q.pop[:len(pkts)])
	u := sp.u
	for i, d := range q.pop[:k] {
		buf, off := u.Frame(d)
		pkts[i] = sa.Packet{Buf: buf, Off: off, Len: int(d.Len), Meta: d.Addr &^ u.frameMask}
	}
	return k
}

// popN takes up to len(ds) packets from the queue.
func (q *sendQueue) popN(ds []Desc) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(len(ds), int(q.n.Load()))
	for i := range n {
		ds[i] = q.ring[(q.head+i)%srcQueueLen]
	}
	q.head = (q.head + n) % srcQueueLen
	q.n.Add(int32(-n))
	return n
}

// push queues ds and returns how many fit.
func (q *sendQueue) push(ds []Desc) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := int(q.n.Load())
	n := min(len(ds), srcQueueLen-k)
	for i := range n {
		q.ring[(q.head+k+i)%srcQueueLen] = ds[i]
	}
	q.n.Add(int32(n))
	return n
}

// Send queues IP packets (each starting at its IP header) from Go for
// encryption by the worker of queue: the source side for embedders
// without a plaintext interface (it works with one too). Each packet is
// copied into a UMEM frame, so pkts may be reused when Send returns. It
// returns how many packets were queued; the rest found no free frame or
// a full queue (counted as SendFull), or were too short (under 20
// bytes) or too long for a frame with room for ESP. It fails with
// ErrClosed when the engine is not running and ErrInvalidConfig for a
// bad queue. Safe for concurrent use; it does not allocate.
func (e *Engine) Send(queue int, pkts [][]byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.running {
		return 0, ErrClosed
	}
	rt := e.rt
	if queue < 0 || queue >= len(rt.workers) {
		return 0, fmt.Errorf("%w: queue %d", ErrInvalidConfig, queue)
	}
	ew := rt.workers[queue]
	u := rt.u
	maxLen := u.cfg.FrameSize - u.DataOffset() - esp.MaxTailroom
	var ds [MaxBatch]Desc
	sent := 0
	for len(pkts) > 0 {
		chunk := pkts[:min(len(pkts), MaxBatch)]
		pkts = pkts[len(chunk):]
		k := u.Alloc(ds[:len(chunk)])
		m := 0
		for i := range k {
			p := chunk[i]
			if len(p) < 20 || len(p) > maxLen {
				continue
			}
			d := ds[i]
			frame, off := u.Frame(d)
			copy(frame[off:], p)
			d.Len = uint32(len(p))
			ds[i], ds[m] = ds[m], d
			m++
		}
		q := rt.send.q[queue].push(ds[:m])
		if k > q {
			u.Free(ds[q:k])
		}
		sent += q
		if q < len(chunk) {
			ew.c.sendFull.Add(uint64(len(chunk) - q))
		}
	}
	if sent > 0 {
		ew.c.sent.Add(uint64(sent))
		// A worker that is awake takes the packets in its next round
		// (it checks the queue after announcing a sleep: see sleep), so
		// only a sleeping one costs a write(2) to its eventfd.
		if ew.asleep.Load() {
			ew.c.sendWakes.Add(1)
			wakeFD(ew.wfd)
		}
	}
	return sent, nil
}
