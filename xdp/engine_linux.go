//go:build linux

package xdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/bpf"
	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/esp/reasm"
	"github.com/espxdp/espxdp/internal/inet"
	"github.com/espxdp/espxdp/sa"
)

// Engine runs the SA processor between AF_XDP sockets: one worker per
// interface queue, each on a goroutine locked to an OS thread, decrypts
// ESP from the ciphertext side towards the plaintext side and encrypts
// plaintext from the plaintext side towards the ciphertext side. See the
// package documentation.
type Engine struct {
	cfg EngineConfig

	mu      sync.Mutex
	running bool
	rt      *engineRun
	// counters survive Stop, so Stats after Stop still reports them.
	last EngineStats
}

// engineRun is what Start builds and Stop tears down.
type engineRun struct {
	u            *UMEM
	progC        *bpf.Program
	progP        *bpf.Program
	attC, attP   *bpf.Attachment
	workers      []*engineWorker
	efd          int
	stop         atomic.Bool
	epoch        time.Time // for the ICMP token buckets
	cMAC, pMAC   [6]byte   // our MACs
	cNext, pNxt  [6]byte   // next hops
	cVLAN, pVLAN uint16    // the sides' VLAN IDs (0: untagged)
}

type engineWorker struct {
	e  *Engine
	rt *engineRun
	id int // engine (and sa.Processor) worker index
	q  int // the queue it transmits on
	w  *sa.Worker
	cs *Socket // ciphertext side, TX (and RX on queue q)
	ps *Socket // plaintext side, nil with Deliver
	// rxC and rxP are the sockets the worker receives on: its socket on
	// every queue (SteerSPI, SteerSpread), or cs and ps alone
	// (SteerQueue). They include cs and ps.
	rxC, rxP []*Socket
	// pfd is the poll set of sleep, built once at start.
	pfd []unix.PollFd
	// asleep is set while the worker sleeps in poll(2), so an Ordered
	// sequencer can wake it to help (written by the worker only around
	// a sleep, read by others once per batch).
	// tid is the worker's thread while it runs (0 after); cpu0 its CPU
	// time when the worker locked it, cpuEnd the CPU the worker used, set
	// when it stops.
	tid          atomic.Int32
	cpu0, cpuEnd atomic.Int64
	asleep       atomic.Bool
	ordered      bool // the processor's mode is sa.Ordered
	done         chan struct{}
	rx           [MaxBatch]Desc
	pk           [MaxBatch]sa.Packet
	txC          [2 * MaxBatch]Desc
	txP          [2 * MaxBatch]Desc
	free         [2 * MaxBatch]Desc
	dlv          [2 * MaxBatch][]byte
	dlvD         [2 * MaxBatch]Desc
	nC           int
	nP           int
	nFree        int
	nDlv         int
	c            engCounters

	// mssOld[i] is the MSS that ClampMSS lowered in pk[i] before
	// Outbound (0: none), restored if the packet is bypassed.
	mssOld [MaxBatch]uint16
	icmp   tokenBucket

	// Fragmentation before encryption (FragmentInner): the fragments'
	// frames and packets; fragDepth > 0 while they are processed (no
	// fragment is fragmented again).
	fragD     [MaxFragments]Desc
	fragPk    [MaxFragments]sa.Packet
	fragDepth int

	jumbo jumboState // MultiBuffer (jumbo_linux.go)

	// Packets from Send wait in src (a ring guarded by srcMu) for the
	// worker; wfd wakes it.
	srcMu   sync.Mutex
	src     [srcQueueLen]Desc
	srcHead int
	srcN    atomic.Int32
	wfd     int

	// ra reassembles outer fragments (EngineConfig.Reassembly); only the
	// worker uses it. raSnap is its counters as of the last batch that
	// touched it, for Stats on other goroutines.
	ra     *reasm.Reassembler
	raMu   sync.Mutex
	raSnap reasm.Stats
}

// srcQueueLen is the capacity of a worker's Send queue.
const srcQueueLen = 1024

type engCounters struct {
	cipherRX, decrypted, plainRX, encrypted, bypassed, control, controlDropped,
	saDrops, mtuDrops, notIP, vlanDrops, noRoom, txFull, handedOff, sleeps, sent, sendFull,
	mssClamped, ttlExpired, icmpSent, icmpRateLimited, icmpNotSent, reasmNoFrame,
	fragmented, fragments, fragFailed,
	jumboRX, jumboTX, jumboDrops atomic.Uint64
}

// tokenBucket limits a worker's ICMP errors: rate tokens per second up
// to burst; one token per error. Only its worker uses it.
type tokenBucket struct {
	tokens, burst, perNs float64
	last                 int64 // ns since engineRun.epoch
}

func newTokenBucket(rate, burst int) tokenBucket {
	return tokenBucket{tokens: float64(burst), burst: float64(burst), perNs: float64(rate) / 1e9}
}

// take reports whether a token was available at now (ns) and takes it.
func (b *tokenBucket) take(now int64) bool {
	if now > b.last {
		b.tokens = min(b.burst, b.tokens+float64(now-b.last)*b.perNs)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// plainLocal is the local-address filter of the plaintext-side program:
// no address a packet is sent to.
var plainLocal = []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}

// NewEngine checks cfg and returns an Engine; Start runs it.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	return &Engine{cfg: cfg}, nil
}

func resolve(p *Port) (int, [6]byte, error) {
	var ifi *net.Interface
	var err error
	if p.Ifindex > 0 {
		ifi, err = net.InterfaceByIndex(p.Ifindex)
	} else {
		ifi, err = net.InterfaceByName(p.Name)
	}
	if err != nil {
		return 0, [6]byte{}, fmt.Errorf("%w: interface %q/%d: %v", ErrInvalidConfig, p.Name, p.Ifindex, err)
	}
	mac := p.MAC
	if mac == nil {
		mac = ifi.HardwareAddr
	}
	if len(mac) != 6 {
		return 0, [6]byte{}, fmt.Errorf("%w: interface %s has no Ethernet address", ErrInvalidConfig, ifi.Name)
	}
	return ifi.Index, [6]byte(mac), nil
}

// Start loads and attaches the XDP programs, opens the sockets and
// starts the workers. It must be called from a thread in the network
// namespace of the interfaces. After Stop, Start may be called again.
func (e *Engine) Start() (err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.running {
		return nil
	}
	cfg := e.cfg
	rt := &engineRun{efd: -1, epoch: time.Now()}
	defer func() {
		if err != nil {
			rt.teardown()
		}
	}()
	cIdx, cMAC, err := resolve(&cfg.Cipher)
	if err != nil {
		return err
	}
	rt.cMAC, rt.cNext, rt.cVLAN = cMAC, [6]byte(cfg.Cipher.NextHop), uint16(cfg.Cipher.VLAN)
	pIdx := 0
	if cfg.Plain != nil {
		var pMAC [6]byte
		if pIdx, pMAC, err = resolve(cfg.Plain); err != nil {
			return err
		}
		rt.pMAC, rt.pNxt, rt.pVLAN = pMAC, [6]byte(cfg.Plain.NextHop), uint16(cfg.Plain.VLAN)
	}
	if err = checkMTU(&cfg.Cipher, cIdx, false, cfg.UMEM, cfg.MultiBuffer); err != nil {
		return err
	}
	if cfg.Plain != nil {
		if err = checkMTU(cfg.Plain, pIdx, true, cfg.UMEM, cfg.MultiBuffer); err != nil {
			return err
		}
	}
	if rt.efd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		rt.efd = -1
		return fmt.Errorf("xdp: eventfd: %w", err)
	}
	if rt.u, err = NewUMEM(cfg.UMEM); err != nil {
		return err
	}
	per := cfg.socketsPerQueue()
	steer := bpf.Options{SocketsPerQueue: per, SPIHash: per > 1 && cfg.Steering == SteerSPI,
		Spread: per > 1 && cfg.Steering == SteerSpread}
	if steer.Spread {
		steer.SpreadChunk = cfg.SpreadChunk
	}
	rt.progC, err = bpf.Load(bpf.Options{NATTPort: cfg.NATTPort, LocalAddrs: cfg.LocalAddrs, Queues: cfg.Queues,
		Unprotected: cfg.Unprotected, SteerFragments: cfg.Reassembly != nil,
		SocketsPerQueue: steer.SocketsPerQueue, SPIHash: steer.SPIHash, Spread: steer.Spread, SpreadChunk: steer.SpreadChunk})
	if err != nil {
		return err
	}
	if cfg.Plain != nil {
		rt.progP, err = bpf.Load(bpf.Options{NATTPort: cfg.NATTPort, Plaintext: true,
			ProtectedPrefixes: cfg.ProtectedPrefixes, Queues: cfg.Queues,
			// Inner fragments to a protected prefix are encrypted like
			// whole packets (to the queue's first socket), never left to
			// the kernel; with only the unspecified addresses "local",
			// ESP, UDP and their fragments on this side are taken only
			// for the protected prefixes, like all other plaintext.
			SteerFragments: true, LocalAddrs: plainLocal,
			SocketsPerQueue: steer.SocketsPerQueue, SPIHash: steer.SPIHash, Spread: steer.Spread, SpreadChunk: steer.SpreadChunk})
		if err != nil {
			return err
		}
	}
	for w := range cfg.Workers {
		ew := &engineWorker{e: e, rt: rt, id: w, q: w % cfg.Queues, w: cfg.Processor.Worker(w), done: make(chan struct{}), wfd: -1,
			ordered: cfg.Processor.Concurrency() == sa.Ordered,
			icmp:    newTokenBucket(cfg.ICMPRate, cfg.ICMPBurst), jumbo: newJumboState(cfg.MultiBuffer)}
		rt.workers = append(rt.workers, ew)
		if cfg.Reassembly != nil {
			ew.ra = reasm.New(*cfg.Reassembly)
		}
		if ew.wfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
			ew.wfd = -1
			return fmt.Errorf("xdp: eventfd: %w", err)
		}
	}
	// Sockets queue by queue: the first of a queue brings its fill and
	// completion rings, the others share them (XDP_SHARED_UMEM). Worker
	// w's socket on queue q is XSKMAP slot q*per + w (per > 1), where
	// the programs' SPI hash or dealer sends the packets meant for w.
	open := func(prog *bpf.Program, ifindex, q, slot int) (*Socket, error) {
		s, err := rt.u.NewSocket(cfg.socketConfig(ifindex, q))
		if err != nil {
			return nil, err
		}
		idx, err := prog.SocketIndex(q, slot)
		if err == nil {
			err = prog.RegisterSocket(idx, s.FD())
		}
		if err != nil {
			s.Close()
			return nil, err
		}
		return s, nil
	}
	for q := range cfg.Queues {
		for _, ew := range rt.workers {
			slot := ew.id
			if cfg.Steering == SteerQueue {
				if ew.id != q {
					continue
				}
				slot = 0
			}
			s, err := open(rt.progC, cIdx, q, slot)
			if err != nil {
				return err
			}
			ew.rxC = append(ew.rxC, s)
			if q == ew.q {
				ew.cs = s
			}
			if cfg.Plain != nil {
				if s, err = open(rt.progP, pIdx, q, slot); err != nil {
					return err
				}
				ew.rxP = append(ew.rxP, s)
				if q == ew.q {
					ew.ps = s
				}
			}
		}
	}
	if cfg.Steering == SteerSpread && cfg.Workers > 1 {
		// Invariant: an in-order stream dealt to the workers loses
		// nothing to anti-replay. One worker can fall behind the others
		// by at most what its RX rings and a batch hold; twice that is
		// the window floor (sa.Processor.SetReplayWindowFloor).
		cfg.Processor.SetReplayWindowFloor(spreadWindowFloor(cfg.Workers, cfg.BatchSize))
	}
	for _, ew := range rt.workers {
		ew.pfd = append(ew.pfd, unix.PollFd{Fd: int32(rt.efd), Events: unix.POLLIN}, unix.PollFd{Fd: int32(ew.wfd), Events: unix.POLLIN})
		for _, s := range append(append([]*Socket(nil), ew.rxC...), ew.rxP...) {
			ew.pfd = append(ew.pfd, unix.PollFd{Fd: int32(s.fd), Events: unix.POLLIN})
		}
	}
	if rt.attC, err = rt.progC.Attach(cIdx, cfg.Attach); err != nil {
		return err
	}
	if cfg.Plain != nil {
		if rt.attP, err = rt.progP.Attach(pIdx, cfg.Attach); err != nil {
			return err
		}
	}
	started := 0
	for _, ew := range rt.workers {
		ready := make(chan error, 1)
		go ew.run(ready)
		if err = <-ready; err != nil {
			break
		}
		started++
	}
	if err != nil {
		rt.stopWorkers(rt.workers[:started+1])
		return err
	}
	e.rt = rt
	e.running = true
	return nil
}

// Stop stops the engine gracefully: it detaches the XDP programs (no new
// packets are steered), lets every worker process what is on its RX
// rings and wait, bounded, for its transmissions, then closes the
// sockets, the UMEM and the programs. Nothing stays attached or open.
// Stop on a stopped engine does nothing.
func (e *Engine) Stop() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.running {
		return nil
	}
	rt := e.rt
	var errs []error
	for _, a := range []*bpf.Attachment{rt.attC, rt.attP} {
		if a != nil {
			if err := a.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	rt.attC, rt.attP = nil, nil
	rt.stopWorkers(rt.workers)
	e.last = e.statsLocked()
	if err := rt.teardown(); err != nil {
		errs = append(errs, err)
	}
	e.rt = nil
	e.running = false
	return errors.Join(errs...)
}

// stopWorkers tells the workers to stop and waits for them.
func (rt *engineRun) stopWorkers(ws []*engineWorker) {
	rt.stop.Store(true)
	one := uint64(1)
	unix.Write(rt.efd, unsafe.Slice((*byte)(unsafe.Pointer(&one)), 8))
	for _, ew := range ws {
		<-ew.done
	}
}

// teardown closes whatever rt holds, in reverse order of creation.
func (rt *engineRun) teardown() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, a := range []*bpf.Attachment{rt.attC, rt.attP} {
		if a != nil {
			add(a.Close())
		}
	}
	for _, ew := range rt.workers {
		if ew.wfd >= 0 {
			add(unix.Close(ew.wfd))
			ew.wfd = -1
		}
		for _, s := range ew.rxC {
			add(s.Close())
		}
		for _, s := range ew.rxP {
			add(s.Close())
		}
	}
	if rt.u != nil {
		add(rt.u.Close())
	}
	for _, p := range []*bpf.Program{rt.progC, rt.progP} {
		if p != nil {
			add(p.Close())
		}
	}
	if rt.efd >= 0 {
		add(unix.Close(rt.efd))
		rt.efd = -1
	}
	return errors.Join(errs...)
}

// WorkerThreads returns the thread IDs of the running engine's workers
// (worker i at index i; each runs locked to its OS thread), for
// measuring their CPU time in /proc/self/task/TID/stat; nil when the
// engine is not running.
func (e *Engine) WorkerThreads() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.running || e.rt == nil {
		return nil
	}
	tids := make([]int, len(e.rt.workers))
	for i, ew := range e.rt.workers {
		tids[i] = int(ew.tid.Load())
	}
	return tids
}

// Stats returns the engine's counters; safe while it runs. After Stop it
// returns the counters as they were when the engine stopped.
//
// The counters are not one atomic snapshot, but they are read from the
// last stage of a packet's path to the first (a worker's Decrypted and
// Encrypted before its CipherRX and PlainRX, the workers before the
// Processor, the XDP programs last), so within one EngineStats a stage
// never shows fewer packets than a later stage that counts the same
// packets: the Cipher program's ESPRedirected is at least the workers'
// Decrypted, the workers' CipherRX at least their Decrypted (summed over
// the workers), even while traffic flows.
func (e *Engine) Stats() EngineStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.running {
		return e.last
	}
	return e.statsLocked()
}

func (e *Engine) statsLocked() EngineStats {
	rt := e.rt
	var st EngineStats
	// Latest stage first (see Stats): all workers' results (a packet
	// one worker received may finish on another: hand-off, Ordered),
	// then their other counters, the Processor, the programs.
	st.Workers = make([]EngineWorkerStats, len(rt.workers))
	for i, ew := range rt.workers {
		st.Workers[i].Decrypted, st.Workers[i].Encrypted = ew.c.decrypted.Load(), ew.c.encrypted.Load()
	}
	for i, ew := range rt.workers {
		c := &ew.c
		st.Workers[i] = EngineWorkerStats{
			Worker: ew.id, Queue: ew.q, CipherRX: c.cipherRX.Load(), Decrypted: st.Workers[i].Decrypted,
			PlainRX: c.plainRX.Load(), Encrypted: st.Workers[i].Encrypted, Bypassed: c.bypassed.Load(),
			Control: c.control.Load(), ControlDropped: c.controlDropped.Load(),
			SADrops: c.saDrops.Load(), MTUDrops: c.mtuDrops.Load(), NotIP: c.notIP.Load(), VLANDrops: c.vlanDrops.Load(),
			NoRoom: c.noRoom.Load(), TXFull: c.txFull.Load(), HandedOff: c.handedOff.Load(),
			Sleeps: c.sleeps.Load(), CPU: ew.cpuTime(), Sent: c.sent.Load(), SendFull: c.sendFull.Load(),
			MSSClamped: c.mssClamped.Load(), TTLExpired: c.ttlExpired.Load(), ICMPSent: c.icmpSent.Load(),
			ICMPRateLimited: c.icmpRateLimited.Load(), ICMPNotSent: c.icmpNotSent.Load(),
			Reassembly: ew.reasmStats(), ReasmNoFrame: c.reasmNoFrame.Load(),
			Fragmented: c.fragmented.Load(), Fragments: c.fragments.Load(), FragmentFailed: c.fragFailed.Load(),
			JumboRX: c.jumboRX.Load(), JumboTX: c.jumboTX.Load(), JumboDrops: c.jumboDrops.Load(),
		}
		for _, s := range ew.rxC {
			ss, _ := s.Stats()
			st.CipherSockets = append(st.CipherSockets, ss)
		}
		for _, s := range ew.rxP {
			ss, _ := s.Stats()
			st.PlainSockets = append(st.PlainSockets, ss)
		}
	}
	st.Processor, st.Frames = e.cfg.Processor.Stats(), rt.u.Counts()
	st.CipherProgram, _ = rt.progC.Stats()
	if !e.cfg.Unprotected.Empty() {
		if drops, err := rt.progC.UnprotectedDrops(); err == nil {
			for i, n := range drops {
				if n != 0 {
					if st.UnprotectedDrops == nil {
						st.UnprotectedDrops = map[int]uint64{}
					}
					st.UnprotectedDrops[i] = n
				}
			}
		}
		if last, ok, err := rt.progC.LastUnprotected(); err == nil && ok {
			st.LastUnprotected = &last
		}
	}
	if rt.progP != nil {
		st.PlainProgram, _ = rt.progP.Stats()
	}
	return st
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
	ew.refill()
	ready <- nil
	idle := 0
	for !ew.rt.stop.Load() {
		if ew.step(true) > 0 {
			idle = 0
			continue
		}
		idle++
		if cfg.IdleSpins >= 0 && idle > cfg.IdleSpins {
			if ew.ra != nil {
				// Sets that will not complete give their memory back.
				ew.ra.Expire(int64(time.Since(ew.rt.epoch)))
				ew.publishReasm()
			}
			ew.sleep()
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

// refill gives the fill rings of the queues the worker receives on free
// frames (a queue's sockets share one ring: whichever worker has work
// keeps it filled).
func (ew *engineWorker) refill() {
	for _, s := range ew.rxC {
		s.Refill()
	}
	for _, s := range ew.rxP {
		s.Refill()
	}
}

// step processes one batch from each socket of each side and the
// packets other workers handed over; it returns the number of packets
// taken.
func (ew *engineWorker) step(refill bool) int {
	cs, ps := ew.cs, ew.ps
	cs.Complete()
	if ps != nil {
		ps.Complete()
	}
	if refill {
		ew.refill()
	}
	bs := ew.e.cfg.BatchSize
	total := 0
	for _, s := range ew.rxC {
		if n := s.Receive(ew.rx[:bs]); n > 0 {
			ew.c.cipherRX.Add(uint64(n))
			total += n
			k := ew.load(n, ew.rt.cVLAN, ew.ra, 0)
			ew.wakeHelpers(k)
			ew.w.Inbound(ew.pk[:k])
			for i := range k {
				ew.finish(&ew.pk[i], sa.In)
			}
			ew.flush()
		}
	}
	for _, s := range ew.rxP {
		if n := s.Receive(ew.rx[:bs]); n > 0 {
			ew.c.plainRX.Add(uint64(n))
			total += n
			ew.outbound(ew.load(n, ew.rt.pVLAN, nil, esp.MaxTailroom))
		}
	}
	if ew.srcN.Load() > 0 {
		k := ew.popSource(ew.rx[:bs])
		u := ew.rt.u
		for i, d := range ew.rx[:k] {
			buf, off := u.Frame(d)
			ew.pk[i] = sa.Packet{Buf: buf, Off: off, Len: int(d.Len), Meta: d.Addr &^ u.frameMask}
		}
		ew.outbound(k)
		total += k
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
		if cs.tx.prodPending() > 0 {
			cs.kick()
		}
		if ps != nil && ps.tx.prodPending() > 0 {
			ps.kick()
		}
	}
	return total
}

// l2Len returns the length of the Ethernet header (with up to two VLAN
// tags) of an IPv4 or IPv6 frame, or 0 if frame carries neither.
func l2Len(frame []byte) int {
	off := 12
	for range 3 {
		if len(frame) < off+2 {
			return 0
		}
		switch binary.BigEndian.Uint16(frame[off:]) {
		case 0x0800, 0x86dd:
			return off + 2
		case 0x8100, 0x88a8:
			off += 4
		default:
			return 0
		}
	}
	return 0
}

// vlanOK reports whether frame, whose Ethernet header (with its tags)
// is h bytes long, belongs to VLAN vlan (0: untagged): exactly one
// 802.1Q tag with that VLAN ID, or for 0 no tag or a priority tag (VLAN
// ID 0). Invariant: the engine processes no frame of another VLAN than
// its port's, so traffic of one VLAN never enters (or leaves) the
// tunnel of another.
func vlanOK(frame []byte, h int, vlan uint16) bool {
	switch h {
	case 14:
		return vlan == 0
	case 18:
		return binary.BigEndian.Uint16(frame[12:]) == 0x8100 && binary.BigEndian.Uint16(frame[14:])&0x0fff == vlan
	}
	return false
}

// load turns the n received descriptors into SA packets past their L2
// header; frames without IP, or not of the port's VLAN vlan, are freed.
// With a reassembler ra (ciphertext side), fragments go to it: their
// frames are freed, except the one that completes a packet, which
// receives the reassembled packet (see reassembled). With MultiBuffer,
// a packet in one frame with less than tail bytes of room after it is
// copied to a jumbo buffer (see spill); the plaintext side asks for
// esp.MaxTailroom. It returns the batch length.
func (ew *engineWorker) load(n int, vlan uint16, ra *reasm.Reassembler, tail int) int {
	u := ew.rt.u
	k := 0
	now, frags := int64(-1), false
	ew.jumbo.n = 0
	for i := 0; i < n; i++ {
		d := ew.rx[i]
		var buf []byte
		off, length, meta := 0, int(d.Len), d.Addr&^u.frameMask
		if d.Options&unix.XDP_PKT_CONTD != 0 {
			// A jumbo frame's chain (MultiBuffer): gathered, its frames
			// freed.
			j, used := ew.gather(i, n)
			i += used - 1
			if j < 0 {
				continue
			}
			buf, off, length, meta = ew.jumbo.buf[j], jumboHeadroom, ew.jumbo.len[j], jumboMeta|uint64(j)
			d = Desc{Addr: meta}
		} else {
			buf, off = u.Frame(d)
			if len(buf)-off-length < tail {
				if j := ew.spill(buf[off : off+length]); j >= 0 {
					ew.queueFree(d)
					buf, off, meta = ew.jumbo.buf[j], jumboHeadroom, jumboMeta|uint64(j)
					d = Desc{Addr: meta}
				}
			}
		}
		frame := buf[off : off+length]
		h := l2Len(frame)
		if h == 0 {
			ew.c.notIP.Add(1)
			ew.queueFree(d)
			continue
		}
		if !vlanOK(frame, h, vlan) {
			ew.c.vlanDrops.Add(1)
			ew.queueFree(d)
			continue
		}
		p := sa.Packet{Buf: buf, Off: off + h, Len: length - h, Meta: meta}
		if ra != nil {
			if now < 0 {
				now = int64(time.Since(ew.rt.epoch))
			}
			out, res := ra.Add(buf[p.Off:p.Off+p.Len], now)
			if res != reasm.NotFragment {
				frags = true
				if res != reasm.Complete || !ew.reassembled(&p, off, out) {
					ew.queueFree(d)
					continue
				}
			}
		}
		ew.pk[k] = p
		k++
	}
	if frags {
		ew.publishReasm()
	}
	return k
}

// reassembled puts the reassembled packet out (valid until the next Add)
// into the frame of p, the fragment that completed it, where the frame's
// data starts (off, with the headroom for the new Ethernet header before
// it), and points p at it. It reports false, counted, when the packet
// does not fit the frame.
func (ew *engineWorker) reassembled(p *sa.Packet, off int, out []byte) bool {
	if len(out) > len(p.Buf)-off {
		ew.c.reasmNoFrame.Add(1)
		return false
	}
	// copy is a memmove: out may lie in this frame (an IPv6 atomic
	// fragment, whose fragment header Add removed in place).
	p.Off, p.Len = off, copy(p.Buf[off:], out)
	return true
}

// publishReasm copies the reassembler's counters for Stats.
func (ew *engineWorker) publishReasm() {
	s := ew.ra.Stats()
	ew.raMu.Lock()
	ew.raSnap = s
	ew.raMu.Unlock()
}

// reasmStats returns the counters published by the worker.
func (ew *engineWorker) reasmStats() reasm.Stats {
	ew.raMu.Lock()
	defer ew.raMu.Unlock()
	return ew.raSnap
}

// outbound encrypts the k packets in ew.pk (plaintext RX or Send):
// gateway duties, the SA processor, then finish for each.
func (ew *engineWorker) outbound(k int) {
	k = ew.beforeOutbound(k)
	ew.wakeHelpers(k)
	ew.w.Outbound(ew.pk[:k])
	if ew.e.cfg.ClampMSS > 0 {
		for i := range k {
			p := &ew.pk[i]
			if ew.mssOld[i] != 0 && p.Verdict == sa.VerdictBypass {
				// Sent in clear, not through the tunnel: no clamping.
				inet.SetMSS(p.Buf[p.Off:p.Off+p.Len], int(ew.mssOld[i]))
				ew.c.mssClamped.Add(^uint64(0))
			}
		}
	}
	for i := range k {
		ew.finish(&ew.pk[i], sa.Out)
	}
	ew.flush()
}

// beforeOutbound does the gateway duties on the k packets of ew.pk before
// encryption: it decrements TTLs, taking expiring packets out of the
// batch (answered with time exceeded, or freed), and clamps MSS. It
// returns the new batch length.
func (ew *engineWorker) beforeOutbound(k int) int {
	cfg := &ew.e.cfg
	if cfg.ClampMSS == 0 && !cfg.DecrementTTL {
		return k
	}
	m := 0
	for i := range k {
		p := &ew.pk[i]
		if p.Off < 0 || p.Len < 0 || p.Off+p.Len > len(p.Buf) {
			// Left to the processor, which drops it as malformed.
			if m != i {
				ew.pk[m] = *p
				p.Buf = nil
			}
			ew.mssOld[m] = 0
			m++
			continue
		}
		data := p.Buf[p.Off : p.Off+p.Len]
		if cfg.DecrementTTL && inet.Version(data) != 0 && !inet.DecTTL(data) {
			ew.c.ttlExpired.Add(1)
			ew.icmpBack(p, false, 0)
			p.Buf = nil
			continue
		}
		old := uint16(0)
		if cfg.ClampMSS > 0 {
			old = ew.clampMSS(data)
		}
		if m != i {
			ew.pk[m] = *p
			p.Buf = nil
		}
		ew.mssOld[m] = old
		m++
	}
	return m
}

// clampMSS clamps the MSS of data (an IP packet) to ClampMSS (IPv6:
// ClampMSS-20) and returns the MSS it replaced, or 0.
func (ew *engineWorker) clampMSS(data []byte) uint16 {
	mss := ew.e.cfg.ClampMSS
	if len(data) > 0 && data[0]>>4 == 6 {
		mss -= 20
	}
	old, ok := inet.MSS(data)
	if !ok || old <= mss || !inet.SetMSS(data, mss) {
		return 0
	}
	ew.c.mssClamped.Add(1)
	return uint16(old)
}

// afterInbound does the gateway duties on a decrypted (or bypassed)
// packet: TTL, and for decrypted packets MSS. It returns false when the
// packet expired and must be dropped.
func (ew *engineWorker) afterInbound(p *sa.Packet) bool {
	cfg := &ew.e.cfg
	if p.Off < 0 || p.Len <= 0 || p.Off+p.Len > len(p.Buf) {
		return true
	}
	data := p.Buf[p.Off : p.Off+p.Len]
	if cfg.DecrementTTL && inet.Version(data) != 0 && !inet.DecTTL(data) {
		ew.c.ttlExpired.Add(1)
		return false
	}
	if cfg.ClampMSS > 0 && p.Verdict == sa.VerdictOK {
		ew.clampMSS(data)
	}
	return true
}

// icmpBack consumes the frame of p, an outbound packet the engine does
// not forward: with ICMPErrors it becomes an ICMP error to the packet's
// source (packet too big for mtu, or time exceeded), sent back towards
// the plaintext side; otherwise, or when no error may or can be sent,
// the frame is freed.
func (ew *engineWorker) icmpBack(p *sa.Packet, tooBig bool, mtu int) {
	d := Desc{Addr: p.Meta}
	cfg := &ew.e.cfg
	if !cfg.ICMPErrors {
		ew.queueFree(d)
		return
	}
	src := cfg.ICMPSource4
	if p.Off >= 0 && p.Off < len(p.Buf) && p.Buf[p.Off]>>4 == 6 {
		src = cfg.ICMPSource6
	}
	var off, n int
	err := inet.ErrSourceFamily
	if src.IsValid() {
		if tooBig {
			off, n, err = inet.PacketTooBig(p.Buf, p.Off, p.Len, src, mtu)
		} else {
			off, n, err = inet.TimeExceeded(p.Buf, p.Off, p.Len, src)
		}
	}
	if err != nil {
		ew.c.icmpNotSent.Add(1)
		ew.queueFree(d)
		return
	}
	if !ew.icmp.take(int64(time.Since(ew.rt.epoch))) {
		ew.c.icmpRateLimited.Add(1)
		ew.queueFree(d)
		return
	}
	p.Off, p.Len = off, n
	if ew.emit(p, d, true) {
		ew.c.icmpSent.Add(1)
	}
}

// fragmentOut fragments p, an outbound IPv4 packet without DF that the
// SA processor found larger than its SA's plaintext MTU (p.MTU), and
// encrypts the fragments: fragments 1.. go into fresh UMEM frames,
// fragment 0 stays in p's frame. It reports whether it consumed p; if
// not (DF, IPv6, options, too many fragments, no frames), the caller
// proceeds as without FragmentInner.
func (ew *engineWorker) fragmentOut(p *sa.Packet) bool {
	if p.Off < 0 || p.Len <= 0 || p.Off+p.Len > len(p.Buf) || p.Buf[p.Off]>>4 != 4 {
		return false
	}
	data := p.Buf[p.Off : p.Off+p.Len]
	count, step, err := inet.Fragments4(data, p.MTU)
	switch {
	case errors.Is(err, inet.ErrFragDF), errors.Is(err, inet.ErrMalformed):
		return false
	case err != nil || count > MaxFragments:
		ew.c.fragFailed.Add(1)
		return false
	}
	u := ew.rt.u
	if k := u.Alloc(ew.fragD[:count-1]); k < count-1 {
		u.Free(ew.fragD[:k])
		ew.c.fragFailed.Add(1)
		return false
	}
	// Room in the worker's TX and free queues for every fragment.
	if ew.nC+count > len(ew.txC) || ew.nP+count > len(ew.txP) || ew.nFree+count > len(ew.free) || ew.nDlv+count > len(ew.dlv) {
		ew.flush()
	}
	for i := count - 1; i >= 1; i-- {
		d := ew.fragD[i-1]
		buf, off := u.Frame(d)
		n := inet.WriteFragment4(buf[off:], data, i, step)
		ew.fragPk[i] = sa.Packet{Buf: buf, Off: off, Len: n, Meta: d.Addr &^ u.frameMask}
	}
	n := inet.WriteFragment4(data, data, 0, step)
	ew.fragPk[0] = sa.Packet{Buf: p.Buf, Off: p.Off, Len: n, Meta: p.Meta}
	ew.c.fragmented.Add(1)
	ew.c.fragments.Add(uint64(count))
	ew.fragDepth++
	ew.w.Outbound(ew.fragPk[:count])
	for i := range count {
		ew.finish(&ew.fragPk[i], sa.Out)
	}
	ew.fragDepth--
	return true
}

// finish acts on one processed packet: queue it for transmission (with
// a new Ethernet header) or delivery, pass it to Control, or free it.
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
		if !ew.emit(p, d, toPlain) || p.Verdict != sa.VerdictOK {
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

// emit queues the packet p in frame d towards the plaintext side
// (plaintext TX, or Deliver without a plaintext port) or the ciphertext
// side, with a new Ethernet header. It reports whether it queued the
// packet; if not, the frame is freed (NoRoom).
func (ew *engineWorker) emit(p *sa.Packet, d Desc, toPlain bool) bool {
	if toPlain && ew.ps == nil {
		ew.dlv[ew.nDlv] = p.Buf[p.Off : p.Off+p.Len]
		ew.dlvD[ew.nDlv] = d
		ew.nDlv++
		return true
	}
	vlan := ew.rt.cVLAN
	if toPlain {
		vlan = ew.rt.pVLAN
	}
	hl := 14
	if vlan != 0 {
		hl = 18
	}
	if p.Off < hl || p.Len < 1 || p.Off+p.Len > len(p.Buf) {
		ew.c.noRoom.Add(1)
		ew.queueFree(d)
		return false
	}
	et := uint16(0x0800)
	if p.Buf[p.Off]>>4 == 6 {
		et = 0x86dd
	}
	h := p.Buf[p.Off-hl : p.Off]
	if toPlain {
		copy(h[0:6], ew.rt.pNxt[:])
		copy(h[6:12], ew.rt.pMAC[:])
	} else {
		copy(h[0:6], ew.rt.cNext[:])
		copy(h[6:12], ew.rt.cMAC[:])
	}
	if vlan != 0 {
		binary.BigEndian.PutUint16(h[12:], 0x8100)
		binary.BigEndian.PutUint16(h[14:], vlan)
	}
	binary.BigEndian.PutUint16(h[hl-2:], et)
	if isJumbo(d.Addr) {
		return ew.emitJumbo(p.Buf[p.Off-hl:p.Off+p.Len], toPlain)
	}
	d.Addr += uint64(p.Off - hl)
	d.Len = uint32(p.Len + hl)
	if toPlain {
		ew.txP[ew.nP] = d
		ew.nP++
	} else {
		ew.txC[ew.nC] = d
		ew.nC++
	}
	return true
}

func (ew *engineWorker) queueFree(d Desc) {
	if isJumbo(d.Addr) {
		return // a jumbo buffer: reused with the next batch
	}
	ew.free[ew.nFree] = d
	ew.nFree++
}

// flush delivers, transmits and frees what finish queued.
func (ew *engineWorker) flush() {
	u := ew.rt.u
	if ew.nDlv > 0 {
		ew.e.cfg.Deliver(ew.dlv[:ew.nDlv])
		m := 0
		for i := range ew.nDlv {
			ew.dlv[i] = nil
			if !isJumbo(ew.dlvD[i].Addr) {
				ew.dlvD[m] = ew.dlvD[i]
				m++
			}
		}
		u.Free(ew.dlvD[:m])
		ew.nDlv = 0
	}
	if ew.nC > 0 {
		ew.transmit(ew.cs, ew.txC[:ew.nC])
		ew.nC = 0
	}
	if ew.nP > 0 {
		ew.transmit(ew.ps, ew.txP[:ew.nP])
		ew.nP = 0
	}
	if ew.nFree > 0 {
		u.Free(ew.free[:ew.nFree])
		ew.nFree = 0
	}
}

// transmit puts txs on s's TX ring, reaping completions and retrying a
// few times while it is full; what still does not fit is freed.
func (ew *engineWorker) transmit(s *Socket, txs []Desc) {
	for attempt := 0; len(txs) > 0 && attempt < 8; attempt++ {
		k := s.Transmit(txs)
		txs = txs[k:]
		if len(txs) > 0 {
			s.Complete()
		}
	}
	if len(txs) > 0 {
		ew.rt.u.Free(txs)
		ew.c.txFull.Add(uint64(len(txs)))
	}
}

// sleep blocks in poll(2) until a socket has packets, Stop wakes the
// eventfd, or a timeout passes (short while transmissions are pending
// or other workers handed packets over).
func (ew *engineWorker) sleep() {
	timeout := 100 * time.Millisecond
	if ew.cs.TXOutstanding() > 0 || (ew.ps != nil && ew.ps.TXOutstanding() > 0) ||
		ew.e.cfg.Processor.Concurrency() != sa.Shared {
		timeout = time.Millisecond
	}
	if ew.srcN.Load() > 0 || ew.w.Pending() > 0 {
		return
	}
	for i := range ew.pfd {
		ew.pfd[i].Revents = 0
	}
	ew.asleep.Store(true)
	pollRetry(ew.pfd, timeout)
	ew.asleep.Store(false)
	if ew.pfd[1].Revents&unix.POLLIN != 0 {
		var v [8]byte
		unix.Read(ew.wfd, v[:])
	}
	ew.c.sleeps.Add(1)
}

// wakeOne is the 8-byte counter increment written to an eventfd
// (little-endian 1; the engine runs on little-endian hosts, as the
// committed bpf object does).
var wakeOne = [8]byte{1}

// wakeFD adds one to the eventfd fd, waking a poll on it.
func wakeFD(fd int) { unix.Write(fd, wakeOne[:]) }

// wakeHelpers, in the Ordered mode, wakes the workers sleeping in
// poll(2) before this one sequences a batch of k packets, so that they
// take its AEAD jobs (Worker.Drain) instead of sleeping through them.
// It costs one load of each other worker's asleep flag per batch and a
// write to an eventfd only for a sleeper; nothing per packet.
func (ew *engineWorker) wakeHelpers(k int) {
	if k < 2 || !ew.ordered {
		return
	}
	for _, o := range ew.rt.workers {
		if o != ew && o.asleep.Load() {
			o.asleep.Store(false)
			wakeFD(o.wfd)
		}
	}
}

// drain processes what is left on the RX rings without refilling, then
// waits (bounded) for the TX rings to empty.
func (ew *engineWorker) drain() {
	deadline := time.Now().Add(drainTimeout)
	for time.Now().Before(deadline) {
		if ew.step(false) == 0 {
			break
		}
	}
	for _, s := range []*Socket{ew.cs, ew.ps} {
		if s == nil {
			continue
		}
		for s.TXOutstanding() > 0 && time.Now().Before(deadline) {
			s.Kick()
			if s.Complete() == 0 {
				time.Sleep(100 * time.Microsecond)
			}
		}
		s.Complete()
	}
}

// popSource takes up to len(ds) packets from the Send queue.
func (ew *engineWorker) popSource(ds []Desc) int {
	ew.srcMu.Lock()
	defer ew.srcMu.Unlock()
	n := min(len(ds), int(ew.srcN.Load()))
	for i := range n {
		ds[i] = ew.src[(ew.srcHead+i)%srcQueueLen]
	}
	ew.srcHead = (ew.srcHead + n) % srcQueueLen
	ew.srcN.Add(int32(-n))
	return n
}

// pushSource queues ds for the worker and returns how many fit.
func (ew *engineWorker) pushSource(ds []Desc) int {
	ew.srcMu.Lock()
	defer ew.srcMu.Unlock()
	q := int(ew.srcN.Load())
	n := min(len(ds), srcQueueLen-q)
	for i := range n {
		ew.src[(ew.srcHead+q+i)%srcQueueLen] = ds[i]
	}
	ew.srcN.Add(int32(n))
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
		q := ew.pushSource(ds[:m])
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
		one := uint64(1)
		unix.Write(ew.wfd, unsafe.Slice((*byte)(unsafe.Pointer(&one)), 8))
	}
	return sent, nil
}

// spreadWindowFloor is the replay window floor of an engine that deals
// one queue's packets over workers workers: twice how far one worker can
// fall behind the others, (workers-1) × (an RX ring + a batch).
func spreadWindowFloor(workers, batch int) int {
	return 2 * (workers - 1) * (DefaultRingSize + batch)
}

// Steering returns the steering the engine uses (EngineConfig.Steering
// as resolved from SteerAuto).
func (e *Engine) Steering() Steering { return e.cfg.Steering }
