//go:build linux

package main

// Scaffolding: a minimal packet counter on the wan router, to show what
// an eavesdropper between the sites sees. Nothing here is espxdp API.

import (
	"encoding/binary"
	"net/netip"
	"sync"

	"github.com/espxdp/espxdp/internal/exampleenv"
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
// AF_PACKET socket (exampleenv.PacketCounter); no XDP, no copy kept.
type wireTap struct {
	pc     *exampleenv.PacketCounter
	mu     sync.Mutex
	counts WireCounts
}

// startTap starts counting on l, in its namespace.
func startTap(l *topo.Link) (*wireTap, error) {
	t := &wireTap{}
	pc, err := exampleenv.OpenPacketCounter(l, t.classify)
	if err != nil {
		return nil, err
	}
	t.pc = pc
	return t, nil
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

// Counts returns the counts so far (Dropped is known once closed).
func (t *wireTap) Counts() WireCounts {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.counts
	c.Dropped = t.pc.Drops()
	return c
}

// Close stops counting, once the socket is empty, and closes the
// socket.
func (t *wireTap) Close() {
	t.pc.Close()
}
