package harness

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/sa"
)

// Kinds of the shard suite.
const (
	KindShard        = "shard"         // one cell of the sharding matrix
	KindShardReorder = "shard-reorder" // replay drops vs reordering and window
	KindShardModel   = "shard-model"   // scaling projection fitted to KindShard
)

// Traffic distributions over a cell's SAs (or PerCPU tunnels).
const (
	DistUniform  = "uniform"  // every SA equally likely
	DistElephant = "elephant" // ElephantShare of the packets on SA 0, the rest uniform over the others
	DistZipf     = "zipf"     // P(SA k) ∝ (1+k)^-ZipfS
)

// Ingress: which worker's input (NIC queue) a packet arrives on.
const (
	IngressSpray = "spray" // packet k on worker k mod workers, whatever its SA (RSS without SPI steering)
	IngressSteer = "steer" // on the worker owning its SA (SPI steering: XDP program or RSS on the SPI)
)

// ElephantShare is the elephant SA's fraction of the packets, and ZipfS
// the exponent of the Zipf distribution.
const (
	ElephantShare = 0.9
	ZipfS         = 1.1
)

// ShardSpec is one cell of the sharding matrix.
type ShardSpec struct {
	Mode    sa.Concurrency
	Dir     sa.Direction // sa.In: decrypt (inbound); sa.Out: encrypt
	Workers int
	// SAs is the number of SAs, in PerCPU mode the number of tunnels,
	// each with one SA per worker (RFC 9611).
	SAs     int
	Dist    string
	Ingress string
	Size    int // inner (plaintext) packet bytes
	// Window is the replay window of the inbound SAs (0: the default).
	Window int
}

func (s ShardSpec) op() string {
	if s.Dir == sa.Out {
		return "encrypt"
	}
	return "decrypt"
}

// Label is a short description for progress lines.
func (s ShardSpec) Label() string {
	return fmt.Sprintf("shard %s %s %d workers %d SAs %s %s %d B", s.op(), s.Mode, s.Workers, s.SAs, s.Dist, s.Ingress, s.Size)
}

// shardSPI is the SPI of SA i of a rig.
func shardSPI(i int) uint32 { return 0x10000 + uint32(i) }

// flowWeights returns the probability of each of n flows under dist.
func flowWeights(dist string, n int) ([]float64, error) {
	p := make([]float64, n)
	switch dist {
	case DistUniform:
		for i := range p {
			p[i] = 1 / float64(n)
		}
	case DistElephant:
		if n == 1 {
			p[0] = 1
			break
		}
		p[0] = ElephantShare
		for i := 1; i < n; i++ {
			p[i] = (1 - ElephantShare) / float64(n-1)
		}
	case DistZipf:
		sum := 0.0
		for i := range p {
			p[i] = math.Pow(1+float64(i), -ZipfS)
			sum += p[i]
		}
		for i := range p {
			p[i] /= sum
		}
	default:
		return nil, fmt.Errorf("harness: unknown distribution %q", dist)
	}
	return p, nil
}

// flowPicker draws flows under a distribution.
type flowPicker struct {
	dist string
	n    int
	rng  *rand.Rand
	zipf *rand.Zipf
}

func newFlowPicker(dist string, n int, seed uint64) (*flowPicker, error) {
	if _, err := flowWeights(dist, 1); err != nil {
		return nil, err
	}
	p := &flowPicker{dist: dist, n: n, rng: rand.New(rand.NewPCG(seed, 0x5a4d))}
	if dist == DistZipf && n > 1 {
		p.zipf = rand.NewZipf(p.rng, ZipfS, 1, uint64(n-1))
	}
	return p, nil
}

func (p *flowPicker) next() int {
	if p.n == 1 {
		return 0
	}
	switch p.dist {
	case DistElephant:
		if p.rng.Float64() < ElephantShare {
			return 0
		}
		return 1 + p.rng.IntN(p.n-1)
	case DistZipf:
		return int(p.zipf.Uint64())
	}
	return p.rng.IntN(p.n)
}

// shardRig holds the SAs of a cell: the measured Processor and, inbound,
// a sender-side esp.Cipher and next sequence number per SA.
type shardRig struct {
	mode    sa.Concurrency
	dir     sa.Direction
	nw      int
	flows   int            // SAs, or PerCPU tunnels
	perFlow int            // SAs per flow: nw in PerCPU mode, else 1
	roundN  int            // packets per worker and round (spray)
	ws      []*shardWorker // the workers of the cell being run
	// handoffs: in the cell being run a worker may get packets or jobs
	// from another (Sharded; PerCPU with sprayed inbound; Ordered's
	// helpers), so each drains until all are done. Otherwise (Shared;
	// PerCPU outbound or steered, where every packet is its receiver's)
	// a worker stops when its input is done, as a Shared one does: the
	// round's barrier is the harness's, and its wait would be CPU time no
	// engine worker spends.
	handoffs bool
	// receiving is how many workers get input in the cell being run
	// (receivers), fixed for the cell.
	receiving int
	proc      *sa.Processor
	sad       *sa.SAD
	sas       []*sa.SA
	owner     []int // per SA: owner worker (0 with one worker or Shared)
	seal      []*esp.Cipher
	seq       []uint64
	tuns      []*sa.Tunnel // outbound: per flow
	inner     []byte
	size      int
	outer     esp.Outer
}

// roundLen is the number of packets each worker that gets input gets per
// round for inner packets of n bytes: about 1 MB of input, 256 to 4096
// packets.
func roundLen(n int) int { return max(256, min(4096, (1<<20)/(n+100))) }

// newShardRig builds the SAs of a cell (any Dist and Ingress can then be
// run on it).
// roundN is the packets per worker and round (0: roundLen(size)).
func newShardRig(mode sa.Concurrency, dir sa.Direction, nw, flows, size, window, roundN int, seed uint64) (*shardRig, error) {
	if nw < 1 || flows < 1 {
		return nil, fmt.Errorf("harness: shard rig with %d workers and %d SAs", nw, flows)
	}
	if roundN <= 0 {
		roundN = roundLen(size)
	}
	r := &shardRig{mode: mode, dir: dir, nw: nw, flows: flows, perFlow: 1, roundN: roundN,
		sad: sa.NewSAD(sa.SADOptions{}), inner: innerPacket(size, seed), size: max(size, 28),
		outer: esp.Outer{Src: gwA, Dst: gwB}}
	if mode == sa.PerCPU {
		r.perFlow = nw
	}
	var err error
	// Each ring between two workers carries at most one round's input of
	// the producer, and every round ends with the rings drained, so this
	// length never overflows: DropQueueFull would be a harness bug.
	r.proc, err = sa.NewProcessor(sa.ProcessorOptions{SAD: r.sad, Workers: nw, Concurrency: mode, QueueLen: r.roundN})
	if err != nil {
		return nil, err
	}
	if dir == sa.In && nw > 1 {
		// As the xdp engine does when it deals one queue over its
		// workers (spreadWindowFloor): the window floor is twice how far
		// one worker can fall behind the others, here a round's input
		// and a batch per other worker, so that an in-order stream dealt
		// to the workers loses nothing from its first round on (without
		// it the first round of a fresh rig dropped a few packets while
		// the window grew from 1024). Steered cells have no such
		// displacement; the floor costs them nothing.
		r.proc.SetReplayWindowFloor(2 * (nw - 1) * (r.roundN + shardBatch))
	}
	t := esp.MustParseTransform("aes128gcm16")
	n := flows * r.perFlow
	r.sas = make([]*sa.SA, n)
	r.owner = make([]int, n)
	if dir == sa.In {
		r.seal = make([]*esp.Cipher, n)
		r.seq = make([]uint64, n)
	}
	for i := range n {
		spi := shardSPI(i)
		key, auth := keys(t, seed+uint64(spi))
		c := sa.Config{Name: "shard", SPI: spi, Direction: dir, Mode: esp.Tunnel, Local: gwA, Remote: gwB,
			Transform: t, Key: key, AuthKey: auth, ReplayWindow: window}
		if dir == sa.In {
			c.Local, c.Remote = gwB, gwA
		}
		if mode == sa.PerCPU {
			c.Worker, c.PinWorker = i%nw, true
		}
		s, err := sa.New(c)
		if err != nil {
			return nil, err
		}
		if err := r.sad.Add(s); err != nil {
			return nil, err
		}
		r.sas[i] = s
		if mode != sa.Shared {
			r.owner[i] = r.proc.OwnerOfSA(s)
		}
		if dir == sa.In {
			if r.seal[i], err = esp.New(esp.Config{Transform: t, Key: key, AuthKey: auth}); err != nil {
				return nil, err
			}
		}
	}
	if dir == sa.Out {
		for f := range flows {
			tun := sa.NewTunnel(fmt.Sprint("shard", f))
			tun.SetOutbound(r.sas[f*r.perFlow : (f+1)*r.perFlow]...)
			r.tuns = append(r.tuns, tun)
		}
	}
	return r, nil
}

// close wipes the rig's keys.
func (r *shardRig) close() {
	for _, s := range r.sas {
		r.sad.DeleteSA(s)
	}
	for _, c := range r.seal {
		c.Wipe()
	}
}

// slot is one planned packet of a worker's round: its flow, SA and
// sequence number.
type slot struct {
	flow, sa int
	seq      uint64
}

// shardWorker is the state of one worker goroutine.
type shardWorker struct {
	plan    []slot
	bufs    [][]byte
	in      []sa.Packet
	drain   []sa.Packet
	scratch *esp.Scratch
	err     error
	finish  time.Time
	// tallies since the warm-up round
	ok, handed, other uint64
	reordered         uint64   // OK packets emitted after a higher sequence number of their SA
	last              []uint64 // per SA: highest sequence number this worker emitted
	roundCPU          int64    // thread CPU time in process in the last round, ns (-1: unknown)
	// sleptCPU is the thread's CPU time in process before its last sleep
	// in idle (-1: none), and wokeAt when that sleep ended: a worker
	// woken after the round's last packet was done (to learn that the
	// round is over) is charged only its CPU time up to that sleep.
	sleptCPU int64
	wokeAt   time.Time
	// lastCPU is the thread's CPU time in process at its last work
	// (finish), -1 if unknown.
	lastCPU int64
	// dozing: the worker has slept in idle since it last found work, so
	// a round that gives it no input starts with it asleep (process).
	dozing bool
	drops  [sa.NumDropReasons]uint64
	// asleep is 1 while the worker sleeps in idle (a futex word), on a
	// line of its own: other workers read it on every batch.
	_      [128]byte
	asleep atomic.Uint32
	_      [128 - 4]byte
}

func (sw *shardWorker) reset() {
	sw.ok, sw.handed, sw.other, sw.reordered = 0, 0, 0, 0
	sw.drops = [sa.NumDropReasons]uint64{}
}

// tally counts the verdicts of a processed batch, in the order the
// worker emits them (its batch, then what it drained), and the OK
// packets that leave after a higher sequence number of their SA: the
// reordering at this worker's egress (one TX queue). Inbound the
// sequence number rides in Packet.Meta (build); outbound it is read from
// the ESP header.
func (sw *shardWorker) tally(b []sa.Packet) {
	for i := range b {
		switch b[i].Verdict {
		case sa.VerdictOK:
			sw.ok++
			var k int
			var seq uint64
			if b[i].Dir == sa.Out {
				d := b[i].Data()
				if len(d) < 28 {
					continue
				}
				k = int(binary.BigEndian.Uint32(d[20:]) - shardSPI(0))
				seq = uint64(binary.BigEndian.Uint32(d[24:]))
			} else {
				k, seq = int(b[i].Meta>>40), b[i].Meta&(1<<40-1)
			}
			if k < 0 || k >= len(sw.last) {
				continue
			}
			if seq < sw.last[k] {
				sw.reordered++
			} else {
				sw.last[k] = seq
			}
		case sa.VerdictHandedOff:
			sw.handed++
		case sa.VerdictDrop:
			sw.drops[b[i].Reason]++
		default:
			sw.other++
		}
	}
}

// planRound distributes one round of packets to the workers' plans:
// flows drawn by pick, the SA within a PerCPU tunnel drawn uniformly (the
// peer's sending CPU), inbound sequence numbers in order of the stream,
// the input worker by ingress.
func (r *shardRig) planRound(ws []*shardWorker, pick *flowPicker, ingress string) {
	for _, w := range ws {
		w.plan = w.plan[:0]
	}
	// About roundN packets per worker that gets input: spraying, every
	// worker; steered, the owners of the SAs. A queue's burst does not
	// grow with the workers of the gateway, and a steered SA's
	// sequencer handed twice a 1-worker round's input at 2 workers ran
	// out of its L2 where the 1-worker cell did not (7-17 % slower,
	// nothing shared).
	total := r.roundN * r.receiving
	for k := range total {
		f := pick.next()
		i := f
		if r.perFlow > 1 {
			i = f*r.perFlow + pick.rng.IntN(r.perFlow)
		}
		s := slot{flow: f, sa: i}
		if r.seq != nil {
			r.seq[i]++
			s.seq = r.seq[i]
		}
		w := k % r.nw
		if ingress == IngressSteer {
			w = r.owner[i]
		}
		ws[w].plan = append(ws[w].plan, s)
	}
}

// receivers is how many workers get input under ingress: all when
// spraying, the distinct owners of the SAs when steering.
func (r *shardRig) receivers(ingress string) int {
	if ingress != IngressSteer {
		return r.nw
	}
	seen := make([]bool, r.nw)
	n := 0
	for _, o := range r.owner {
		if !seen[o] {
			seen[o] = true
			n++
		}
	}
	return max(n, 1)
}

// build turns the worker's plan into packets: ESP packets sealed by the
// sender cipher (inbound) or inner packets bound to the flow's tunnel
// (outbound). Not timed.
func (r *shardRig) build(sw *shardWorker) error {
	bl := esp.MaxHeadroom + r.size + esp.MaxTailroom
	for len(sw.bufs) < len(sw.plan) {
		sw.bufs = append(sw.bufs, make([]byte, bl))
	}
	if cap(sw.in) < len(sw.plan) {
		sw.in = make([]sa.Packet, len(sw.plan))
	}
	sw.in = sw.in[:len(sw.plan)]
	for j, s := range sw.plan {
		buf := sw.bufs[j][:bl]
		copy(buf[esp.MaxHeadroom:], r.inner)
		if r.dir == sa.Out {
			sw.in[j].Reset(buf, esp.MaxHeadroom, r.size)
			sw.in[j].Tunnel = r.tuns[s.flow]
			continue
		}
		res, err := r.seal[s.sa].EncapTunnel(sw.scratch, buf, esp.MaxHeadroom, r.size, shardSPI(s.sa), s.seq, &r.outer)
		if err != nil {
			return err
		}
		sw.in[j].Reset(buf, cap(buf)-cap(res), len(res))
		sw.in[j].Meta = uint64(s.sa)<<40 | s.seq // for tally's reordering count
	}
	return nil
}

// process runs the worker's input through its Worker in batches and,
// when other workers may hand it work (shardRig.handoffs), drains what
// they handed to it (or helps with their AEAD jobs) after every batch
// and then until every worker has finished its input and its queues are
// empty. Timed.
//
// A worker without input of its own waits as an xdp engine worker does:
// it polls (Drain) for idleSpin, then sleeps (idle) until another
// worker wakes it - an Ordered sequencer before a batch whose jobs it
// publishes (Worker.Publishes), a Sharded worker that handed packets
// over, or the last worker to finish - or 1 ms passes. Its thread's CPU
// time counts what the engine's would: the polls, not the sleep.
func (r *shardRig) process(sw *shardWorker, w *sa.Worker, done *atomic.Int32) {
	cpu0, cpuOK := threadCPU()
	cpuSince := func() int64 { // the thread's CPU time in process, -1 if unknown
		if c, ok := threadCPU(); ok && cpuOK {
			return c - cpu0
		}
		return -1
	}
	sw.sleptCPU, sw.wokeAt = -1, time.Time{}
	drains := r.handoffs
	ordered := r.mode == sa.Ordered && r.nw > 1
	for i := 0; i < len(sw.in); i += shardBatch {
		b := sw.in[i:min(i+shardBatch, len(sw.in))]
		if ordered && len(b) > 1 && w.Publishes(r.dir) {
			r.wakeOthers(sw)
		}
		handed := sw.handed
		if r.dir == sa.In {
			w.Inbound(b)
		} else {
			w.Outbound(b)
		}
		sw.tally(b)
		if sw.handed != handed {
			r.wakeOthers(sw)
		}
		if drains {
			n := w.Drain(sw.drain)
			sw.tally(sw.drain[:n])
		}
	}
	// The round's span ends with the last packet done (its worker's
	// lastWork), not when the last worker noticed that all are done: a
	// helper asleep at the end of the round takes a wake-up (tens of
	// microseconds on a VM) to notice, which is no packet's time - in a
	// stream there is no round end to wait for. run charges the CPU time
	// within the span (lastCPU, sleptCPU).
	lastWork := time.Now()
	sw.lastCPU = cpuSince()
	if drains {
		done.Add(1)
		r.wakeOthers(sw)
		var idleFrom time.Time
		// Asleep since before the round began, with nothing done: in a
		// stream it would still be asleep, so it sleeps at once.
		doze := len(sw.in) == 0 && sw.dozing
		sw.dozing = false
	poll:
		for polls := 0; ; {
			all := done.Load() == int32(r.nw) // no more hand-offs once all are done
			switch {
			case w.Pending() > 0: // as the engine: Drain only what Pending announced
				n := w.Drain(sw.drain)
				sw.tally(sw.drain[:n])
				polls = 0
				lastWork, sw.lastCPU = time.Now(), cpuSince()
				sw.dozing = false
			case all:
				break poll
			default:
				if polls++; polls == 1 {
					idleFrom = time.Now()
				}
				if doze || polls%64 == 0 && time.Since(idleFrom) > idleSpin {
					sw.sleptCPU = cpuSince()
					r.idle(sw, w, done)
					sw.wokeAt = time.Now()
					sw.dozing, doze = true, false // until it finds work
					polls = 0
				}
			}
		}
	}
	sw.roundCPU = cpuSince()
	sw.finish = lastWork
}

// shardBatch is the packets per Inbound/Outbound call of a shard cell:
// the xdp engine's default batch (xdp.DefaultBatch), what a worker takes
// from its RX ring at a time under load.
const shardBatch = 64

// idleSpin is how long a worker without input polls before it sleeps:
// about what the xdp engine's workers spend on their default
// EngineConfig.IdleSpins empty polls of their rings (a Drain alone is
// much cheaper than an engine poll, so the harness counts time, not
// polls).
const idleSpin = 20 * time.Microsecond

// idleSleep bounds a sleep in idle, as the xdp engine's poll timeout in
// the modes in which other workers bring work.
const idleSleep = time.Millisecond

// idle puts sw's thread to sleep until wakeOthers or idleSleep. The
// flag is set before the last look for work, and wakers read it only
// after making the work visible, so a wake-up is not lost (at worst the
// sleep ends at once).
func (r *shardRig) idle(sw *shardWorker, w *sa.Worker, done *atomic.Int32) {
	sw.asleep.Store(1)
	if done.Load() == int32(r.nw) || w.Pending() > 0 {
		sw.asleep.Store(0)
		return
	}
	sleepWhile(&sw.asleep, 1, idleSleep)
	sw.asleep.Store(0)
}

// wakeOthers wakes the workers other than sw sleeping in idle.
func (r *shardRig) wakeOthers(sw *shardWorker) {
	for _, o := range r.ws {
		if o != sw && o.asleep.Load() == 1 && o.asleep.CompareAndSwap(1, 0) {
			wakeWord(&o.asleep)
		}
	}
}

// barrier is a reusable spinning barrier for n goroutines. A waiter
// spins, then yields its CPU with yieldThread, never through the Go
// scheduler: the workers that are still processing are being timed, and
// a waiter's runtime.Gosched would wake threads onto their CPUs.
type barrier struct {
	n     int32
	count atomic.Int32
	gen   atomic.Uint32
}

// wait blocks until all n goroutines arrived; the last one runs last
// (if not nil) before releasing the others.
func (b *barrier) wait(last func()) {
	g := b.gen.Load()
	if b.count.Add(1) == b.n {
		b.count.Store(0)
		if last != nil {
			last()
		}
		b.gen.Add(1)
		return
	}
	for spins := 0; b.gen.Load() == g; spins++ {
		if spins >= 200 {
			yieldThread()
		}
	}
}

// shardOutcome sums a cell's workers after the warm-up round.
type shardOutcome struct {
	elapsed           time.Duration // timed span of the rounds, summed
	rounds            int
	ok, handed, other uint64
	reordered         uint64
	drops             [sa.NumDropReasons]uint64
	offered           uint64 // packets given to the workers
	perWorker         []uint64
	rates             []float64 // per round: packets per second
	cpuRates          []float64 // per round: packets per CPU-second of the workers
	busy              []float64 // per round: workers' CPU time / (time × workers)
}

func (o *shardOutcome) processed() uint64 {
	n := o.ok + o.other
	for _, d := range o.drops {
		n += d
	}
	return n
}

// run measures a cell on the rig: rounds of planning (worker 0),
// building (every worker its own input, in parallel) and processing
// (timed: from the release of all workers to the last one finishing),
// until budget of timed processing after one warm-up round.
func (r *shardRig) run(dist, ingress string, budget time.Duration, seed uint64) (shardOutcome, error) {
	var out shardOutcome
	pick, err := newFlowPicker(dist, r.flows, seed)
	if err != nil {
		return out, err
	}
	ws := make([]*shardWorker, r.nw)
	for i := range ws {
		ws[i] = &shardWorker{drain: make([]sa.Packet, shardBatch), scratch: esp.NewScratch(), last: make([]uint64, len(r.sas))}
	}
	out.perWorker = make([]uint64, r.nw)
	r.ws = ws
	r.handoffs = r.nw > 1 && (r.mode == sa.Sharded || r.mode == sa.Ordered ||
		(r.mode == sa.PerCPU && r.dir == sa.In && ingress != IngressSteer))
	r.receiving = r.receivers(ingress)
	bar := &barrier{n: int32(r.nw)}
	var (
		stop  atomic.Bool
		done  atomic.Int32
		start time.Time
		wall  = time.Now()
		wg    sync.WaitGroup
	)
	const minRounds = 5
	for w := range r.nw {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			unpin := pinThread(w)
			defer func() {
				if unpin() {
					runtime.UnlockOSThread()
				} // else the pinned thread exits with the goroutine
			}()
			sw, pw := ws[w], r.proc.Worker(w)
			for round := 0; ; round++ {
				bar.wait(nil) // the previous round is over everywhere
				if w == 0 {
					if round > 1 { // round 0 warms up
						last := start
						for _, x := range ws {
							if x.finish.After(last) {
								last = x.finish
							}
						}
						el := last.Sub(start)
						out.elapsed += el
						out.rounds++
						n := 0
						for i, x := range ws {
							out.perWorker[i] += uint64(len(x.in))
							n += len(x.in)
						}
						out.offered += uint64(n)
						if el > 0 {
							out.rates = append(out.rates, float64(n)/el.Seconds())
						}
						// The workers' CPU time within the timed span: the
						// worker that did the round's last packet is
						// charged up to it (not for telling the others
						// that it is done), and a worker that slept
						// through the span's end and woke only to learn
						// that the round was over up to that sleep (in a
						// stream it would sleep on).
						var cpu int64
						for _, x := range ws {
							if x.roundCPU < 0 {
								cpu = -1
								break
							}
							c := x.roundCPU
							switch {
							case x.finish.Equal(last) && x.lastCPU >= 0:
								c = x.lastCPU // the round's last packet: its end
							case x.sleptCPU >= 0 && x.wokeAt.After(last):
								c = x.sleptCPU
							}
							cpu += c
						}
						if cpu > 0 && el > 0 {
							out.cpuRates = append(out.cpuRates, float64(n)/(float64(cpu)/1e9))
							out.busy = append(out.busy, float64(cpu)/(float64(el.Nanoseconds())*float64(r.nw)))
						}
					}
					if round == 1 {
						for _, x := range ws {
							x.reset()
						}
					}
					failed := false
					for _, x := range ws {
						failed = failed || x.err != nil
					}
					over := out.elapsed >= budget && out.rounds >= minRounds
					if failed || over || time.Since(wall) > 20*budget+5*time.Second {
						stop.Store(true)
					} else {
						r.planRound(ws, pick, ingress)
						done.Store(0)
					}
				}
				bar.wait(nil) // the plan is ready
				if stop.Load() {
					return
				}
				if err := r.build(sw); err != nil && sw.err == nil {
					sw.err = err
				}
				bar.wait(func() { start = time.Now() })
				r.process(sw, pw, &done)
			}
		}()
	}
	wg.Wait()
	for _, x := range ws {
		if x.err != nil {
			return out, x.err
		}
		out.ok += x.ok
		out.reordered += x.reordered
		out.handed += x.handed
		out.other += x.other
		for i, d := range x.drops {
			out.drops[i] += d
		}
	}
	if out.rounds == 0 {
		return out, fmt.Errorf("harness: no timed round")
	}
	// Each tally covers the warm-up round's successor onwards, as does offered.
	if p := out.processed(); p != out.offered {
		return out, fmt.Errorf("harness: %d packets offered, %d came out (handed off %d)", out.offered, p, out.handed)
	}
	return out, nil
}

// measure runs spec (whose Mode, Dir, Workers, SAs and Size must be the
// rig's) on r for budget of timed rounds.
//
// Mpps counts every packet that came out (OK or dropped) per second of
// a round's processing, median over rounds (a round in which another
// process took a CPU is an outlier the median ignores); Mpps-mean is
// over the whole timed span. Gbps counts the inner (plaintext) bits of
// the OK ones at the median rate. handed-off% is the fraction of the
// offered packets that went through another worker's queue.
func (r *shardRig) measure(spec ShardSpec, budget time.Duration, seed uint64) (Result, error) {
	res := Result{Suite: "shard", Kind: KindShard, Transform: "aes128gcm16", Op: spec.op(), Size: r.size, SAs: spec.SAs,
		Workers: spec.Workers, Mode: spec.Mode.String(), Dist: spec.Dist, Ingress: spec.Ingress, Window: spec.Window}
	o, err := r.run(spec.Dist, spec.Ingress, budget, seed)
	if err != nil {
		return res, err
	}
	pk := float64(o.processed())
	sec := o.elapsed.Seconds()
	mpps := median(o.rates) / 1e6
	res.add("Mpps", mpps, UnitMpps)
	res.add("Gbps", mpps*float64(o.ok)/pk*float64(r.size)*8/1e3, UnitGbps)
	res.add("ns/pkt", 1e3/mpps, UnitNs)
	res.add("Mpps-mean", pk/sec/1e6, UnitMpps)
	if len(o.cpuRates) > 0 {
		// Per second of CPU the workers' threads actually got within the
		// timed span (run: including polling for other workers'
		// hand-offs), median over rounds: shows the cost of sharing even
		// when the machine has fewer free CPUs than workers.
		cr := median(o.cpuRates) / 1e6
		res.add("Mpps/cpu", cr, UnitMpps)
		res.add("cpu-ns/pkt", 1e3/cr, UnitNs)
		res.add("cpu-busy%", 100*median(o.busy), UnitPercent)
	}
	res.add("handed-off%", 100*float64(o.handed)/float64(o.offered), UnitPercent)
	if o.ok > 0 {
		// Per worker's output (one TX queue): OK packets that left
		// after a higher sequence number of their SA.
		res.add("reordered%", 100*float64(o.reordered)/float64(o.ok), UnitPercent)
	}
	if sas := r.sas; len(sas) > 0 && r.dir == sa.In {
		res.add("replay-window", float64(sas[0].Stats().ReplayWindow), UnitPackets)
	}
	busiest := uint64(0)
	for _, n := range o.perWorker {
		busiest = max(busiest, n)
	}
	res.add("busiest-input%", 100*float64(busiest)/float64(o.offered), UnitPercent)
	var drops uint64
	for reason, d := range o.drops {
		if d > 0 {
			res.add("drop-"+sa.DropReason(reason).String(), float64(d), UnitPackets)
			drops += d
		}
	}
	res.add("drops", float64(drops), UnitPackets)
	res.add("drop%", 100*float64(drops)/pk, UnitPercent)
	if o.other > 0 {
		res.add("other-verdicts", float64(o.other), UnitPackets)
	}
	res.add("packets", pk, UnitPackets)
	res.add("rounds", float64(o.rounds), "rounds")
	return res, nil
}

// ShardOptions selects the shard suite's matrix.
type ShardOptions struct {
	Workers []int
	SAs     []int
	Sizes   []int
	Dists   []string // default uniform, elephant, zipf
	// OutSAs are the SA counts of the outbound cells (default: those of
	// SAs up to 1000).
	OutSAs []int
	Budget time.Duration
	Seed   uint64
}

// ShardSpecs lists the cells of the matrix, grouped so that cells
// sharing a rig (mode, direction, workers, SAs, size) are adjacent.
// Inbound: every mode; Shared with spray only (it has no owner to steer
// to), Sharded, PerCPU and Ordered with spray and steer (Ordered steered:
// each SA's stream reaches one worker, its sequencer, and the others
// take AEAD jobs from Drain); every distribution, but only uniform for
// one SA. Outbound: every mode with spray (outbound
// packets come from the plaintext side, which cannot steer by SPI),
// uniform traffic.
func ShardSpecs(o ShardOptions) []ShardSpec {
	dists := o.Dists
	if len(dists) == 0 {
		dists = []string{DistUniform, DistElephant, DistZipf}
	}
	outSAs := o.OutSAs
	if outSAs == nil {
		for _, n := range o.SAs {
			if n <= 1000 {
				outSAs = append(outSAs, n)
			}
		}
	}
	modes := []sa.Concurrency{sa.Shared, sa.Sharded, sa.PerCPU, sa.Ordered}
	var specs []ShardSpec
	for _, size := range o.Sizes {
		for _, m := range modes {
			for _, nw := range o.Workers {
				for _, n := range o.SAs {
					for _, d := range dists {
						if n == 1 && d != DistUniform {
							continue
						}
						for _, in := range []string{IngressSpray, IngressSteer} {
							if in == IngressSteer && m == sa.Shared {
								continue
							}
							specs = append(specs, ShardSpec{Mode: m, Dir: sa.In, Workers: nw, SAs: n, Dist: d, Ingress: in, Size: size})
						}
					}
				}
				for _, n := range outSAs {
					specs = append(specs, ShardSpec{Mode: m, Dir: sa.Out, Workers: nw, SAs: n, Dist: DistUniform, Ingress: IngressSpray, Size: size})
				}
			}
		}
	}
	return specs
}

// ShardRunner measures cells in order, reusing the rig of the previous
// cell when it fits (building 100000 SAs takes a while).
type ShardRunner struct {
	rig  *shardRig
	key  ShardSpec
	Seed uint64
	// RoundLen is the packets per worker and round (0: about 1 MB of
	// input per worker; tests use less).
	RoundLen int
}

// Run measures spec for budget.
func (sr *ShardRunner) Run(spec ShardSpec, budget time.Duration) (Result, error) {
	var res Result
	err := withProcs(spec.Workers, func() error {
		key := spec
		key.Dist, key.Ingress = "", ""
		if sr.rig == nil || sr.key != key {
			sr.Close()
			r, err := newShardRig(spec.Mode, spec.Dir, spec.Workers, spec.SAs, spec.Size, spec.Window, sr.RoundLen, sr.Seed)
			if err != nil {
				return err
			}
			sr.rig, sr.key = r, key
		}
		var err error
		res, err = sr.rig.measure(spec, budget, sr.Seed)
		return err
	})
	return res, err
}

// Close releases the current rig.
func (sr *ShardRunner) Close() {
	if sr.rig != nil {
		sr.rig.close()
		sr.rig = nil
	}
}
