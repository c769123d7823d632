//go:build linux

package xdp

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// TUNBufSize is the size of each read buffer ServeTUN uses: packets
// longer than that (a TUN MTU above it) are dropped, so keep the TUN's
// MTU at or below the engine's plaintext MTU.
const TUNBufSize = 4096

// TUN is a Linux TUN device (IFF_TUN|IFF_NO_PI: every read and write is
// one bare IP packet) opened on /dev/net/tun. Its file descriptor is
// non-blocking and served by the Go runtime poller, so Close unblocks a
// pending Read. No offloads (IFF_VNET_HDR, GSO/GRO) are negotiated: each
// packet costs one read(2) or write(2).
type TUN struct {
	f    *os.File
	rc   syscall.RawConn
	name string
	// closed is set by Close: RawConn reports a closed file with an
	// error os.ErrClosed does not match.
	closed atomic.Bool
	// oversize counts packets ServeTUN dropped because they filled a
	// whole TUNBufSize buffer (and so may have been truncated).
	oversize atomic.Uint64
	// off is set on a device opened with OpenTUNOffload.
	off *tunOffload
	// Offload counters (TUNStats): the read ones are written by the one
	// reader, the write ones under off.wmu.
	splitSupers, splitSegs, groSupers, groSegs, readDrops, writeErrs atomic.Uint64
	// reads and writes count the system calls that moved a packet
	// (TUNStats.Reads, Writes).
	reads, writes atomic.Uint64

	// ReadBatch state, used by the pre-bound readFn so that a batch read
	// does not allocate.
	rmu    sync.Mutex
	rbufs  [][]byte
	rsizes []int
	rn     int
	rerr   error
	readFn func(fd uintptr) bool
}

// OpenTUN creates (or attaches to) the TUN device name in the network
// namespace of the calling thread. An empty name lets the kernel choose
// one ("tun%d"); Name reports it. The device is created down and without
// addresses.
func OpenTUN(name string) (*TUN, error) {
	fd, ifname, err := openTUNFD(name, unix.IFF_TUN|unix.IFF_NO_PI)
	if err != nil {
		return nil, err
	}
	t := &TUN{f: os.NewFile(uintptr(fd), "/dev/net/tun"), name: ifname}
	if t.rc, err = t.f.SyscallConn(); err != nil {
		t.f.Close()
		return nil, fmt.Errorf("xdp: TUN: %w", err)
	}
	t.readFn = t.readBatchFn
	return t, nil
}

// openTUNFD opens /dev/net/tun, attaches it to the device name
// (TUNSETIFF with flags) and makes it non-blocking. It returns the
// descriptor and the device's name (the kernel's choice when name is
// empty); on error nothing is left open.
func openTUNFD(name string, flags uint16) (fd int, ifname string, err error) {
	if len(name) >= unix.IFNAMSIZ {
		return -1, "", fmt.Errorf("%w: TUN name %q too long", ErrInvalidConfig, name)
	}
	fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", fmt.Errorf("xdp: open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, "", fmt.Errorf("%w: TUN name %q: %v", ErrInvalidConfig, name, err)
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, "", fmt.Errorf("xdp: TUNSETIFF %q: %w", name, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, "", fmt.Errorf("xdp: TUN non-blocking: %w", err)
	}
	return fd, ifr.Name(), nil
}

// Name is the device's interface name.
func (t *TUN) Name() string { return t.name }

func tunErr(err error) error {
	if errors.Is(err, os.ErrClosed) {
		return ErrClosed
	}
	return err
}

// Read reads one IP packet into buf, blocking until one arrives, the
// device is closed (ErrClosed) or a read deadline passes
// (os.ErrDeadlineExceeded). A packet longer than buf is truncated.
func (t *TUN) Read(buf []byte) (int, error) {
	if t.off != nil {
		var size [1]int
		_, err := t.ReadBatch([][]byte{buf}, size[:])
		return size[0], err
	}
	n, err := t.f.Read(buf)
	return n, tunErr(err)
}

// SetReadDeadline sets the deadline of Read and ReadBatch (zero: none).
func (t *TUN) SetReadDeadline(d time.Time) error { return tunErr(t.f.SetReadDeadline(d)) }

// readBatchFn reads packets into rbufs until they are full or the device
// has no more; it asks the poller to wait only when it read nothing.
func (t *TUN) readBatchFn(fd uintptr) bool {
	for t.rn < len(t.rbufs) {
		n, err := unix.Read(int(fd), t.rbufs[t.rn])
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return t.rn > 0
		}
		if err != nil {
			if t.rn == 0 {
				t.rerr = err
			}
			return true
		}
		t.rsizes[t.rn] = n
		t.rn++
		t.reads.Add(1)
	}
	return true
}

// ReadBatch blocks until at least one packet can be read, then reads up
// to len(bufs) packets without blocking again; sizes[i] is the length of
// packet i (len(sizes) must be at least len(bufs)). It does not allocate.
// On a device opened with OpenTUNOffload it makes one read(2) and splits
// a super-packet into bufs (up to 128 segments: give it that many
// buffers, or the rest of a larger super-packet is dropped and counted).
// Like Read it returns ErrClosed after Close and os.ErrDeadlineExceeded
// after the read deadline.
func (t *TUN) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	if len(sizes) < len(bufs) {
		return 0, fmt.Errorf("%w: %d sizes for %d buffers", ErrInvalidConfig, len(sizes), len(bufs))
	}
	if len(bufs) == 0 {
		return 0, nil
	}
	if t.off != nil {
		return t.readOffload(bufs, sizes)
	}
	t.rmu.Lock()
	defer t.rmu.Unlock()
	t.rbufs, t.rsizes, t.rn, t.rerr = bufs, sizes, 0, nil
	err := t.rc.Read(t.readFn)
	n, rerr := t.rn, t.rerr
	t.rbufs, t.rsizes = nil, nil
	if n > 0 {
		return n, nil
	}
	if err == nil {
		err = rerr
	}
	if t.closed.Load() {
		return 0, ErrClosed
	}
	return 0, tunErr(err)
}

// WriteBatch writes each packet of pkts (each a complete IP packet) to
// the device, one write(2) per packet, and returns how many were written;
// it stops at the first error. On a device opened with OpenTUNOffload it
// coalesces the packets of a TCP or UDP flow into super-packets and
// makes one write(2) per super-packet; it returns how many packets it
// handed to the kernel and the first error, going on after one.
func (t *TUN) WriteBatch(pkts [][]byte) (int, error) {
	if t.off != nil {
		return t.writeOffload(pkts)
	}
	for i, p := range pkts {
		_, err := t.f.Write(p)
		if err != nil {
			return i, tunErr(err)
		}
		t.writes.Add(1)
	}
	return len(pkts), nil
}

// Deliver writes decrypted packets to the device: use it as
// EngineConfig.Deliver to make the TUN the engine's plaintext sink.
// Write errors (a closed device, a malformed packet) drop the rest of
// the batch.
func (t *TUN) Deliver(pkts [][]byte) { t.WriteBatch(pkts) }

// Close closes the device; a pending Read or ReadBatch returns ErrClosed.
func (t *TUN) Close() error {
	t.closed.Store(true)
	if t.off != nil {
		return t.closeOffload()
	}
	return tunErr(t.f.Close())
}

// ServeTUN makes t the plaintext source of e: it reads packets from t in
// batches of up to the engine's BatchSize and hands them to e.Send on
// queue, until stop is closed (it returns nil), t is closed, or Send
// fails (e.g. ErrClosed once the engine stops). Together with
// EngineConfig.Deliver = t.Deliver, the TUN is a route-based tunnel
// interface: whatever the kernel routes into it is encrypted, whatever
// is decrypted comes out of it. The buffers (BatchSize × TUNBufSize) are
// allocated once; packets that fill a whole buffer may have been
// truncated and are dropped, counted by OversizeDrops. On a device
// opened with OpenTUNOffload each read is one super-packet, split into
// up to 128 packets (the buffers are max(BatchSize, 128) × TUNBufSize)
// that go to Send together. Before each Send it waits until the
// worker's Send queue has room for the whole batch (Engine.SendRoom), so
// a worker that falls behind slows the reads down (the kernel keeps the
// packets in the TUN's queue) instead of Send dropping them: a TCP flow
// through the tunnel then sees delay, not loss. ServeTUN uses the TUN's read deadline to
// stop (and clears it when it returns). Run it on its own goroutine,
// one ServeTUN per TUN at a time.
func ServeTUN(e *Engine, t *TUN, queue int, stop <-chan struct{}) error {
	if e == nil || t == nil {
		return fmt.Errorf("%w: ServeTUN needs an engine and a TUN", ErrInvalidConfig)
	}
	if queue < 0 || queue >= e.cfg.Workers {
		return fmt.Errorf("%w: queue %d", ErrInvalidConfig, queue)
	}
	batch := e.cfg.BatchSize
	if t.off != nil {
		batch = max(batch, tunReadSlots) // one super-packet per read
	}
	mem := make([]byte, batch*TUNBufSize)
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = mem[i*TUNBufSize : (i+1)*TUNBufSize : (i+1)*TUNBufSize]
	}
	sizes := make([]int, batch)
	pkts := make([][]byte, 0, batch)

	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-stop:
			t.f.SetReadDeadline(time.Unix(1, 0))
		case <-done:
		}
	}()
	defer func() {
		close(done)
		wg.Wait()
		t.f.SetReadDeadline(time.Time{})
	}()
	for {
		n, err := t.ReadBatch(bufs, sizes)
		if err != nil {
			select {
			case <-stop:
				return nil
			default:
			}
			return err
		}
		pkts = pkts[:0]
		for i := range n {
			if sizes[i] < TUNBufSize && sizes[i] <= len(bufs[i]) {
				pkts = append(pkts, bufs[i][:sizes[i]])
			} else {
				t.oversize.Add(1)
			}
		}
		if len(pkts) > 0 {
			if !e.waitSendRoom(queue, len(pkts), stop) {
				return nil
			}
			if _, err := e.Send(queue, pkts); err != nil {
				return err
			}
		}
	}
}

// OversizeDrops returns how many packets ServeTUN dropped because they
// filled a whole TUNBufSize buffer: set the TUN's MTU below TUNBufSize
// (and at or below the tunnel's plaintext MTU) and this stays zero.
func (t *TUN) OversizeDrops() uint64 { return t.oversize.Load() }
