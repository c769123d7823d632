//go:build linux

package xdp

import (
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
	u          *UMEM
	progC      *bpf.Program
	progP      *bpf.Program
	attC, attP *bpf.Attachment
	workers    []*engineWorker
	efd        int
	stop       atomic.Bool
	epoch      time.Time // for the ICMP token buckets
	// ports are the two sides: ports[sideCipher] the ciphertext
	// interface's sockets, ports[sidePlain] the plaintext interface's,
	// Deliver or EngineConfig.PlainPort. xc and xp are the AF_XDP ones
	// (xp nil without Plain), bound is how many ports Bind succeeded on.
	ports  [2]EnginePort
	xc, xp *xskPort
	bound  int
}

// The sides of an engine, indexes of engineRun.ports.
const (
	sideCipher = 0
	sidePlain  = 1
)

type engineWorker struct {
	e  *Engine
	rt *engineRun
	id int // engine (and sa.Processor) worker index
	q  int // the queue it transmits on
	w  *sa.Worker
	// ports are the sides (engineRun.ports), rounds[s] how many
	// Receives of side s a step makes (one per poll descriptor, at
	// least one), inflight[s] what side s had in flight when last idle.
	ports    [2]EnginePort
	rounds   [2]int
	inflight [2]int
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
	pk           [MaxBatch]sa.Packet
	// out[s] are the packets finish queued for side s, free the frames
	// it dropped; flush hands them over.
	out   [2][2 * MaxBatch]sa.Packet
	nOut  [2]int
	free  [2 * MaxBatch]Desc
	nFree int
	c     engCounters

	router // gateway duties' state (router_linux.go)

	// Packets from Send wait in src (a ring guarded by srcMu) for the
	// worker; wfd wakes it.
	srcMu   sync.Mutex
	src     [srcQueueLen]Desc
	srcHead int
	srcN    atomic.Int32
	wfd     int
	src2    [MaxBatch]Desc // what step takes from src
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
	pIdx := 0
	var pMAC [6]byte
	if cfg.Plain != nil {
		if pIdx, pMAC, err = resolve(cfg.Plain); err != nil {
			return err
		}
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
	rt.xc = newXSKPort(rt, cMAC, [6]byte(cfg.Cipher.NextHop), cfg.Cipher.VLAN)
	rt.ports[sideCipher] = rt.xc
	switch {
	case cfg.Plain != nil:
		rt.xp = newXSKPort(rt, pMAC, [6]byte(cfg.Plain.NextHop), cfg.Plain.VLAN)
		rt.ports[sidePlain] = rt.xp
	case cfg.PlainPort != nil:
		rt.ports[sidePlain] = cfg.PlainPort
	default:
		rt.ports[sidePlain] = &deliverPort{fn: cfg.Deliver}
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
			ordered: cfg.Processor.Concurrency() == sa.Ordered, ports: rt.ports,
			router: router{icmp: newTokenBucket(cfg.ICMPRate, cfg.ICMPBurst)}}
		rt.workers = append(rt.workers, ew)
		rt.xc.addWorker(&ew.c, &ew.c.cipherRX, cfg.MultiBuffer)
		if rt.xp != nil {
			rt.xp.addWorker(&ew.c, &ew.c.plainRX, cfg.MultiBuffer)
		}
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
			xq := rt.xc.q[ew.id]
			xq.rx = append(xq.rx, s)
			if q == ew.q {
				xq.tx = s
			}
			if cfg.Plain != nil {
				if s, err = open(rt.progP, pIdx, q, slot); err != nil {
					return err
				}
				xq := rt.xp.q[ew.id]
				xq.rx = append(xq.rx, s)
				if q == ew.q {
					xq.tx = s
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
	env := PortEnv{UMEM: rt.u, Workers: cfg.Workers, BatchSize: cfg.BatchSize,
		Headroom: esp.MaxHeadroom, Tailroom: esp.MaxTailroom, Wake: rt.wake}
	for _, p := range rt.ports {
		if err = p.Bind(env); err != nil {
			return err
		}
		rt.bound++
	}
	for _, ew := range rt.workers {
		ew.pfd = append(ew.pfd, unix.PollFd{Fd: int32(rt.efd), Events: unix.POLLIN}, unix.PollFd{Fd: int32(ew.wfd), Events: unix.POLLIN})
		for s, p := range rt.ports {
			fds := p.PollFDs(ew.id)
			ew.rounds[s] = max(1, len(fds))
			for _, fd := range fds {
				ew.pfd = append(ew.pfd, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
			}
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
	}
	// Every port Bind succeeded on is unbound; the AF_XDP ports close
	// their sockets also when Start failed before Bind.
	for i, p := range rt.ports {
		if i < rt.bound {
			add(p.Unbind())
		} else if x, ok := p.(*xskPort); ok && x != nil {
			add(x.Unbind())
		}
	}
	rt.bound = 0
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
	st := EngineStats{Processor: e.cfg.Processor.Stats(), Frames: rt.u.Counts()}
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
	for _, ew := range rt.workers {
		c := &ew.c
		st.Workers = append(st.Workers, EngineWorkerStats{
			Worker: ew.id, Queue: ew.q, CipherRX: c.cipherRX.Load(), Decrypted: c.decrypted.Load(),
			PlainRX: c.plainRX.Load(), Encrypted: c.encrypted.Load(), Bypassed: c.bypassed.Load(),
			Control: c.control.Load(), ControlDropped: c.controlDropped.Load(),
			SADrops: c.saDrops.Load(), MTUDrops: c.mtuDrops.Load(), NotIP: c.notIP.Load(), VLANDrops: c.vlanDrops.Load(),
			NoRoom: c.noRoom.Load(), TXFull: c.txFull.Load(), HandedOff: c.handedOff.Load(),
			Sleeps: c.sleeps.Load(), CPU: ew.cpuTime(), Sent: c.sent.Load(), SendFull: c.sendFull.Load(),
			MSSClamped: c.mssClamped.Load(), TTLExpired: c.ttlExpired.Load(), ICMPSent: c.icmpSent.Load(),
			ICMPRateLimited: c.icmpRateLimited.Load(), ICMPNotSent: c.icmpNotSent.Load(),
			Reassembly: ew.reasmStats(), ReasmNoFrame: c.reasmNoFrame.Load(),
			Fragmented: c.fragmented.Load(), Fragments: c.fragments.Load(), FragmentFailed: c.fragFailed.Load(),
			JumboRX: c.jumboRX.Load(), JumboTX: c.jumboTX.Load(), JumboDrops: c.jumboDrops.Load(),
		})
		for _, s := range rt.xc.q[ew.id].rx {
			ss, _ := s.Stats()
			st.CipherSockets = append(st.CipherSockets, ss)
		}
		if rt.xp != nil {
			for _, s := range rt.xp.q[ew.id].rx {
				ss, _ := s.Stats()
				st.PlainSockets = append(st.PlainSockets, ss)
			}
		}
	}
	if e.cfg.PlainPort != nil {
		st.PlainPort = e.cfg.PlainPort.Stats()
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
	for _, p := range ew.ports {
		p.Maintain(ew.id, false) // fill rings first
	}
	ready <- nil
	idle := 0
	for !ew.rt.stop.Load() {
		if ew.step() > 0 {
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

// step is one round of the worker loop: up to rounds[s] batches from
// each side's port (ciphertext first: decrypt; then plaintext: encrypt),
// one batch from the Send queue and what other workers handed over. It
// returns the number of packets taken. The loop knows the ports only
// through EnginePort.
func (ew *engineWorker) step() int {
	for _, p := range ew.ports {
		p.Maintain(ew.id, false)
	}
	bs := ew.e.cfg.BatchSize
	total := 0
	cp, pp := ew.ports[sideCipher], ew.ports[sidePlain]
	for range ew.rounds[sideCipher] {
		k := cp.Receive(ew.id, ew.pk[:bs])
		if k == 0 {
			break
		}
		total += k
		if ew.ra != nil {
			k = ew.reassemble(k)
		}
		ew.inbound(k)
	}
	for range ew.rounds[sidePlain] {
		k := pp.Receive(ew.id, ew.pk[:bs])
		if k == 0 {
			break
		}
		if pp != ew.rt.xp {
			ew.c.plainRX.Add(uint64(k)) // the AF_XDP port counts its frames
		}
		total += k
		ew.outbound(k)
	}
	if ew.srcN.Load() > 0 {
		k := ew.popSource(ew.src2[:bs])
		u := ew.rt.u
		for i, d := range ew.src2[:k] {
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
		for s, p := range ew.ports {
			ew.inflight[s] = p.Maintain(ew.id, true)
		}
	}
	return total
}

// inbound decrypts the k packets in ew.pk (ciphertext side).
func (ew *engineWorker) inbound(k int) {
	ew.wakeHelpers(k)
	ew.w.Inbound(ew.pk[:k])
	for i := range k {
		ew.finish(&ew.pk[i], sa.In)
	}
	ew.flush()
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
			for i := range ew.out[s][:n] {
				ew.out[s][i].Buf = nil
			}
			ew.nOut[s] = 0
		}
	}
	if ew.nFree > 0 {
		ew.rt.u.Free(ew.free[:ew.nFree])
		ew.nFree = 0
	}
}

// sleep blocks in poll(2) until a socket has packets, Stop wakes the
// eventfd, or a timeout passes (short while transmissions are pending
// or other workers handed packets over).
func (ew *engineWorker) sleep() {
	timeout := 100 * time.Millisecond
	if ew.inflight[sideCipher] > 0 || ew.inflight[sidePlain] > 0 ||
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
		for p.Maintain(ew.id, true) > 0 && time.Now().Before(deadline) {
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
