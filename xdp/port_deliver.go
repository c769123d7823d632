package xdp

import (
	"sync/atomic"

	"github.com/espxdp/espxdp/sa"
)

// deliverPort is the EnginePort of EngineConfig.Deliver: transmit-only,
// it hands each batch to the callback as slices of the frames and frees
// the frames when the callback returns. (Engine.Send is the receive
// side of embedders; it works with every plaintext port.)
type deliverPort struct {
	fn  DeliverFunc
	env PortEnv
	q   []*deliverQueue
}

// deliverQueue is one worker's part of a deliverPort.
type deliverQueue struct {
	dlv [2 * MaxBatch][]byte
	tx  atomic.Uint64
}

func (d *deliverPort) Bind(env PortEnv) error {
	d.env = env
	d.q = make([]*deliverQueue, env.Workers)
	for i := range d.q {
		d.q[i] = &deliverQueue{}
	}
	return nil
}

func (d *deliverPort) Unbind() error                    { return nil }
func (d *deliverPort) Receive(int, []sa.Packet) int     { return 0 }
func (d *deliverPort) Maintain(int, bool)               {}
func (d *deliverPort) InFlight(int) int                 { return 0 }
func (d *deliverPort) PollFDs(int) []int                { return nil }
func (d *deliverPort) Transmit(w int, pkts []sa.Packet) { d.deliver(d.q[w], pkts) }
func (d *deliverPort) deliver(q *deliverQueue, pkts []sa.Packet) {
	for len(pkts) > 0 {
		n := min(len(pkts), len(q.dlv))
		for i := range n {
			p := &pkts[i]
			q.dlv[i] = p.Buf[p.Off : p.Off+p.Len]
		}
		d.fn(q.dlv[:n])
		clear(q.dlv[:n])
		d.env.Free(pkts[:n])
		q.tx.Add(uint64(n))
		pkts = pkts[n:]
	}
}

func (d *deliverPort) Stats() PortStats {
	var st PortStats
	for _, q := range d.q {
		st.TX += q.tx.Load()
	}
	return st
}
