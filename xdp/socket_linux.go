//go:build linux

package xdp

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Socket is an AF_XDP socket bound to one interface queue, with its RX
// and TX rings. It shares its UMEM's fill and completion rings with the
// other sockets of the UMEM on the same queue.
//
// Receive must not run concurrently with itself, nor Transmit with
// itself; one goroutine may receive while another transmits. Refill,
// Complete and the accessors are safe anywhere. Close must not race with
// Receive or Transmit.
type Socket struct {
	u          *UMEM
	p          *pool
	fd         int
	cfg        SocketConfig
	zeroCopy   bool
	needWakeup bool
	sg         bool // bound with XDP_USE_SG (SocketConfig.MultiBuffer)
	ownsRings  bool // created its pool's fill and completion rings
	rx, tx     descRing
	maxKicks   int
	c          sockCounters
}

type sockCounters struct {
	rxPackets, rxBytes, txPackets, txBytes, txCompleted, txInvalid atomic.Uint64
	filled, fillEmpty, freeEmpty, wakeups, wakeupErrors, rxBad     atomic.Uint64
}

// NewSocket creates an AF_XDP socket on the UMEM and binds it to
// cfg.Ifindex/cfg.Queue, in the network namespace of the calling thread.
//
// The first socket of a UMEM registers it with the kernel (XDP_UMEM_REG)
// and brings the fill and completion rings of its queue. A socket on a
// queue the UMEM already has a socket on shares that queue's rings
// (XDP_SHARED_UMEM, same queue: the kernel forbids a second pair). A
// socket on another queue or interface gets a pair of its own
// (XDP_SHARED_UMEM across queues and devices, Linux 5.10+).
//
// The caller registers the socket in the XDP program's XSKMAP (see
// bpf.Program.RegisterSocket) and must Refill before packets can arrive.
func (u *UMEM) NewSocket(cfg SocketConfig) (*Socket, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	// setup serialises socket creation and closing on the UMEM without
	// holding up the data path, which only takes mu; the lists of pools
	// and sockets change only with both held.
	u.setup.Lock()
	defer u.setup.Unlock()
	if u.closed {
		return nil, ErrClosed
	}
	// The socket belongs to the calling thread's network namespace; keep
	// the thread until its namespace is known.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, sysErr("socket(AF_XDP)", err)
	}
	ns := netnsOf(fd)
	s := &Socket{u: u, fd: fd, cfg: cfg}
	var p *pool
	ok := false
	defer func() {
		if !ok {
			s.rx.unmap()
			s.tx.unmap()
			if s.ownsRings && p != nil {
				p.fill.unmap()
				p.comp.unmap()
			}
			unix.Close(fd)
		}
	}()
	key := poolKey{netns: ns, ifindex: cfg.Ifindex, queue: cfg.Queue}
	for _, q := range u.pools {
		if q.key == key {
			p = q
		}
	}
	shareFD := -1
	switch {
	case len(u.sockets) == 0:
		reg := unix.XDPUmemReg{
			Addr:     u.memAddr(),
			Len:      uint64(len(u.mem)),
			Size:     uint32(u.cfg.FrameSize),
			Headroom: uint32(u.cfg.Headroom),
		}
		if err := setsockopt(fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
			return nil, sysErr("setsockopt XDP_UMEM_REG", err)
		}
		s.ownsRings = true
	case p != nil:
		shareFD = p.sockets[0].fd
	default:
		shareFD = u.sockets[0].fd
		s.ownsRings = true
	}
	if shareFD >= 0 && cfg.Mode != ModeAuto && (cfg.Mode == ModeZeroCopy) != u.zeroCopy {
		return nil, fmt.Errorf("%w: socket asks for %v mode, but the UMEM is bound in %v mode",
			ErrInvalidConfig, cfg.Mode, modeOf(u.zeroCopy))
	}
	if s.ownsRings {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, unix.XDP_UMEM_FILL_RING, u.cfg.FillSize); err != nil {
			return nil, sysErr("setsockopt XDP_UMEM_FILL_RING", err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, unix.XDP_UMEM_COMPLETION_RING, u.cfg.CompletionSize); err != nil {
			return nil, sysErr("setsockopt XDP_UMEM_COMPLETION_RING", err)
		}
	}
	if cfg.RXSize > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, unix.XDP_RX_RING, cfg.RXSize); err != nil {
			return nil, sysErr("setsockopt XDP_RX_RING", err)
		}
	}
	if cfg.TXSize > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, unix.XDP_TX_RING, cfg.TXSize); err != nil {
			return nil, sysErr("setsockopt XDP_TX_RING", err)
		}
	}
	off, err := mmapOffsets(fd)
	if err != nil {
		return nil, fmt.Errorf("xdp: %w", err)
	}
	if cfg.RXSize > 0 {
		if s.rx, err = mapDescRing(fd, unix.XDP_PGOFF_RX_RING, off.Rx, cfg.RXSize); err != nil {
			return nil, sysErr("RX ring", err)
		}
	}
	if cfg.TXSize > 0 {
		if s.tx, err = mapDescRing(fd, unix.XDP_PGOFF_TX_RING, off.Tx, cfg.TXSize); err != nil {
			return nil, sysErr("TX ring", err)
		}
	}
	if s.ownsRings {
		id, err := u.poolID()
		if err != nil {
			return nil, err
		}
		p = &pool{id: id, key: key, mapFD: fd}
		if p.fill, err = mapAddrRing(fd, unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, u.cfg.FillSize); err != nil {
			return nil, sysErr("fill ring", err)
		}
		if p.comp, err = mapAddrRing(fd, unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, u.cfg.CompletionSize); err != nil {
			return nil, sysErr("completion ring", err)
		}
	}

	sa := &unix.SockaddrXDP{Ifindex: uint32(cfg.Ifindex), QueueID: uint32(cfg.Queue)}
	if shareFD >= 0 {
		sa.Flags = unix.XDP_SHARED_UMEM
		sa.SharedUmemFD = uint32(shareFD)
	} else {
		switch cfg.Mode {
		case ModeCopy:
			sa.Flags |= unix.XDP_COPY
		case ModeZeroCopy:
			sa.Flags |= unix.XDP_ZEROCOPY
		}
		if !cfg.NoNeedWakeup {
			sa.Flags |= unix.XDP_USE_NEED_WAKEUP
		}
		if cfg.MultiBuffer {
			sa.Flags |= unix.XDP_USE_SG
		}
	}
	if err := setBusyPoll(fd, cfg.BusyPoll); err != nil {
		return nil, err
	}
	if err := bindRetry(fd, sa); err != nil {
		return nil, sysErr(fmt.Sprintf("bind to ifindex %d queue %d", cfg.Ifindex, cfg.Queue), err)
	}
	var opts uint32
	if _, err := getsockopt(fd, unix.XDP_OPTIONS, unsafe.Pointer(&opts), unsafe.Sizeof(opts)); err != nil {
		return nil, sysErr("getsockopt XDP_OPTIONS", err)
	}
	s.zeroCopy = opts&unix.XDP_OPTIONS_ZEROCOPY != 0
	if shareFD < 0 {
		u.zeroCopy = s.zeroCopy
		u.needWakeup = !cfg.NoNeedWakeup
	}
	s.needWakeup = u.needWakeup
	if shareFD < 0 {
		u.sg = cfg.MultiBuffer
	}
	s.sg = u.sg
	s.maxKicks = max(cfg.TXSize, 0)/32 + 2

	ok = true
	u.mu.Lock()
	s.p = p
	p.sockets = append(p.sockets, s)
	if s.ownsRings {
		u.pools = append(u.pools, p)
	}
	u.sockets = append(u.sockets, s)
	u.mu.Unlock()
	return s, nil
}

// bindBusyWait bounds how long bind retries while the queue is busy.
const bindBusyWait = 500 * time.Millisecond

// bindRetry binds fd, retrying on EBUSY for up to bindBusyWait: the
// kernel releases a queue asynchronously (after an RCU grace period, from
// a workqueue) once the last socket on it has closed, so a socket closed
// just before may still hold it.
func bindRetry(fd int, sa *unix.SockaddrXDP) error {
	deadline := time.Now().Add(bindBusyWait)
	sleep := time.Millisecond
	for {
		err := unix.Bind(fd, sa)
		if err != unix.EBUSY || time.Now().After(deadline) {
			return err
		}
		time.Sleep(sleep)
		sleep = min(2*sleep, 20*time.Millisecond)
	}
}

// poolID returns the smallest pool id not in use.
func (u *UMEM) poolID() (int, error) {
	for id := 0; id < maxPools; id++ {
		if !slices.ContainsFunc(u.pools, func(p *pool) bool { return p.id == id }) {
			return id, nil
		}
	}
	return 0, fmt.Errorf("%w: more than %d queues on one UMEM", ErrInvalidConfig, maxPools)
}

// netnsOf identifies the network namespace of socket fd by the inode of
// its namespace file.
func netnsOf(fd int) uint64 {
	var st unix.Stat_t
	if nsfd, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS); err == nil {
		err = unix.Fstat(nsfd, &st)
		unix.Close(nsfd)
		if err == nil {
			return st.Ino
		}
	}
	// The socket was created by this (locked) thread.
	if unix.Stat("/proc/thread-self/ns/net", &st) == nil {
		return st.Ino
	}
	return 0
}

func modeOf(zeroCopy bool) Mode {
	if zeroCopy {
		return ModeZeroCopy
	}
	return ModeCopy
}

// sysErr wraps a system call error with context and the matching
// sentinel.
func sysErr(what string, err error) error {
	switch {
	case errors.Is(err, ErrNotSupported), errors.Is(err, ErrInvalidConfig):
		return fmt.Errorf("xdp: %s: %w", what, err)
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("xdp: %s: %w: %w", what, ErrPermission, err)
	case errors.Is(err, unix.EAFNOSUPPORT), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EPROTONOSUPPORT):
		return fmt.Errorf("xdp: %s: %w: %w", what, ErrNotSupported, err)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("xdp: %s: %w: %w", what, ErrBusy, err)
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
		return fmt.Errorf("xdp: %s: %w: %w", what, ErrInvalidConfig, err)
	}
	return fmt.Errorf("xdp: %s: %w", what, err)
}

// FD is the socket's file descriptor, for the XSKMAP and poll(2).
func (s *Socket) FD() int { return s.fd }

// Config is the socket's configuration with defaults filled in.
func (s *Socket) Config() SocketConfig { return s.cfg }

// UMEM is the socket's UMEM.
func (s *Socket) UMEM() *UMEM { return s.u }

// Mode is the mode in use: ModeCopy or ModeZeroCopy.
func (s *Socket) Mode() Mode { return modeOf(s.zeroCopy) }

// OwnsFillRing reports whether the socket brought its queue's fill and
// completion rings, i.e. it was the first socket of its UMEM on its
// queue. The others share them.
func (s *Socket) OwnsFillRing() bool { return s.ownsRings }

// Receive takes up to len(descs) received packets from the RX ring and
// returns how many. The application owns their frames until it gives
// them back with Transmit (on any socket of the same UMEM) or
// UMEM.Free. No system call, no allocation.
func (s *Socket) Receive(descs []Desc) int {
	r := &s.rx
	if !r.mapped() || len(descs) == 0 {
		return 0
	}
	cons := atomic.LoadUint32(r.consumer)
	n := min(atomic.LoadUint32(r.producer)-cons, uint32(len(descs)))
	if n == 0 {
		return 0
	}
	for i := range n {
		descs[i] = r.descs[(cons+i)&r.mask]
	}
	if s.sg {
		// Whole chains only: leave a chain cut by len(descs) on the ring.
		for n > 0 && descs[n-1].Options&unix.XDP_PKT_CONTD != 0 {
			n--
		}
		if n == 0 {
			return 0
		}
	}
	atomic.StoreUint32(r.consumer, cons+n)

	u := s.u
	u.mu.Lock()
	fs := fillState(s.p)
	k := 0
	var bytes uint64
	for i := range n {
		d := descs[i]
		idx := d.Addr >> u.shift
		if idx >= uint64(len(u.state)) || u.state[idx] != fs || uint64(d.Len) > u.frameMask+1-d.Addr&u.frameMask {
			continue // not ours to hand out; counted below
		}
		u.state[idx] = stateApp
		bytes += uint64(d.Len)
		descs[k] = d
		k++
	}
	s.p.fillOut -= k
	u.app += k
	u.mu.Unlock()
	if bad := int(n) - k; bad > 0 {
		s.c.rxBad.Add(uint64(bad))
	}
	s.c.rxPackets.Add(uint64(k))
	s.c.rxBytes.Add(bytes)
	return k
}

// Transmit puts up to len(descs) packets on the TX ring, wakes the kernel
// if it asks for it, and returns how many descriptors it consumed: the
// first n, which the application no longer owns. It stops early only
// when the ring is full. Descriptors it cannot send (outside the UMEM,
// shorter than MinFrameLen, crossing the end of their frame, or for a
// frame the application does not hold) are consumed too: counted in
// Stats.TXInvalid, and their frame, if the application held it, freed.
// The frames come back through the completion ring: call Complete.
func (s *Socket) Transmit(descs []Desc) int {
	r := &s.tx
	if !r.mapped() {
		return 0
	}
	prod := atomic.LoadUint32(r.producer)
	n := min(r.size-(prod-atomic.LoadUint32(r.consumer)), uint32(len(descs)))
	if s.sg {
		// Whole chains only: the kernel would join a cut chain with
		// whatever comes next.
		for n > 0 && descs[n-1].Options&unix.XDP_PKT_CONTD != 0 {
			n--
		}
	}
	if n == 0 {
		s.kick()
		return 0
	}
	u := s.u
	u.mu.Lock()
	ts := txState(s.p)
	k := uint32(0)
	var bytes uint64
	invalid := 0
	contd := false // descs[i] continues a chain
	for i := range n {
		d := descs[i]
		first := !contd
		contd = s.sg && d.Options&unix.XDP_PKT_CONTD != 0
		idx := d.Addr >> u.shift
		off := d.Addr & u.frameMask
		if idx >= uint64(len(u.state)) || u.state[idx] != stateApp {
			invalid++
			u.badFree++
			continue
		}
		if (first && d.Len < MinFrameLen) || d.Len == 0 || off+uint64(d.Len) > u.frameMask+1 || (d.Options != 0 && !contd) {
			invalid++
			u.state[idx] = stateFree
			u.free = append(u.free, d.Addr&^u.frameMask)
			u.app--
			continue
		}
		u.state[idx] = ts
		r.descs[(prod+k)&r.mask] = d
		bytes += uint64(d.Len)
		k++
	}
	s.p.txOut += int(k)
	u.app -= int(k)
	u.mu.Unlock()
	atomic.StoreUint32(r.producer, prod+k)
	if invalid > 0 {
		s.c.txInvalid.Add(uint64(invalid))
	}
	s.c.txPackets.Add(uint64(k))
	s.c.txBytes.Add(bytes)
	if k > 0 {
		s.kick()
	}
	return int(n)
}

// Kick wakes the kernel to send what is on the TX ring, if it asked to be
// woken (always, in copy mode). Transmit kicks by itself; Kick is for
// retrying after the kernel stopped early, e.g. on a full completion
// ring.
func (s *Socket) Kick() {
	if s.tx.mapped() {
		s.kick()
	}
}

// kick calls sendto until the kernel has taken everything off the TX
// ring or stops making progress. In copy mode the kernel sends at most
// 32 packets per call and returns EAGAIN when more are left.
//
// The wakeups (sendto here, recvfrom in Refill) are raw system calls:
// they never block (MSG_DONTWAIT), so the goroutine keeps its P through
// them. Through the runtime's entersyscall/exitsyscall instead, a
// sendto that runs the peer veth's receive work in softirq (tens of µs)
// let sysmon take the P away and hand it to another thread, which the
// worker then had to wait to get back: a profile of one TCP stream
// through two gateways had the runtime's scheduler (sysmon, findRunnable)
// at about a tenth of the gateways' CPU.
func (s *Socket) kick() {
	if s.needWakeup && !s.tx.needWakeup() {
		return
	}
	for range s.maxKicks {
		_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
		s.c.wakeups.Add(1)
		switch e {
		case 0:
			return
		case unix.EAGAIN:
			if s.tx.prodPending() == 0 {
				return
			}
		case unix.EINTR:
		case unix.EBUSY, unix.ENOBUFS:
			return
		default:
			s.c.wakeupErrors.Add(1)
			return
		}
	}
}

// Refill puts free frames on the fill ring of the socket's queue, as many
// as it has room for, and returns how many. A socket without RX ring
// does nothing. One lock and, only if the kernel asks for it, one system
// call per call.
func (s *Socket) Refill() int {
	if !s.rx.mapped() {
		return 0
	}
	u := s.u
	u.mu.Lock()
	p := s.p
	if p == nil {
		u.mu.Unlock()
		return 0
	}
	f := &p.fill
	prod := atomic.LoadUint32(f.producer)
	pending := prod - atomic.LoadUint32(f.consumer)
	room := f.size - pending
	n := min(room, uint32(len(u.free)))
	fs := fillState(p)
	top := uint32(len(u.free))
	for i := range n {
		a := u.free[top-1-i]
		u.state[a>>u.shift] = fs
		f.addrs[(prod+i)&f.mask] = a
	}
	u.free = u.free[:top-n]
	p.fillOut += int(n)
	atomic.StoreUint32(f.producer, prod+n)
	wake := n > 0 && s.needWakeup && f.needWakeup()
	u.mu.Unlock()

	if pending == 0 {
		s.c.fillEmpty.Add(1)
	}
	if n == 0 && room > 0 {
		s.c.freeEmpty.Add(1)
	}
	s.c.filled.Add(uint64(n))
	if wake {
		_, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
		s.c.wakeups.Add(1)
		if e != 0 && e != unix.EAGAIN && e != unix.EINTR && e != unix.EBUSY {
			s.c.wakeupErrors.Add(1)
		}
	}
	return int(n)
}

// Complete reaps the completion ring of the socket's queue: frames the
// kernel has sent go back to the free list. It returns how many.
func (s *Socket) Complete() int {
	u := s.u
	u.mu.Lock()
	p := s.p
	if p == nil {
		u.mu.Unlock()
		return 0
	}
	c := &p.comp
	cons := atomic.LoadUint32(c.consumer)
	n := atomic.LoadUint32(c.producer) - cons
	ts := txState(p)
	k := 0
	for i := range n {
		a := c.addrs[(cons+i)&c.mask]
		idx := a >> u.shift
		if idx >= uint64(len(u.state)) || u.state[idx] != ts {
			continue
		}
		u.state[idx] = stateFree
		u.free = append(u.free, a&^u.frameMask)
		k++
	}
	p.txOut -= k
	atomic.StoreUint32(c.consumer, cons+n)
	u.mu.Unlock()
	s.c.txCompleted.Add(uint64(k))
	return k
}

// TXOutstanding is the number of frames transmitted on the socket's
// queue and not yet reaped by Complete.
func (s *Socket) TXOutstanding() int {
	s.u.mu.Lock()
	defer s.u.mu.Unlock()
	if s.p == nil {
		return 0
	}
	return s.p.txOut
}

// Wait blocks in poll(2) until the RX ring has packets or timeout passes
// (negative: no limit) and reports whether packets are there. In copy
// mode poll also drives transmission.
func (s *Socket) Wait(timeout time.Duration) (bool, error) {
	if s.fd < 0 {
		return false, ErrClosed
	}
	pfd := [1]unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}}
	n, err := pollRetry(pfd[:], timeout)
	if err != nil {
		return false, err
	}
	return n > 0 && pfd[0].Revents&unix.POLLIN != 0, nil
}

// pollRetry is poll(2) with timeout rounded up to milliseconds, retried
// on EINTR.
func pollRetry(fds []unix.PollFd, timeout time.Duration) (int, error) {
	ms := -1
	if timeout >= 0 {
		ms = int((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	for {
		n, err := unix.Poll(fds, ms)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("xdp: poll: %w", err)
		}
		return n, nil
	}
}

// Stats returns the socket's counters and the kernel's (one getsockopt).
func (s *Socket) Stats() (Stats, error) {
	st := Stats{
		RXPackets:     s.c.rxPackets.Load(),
		RXBytes:       s.c.rxBytes.Load(),
		TXPackets:     s.c.txPackets.Load(),
		TXBytes:       s.c.txBytes.Load(),
		TXCompleted:   s.c.txCompleted.Load(),
		TXInvalid:     s.c.txInvalid.Load(),
		Filled:        s.c.filled.Load(),
		FillRingEmpty: s.c.fillEmpty.Load(),
		FreeListEmpty: s.c.freeEmpty.Load(),
		Wakeups:       s.c.wakeups.Load(),
		WakeupErrors:  s.c.wakeupErrors.Load(),
		RXBadDesc:     s.c.rxBad.Load(),
	}
	if s.fd < 0 {
		return st, ErrClosed
	}
	var ks unix.XDPStatistics
	n, err := getsockopt(s.fd, unix.XDP_STATISTICS, unsafe.Pointer(&ks), unsafe.Sizeof(ks))
	if err != nil {
		return st, sysErr("getsockopt XDP_STATISTICS", err)
	}
	st.Kernel = KernelStats{
		RxDropped:      ks.Rx_dropped,
		RxInvalidDescs: ks.Rx_invalid_descs,
		TxInvalidDescs: ks.Tx_invalid_descs,
	}
	if n == unsafe.Sizeof(ks) { // the last three since Linux 5.9
		st.Kernel.RxRingFull = ks.Rx_ring_full
		st.Kernel.RxFillRingEmptyDescs = ks.Rx_fill_ring_empty_descs
		st.Kernel.TxRingEmptyDescs = ks.Tx_ring_empty_descs
	}
	return st, nil
}

// Close closes the socket. Frames on its RX ring go back to the free
// list. When it is the last socket on its queue, the queue's fill and
// completion rings go too, and every frame the kernel held for that queue
// is reclaimed; otherwise frames the kernel still holds for the queue
// stay accounted to it until its last socket closes.
func (s *Socket) Close() error {
	s.u.setup.Lock()
	defer s.u.setup.Unlock()
	s.u.mu.Lock()
	defer s.u.mu.Unlock()
	return s.closeLocked()
}

func (s *Socket) closeLocked() error {
	if s.fd < 0 {
		return nil
	}
	u, p := s.u, s.p
	var errs []error
	if s.rx.mapped() {
		// Produced RX entries are never touched by the kernel again.
		fs := fillState(p)
		for i, end := atomic.LoadUint32(s.rx.consumer), atomic.LoadUint32(s.rx.producer); i != end; i++ {
			a := s.rx.descs[i&s.rx.mask].Addr
			if idx := a >> u.shift; idx < uint64(len(u.state)) && u.state[idx] == fs {
				u.state[idx] = stateFree
				u.free = append(u.free, a&^u.frameMask)
				p.fillOut--
			}
		}
		atomic.StoreUint32(s.rx.consumer, atomic.LoadUint32(s.rx.producer))
	}
	p.sockets = slices.DeleteFunc(p.sockets, func(x *Socket) bool { return x == s })
	u.sockets = slices.DeleteFunc(u.sockets, func(x *Socket) bool { return x == s })
	if err := s.rx.unmap(); err != nil {
		errs = append(errs, fmt.Errorf("xdp: unmap RX ring: %w", err))
	}
	if err := s.tx.unmap(); err != nil {
		errs = append(errs, fmt.Errorf("xdp: unmap TX ring: %w", err))
	}
	if len(p.sockets) == 0 {
		// The pool dies with its last socket.
		if err := p.fill.unmap(); err != nil {
			errs = append(errs, fmt.Errorf("xdp: unmap fill ring: %w", err))
		}
		if err := p.comp.unmap(); err != nil {
			errs = append(errs, fmt.Errorf("xdp: unmap completion ring: %w", err))
		}
		u.reclaimLocked(p)
		u.pools = slices.DeleteFunc(u.pools, func(x *pool) bool { return x == p })
	} else if p.mapFD == s.fd {
		// Our mapping of the shared rings keeps our socket alive: map
		// them again through a socket that stays.
		if err := p.remap(p.sockets[0].fd); err != nil {
			errs = append(errs, err)
		}
	}
	if err := unix.Close(s.fd); err != nil {
		errs = append(errs, fmt.Errorf("xdp: close socket: %w", err))
	}
	s.fd = -1
	s.p = nil
	return errors.Join(errs...)
}

// remap maps the pool's fill and completion rings through fd (a bound
// socket of the pool) and unmaps the old mappings.
func (p *pool) remap(fd int) error {
	off, err := mmapOffsets(fd)
	if err != nil {
		return fmt.Errorf("xdp: remap shared rings: %w", err)
	}
	fill, err := mapAddrRing(fd, unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, int(p.fill.size))
	if err != nil {
		return sysErr("remap fill ring", err)
	}
	comp, err := mapAddrRing(fd, unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, int(p.comp.size))
	if err != nil {
		fill.unmap()
		return sysErr("remap completion ring", err)
	}
	p.fill.unmap()
	p.comp.unmap()
	p.fill, p.comp, p.mapFD = fill, comp, fd
	return nil
}
