//go:build linux

package bpf

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// Program configurations used by the classification tables.
func testConfigs() map[string]Options {
	locals := []netip.Addr{local4, local6}
	prot := []netip.Prefix{prot4, prot6, netip.PrefixFrom(protExact4, 32)}
	return map[string]Options{
		"default": {},
		"local":   {LocalAddrs: locals},
		"frag":    {LocalAddrs: locals, SteerFragments: true},
		"fragAny": {SteerFragments: true},
		"port":    {NATTPort: 4501},
		"plain":   {LocalAddrs: locals, Plaintext: true, ProtectedPrefixes: prot},
		"plainFr": {LocalAddrs: locals, Plaintext: true, ProtectedPrefixes: prot, SteerFragments: true},
		"plainNL": {Plaintext: true, ProtectedPrefixes: prot},
	}
}

func loadConfigs(t *testing.T) map[string]*Program {
	progs := map[string]*Program{}
	for name, opts := range testConfigs() {
		progs[name] = loadTest(t, opts)
	}
	return progs
}

type classifyCase struct {
	name  string
	cfg   string // key of testConfigs
	frame []byte
	sock  bool // an AF_XDP socket sits in every slot of queue 0
	want  Verdict
	stats Stats // expected change of the counters
}

// mutate returns a copy of b with f applied.
func mutate(b []byte, f func(b []byte)) []byte {
	b = append([]byte{}, b...)
	f(b)
	return b
}

const (
	ipOff = 14 // IP header offset of an untagged frame
	tcpHd = 20
)

var (
	tcpSeg  = make([]byte, tcpHd)
	icmpMsg = []byte{8, 0, 0, 0, 0, 1, 0, 1}
	natESP  = udp(4500, esp(0x1001, 16))
	keepal  = udp(4500, []byte{0xff})
)

func classifyCases() []classifyCase {
	redirect := func(s Stats) Stats { return s }
	var cases []classifyCase
	add := func(c ...classifyCase) { cases = append(cases, c...) }

	// Raw ESP, IPv4 and IPv6, with and without VLAN tags.
	add(
		classifyCase{"esp4", "default", pkt{proto: protoESP, l4: esp(0x1234, 32)}.bytes(), true, VerdictRedirect, redirect(Stats{ESPRedirected: 1})},
		classifyCase{"esp4 no socket", "default", pkt{proto: protoESP, l4: esp(0x1234, 32)}.bytes(), false, VerdictPass, Stats{RedirectNoSocket: 1}},
		classifyCase{"esp6", "default", pkt{v6: true, proto: protoESP, l4: esp(0x1234, 32)}.bytes(), true, VerdictRedirect, Stats{ESPRedirected: 1}},
		classifyCase{"esp6 no socket", "default", pkt{v6: true, proto: protoESP, l4: esp(0x1234, 32)}.bytes(), false, VerdictPass, Stats{RedirectNoSocket: 1}},
		classifyCase{"esp4 802.1Q", "default", pkt{tpids: []uint16{tpid8021Q}, proto: protoESP, l4: esp(7, 8)}.bytes(), true, VerdictRedirect, Stats{ESPRedirected: 1}},
		classifyCase{"esp4 802.1ad", "default", pkt{tpids: []uint16{tpid8021AD}, proto: protoESP, l4: esp(7, 8)}.bytes(), true, VerdictRedirect, Stats{ESPRedirected: 1}},
		classifyCase{"esp4 QinQ", "default", pkt{tpids: []uint16{tpid8021AD, tpid8021Q}, proto: protoESP, l4: esp(7, 8)}.bytes(), true, VerdictRedirect, Stats{ESPRedirected: 1}},
		classifyCase{"esp6 double 802.1Q", "default", pkt{tpids: []uint16{tpid8021Q, tpid8021Q}, v6: true, proto: protoESP, l4: esp(7, 8)}.bytes(), true, VerdictRedirect, Stats{ESPRedirected: 1}},
		classifyCase{"three VLAN tags", "default", pkt{tpids: []uint16{tpid8021AD, tpid8021Q, tpid8021Q}, proto: protoESP, l4: esp(7, 8)}.bytes(), true, VerdictPass, Stats{PassedNonIP: 1}},
		classifyCase{"esp4 IHL 6", "default", pkt{ihl: 6, proto: protoESP, l4: esp(7, 8)}.bytes(), true, VerdictRedirect, Stats{ESPRedirected: 1}},
		classifyCase{"esp4 IHL 15", "default", pkt{ihl: 15, proto: protoESP, l4: esp(7, 8)}.bytes(), true, VerdictRedirect, Stats{ESPRedirected: 1}},
		classifyCase{"esp4 QinQ IHL 15", "default", pkt{tpids: []uint16{tpid8021AD, tpid8021Q}, ihl: 15, proto: protoESP, l4: esp(7, 8)}.bytes(), true, VerdictRedirect, Stats{ESPRedirected: 1}},
		classifyCase{"esp4 IHL 4", "default", pkt{ihl: 4, proto: protoESP, l4: esp(7, 8)}.bytes(), true, VerdictPass, Stats{Malformed: 1}},
		classifyCase{"esp4 IHL 0", "default", mutate(pkt{proto: protoESP, l4: esp(7, 8)}.bytes(), func(b []byte) { b[ipOff] = 0x40 }), true, VerdictPass, Stats{Malformed: 1}},
		classifyCase{"esp4 DF set", "default", pkt{frag4: 0x4000, proto: protoESP, l4: esp(7, 8)}.bytes(), true, VerdictRedirect, Stats{ESPRedirected: 1}},
		classifyCase{"esp4 SPI 0 is still ESP", "default", pkt{proto: protoESP, l4: esp(0, 8)}.bytes(), true, VerdictRedirect, Stats{ESPRedirected: 1}},
		classifyCase{"esp4 header short", "default", pkt{proto: protoESP, l4: esp(7, 0)[:7]}.bytes(), true, VerdictPass, Stats{Malformed: 1}},
		classifyCase{"esp4 exactly header", "default", pkt{proto: protoESP, l4: esp(7, 0)}.bytes(), true, VerdictRedirect, Stats{ESPRedirected: 1}},
		classifyCase{"esp4 padded frame", "default", pkt{proto: protoESP, l4: esp(7, 0), pad: 18}.bytes(), true, VerdictRedirect, Stats{ESPRedirected: 1}},
	)

	// IPv6 extension headers.
	add(
		classifyCase{"esp6 hop-by-hop + dest options", "default", pkt{v6: true, ext: []ext6{{typ: ext6HopByHop}, {typ: ext6DestOpts, size: 16}}, proto: protoESP, l4: esp(9, 8)}.bytes(), true, VerdictRedirect, Stats{ESPRedirected: 1}},
		classifyCase{"esp6 routing", "default", pkt{v6: true, ext: []ext6{{typ: ext6Routing, size: 24}}, proto: protoESP, l4: esp(9, 8)}.bytes(), true, VerdictRedirect, Stats{ESPRedirected: 1}},
		classifyCase{"esp6 atomic fragment", "default", pkt{v6: true, ext: []ext6{{typ: ext6HopByHop}, {typ: ext6Fragment}}, proto: protoESP, l4: esp(9, 8)}.bytes(), true, VerdictRedirect, Stats{ESPRedirected: 1}},
		classifyCase{"esp6 six ext headers", "default", pkt{v6: true, ext: []ext6{{typ: ext6HopByHop}, {typ: ext6DestOpts}, {typ: ext6Routing}, {typ: ext6DestOpts}, {typ: ext6DestOpts, size: 2048}, {typ: ext6DestOpts}}, proto: protoESP, l4: esp(9, 8)}.bytes(), true, VerdictRedirect, Stats{ESPRedirected: 1}},
		classifyCase{"esp6 seven ext headers", "default", pkt{v6: true, ext: []ext6{{typ: ext6HopByHop}, {typ: ext6DestOpts}, {typ: ext6Routing}, {typ: ext6DestOpts}, {typ: ext6DestOpts}, {typ: ext6DestOpts}, {typ: ext6DestOpts}}, proto: protoESP, l4: esp(9, 8)}.bytes(), true, VerdictPass, Stats{PassedOther: 1}},
		classifyCase{"natt6 hop-by-hop", "default", pkt{v6: true, ext: []ext6{{typ: ext6HopByHop}}, proto: protoUDP, l4: natESP}.bytes(), true, VerdictRedirect, Stats{NATTRedirected: 1}},
		classifyCase{"ext header beyond payload length", "default", mutate(pkt{v6: true, ext: []ext6{{typ: ext6HopByHop}}, proto: protoESP, l4: esp(9, 8)}.bytes(), func(b []byte) { b[ipOff+40+1] = 4 }), true, VerdictPass, Stats{Malformed: 1}},
		classifyCase{"ipv6 payload length beyond frame", "default", mutate(pkt{v6: true, proto: protoESP, l4: esp(9, 8)}.bytes(), func(b []byte) { binary.BigEndian.PutUint16(b[ipOff+4:], 200) }), true, VerdictPass, Stats{Malformed: 1}},
		classifyCase{"ipv6 bad version", "default", mutate(pkt{v6: true, proto: protoESP, l4: esp(9, 8)}.bytes(), func(b []byte) { b[ipOff] = 0x40 }), true, VerdictPass, Stats{Malformed: 1}},
	)

	// ESP in UDP (RFC 3948) and IKE.
	add(
		classifyCase{"natt4", "default", pkt{proto: protoUDP, l4: natESP}.bytes(), true, VerdictRedirect, Stats{NATTRedirected: 1}},
		classifyCase{"natt4 no socket", "default", pkt{proto: protoUDP, l4: natESP}.bytes(), false, VerdictPass, Stats{RedirectNoSocket: 1}},
		classifyCase{"natt6", "default", pkt{v6: true, proto: protoUDP, l4: natESP}.bytes(), true, VerdictRedirect, Stats{NATTRedirected: 1}},
		classifyCase{"natt4 QinQ IHL 7", "default", pkt{tpids: []uint16{tpid8021AD, tpid8021Q}, ihl: 7, proto: protoUDP, l4: natESP}.bytes(), true, VerdictRedirect, Stats{NATTRedirected: 1}},
		classifyCase{"natt4 exactly SPI+seq", "default", pkt{proto: protoUDP, l4: udp(4500, esp(0x1001, 0))}.bytes(), true, VerdictRedirect, Stats{NATTRedirected: 1}},
		classifyCase{"natt4 7-byte payload", "default", pkt{proto: protoUDP, l4: udp(4500, esp(0x1001, 0)[:7])}.bytes(), true, VerdictPass, Stats{Malformed: 1}},
		classifyCase{"natt4 IKE non-ESP marker", "default", pkt{proto: protoUDP, l4: udp(4500, ikeMarker())}.bytes(), true, VerdictPass, Stats{IKEPassed: 1}},
		classifyCase{"natt6 IKE non-ESP marker", "default", pkt{v6: true, proto: protoUDP, l4: udp(4500, ikeMarker())}.bytes(), true, VerdictPass, Stats{IKEPassed: 1}},
		classifyCase{"natt4 bare non-ESP marker", "default", pkt{proto: protoUDP, l4: udp(4500, make([]byte, 4))}.bytes(), true, VerdictPass, Stats{IKEPassed: 1}},
		classifyCase{"natt4 keepalive", "default", pkt{proto: protoUDP, l4: keepal}.bytes(), true, VerdictPass, Stats{KeepalivePassed: 1}},
		classifyCase{"natt6 keepalive", "default", pkt{v6: true, proto: protoUDP, l4: keepal}.bytes(), true, VerdictPass, Stats{KeepalivePassed: 1}},
		classifyCase{"natt4 keepalive with Ethernet padding", "default", pkt{proto: protoUDP, l4: keepal, pad: 17}.bytes(), true, VerdictPass, Stats{KeepalivePassed: 1}},
		classifyCase{"natt4 one byte not 0xff", "default", pkt{proto: protoUDP, l4: udp(4500, []byte{0x00})}.bytes(), true, VerdictPass, Stats{Malformed: 1}},
		classifyCase{"natt4 empty payload", "default", pkt{proto: protoUDP, l4: udp(4500, nil)}.bytes(), true, VerdictPass, Stats{Malformed: 1}},
		classifyCase{"natt4 empty payload padded", "default", pkt{proto: protoUDP, l4: udp(4500, nil), pad: 20}.bytes(), true, VerdictPass, Stats{Malformed: 1}},
		classifyCase{"natt4 3-byte payload", "default", pkt{proto: protoUDP, l4: udp(4500, []byte{1, 2, 3})}.bytes(), true, VerdictPass, Stats{Malformed: 1}},
		classifyCase{"udp length below 8", "default", mutate(pkt{proto: protoUDP, l4: natESP}.bytes(), func(b []byte) { binary.BigEndian.PutUint16(b[ipOff+20+4:], 7) }), true, VerdictPass, Stats{Malformed: 1}},
		classifyCase{"udp length beyond IP", "default", mutate(pkt{proto: protoUDP, l4: natESP}.bytes(), func(b []byte) { binary.BigEndian.PutUint16(b[ipOff+20+4:], 200) }), true, VerdictPass, Stats{Malformed: 1}},
		classifyCase{"udp 500 IKE", "default", pkt{proto: protoUDP, l4: udp(500, make([]byte, 28))}.bytes(), true, VerdictPass, Stats{IKEPassed: 1}},
		classifyCase{"udp6 500 IKE", "default", pkt{v6: true, proto: protoUDP, l4: udp(500, make([]byte, 28))}.bytes(), true, VerdictPass, Stats{IKEPassed: 1}},
		classifyCase{"udp 4501", "default", pkt{proto: protoUDP, l4: udp(4501, esp(0x1001, 16))}.bytes(), true, VerdictPass, Stats{PassedOther: 1}},
		classifyCase{"custom port natt", "port", pkt{proto: protoUDP, l4: udp(4501, esp(0x1001, 16))}.bytes(), true, VerdictRedirect, Stats{NATTRedirected: 1}},
		classifyCase{"custom port keepalive", "port", pkt{proto: protoUDP, l4: udp(4501, []byte{0xff})}.bytes(), true, VerdictPass, Stats{KeepalivePassed: 1}},
		classifyCase{"custom port: 4500 is other", "port", pkt{proto: protoUDP, l4: natESP}.bytes(), true, VerdictPass, Stats{PassedOther: 1}},
	)

	// Not ours.
	add(
		classifyCase{"tcp4", "default", pkt{proto: protoTCP, l4: tcpSeg}.bytes(), true, VerdictPass, Stats{PassedOther: 1}},
		classifyCase{"icmp4", "default", pkt{proto: protoICMP, l4: icmpMsg}.bytes(), true, VerdictPass, Stats{PassedOther: 1}},
		classifyCase{"icmp6", "default", pkt{v6: true, proto: protoICMPv6, l4: icmpMsg}.bytes(), true, VerdictPass, Stats{PassedOther: 1}},
		classifyCase{"arp", "default", pkt{etype: etherARP, l4: make([]byte, 28)}.bytes(), true, VerdictPass, Stats{PassedNonIP: 1}},
		classifyCase{"arp in vlan", "default", pkt{tpids: []uint16{tpid8021Q}, etype: etherARP, l4: make([]byte, 28)}.bytes(), true, VerdictPass, Stats{PassedNonIP: 1}},
	)

	// Malformed headers and minimal frames (the kernel refuses test runs
	// of less than 14 bytes).
	add(
		classifyCase{"14 bytes IPv4", "default", pkt{etype: etherIPv4}.bytes()[:14], true, VerdictPass, Stats{Malformed: 1}},
		classifyCase{"14 bytes IPv6", "default", pkt{etype: etherIPv6}.bytes()[:14], true, VerdictPass, Stats{Malformed: 1}},
		classifyCase{"14 bytes 802.1Q", "default", pkt{etype: tpid8021Q}.bytes(), true, VerdictPass, Stats{Malformed: 1}},
		classifyCase{"16 bytes 802.1Q", "default", pkt{etype: tpid8021Q, l4: []byte{0, 1}}.bytes(), true, VerdictPass, Stats{Malformed: 1}},
		classifyCase{"14 bytes other", "default", pkt{etype: 0x88cc}.bytes(), true, VerdictPass, Stats{PassedNonIP: 1}},
		classifyCase{"ipv4 total length below header", "default", mutate(pkt{ihl: 6, proto: protoESP, l4: esp(7, 8)}.bytes(), func(b []byte) { binary.BigEndian.PutUint16(b[ipOff+2:], 23) }), true, VerdictPass, Stats{Malformed: 1}},
		classifyCase{"ipv4 total length beyond frame", "default", mutate(pkt{proto: protoESP, l4: esp(7, 8)}.bytes(), func(b []byte) { binary.BigEndian.PutUint16(b[ipOff+2:], 1000) }), true, VerdictPass, Stats{Malformed: 1}},
		classifyCase{"ipv4 bad version", "default", mutate(pkt{proto: protoESP, l4: esp(7, 8)}.bytes(), func(b []byte) { b[ipOff] = 0x65 }), true, VerdictPass, Stats{Malformed: 1}},
	)

	// Local-address filter.
	add(
		classifyCase{"local esp4 hit", "local", pkt{proto: protoESP, l4: esp(7, 8)}.bytes(), true, VerdictRedirect, Stats{ESPRedirected: 1}},
		classifyCase{"local esp4 miss", "local", pkt{dst: other4, proto: protoESP, l4: esp(7, 8)}.bytes(), true, VerdictPass, Stats{NotLocal: 1}},
		classifyCase{"local esp6 hit", "local", pkt{v6: true, proto: protoESP, l4: esp(7, 8)}.bytes(), true, VerdictRedirect, Stats{ESPRedirected: 1}},
		classifyCase{"local esp6 miss", "local", pkt{v6: true, dst: other6, proto: protoESP, l4: esp(7, 8)}.bytes(), true, VerdictPass, Stats{NotLocal: 1}},
		classifyCase{"local esp6 v4-mapped miss", "local", pkt{v6: true, dst: netip.AddrFrom16(local4.As16()), proto: protoESP, l4: esp(7, 8)}.bytes(), true, VerdictPass, Stats{NotLocal: 1}},
		classifyCase{"local natt4 hit", "local", pkt{proto: protoUDP, l4: natESP}.bytes(), true, VerdictRedirect, Stats{NATTRedirected: 1}},
		classifyCase{"local natt4 miss", "local", pkt{dst: other4, proto: protoUDP, l4: natESP}.bytes(), true, VerdictPass, Stats{NotLocal: 1}},
		classifyCase{"local natt6 miss", "local", pkt{v6: true, dst: other6, proto: protoUDP, l4: natESP}.bytes(), true, VerdictPass, Stats{NotLocal: 1}},
		classifyCase{"local keepalive miss", "local", pkt{dst: other4, proto: protoUDP, l4: keepal}.bytes(), true, VerdictPass, Stats{NotLocal: 1}},
		classifyCase{"local keepalive hit", "local", pkt{proto: protoUDP, l4: keepal}.bytes(), true, VerdictPass, Stats{KeepalivePassed: 1}},
		classifyCase{"local ike 500 hit", "local", pkt{proto: protoUDP, l4: udp(500, make([]byte, 28))}.bytes(), true, VerdictPass, Stats{IKEPassed: 1}},
		classifyCase{"local ike 500 miss", "local", pkt{dst: other4, proto: protoUDP, l4: udp(500, make([]byte, 28))}.bytes(), true, VerdictPass, Stats{NotLocal: 1}},
		classifyCase{"local tcp miss is other", "local", pkt{dst: other4, proto: protoTCP, l4: tcpSeg}.bytes(), true, VerdictPass, Stats{PassedOther: 1}},
	)

	// Outer fragments.
	esp4Frag := func(dst netip.Addr, field uint16) []byte {
		return pkt{dst: dst, frag4: field, proto: protoESP, l4: esp(7, 16)}.bytes()
	}
	esp6Frag := func(dst netip.Addr, off uint16, more bool) []byte {
		return pkt{v6: true, dst: dst, ext: []ext6{{typ: ext6HopByHop}, {typ: ext6Fragment, fragOffset: off, more: more}}, proto: protoESP, l4: esp(7, 16)}.bytes()
	}
	add(
		classifyCase{"frag default esp4 first", "default", esp4Frag(local4, 0x2000), true, VerdictPass, Stats{FragmentPassed: 1}},
		classifyCase{"frag default esp4 later", "default", esp4Frag(local4, 100), true, VerdictPass, Stats{FragmentPassed: 1}},
		classifyCase{"frag default esp4 later MF", "default", esp4Frag(local4, 0x2000|100), true, VerdictPass, Stats{FragmentPassed: 1}},
		classifyCase{"frag default udp4", "default", pkt{frag4: 0x2000, proto: protoUDP, l4: natESP}.bytes(), true, VerdictPass, Stats{FragmentPassed: 1}},
		classifyCase{"frag default esp6 first", "default", esp6Frag(local6, 0, true), true, VerdictPass, Stats{FragmentPassed: 1}},
		classifyCase{"frag default esp6 later", "default", esp6Frag(local6, 10, false), true, VerdictPass, Stats{FragmentPassed: 1}},
		classifyCase{"frag steer esp4 first", "frag", esp4Frag(local4, 0x2000), true, VerdictRedirect, Stats{FragmentRedirected: 1}},
		classifyCase{"frag steer esp4 later", "frag", esp4Frag(local4, 185), true, VerdictRedirect, Stats{FragmentRedirected: 1}},
		classifyCase{"frag steer esp4 no socket", "frag", esp4Frag(local4, 0x2000), false, VerdictPass, Stats{RedirectNoSocket: 1}},
		classifyCase{"frag steer esp4 not local", "frag", esp4Frag(other4, 0x2000), true, VerdictPass, Stats{FragmentPassed: 1}},
		classifyCase{"frag steer udp4 later", "frag", pkt{frag4: 0x2000 | 3, proto: protoUDP, l4: []byte("payload only....")}.bytes(), true, VerdictRedirect, Stats{FragmentRedirected: 1}},
		classifyCase{"frag steer tcp4 stays", "frag", pkt{frag4: 0x2000, proto: protoTCP, l4: tcpSeg}.bytes(), true, VerdictPass, Stats{FragmentPassed: 1}},
		classifyCase{"frag steer esp6 first", "frag", esp6Frag(local6, 0, true), true, VerdictRedirect, Stats{FragmentRedirected: 1}},
		classifyCase{"frag steer esp6 later", "frag", esp6Frag(local6, 10, false), true, VerdictRedirect, Stats{FragmentRedirected: 1}},
		classifyCase{"frag steer esp6 not local", "frag", esp6Frag(other6, 10, true), true, VerdictPass, Stats{FragmentPassed: 1}},
		classifyCase{"frag steer any dst", "fragAny", esp4Frag(other4, 0x2000), true, VerdictRedirect, Stats{FragmentRedirected: 1}},
		classifyCase{"frag steer atomic is whole", "frag", pkt{v6: true, ext: []ext6{{typ: ext6Fragment}}, proto: protoESP, l4: esp(7, 16)}.bytes(), true, VerdictRedirect, Stats{ESPRedirected: 1}},
		classifyCase{"frag plaintext protected, not steered", "plain", pkt{dst: protHost4, frag4: 0x2000, proto: protoTCP, l4: tcpSeg}.bytes(), true, VerdictPass, Stats{FragmentPassed: 1}},
		classifyCase{"frag plaintext protected, steered", "plainFr", pkt{dst: protHost4, frag4: 0x2000, proto: protoTCP, l4: tcpSeg}.bytes(), true, VerdictRedirect, Stats{FragmentRedirected: 1}},
		classifyCase{"frag plaintext unprotected", "plainFr", pkt{dst: unprotIn4, frag4: 0x2000, proto: protoTCP, l4: tcpSeg}.bytes(), true, VerdictPass, Stats{FragmentPassed: 1}},
	)

	// Plaintext (gateway) mode.
	add(
		classifyCase{"plain tcp4 protected", "plain", pkt{dst: protHost4, proto: protoTCP, l4: tcpSeg}.bytes(), true, VerdictRedirect, Stats{PlaintextRedirected: 1}},
		classifyCase{"plain tcp4 protected no socket", "plain", pkt{dst: protHost4, proto: protoTCP, l4: tcpSeg}.bytes(), false, VerdictPass, Stats{RedirectNoSocket: 1}},
		classifyCase{"plain tcp4 unprotected", "plain", pkt{dst: unprotIn4, proto: protoTCP, l4: tcpSeg}.bytes(), true, VerdictPass, Stats{PassedOther: 1}},
		classifyCase{"plain /32 hit", "plain", pkt{dst: protExact4, proto: protoICMP, l4: icmpMsg}.bytes(), true, VerdictRedirect, Stats{PlaintextRedirected: 1}},
		classifyCase{"plain /32 neighbour miss", "plain", pkt{dst: protExact4.Next(), proto: protoICMP, l4: icmpMsg}.bytes(), true, VerdictPass, Stats{PassedOther: 1}},
		classifyCase{"plain icmp6 protected", "plain", pkt{v6: true, dst: protHost6, proto: protoICMPv6, l4: icmpMsg}.bytes(), true, VerdictRedirect, Stats{PlaintextRedirected: 1}},
		classifyCase{"plain icmp6 unprotected", "plain", pkt{v6: true, dst: unprotIn6, proto: protoICMPv6, l4: icmpMsg}.bytes(), true, VerdictPass, Stats{PassedOther: 1}},
		classifyCase{"plain udp6 protected vlan", "plain", pkt{tpids: []uint16{tpid8021Q}, v6: true, dst: protHost6, proto: protoUDP, l4: udp(53, make([]byte, 12))}.bytes(), true, VerdictRedirect, Stats{PlaintextRedirected: 1}},
		classifyCase{"plain esp to local is ciphertext", "plain", pkt{proto: protoESP, l4: esp(7, 8)}.bytes(), true, VerdictRedirect, Stats{ESPRedirected: 1}},
		classifyCase{"plain esp to protected is plaintext", "plain", pkt{dst: protHost4, proto: protoESP, l4: esp(7, 8)}.bytes(), true, VerdictRedirect, Stats{PlaintextRedirected: 1}},
		classifyCase{"plain esp elsewhere not local", "plain", pkt{dst: other4, proto: protoESP, l4: esp(7, 8)}.bytes(), true, VerdictPass, Stats{NotLocal: 1}},
		classifyCase{"plain natt to protected is plaintext", "plain", pkt{dst: protHost4, proto: protoUDP, l4: natESP}.bytes(), true, VerdictRedirect, Stats{PlaintextRedirected: 1}},
		classifyCase{"plain keepalive to local", "plain", pkt{proto: protoUDP, l4: keepal}.bytes(), true, VerdictPass, Stats{KeepalivePassed: 1}},
		classifyCase{"plain no local filter: esp to protected is ESP", "plainNL", pkt{dst: protHost4, proto: protoESP, l4: esp(7, 8)}.bytes(), true, VerdictRedirect, Stats{ESPRedirected: 1}},
		classifyCase{"plain no local filter: tcp protected", "plainNL", pkt{dst: protHost4, proto: protoTCP, l4: tcpSeg}.bytes(), true, VerdictRedirect, Stats{PlaintextRedirected: 1}},
		// Fail closed: the addresses are readable (IHL 4 is malformed), and
		// plaintext to a protected destination never goes to the kernel.
		classifyCase{"plain malformed", "plain", mutate(pkt{dst: protHost4, proto: protoTCP, l4: tcpSeg}.bytes(), func(b []byte) { b[ipOff] = 0x44 }), true, VerdictRedirect, Stats{PlaintextRedirected: 1}},
		classifyCase{"plain malformed unprotected dst", "plain", mutate(pkt{dst: unprotIn4, proto: protoTCP, l4: tcpSeg}.bytes(), func(b []byte) { b[ipOff] = 0x44 }), true, VerdictPass, Stats{Malformed: 1}},
		classifyCase{"default ignores prefixes", "default", pkt{dst: protHost4, proto: protoTCP, l4: tcpSeg}.bytes(), true, VerdictPass, Stats{PassedOther: 1}},
	)
	return cases
}

func TestClassify(t *testing.T) {
	progs := loadConfigs(t)
	fd := xskSocket(t)
	for _, c := range classifyCases() {
		t.Run(c.name, func(t *testing.T) {
			p := progs[c.cfg]
			if p == nil {
				t.Fatalf("no config %q", c.cfg)
			}
			if c.sock {
				fillQueue(t, p, 0, fd)
			}
			got, stats := run(t, p, c.frame)
			if got != c.want {
				t.Errorf("verdict %v, want %v", got, c.want)
			}
			if stats != c.stats {
				t.Errorf("counters changed by %+v, want %+v", stats, c.stats)
			}
		})
	}
}

// TestTruncation cuts frames at every length from 14 bytes up and checks
// each shorter frame is passed as malformed: once with the IP and UDP
// length fields left as they were (the frame is shorter than the headers
// say), and once with them rewritten to the cut length, so that each
// header's own bounds check is reached. The full frame is the positive
// control.
func TestTruncation(t *testing.T) {
	p := loadTest(t, Options{LocalAddrs: []netip.Addr{local4, local6}})
	fillQueue(t, p, 0, xskSocket(t))

	bases := []struct {
		name string
		pkt  pkt
		want Stats
	}{
		{"esp4 QinQ IHL 6", pkt{tpids: []uint16{tpid8021AD, tpid8021Q}, ihl: 6, proto: protoESP, l4: esp(7, 0)}, Stats{ESPRedirected: 1}},
		{"natt4 802.1Q IHL 15", pkt{tpids: []uint16{tpid8021Q}, ihl: 15, proto: protoUDP, l4: udp(4500, esp(0x01000000, 0))}, Stats{NATTRedirected: 1}},
		{"natt4", pkt{proto: protoUDP, l4: udp(4500, esp(0x00000001, 0))}, Stats{NATTRedirected: 1}},
		{"esp6 hbh+routing+dstopts", pkt{tpids: []uint16{tpid8021Q}, v6: true, ext: []ext6{{typ: ext6HopByHop, size: 16}, {typ: ext6Routing}, {typ: ext6DestOpts}}, proto: protoESP, l4: esp(7, 0)}, Stats{ESPRedirected: 1}},
		{"natt6 dstopts", pkt{v6: true, ext: []ext6{{typ: ext6DestOpts}}, proto: protoUDP, l4: udp(4500, esp(0x00ff0000, 0))}, Stats{NATTRedirected: 1}},
	}
	for _, b := range bases {
		t.Run(b.name, func(t *testing.T) {
			full := b.pkt.bytes()
			if v, s := run(t, p, full); v != VerdictRedirect || s != b.want {
				t.Fatalf("full frame: %v %+v, want %v %+v", v, s, VerdictRedirect, b.want)
			}
			for n := 14; n < len(full); n++ {
				for _, fixed := range []bool{false, true} {
					frame := full[:n]
					if fixed {
						frame = b.pkt.truncateFixed(full, n)
					}
					v, s := run(t, p, frame)
					if v != VerdictPass || s != (Stats{Malformed: 1}) {
						t.Errorf("cut to %d bytes (lengths fixed: %v): %v %+v, want XDP_PASS malformed",
							n, fixed, v, s)
					}
				}
			}
		})
	}
}

func TestSPIHashSteering(t *testing.T) {
	const n = 4
	p := loadTest(t, Options{SocketsPerQueue: n, SPIHash: true, Plaintext: true,
		ProtectedPrefixes: []netip.Prefix{prot4, prot6}, SteerFragments: true})
	fd := xskSocket(t)

	type flow struct {
		name  string
		frame []byte
		slot  int
		stats Stats
	}
	var flows []flow
	for _, spi := range []uint32{1, 2, 3, 0x1001, 0xdeadbeef, 0xffffffff, 0x80000000, 12345} {
		flows = append(flows,
			flow{"esp4", pkt{proto: protoESP, l4: esp(spi, 8)}.bytes(), SPIHashSlot(spi, n), Stats{ESPRedirected: 1}},
			flow{"natt6", pkt{v6: true, proto: protoUDP, l4: udp(4500, esp(spi, 8))}.bytes(), SPIHashSlot(spi, n), Stats{NATTRedirected: 1}})
	}
	for _, dst := range []netip.Addr{protHost4, protHost4.Next(), protHost6, protHost6.Next()} {
		flows = append(flows, flow{"plain " + dst.String(), pkt{v6: dst.Is6(), dst: dst, proto: protoTCP, l4: tcpSeg}.bytes(),
			PlaintextHashSlot(dst, n), Stats{PlaintextRedirected: 1}})
	}
	flows = append(flows, flow{"fragment", pkt{frag4: 0x2000 | 9, proto: protoESP, l4: esp(0xdeadbeef, 8)}.bytes(), 0, Stats{FragmentRedirected: 1}})

	slotsSeen := map[int]bool{}
	for _, f := range flows {
		slotsSeen[f.slot] = true
		for slot := range n {
			idx, err := p.SocketIndex(0, slot)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.RegisterSocket(idx, fd); err != nil {
				t.Fatal(err)
			}
			v, s := run(t, p, f.frame)
			if slot == f.slot {
				if v != VerdictRedirect || s != f.stats {
					t.Errorf("%s: socket in expected slot %d: %v %+v, want XDP_REDIRECT %+v", f.name, slot, v, s, f.stats)
				}
			} else if v != VerdictPass || s != (Stats{RedirectNoSocket: 1}) {
				t.Errorf("%s: socket only in slot %d, expected slot %d: %v %+v, want XDP_PASS no-socket", f.name, slot, f.slot, v, s)
			}
			if err := p.UnregisterSocket(idx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(slotsSeen) < 3 {
		t.Errorf("the flows only hit slots %v; the hash does not spread", slotsSeen)
	}
}
