//go:build linux

package xdp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/bpf"
	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/esp/reasm"
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
	// send is the Send queues, every worker's third source.
	send *sendPort
}

// The sides of an engine, indexes of engineRun.ports.
const (
	sideCipher = 0
	sidePlain  = 1
)

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
	cIdx, cMAC := 0, [6]byte{}
	if cfg.CipherPort == nil {
		if cIdx, cMAC, err = resolve(&cfg.Cipher); err != nil {
			return err
		}
	}
	pIdx := 0
	var pMAC [6]byte
	if cfg.Plain != nil {
		if pIdx, pMAC, err = resolve(cfg.Plain); err != nil {
			return err
		}
	}
	if cfg.CipherPort == nil {
		if err = checkMTU(&cfg.Cipher, cIdx, false, cfg.UMEM, cfg.MultiBuffer); err != nil {
			return err
		}
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
	rt.send = newSendPort(rt.u, cfg.Workers)
	if cfg.CipherPort != nil {
		rt.ports[sideCipher] = cfg.CipherPort
	} else {
		rt.xc = newXSKPort(rt, cMAC, [6]byte(cfg.Cipher.NextHop), cfg.Cipher.VLAN)
		rt.ports[sideCipher] = rt.xc
	}
	switch {
	case cfg.Plain != nil:
		rt.xp = newXSKPort(rt, pMAC, [6]byte(cfg.Plain.NextHop), cfg.Plain.VLAN)
		rt.xp.tail = esp.MaxTailroom
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
	if cfg.CipherPort == nil {
		rt.progC, err = bpf.Load(bpf.Options{NATTPort: cfg.NATTPort, LocalAddrs: cfg.LocalAddrs, Queues: cfg.Queues,
			Unprotected: cfg.Unprotected, SteerFragments: cfg.Reassembly != nil,
			SocketsPerQueue: steer.SocketsPerQueue, SPIHash: steer.SPIHash, Spread: steer.Spread, SpreadChunk: steer.SpreadChunk})
		if err != nil {
			return err
		}
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
			ordered: cfg.Processor.Concurrency() == sa.Ordered, ports: rt.ports, sq: rt.send.q[w],
			router: router{icmp: newTokenBucket(cfg.ICMPRate, cfg.ICMPBurst)}}
		rt.workers = append(rt.workers, ew)
		if rt.xc != nil {
			rt.xc.addWorker(&ew.c, &ew.c.cipherRX, cfg.MultiBuffer)
		}
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
			if rt.xc != nil {
				s, err := open(rt.progC, cIdx, q, slot)
				if err != nil {
					return err
				}
				xq := rt.xc.q[ew.id]
				xq.rx = append(xq.rx, s)
				if q == ew.q {
					xq.tx = s
				}
			}
			if cfg.Plain != nil {
				s, err := open(rt.progP, pIdx, q, slot)
				if err != nil {
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
	if cfg.Steering == SteerSpread && cfg.Workers > 1 && rt.xc != nil {
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
			for _, fd := range fds {
				ew.pfd = append(ew.pfd, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
			}
			src := source{port: p, dir: sa.In, rounds: max(1, len(fds)), rx: &ew.c.cipherRX}
			if s == sidePlain {
				src.dir, src.rx = sa.Out, &ew.c.plainRX
			}
			if x, ok := p.(*xskPort); ok && x != nil {
				src.rx = nil // it counts its frames, chains and drops included
			}
			ew.sources = append(ew.sources, src)
		}
		// The Send queue: Send counts its packets (Sent).
		ew.sources = append(ew.sources, source{port: rt.send, dir: sa.Out, rounds: 1})
	}
	if rt.progC != nil {
		if rt.attC, err = rt.progC.Attach(cIdx, cfg.Attach); err != nil {
			return err
		}
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
			Sleeps: c.sleeps.Load(), Batches: c.batches.Load(), SendWakes: c.sendWakes.Load(), CPU: ew.cpuTime(), Sent: c.sent.Load(), SendFull: c.sendFull.Load(),
			MSSClamped: c.mssClamped.Load(), TTLExpired: c.ttlExpired.Load(), ICMPSent: c.icmpSent.Load(),
			ICMPRateLimited: c.icmpRateLimited.Load(), ICMPNotSent: c.icmpNotSent.Load(),
			Reassembly: ew.reasmStats(), ReasmNoFrame: c.reasmNoFrame.Load(),
			Fragmented: c.fragmented.Load(), Fragments: c.fragments.Load(), FragmentFailed: c.fragFailed.Load(),
			JumboRX: c.jumboRX.Load(), JumboTX: c.jumboTX.Load(), JumboDrops: c.jumboDrops.Load(),
		}
		if rt.xc != nil {
			for _, s := range rt.xc.q[ew.id].rx {
				ss, _ := s.Stats()
				st.CipherSockets = append(st.CipherSockets, ss)
			}
		}
		if rt.xp != nil {
			for _, s := range rt.xp.q[ew.id].rx {
				ss, _ := s.Stats()
				st.PlainSockets = append(st.PlainSockets, ss)
			}
		}
	}
	st.Processor, st.Frames = e.cfg.Processor.Stats(), rt.u.Counts()
	if rt.progC != nil {
		st.CipherProgram, _ = rt.progC.Stats()
	}
	if rt.progC != nil && !e.cfg.Unprotected.Empty() {
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
	if e.cfg.CipherPort != nil {
		cs := e.cfg.CipherPort.Stats()
		st.CipherPort = &cs
	}
	if e.cfg.PlainPort != nil {
		ps := e.cfg.PlainPort.Stats()
		st.PlainPort = &ps
	}
	return st
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
