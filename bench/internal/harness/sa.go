package harness

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/sa/replay"
)

var (
	gwA   = netip.MustParseAddr("192.0.2.1")
	gwB   = netip.MustParseAddr("198.51.100.2")
	hostA = netip.MustParseAddr("10.1.0.5")
	hostB = netip.MustParseAddr("10.2.0.7")
)

// batchLen is the number of packets per Inbound/Outbound call.
const batchLen = 32

// innerPacket builds an IPv4/UDP packet of total length n (≥ 28) with a
// seeded payload.
func innerPacket(n int, seed uint64) []byte {
	n = max(n, 28)
	p := payloadBuf(n, seed)[esp.MaxHeadroom : esp.MaxHeadroom+n]
	p = append([]byte(nil), p...)
	h := p[:20]
	clear(h)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(n))
	h[8], h[9] = 64, 17
	a, b := hostA.As4(), hostB.As4()
	copy(h[12:], a[:])
	copy(h[16:], b[:])
	var s uint32
	for i := 0; i < 20; i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	binary.BigEndian.PutUint16(h[10:], ^uint16(s))
	u := p[20:28]
	binary.BigEndian.PutUint16(u[0:], 1234)
	binary.BigEndian.PutUint16(u[2:], 5678)
	binary.BigEndian.PutUint16(u[4:], uint16(n-20))
	binary.BigEndian.PutUint16(u[6:], 0) // no UDP checksum (IPv4 allows it)
	return p
}

// saPair builds an outbound SA (at A) and the matching inbound SA (at B)
// for transform tr with seeded keys.
func saPair(tr string, spi uint32, seed uint64, mod func(*sa.Config)) (out, in *sa.SA, err error) {
	t, err := esp.ParseTransform(tr)
	if err != nil {
		return nil, nil, err
	}
	key, auth := keys(t, seed+uint64(spi))
	oc := sa.Config{Name: "bench", SPI: spi, Direction: sa.Out, Mode: esp.Tunnel, Local: gwA, Remote: gwB,
		Transform: t, Key: key, AuthKey: auth, ReplayWindow: sa.MaxReplayWindow}
	if mod != nil {
		mod(&oc)
	}
	ic := oc
	ic.Direction = sa.In
	ic.Local, ic.Remote = oc.Remote, oc.Local
	if out, err = sa.New(oc); err != nil {
		return nil, nil, err
	}
	if in, err = sa.New(ic); err != nil {
		return nil, nil, err
	}
	return out, in, nil
}

// batch is a batch of packets with their own buffers.
type batch struct {
	bufs  [][]byte
	pkts  []sa.Packet
	inner []byte
}

func newBatch(inner []byte) *batch {
	b := &batch{bufs: make([][]byte, batchLen), pkts: make([]sa.Packet, batchLen), inner: inner}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, esp.MaxHeadroom+len(inner)+esp.MaxTailroom)
	}
	return b
}

// refill puts the inner packet back into every buffer, bound to tun.
func (b *batch) refill(tun *sa.Tunnel) {
	for i := range b.pkts {
		copy(b.bufs[i][esp.MaxHeadroom:], b.inner)
		b.pkts[i].Reset(b.bufs[i], esp.MaxHeadroom, len(b.inner))
		b.pkts[i].Tunnel = tun
	}
}

// count returns the packets with VerdictOK and the others.
func (b *batch) count() (ok, bad int) {
	for i := range b.pkts {
		if b.pkts[i].Verdict == sa.VerdictOK {
			ok++
		} else {
			bad++
		}
	}
	return ok, bad
}

// Lookup measures SAD.Lookup with n inbound SAs, in a scattered order.
func Lookup(n int, budget time.Duration, seed uint64) (Result, error) {
	res := Result{Suite: "sa", Kind: KindLookup, SAs: n, Op: "lookup"}
	if n < 1 {
		return res, fmt.Errorf("harness: lookup with %d SAs", n)
	}
	d := sa.NewSAD(sa.SADOptions{})
	// The transform does not matter to the lookup; ChaCha20-Poly1305 with
	// no replay window makes the smallest SAs (about 1.9 KB each).
	t := esp.MustParseTransform("chacha20poly1305")
	key, _ := keys(t, seed)
	spis := make([]uint32, n)
	for i := range spis {
		spis[i] = uint32(i+1) * 2654435761 // scattered, like random SPIs
		s, err := sa.New(sa.Config{SPI: spis[i], Direction: sa.In, Mode: esp.Transport, Transform: t, Key: key, ReplayWindow: sa.ReplayDisabled})
		if err != nil {
			return res, err
		}
		if err := d.Add(s); err != nil {
			return res, err
		}
	}
	var miss atomic.Int64
	var i uint64
	look := func(k int) time.Duration {
		m := 0
		t0 := time.Now()
		for range k {
			i++
			if d.Lookup(spis[(i*0x9E3779B97F4A7C15>>32)%uint64(n)]) == nil {
				m++
			}
		}
		el := time.Since(t0)
		miss.Add(int64(m))
		return el
	}
	ns, pk := solo(256, budget, look)
	if miss.Load() != 0 {
		return res, fmt.Errorf("harness: SAD lookup missed %d SAs", miss.Load())
	}
	res.add("ns/op", ns, UnitNs)
	res.add("allocs/op", allocsPer(1000, func() { look(1) }), UnitAllocs)
	res.add("packets", float64(pk), UnitPackets)
	runtime.KeepAlive(d)
	d, spis = nil, nil
	debug.FreeOSMemory() // give a large table back before the next step
	return res, nil
}

// Replay measures replay.Window Check+Update in order, without a lock
// (as the Sharded and PerCPU modes run it) and under a mutex (as Shared
// does).
func Replay(budget time.Duration) ([]Result, error) {
	var out []Result
	for _, locked := range []bool{false, true} {
		w, err := replay.New(sa.DefaultReplayWindow, true)
		if err != nil {
			return nil, err
		}
		var mu sync.Mutex
		var seq uint32
		rejected := 0
		step := func(k int) time.Duration {
			t0 := time.Now()
			for range k {
				seq++
				if locked {
					mu.Lock()
				}
				full, ok := w.Check(seq)
				if ok && !w.Update(full) {
					ok = false
				}
				if locked {
					mu.Unlock()
				}
				if !ok {
					rejected++
				}
			}
			return time.Since(t0)
		}
		ns, pk := solo(1024, budget, step)
		if rejected != 0 {
			return nil, fmt.Errorf("harness: replay window rejected %d in-order packets", rejected)
		}
		op := "check+update"
		if locked {
			op = "check+update-locked"
		}
		r := Result{Suite: "sa", Kind: KindReplay, Op: op}
		r.add("ns/op", ns, UnitNs)
		r.add("allocs/op", allocsPer(1000, func() { step(1) }), UnitAllocs)
		r.add("packets", float64(pk), UnitPackets)
		out = append(out, r)
	}
	return out, nil
}

// espTrip is one packet's work with esp alone: encapsulate in tunnel
// mode, parse the outer header, open, decapsulate.
type espTrip struct {
	c     *esp.Cipher
	s     *esp.Scratch
	o     esp.Outer
	buf   []byte
	inner []byte
	seq   uint64
	p     esp.Parsed
	err   error
}

func (e *espTrip) run() {
	copy(e.buf[esp.MaxHeadroom:], e.inner)
	e.seq++
	pkt, err := e.c.EncapTunnel(e.s, e.buf, esp.MaxHeadroom, len(e.inner), 0x1001, e.seq, &e.o)
	if err == nil {
		err = esp.ParseOuter(pkt, 0, &e.p)
	}
	if err == nil {
		var pl []byte
		var nh byte
		if pl, nh, err = e.c.Open(e.s, pkt[e.p.ESPOffset:e.p.Len], e.seq); err == nil {
			_, err = esp.DecapTunnel(pl, nh)
		}
	}
	if err != nil && e.err == nil {
		e.err = err
	}
}

// VsESP compares the processor's round trip (Outbound at A, Inbound at
// B, batches of 32) with esp alone doing the same encapsulation and
// crypto, interleaved batch by batch, for inner packets of n bytes.
func VsESP(tr string, n int, budget time.Duration, seed uint64) (Result, error) {
	res := Result{Suite: "sa", Kind: KindVsESP, Transform: tr, Size: n, Op: "round-trip"}
	out, in, err := saPair(tr, 0x1001, seed, nil)
	if err != nil {
		return res, err
	}
	sadA, sadB := sa.NewSAD(sa.SADOptions{}), sa.NewSAD(sa.SADOptions{})
	if err := sadA.Add(out); err != nil {
		return res, err
	}
	if err := sadB.Add(in); err != nil {
		return res, err
	}
	tun := sa.NewTunnel("t")
	tun.SetOutbound(out)
	tx, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sadA})
	if err != nil {
		return res, err
	}
	rx, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sadB})
	if err != nil {
		return res, err
	}
	inner := innerPacket(n, seed)
	b := newBatch(inner)
	drops := 0
	proc := func(k int) time.Duration {
		var el time.Duration
		for done := 0; done < k; done += batchLen {
			t0 := time.Now()
			b.refill(tun)
			tx.Worker(0).Outbound(b.pkts)
			rx.Worker(0).Inbound(b.pkts)
			el += time.Since(t0)
			_, bad := b.count()
			drops += bad
		}
		return el
	}
	t, _ := esp.ParseTransform(tr)
	key, auth := keys(t, seed+0x1001)
	c, err := esp.New(esp.Config{Transform: t, Key: key, AuthKey: auth})
	if err != nil {
		return res, err
	}
	e := &espTrip{c: c, s: esp.NewScratch(), o: esp.Outer{Src: gwA, Dst: gwB},
		buf: make([]byte, esp.MaxHeadroom+len(inner)+esp.MaxTailroom), inner: inner}
	alone := func(k int) time.Duration {
		var el time.Duration
		for done := 0; done < k; done += batchLen {
			// Both sides copy the inner packet into place inside the
			// timed span (refill, run).
			t0 := time.Now()
			for range batchLen {
				e.run()
			}
			el += time.Since(t0)
		}
		return el
	}
	p := interleave(batchLen, budget, proc, alone)
	if e.err != nil {
		return res, fmt.Errorf("harness: esp alone: %w", e.err)
	}
	if drops != 0 {
		return res, fmt.Errorf("harness: processor dropped %d packets", drops)
	}
	res.add("ns/pkt", p.aNs, UnitNs)
	res.add("esp-ns/pkt", p.bNs, UnitNs)
	res.add("x-esp", p.ratio, UnitRatio)
	res.add("ns-over-esp", p.delta, UnitNs)
	if p.aNs > 0 {
		res.add("MB/s", float64(n)*1e3/p.aNs, UnitMBps)
	}
	res.add("allocs/op", allocsPer(20, func() { proc(batchLen) })/batchLen, UnitAllocs)
	res.add("packets", float64(p.packets), UnitPackets)
	return res, nil
}
