//go:build linux

package xdp

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Frame states. Every frame is in exactly one: on the free list, held by
// the application, or handed to the kernel through the fill ring (or TX
// ring) of one buffer pool. A frame in fill state may sit on the fill
// ring, inside the kernel, or on an RX ring; a frame in TX state on a TX
// ring, inside the kernel, or on the completion ring.
const (
	stateFree uint16 = 0
	stateApp  uint16 = 1
	// fill state of pool p: stateFillBase + 2*p; TX state: +1.
	stateFillBase uint16 = 2
	maxPools             = (1<<16 - int(stateFillBase)) / 2
)

func fillState(p *pool) uint16 { return stateFillBase + 2*uint16(p.id) }
func txState(p *pool) uint16   { return stateFillBase + 2*uint16(p.id) + 1 }

// poolKey names a kernel buffer pool: one per interface queue (and
// network namespace, because interface indices are per namespace).
type poolKey struct {
	netns   uint64
	ifindex int
	queue   int
}

// pool is one kernel buffer pool (struct xsk_buff_pool): the fill and
// completion ring pair of a UMEM on one interface queue, shared by all
// sockets of the UMEM bound to that queue.
type pool struct {
	id      int
	key     poolKey
	fill    addrRing
	comp    addrRing
	mapFD   int // the socket whose mapping fill and comp are
	sockets []*Socket

	fillOut int // frames in fill state
	txOut   int // frames in TX state
}

// UMEM is a region of packet frames registered with the kernel, with an
// allocator that knows where every frame is. It is bounded: NumFrames
// frames, allocated once, never more.
//
// All methods are safe for concurrent use; the allocator, the fill and
// completion rings and the frame states are guarded by one mutex, taken
// once per batch. A Socket's RX and TX rings are not: see Socket.
type UMEM struct {
	cfg       UMEMConfig
	mem       []byte
	frameMask uint64
	shift     uint
	dataOff   uint64

	setup      sync.Mutex // NewSocket and Close; taken before mu
	mu         sync.Mutex
	free       []uint64 // stack of free frame addresses
	state      []uint16 // per frame
	app        int
	badFree    uint64
	pools      []*pool
	sockets    []*Socket
	zeroCopy   bool // mode of the registration
	needWakeup bool
	sg         bool // the first socket was bound with XDP_USE_SG
	closed     bool
}

// NewUMEM allocates and pins a UMEM. It is registered with the kernel by
// its first socket (UMEM.NewSocket).
func NewUMEM(cfg UMEMConfig) (*UMEM, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	mem, err := unix.Mmap(-1, 0, cfg.NumFrames*cfg.FrameSize, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("xdp: mmap UMEM of %d frames: %w", cfg.NumFrames, err)
	}
	// A forked child must not share or copy-on-write the frames the
	// kernel has pinned; os/exec does not fork, but other code may.
	unix.Madvise(mem, unix.MADV_DONTFORK)
	u := &UMEM{
		cfg:       cfg,
		mem:       mem,
		frameMask: uint64(cfg.FrameSize - 1),
		shift:     uint(bits.TrailingZeros(uint(cfg.FrameSize))),
		dataOff:   uint64(cfg.Headroom + KernelHeadroom),
		free:      make([]uint64, cfg.NumFrames),
		state:     make([]uint16, cfg.NumFrames),
	}
	// Highest address at the bottom, so frames are handed out from the
	// start of the region first.
	for i := range u.free {
		u.free[i] = uint64(cfg.NumFrames-1-i) << u.shift
	}
	return u, nil
}

// Config returns the configuration with defaults filled in.
func (u *UMEM) Config() UMEMConfig { return u.cfg }

// FrameSize is the size of every frame.
func (u *UMEM) FrameSize() int { return u.cfg.FrameSize }

// DataOffset is where the kernel puts received packets in a frame
// (Headroom + KernelHeadroom), and where Alloc places packets.
func (u *UMEM) DataOffset() int { return int(u.dataOff) }

// Frame returns the whole frame that d points into and the offset of the
// packet in it: the packet is frame[off:off+int(d.Len)], the headroom
// frame[:off] and the tailroom frame[off+int(d.Len):]. For a descriptor
// outside the UMEM (or a closed UMEM) it returns nil, 0.
func (u *UMEM) Frame(d Desc) (frame []byte, off int) {
	idx := d.Addr >> u.shift
	if idx >= uint64(len(u.state)) || u.mem == nil {
		return nil, 0
	}
	base := d.Addr &^ u.frameMask
	return u.mem[base : base+u.frameMask+1 : base+u.frameMask+1], int(d.Addr & u.frameMask)
}

// Packet returns the packet bytes d points to, or nil if d does not lie
// within one frame.
func (u *UMEM) Packet(d Desc) []byte {
	f, off := u.Frame(d)
	if f == nil || off+int(d.Len) > len(f) {
		return nil
	}
	return f[off : off+int(d.Len)]
}

// SetPacket points d at bytes [off, off+n) of the frame it points into,
// e.g. after outer headers were written in the headroom.
func (u *UMEM) SetPacket(d *Desc, off, n int) error {
	if d.Addr>>u.shift >= uint64(len(u.state)) {
		return fmt.Errorf("%w: descriptor address %#x outside the UMEM", ErrInvalidConfig, d.Addr)
	}
	if off < 0 || n < 0 || off+n > u.cfg.FrameSize {
		return fmt.Errorf("%w: packet [%d, %d) outside a %d-byte frame", ErrInvalidConfig, off, off+n, u.cfg.FrameSize)
	}
	d.Addr = d.Addr&^u.frameMask + uint64(off)
	d.Len = uint32(n)
	return nil
}

// Alloc takes up to len(descs) free frames for the application (e.g. to
// build packets to transmit) and returns how many it took. Each
// descriptor points at DataOffset in its frame with Len set to the room
// left after it.
func (u *UMEM) Alloc(descs []Desc) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return 0
	}
	n := min(len(descs), len(u.free))
	room := uint32(u.cfg.FrameSize) - uint32(u.dataOff)
	top := len(u.free)
	for i := range n {
		addr := u.free[top-1-i]
		u.state[addr>>u.shift] = stateApp
		descs[i] = Desc{Addr: addr + u.dataOff, Len: room}
	}
	u.free = u.free[:top-n]
	u.app += n
	return n
}

// Free gives frames held by the application back to the free list and
// returns how many it took. Descriptors for frames the application does
// not hold (outside the UMEM, already free, or in a ring) are ignored and
// counted: freeing twice is harmless to the allocator.
func (u *UMEM) Free(descs []Desc) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.freeLocked(descs)
}

func (u *UMEM) freeLocked(descs []Desc) int {
	n := 0
	for _, d := range descs {
		idx := d.Addr >> u.shift
		if idx >= uint64(len(u.state)) || u.state[idx] != stateApp {
			u.badFree++
			continue
		}
		u.state[idx] = stateFree
		u.free = append(u.free, d.Addr&^u.frameMask) // within capacity: bounded by NumFrames
		n++
	}
	u.app -= n
	return n
}

// BadFrees counts descriptors Free (and Transmit) refused because the
// application did not hold their frame.
func (u *UMEM) BadFrees() uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.badFree
}

// reclaimLocked puts every frame in fill or TX state of p back on the
// free list: the pool is gone, and the kernel with it.
func (u *UMEM) reclaimLocked(p *pool) {
	fs, ts := fillState(p), txState(p)
	for i, s := range u.state {
		if s == fs || s == ts {
			u.state[i] = stateFree
			u.free = append(u.free, uint64(i)<<u.shift)
		}
	}
	p.fillOut, p.txOut = 0, 0
}

// Counts says where the frames are (see FrameCounts).
func (u *UMEM) Counts() FrameCounts {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.countsLocked()
}

func (u *UMEM) countsLocked() FrameCounts {
	c := FrameCounts{Total: len(u.state), Free: len(u.free), App: u.app}
	kernel := 0
	for _, p := range u.pools {
		fill := int(p.fill.prodPending())
		comp := int(p.comp.consAvail())
		rx, tx := 0, 0
		for _, s := range p.sockets {
			if s.rx.mapped() {
				rx += int(s.rx.consAvail())
			}
			if s.tx.mapped() {
				tx += int(s.tx.prodPending())
			}
		}
		c.Fill += fill
		c.Completion += comp
		c.RX += rx
		c.TX += tx
		kernel += p.fillOut - fill - rx + p.txOut - tx - comp
	}
	c.InKernel = kernel
	return c
}

// CheckFrames audits the allocator: every frame is in exactly one place,
// every address on a ring belongs to a frame in the matching state, the
// free list and the application count agree with the frame states, and
// nothing the kernel holds is negative. It is exact when no traffic is
// moving (the kernel may move ring indices while it runs) and meant for
// tests and diagnostics: it allocates.
func (u *UMEM) CheckFrames() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	var errs []error
	bad := func(format string, args ...any) {
		if len(errs) < 10 {
			errs = append(errs, fmt.Errorf("%w: %s", ErrFrameAccounting, fmt.Sprintf(format, args...)))
		}
	}
	seen := make([]string, len(u.state))
	mark := func(where string, addr uint64, want uint16) {
		idx := addr >> u.shift
		if idx >= uint64(len(u.state)) {
			bad("%s holds address %#x outside the UMEM", where, addr)
			return
		}
		if seen[idx] != "" {
			bad("frame %d is on %s and on %s", idx, seen[idx], where)
		}
		seen[idx] = where
		if u.state[idx] != want {
			bad("frame %d on %s has state %d, want %d", idx, where, u.state[idx], want)
		}
	}
	for _, a := range u.free {
		mark("the free list", a, stateFree)
	}
	nApp := 0
	for _, s := range u.state {
		if s == stateApp {
			nApp++
		}
	}
	if nApp != u.app {
		bad("%d frames in application state, counter says %d", nApp, u.app)
	}
	for _, p := range u.pools {
		nFill, nTX := 0, 0
		for _, s := range u.state {
			switch s {
			case fillState(p):
				nFill++
			case txState(p):
				nTX++
			}
		}
		if nFill != p.fillOut || nTX != p.txOut {
			bad("pool %d: %d/%d frames in fill/TX state, counters say %d/%d", p.id, nFill, nTX, p.fillOut, p.txOut)
		}
		name := fmt.Sprintf("fill ring of pool %d", p.id)
		for i, end := atomic.LoadUint32(p.fill.consumer), atomic.LoadUint32(p.fill.producer); i != end; i++ {
			mark(name, p.fill.addrs[i&p.fill.mask], fillState(p))
		}
		name = fmt.Sprintf("completion ring of pool %d", p.id)
		for i, end := atomic.LoadUint32(p.comp.consumer), atomic.LoadUint32(p.comp.producer); i != end; i++ {
			mark(name, p.comp.addrs[i&p.comp.mask], txState(p))
		}
		for _, s := range p.sockets {
			if s.rx.mapped() {
				name := fmt.Sprintf("RX ring of socket %d", s.fd)
				for i, end := atomic.LoadUint32(s.rx.consumer), atomic.LoadUint32(s.rx.producer); i != end; i++ {
					mark(name, s.rx.descs[i&s.rx.mask].Addr, fillState(p))
				}
			}
			if s.tx.mapped() {
				name := fmt.Sprintf("TX ring of socket %d", s.fd)
				for i, end := atomic.LoadUint32(s.tx.consumer), atomic.LoadUint32(s.tx.producer); i != end; i++ {
					mark(name, s.tx.descs[i&s.tx.mask].Addr, txState(p))
				}
			}
		}
	}
	c := u.countsLocked()
	if c.InKernel < 0 {
		bad("negative in-kernel count %d (%+v)", c.InKernel, c)
	}
	if c.Sum() != c.Total {
		bad("counts add up to %d, not %d (%+v)", c.Sum(), c.Total, c)
	}
	return errors.Join(errs...)
}

// NumSockets is the number of open sockets on the UMEM.
func (u *UMEM) NumSockets() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.sockets)
}

// Close closes every socket still open on the UMEM and unmaps it. Frames
// the application holds become invalid: their Buf slices must not be
// used after Close. Counts and CheckFrames keep working.
func (u *UMEM) Close() error {
	u.setup.Lock()
	defer u.setup.Unlock()
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil
	}
	var errs []error
	for len(u.sockets) > 0 {
		if err := u.sockets[len(u.sockets)-1].closeLocked(); err != nil {
			errs = append(errs, err)
		}
	}
	u.closed = true
	if err := unix.Munmap(u.mem); err != nil {
		errs = append(errs, fmt.Errorf("xdp: munmap UMEM: %w", err))
	}
	u.mem = nil
	return errors.Join(errs...)
}

// memAddr is the address of the UMEM region for XDP_UMEM_REG.
func (u *UMEM) memAddr() uint64 { return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(u.mem)))) }
