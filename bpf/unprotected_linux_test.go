//go:build linux

package bpf

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// Addresses of the clear-text discard tests: the remote protected
// networks (behind the peer), our protected network, and a host of the
// Internet.
var (
	remote4  = netip.MustParsePrefix("10.2.0.0/24")
	remote6  = netip.MustParsePrefix("fd00:2::/64")
	remoteH4 = netip.MustParseAddr("10.2.0.5")
	remoteH6 = netip.MustParseAddr("fd00:2::5")
	lanH4    = netip.MustParseAddr("10.1.0.2")
	lanH6    = netip.MustParseAddr("fd00:1::2")
	inet4    = netip.MustParseAddr("198.18.0.9")
)

// ports returns a TCP- or UDP-like upper-layer header with the ports and
// n bytes after it (UDP length set, so the program's UDP checks pass).
func ports(sport, dport uint16, n int) []byte {
	b := make([]byte, 20+n)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+12+n))
	return b
}

// unprotOptions: tunnel 1 protects 10.2.0.0/24, tunnel 2 fd00:2::/64; a
// protect policy for TCP 80 from 10.2.0.0/24 comes before a bypass of
// all UDP 53 from there and of ICMP from 10.2.0.0/24 to 10.1.0.0/24; a
// discard policy without tunnel for tcp 23.
func unprotOptions() Options {
	return Options{LocalAddrs: []netip.Addr{local4, local6}, Unprotected: Unprotected{
		Prefixes: []RemotePrefix{{remote4, 1, false}, {remote6, 2, false},
			{netip.MustParsePrefix("10.3.0.0/16"), 4, true}},
		Rules: []InboundRule{
			{Src: remote4, Proto: protoTCP, SrcPorts: PortRange{80, 80}, Tunnel: 3},
			{Src: remote4, Proto: protoUDP, SrcPorts: PortRange{53, 53}, Bypass: true},
			{Src: remote4, Dst: netip.MustParsePrefix("10.1.0.0/24"), Proto: protoICMP, Bypass: true},
			{Proto: protoTCP, DstPorts: PortRange{23, 23}},
			{Src: remote6, Proto: protoUDP, DstPorts: PortRange{5000, 5999}, Bypass: true},
			{Src: netip.MustParsePrefix("10.3.1.0/24"), Proto: protoUDP},
		},
	}}
}

func TestUnprotectedClassify(t *testing.T) {
	p := loadTest(t, unprotOptions())
	fillQueue(t, p, 0, xskSocket(t))
	type tc struct {
		name   string
		frame  []byte
		want   Verdict
		stats  Stats
		tunnel int // drop counted under this tunnel index (-1: none)
	}
	cases := []tc{
		{"v4 udp from remote to lan: drop", pkt{src: remoteH4, dst: lanH4, proto: protoUDP, l4: ports(1234, 9999, 8)}.bytes(), VerdictDrop, Stats{UnprotectedDropped: 1}, 1},
		{"v6 udp from remote to lan: drop", pkt{v6: true, src: remoteH6, dst: lanH6, proto: protoUDP, l4: ports(1234, 9999, 8)}.bytes(), VerdictDrop, Stats{UnprotectedDropped: 1}, 2},
		{"v4 tcp to our own address from remote: drop", pkt{src: remoteH4, dst: local4, proto: protoTCP, l4: ports(1234, 22, 0)}.bytes(), VerdictDrop, Stats{UnprotectedDropped: 1}, 1},
		{"v4 protect rule before bypass: drop, its tunnel", pkt{src: remoteH4, dst: lanH4, proto: protoTCP, l4: ports(80, 40000, 0)}.bytes(), VerdictDrop, Stats{UnprotectedDropped: 1}, 3},
		{"v4 discard rule without tunnel: prefix's tunnel", pkt{src: remoteH4, dst: lanH4, proto: protoTCP, l4: ports(4000, 23, 0)}.bytes(), VerdictDrop, Stats{UnprotectedDropped: 1}, 1},
		{"v4 bypass udp 53: pass", pkt{src: remoteH4, dst: lanH4, proto: protoUDP, l4: ports(53, 33000, 8)}.bytes(), VerdictPass, Stats{BypassPassed: 1}, -1},
		{"v4 bypass icmp to lan: pass", pkt{src: remoteH4, dst: lanH4, proto: protoICMP, l4: icmpMsg}.bytes(), VerdictPass, Stats{BypassPassed: 1}, -1},
		{"v4 icmp to our address (outside the bypass dst): drop", pkt{src: remoteH4, dst: local4, proto: protoICMP, l4: icmpMsg}.bytes(), VerdictDrop, Stats{UnprotectedDropped: 1}, 1},
		{"v6 bypass udp 5000-5999: pass", pkt{v6: true, src: remoteH6, dst: lanH6, proto: protoUDP, l4: ports(1, 5555, 8)}.bytes(), VerdictPass, Stats{BypassPassed: 1}, -1},
		{"v6 udp outside bypass ports: drop", pkt{v6: true, src: remoteH6, dst: lanH6, proto: protoUDP, l4: ports(1, 6000, 8)}.bytes(), VerdictDrop, Stats{UnprotectedDropped: 1}, 2},
		{"v4 miss: icmp from the internet to us", pkt{src: inet4, dst: local4, proto: protoICMP, l4: icmpMsg}.bytes(), VerdictPass, Stats{PassedOther: 1}, -1},
		{"v4 miss: udp from the peer", pkt{dst: local4, proto: protoUDP, l4: ports(1, 2, 8)}.bytes(), VerdictPass, Stats{PassedOther: 1}, -1},
		{"v6 miss", pkt{v6: true, dst: lanH6, proto: protoTCP, l4: tcpSeg}.bytes(), VerdictPass, Stats{PassedOther: 1}, -1},
		{"esp from a protected source still steered", pkt{src: remoteH4, proto: protoESP, l4: esp(0x77, 16)}.bytes(), VerdictRedirect, Stats{ESPRedirected: 1}, -1},
		{"esp6 from a protected source still steered", pkt{v6: true, src: remoteH6, proto: protoESP, l4: esp(0x77, 16)}.bytes(), VerdictRedirect, Stats{ESPRedirected: 1}, -1},
		{"nat-t from a protected source still steered", pkt{src: remoteH4, proto: protoUDP, l4: natESP}.bytes(), VerdictRedirect, Stats{NATTRedirected: 1}, -1},
		{"ike marker still passed", pkt{src: remoteH4, proto: protoUDP, l4: udp(4500, ikeMarker())}.bytes(), VerdictPass, Stats{IKEPassed: 1}, -1},
		{"ike 500 still passed", pkt{src: remoteH4, proto: protoUDP, l4: udp(500, ikeMarker())}.bytes(), VerdictPass, Stats{IKEPassed: 1}, -1},
		{"keepalive still passed", pkt{src: remoteH4, proto: protoUDP, l4: keepal}.bytes(), VerdictPass, Stats{KeepalivePassed: 1}, -1},
		{"esp not to us from a protected source: clear text to us, drop", pkt{src: remoteH4, dst: lanH4, proto: protoESP, l4: esp(0x77, 16)}.bytes(), VerdictDrop, Stats{UnprotectedDropped: 1}, 1},
		{"esp not to us from elsewhere: not local", pkt{dst: lanH4, proto: protoESP, l4: esp(0x77, 16)}.bytes(), VerdictPass, Stats{NotLocal: 1}, -1},
		{"arp", pkt{etype: etherARP, l4: make([]byte, 28)}.bytes(), VerdictPass, Stats{PassedNonIP: 1}, -1},
		{"v4 first fragment from remote: drop", pkt{src: remoteH4, dst: lanH4, proto: protoTCP, frag4: 0x2000, l4: ports(80, 1, 0)}.bytes(), VerdictDrop, Stats{UnprotectedDropped: 1}, 3},
		{"v4 later fragment from remote (no ports): drop", pkt{src: remoteH4, dst: lanH4, proto: protoUDP, frag4: 10, l4: ports(53, 1, 8)}.bytes(), VerdictDrop, Stats{UnprotectedDropped: 1}, 1},
		{"v4 esp fragment to us from remote: passed", pkt{src: remoteH4, proto: protoESP, frag4: 0x2000, l4: esp(1, 16)}.bytes(), VerdictPass, Stats{FragmentPassed: 1}, -1},
		{"v6 fragment from remote: drop", pkt{v6: true, src: remoteH6, dst: lanH6, proto: protoTCP, ext: []ext6{{typ: ext6Fragment, more: true}}, l4: ports(1, 2, 0)}.bytes(), VerdictDrop, Stats{UnprotectedDropped: 1}, 2},
		{"v4 rules-only prefix, rule matches: drop", pkt{src: netip.MustParseAddr("10.3.1.1"), dst: lanH4, proto: protoUDP, l4: ports(1, 2, 8)}.bytes(), VerdictDrop, Stats{UnprotectedDropped: 1}, 4},
		{"v4 rules-only prefix, no rule matches: pass", pkt{src: netip.MustParseAddr("10.3.2.1"), dst: lanH4, proto: protoUDP, l4: ports(1, 2, 8)}.bytes(), VerdictPass, Stats{PassedOther: 1}, -1},
		{"v4 fragment from elsewhere: passed", pkt{dst: lanH4, proto: protoTCP, frag4: 10, l4: tcpSeg}.bytes(), VerdictPass, Stats{FragmentPassed: 1}, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runCountedDrop(t, p, c.frame, c.want, c.stats, c.tunnel)
		})
	}
}

func TestLastUnprotected(t *testing.T) {
	p := loadTest(t, unprotOptions())
	if _, ok, err := p.LastUnprotected(); err != nil || ok {
		t.Fatalf("before any drop: ok=%v err=%v", ok, err)
	}
	run(t, p, pkt{src: remoteH4, dst: lanH4, proto: protoUDP, l4: ports(1, 2, 8)}.bytes())
	run(t, p, pkt{v6: true, src: remoteH6, dst: lanH6, proto: protoTCP, l4: ports(1, 2, 0)}.bytes())
	last, ok, err := p.LastUnprotected()
	if err != nil || !ok {
		t.Fatalf("ok=%v err=%v", ok, err)
	}
	if last.Src != remoteH6 || last.Dst != lanH6 || last.Proto != protoTCP || last.Tunnel != 2 || last.Seen == 0 {
		t.Errorf("last drop %+v", last)
	}
}

func TestUnprotectedOptionsRejected(t *testing.T) {
	for name, o := range map[string]Options{
		"with plaintext": {Plaintext: true, ProtectedPrefixes: []netip.Prefix{prot4},
			Unprotected: Unprotected{Prefixes: []RemotePrefix{{remote4, 0, false}}}},
		"rules without prefixes": {Unprotected: Unprotected{Rules: []InboundRule{{}}}},
		"tunnel index":           {Unprotected: Unprotected{Prefixes: []RemotePrefix{{remote4, MaxTunnelIndex + 1, false}}}},
		"mixed families": {Unprotected: Unprotected{Prefixes: []RemotePrefix{{remote4, 0, false}},
			Rules: []InboundRule{{Src: remote4, Dst: remote6}}}},
		"empty ports": {Unprotected: Unprotected{Prefixes: []RemotePrefix{{remote4, 0, false}},
			Rules: []InboundRule{{SrcPorts: PortRange{9, 1}}}}},
		"too many rules": {Unprotected: Unprotected{Prefixes: []RemotePrefix{{remote4, 0, false}},
			Rules: make([]InboundRule, MaxUnprotectedRules+1)}},
	} {
		if _, err := o.normalize(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestUnprotectedMatchesModel is the property test of the clear-text
// discard. Invariant: for any prefixes, rules and packet, the program
// drops exactly the packets Unprotected.Classify discards, counts each
// under the tunnel index Classify names, passes the exempt ones as
// BypassPassed, and never touches ESP to a local address. Opaque packets
// (seven IPv6 Destination Options headers, or an IPv4 header with IHL 4)
// follow Classify with Packet.Opaque: fail closed.
func TestUnprotectedMatchesModel(t *testing.T) {
	r := rand.New(rand.NewPCG(0x5eed, 18))
	// A small address universe so that prefixes and packets collide.
	addr4 := func() netip.Addr { return netip.AddrFrom4([4]byte{10, byte(r.IntN(3)), 0, byte(r.IntN(4) * 64)}) }
	addr6 := func() netip.Addr {
		var b [16]byte
		b[0], b[1], b[3], b[15] = 0xfd, 0, byte(r.IntN(3)), byte(r.IntN(4)*64)
		return netip.AddrFrom16(b)
	}
	prefix := func(v6 bool) netip.Prefix {
		if v6 {
			return netip.PrefixFrom(addr6(), []int{0, 16, 32, 120, 128}[r.IntN(5)]).Masked()
		}
		return netip.PrefixFrom(addr4(), []int{0, 8, 16, 24, 26, 32}[r.IntN(6)]).Masked()
	}
	portRange := func() PortRange {
		if r.IntN(2) == 0 {
			return PortRange{}
		}
		lo := uint16(r.IntN(4) * 10)
		return PortRange{lo, lo + uint16(r.IntN(15))}
	}
	protos := []uint8{0, protoTCP, protoUDP, protoICMP}
	for round := range 12 {
		var u Unprotected
		for range 1 + r.IntN(4) {
			u.Prefixes = append(u.Prefixes, RemotePrefix{prefix(r.IntN(2) == 0), r.IntN(5), r.IntN(2) == 0})
		}
		for range r.IntN(8) {
			v6 := r.IntN(2) == 0
			ru := InboundRule{Proto: protos[r.IntN(len(protos))], Bypass: r.IntN(2) == 0, Tunnel: r.IntN(5)}
			if r.IntN(3) > 0 {
				ru.Src = prefix(v6)
			}
			if r.IntN(3) > 0 {
				ru.Dst = prefix(v6)
			}
			if ru.Proto == 0 || ru.Proto == protoTCP || ru.Proto == protoUDP {
				ru.SrcPorts, ru.DstPorts = portRange(), portRange()
			}
			u.Rules = append(u.Rules, ru)
		}
		p := loadTest(t, Options{Unprotected: u})
		fillQueue(t, p, 0, xskSocket(t))
		for range 150 {
			v6 := r.IntN(2) == 0
			src, dst := addr4(), addr4()
			if v6 {
				src, dst = addr6(), addr6()
			}
			proto := []uint8{protoTCP, protoUDP, protoICMP, protoESP}[r.IntN(4)]
			sp, dp := uint16(r.IntN(60)), uint16(r.IntN(60))
			var l4 []byte
			switch proto {
			case protoICMP:
				l4 = icmpMsg
			case protoESP:
				l4 = esp(uint32(1+r.IntN(9)), 16)
			default:
				l4 = ports(sp, dp, 8) // ports < 60: never IKE or NAT-T
			}
			opaque := proto != protoESP && r.IntN(4) == 0
			var exts []ext6
			if opaque && v6 {
				for range 7 {
					exts = append(exts, ext6{typ: ext6DestOpts})
				}
			}
			frame := pkt{v6: v6, src: src, dst: dst, proto: proto, ext: exts, l4: l4}.bytes()
			passReason := func(s Stats) uint64 { return s.PassedOther }
			if opaque && !v6 {
				frame[14] = 0x44 // IHL 4: malformed, addresses still readable
				passReason = func(s Stats) uint64 { return s.Malformed }
			}
			before, _ := p.UnprotectedDrops()
			got, st := run(t, p, frame)
			after, _ := p.UnprotectedDrops()
			if proto == protoESP {
				if got != VerdictRedirect {
					t.Fatalf("round %d: ESP %v->%v got %v", round, src, dst, got)
				}
				continue
			}
			verdict, tunnel := u.Classify(Packet{Src: src, Dst: dst, Proto: proto,
				Ports: proto != protoICMP, SPort: sp, DPort: dp, Opaque: opaque})
			switch verdict {
			case Discard:
				if got != VerdictDrop || st.UnprotectedDropped != 1 || after[tunnel]-before[tunnel] != 1 {
					t.Fatalf("round %d: %v %v->%v %d->%d opaque %v: got %v %+v tunnel %d +%d, model discards under tunnel %d\nrules %+v",
						round, proto, src, dst, sp, dp, opaque, got, st, tunnel, after[tunnel]-before[tunnel], tunnel, u)
				}
			case Exempt:
				if got != VerdictPass || st.BypassPassed != 1 {
					t.Fatalf("round %d: %v %v->%v %d->%d opaque %v: got %v %+v, model exempts\nrules %+v", round, proto, src, dst, sp, dp, opaque, got, st, u)
				}
			case NotProtected:
				if got != VerdictPass || passReason(st) != 1 {
					t.Fatalf("round %d: %v %v->%v opaque %v: got %v %+v, model: not protected\nrules %+v", round, proto, src, dst, opaque, got, st, u)
				}
			}
		}
	}
}
