//go:build linux

package main

// Scaffolding: a packet counter on the wan router, to show what an
// eavesdropper between the sites sees. Nothing here is espxdp API.

import (
	"encoding/binary"
	"net/netip"
	"sync"

	"github.com/espxdp/espxdp/internal/exampleenv"
	"github.com/espxdp/espxdp/internal/topo"
)

// WireCounts classifies the frames seen on one link, both directions.
type WireCounts struct {
	// ESP: IPv4 protocol 50 or IPv6 next header 50.
	ESP uint64
	// Clear: any other IPv4 or IPv6 packet between the two sites (both
	// addresses in 10.0.0.0/8, or both in fd00::/8). Must stay 0.
	Clear uint64
	// LinkLocal: IPv6 packets that never leave the link (from a
	// link-local or the unspecified address, or to a link-scope
	// multicast group: neighbour discovery, MLD reports) and ARP.
	LinkLocal uint64
	// Other: everything else. With static neighbours, nothing but the
	// gateways' ESP crosses the wan: it stays 0 as well.
	Other uint64
	// Dropped: frames the socket could not queue (its buffer was full),
	// hence not classified.
	Dropped uint64
}

var (
	sites4 = netip.MustParsePrefix("10.0.0.0/8")
	sites6 = netip.MustParsePrefix("fd00::/8")
)

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
	*classifyFrame(c, f)++
}

// classifyFrame returns the counter of c that frame f (from its
// Ethernet header on, untagged) belongs to.
func classifyFrame(c *WireCounts, f []byte) *uint64 {
	if len(f) < 14 {
		return &c.Other
	}
	switch binary.BigEndian.Uint16(f[12:]) {
	case 0x0806: // ARP
		return &c.LinkLocal
	case 0x0800:
		ip := f[14:]
		if len(ip) < 20 || ip[0]>>4 != 4 {
			return &c.Other
		}
		src, dst := netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		switch {
		case ip[9] == 50:
			return &c.ESP
		case sites4.Contains(src) && sites4.Contains(dst):
			return &c.Clear
		}
		return &c.Other
	case 0x86dd:
		ip := f[14:]
		if len(ip) < 40 || ip[0]>>4 != 6 {
			return &c.Other
		}
		src, dst := netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		switch {
		case ip[6] == 50:
			return &c.ESP
		case sites6.Contains(src) && sites6.Contains(dst):
			return &c.Clear
		case src.IsLinkLocalUnicast() || src.IsUnspecified() || dst.IsLinkLocalMulticast():
			return &c.LinkLocal
		}
		return &c.Other
	}
	return &c.Other
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
