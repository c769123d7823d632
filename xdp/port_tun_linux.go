//go:build linux

package xdp

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp/internal/vnet"
)

// tunPortRead is the size of one TUNPort read buffer: the virtio-net
// header and the largest packet the kernel hands a TUN reader (a GSO
// super-packet of at most 64 KiB).
const tunPortRead = vnet.HdrLen + 1<<16

// TUNPort is a plaintext-side EnginePort (EngineConfig.PlainPort) over
// a TUN device opened with offloads (OpenTUNOffload, or the queues of
// OpenTUNQueues): the route-based mode without a reader goroutine and
// without a copy between the device and the engine.
//
// Worker w owns queue w mod len(tuns): it polls the queue's descriptor
// with its other ports (PollFDs: an epoll instance holding it, which
// drops it once the device is deleted, so no worker spins on a deleted
// TUN's everlasting poll error), reads it itself without blocking, and
// splits each TCP or UDP super-packet the kernel hands over (GSO) into
// MTU-sized packets straight into UMEM frames, finishing the checksums
// the kernel left partial; the packets are then encrypted on the same
// core that just wrote them. On transmit (decrypted packets) it groups
// consecutive TCP segments of a flow into super-packets (GRO, each
// segment's checksum verified first) and writes each with one
// writev(2) whose iovecs point at the packets where they lie in their
// frames: the kernel copies them once, nothing is copied in user space.
// Neither direction allocates. The splitting and coalescing are
// xdp/internal/vnet's.
//
// Compared with ServeTUN and Deliver (which also work on an offload
// device), this saves a copy per packet, a goroutine and its wake-ups
// per batch; use one or the other for a device, not both. The TUNs stay
// the caller's: close them after the engine stopped. Their Stats count
// what the port read and wrote.
type TUNPort struct {
	tuns []*TUN
	fds  []int
	env  PortEnv
	q    []*tunQueue
}

// tunQueue is one worker's state: its queue's descriptor, the epoll
// instance the worker polls for it, read buffer, splitter and write
// plan. Only the worker touches it; the counters are the queue's TUN's
// (one worker per queue writes them).
//
// Invariant (no spin on a deleted device): a TUN deleted under the port
// polls as an error forever and its reads fail with EBADFD; the worker
// polls ep, not fd, and the first read that fails with EBADFD takes fd
// out of ep (gone), so the worker sleeps its full timeout from then on.
type tunQueue struct {
	fd   int
	ep   int  // epoll instance holding fd while the device exists
	gone bool // the device was deleted: fd is no longer read or polled
	t    *TUN
	rd   []byte // tunPortRead bytes
	sp   vnet.Splitter
	co   vnet.Coalescer
	hdr  [vnet.HdrLen]byte
	iov  [vnet.MaxPackets + 1]unix.Iovec

	rx, tx, drops atomic.Uint64
	_             [64]byte
}

// NewTUNPort returns a port over tuns, which must all have been opened
// with offloads (TUN.Offload).
func NewTUNPort(tuns []*TUN) (*TUNPort, error) {
	if len(tuns) == 0 {
		return nil, fmt.Errorf("%w: TUNPort needs a TUN", ErrInvalidConfig)
	}
	p := &TUNPort{tuns: tuns, fds: make([]int, len(tuns))}
	for i, t := range tuns {
		if t == nil || t.off == nil {
			return nil, fmt.Errorf("%w: TUNPort needs TUNs opened with offloads", ErrInvalidConfig)
		}
		// The descriptor through RawConn: File.Fd would make it blocking.
		rc, err := t.f.SyscallConn()
		if err != nil {
			return nil, fmt.Errorf("xdp: TUN %s: %w", t.name, err)
		}
		if err := rc.Control(func(fd uintptr) { p.fds[i] = int(fd) }); err != nil {
			return nil, fmt.Errorf("xdp: TUN %s: %w", t.name, tunErr(err))
		}
	}
	return p, nil
}

// Bind implements EnginePort.
func (p *TUNPort) Bind(env PortEnv) error {
	p.env = env
	p.q = make([]*tunQueue, env.Workers)
	for w := range p.q {
		i := w % len(p.tuns)
		ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err == nil {
			ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(p.fds[i])}
			if err = unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, p.fds[i], &ev); err != nil {
				unix.Close(ep)
			}
		}
		if err != nil {
			p.q = p.q[:w]
			p.Unbind()
			return fmt.Errorf("xdp: TUN %s: epoll: %w", p.tuns[i].name, err)
		}
		p.q[w] = &tunQueue{fd: p.fds[i], ep: ep, t: p.tuns[i], rd: make([]byte, tunPortRead)}
	}
	return nil
}

// Unbind implements EnginePort.
func (p *TUNPort) Unbind() error {
	for _, q := range p.q {
		unix.Close(q.ep)
	}
	p.q = nil
	return nil
}

// Maintain implements EnginePort.
func (p *TUNPort) Maintain(int, bool) {}

// InFlight implements EnginePort: writes finish in Transmit.
func (p *TUNPort) InFlight(int) int { return 0 }

// PollFDs implements EnginePort: an epoll instance holding the worker's
// queue (see tunQueue: none once the device is deleted).
func (p *TUNPort) PollFDs(w int) []int { return []int{p.q[w].ep} }

// Stats implements EnginePort.
func (p *TUNPort) Stats() PortStats {
	var st PortStats
	for _, q := range p.q {
		st.RX += q.rx.Load()
		st.TX += q.tx.Load()
		st.Drops += q.drops.Load()
	}
	return st
}

// Receive implements EnginePort: it reads the worker's queue until pkts
// are full or the queue is empty, splitting each packet read into
// frames. A super-packet whose segments do not all fit in pkts is
// continued by the next Receive.
func (p *TUNPort) Receive(w int, pkts []sa.Packet) int {
	q := p.q[w]
	n := 0
	for n < len(pkts) {
		if q.sp.Remaining() == 0 && !q.read() {
			break
		}
		want := min(len(pkts)-n, q.sp.Remaining())
		k := p.env.Alloc(pkts[n : n+want])
		room := p.env.MaxPacket()
		for i := range k {
			pk := &pkts[n+i]
			m, err := q.sp.Next(pk.Buf[pk.Off : pk.Off+room])
			if err != nil {
				// A segment longer than a frame takes: the rest of the
				// super-packet goes too.
				q.t.oversize.Add(1)
				q.drops.Add(uint64(q.sp.Remaining()))
				q.sp.Reset(vnet.Hdr{}, nil)
				p.env.Free(pkts[n+i : n+k])
				k = i
				break
			}
			pk.Len = m
		}
		n += k
		if k < want && q.sp.Remaining() > 0 {
			// No free frame for the rest of this packet: lost (counted),
			// after the segments that found one; waiting would leave
			// segments no poll(2) reports.
			q.t.readDrops.Add(1)
			q.drops.Add(uint64(q.sp.Remaining()))
			q.sp.Reset(vnet.Hdr{}, nil)
		}
	}
	q.rx.Add(uint64(n))
	return n
}

// read reads one packet from the queue into the splitter; false when
// the queue has none (or failed).
func (q *tunQueue) read() bool {
	if q.gone {
		return false
	}
	for {
		r, _, errno := unix.Syscall(unix.SYS_READ, uintptr(q.fd), uintptr(unsafe.Pointer(&q.rd[0])), uintptr(len(q.rd)))
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EBADFD:
			// The device was deleted: it never comes back on this
			// descriptor. Stop polling it (tunQueue's invariant); the
			// link monitor reports the device gone.
			q.gone = true
			unix.EpollCtl(q.ep, unix.EPOLL_CTL_DEL, q.fd, nil)
			return false
		case errno != 0:
			// EAGAIN: nothing queued; other errors lose one packet.
			return false
		}
		q.t.reads.Add(1)
		h, err := vnet.DecodeHdr(q.rd[:r])
		if err == nil {
			err = q.sp.Reset(h, q.rd[vnet.HdrLen:r])
		}
		if err != nil {
			q.t.readDrops.Add(1)
			q.drops.Add(1)
			continue
		}
		if segs := q.sp.Remaining(); segs > 1 {
			q.t.splitSupers.Add(1)
			q.t.splitSegs.Add(uint64(segs))
		}
		return true
	}
}

// Transmit implements EnginePort: it coalesces pkts into super-packets
// and writes each with one writev(2), then frees the frames.
func (p *TUNPort) Transmit(w int, pkts []sa.Packet) {
	q := p.q[w]
	for start := 0; start < len(pkts); {
		q.co.Reset()
		end := start
		for end < len(pkts) {
			pk := &pkts[end]
			if !q.co.Add(pk.Buf[pk.Off : pk.Off+pk.Len]) {
				break
			}
			end++
		}
		q.co.Finish()
		q.write(pkts[start:end])
		start = end
	}
	q.tx.Add(uint64(len(pkts)))
	p.env.Free(pkts)
}

// write writes the coalescer's plan for pkts.
func (q *tunQueue) write(pkts []sa.Packet) {
	for i := range q.co.Writes() {
		h, idx, skip := q.co.Write(i)
		h.Encode(q.hdr[:])
		q.iov[0] = unix.Iovec{Base: &q.hdr[0]}
		q.iov[0].SetLen(vnet.HdrLen)
		n := 1
		for j, x := range idx {
			pk := &pkts[x]
			b := pk.Buf[pk.Off : pk.Off+pk.Len]
			if j > 0 {
				b = b[skip:]
			}
			if len(b) == 0 {
				continue
			}
			q.iov[n] = unix.Iovec{Base: &b[0]}
			q.iov[n].SetLen(len(b))
			n++
		}
		for {
			_, _, errno := unix.Syscall(unix.SYS_WRITEV, uintptr(q.fd), uintptr(unsafe.Pointer(&q.iov[0])), uintptr(n))
			if errno == unix.EINTR {
				continue
			}
			if errno != 0 {
				q.t.writeErrs.Add(1)
				q.drops.Add(uint64(len(idx)))
			}
			break
		}
		q.t.writes.Add(1)
		if len(idx) > 1 {
			q.t.groSupers.Add(1)
			q.t.groSegs.Add(uint64(len(idx)))
		}
		clear(q.iov[:n]) // no pointers into frames the UMEM reuses
	}
}
