//go:build linux

package xdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// maxTUNQueues is the kernel's limit of queues of a TUN device
// (MAX_TAP_QUEUES).
const maxTUNQueues = 256

// TUN offloads (OpenTUNOffload) run on golang.zx2c4.com/wireguard/tun:
// the device is opened with IFF_VNET_HDR and TUNSETOFFLOAD (checksum,
// TSO4/6 and, where the kernel has it, USO4/6), so the kernel hands the
// reader TCP and UDP super-packets of up to 64 KiB that are split here
// into MTU-sized packets (checksums finished where the kernel left them
// partial), and the writer coalesces consecutive segments of a flow into
// super-packets (GRO) before one write(2).
const (
	// tunReadSlots is how many packets one super-packet may split into
	// (wireguard-go's conn.IdealBatchSize): 64 KiB in segments of at
	// least 512 bytes.
	tunReadSlots = 128
	// tunWriteOffset is the headroom in front of each staged packet on
	// the write path: the virtio-net header goes there.
	tunWriteOffset = 16
	// tunWriteCap is the capacity of each staged write buffer after the
	// headroom: the largest IP packet, which a coalesced super-packet
	// grows to at most.
	tunWriteCap = 65535
	// vnetHdrLen is sizeof(struct virtio_net_hdr).
	vnetHdrLen = 10
)

// tunOffload is the state of a device opened with OpenTUNOffload.
type tunOffload struct {
	dev wgtun.Device

	// Write path, under wmu (Deliver may run on several engine workers):
	// MaxBatch staging buffers of tunWriteOffset+tunWriteCap bytes,
	// allocated once; slots holds the slices handed to dev.Write.
	wmu   sync.Mutex
	wmem  [][]byte
	slots [][]byte
}

// OpenTUNOffload is OpenTUN with offloads: the device (created in the
// network namespace of the calling thread, like OpenTUN) carries a
// virtio-net header on every read and write and has checksum, TSO and
// USO offloads on, so the kernel passes TCP and UDP super-packets to
// ServeTUN, which splits them, and Deliver coalesces what it writes.
// Hosts that route through the device keep their own offloads on.
// Read on such a device returns only the first packet of a super-packet;
// use ReadBatch.
func OpenTUNOffload(name string) (*TUN, error) { return openTUNOffload(name, 0) }

// OpenTUNQueues opens queues queues of one multi-queue TUN device
// (IFF_MULTI_QUEUE) with offloads, in the calling thread's namespace:
// each *TUN is one queue, with its own descriptor, and the kernel
// spreads what it routes into the device over the queues by flow. Serve
// queue q with ServeTUN(e, tuns[q], q, stop) (one per engine worker) and
// deliver with DeliverTUNs(tuns). Close every queue to remove the
// device.
func OpenTUNQueues(name string, queues int) ([]*TUN, error) {
	if queues < 1 || queues > maxTUNQueues {
		return nil, fmt.Errorf("%w: %d TUN queues", ErrInvalidConfig, queues)
	}
	tuns := make([]*TUN, 0, queues)
	for range queues {
		t, err := openTUNOffload(name, unix.IFF_MULTI_QUEUE)
		if err != nil {
			for _, o := range tuns {
				o.Close()
			}
			return nil, err
		}
		tuns = append(tuns, t)
		name = t.name // an empty name: the kernel's choice, for the next queues
	}
	return tuns, nil
}

// openTUNOffload opens (a queue of) the TUN device name with the
// virtio-net header and hands it to wireguard's device, which sets the
// offloads (TUNSETOFFLOAD) and splits and coalesces. The unmonitored
// variant starts no goroutines: the gateway watches links itself.
func openTUNOffload(name string, flags uint16) (*TUN, error) {
	fd, _, err := openTUNFD(name, unix.IFF_TUN|unix.IFF_NO_PI|unix.IFF_VNET_HDR|flags)
	if err != nil {
		return nil, err
	}
	dev, n, err := wgtun.CreateUnmonitoredTUNFromFD(fd)
	if err != nil {
		// It failed after wrapping fd in an *os.File it dropped; that
		// file's finalizer closes fd, so closing it here as well could
		// close a descriptor reused in between.
		return nil, fmt.Errorf("xdp: TUN %q offloads: %w", name, err)
	}
	if dev.BatchSize() <= 1 {
		dev.Close()
		return nil, fmt.Errorf("xdp: TUN %q: the kernel did not accept the virtio-net header", name)
	}
	o := &tunOffload{dev: dev, wmem: make([][]byte, MaxBatch), slots: make([][]byte, MaxBatch)}
	for i := range o.wmem {
		o.wmem[i] = make([]byte, tunWriteOffset+tunWriteCap)
	}
	return &TUN{f: dev.File(), name: n, off: o}, nil
}

// DeliverTUNs returns a DeliverFunc that writes each batch to one of
// tuns (the queues from OpenTUNQueues): the queue picked by the inner
// flow (flowHash) of the batch's first packet, or if another worker is
// writing there the next free one (waiting for the picked queue only
// when all are busy). The kernel sends a flow's packets to the queue
// that last wrote packets of it (the TUN's flow steering), so hashing
// the flow spreads flows over the queues and so over ServeTUN's
// engine workers. tuns must not be empty.
func DeliverTUNs(tuns []*TUN) DeliverFunc {
	if len(tuns) == 1 {
		return tuns[0].Deliver
	}
	return func(pkts [][]byte) {
		if len(pkts) == 0 {
			return
		}
		first := int(flowHash(pkts[0]) % uint32(len(tuns)))
		for i := range tuns {
			t := tuns[(first+i)%len(tuns)]
			if t.off == nil {
				continue
			}
			if t.off.wmu.TryLock() {
				t.writeOffloadLocked(pkts)
				t.off.wmu.Unlock()
				return
			}
		}
		tuns[first].Deliver(pkts)
	}
}

// Stats returns the device's counters.
func (t *TUN) Stats() TUNStats {
	return TUNStats{
		Offload:               t.off != nil,
		SplitSuperPackets:     t.splitSupers.Load(),
		SplitSegments:         t.splitSegs.Load(),
		CoalescedSuperPackets: t.groSupers.Load(),
		CoalescedSegments:     t.groSegs.Load(),
		ReadDrops:             t.readDrops.Load(),
		OversizeDrops:         t.oversize.Load(),
		WriteErrors:           t.writeErrs.Load(),
		Reads:                 t.reads.Load(),
		Writes:                t.writes.Load(),
	}
}

// Offload reports whether t was opened with OpenTUNOffload.
func (t *TUN) Offload() bool { return t.off != nil }

// readOffload is ReadBatch on an offload device: one read(2), split into
// bufs. A read whose packet cannot be used is counted in ReadDrops and
// the next is tried; errors of the device itself end it.
func (t *TUN) readOffload(bufs [][]byte, sizes []int) (int, error) {
	for {
		n, err := t.readSplit(bufs, sizes)
		if n > 0 || err == nil {
			t.reads.Add(1)
		}
		if err == nil {
			if n > 1 {
				t.splitSupers.Add(1)
				t.splitSegs.Add(uint64(n))
			}
			return n, nil
		}
		if t.closed.Load() || errors.Is(err, os.ErrClosed) {
			return 0, ErrClosed
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, err
		}
		var errno syscall.Errno
		var perr *os.PathError
		if errors.As(err, &errno) || errors.As(err, &perr) {
			return 0, err
		}
		// A packet wireguard's splitter refused (ErrTooManySegments
		// returns what it split before it ran out of buffers: those go
		// on, the rest of the super-packet is lost).
		t.readDrops.Add(1)
		if n > 0 && errors.Is(err, wgtun.ErrTooManySegments) {
			return n, nil
		}
	}
}

// errSplitOverflow reports a super-packet whose segments do not fit the
// read buffers.
var errSplitOverflow = errors.New("xdp: TUN super-packet segments larger than the read buffers")

// readSplit is one wireguard Read. Its splitter assumes every segment
// fits a buffer, and indexes past one when a segment (the device's MTU
// raised above TUNBufSize, a forwarded super-packet with a larger
// segment size) does not: that panic is turned into an error, which
// readOffload counts as a drop. wireguard's Read holds only a mutex,
// released by its deferred unlock, so nothing is left inconsistent.
func (t *TUN) readSplit(bufs [][]byte, sizes []int) (n int, err error) {
	defer func() {
		if r := recover(); r != nil {
			n, err = 0, errSplitOverflow
		}
	}()
	return t.off.dev.Read(bufs, sizes, 0)
}

// writeOffload copies pkts into the staging buffers (behind the virtio
// header's headroom) and writes them through wireguard's GRO, MaxBatch
// at a time. It returns how many packets were handed to the kernel.
func (t *TUN) writeOffload(pkts [][]byte) (int, error) {
	t.off.wmu.Lock()
	defer t.off.wmu.Unlock()
	return t.writeOffloadLocked(pkts)
}

// writeOffloadLocked is writeOffload with t.off.wmu held.
func (t *TUN) writeOffloadLocked(pkts [][]byte) (int, error) {
	o := t.off
	done := 0
	var first error
	for len(pkts) > 0 {
		chunk := pkts[:min(len(pkts), MaxBatch)]
		pkts = pkts[len(chunk):]
		m := 0
		for _, p := range chunk {
			if len(p) == 0 || len(p) > tunWriteCap {
				continue
			}
			// Invariant: every staged packet starts with an all-zero
			// virtio-net header (no GSO, no NEEDS_CSUM: the kernel
			// checks its checksum). wireguard's GRO writes the header
			// of each packet it coalesces or passes, but not of a
			// table entry it drops because its checksum is wrong
			// (coalesceItemInvalidCSum): that packet is still written,
			// and with a stale header left in the headroom by an
			// earlier super-packet the kernel would take its bad
			// checksum as one to fill in (CHECKSUM_PARTIAL).
			clear(o.wmem[m][tunWriteOffset-vnetHdrLen : tunWriteOffset])
			o.slots[m] = o.wmem[m][:tunWriteOffset+copy(o.wmem[m][tunWriteOffset:], p)]
			m++
		}
		if m == 0 {
			continue
		}
		_, err := o.dev.Write(o.slots[:m], tunWriteOffset)
		if err != nil {
			t.writeErrs.Add(1)
			if errors.Is(err, os.ErrClosed) {
				return done, ErrClosed
			}
			if first == nil {
				first = err
			}
		}
		done += m
		// The coalesced super-packets are the slots whose virtio header
		// the GRO gave a GSO type (all started zero; it may swap slots
		// when it prepends, so the header, not the length, tells). Each
		// is one write(2) for its segments; every other packet is one
		// write(2) of its own.
		writes := uint64(m)
		for i := range m {
			s := o.slots[i]
			h := s[tunWriteOffset-vnetHdrLen : tunWriteOffset]
			if h[1] != 0 { // gso_type
				hdrLen := int(binary.NativeEndian.Uint16(h[2:]))
				gso := int(binary.NativeEndian.Uint16(h[4:]))
				t.groSupers.Add(1)
				if body := len(s) - tunWriteOffset - hdrLen; gso > 0 && body > 0 {
					segs := uint64((body + gso - 1) / gso)
					t.groSegs.Add(segs)
					writes -= min(segs-1, writes-1)
				}
			}
			o.slots[i] = nil
		}
		t.writes.Add(writes)
	}
	return done, first
}

// closeOffload closes the device and its status listeners.
func (t *TUN) closeOffload() error {
	return tunErr(t.off.dev.Close())
}

// flowHash is an FNV-1a hash of an IP packet's addresses and, for TCP
// and UDP (not a later fragment), ports, 0 for anything else; source and
// destination are XORed first, so both directions of a flow hash alike.
func flowHash(p []byte) uint32 {
	var a, b, l4 []byte
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		a, b = p[12:16], p[16:20]
		if ihl := int(p[0]&0x0f) * 4; (p[9] == 6 || p[9] == 17) && binary.BigEndian.Uint16(p[6:])&0x1fff == 0 && len(p) >= ihl+4 {
			l4 = p[ihl : ihl+4]
		}
	case len(p) >= 40 && p[0]>>4 == 6:
		a, b = p[8:24], p[24:40]
		if (p[6] == 6 || p[6] == 17) && len(p) >= 44 {
			l4 = p[40:44]
		}
	default:
		return 0
	}
	h := uint32(2166136261)
	for i := range a {
		h ^= uint32(a[i] ^ b[i])
		h *= 16777619
	}
	if l4 != nil {
		h ^= uint32(l4[0] ^ l4[2])
		h *= 16777619
		h ^= uint32(l4[1] ^ l4[3])
		h *= 16777619
	}
	return h
}
