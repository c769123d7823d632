package sa

import (
	"math"

	"github.com/espxdp/espxdp/esp"
)

// Runs of packets and the serial work done once per run.
//
// A worker processes a batch packet by packet up to the point where a
// packet needs the SA's shared serial state (the replay window inbound,
// the sequence counter outbound). There it parks the packet as a job in
// the worker's pending list for the current run - the consecutive
// packets of one SA - and goes on with the next packet. When the run
// ends (another SA, the end of the batch, or the list is full) the
// worker completes it (complete):
//
//	inbound:  one replay pre-check pass over the run (one lock in the
//	          Shared and Ordered modes; in the Ordered mode with a worker
//	          idle, one per 8 packets, as they are published), the AEAD
//	          of every job,
//	          one replay update pass (one lock), then per packet the
//	          decapsulation, selector check and counters;
//	outbound: one reservation of sequence numbers for the whole run
//	          (one atomic add, or one compare-and-swap loop with a
//	          SeqLimit or near the end of the number space), then the
//	          AEAD and encapsulation of every job.
//
// So workers sharing an SA meet on its lines once per run of up to
// maxRun packets, not once per packet. The AEAD step is where the
// Ordered mode differs: while some worker is idle it publishes the run's
// jobs on the worker's board, where idle workers take some of them
// (ordered.go); else the run is done as in the Shared mode.
//
// Lifetimes stay exact with one worker: a run is cut short (runCap)
// when its packets could reach a hard packet or byte limit, so that the
// per-packet hard-limit check, which does not see the packets parked in
// the run, cannot miss the limit.

// maxRun is the most packets completed together: the size of a worker's
// pending list and of an Ordered-mode board.
const maxRun = 64

// maxInner bounds the plaintext bytes of one packet, for runCap.
const maxInner = 65536

// job is one packet parked in its run: what the serial steps and the
// AEAD need of it, and the AEAD's result.
type job struct {
	p      *Packet
	drop   DropReason // set by a serial step or the AEAD
	lo     uint32     // inbound: the low 32 bits of the sequence number
	seq    uint64
	espOff int // inbound: the ESP packet within p.Buf
	espLen int
	parsed esp.Parsed // inbound: outer headers (transport decap, FloatRemote)
	fam    int        // outbound: 0 IPv4, 1 IPv6 payload
	// AEAD results: inbound the payload and next header (dummy set for
	// an authenticated dummy packet), outbound the outer packet.
	res   []byte
	nh    byte
	dummy bool
	verif bool // inbound: the ICV verified (also for padding errors)
	dec   bool // inbound: decrypted (ICV and padding fine)
	old   bool // inbound: older than the window, checked only to grow it
	// fail is, inbound in tunnel mode, why the decrypted packet is
	// dropped after its window update (decapsulation or selectors,
	// checked by crypt, on the worker that decrypted it).
	fail DropReason
}

// runCap returns how many packets the current run may park before it
// must be completed: maxRun, or fewer when that many packets could
// reach a hard packet or byte lifetime (see the comment above).
func (w *Worker) runCap() int {
	a, sa := w.run.at, w.run.sa
	n := maxRun
	if a.hard.Packets != 0 {
		used := sa.usedPkts.Load() + w.run.pkts
		if used >= a.hard.Packets {
			return 1
		}
		n = int(min(uint64(n), a.hard.Packets-used))
	}
	if a.hard.Bytes != 0 {
		used := sa.usedBytes.Load() + w.run.bytes
		if used >= a.hard.Bytes {
			return 1
		}
		n = int(min(uint64(n), (a.hard.Bytes-used)/maxInner))
	}
	return max(n, 1)
}

// park adds p to the current run's pending list and returns its job; the
// caller fills in the job. When the list is full the run is completed
// first.
func (w *Worker) park(p *Packet) *job {
	if w.npend == 0 {
		w.pcap = w.runCap()
		w.alone = w.solo()
	}
	j := &w.pend[w.npend]
	w.npend++
	*j = job{p: p}
	return j
}

// parkDone completes the run if the pending list reached its cap; in
// the Ordered mode it publishes every pubStep parked inbound packets
// early (publishIn).
func (w *Worker) parkDone() {
	if w.npend >= w.pcap {
		w.complete()
	} else if !w.alone && w.npend-w.npub >= pubStep && w.run.sa.dir == In {
		w.publishIn()
	}
}

// pubStep is how many parked inbound packets the Ordered mode publishes
// at a time before their run is complete: enough to keep the replay
// window's lock (one pre-check pass per publication) off the hot path,
// few enough for helpers to start early.
const pubStep = 8

// complete runs the serial steps and the AEAD of the parked jobs of the
// current run and gives every packet its verdict.
func (w *Worker) complete() {
	if w.npend == 0 {
		return
	}
	js := w.pend[:w.npend]
	if w.run.sa.dir == In {
		w.completeIn(js)
	} else {
		w.completeOut(js)
	}
	for i := range js {
		js[i] = job{} // no references to the caller's packets
	}
	w.npend, w.npub = 0, 0
}

// checkIn is the replay pre-check pass over the parked jobs js: one lock
// when workers share the window.
func (w *Worker) checkIn(js []job) {
	sa := w.run.sa
	if w.locked {
		lockWin(sa)
	}
	grow := sa.growable && w.p.growTo > 0 && sa.win.Size() < w.p.growTo
	for i := range js {
		j := &js[i]
		seq, ok := sa.win.Check(j.lo)
		if !ok {
			// Too old for the window: if it may still grow, the ICV is
			// checked anyway, to learn how far the workers reorder
			// the stream (the packet is dropped all the same).
			if grow && seq != 0 && sa.win.Top() > seq && sa.win.Top()-seq >= uint64(sa.win.Size()) {
				j.old = true
			} else {
				j.drop = DropReplay
			}
		}
		j.seq = seq
	}
	if w.locked {
		sa.mu.Unlock()
	}
}

// publishIn, in the Ordered mode, pre-checks the inbound jobs parked
// since the last publication and puts them on the board while the run
// is still being parked, so that helpers decrypt them while this worker
// parses the next packets instead of waiting for the whole run.
func (w *Worker) publishIn() {
	w.checkIn(w.pend[w.npub:w.npend])
	w.board.publish(w, w.npub, w.npend)
	w.npub = w.npend
}

func (w *Worker) completeIn(js []job) {
	// Invariant (anti-replay): a packet is accepted only if the window
	// accepted its number before the ICV check (Check, in checkIn) and
	// records it after (Update, in settleIn, which fails for a number
	// recorded meanwhile - by a duplicate in the same run or by another
	// worker). One lock per pass when workers share the window. In the
	// Ordered mode the first jobs of the run may have been checked and
	// published already (publishIn); the rest are checked here.
	w.checkIn(js[w.npub:])
	w.aead(js)
}

// settle gives the jobs js of the current run, once their AEAD is done,
// their verdicts in order: settleIn or settleOut.
func (w *Worker) settle(js []job) {
	if w.run.sa.dir == In {
		w.settleIn(js)
	} else {
		w.settleOut(js)
	}
}

// settleIn updates the replay window with the inbound jobs js (one lock
// when workers share it) and finishes their packets, in order.
func (w *Worker) settleIn(js []job) {
	sa := w.run.sa
	// floorD is the delay growWindow is asked to cover when the window is
	// below the processor's floor (SetReplayWindowFloor): 4*(floorD+1)
	// is the floor.
	floor := int(w.p.winFloor.Load())
	floorD := uint64(max(floor/4, 1)) - 1
	if w.locked {
		lockWin(sa)
	}
	grow := sa.growable && w.p.growTo > 0 && sa.win.Size() < w.p.growTo
	for i := range js {
		j := &js[i]
		if j.old {
			// An authenticated packet older than the window: replayed,
			// or delayed by the workers that far. Either way it is
			// dropped, unrecorded and uncounted as before; only the
			// window grows to cover such delays from now on.
			if j.verif && sa.win.Top() > j.seq {
				w.growWindow(sa, sa.win.Top()-j.seq)
			}
			j.drop, j.verif, j.dec = DropReplay, false, false
			continue
		}
		if j.drop != DropNone {
			continue
		}
		if !sa.win.Update(j.seq) {
			j.drop = DropReplay // a concurrent copy of the packet won
		} else if grow && sa.win.Top()-j.seq >= uint64(sa.win.Size()/4) {
			w.growWindow(sa, max(sa.win.Top()-j.seq, floorD))
		} else if grow && sa.win.Size() < floor {
			w.growWindow(sa, floorD)
		}
	}
	if w.locked {
		sa.mu.Unlock()
	}
	for i := range js {
		w.finishIn(&js[i])
	}
}

// lockWin locks sa's replay window (Shared and Ordered modes with
// several workers). The holder keeps it for one pass over a run (at most
// maxRun window operations, well under a microsecond), so a worker that
// finds it taken spins for it a while before it blocks: sync.Mutex parks
// a contended waiter soon, and parking a goroutine locked to its OS
// thread (as AF_XDP workers are) costs futex calls to sleep and to wake
// it, many times the hold.
func lockWin(sa *SA) {
	for range lockSpins {
		if sa.mu.TryLock() {
			return
		}
	}
	sa.mu.Lock()
}

// lockSpins is how many times lockWin tries before it blocks.
const lockSpins = 1000

// growWindow enlarges sa's replay window, up to the processor's bound
// (ProcessorOptions.ReplayWindowMax), doubling it until it holds four
// times d: an authenticated packet came d packets behind the right
// edge, more than a quarter of the window (or more than all of it), so
// the workers reorder the SA's stream by about that much, and by more
// when the load shifts. The margin is what keeps a later, deeper
// reordering inside the window: packets pushed out before the window
// grew are lost. The caller holds the
// window (its lock, or owns the SA). It allocates, once per growth: at
// most log2(MaxReplayWindow/DefaultReplayWindow) times per SA.
func (w *Worker) growWindow(sa *SA, d uint64) {
	size := sa.win.Size()
	if size == 0 {
		return // disabled: nothing to grow (and doubling 0 would not end)
	}
	n := size
	for uint64(n) < 4*(d+1) && n < w.p.growTo {
		n *= 2
	}
	n = min(n, w.p.growTo)
	if n <= size || sa.win.Grow(n) != nil {
		return
	}
	sa.winLen.Store(int32(n))
}

// finishIn is the per-packet tail of an inbound packet after the window
// update.
func (w *Worker) finishIn(j *job) {
	p, sa := j.p, w.run.sa
	if j.verif {
		w.run.v[cVerify]++
		w.run.dirty = true
	}
	if j.dec {
		w.run.v[cDecrypt]++
	}
	if j.drop != DropNone {
		w.sdrop(p, j.drop)
		return
	}
	seq := j.seq
	if sa.cfg.FloatRemote && !p.ESPOnly && seq > w.run.top && seq > sa.rxTop.Load() {
		sa.noteEndpoint(j.parsed.Src, j.parsed.SrcPort, w.now, w) // authenticated and newest: see outer.go
	}
	w.run.top = max(w.run.top, seq)
	if j.dummy {
		w.sdrop(p, DropDummy)
		return
	}
	res := j.res // tunnel mode: the inner packet, checked by crypt
	if sa.mode == esp.Tunnel {
		if j.fail != DropNone {
			w.sdrop(p, j.fail)
			return
		}
	} else {
		// Transport mode rewrites the outer header in the buffer: only
		// for a packet the window accepted.
		var err error
		if p.ESPOnly {
			err = esp.ErrMalformed // transport mode needs the outer IP header
		} else {
			res, err = esp.DecapTransport(p.Buf[p.Off:p.Off+p.Len], &j.parsed, j.res, j.nh)
		}
		if err != nil {
			w.sdrop(p, reasonOf(err))
			return
		}
		if r := w.selectorCheck(sa, res); r != DropNone {
			w.sdrop(p, r)
			return
		}
	}
	setResult(p, res)
	n := uint64(len(res))
	w.run.v[cDecPkts]++
	w.run.v[cDecBytes] += n
	w.run.pkts++
	w.run.bytes += n
	p.Verdict = VerdictOK
	p.Tunnel = sa.tunnel.Load()
	w.pc[pInOK]++
}

func (w *Worker) completeOut(js []job) {
	sa := w.run.sa
	first, got, why := sa.reserveSeq(uint64(len(js)), w.now, w)
	for i := range js {
		if uint64(i) < got {
			js[i].seq = first + uint64(i)
		} else {
			js[i].drop = why
		}
	}
	w.aead(js)
}

// settleOut gives the outbound jobs js, encrypted, their results, in
// order.
func (w *Worker) settleOut(js []job) {
	for i := range js {
		j := &js[i]
		p := j.p
		if j.drop != DropNone {
			w.sdrop(p, j.drop)
			continue
		}
		n := uint64(p.Len)
		setResult(p, j.res)
		w.run.v[cEncPkts]++
		w.run.v[cEncBytes] += n
		w.run.dirty = true
		w.run.pkts++
		w.run.bytes += n
		p.Verdict = VerdictOK
		w.pc[pOutOK]++
	}
}

// aead runs the AEAD of the jobs not dropped yet and settles them: in
// line, or in the Ordered mode with a worker idle spread over the
// workers through the board.
func (w *Worker) aead(js []job) {
	if !w.alone && (len(js) > 1 || w.npub > 0) {
		w.board.run(w, js, w.npub)
	} else {
		for i := range js {
			crypt(w, w.run.sa, w.run.at, &js[i])
		}
	}
	w.settle(js)
}

// selectorCheck checks the inner packet res against sa's selectors, if
// it has any (w.flow is the scratch).
func (w *Worker) selectorCheck(sa *SA, res []byte) DropReason {
	if len(sa.selectors) == 0 {
		return DropNone
	}
	if err := parseFlow(res, &w.flow); err != nil {
		return reasonOf(err)
	}
	if !matchAny(sa.selectors, &w.flow) {
		return DropPolicy
	}
	return DropNone
}

// crypt is the AEAD step of one job, done by w: decryption and ICV
// check (inbound; in tunnel mode also the inner packet's header and the
// SA's selectors, read-only checks of the bytes the decryption just
// wrote, so that a helper's job does not pull them back to the
// sequencer's core) or encapsulation (outbound). It touches only the
// job, its packet's buffer and w's scratch (esp.Scratch, flow), so any
// worker may run it while the job's worker holds the SA (busy) - the
// Ordered mode does.
func crypt(w *Worker, sa *SA, a *attrs, j *job) {
	if j.drop != DropNone {
		return
	}
	p, s := j.p, w.s
	if sa.dir == In {
		payload, nh, err := sa.cipher.Open(s, p.Buf[j.espOff:j.espOff+j.espLen], j.seq)
		switch {
		case err == nil:
		case err == esp.ErrDummy:
			j.dummy = true
		case err == esp.ErrPadding:
			j.verif = true
			j.drop = DropPadding
			return
		default:
			j.drop = reasonOf(err)
			return
		}
		j.verif, j.dec, j.res, j.nh = true, true, payload, nh
		if sa.mode == esp.Tunnel && !j.dummy {
			res, err := esp.DecapTunnel(payload, nh)
			if err != nil {
				j.fail = reasonOf(err)
			} else {
				j.res, j.fail = res, w.selectorCheck(sa, res)
			}
		}
		return
	}
	var res []byte
	var err error
	n := p.Len
	switch {
	case p.ESPOnly && sa.mode == esp.Tunnel:
		nh := byte(esp.NextHeaderIPv4)
		if j.fam == 1 {
			nh = esp.NextHeaderIPv6
		}
		res, err = sa.cipher.Seal(s, p.Buf, p.Off, n, sa.spi, j.seq, nh)
	case sa.mode == esp.Tunnel:
		res, err = sa.cipher.EncapTunnel(s, p.Buf, p.Off, n, sa.spi, j.seq, &a.outer)
	default:
		res, err = sa.cipher.EncapTransport(s, p.Buf, p.Off, n, sa.spi, j.seq, &a.outer)
	}
	if err != nil {
		j.drop = reasonOf(err)
		return
	}
	j.res = res
}

// reserveSeq hands out k consecutive outbound sequence numbers, first to
// first+got-1; when got < k the rest are refused for why
// (DropSeqOverflow, with the SA hard-expired, or DropSeqLimit).
//
// Invariant: no number is handed out twice nor above the SA's SeqLimit
// nor past the sequence space (2^32-1 without ESN, 2^64-1 with);
// numbers are never reused, even for packets dropped afterwards. The
// common case is one atomic add for the whole run. With a SeqLimit, or
// when the counter is near the end of a 64-bit space, a
// compare-and-swap loop takes only the numbers allowed and never moves
// the counter past the limit (raising it lets traffic continue right
// after it).
func (s *SA) reserveSeq(k uint64, now int64, sink eventSink) (first, got uint64, why DropReason) {
	if s.seqLimit.Load() == 0 && (!s.esn || s.seq.Load() < math.MaxUint64-1<<32) {
		// Without ESN the counter cannot wrap a uint64 here: it stops
		// growing once the SA expired (workers drop before reserving)
		// and overshoots 2^32-1 by at most a run per worker.
		last := s.seq.Add(k)
		first = last - k + 1
		if s.esn || last <= math.MaxUint32 {
			return first, k, DropNone
		}
		s.expireHard(LimitSequence, now, sink)
		if first > math.MaxUint32 {
			return first, 0, DropSeqOverflow
		}
		return first, math.MaxUint32 - first + 1, DropSeqOverflow
	}
	top := uint64(math.MaxUint32)
	if s.esn {
		top = math.MaxUint64
	}
	for {
		cur := s.seq.Load()
		lim := s.seqLimit.Load()
		avail := top - min(cur, top)
		why = DropSeqOverflow
		if lim != 0 && lim-min(cur, lim) < avail {
			avail, why = lim-min(cur, lim), DropSeqLimit
		}
		got = min(k, avail)
		if got == 0 {
			if why == DropSeqOverflow {
				s.expireHard(LimitSequence, now, sink)
			} else {
				s.seqLowWater(cur+1, now, sink)
			}
			return cur + 1, 0, why
		}
		if s.seq.CompareAndSwap(cur, cur+got) {
			s.seqLowWater(cur+got, now, sink)
			if got < k && why == DropSeqOverflow {
				s.expireHard(LimitSequence, now, sink)
			}
			return cur + 1, got, why
		}
	}
}
