//go:build linux

package main

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// frame builds an untagged Ethernet frame carrying an IP header from
// src to dst with protocol (IPv4) or next header (IPv6) proto.
func frame(src, dst netip.Addr, proto byte) []byte {
	f := make([]byte, 14, 64)
	if src.Is4() {
		binary.BigEndian.PutUint16(f[12:], 0x0800)
		ip := make([]byte, 20)
		ip[0], ip[9] = 0x45, proto
		copy(ip[12:], src.AsSlice())
		copy(ip[16:], dst.AsSlice())
		return append(f, ip...)
	}
	binary.BigEndian.PutUint16(f[12:], 0x86dd)
	ip := make([]byte, 40)
	ip[0], ip[6] = 0x60, proto
	copy(ip[8:], src.AsSlice())
	copy(ip[24:], dst.AsSlice())
	return append(f, ip...)
}

// TestClassifyFrame: ESP of either family is ESP whatever its
// addresses; anything else between the sites is clear; IPv6 link
// control is told apart; short or unknown frames are "other", never a
// panic.
func TestClassifyFrame(t *testing.T) {
	a := netip.MustParseAddr
	arp := make([]byte, 42)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	for _, c := range []struct {
		name string
		f    []byte
		want func(*WireCounts) *uint64
	}{
		{"ESP over IPv4", frame(a("192.0.2.1"), a("198.51.100.1"), 50), func(c *WireCounts) *uint64 { return &c.ESP }},
		{"ESP over IPv6", frame(a("2001:db8:a::1"), a("2001:db8:b::1"), 50), func(c *WireCounts) *uint64 { return &c.ESP }},
		{"TCP between IPv4 sites", frame(hostAAddr, hostBAddr, 6), func(c *WireCounts) *uint64 { return &c.Clear }},
		{"ICMPv6 between IPv6 sites", frame(hostAAddr6, hostBAddr6, 58), func(c *WireCounts) *uint64 { return &c.Clear }},
		{"ICMP to the router", frame(a("192.0.2.1"), a("192.0.2.254"), 1), func(c *WireCounts) *uint64 { return &c.Other }},
		{"ICMPv6 between wan addresses", frame(a("2001:db8:a::1"), a("2001:db8:a::fe"), 58), func(c *WireCounts) *uint64 { return &c.Other }},
		{"MLD report (hop-by-hop)", frame(a("fe80::1"), a("ff02::16"), 0), func(c *WireCounts) *uint64 { return &c.LinkLocal }},
		{"DAD neighbour solicitation", frame(a("::"), a("ff02::1:ff00:1"), 58), func(c *WireCounts) *uint64 { return &c.LinkLocal }},
		{"ARP", arp, func(c *WireCounts) *uint64 { return &c.LinkLocal }},
		{"truncated IPv4", frame(hostAAddr, hostBAddr, 6)[:30], func(c *WireCounts) *uint64 { return &c.Other }},
		{"truncated IPv6", frame(hostAAddr6, hostBAddr6, 6)[:50], func(c *WireCounts) *uint64 { return &c.Other }},
		{"runt", []byte{1, 2, 3}, func(c *WireCounts) *uint64 { return &c.Other }},
	} {
		var wc WireCounts
		if got, want := classifyFrame(&wc, c.f), c.want(&wc); got != want {
			t.Errorf("%s: classified into the wrong counter", c.name)
		}
	}
}
