//go:build linux

package bpf

import "testing"

// TestRedTeamUnprotectedLongIPv6Chain breaks the clear-text discard
// (RFC 4301 §5.2, FLAG_UNPROTECTED: clear text from a remote protected
// source is dropped): parse_ipv6 gives up after MAX_IPV6_EXT_HDRS (6)
// extension headers and returns PARSE_OTHER, which xdp_steer passes
// (STAT_PASSED_OTHER) without calling unprotected(). An IPv6 packet from
// fd00:2::5 (behind the peer) to the LAN with seven Destination Options
// headers therefore reaches the kernel, whose forwarding path does not
// look past Hop-by-Hop and forwards it as clear text between the
// protected networks. Fix: on PARSE_OTHER (and PARSE_MALFORMED) still run
// the source lookup (unprotected_or with the source known; rules that
// need proto/ports can treat the packet as an opaque one and drop), i.e.
// fail closed for any packet whose source is a remote protected prefix.
func TestRedTeamUnprotectedLongIPv6Chain(t *testing.T) {
	p := loadTest(t, unprotOptions())
	fillQueue(t, p, 0, xskSocket(t))
	var exts []ext6
	for range 7 {
		exts = append(exts, ext6{typ: ext6DestOpts})
	}
	frame := pkt{v6: true, src: remoteH6, dst: lanH6, proto: protoUDP, ext: exts, l4: ports(1234, 9999, 8)}.bytes()
	got, st := run(t, p, frame)
	if got != VerdictDrop {
		t.Errorf("clear text from a remote protected source with 7 IPv6 extension headers: verdict %v stats %+v, want drop", got, st)
	}
}

// TestRedTeamUnprotectedTripleVLAN: a frame with three VLAN tags stops
// the tag loop (MAX_VLAN_TAGS 2) and is passed as non-IP
// (STAT_PASSED_NON_IP) without the clear-text check; where the kernel
// strips tags (stacked VLAN devices, or hardware stripping the outer
// one) the inner IPv4 packet from a remote protected source is routed
// as clear text. Fix: drop (or at least not pass) frames whose tag
// stack is deeper than the program parses when FLAG_UNPROTECTED is set.
func TestRedTeamUnprotectedTripleVLAN(t *testing.T) {
	p := loadTest(t, unprotOptions())
	fillQueue(t, p, 0, xskSocket(t))
	frame := pkt{tpids: []uint16{tpid8021AD, tpid8021Q, tpid8021Q}, src: remoteH4, dst: lanH4, proto: protoUDP, l4: ports(1234, 9999, 8)}.bytes()
	got, st := run(t, p, frame)
	if got != VerdictDrop {
		t.Errorf("clear text from a remote protected source under three VLAN tags: verdict %v stats %+v, want drop", got, st)
	}
}

// TestRedTeamUnprotectedUDPFragmentToUs: clear text to the gateway's
// own address from a remote protected source is dropped when whole
// ("v4 tcp to our own address from remote: drop" in
// TestUnprotectedClassify; a UDP datagram to port 9999 likewise), but
// handle_fragment treats every UDP (or ESP) fragment to a local address
// as "may be our ESP or NAT-T: never clear text" and passes it without
// the clear-text check - whatever the UDP port in the first fragment.
// The kernel reassembles it and delivers a UDP datagram to any local
// service from 10.2.0.5 in clear (only the nftables input chain, when
// fail_closed is on, still stops it). Fix: for a first fragment the
// ports are known - treat it as tunnel traffic only for UDP to the
// NAT-T/IKE ports (or ESP); non-first fragments of UDP cannot be told
// apart, so with FLAG_UNPROTECTED set pass them only to the AF_XDP
// reassembly (FLAG_STEER_FRAGMENTS) or drop them when the source is in
// a remote protected prefix.
func TestRedTeamUnprotectedUDPFragmentToUs(t *testing.T) {
	p := loadTest(t, unprotOptions())
	fillQueue(t, p, 0, xskSocket(t))
	whole := pkt{src: remoteH4, dst: local4, proto: protoUDP, l4: ports(1234, 9999, 8)}.bytes()
	if got, st := run(t, p, whole); got != VerdictDrop {
		t.Fatalf("whole datagram: %v %+v (the test's premise)", got, st)
	}
	first := pkt{src: remoteH4, dst: local4, proto: protoUDP, frag4: 0x2000, l4: ports(1234, 9999, 8)}.bytes()
	if got, st := run(t, p, first); got != VerdictDrop {
		t.Errorf("first fragment of clear-text UDP to port 9999 of the gateway from a remote protected source: verdict %v stats %+v, want drop", got, st)
	}
}

// TestRedTeamPlaintextLongIPv6Chain: the same parse_ipv6 limit on the
// plain side. In Plaintext mode every packet to a protected destination
// must go to the engine (to be encrypted, or dropped by the SPD), never
// to the kernel, which would route it in clear (out of the default
// route to the Internet). An IPv6 packet from the LAN to a protected
// host with seven Destination Options headers is PARSE_OTHER and passed
// (STAT_PASSED_OTHER): it leaves the gateway unencrypted unless the
// nftables to_remote chain (fail_closed) catches it. Fix: when the
// destination is protected, steer (or drop) whatever the header chain
// looks like - the destination is known before the chain is walked.
func TestRedTeamPlaintextLongIPv6Chain(t *testing.T) {
	p := loadTest(t, testConfigs()["plain"])
	fillQueue(t, p, 0, xskSocket(t))
	var exts []ext6
	for range 7 {
		exts = append(exts, ext6{typ: ext6DestOpts})
	}
	frame := pkt{v6: true, src: unprotIn6, dst: protHost6, proto: protoUDP, ext: exts, l4: udp(53, make([]byte, 12))}.bytes()
	got, st := run(t, p, frame)
	if got == VerdictPass {
		t.Errorf("plaintext to a protected destination with 7 IPv6 extension headers: verdict %v stats %+v, want redirect (or drop)", got, st)
	}
	// PARSE_MALFORMED is passed too: a Destination Options header whose
	// length runs past the payload. A forwarding kernel never parses
	// it (only Hop-by-Hop), so it routes the packet in clear.
	bad := pkt{v6: true, src: unprotIn6, dst: protHost6, proto: protoUDP, ext: []ext6{{typ: ext6DestOpts}}, l4: udp(53, make([]byte, 12))}.bytes()
	bad[14+40+1] = 200 // hdrlen: 1608 bytes
	if got, st := run(t, p, bad); got == VerdictPass {
		t.Errorf("plaintext to a protected destination with an overlong Destination Options header: verdict %v stats %+v, want redirect (or drop)", got, st)
	}
}
