//go:build linux

package main

// Scaffolding: a minimal packet counter on the wan router, to show what
// an eavesdropper between the sites sees. Nothing here is espxdp API.

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/internal/topo"
)

// WireCounts classifies the IPv4 frames seen on one link.
type WireCounts struct {
	// ESP: IP protocol 50.
	ESP uint64
	// ClearTCP, ClearICMP and ClearOther: packets in clear between the
	// two sites (both addresses in 10.0.0.0/8).
	ClearTCP, ClearICMP, ClearOther uint64
	// Other: everything else (IPv4 not between the sites, ARP, ...).
	Other uint64
	// Dropped: frames the socket could not queue (its buffer was full),
	// hence not classified.
	Dropped uint64
}

var sites = netip.MustParsePrefix("10.0.0.0/8")

// wireTap counts frames in both directions on one interface with an
// AF_PACKET socket; no XDP, no copy kept.
type wireTap struct {
	fd     int
	ifi    int
	stop   atomic.Bool
	done   chan struct{}
	mu     sync.Mutex
	counts WireCounts
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// startTap opens the socket inside ns and starts counting on ifname.
func startTap(ns *topo.NS, ifname string) (*wireTap, error) {
	t := &wireTap{fd: -1, done: make(chan struct{})}
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		t.ifi = ifi.Index
		if t.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL))); err != nil {
			t.fd = -1
			return err
		}
		// Room for a burst of several thousand frames: the counter
		// must keep up with a TCP transfer.
		if err := unix.SetsockoptInt(t.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20); err != nil {
			return err
		}
		tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
		if err := unix.SetsockoptTimeval(t.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(t.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		if t.fd >= 0 {
			unix.Close(t.fd)
		}
		return nil, err
	}
	go t.loop()
	return t, nil
}

func (t *wireTap) loop() {
	defer close(t.done)
	buf := make([]byte, 256) // headers are enough; the rest is truncated
	for !t.stop.Load() {
		n, from, err := unix.Recvfrom(t.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); !ok || ll.Ifindex != t.ifi {
			continue // queued before bind, from another interface
		}
		t.classify(buf[:n])
	}
}

func (t *wireTap) classify(f []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := &t.counts
	if len(f) < 34 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
		c.Other++
		return
	}
	proto := f[23]
	src, dst := netip.AddrFrom4([4]byte(f[26:30])), netip.AddrFrom4([4]byte(f[30:34]))
	switch {
	case proto == 50:
		c.ESP++
	case !sites.Contains(src) || !sites.Contains(dst):
		c.Other++
	case proto == 6:
		c.ClearTCP++
	case proto == 1:
		c.ClearICMP++
	default:
		c.ClearOther++
	}
}

// Counts returns the counts so far.
func (t *wireTap) Counts() WireCounts {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts
}

// readDrops adds the socket's drop count (PACKET_STATISTICS, which
// resets on every read) to the counts.
func (t *wireTap) readDrops() {
	st, err := unix.GetsockoptTpacketStats(t.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return
	}
	t.mu.Lock()
	t.counts.Dropped += uint64(st.Drops)
	t.mu.Unlock()
}

// Close stops counting (within the socket's 50ms timeout) and closes
// the socket.
func (t *wireTap) Close() {
	if t.stop.Swap(true) {
		return
	}
	<-t.done
	t.readDrops()
	unix.Close(t.fd)
}
