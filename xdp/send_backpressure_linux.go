package xdp

import (
	"runtime"
	"time"
)

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
	return srcQueueLen - int(e.rt.workers[queue].srcN.Load())
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
