//go:build linux

package xdp

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// drainTimeout bounds how long Stop waits for Out's TX ring to empty.
const drainTimeout = 250 * time.Millisecond

// Forwarder moves packets from one socket to another on a goroutine
// locked to an OS thread, in batches, optionally running a BatchFunc on
// every batch: the I/O path of the engine without the crypto. With In
// and Out on one UMEM a packet's frame is handed from RX to TX without
// copying; otherwise it is copied into a frame of Out's UMEM.
type Forwarder struct {
	cfg      ForwarderConfig
	in, out  *Socket
	sameUMEM bool
	efd      int

	rx       [MaxBatch]Desc
	tx       [MaxBatch]Desc
	drop     [MaxBatch]Desc
	cp       [MaxBatch]Desc
	pkts     [MaxBatch]Packet
	draining bool

	stop atomic.Bool
	done chan struct{}
	tid  atomic.Int32 // OS thread of the forwarding goroutine

	mu      sync.Mutex
	started bool
	stopped bool

	c fwdCounters
}

type fwdCounters struct {
	rx, tx, batches, copied, hookDrops, bad, noFrame, txFull, sleeps atomic.Uint64
}

// NewForwarder checks cfg and prepares a Forwarder; Start runs it. Until
// Start the caller still owns the sockets (and closes them if it never
// starts the forwarder); from Start on, Stop closes them.
func NewForwarder(cfg ForwarderConfig) (*Forwarder, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	if cfg.In.fd < 0 || cfg.Out.fd < 0 {
		return nil, ErrClosed
	}
	if !cfg.In.rx.mapped() {
		return nil, fmt.Errorf("%w: forwarder In socket has no RX ring", ErrInvalidConfig)
	}
	if !cfg.Out.tx.mapped() {
		return nil, fmt.Errorf("%w: forwarder Out socket has no TX ring", ErrInvalidConfig)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("xdp: eventfd: %w", err)
	}
	return &Forwarder{
		cfg:      cfg,
		in:       cfg.In,
		out:      cfg.Out,
		sameUMEM: cfg.In.u == cfg.Out.u,
		efd:      efd,
		done:     make(chan struct{}),
	}, nil
}

// ZeroCopyHandover reports whether In and Out share a UMEM, so frames
// go from RX to TX without copying.
func (f *Forwarder) ZeroCopyHandover() bool { return f.sameUMEM }

// Start starts the forwarding goroutine and returns once it runs (or
// failed to pin its thread).
func (f *Forwarder) Start() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return ErrClosed
	}
	if f.started {
		return nil
	}
	f.started = true
	ready := make(chan error, 1)
	go f.run(ready)
	return <-ready
}

func (f *Forwarder) run(ready chan<- error) {
	defer close(f.done)
	runtime.LockOSThread()
	f.tid.Store(int32(unix.Gettid()))
	if f.cfg.PinCPU {
		var set unix.CPUSet
		set.Set(f.cfg.CPU)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			// The thread exits with the goroutine, still locked.
			ready <- fmt.Errorf("xdp: pin forwarder to CPU %d: %w", f.cfg.CPU, err)
			return
		}
		// Stay locked: the thread has our affinity and must not go back
		// to the scheduler; it exits with the goroutine.
	} else {
		defer runtime.UnlockOSThread()
	}
	// Frames on the fill ring before Start returns, so packets that
	// arrive right after it are not dropped.
	f.in.Refill()
	ready <- nil

	idle := 0
	for !f.stop.Load() {
		if f.step() > 0 {
			idle = 0
			continue
		}
		idle++
		if f.cfg.IdleSpins >= 0 && idle > f.cfg.IdleSpins {
			f.sleep()
			idle = 0
		}
	}
	f.drain()
}

// step forwards one batch and returns the number of packets received.
// No system call other than the TX kick, no allocation.
func (f *Forwarder) step() int {
	in, out := f.in, f.out
	out.Complete()
	if !f.draining {
		in.Refill()
	}
	n := in.Receive(f.rx[:f.cfg.BatchSize])
	if n == 0 {
		if out.tx.prodPending() > 0 {
			out.kick()
		}
		return 0
	}
	iu := in.u
	batch := f.pkts[:n]
	for i := range n {
		d := f.rx[i]
		buf, off := iu.Frame(d)
		batch[i] = Packet{Buf: buf, Off: off, Len: int(d.Len), Addr: d.Addr &^ iu.frameMask}
	}
	if f.cfg.Batch != nil {
		f.cfg.Batch(batch)
	}

	var ntx, ndrop, hookDrops, bad int
	fs := iu.cfg.FrameSize
	for i := range batch {
		p := &batch[i]
		switch {
		case p.Drop:
			hookDrops++
		case p.Off < 0 || p.Len < MinFrameLen || p.Off > fs-p.Len:
			bad++
		default:
			f.tx[ntx] = Desc{Addr: f.rx[i].Addr&^iu.frameMask + uint64(p.Off), Len: uint32(p.Len)}
			ntx++
			p.Buf = nil
			continue
		}
		f.drop[ndrop] = f.rx[i]
		ndrop++
		p.Buf = nil
	}

	txs := f.tx[:ntx]
	if f.sameUMEM {
		if ndrop > 0 {
			iu.Free(f.drop[:ndrop])
		}
	} else {
		txs = f.copyOut(txs)
		iu.Free(f.rx[:n])
	}
	sent, full := f.transmit(txs)

	f.c.rx.Add(uint64(n))
	f.c.batches.Add(1)
	if sent > 0 {
		f.c.tx.Add(uint64(sent))
	}
	if hookDrops > 0 {
		f.c.hookDrops.Add(uint64(hookDrops))
	}
	if bad > 0 {
		f.c.bad.Add(uint64(bad))
	}
	if full > 0 {
		f.c.txFull.Add(uint64(full))
	}
	return n
}

// copyOut copies the packets of txs (frames of In's UMEM) into frames of
// Out's UMEM, at the same offset where it fits, and returns descriptors
// for those. Packets larger than Out's frames, or that find no free
// frame, are dropped (the caller frees In's frames).
func (f *Forwarder) copyOut(txs []Desc) []Desc {
	iu, ou := f.in.u, f.out.u
	ofs := ou.cfg.FrameSize
	n := 0
	for _, d := range txs {
		if int(d.Len) <= ofs {
			txs[n] = d
			n++
		}
	}
	if tooBig := len(txs) - n; tooBig > 0 {
		f.c.bad.Add(uint64(tooBig))
	}
	dst := f.cp[:n]
	m := ou.Alloc(dst)
	for j := range m {
		src := iu.Packet(txs[j])
		frame, _ := ou.Frame(dst[j])
		off := min(int(txs[j].Addr&iu.frameMask), ofs-len(src))
		copy(frame[off:], src)
		dst[j].Addr = dst[j].Addr&^ou.frameMask + uint64(off)
		dst[j].Len = uint32(len(src))
	}
	if miss := n - m; miss > 0 {
		f.c.noFrame.Add(uint64(miss))
	}
	if m > 0 {
		f.c.copied.Add(uint64(m))
	}
	return dst[:m]
}

// transmit puts txs on Out's TX ring, reaping completions and retrying a
// few times while the ring is full; what still does not fit is dropped.
func (f *Forwarder) transmit(txs []Desc) (sent, dropped int) {
	out := f.out
	for attempt := 0; len(txs) > 0 && attempt < 8; attempt++ {
		k := out.Transmit(txs)
		sent += k
		txs = txs[k:]
		if len(txs) > 0 {
			out.Complete()
		}
	}
	if len(txs) > 0 {
		out.u.Free(txs)
	}
	return sent, len(txs)
}

// sleep blocks in poll(2) until In has packets, Stop wakes the eventfd,
// or a timeout passes: short while Out still has frames to complete.
func (f *Forwarder) sleep() {
	timeout := 100 * time.Millisecond
	if f.out.TXOutstanding() > 0 {
		timeout = time.Millisecond
	}
	pfd := [2]unix.PollFd{
		{Fd: int32(f.in.fd), Events: unix.POLLIN},
		{Fd: int32(f.efd), Events: unix.POLLIN},
	}
	pollRetry(pfd[:], timeout)
	f.c.sleeps.Add(1)
}

// drain forwards what is left on In's RX ring without refilling, then
// waits (bounded) for Out to send everything.
func (f *Forwarder) drain() {
	f.draining = true
	deadline := time.Now().Add(drainTimeout)
	for i := 0; i <= int(f.in.rx.size)/f.cfg.BatchSize && time.Now().Before(deadline); i++ {
		if f.step() == 0 {
			break
		}
	}
	for f.out.TXOutstanding() > 0 && time.Now().Before(deadline) {
		f.out.Kick()
		if f.out.Complete() == 0 {
			time.Sleep(100 * time.Microsecond)
		}
	}
	f.out.Complete()
}

// Stop stops the forwarder gracefully: it closes cfg.Detach (so no new
// packets are steered to In), lets the goroutine forward what is on In's
// RX ring and wait (bounded) for Out's transmissions to complete, then
// closes both sockets and their UMEMs. Calling Stop again does nothing.
func (f *Forwarder) Stop() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return nil
	}
	f.stopped = true
	var errs []error
	for _, c := range f.cfg.Detach {
		if c == nil {
			continue
		}
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("xdp: forwarder detach: %w", err))
		}
	}
	if f.started {
		f.stop.Store(true)
		one := uint64(1)
		unix.Write(f.efd, unsafe.Slice((*byte)(unsafe.Pointer(&one)), 8))
		<-f.done
	}
	for _, s := range []*Socket{f.in, f.out} {
		if err := s.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := f.in.u.Close(); err != nil {
		errs = append(errs, err)
	}
	if !f.sameUMEM {
		if err := f.out.u.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := unix.Close(f.efd); err != nil {
		errs = append(errs, fmt.Errorf("xdp: close eventfd: %w", err))
	}
	return errors.Join(errs...)
}

// Stats returns the forwarder's counters. Safe while it runs.
func (f *Forwarder) Stats() ForwarderStats {
	return ForwarderStats{
		RXPackets:  f.c.rx.Load(),
		TXPackets:  f.c.tx.Load(),
		Batches:    f.c.batches.Load(),
		Copied:     f.c.copied.Load(),
		HookDrops:  f.c.hookDrops.Load(),
		BadPackets: f.c.bad.Load(),
		NoFrame:    f.c.noFrame.Load(),
		TXFull:     f.c.txFull.Load(),
		Sleeps:     f.c.sleeps.Load(),
	}
}
