//go:build linux

package main

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/exampleenv"
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
// socket (exampleenv.PacketCounter), like a tcpdump on the NAT's
// outside.
type outsideTap struct {
	pc                              *exampleenv.PacketCounter
	esp, keepalive, private, notNAT atomic.Uint64
	other                           atomic.Uint64
}

// openOutsideTap starts counting on l (in its namespace).
func openOutsideTap(l *topo.Link) (*outsideTap, error) {
	t := &outsideTap{}
	pc, err := exampleenv.OpenPacketCounter(l, t.classify)
	if err != nil {
		return nil, err
	}
	t.pc = pc
	return t, nil
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
		NotFromNAT: t.notNAT.Load(), Other: t.other.Load(), Drops: t.pc.Drops()}
}

// close lets the reader empty the socket (at most 2 s), reads the
// socket's drop count and closes it.
func (t *outsideTap) close() error {
	return t.pc.Close()
}
