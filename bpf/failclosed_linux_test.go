//go:build linux

package bpf

import (
	"net/netip"
	"testing"
)

// sevenDestOpts is an IPv6 chain longer than the program parses
// (MAX_IPV6_EXT_HDRS is 6).
func sevenDestOpts() []ext6 {
	var exts []ext6
	for range 7 {
		exts = append(exts, ext6{typ: ext6DestOpts})
	}
	return exts
}

// overlongDestOpts makes the first (Destination Options) header of a
// frame built with ext []ext6{{typ: ext6DestOpts}} run past the payload.
func overlongDestOpts(b []byte) []byte {
	b[ipOff+40+1] = 200
	return b
}

// TestFailClosed covers every branch of the fail-closed rule (RFC 4301
// section 5.2). Invariant: a packet the program cannot fully parse never
// reaches the kernel when what it did parse shows a remote protected
// source (cipher side: dropped unless a bypass rule exempts it whatever
// its protocol and ports) or a protected destination (plain side:
// steered to the engine); a frame whose addresses it cannot reach at all
// (too many VLAN tags) is dropped by a gateway program.
func TestFailClosed(t *testing.T) {
	certain := unprotOptions()
	certain.Unprotected.Rules = append([]InboundRule{{Src: netip.MustParsePrefix("fd00:2::5/128"), Bypass: true}}, certain.Unprotected.Rules...)
	fragSteer := unprotOptions()
	fragSteer.SteerFragments = true
	configs := map[string]Options{
		"cipher":    unprotOptions(),
		"certain":   certain,
		"fragSteer": fragSteer,
		"plain":     testConfigs()["plain"],
		"default":   {},
	}
	progs := map[string]*Program{}
	fd := xskSocket(t)
	for name, o := range configs {
		progs[name] = loadTest(t, o)
		fillQueue(t, progs[name], 0, fd)
	}
	ihl4 := func(b []byte) []byte { b[ipOff] = 0x44; return b }
	rulesOnly := netip.MustParseAddr("10.3.1.5")  // 10.3.0.0/16 rules only, rule {10.3.1.0/24 UDP}
	rulesOnly2 := netip.MustParseAddr("10.3.2.5") // ... no rule
	cases := []struct {
		name, cfg string
		frame     []byte
		want      Verdict
		stats     Stats
		tunnel    int // drop counted under this tunnel index (-1: none)
	}{
		{"cipher 7 ext from remote: drop", "cipher", pkt{v6: true, src: remoteH6, dst: lanH6, proto: protoUDP, ext: sevenDestOpts(), l4: ports(1, 9999, 8)}.bytes(), VerdictDrop, Stats{UnprotectedDropped: 1}, 2},
		{"cipher 7 ext, uncertain bypass (udp 5000-5999): drop", "cipher", pkt{v6: true, src: remoteH6, dst: lanH6, proto: protoUDP, ext: sevenDestOpts(), l4: ports(1, 5555, 8)}.bytes(), VerdictDrop, Stats{UnprotectedDropped: 1}, 2},
		{"cipher 7 ext, certain bypass: pass", "certain", pkt{v6: true, src: remoteH6, dst: lanH6, proto: protoUDP, ext: sevenDestOpts(), l4: ports(1, 9999, 8)}.bytes(), VerdictPass, Stats{BypassPassed: 1}, -1},
		{"cipher 7 ext from elsewhere: pass", "cipher", pkt{v6: true, dst: lanH6, proto: protoUDP, ext: sevenDestOpts(), l4: ports(1, 9999, 8)}.bytes(), VerdictPass, Stats{PassedOther: 1}, -1},
		{"cipher overlong ext from remote: drop", "cipher", overlongDestOpts(pkt{v6: true, src: remoteH6, dst: lanH6, proto: protoUDP, ext: []ext6{{typ: ext6DestOpts}}, l4: ports(1, 9999, 8)}.bytes()), VerdictDrop, Stats{UnprotectedDropped: 1}, 2},
		{"cipher overlong ext from elsewhere: malformed, pass", "cipher", overlongDestOpts(pkt{v6: true, dst: lanH6, proto: protoUDP, ext: []ext6{{typ: ext6DestOpts}}, l4: ports(1, 9999, 8)}.bytes()), VerdictPass, Stats{Malformed: 1}, -1},
		// The first rule that may match is {10.2.0.0/24 TCP sport 80, tunnel 3}.
		{"cipher v4 IHL 4 from remote: drop, first possible rule", "cipher", ihl4(pkt{src: remoteH4, dst: lanH4, proto: protoUDP, l4: ports(53, 1, 8)}.bytes()), VerdictDrop, Stats{UnprotectedDropped: 1}, 3},
		{"cipher v4 opaque, rules-only prefix, rule may match: drop", "cipher", ihl4(pkt{src: rulesOnly, dst: lanH4, proto: protoTCP, l4: ports(1, 2, 0)}.bytes()), VerdictDrop, Stats{UnprotectedDropped: 1}, 4},
		// {any TCP dport 23} may match it too: dropped under the prefix's tunnel.
		{"cipher v4 opaque, rules-only prefix, any-address rule: drop", "cipher", ihl4(pkt{src: rulesOnly2, dst: lanH4, proto: protoUDP, l4: ports(1, 2, 8)}.bytes()), VerdictDrop, Stats{UnprotectedDropped: 1}, 4},
		{"cipher 3 VLAN tags: drop", "cipher", pkt{tpids: []uint16{tpid8021AD, tpid8021Q, tpid8021Q}, src: remoteH4, dst: lanH4, proto: protoUDP, l4: ports(1, 2, 8)}.bytes(), VerdictDrop, Stats{FailClosedDropped: 1}, -1},
		{"plain 3 VLAN tags: drop", "plain", pkt{tpids: []uint16{tpid8021Q, tpid8021Q, tpid8021Q}, dst: protHost4, proto: protoUDP, l4: ports(1, 2, 8)}.bytes(), VerdictDrop, Stats{FailClosedDropped: 1}, -1},
		{"default 3 VLAN tags: pass", "default", pkt{tpids: []uint16{tpid8021Q, tpid8021Q, tpid8021Q}, proto: protoESP, l4: esp(1, 16)}.bytes(), VerdictPass, Stats{PassedNonIP: 1}, -1},
		{"plain 7 ext to protected: engine", "plain", pkt{v6: true, src: unprotIn6, dst: protHost6, proto: protoUDP, ext: sevenDestOpts(), l4: ports(1, 53, 8)}.bytes(), VerdictRedirect, Stats{PlaintextRedirected: 1}, -1},
		{"plain 7 ext elsewhere: pass", "plain", pkt{v6: true, dst: unprotIn6, proto: protoUDP, ext: sevenDestOpts(), l4: ports(1, 53, 8)}.bytes(), VerdictPass, Stats{PassedOther: 1}, -1},
		{"plain overlong ext to protected: engine", "plain", overlongDestOpts(pkt{v6: true, dst: protHost6, proto: protoUDP, ext: []ext6{{typ: ext6DestOpts}}, l4: ports(1, 53, 8)}.bytes()), VerdictRedirect, Stats{PlaintextRedirected: 1}, -1},
		// Outer fragments to the gateway itself from a remote protected source.
		{"frag first udp 4500 to us: tunnel, pass", "cipher", pkt{src: remoteH4, dst: local4, proto: protoUDP, frag4: 0x2000, l4: ports(4500, 4500, 8)}.bytes(), VerdictPass, Stats{FragmentPassed: 1}, -1},
		{"frag first udp 500 to us: tunnel, pass", "cipher", pkt{src: remoteH4, dst: local4, proto: protoUDP, frag4: 0x2000, l4: ports(500, 500, 8)}.bytes(), VerdictPass, Stats{FragmentPassed: 1}, -1},
		{"frag first udp 9999 to us: drop", "cipher", pkt{src: remoteH4, dst: local4, proto: protoUDP, frag4: 0x2000, l4: ports(1234, 9999, 8)}.bytes(), VerdictDrop, Stats{UnprotectedDropped: 1}, 1},
		{"frag later udp to us, no reassembly: drop", "cipher", pkt{src: remoteH4, dst: local4, proto: protoUDP, frag4: 10, l4: ports(4500, 4500, 8)}.bytes(), VerdictDrop, Stats{UnprotectedDropped: 1}, 1},
		{"frag later udp to us from elsewhere: pass", "cipher", pkt{dst: local4, proto: protoUDP, frag4: 10, l4: ports(4500, 4500, 8)}.bytes(), VerdictPass, Stats{FragmentPassed: 1}, -1},
		{"frag later udp to us, reassembly: engine", "fragSteer", pkt{src: remoteH4, dst: local4, proto: protoUDP, frag4: 10, l4: ports(4500, 4500, 8)}.bytes(), VerdictRedirect, Stats{FragmentRedirected: 1}, -1},
		{"frag first udp 9999 to us, reassembly: drop", "fragSteer", pkt{src: remoteH4, dst: local4, proto: protoUDP, frag4: 0x2000, l4: ports(1234, 9999, 8)}.bytes(), VerdictDrop, Stats{UnprotectedDropped: 1}, 1},
		{"frag first udp 4500 to us, reassembly: engine", "fragSteer", pkt{src: remoteH4, dst: local4, proto: protoUDP, frag4: 0x2000, l4: ports(4500, 4500, 8)}.bytes(), VerdictRedirect, Stats{FragmentRedirected: 1}, -1},
		{"frag v6 first udp 9999 to us: drop", "cipher", pkt{v6: true, src: remoteH6, dst: local6, proto: protoUDP, ext: []ext6{{typ: ext6Fragment, more: true}}, l4: ports(1, 9999, 8)}.bytes(), VerdictDrop, Stats{UnprotectedDropped: 1}, 2},
		{"frag esp to us: pass", "cipher", pkt{src: remoteH4, dst: local4, proto: protoESP, frag4: 10, l4: esp(1, 16)}.bytes(), VerdictPass, Stats{FragmentPassed: 1}, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runCountedDrop(t, progs[c.cfg], c.frame, c.want, c.stats, c.tunnel)
		})
	}
}
