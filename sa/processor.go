package sa

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/espxdp/espxdp/esp"
)

// Processor runs ESP over batches of packets for a set of workers. It
// holds no goroutines: the caller runs one goroutine per Worker (pinned
// to a CPU / an AF_XDP queue, or a UDP socket reader) and calls its
// Inbound and Outbound with batches it owns.
type Processor struct {
	workers []*Worker
	mode    Concurrency
	sad     *SAD
	spd     *SPD
	tun     *Tunnel
	natt    uint16
	clock   func() time.Time
	rings   [][]*ring // rings[to][from]
	// boards are the Ordered-mode workers' boards, boards[i] worker i's
	// (nil in the other modes). Helpers reach the other workers' boards
	// through this slice, never through the other Worker: a Worker's
	// fields around its board pointer are written per packet (npend,
	// the gate), and an idle helper that read the pointer there on every
	// poll kept that line bouncing - a lone sequencer ran its runs 25 %
	// slower with a polling helper than without, on the board or not.
	boards []*board
	ctrs   []procBlock

	acqEvents   EventFunc // tunnel acquire events (acquire.go)
	acqInterval int64
	growTo      int // replay windows may grow up to this; 0: never (batch.go)
	// winFloor is the size growable windows are grown to at their next
	// authenticated packet (SetReplayWindowFloor); 0: none.
	winFloor atomic.Int32
	// idle counts the Ordered-mode workers that are idle (Worker.idle):
	// a sequencer reads it once per run and puts the run's jobs on
	// its board only when it is not 0. On a line of its own: it is
	// written only when a worker becomes idle or busy, and read by the
	// sequencers while the other fields are read per packet.
	_    [cacheLine]byte
	idle atomic.Int32
	_    [cacheLine - 4]byte
}

// Worker is one worker of a Processor. Use each Worker from one
// goroutine at a time; it owns per-worker scratch memory (esp.Scratch),
// counter blocks and, in the Sharded and PerCPU modes, the SAs assigned
// to it.
type Worker struct {
	p      *Processor
	id     int
	locked bool // Shared mode with several workers: lock replay windows
	s      *esp.Scratch
	parsed esp.Parsed
	flow   flow
	now    int64
	run    run
	pend   [maxRun]job // the current run's parked packets (batch.go)
	npend  int
	npub   int     // Ordered: parked jobs of the run already on the board
	fed    bool    // Ordered: a batch of its own came since the last Drain or Pending
	idle   bool    // Ordered: counted in Processor.idle (see poll)
	alone  bool    // the current run goes without the board (solo)
	pcap   int     // complete the run at this many parked packets
	board  *board  // Ordered mode with several workers (ordered.go)
	gate   [2]gate // Ordered mode: whether the board pays, inbound and outbound (gate.go, gateOf)
	pc     [nPCtr]uint64
	events []pendingEvent
	inbox  []*ring
	rr     int
	_      [cacheLine]byte
}

type pendingEvent struct {
	fn EventFunc
	e  Event
}

// NewProcessor checks opts and builds a Processor.
func NewProcessor(opts ProcessorOptions) (*Processor, error) {
	if opts.SAD == nil {
		return nil, errors.New("sa: ProcessorOptions.SAD is required")
	}
	if opts.Workers < 0 || opts.Workers > 4096 {
		return nil, fmt.Errorf("sa: ProcessorOptions.Workers %d out of range", opts.Workers)
	}
	if opts.Concurrency > Ordered {
		return nil, fmt.Errorf("sa: unknown concurrency mode %v", opts.Concurrency)
	}
	if opts.ReplayWindowMax < ReplayDisabled || opts.ReplayWindowMax > MaxReplayWindow {
		return nil, fmt.Errorf("sa: ProcessorOptions.ReplayWindowMax %d out of range", opts.ReplayWindowMax)
	}
	if opts.QueueLen < 0 || opts.QueueLen > 1<<20 {
		return nil, fmt.Errorf("sa: ProcessorOptions.QueueLen %d out of range", opts.QueueLen)
	}
	n := max(opts.Workers, 1)
	p := &Processor{
		mode: opts.Concurrency, sad: opts.SAD, spd: opts.SPD, tun: opts.Tunnel,
		natt: opts.NATTPort, clock: opts.Clock, ctrs: make([]procBlock, n),
	}
	if p.clock == nil {
		p.clock = time.Now
	}
	if n > 1 && opts.ReplayWindowMax != ReplayDisabled {
		p.growTo = opts.ReplayWindowMax
		if p.growTo == 0 {
			p.growTo = MaxReplayWindow
		}
	}
	p.acqEvents, p.acqInterval = opts.Events, int64(opts.AcquireInterval)
	if p.acqEvents == nil {
		p.acqEvents = opts.SAD.events
	}
	if p.acqInterval <= 0 {
		p.acqInterval = int64(time.Second)
	}
	if (p.mode == Sharded || p.mode == PerCPU) && n > 1 {
		ql := opts.QueueLen
		if ql == 0 {
			ql = 1024
		}
		p.rings = make([][]*ring, n)
		for to := range p.rings {
			p.rings[to] = make([]*ring, n)
			for from := range p.rings[to] {
				if from != to {
					p.rings[to][from] = newRing(ql)
				}
			}
		}
	}
	for i := 0; i < n; i++ {
		w := &Worker{p: p, id: i, locked: (p.mode == Shared || p.mode == Ordered) && n > 1, s: esp.NewScratch(),
			events: make([]pendingEvent, 0, 16)}
		if p.mode == Ordered && n > 1 {
			w.board = &board{nw: uint64(n)}
			w.gate = [2]gate{newGate(), newGate()}
			p.boards = append(p.boards, w.board)
		}
		if p.rings != nil {
			for _, r := range p.rings[i] {
				if r != nil {
					w.inbox = append(w.inbox, r)
				}
			}
		}
		p.workers = append(p.workers, w)
	}
	return p, nil
}

// Worker returns worker i (0 ≤ i < Workers()).
func (p *Processor) Worker(i int) *Worker { return p.workers[i] }

// Workers returns the number of workers.
func (p *Processor) Workers() int { return len(p.workers) }

// Concurrency returns the processor's mode.
func (p *Processor) Concurrency() Concurrency { return p.mode }

// owner returns the worker that owns sa in the Sharded / PerCPU modes.
func (p *Processor) owner(sa *SA) int {
	n := len(p.workers)
	if sa.cfg.PinWorker {
		return sa.cfg.Worker % n
	}
	return int(sa.hashOwner % uint32(n))
}

// SetReplayWindowFloor makes the default-sized (growable) replay windows
// of inbound SAs that this processor's workers use at least n packets
// (rounded up to a power of two, bounded by ProcessorOptions.ReplayWindowMax),
// each grown at its next authenticated packet, as growth by observed
// lateness would (replay.Window.Grow: nothing rejected before becomes
// acceptable). It is for an I/O layer that knows how far it can
// reorder one SA's stream itself - the engine of package xdp dealing
// one queue's packets over its workers' RX rings - so that the first
// such reordering loses nothing. It does nothing with one worker, with
// growth turned off, or for windows sized in their Config. n ≤ 0 removes
// the floor (windows already grown stay grown).
func (p *Processor) SetReplayWindowFloor(n int) {
	if n <= 0 || p.growTo == 0 {
		p.winFloor.Store(0)
		return
	}
	f := DefaultReplayWindow
	for f < n && f < p.growTo {
		f *= 2
	}
	p.winFloor.Store(int32(min(f, p.growTo)))
}

// ReplayWindowFloor returns the floor set by SetReplayWindowFloor (0:
// none).
func (p *Processor) ReplayWindowFloor() int { return int(p.winFloor.Load()) }

// OwnerOf returns the worker that owns the inbound SA with this SPI in
// the Sharded and PerCPU modes, so that a caller can steer packets to it
// (e.g. an XDP program or RSS choosing the queue) and avoid hand-offs.
// Unpinned SAs (and unknown SPIs) map to lowbias32(spi) % workers, the
// slot the XDP program's SPI hash picks (bpf.SPIHashSlot).
func (p *Processor) OwnerOf(spi uint32) int {
	if sa := p.sad.Lookup(spi); sa != nil {
		return p.owner(sa)
	}
	return int(ownerHash(spi) % uint32(len(p.workers)))
}

// OwnerOfSA is OwnerOf for a given SA (either direction).
func (p *Processor) OwnerOfSA(sa *SA) int { return p.owner(sa) }

// Stats sums the workers' processor-level counters.
func (p *Processor) Stats() ProcessorStats {
	var c [nPCtr]uint64
	for i := range p.ctrs {
		for j := range c {
			c[j] += p.ctrs[i].v[j].Load()
		}
	}
	st := ProcessorStats{InPkts: c[pInPkts], InOK: c[pInOK], OutPkts: c[pOutPkts], OutOK: c[pOutOK],
		Control: c[pControl], Bypass: c[pBypass], HandedOff: c[pHandedOff]}
	copy(st.Drops[:], c[pDrop:])
	return st
}

// ID returns the worker's index.
func (w *Worker) ID() int { return w.id }

// Data returns the packet's bytes, Buf[Off:Off+Len].
func (p *Packet) Data() []byte { return p.Buf[p.Off : p.Off+p.Len] }

// Reset prepares p for a new batch with the data at buf[off:off+n],
// clearing all results and the Tunnel and Meta fields. ESPOnly is kept:
// it describes the caller's I/O (a UDP socket), which does not change
// from batch to batch.
func (p *Packet) Reset(buf []byte, off, n int) {
	*p = Packet{Buf: buf, Off: off, Len: n, ESPOnly: p.ESPOnly}
}

// Inbound processes a batch of received packets, each an IP packet
// (IPv4 or IPv6) at Buf[Off:Off+Len] carrying ESP or ESP-in-UDP: outer
// header parse, SPI lookup, anti-replay pre-check, ICV verification and
// decryption in place, anti-replay update, decapsulation, inner-packet
// policy check. Each packet gets a Verdict; on VerdictOK Buf[Off:Off+Len]
// is the inner packet (tunnel mode) or the reconstructed original packet
// (transport mode). It does not allocate.
func (w *Worker) Inbound(pkts []Packet) {
	w.feed(len(pkts))
	t0 := w.gateStart(In, len(pkts))
	w.begin()
	for i := range pkts {
		w.in(&pkts[i], false)
	}
	w.end()
	w.gateEnd(In, t0, len(pkts))
}

// Outbound processes a batch of IP packets to send: SA selection
// (Packet.Tunnel, else the SPD, else the default tunnel), plaintext-MTU
// check, sequence number, encryption in place and the outer headers.
// Each packet needs esp.MaxHeadroom bytes in front of Off and
// esp.MaxTailroom after Off+Len within cap(Buf); the result (the whole
// outer packet) may extend past len(Buf), in which case Buf is resliced
// up to its capacity. It does not allocate.
func (w *Worker) Outbound(pkts []Packet) {
	w.feed(len(pkts))
	t0 := w.gateStart(Out, len(pkts))
	w.begin()
	for i := range pkts {
		w.out(&pkts[i], false)
	}
	w.end()
	w.gateEnd(Out, t0, len(pkts))
}

// Drain processes packets other workers handed to this one (Sharded and
// PerCPU modes), at most len(pkts), storing them with their results in
// pkts; it returns how many. Packet.Dir says which way each went. The
// buffers now belong to this worker's caller, which sends or frees them
// as for its own packets. Call it in the worker's loop, e.g. after each
// Inbound or Outbound batch.
//
// In the Ordered mode it returns 0 and instead, when this worker is
// idle - it had no batch of its own (Inbound or Outbound with packets)
// since its previous Drain or Pending - does the AEAD jobs on the other
// workers' boards at that moment (it does not wait for more), which
// those workers return in their own batches. A worker with input of its
// own does its own jobs: each job another core does moves its packet's
// buffer between the caches twice, which costs about as much as the
// AEAD, so the cores help only where they would otherwise idle. The
// sequencers put jobs on their boards only while some worker is idle
// and their gate finds that helpers make them faster (Publishes);
// otherwise they do their runs alone, as in the Shared mode.
func (w *Worker) Drain(pkts []Packet) int {
	if w.board != nil {
		if w.poll() {
			w.help()
		}
		return 0
	}
	if len(w.inbox) == 0 {
		return 0
	}
	w.begin()
	n := 0
	for k := 0; k < len(w.inbox) && n < len(pkts); k++ {
		r := w.inbox[(w.rr+k)%len(w.inbox)]
		for n < len(pkts) && r.pop(&pkts[n]) {
			if pkts[n].Dir == Out {
				w.out(&pkts[n], true)
			} else {
				w.in(&pkts[n], true)
			}
			n++
		}
	}
	w.rr++
	w.end()
	return n
}

// Pending returns how many handed-off packets wait for Drain; in the
// Ordered mode, how many AEAD jobs of other workers' runs are waiting
// for a helper (Drain takes them), so that a loop that drains only when
// something is pending helps too - but 0 when this worker had a batch of
// its own since its previous Drain or Pending (it is not idle, and
// Drain would not help). Like Drain, it marks the worker idle otherwise.
func (w *Worker) Pending() int {
	if w.board != nil {
		if !w.poll() {
			return 0
		}
		return w.unclaimed()
	}
	n := 0
	for _, r := range w.inbox {
		n += r.len()
	}
	return n
}

func (w *Worker) begin() { w.now = w.p.clock().UnixNano() }

func (w *Worker) end() {
	w.flushRun()
	c := &w.p.ctrs[w.id]
	for i, v := range w.pc {
		if v != 0 {
			c.v[i].Add(v)
			w.pc[i] = 0
		}
	}
	if len(w.events) > 0 {
		for i := range w.events {
			w.events[i].fn(w.events[i].e)
			w.events[i] = pendingEvent{}
		}
		w.events = w.events[:0]
	}
}

// raise queues an event until the end of the batch, when no SA is held.
func (w *Worker) raise(fn EventFunc, e Event) { w.events = append(w.events, pendingEvent{fn, e}) }

// use makes sa the SA of the current run, flushing the previous run. It
// returns false if sa was closed.
func (w *Worker) use(sa *SA) bool {
	if w.run.sa == sa {
		return true
	}
	w.flushRun()
	sa.busy.Add(1)
	if State(sa.state.Load()) == StateDeleted || sa.held.Load() {
		sa.busy.Add(-1)
		return false
	}
	w.run.sa = sa
	w.run.at = sa.attrs.Load()
	sa.checkTime(w.run.at, w.now, w)
	return true
}

func (w *Worker) flushRun() {
	w.complete()
	r := &w.run
	sa := r.sa
	if sa == nil {
		return
	}
	if r.dirty {
		b := sa.block(w.id)
		for i, v := range r.v {
			if v != 0 {
				b.v[i].Add(v)
				r.v[i] = 0
			}
		}
	}
	if r.pkts != 0 {
		sa.touch(w.now)
	}
	sa.account(r.pkts, r.bytes, w.now, w)
	for r.top != 0 {
		cur := sa.rxTop.Load()
		if r.top <= cur || sa.rxTop.CompareAndSwap(cur, r.top) {
			break
		}
	}
	sa.busy.Add(-1)
	r.sa, r.at, r.pkts, r.bytes, r.top, r.dirty = nil, nil, 0, 0, 0, false
}

// pdrop drops p with a processor-level reason (no SA to charge).
func (w *Worker) pdrop(p *Packet, r DropReason) {
	p.Verdict, p.Reason = VerdictDrop, r
	w.pc[pDrop+int(r)]++
}

// sdrop drops p and charges the SA of the current run.
func (w *Worker) sdrop(p *Packet, r DropReason) {
	p.Verdict, p.Reason = VerdictDrop, r
	w.run.drop(r)
}

// reasonOf maps an esp error to a drop reason.
func reasonOf(err error) DropReason {
	switch {
	case errors.Is(err, esp.ErrAuth):
		return DropAuth
	case errors.Is(err, esp.ErrPadding):
		return DropPadding
	case errors.Is(err, esp.ErrTruncated):
		return DropTruncated
	case errors.Is(err, esp.ErrMalformed):
		return DropMalformed
	case errors.Is(err, esp.ErrFragment):
		return DropFragment
	case errors.Is(err, esp.ErrNoRoom):
		return DropNoRoom
	case errors.Is(err, esp.ErrTooBig):
		return DropTooBig
	case errors.Is(err, esp.ErrDummy):
		return DropDummy
	}
	return DropInternal
}

func (w *Worker) handoff(p *Packet, dir Direction, to int) {
	q := *p
	q.Verdict, q.Reason, q.Dir, q.SA, q.Policy, q.MTU = VerdictNone, DropNone, dir, nil, nil, 0
	if !w.p.rings[to][w.id].push(&q) {
		w.pdrop(p, DropQueueFull)
		return
	}
	p.Verdict = VerdictHandedOff
	w.pc[pHandedOff]++
}

// setResult points p at res, a slice of p.Buf.
func setResult(p *Packet, res []byte) {
	p.Off = cap(p.Buf) - cap(res)
	p.Len = len(res)
	if p.Off+p.Len > len(p.Buf) {
		p.Buf = p.Buf[:p.Off+p.Len]
	}
}

func (w *Worker) in(p *Packet, queued bool) {
	p.Verdict, p.Reason, p.Dir, p.SA, p.Policy, p.MTU, p.Tunnel = VerdictNone, DropNone, In, nil, nil, 0, nil
	if !queued {
		w.pc[pInPkts]++
	}
	if p.Off < 0 || p.Len < 0 || p.Off > len(p.Buf) || p.Len > len(p.Buf)-p.Off {
		w.pdrop(p, DropMalformed)
		return
	}
	pkt := p.Buf[p.Off : p.Off+p.Len]
	var espPkt []byte
	if p.ESPOnly {
		if len(pkt) == 1 && pkt[0] == 0xff || len(pkt) >= 4 && binary.BigEndian.Uint32(pkt) == 0 {
			p.Verdict = VerdictControl // NAT-keepalive, or IKE behind the non-ESP marker
			w.pc[pControl]++
			return
		}
		espPkt = pkt
	} else {
		if err := esp.ParseOuter(pkt, w.p.natt, &w.parsed); err != nil {
			switch {
			case err == esp.ErrNotESP || err == esp.ErrKeepalive:
				p.Verdict = VerdictControl
				w.pc[pControl]++
			case errors.Is(err, esp.ErrUnsupported):
				w.pdrop(p, DropNotESP)
			default:
				w.pdrop(p, reasonOf(err))
			}
			return
		}
		espPkt = pkt[w.parsed.ESPOffset:w.parsed.Len]
	}
	spi, lo, err := esp.ParseHeader(espPkt)
	if err != nil {
		w.pdrop(p, reasonOf(err))
		return
	}
	sa := w.p.sad.Lookup(spi)
	if sa == nil {
		w.pdrop(p, DropNoSA)
		return
	}
	if w.p.mode == Sharded || w.p.mode == PerCPU {
		if o := w.p.owner(sa); o != w.id {
			w.handoff(p, In, o)
			return
		}
	}
	if !w.use(sa) {
		w.pdrop(p, DropNoSA)
		return
	}
	p.SA = sa
	if !p.ESPOnly {
		if r := sa.outerCheck(w.run.at, &w.parsed); r != DropNone {
			w.sdrop(p, r)
			return
		}
	}
	if sa.expired() {
		w.sdrop(p, sa.expiredReason())
		return
	}
	if l := sa.hardReached(w.run.at, w.run.pkts+uint64(w.npend), w.run.bytes); l != LimitNone {
		sa.expireHard(l, w.now, w)
		w.sdrop(p, DropExpired)
		return
	}
	j := w.park(p)
	j.lo = lo
	j.espOff = cap(p.Buf) - cap(espPkt)
	j.espLen = len(espPkt)
	j.parsed = w.parsed
	w.parkDone()
}

func (w *Worker) out(p *Packet, queued bool) {
	p.Verdict, p.Reason, p.Dir, p.SA, p.Policy, p.MTU = VerdictNone, DropNone, Out, nil, nil, 0
	if !queued {
		w.pc[pOutPkts]++
	}
	if p.Off < 0 || p.Len < 0 || p.Off > len(p.Buf) || p.Len > len(p.Buf)-p.Off {
		w.pdrop(p, DropMalformed)
		return
	}
	if p.Len < 1 {
		w.pdrop(p, DropTruncated)
		return
	}
	data := p.Buf[p.Off : p.Off+p.Len]
	var pol *Policy
	var sa *SA
	haveFlow := false
	t := p.Tunnel
	if t == nil && w.p.spd != nil {
		if err := parseFlow(data, &w.flow); err != nil {
			w.pdrop(p, reasonOf(err))
			return
		}
		haveFlow = true
		if pol = w.p.spd.match(&w.flow); pol != nil {
			p.Policy = pol
			switch pol.Action {
			case Bypass:
				p.Verdict = VerdictBypass
				w.pc[pBypass]++
				return
			case Discard:
				w.pdrop(p, DropDiscard)
				return
			}
			if t = pol.Tunnel; t == nil {
				if sa = pol.SA; sa == nil {
					w.acquire(p, pol)
					return
				}
			}
		}
	}
	if t == nil && sa == nil {
		t = w.p.tun
	}
	// A tunnel's outbound SA can be switched and the old one deleted at
	// any moment (make-before-break rekeying); if the SA picked was
	// closed in between, pick again: the tunnel already holds its
	// successor.
	for tries := 0; ; tries++ {
		if t != nil {
			if sa = t.pick(w.id); sa == nil {
				if pol != nil {
					w.acquire(p, pol)
				} else {
					w.tunnelAcquire(p, t)
				}
				return
			}
		}
		if sa == nil {
			w.pdrop(p, DropNoPolicy)
			return
		}
		if w.p.mode == Sharded {
			if o := w.p.owner(sa); o != w.id {
				w.handoff(p, Out, o)
				return
			}
		}
		if w.use(sa) {
			if State(sa.state.Load()) != StateDeleted {
				break
			}
			// Deleted while this worker's run still held it: release it
			// and pick the successor.
			w.flushRun()
		}
		if t == nil || tries == 3 {
			if pol != nil {
				w.acquire(p, pol)
			} else {
				w.tunnelAcquire(p, t) // t != nil: without policy the SA came from a tunnel
			}
			return
		}
	}
	p.SA = sa
	// An SA deleted from here on is still usable for this packet: Close
	// waits for this worker's run. Only an expired one stops traffic.
	if sa.expired() {
		if pol != nil {
			w.p.spd.acquire(pol, &w.flow, w.now, w)
		} else if t != nil {
			w.raiseTunnelAcquire(p, t)
		}
		w.sdrop(p, sa.expiredReason())
		return
	}
	if l := sa.hardReached(w.run.at, w.run.pkts+uint64(w.npend), w.run.bytes); l != LimitNone {
		sa.expireHard(l, w.now, w)
		w.sdrop(p, DropExpired)
		return
	}
	if len(sa.selectors) > 0 {
		if !haveFlow {
			if err := parseFlow(data, &w.flow); err != nil {
				w.sdrop(p, reasonOf(err))
				return
			}
		}
		if !matchAny(sa.selectors, &w.flow) {
			w.sdrop(p, DropPolicy)
			return
		}
	}
	fam := 0
	if data[0]>>4 == 6 {
		fam = 1
	}
	if mtu := int(sa.ptMTU[fam].Load()); mtu > 0 && p.Len > mtu {
		p.MTU = mtu
		w.sdrop(p, DropMTU)
		return
	}
	switch {
	case p.ESPOnly && sa.mode == esp.Tunnel:
		nh := byte(esp.NextHeaderIPv4)
		if fam == 1 {
			nh = esp.NextHeaderIPv6
		}
		// The payload must be an IP packet of that family: the peer's
		// DecapTunnel checks it against nh.
		if _, err := esp.DecapTunnel(data, nh); err != nil {
			w.sdrop(p, reasonOf(err))
			return
		}
	case p.ESPOnly, sa.cfg.ESPOnly:
		// Transport mode needs the IP header around ESP; an ESPOnly SA
		// builds no outer header.
		w.sdrop(p, DropMalformed)
		return
	}
	j := w.park(p)
	j.fam = fam
	w.parkDone()
}

// acquire drops p for want of an SA on a protect policy and raises
// EventAcquire (rate-limited).
func (w *Worker) acquire(p *Packet, pol *Policy) {
	w.p.spd.acquire(pol, &w.flow, w.now, w)
	w.pdrop(p, DropAcquire)
}
