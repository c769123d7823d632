//go:build linux

package main

import (
	"encoding/binary"
	"sync/atomic"

	"github.com/espxdp/espxdp/internal/exampleenv"
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
// socket (exampleenv.PacketCounter), like a tcpdump on the router in
// the middle.
type wanTap struct {
	pc              *exampleenv.PacketCounter
	esp, gre, other atomic.Uint64
}

// openWANTap starts counting on l (in its namespace).
func openWANTap(l *topo.Link) (*wanTap, error) {
	t := &wanTap{}
	pc, err := exampleenv.OpenPacketCounter(l, t.classify)
	if err != nil {
		return nil, err
	}
	t.pc = pc
	return t, nil
}

func (t *wanTap) classify(f []byte) {
	if len(f) < 34 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
		return // not IPv4 (ARP, IPv6 neighbour discovery, ...)
	}
	switch f[23] {
	case 50:
		t.esp.Add(1)
	case 47:
		t.gre.Add(1)
	default:
		t.other.Add(1)
	}
}

func (t *wanTap) counts() WANCounts {
	return WANCounts{ESP: t.esp.Load(), GRE: t.gre.Load(), Other: t.other.Load(), Drops: t.pc.Drops()}
}

// close lets the reader empty the socket, reads the socket's drop count
// and closes it.
func (t *wanTap) close() error {
	return t.pc.Close()
}
