//go:build linux

package xdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

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
	// allocated once; slots holds the slices handed to dev.Write, lens
	// the packet lengths staged in them.
	wmu   sync.Mutex
	wmem  [][]byte
	slots [][]byte
	lens  [MaxBatch]int
}

// OpenTUNOffload is OpenTUN with offloads: the device (created in the
// network namespace of the calling thread, like OpenTUN) carries a
// virtio-net header on every read and write and has checksum, TSO and
// USO offloads on, so the kernel passes TCP and UDP super-packets to
// ServeTUN, which splits them, and Deliver coalesces what it writes.
// Hosts that route through the device keep their own offloads on.
// Read on such a device returns only the first packet of a super-packet;
// use ReadBatch.
func OpenTUNOffload(name string) (*TUN, error) {
	if len(name) >= 16 {
		return nil, fmt.Errorf("%w: TUN name %q too long", ErrInvalidConfig, name)
	}
	// CreateTUN opens the device, its netlink status socket and sets the
	// MTU in the calling thread's namespace. 1500 is replaced by the
	// caller's configuration.
	dev, err := wgtun.CreateTUN(name, 1500)
	if err != nil {
		return nil, fmt.Errorf("xdp: TUN %q with offloads: %w", name, err)
	}
	if dev.BatchSize() <= 1 {
		dev.Close()
		return nil, fmt.Errorf("xdp: TUN %q: the kernel did not accept the virtio-net header", name)
	}
	n, err := dev.Name()
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("xdp: TUN %q: %w", name, err)
	}
	o := &tunOffload{dev: dev, wmem: make([][]byte, MaxBatch), slots: make([][]byte, MaxBatch)}
	for i := range o.wmem {
		o.wmem[i] = make([]byte, tunWriteOffset+tunWriteCap)
	}
	// The device reports link events on a small channel; nobody here
	// needs them (the gateway watches links over rtnetlink), but an
	// undrained channel would block wireguard's listener goroutines and
	// keep them from ending at Close.
	go func() {
		for range dev.Events() {
		}
	}()
	return &TUN{f: dev.File(), name: n, off: o}, nil
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
	}
}

// Offload reports whether t was opened with OpenTUNOffload.
func (t *TUN) Offload() bool { return t.off != nil }

// readOffload is ReadBatch on an offload device: one read(2), split into
// bufs. A read whose packet cannot be used is counted in ReadDrops and
// the next is tried; errors of the device itself end it.
func (t *TUN) readOffload(bufs [][]byte, sizes []int) (int, error) {
	for {
		n, err := t.off.dev.Read(bufs, sizes, 0)
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

// writeOffload copies pkts into the staging buffers (behind the virtio
// header's headroom) and writes them through wireguard's GRO, MaxBatch
// at a time. It returns how many packets were handed to the kernel.
func (t *TUN) writeOffload(pkts [][]byte) (int, error) {
	o := t.off
	o.wmu.Lock()
	defer o.wmu.Unlock()
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
			o.slots[m] = o.wmem[m][:tunWriteOffset+copy(o.wmem[m][tunWriteOffset:], p)]
			o.lens[m] = len(p)
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
		// A slot that grew absorbed the packets coalesced into it; its
		// virtio header (written by the GRO) holds the segment size.
		for i := range m {
			s := o.slots[i]
			if grown := len(s) - tunWriteOffset; grown > o.lens[i] {
				h := s[tunWriteOffset-vnetHdrLen : tunWriteOffset]
				hdrLen := int(binary.NativeEndian.Uint16(h[2:]))
				gso := int(binary.NativeEndian.Uint16(h[4:]))
				t.groSupers.Add(1)
				if gso > 0 && grown > hdrLen {
					t.groSegs.Add(uint64((grown - hdrLen + gso - 1) / gso))
				}
			}
			o.slots[i] = nil
		}
	}
	return done, first
}

// closeOffload closes the device and its status listeners.
func (t *TUN) closeOffload() error {
	return tunErr(t.off.dev.Close())
}
