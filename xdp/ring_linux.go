//go:build linux

package xdp

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ring is one mmap'd single-producer single-consumer ring shared with
// the kernel. The producer and consumer indices are free-running uint32s;
// entry i lives at index i&mask. Our own index is only ever written with
// an atomic store (release) after the entries it covers, and the
// kernel's is read with an atomic load (acquire) before the entries it
// covers, which gives the ordering the kernel's rings expect (the
// smp_load_acquire/smp_store_release pairs in xsk_queue.h).
type ring struct {
	mem      []byte
	producer *uint32
	consumer *uint32
	flags    *uint32
	mask     uint32
	size     uint32
}

// mapRing maps the ring at page offset pgoff of fd, with entries of elem
// bytes, and returns it with a pointer to its first entry.
func mapRing(fd int, pgoff int64, off unix.XDPRingOffset, size int, elem uintptr) (ring, unsafe.Pointer, error) {
	length := int(off.Desc) + size*int(elem)
	mem, err := unix.Mmap(fd, pgoff, length, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return ring{}, nil, fmt.Errorf("mmap ring at %#x: %w", pgoff, err)
	}
	base := unsafe.Pointer(unsafe.SliceData(mem))
	r := ring{
		mem:      mem,
		producer: (*uint32)(unsafe.Add(base, off.Producer)),
		consumer: (*uint32)(unsafe.Add(base, off.Consumer)),
		flags:    (*uint32)(unsafe.Add(base, off.Flags)),
		mask:     uint32(size - 1),
		size:     uint32(size),
	}
	return r, unsafe.Add(base, off.Desc), nil
}

func (r *ring) unmap() error {
	if r.mem == nil {
		return nil
	}
	err := unix.Munmap(r.mem)
	*r = ring{}
	return err
}

func (r *ring) mapped() bool { return r.mem != nil }

// needWakeup reports whether the kernel set XDP_RING_NEED_WAKEUP.
func (r *ring) needWakeup() bool {
	return atomic.LoadUint32(r.flags)&unix.XDP_RING_NEED_WAKEUP != 0
}

// Producer side (fill and TX rings: we produce, the kernel consumes).

// prodPending is the number of produced entries the kernel has not
// consumed yet.
func (r *ring) prodPending() uint32 {
	return atomic.LoadUint32(r.producer) - atomic.LoadUint32(r.consumer)
}

// Consumer side (RX and completion rings: the kernel produces, we
// consume).

// consAvail is the number of entries ready to consume.
func (r *ring) consAvail() uint32 {
	return atomic.LoadUint32(r.producer) - atomic.LoadUint32(r.consumer)
}

// addrRing is a fill or completion ring of frame addresses.
type addrRing struct {
	ring
	addrs []uint64
}

func mapAddrRing(fd int, pgoff int64, off unix.XDPRingOffset, size int) (addrRing, error) {
	r, p, err := mapRing(fd, pgoff, off, size, unsafe.Sizeof(uint64(0)))
	if err != nil {
		return addrRing{}, err
	}
	return addrRing{ring: r, addrs: unsafe.Slice((*uint64)(p), size)}, nil
}

func (r *addrRing) unmap() error {
	r.addrs = nil
	return r.ring.unmap()
}

// descRing is an RX or TX ring of descriptors.
type descRing struct {
	ring
	descs []Desc
}

func mapDescRing(fd int, pgoff int64, off unix.XDPRingOffset, size int) (descRing, error) {
	r, p, err := mapRing(fd, pgoff, off, size, unsafe.Sizeof(Desc{}))
	if err != nil {
		return descRing{}, err
	}
	return descRing{ring: r, descs: unsafe.Slice((*Desc)(p), size)}, nil
}

func (r *descRing) unmap() error {
	r.descs = nil
	return r.ring.unmap()
}

// mmapOffsets asks the kernel where the producer, consumer, flags and
// descriptors of each ring live in its mapping.
func mmapOffsets(fd int) (unix.XDPMmapOffsets, error) {
	var off unix.XDPMmapOffsets
	n, err := getsockopt(fd, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off))
	if err != nil {
		return off, fmt.Errorf("getsockopt XDP_MMAP_OFFSETS: %w", err)
	}
	if n != unsafe.Sizeof(off) {
		// Kernels before 5.4 have no ring flags (and no need-wakeup).
		return off, fmt.Errorf("%w: XDP_MMAP_OFFSETS without ring flags (kernel before 5.4)", ErrNotSupported)
	}
	return off, nil
}

// getsockopt is getsockopt(fd, SOL_XDP, opt) into the n bytes at p; it
// returns the length the kernel wrote.
func getsockopt(fd, opt int, p unsafe.Pointer, n uintptr) (uintptr, error) {
	l := uint32(n)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt),
		uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, e
	}
	return uintptr(l), nil
}

// setsockopt is setsockopt(fd, SOL_XDP, opt) with the n bytes at p.
func setsockopt(fd, opt int, p unsafe.Pointer, n uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), n, 0)
	if e != 0 {
		return e
	}
	return nil
}
