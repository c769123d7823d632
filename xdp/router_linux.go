//go:build linux

package xdp

import (
	"errors"
	"sync"
	"time"

	"github.com/espxdp/espxdp/esp/reasm"
	"github.com/espxdp/espxdp/internal/inet"
	"github.com/espxdp/espxdp/sa"
)

// Router duties: what the engine does to packets besides moving them
// between ports and through the SA processor, on the worker's batch in
// ew.pk (the packet functions are in internal/inet):
//
//	ciphertext side, before Inbound   outer reassembly (Reassembly)
//	after Inbound (decrypted)         TTL (DecrementTTL), MSS (ClampMSS)
//	plaintext side, before Outbound   TTL, expiring packets answered with
//	                                  time exceeded (ICMPErrors), MSS
//	after Outbound                    bypassed packets get their MSS back;
//	                                  DropMTU: fragmented (FragmentInner)
//	                                  or answered with fragmentation
//	                                  needed / packet too big
//
// The worker loop (engine_linux.go) calls these at those points; the
// ports (EnginePort) never see them.

// router is a worker's state for its router duties; only the worker
// uses it, but for the reassembly counters it publishes for Stats.
type router struct {
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

	// ra reassembles outer fragments (EngineConfig.Reassembly); only the
	// worker uses it. raSnap is its counters as of the last batch that
	// touched it, for Stats on other goroutines.
	ra     *reasm.Reassembler
	raMu   sync.Mutex
	raSnap reasm.Stats
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

// reassemble passes the outer fragments among the k packets of ew.pk
// (ciphertext side) to the worker's reassembler: their frames are freed,
// except the one that completes a packet, which receives the reassembled
// packet (see reassembled). It returns the new batch length.
func (ew *engineWorker) reassemble(k int) int {
	now, frags := int64(-1), false
	m := 0
	for i := range k {
		p := ew.pk[i]
		if now < 0 {
			now = int64(time.Since(ew.rt.epoch))
		}
		out, res := ew.ra.Add(p.Buf[p.Off:p.Off+p.Len], now)
		if res != reasm.NotFragment {
			frags = true
			if res != reasm.Complete || !ew.reassembled(&p, ew.dataStart(&p), out) {
				ew.queueFree(Desc{Addr: p.Meta})
				continue
			}
		}
		ew.pk[m] = p
		m++
	}
	for i := m; i < k; i++ {
		ew.pk[i].Buf = nil
	}
	if frags {
		ew.publishReasm()
	}
	return m
}

// dataStart is where the data of p's frame starts: where the kernel put
// the received frame (or the gathered one in a jumbo buffer).
func (ew *engineWorker) dataStart(p *sa.Packet) int {
	if isJumbo(p.Meta) {
		return jumboHeadroom
	}
	return ew.rt.u.DataOffset()
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

// afterOutbound gives the bypassed packets among the k packets of ew.pk
// (after Outbound) back the MSS beforeOutbound clamped: they are sent in
// clear, not through the tunnel.
func (ew *engineWorker) afterOutbound(k int) {
	if ew.e.cfg.ClampMSS == 0 {
		return
	}
	for i := range k {
		p := &ew.pk[i]
		if ew.mssOld[i] != 0 && p.Verdict == sa.VerdictBypass {
			inet.SetMSS(p.Buf[p.Off:p.Off+p.Len], int(ew.mssOld[i]))
			ew.c.mssClamped.Add(^uint64(0))
		}
	}
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
	if ew.emit(p, true) {
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
	if ew.nOut[sideCipher]+count > len(ew.out[sideCipher]) || ew.nOut[sidePlain]+count > len(ew.out[sidePlain]) ||
		ew.nFree+count > len(ew.free) {
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
