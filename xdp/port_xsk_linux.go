//go:build linux

package xdp

import (
	"encoding/binary"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/sa"
)

// xskPort is the EnginePort of an AF_XDP side (EngineConfig.Cipher or
// Plain): the engine's sockets on one interface, Ethernet framing with
// the side's static MACs and VLAN, and jumbo chains (MultiBuffer). Its
// frames are the UMEM's own, so a packet received on one xskPort leaves
// on the other without a copy. Start builds it; Bind does nothing.
type xskPort struct {
	rt        *engineRun
	u         *UMEM
	mac, next [6]byte
	vlan      uint16
	hl        int // Ethernet header length: 14, 18 with VLAN
	// tail is the room a received packet needs after it in its frame
	// (the plaintext side: esp.MaxTailroom, for encryption in place);
	// with MultiBuffer a packet with less is copied to a jumbo buffer
	// (xskQueue.spill).
	tail int
	// q[w] is worker w's state, allocated on its own so workers write
	// nothing that shares a cache line.
	q []*xskQueue
}

// xskQueue is one worker's part of an xskPort.
type xskQueue struct {
	// tx is the socket the worker transmits on (queue w % Queues); rx
	// the sockets it receives on (its socket on every queue with
	// SteerSPI and SteerSpread, tx alone with SteerQueue), next the
	// one Receive tries first.
	tx   *Socket
	rx   []*Socket
	next int
	// c is the worker's counters, rxCount its CipherRX or PlainRX.
	c       *engCounters
	rxCount *atomic.Uint64
	rxD     [MaxBatch]Desc
	txD     [2 * MaxBatch]Desc
	free    [MaxBatch]Desc
	nFree   int
	jumbo   jumboState // MultiBuffer (jumbo_linux.go)
}

func newXSKPort(rt *engineRun, mac, next [6]byte, vlan int) *xskPort {
	x := &xskPort{rt: rt, u: rt.u, mac: mac, next: next, vlan: uint16(vlan), hl: 14}
	if vlan != 0 {
		x.hl = 18
	}
	return x
}

// addWorker adds the state of the next worker (counting its packets in
// c and rx).
func (x *xskPort) addWorker(c *engCounters, rx *atomic.Uint64, multi bool) *xskQueue {
	q := &xskQueue{c: c, rxCount: rx, jumbo: newJumboState(multi)}
	x.q = append(x.q, q)
	return q
}

// Bind implements EnginePort: Start already built the port.
func (x *xskPort) Bind(PortEnv) error { return nil }

// Unbind implements EnginePort: it closes the sockets.
func (x *xskPort) Unbind() error {
	var err error
	for _, q := range x.q {
		for _, s := range q.rx {
			if e := s.Close(); e != nil && err == nil {
				err = e
			}
		}
		q.rx = nil
	}
	return err
}

// PollFDs implements EnginePort: the worker's RX sockets.
func (x *xskPort) PollFDs(w int) []int {
	var fds []int
	for _, s := range x.q[w].rx {
		fds = append(fds, s.fd)
	}
	return fds
}

// Stats implements EnginePort: the sockets' packets.
func (x *xskPort) Stats() PortStats {
	var st PortStats
	for _, q := range x.q {
		for _, s := range q.rx {
			ss, _ := s.Stats()
			st.RX += ss.RXPackets
			st.TX += ss.TXPackets
		}
		st.Drops += q.c.txFull.Load()
	}
	return st
}

// Maintain implements EnginePort: before a round it reaps the
// completions of the worker's TX socket and refills the fill rings of
// the queues it receives on (a queue's sockets share one ring: whichever
// worker has work keeps it filled), except while the engine stops;
// idle, it pushes out what the TX ring holds (and while stopping reaps
// completions too).
func (x *xskPort) Maintain(w int, idle bool) {
	q := x.q[w]
	stopping := x.rt.stop.Load()
	if !idle {
		q.tx.Complete()
		if !stopping {
			for _, s := range q.rx {
				s.Refill()
			}
		}
		return
	}
	if q.tx.tx.prodPending() > 0 {
		q.tx.kick()
	}
	if stopping {
		q.tx.Kick()
		q.tx.Complete()
	}
}

// InFlight implements EnginePort: the frames transmitted on the
// worker's TX socket's queue and not yet completed (one lock).
func (x *xskPort) InFlight(w int) int { return x.q[w].tx.TXOutstanding() }

// Receive implements EnginePort: one batch from the first of the
// worker's sockets (in turn) that has packets, past their Ethernet
// headers. Frames without IP, or not of the side's VLAN, are dropped
// (NotIP, VLANDrops); a jumbo chain is gathered into a jumbo buffer.
func (x *xskPort) Receive(w int, pkts []sa.Packet) int {
	q := x.q[w]
	for range q.rx {
		s := q.rx[q.next]
		q.next++
		if q.next == len(q.rx) {
			q.next = 0
		}
		if n := s.Receive(q.rxD[:len(pkts)]); n > 0 {
			q.rxCount.Add(uint64(n))
			k := x.load(q, n, pkts)
			if q.nFree > 0 {
				x.u.Free(q.free[:q.nFree])
				q.nFree = 0
			}
			return k
		}
	}
	return 0
}

// dropFrame queues d (not a jumbo buffer) to be freed after the batch.
func (q *xskQueue) dropFrame(d Desc) {
	if isJumbo(d.Addr) {
		return // a jumbo buffer: reused with the next batch
	}
	q.free[q.nFree] = d
	q.nFree++
}

// load turns the n descriptors in q.rxD into packets past their L2
// header and returns how many.
func (x *xskPort) load(q *xskQueue, n int, pkts []sa.Packet) int {
	u := x.u
	k := 0
	q.jumbo.n = 0
	for i := 0; i < n; i++ {
		d := q.rxD[i]
		var buf []byte
		off, length, meta := 0, int(d.Len), d.Addr&^u.frameMask
		if d.Options&unix.XDP_PKT_CONTD != 0 {
			// A jumbo frame's chain (MultiBuffer): gathered, its frames
			// freed.
			j, used := x.gather(q, i, n)
			i += used - 1
			if j < 0 {
				continue
			}
			buf, off, length, meta = q.jumbo.buf[j], jumboHeadroom, q.jumbo.len[j], jumboMeta|uint64(j)
			d = Desc{Addr: meta}
		} else {
			buf, off = u.Frame(d)
			if len(buf)-off-length < x.tail {
				if j := q.spill(buf[off : off+length]); j >= 0 {
					q.dropFrame(d)
					buf, off, meta = q.jumbo.buf[j], jumboHeadroom, jumboMeta|uint64(j)
					d = Desc{Addr: meta}
				}
			}
		}
		frame := buf[off : off+length]
		h := l2Len(frame)
		if h == 0 {
			q.c.notIP.Add(1)
			q.dropFrame(d)
			continue
		}
		if !vlanOK(frame, h, x.vlan) {
			q.c.vlanDrops.Add(1)
			q.dropFrame(d)
			continue
		}
		pkts[k] = sa.Packet{Buf: buf, Off: off + h, Len: length - h, Meta: meta}
		k++
	}
	return k
}

// Transmit implements EnginePort: each packet gets the side's Ethernet
// header in its headroom and goes on the worker's TX ring, a packet in a
// jumbo buffer as a new chain of frames.
func (x *xskPort) Transmit(w int, pkts []sa.Packet) {
	q := x.q[w]
	hl := x.hl
	n := 0
	for i := range pkts {
		p := &pkts[i]
		et := uint16(0x0800)
		if p.Buf[p.Off]>>4 == 6 {
			et = 0x86dd
		}
		h := p.Buf[p.Off-hl : p.Off]
		copy(h[0:6], x.next[:])
		copy(h[6:12], x.mac[:])
		if x.vlan != 0 {
			binary.BigEndian.PutUint16(h[12:], 0x8100)
			binary.BigEndian.PutUint16(h[14:], x.vlan)
		}
		binary.BigEndian.PutUint16(h[hl-2:], et)
		if isJumbo(p.Meta) {
			if n+maxChain > len(q.txD) {
				x.transmit(q, q.txD[:n])
				n = 0
			}
			n += x.emitJumbo(q, p.Buf[p.Off-hl:p.Off+p.Len], q.txD[n:])
			continue
		}
		q.txD[n] = Desc{Addr: p.Meta + uint64(p.Off-hl), Len: uint32(p.Len + hl)}
		n++
		if n == len(q.txD) {
			x.transmit(q, q.txD[:n])
			n = 0
		}
	}
	if n > 0 {
		x.transmit(q, q.txD[:n])
	}
}

// transmit puts txs on the worker's TX ring, reaping completions and
// retrying a few times while it is full; what still does not fit is
// freed (TXFull).
func (x *xskPort) transmit(q *xskQueue, txs []Desc) {
	for attempt := 0; len(txs) > 0 && attempt < 8; attempt++ {
		k := q.tx.Transmit(txs)
		txs = txs[k:]
		if len(txs) > 0 {
			q.tx.Complete()
		}
	}
	if len(txs) > 0 {
		x.u.Free(txs)
		q.c.txFull.Add(uint64(len(txs)))
	}
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
