package sa

import "sync/atomic"

// ring is a bounded single-producer single-consumer queue of packets,
// the hand-off path between two workers in the Sharded and PerCPU modes.
// Every ordered pair of workers has its own ring, so no two producers
// ever write the same index and neither side needs more than an atomic
// load and store per packet.
type ring struct {
	head atomic.Uint64 // next slot to read; written by the consumer
	_    [cacheLine - 8]byte
	tail atomic.Uint64 // next slot to write; written by the producer
	_    [cacheLine - 8]byte
	buf  []Packet
	mask uint64
}

func newRing(n int) *ring {
	size := 1
	for size < n {
		size <<= 1
	}
	return &ring{buf: make([]Packet, size), mask: uint64(size - 1)}
}

// push copies *p into the ring; false when it is full.
func (r *ring) push(p *Packet) bool {
	t := r.tail.Load()
	if t-r.head.Load() > r.mask {
		return false
	}
	r.buf[t&r.mask] = *p
	r.tail.Store(t + 1)
	return true
}

// pop moves the oldest packet into *p; false when the ring is empty.
func (r *ring) pop(p *Packet) bool {
	h := r.head.Load()
	if h == r.tail.Load() {
		return false
	}
	e := &r.buf[h&r.mask]
	*p = *e
	*e = Packet{} // drop references to the buffer and SA for the GC
	r.head.Store(h + 1)
	return true
}

func (r *ring) len() int { return int(r.tail.Load() - r.head.Load()) }
