//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/internal/topo"
)

// WANCounts is what crossed one WAN link, by IP protocol, as a packet
// socket on the router saw it (both directions).
type WANCounts struct {
	ESP   uint64 // IPv4 protocol 50
	GRE   uint64 // IPv4 protocol 47: GRE in clear, must stay 0
	Other uint64 // other IPv4 (ICMP, ...)
	// Drops is the packet socket's own drop count (PACKET_STATISTICS):
	// when it is not 0 the other counts are incomplete.
	Drops uint64
}

// wanTap counts the IPv4 packets on one interface with an AF_PACKET
// socket, like a tcpdump on the router in the middle.
type wanTap struct {
	fd                int
	esp, gre, other   atomic.Uint64
	stopping          atomic.Bool
	deadline          atomic.Int64 // unix nanos; set by close
	wg                sync.WaitGroup
	drops             uint64
	closeOnce         sync.Once
	closeErr          error
	readErr           atomic.Value
	ifname, namespace string
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openWANTap starts counting on l (in its namespace).
func openWANTap(l *topo.Link) (*wanTap, error) {
	t := &wanTap{fd: -1, ifname: l.Name, namespace: l.NS.Label}
	err := l.NS.Do(func() error {
		// Protocol 0 until bound, so that no packet of another
		// interface is queued before the bind.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		t.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.Index}); err != nil {
			return err
		}
		// Room for a burst while the reader is descheduled.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20); err != nil {
			return err
		}
		// A receive timeout so the reader notices close.
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 50_000})
	})
	if err != nil {
		if t.fd >= 0 {
			unix.Close(t.fd)
		}
		return nil, fmt.Errorf("packet socket on %s/%s: %w", l.NS.Label, l.Name, err)
	}
	t.wg.Add(1)
	go t.read()
	return t, nil
}

func (t *wanTap) read() {
	defer t.wg.Done()
	buf := make([]byte, 128) // headers are enough; the rest is truncated
	for {
		if d := t.deadline.Load(); d != 0 && time.Now().UnixNano() > d {
			return // bounded even if the link never goes quiet
		}
		n, _, err := unix.Recvfrom(t.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				// Stop once the socket is empty (a receive timed out)
				// and close was asked for.
				if t.stopping.Load() {
					return
				}
				continue
			}
			t.readErr.Store(err)
			return
		}
		if n < 34 || binary.BigEndian.Uint16(buf[12:]) != 0x0800 {
			continue // not IPv4 (ARP, IPv6 neighbour discovery, ...)
		}
		switch buf[23] {
		case 50:
			t.esp.Add(1)
		case 47:
			t.gre.Add(1)
		default:
			t.other.Add(1)
		}
	}
}

func (t *wanTap) counts() WANCounts {
	return WANCounts{ESP: t.esp.Load(), GRE: t.gre.Load(), Other: t.other.Load(), Drops: t.drops}
}

// close stops the reader, reads the socket's drop count and closes it.
func (t *wanTap) close() error {
	t.closeOnce.Do(func() {
		t.deadline.Store(time.Now().Add(2 * time.Second).UnixNano())
		t.stopping.Store(true)
		t.wg.Wait()
		if st, err := unix.GetsockoptTpacketStats(t.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			t.drops = uint64(st.Drops)
		}
		t.closeErr = unix.Close(t.fd)
		if err, ok := t.readErr.Load().(error); ok {
			t.closeErr = fmt.Errorf("packet socket on %s/%s: %w", t.namespace, t.ifname, err)
		}
	})
	return t.closeErr
}
