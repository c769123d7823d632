//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/topo"
)

// OutsideCounts is what crossed the NAT's outside link (both
// directions), as a packet socket on the NAT saw it.
type OutsideCounts struct {
	// ESPInUDP: UDP port 4500 ↔ 4500 carrying ESP (a non-zero SPI).
	ESPInUDP uint64
	// Keepalives: UDP port 4500 ↔ 4500 carrying the single byte 0xFF.
	Keepalives uint64
	// Private: packets with a 192.168.0.0/16 source or destination. The
	// NAT rewrites them all, so this must stay 0.
	Private uint64
	// NotFromNAT: ESP-in-UDP and keepalives towards gwB whose source is
	// not the NAT's public address. Must stay 0.
	NotFromNAT uint64
	// Other: other IPv4 packets.
	Other uint64
	// Drops is the packet socket's own drop count: when it is not 0 the
	// other counts are incomplete.
	Drops uint64
}

// outsideTap counts IPv4 packets on one interface with an AF_PACKET
// socket, like a tcpdump on the NAT's outside.
type outsideTap struct {
	fd                              int
	esp, keepalive, private, notNAT atomic.Uint64
	other                           atomic.Uint64
	deadline                        atomic.Int64 // unix nanos; set by close
	stopping                        atomic.Bool
	wg                              sync.WaitGroup
	drops                           uint64
	closeOnce                       sync.Once
	closeErr                        error
	readErr                         atomic.Value
	ifname, namespace               string
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openOutsideTap starts counting on l (in its namespace).
func openOutsideTap(l *topo.Link) (*outsideTap, error) {
	t := &outsideTap{fd: -1, ifname: l.Name, namespace: l.NS.Label}
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
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20); err != nil {
			return err
		}
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

func (t *outsideTap) read() {
	defer t.wg.Done()
	buf := make([]byte, 128) // headers are enough; the rest is truncated
	for {
		if d := t.deadline.Load(); d != 0 && time.Now().UnixNano() > d {
			return // bounded even if the link never goes quiet
		}
		n, _, err := unix.Recvfrom(t.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				if t.stopping.Load() {
					return // the socket is empty and close was asked for
				}
				continue
			}
			t.readErr.Store(err)
			return
		}
		t.classify(buf[:min(n, len(buf))])
	}
}

func (t *outsideTap) classify(f []byte) {
	if len(f) < 34 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
		return // not IPv4 (ARP, IPv6 neighbour discovery, ...)
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	src, dst := netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
	if private.Contains(src) || private.Contains(dst) {
		t.private.Add(1)
		return
	}
	if ip[9] != 17 || len(ip) < ihl+8 {
		t.other.Add(1)
		return
	}
	udp := ip[ihl:]
	sport, dport := binary.BigEndian.Uint16(udp[0:]), binary.BigEndian.Uint16(udp[2:])
	payloadLen := int(binary.BigEndian.Uint16(udp[4:])) - 8
	if sport != esp.NATTPort && dport != esp.NATTPort {
		t.other.Add(1)
		return
	}
	payload := udp[8:]
	switch {
	case payloadLen == 1 && len(payload) >= 1 && payload[0] == 0xff:
		t.keepalive.Add(1)
	case payloadLen >= 8 && len(payload) >= 4 && binary.BigEndian.Uint32(payload) != 0:
		t.esp.Add(1)
	default:
		t.other.Add(1)
		return
	}
	if dst == gwBWan && src != natPublic {
		t.notNAT.Add(1)
	}
}

func (t *outsideTap) counts() OutsideCounts {
	return OutsideCounts{ESPInUDP: t.esp.Load(), Keepalives: t.keepalive.Load(), Private: t.private.Load(),
		NotFromNAT: t.notNAT.Load(), Other: t.other.Load(), Drops: t.drops}
}

// close lets the reader empty the socket (at most 2 s), reads the
// socket's drop count and closes it.
func (t *outsideTap) close() error {
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
