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
	// jumboMeta marks an sa.Packet.Meta (and the Desc built from it) as
	// the index of a worker's jumbo buffer rather than a UMEM frame
	// address (UMEM addresses are far below 2^63).
	jumboMeta = uint64(1) << 63
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

func isJumbo(addr uint64) bool { return addr&jumboMeta != 0 }

// jumboState is a worker's jumbo buffers.
type jumboState struct {
	buf [][]byte // jumboBufs buffers of jumboBufSize, nil without MultiBuffer
	n   int      // buffers in use in the current batch
	len [jumboBufs]int
	txD [maxChain]Desc
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

// gather copies the chain of received descriptors starting at ew.rx[i]
// (of n) into a jumbo buffer and frees its frames. It returns the
// buffer's index, or -1 when the chain was dropped (counted), and the
// number of descriptors the chain took.
func (ew *engineWorker) gather(i, n int) (int, int) {
	end := i
	for end < n && ew.rx[end].Options&unix.XDP_PKT_CONTD != 0 {
		end++
	}
	if end == n { // cut chain: Receive never returns one
		end = n - 1
	}
	used := end - i + 1
	j := ew.jumbo.n
	ok := ew.jumbo.buf != nil && j < len(ew.jumbo.buf)
	total := 0
	u := ew.rt.u
	for _, d := range ew.rx[i : end+1] {
		if ok {
			if total+int(d.Len) > jumboMaxFrame {
				ok = false
			} else {
				buf, off := u.Frame(d)
				total += copy(ew.jumbo.buf[j][jumboHeadroom+total:], buf[off:off+int(d.Len)])
			}
		}
		ew.queueFree(d)
	}
	if !ok {
		ew.c.jumboDrops.Add(1)
		return -1, used
	}
	ew.jumbo.n++
	ew.jumbo.len[j] = total
	ew.c.jumboRX.Add(1)
	return j, used
}

// spill copies pkt, a whole frame received in one UMEM frame, into a
// free jumbo buffer and returns its index, or -1 (no MultiBuffer, or
// no buffer free: the packet stays in its frame). With MultiBuffer the
// kernel fills a UMEM frame to its end before it starts a chain, so a
// packet on the plaintext side can arrive in one frame without the
// tailroom ESP needs (pad, trailer, ICV): in its frame it would be
// dropped as DropNoRoom, and a TCP segment of that size would be
// dropped on every retransmission (the connection stalls). In a jumbo
// buffer it is encrypted and sent as a chain. Invariant: every packet
// the plaintext side accepts (up to the port's MTU) has room to be
// encrypted.
func (ew *engineWorker) spill(pkt []byte) int {
	j := ew.jumbo.n
	if ew.jumbo.buf == nil || j >= len(ew.jumbo.buf) || len(pkt) > jumboMaxFrame {
		return -1
	}
	ew.jumbo.len[j] = copy(ew.jumbo.buf[j][jumboHeadroom:], pkt)
	ew.jumbo.n++
	return j
}

// emitJumbo queues frame (a whole Ethernet frame in a jumbo buffer) for
// transmission towards the plaintext or ciphertext side as a chain of
// new UMEM frames. It reports whether it did; if not (no free frames,
// too long), the packet is dropped and counted.
func (ew *engineWorker) emitJumbo(frame []byte, toPlain bool) bool {
	u := ew.rt.u
	room := u.cfg.FrameSize - int(u.dataOff)
	k := (len(frame) + room - 1) / room
	if k > maxChain || ew.jumbo.buf == nil {
		ew.c.jumboDrops.Add(1)
		return false
	}
	if ew.nC+k > len(ew.txC) || ew.nP+k > len(ew.txP) {
		ew.flush()
	}
	ds := ew.jumbo.txD[:k]
	if got := u.Alloc(ds); got < k {
		u.Free(ds[:got])
		ew.c.jumboDrops.Add(1)
		return false
	}
	for i := range ds {
		buf, off := u.Frame(ds[i])
		ds[i].Len = uint32(copy(buf[off:off+room], frame[i*room:]))
		ds[i].Options = 0
		if i < k-1 {
			ds[i].Options = unix.XDP_PKT_CONTD
		}
	}
	if toPlain {
		ew.nP += copy(ew.txP[ew.nP:], ds)
	} else {
		ew.nC += copy(ew.txC[ew.nC:], ds)
	}
	ew.c.jumboTX.Add(1)
	return true
}
