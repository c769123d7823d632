//go:build linux

package xdp

import "golang.org/x/sys/unix"

// Jumbo frames (EngineConfig.MultiBuffer): the kernel hands a frame
// longer than a UMEM frame to the socket as a chain of descriptors. The
// worker gathers a chain into one of its jumbo buffers (a copy: ESP
// needs the packet contiguous), frees the chain's frames, and processes
// the packet there like any other; a packet in a jumbo buffer is sent by
// copying it into a new chain of frames. A packet's Meta marks a jumbo
// buffer with jumboMeta. Packets that fit a frame take the usual path,
// without a copy.

const (
	// jumboBufs is the number of jumbo buffers per worker: one per
	// received descriptor of a batch of at most MaxBatch (a chain takes
	// one for two or more descriptors, a spilled packet one for one;
	// about 640 KiB per worker).
	jumboBufs = MaxBatch
	// jumboHeadroom is the room before a gathered frame for the ESP and
	// outer headers (and the Ethernet header they replace).
	jumboHeadroom = 512
	// jumboMaxFrame is the longest frame gathered: MaxJumboMTU, an
	// Ethernet header and two VLAN tags.
	jumboMaxFrame = MaxJumboMTU + 22
	// jumboBufSize: headroom, frame and room for the ESP trailer.
	jumboBufSize = jumboHeadroom + jumboMaxFrame + 128
	// maxChain is the most descriptors of one jumbo packet (the kernel's
	// limit is MAX_SKB_FRAGS+1 = 18).
	maxChain = 18
)

// jumboState is a worker's jumbo buffers.
type jumboState struct {
	buf [][]byte // jumboBufs buffers of jumboBufSize, nil without MultiBuffer
	n   int      // buffers in use in the current batch
	len [jumboBufs]int
}

func newJumboState(on bool) jumboState {
	var j jumboState
	if on {
		j.buf = make([][]byte, jumboBufs)
		for i := range j.buf {
			j.buf[i] = make([]byte, jumboBufSize)
		}
	}
	return j
}

// gather copies the chain of received descriptors starting at q.rxD[i]
// (of n) into a jumbo buffer and frees its frames. It returns the
// buffer's index, or -1 when the chain was dropped (counted), and the
// number of descriptors the chain took.
func (x *xskPort) gather(q *xskQueue, i, n int) (int, int) {
	end := i
	for end < n && q.rxD[end].Options&unix.XDP_PKT_CONTD != 0 {
		end++
	}
	if end == n { // cut chain: Receive never returns one
		end = n - 1
	}
	used := end - i + 1
	j := q.jumbo.n
	ok := q.jumbo.buf != nil && j < len(q.jumbo.buf)
	total := 0
	u := x.u
	for _, d := range q.rxD[i : end+1] {
		if ok {
			if total+int(d.Len) > jumboMaxFrame {
				ok = false
			} else {
				buf, off := u.Frame(d)
				total += copy(q.jumbo.buf[j][jumboHeadroom+total:], buf[off:off+int(d.Len)])
			}
		}
		q.dropFrame(d)
	}
	if !ok {
		q.c.jumboDrops.Add(1)
		return -1, used
	}
	q.jumbo.n++
	q.jumbo.len[j] = total
	q.c.jumboRX.Add(1)
	return j, used
}

// spill copies pkt, a whole frame received in one UMEM frame, into a
// free jumbo buffer of q and returns its index, or -1 (no MultiBuffer,
// or no buffer free: the packet stays in its frame). With MultiBuffer
// the kernel fills a UMEM frame to its end before it starts a chain, so
// a packet on the plaintext side can arrive in one frame without the
// tailroom ESP needs (pad, trailer, ICV): in its frame it would be
// dropped as DropNoRoom, and a TCP segment of that size would be
// dropped on every retransmission (the connection stalls). In a jumbo
// buffer it is encrypted and sent as a chain. Invariant: every packet
// the plaintext side accepts (up to the port's MTU) has room to be
// encrypted.
func (q *xskQueue) spill(pkt []byte) int {
	j := q.jumbo.n
	if q.jumbo.buf == nil || j >= len(q.jumbo.buf) || len(pkt) > jumboMaxFrame {
		return -1
	}
	q.jumbo.len[j] = copy(q.jumbo.buf[j][jumboHeadroom:], pkt)
	q.jumbo.n++
	return j
}

// emitJumbo writes frame (a whole Ethernet frame in a jumbo buffer) into
// a chain of new UMEM frames, their descriptors into ds (room for
// maxChain), and returns how many; 0 when the packet is dropped and
// counted (no free frames, too long).
func (x *xskPort) emitJumbo(q *xskQueue, frame []byte, ds []Desc) int {
	u := x.u
	room := u.cfg.FrameSize - int(u.dataOff)
	k := (len(frame) + room - 1) / room
	if k > maxChain || q.jumbo.buf == nil {
		q.c.jumboDrops.Add(1)
		return 0
	}
	ds = ds[:k]
	if got := u.Alloc(ds); got < k {
		u.Free(ds[:got])
		q.c.jumboDrops.Add(1)
		return 0
	}
	for i := range ds {
		buf, off := u.Frame(ds[i])
		ds[i].Len = uint32(copy(buf[off:off+room], frame[i*room:]))
		ds[i].Options = 0
		if i < k-1 {
			ds[i].Options = unix.XDP_PKT_CONTD
		}
	}
	q.c.jumboTX.Add(1)
	return k
}
