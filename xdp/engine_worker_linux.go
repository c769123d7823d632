//go:build linux

package xdp

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/sa"
)

// The worker loop: each engine worker, on its own OS thread, takes
// batches from the ports (EnginePort) and the Send queue, runs them
// through its sa.Worker with the router duties (router_linux.go) around
// it, and hands the results to the ports. It knows nothing about AF_XDP,
// Ethernet or callbacks: those are the ports' (port*.go).

// engineWorker is one worker: its sa.Worker, its sources and ports, its
// batch and output queues, its counters (written by it alone) and its
// router state.
type engineWorker struct {
	e  *Engine
	rt *engineRun
	id int // engine (and sa.Processor) worker index
	q  int // the queue it transmits on
	w  *sa.Worker
	// ports are the sides (engineRun.ports): where results go.
	ports [2]EnginePort
	// pfd is the poll set of sleep, built once at start.
	pfd []unix.PollFd
	// tid is the worker's thread while it runs (0 after); cpu0 its CPU
	// time when the worker locked it, cpuEnd the CPU the worker used, set
	// when it stops.
	tid          atomic.Int32
	cpu0, cpuEnd atomic.Int64
	ordered      bool // the processor's mode is sa.Ordered
	// asleep is set while the worker sleeps in poll(2) (from just
	// before its last look at the Send queue), so that Engine.Send
	// writes its eventfd only then and an Ordered sequencer can wake it
	// to help (written by the worker only around a sleep and by a
	// sequencer that wakes it; read by others once per batch or Send).
	// On a cache line of its own: the fields around it (pk) are written
	// by the worker every batch, and the other workers' reads would
	// pull that line across the cores while it is busy.
	_      [63]byte
	asleep atomic.Bool
	_      [63]byte
	done   chan struct{}
	pk     [MaxBatch]sa.Packet
	// out[s] are the packets finish queued for side s, free the frames
	// it dropped; flush hands them over.
	out   [2][2 * MaxBatch]sa.Packet
	nOut  [2]int
	free  [2 * MaxBatch]Desc
	nFree int
	c     engCounters

	router // gateway duties' state (router_linux.go)

	// sources are what the worker receives from, in this order: the
	// ciphertext port (decrypt), the plaintext port and the Send queue
	// (encrypt); sq is its Send queue (for sleep), wfd its eventfd
	// (Send and PortEnv.Wake write it).
	sources []source
	sq      *sendQueue
	wfd     int
}

// source is a port a worker receives from: up to rounds batches a round,
// each counted in rx (nil: the port counts them itself) and processed in
// direction dir.
type source struct {
	port   EnginePort
	dir    sa.Direction
	rounds int
	rx     *atomic.Uint64
}

type engCounters struct {
	cipherRX, decrypted, plainRX, encrypted, bypassed, control, controlDropped,
	saDrops, mtuDrops, notIP, vlanDrops, noRoom, txFull, handedOff, sleeps, batches, sendWakes, sent, sendFull,
	mssClamped, ttlExpired, icmpSent, icmpRateLimited, icmpNotSent, reasmNoFrame,
	fragmented, fragments, fragFailed,
	jumboRX, jumboTX, jumboDrops atomic.Uint64
}

func (ew *engineWorker) run(ready chan<- error) {
	defer close(ew.done)
	runtime.LockOSThread()
	cfg := &ew.e.cfg
	if len(cfg.CPUs) > 0 {
		cpu := cfg.CPUs[ew.id%len(cfg.CPUs)]
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			// The thread exits with the goroutine, still locked.
			ready <- fmt.Errorf("xdp: pin engine worker %d to CPU %d: %w", ew.id, cpu, err)
			return
		}
	} else {
		defer runtime.UnlockOSThread()
	}
	ew.cpu0.Store(threadCPU())
	ew.tid.Store(int32(unix.Gettid()))
	for _, p := range ew.ports {
		p.Maintain(ew.id, false) // fill rings first
	}
	ready <- nil
	idle := 0
	// The spin before a sleep adapts (spinBudget): a clock read when an
	// idle stretch starts and two around the sleep, nothing per packet.
	// Only in the Shared mode, where everything that brings work wakes
	// the worker: in the others another worker's hand-off or Ordered
	// job may wait for the sleep's timeout (1 ms), which the full spin
	// keeps rarer.
	budget := newSpinBudget(max(cfg.IdleSpins, 0))
	if cfg.Processor.Concurrency() != sa.Shared {
		budget = fixedSpinBudget(max(cfg.IdleSpins, 0))
	}
	var idleFrom time.Time
	for !ew.rt.stop.Load() {
		if ew.step() > 0 {
			idle = 0
			continue
		}
		if idle == 0 {
			idleFrom = time.Now()
		}
		idle++
		if cfg.IdleSpins >= 0 && idle > budget.cur {
			if ew.ra != nil {
				// Sets that will not complete give their memory back.
				ew.ra.Expire(int64(time.Since(ew.rt.epoch)))
				ew.publishReasm()
			}
			asleep := time.Now()
			ew.sleep()
			budget.slept(idle, asleep.Sub(idleFrom), time.Since(asleep))
			idle = 0
		}
	}
	ew.drain()
	ew.cpuEnd.Store(threadCPU() - ew.cpu0.Load())
	ew.tid.Store(0)
}

// threadCPU is the calling thread's CPU time in ns.
func threadCPU() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return ts.Nano()
}

// cpuTime is the CPU time the worker's thread used since it started:
// read from /proc (sum_exec_runtime, the clock CLOCK_THREAD_CPUTIME_ID
// reads) while it runs, as recorded by the worker after.
func (ew *engineWorker) cpuTime() time.Duration {
	tid := ew.tid.Load()
	if tid == 0 {
		return time.Duration(ew.cpuEnd.Load())
	}
	b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(int(tid)) + "/schedstat")
	if err != nil {
		return time.Duration(ew.cpuEnd.Load())
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0
	}
	return time.Duration(max(ns-ew.cpu0.Load(), 0))
}

// step is one round of the worker loop: up to rounds batches from each
// source (the ciphertext port: decrypt; the plaintext port and the Send
// queue: encrypt) and what other workers handed over. It returns the
// number of packets taken. The loop knows the ports only through
// EnginePort.
func (ew *engineWorker) step() int {
	for _, p := range ew.ports {
		p.Maintain(ew.id, false)
	}
	bs := ew.e.cfg.BatchSize
	total := 0
	for i := range ew.sources {
		src := &ew.sources[i]
		for range src.rounds {
			k := src.port.Receive(ew.id, ew.pk[:bs])
			if k == 0 {
				break
			}
			if src.rx != nil {
				src.rx.Add(uint64(k))
			}
			ew.c.batches.Add(1)
			total += k
			if src.dir == sa.In {
				if ew.ra != nil {
					k = ew.reassemble(k)
				}
				ew.inbound(k)
			} else {
				ew.outbound(k)
			}
		}
	}
	if ew.w.Pending() > 0 {
		n := ew.w.Drain(ew.pk[:bs])
		for i := range n {
			ew.finish(&ew.pk[i], ew.pk[i].Dir)
		}
		ew.flush()
		total += n
	}
	if total == 0 {
		for _, p := range ew.ports {
			p.Maintain(ew.id, true)
		}
	}
	return total
}

// inbound decrypts the k packets in ew.pk (ciphertext side).
func (ew *engineWorker) inbound(k int) {
	ew.wakeHelpers(k, sa.In)
	ew.w.Inbound(ew.pk[:k])
	for i := range k {
		ew.finish(&ew.pk[i], sa.In)
	}
	ew.flush()
}

// outbound encrypts the k packets in ew.pk (plaintext side or Send):
// router duties, the SA processor, then finish for each.
func (ew *engineWorker) outbound(k int) {
	k = ew.beforeOutbound(k)
	ew.wakeHelpers(k, sa.Out)
	ew.w.Outbound(ew.pk[:k])
	ew.afterOutbound(k)
	for i := range k {
		ew.finish(&ew.pk[i], sa.Out)
	}
	ew.flush()
}

// finish acts on one processed packet: queue it for its port, pass it to
// Control, or free it.
func (ew *engineWorker) finish(p *sa.Packet, dir sa.Direction) {
	d := Desc{Addr: p.Meta}
	switch p.Verdict {
	case sa.VerdictHandedOff:
		ew.c.handedOff.Add(1)
		p.Buf = nil
		return
	case sa.VerdictOK, sa.VerdictBypass:
		if p.Verdict == sa.VerdictBypass {
			ew.c.bypassed.Add(1)
		}
		toPlain := dir == sa.In
		if toPlain && !ew.afterInbound(p) {
			ew.queueFree(d)
			break
		}
		if !ew.emit(p, toPlain) || p.Verdict != sa.VerdictOK {
			break
		}
		if toPlain {
			ew.c.decrypted.Add(1)
		} else {
			ew.c.encrypted.Add(1)
		}
	case sa.VerdictControl:
		if fn := ew.e.cfg.Control; fn != nil {
			ew.c.control.Add(1)
			fn(p.Buf[p.Off : p.Off+p.Len])
		} else {
			ew.c.controlDropped.Add(1)
		}
		ew.queueFree(d)
	default:
		ew.c.saDrops.Add(1)
		if p.Reason == sa.DropMTU {
			ew.c.mtuDrops.Add(1)
			if dir == sa.Out {
				if ew.e.cfg.FragmentInner && ew.fragDepth == 0 && ew.fragmentOut(p) {
					// Not dropped after all: fragmented and encrypted.
					ew.c.saDrops.Add(^uint64(0))
					ew.c.mtuDrops.Add(^uint64(0))
					break
				}
				ew.icmpBack(p, true, p.MTU)
				break
			}
		}
		ew.queueFree(d)
	}
	p.Buf = nil
}

// emit queues the packet p towards the plaintext side (toPlain) or the
// ciphertext side, for flush to hand to the side's port. It reports
// whether it queued the packet; if not (no LinkHeadroom before it, or
// out of its frame), the frame is freed (NoRoom).
func (ew *engineWorker) emit(p *sa.Packet, toPlain bool) bool {
	if p.Off < LinkHeadroom || p.Len < 1 || p.Off+p.Len > len(p.Buf) {
		ew.c.noRoom.Add(1)
		ew.queueFree(Desc{Addr: p.Meta})
		return false
	}
	s := sideCipher
	if toPlain {
		s = sidePlain
	}
	ew.out[s][ew.nOut[s]] = *p
	ew.nOut[s]++
	return true
}

// queueFree queues the frame d to be freed by flush.
func (ew *engineWorker) queueFree(d Desc) {
	if isJumbo(d.Addr) {
		return // a jumbo buffer: reused with the next batch
	}
	ew.free[ew.nFree] = d
	ew.nFree++
}

// flush hands what finish queued to the ports and frees the rest.
func (ew *engineWorker) flush() {
	for _, s := range [2]int{sidePlain, sideCipher} {
		if n := ew.nOut[s]; n > 0 {
			ew.ports[s].Transmit(ew.id, ew.out[s][:n])
			ew.nOut[s] = 0
		}
	}
	if ew.nFree > 0 {
		ew.rt.u.Free(ew.free[:ew.nFree])
		ew.nFree = 0
	}
}

// sleep blocks in poll(2) until a port has packets (its descriptor, or
// its Wake on the worker's eventfd), Stop wakes the engine's eventfd, or
// a timeout passes (short while a port has packets in flight or other
// workers may hand packets over).
func (ew *engineWorker) sleep() {
	// Invariant (no lost wake-up, Engine.Send): asleep is set before
	// the Send queue is looked at, and Send reads asleep only after it
	// queued its packets. Both are sequentially consistent atomics, so
	// either this check sees Send's packets (no sleep), or Send sees
	// asleep and writes the eventfd, which ends the poll below.
	ew.asleep.Store(true)
	if (ew.sq != nil && ew.sq.n.Load() > 0) || ew.w.Pending() > 0 {
		ew.asleep.Store(false)
		return
	}
	timeout := idleSleep
	if ew.e.cfg.Processor.Concurrency() != sa.Shared ||
		ew.ports[sideCipher].InFlight(ew.id) > 0 || ew.ports[sidePlain].InFlight(ew.id) > 0 {
		timeout = time.Millisecond
	}
	for i := range ew.pfd {
		ew.pfd[i].Revents = 0
	}
	pollRetry(ew.pfd, timeout)
	ew.asleep.Store(false)
	if ew.pfd[1].Revents&unix.POLLIN != 0 {
		var v [8]byte
		unix.RawSyscall(unix.SYS_READ, uintptr(ew.wfd), uintptr(unsafe.Pointer(&v[0])), 8)
	}
	ew.c.sleeps.Add(1)
}

// idleSleep is the longest a worker sleeps in poll(2) with nothing in
// flight (Shared mode): what wakes it is a port's descriptor or its
// eventfd; the timeout only bounds housekeeping (reassembly expiry).
// A variable so that a test can make a lost wake-up obvious.
var idleSleep = 100 * time.Millisecond

// wakeOne is the 8-byte counter increment written to an eventfd
// (little-endian 1; the engine runs on little-endian hosts, as the
// committed bpf object does).
var wakeOne = [8]byte{1}

// wakeFD adds one to the eventfd fd, waking a poll on it.
func wakeFD(fd int) {
	unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&wakeOne[0])), 8)
}

// wakeHelpers, in the Ordered mode, wakes the workers sleeping in
// poll(2) before this one sequences a batch of k packets in direction d
// whose AEAD jobs it publishes (Worker.Publishes), so that they
// take its AEAD jobs (Worker.Drain) instead of sleeping through them.
// It costs one load of each other worker's asleep flag per batch and a
// write to an eventfd only for a sleeper; nothing per packet.
func (ew *engineWorker) wakeHelpers(k int, d sa.Direction) {
	if k < 2 || !ew.ordered || !ew.w.Publishes(d) {
		return // nothing for them: the gate keeps helpers out
	}
	for _, o := range ew.rt.workers {
		if o != ew && o.asleep.Load() {
			o.asleep.Store(false)
			wakeFD(o.wfd)
		}
	}
}

// drain processes what is left on the ports (the AF_XDP ports no longer
// refill once stop is set), then waits (bounded) until no port has
// packets in flight.
func (ew *engineWorker) drain() {
	deadline := time.Now().Add(drainTimeout)
	for time.Now().Before(deadline) {
		if ew.step() == 0 {
			break
		}
	}
	for _, p := range ew.ports {
		for p.InFlight(ew.id) > 0 && time.Now().Before(deadline) {
			p.Maintain(ew.id, true)
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// wake wakes worker w from its sleep (PortEnv.Wake).
func (rt *engineRun) wake(w int) {
	if w >= 0 && w < len(rt.workers) {
		wakeFD(rt.workers[w].wfd)
	}
}
