package vnet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// splitAll splits pkt with h and returns copies of every packet.
func splitAll(t testing.TB, h Hdr, p []byte) ([][]byte, error) {
	t.Helper()
	var s Splitter
	if err := s.Reset(h, p); err != nil {
		return nil, err
	}
	var out [][]byte
	dst := make([]byte, 70000)
	for want := s.Remaining(); want > 0; want-- {
		n, err := s.Next(dst)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if s.Remaining() != want-1 {
			t.Fatalf("Remaining %d after a Next, want %d", s.Remaining(), want-1)
		}
		out = append(out, append([]byte(nil), dst[:n]...))
	}
	if n, err := s.Next(dst); n != 0 || err != io.EOF {
		t.Fatalf("Next after the last: %d, %v; want 0, io.EOF", n, err)
	}
	return out, nil
}

func TestHdrRoundTrip(t *testing.T) {
	h := Hdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv6 | GSOECN, HdrLen: 0x1234, GSOSize: 1448, CsumStart: 40, CsumOffset: 16}
	b := make([]byte, HdrLen+1)
	b[HdrLen] = 0xee
	h.Encode(b)
	if b[HdrLen] != 0xee {
		t.Fatal("Encode wrote past HdrLen")
	}
	if b[0] != FlagNeedsCsum || b[1] != GSOTCPv6|GSOECN || binary.NativeEndian.Uint16(b[4:]) != 1448 {
		t.Fatalf("Encode: % x", b)
	}
	got, err := DecodeHdr(b)
	if err != nil || got != h {
		t.Fatalf("DecodeHdr = %+v, %v; want %+v", got, err, h)
	}
	if _, err := DecodeHdr(b[:HdrLen-1]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("DecodeHdr(short) = %v, want ErrMalformed", err)
	}
}

// checkSegmentFields decodes seg with gopacket and checks its lengths
// and its TCP/UDP fields against want (seq, flags, ID).
func checkSegmentFields(t *testing.T, seg []byte, want pkt) {
	t.Helper()
	first := layers.LayerTypeIPv4
	if want.v6 {
		first = layers.LayerTypeIPv6
	}
	gp := gopacket.NewPacket(seg, first, gopacket.Default)
	if el := gp.ErrorLayer(); el != nil {
		t.Fatalf("gopacket: %v", el.Error())
	}
	if want.v6 {
		ip := gp.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		if int(ip.Length)+40 != len(seg) {
			t.Fatalf("IPv6 payload length %d for a %d-byte packet", ip.Length, len(seg))
		}
	} else {
		ip := gp.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if int(ip.Length) != len(seg) || ip.Id != want.id {
			t.Fatalf("IPv4 length %d id %#x; want %d, %#x", ip.Length, ip.Id, len(seg), want.id)
		}
	}
	if want.udp {
		u := gp.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if !bytes.Equal(u.Payload, want.payload) {
			t.Fatal("UDP payload differs")
		}
		return
	}
	tc := gp.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if tc.Seq != want.seq || tc.FIN != (want.flags&tcpFIN != 0) || tc.PSH != (want.flags&tcpPSH != 0) ||
		tc.CWR != (want.flags&tcpCWR != 0) || !tc.ACK {
		t.Fatalf("TCP seq %#x FIN %v PSH %v CWR %v; want seq %#x flags %#x", tc.Seq, tc.FIN, tc.PSH, tc.CWR, want.seq, want.flags)
	}
	if !bytes.Equal(tc.Payload, want.payload) {
		t.Fatal("TCP payload differs")
	}
}

func TestSplitKnownVectors(t *testing.T) {
	cases := []struct {
		name    string
		base    pkt
		total   int
		gso     int
		ecn     bool
		wantSeg int
	}{
		{"tcp4 opts cwr fin psh wrap", pkt{sport: 40000, dport: 443, id: 0xfffe, seq: 0xfffff000, ack: 77, flags: tcpACK | tcpPSH | tcpFIN | tcpCWR, win: 512, opts: true, tsval: 9}, 5000, 1448, true, 4},
		{"tcp6 exact multiple", pkt{v6: true, sport: 1, dport: 2, seq: 1, ack: 2, flags: tcpACK | tcpPSH, win: 100, tos: 0x20, flow: 0xbeef}, 3000, 1000, false, 3},
		{"tcp4 one segment", pkt{sport: 5, dport: 6, id: 3, seq: 10, flags: tcpACK, win: 1}, 1000, 1400, false, 1},
		{"tcp6 tiny segments", pkt{v6: true, sport: 5, dport: 6, seq: 10, flags: tcpACK | tcpCWR, opts: true}, 120, 1, true, 120},
		{"udp4", pkt{udp: true, sport: 4500, dport: 4500, id: 0x8000}, 4001, 1200, false, 4},
		{"udp6", pkt{v6: true, udp: true, sport: 4000, dport: 4001}, 2400, 1200, false, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sp := tc.base
			sp.payload = payloadOf(tc.total, 0)
			super := build(t, sp)
			ipLen := 20
			typ := uint8(GSOTCPv4)
			if sp.v6 {
				ipLen, typ = 40, GSOTCPv6
			}
			off := uint16(16)
			if sp.udp {
				typ, off = GSOUDPL4, 6
			}
			if tc.ecn {
				typ |= GSOECN
			}
			setPartial(super, ipLen, int(off), map[bool]uint8{true: protoUDP, false: protoTCP}[sp.udp])
			orig := append([]byte(nil), super...)
			h := Hdr{Flags: FlagNeedsCsum, GSOType: typ, HdrLen: 0, GSOSize: uint16(tc.gso), CsumStart: uint16(ipLen), CsumOffset: off}
			segs, err := splitAll(t, h, super)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(super, orig) {
				t.Fatal("Splitter wrote into its input")
			}
			if len(segs) != tc.wantSeg {
				t.Fatalf("%d segments, want %d", len(segs), tc.wantSeg)
			}
			for i, seg := range segs {
				w := sp
				lo, hi := i*tc.gso, min((i+1)*tc.gso, tc.total)
				w.payload = sp.payload[lo:hi]
				w.id = sp.id + uint16(i)
				w.seq = sp.seq + uint32(lo)
				if i != len(segs)-1 {
					w.flags &^= tcpFIN | tcpPSH
				}
				if i != 0 {
					w.flags &^= tcpCWR
				}
				want := build(t, w) // gopacket's lengths and checksums
				if !bytes.Equal(seg, want) {
					t.Fatalf("segment %d:\n got % x\nwant % x", i, seg, want)
				}
				checkSegmentFields(t, seg, w)
				if _, _, valid, ok := refL4(seg); !ok || !valid {
					t.Fatalf("segment %d: checksums do not verify", i)
				}
			}
		})
	}
}

func TestSplitNeedsCsum(t *testing.T) {
	for _, p := range []pkt{
		{udp: true, sport: 1, dport: 2, payload: payloadOf(333, 1)},
		{v6: true, udp: true, sport: 1, dport: 2, payload: payloadOf(100, 2)},
		{sport: 1, dport: 2, seq: 5, flags: tcpACK | tcpSYN, payload: payloadOf(57, 3), opts: true},
		{v6: true, sport: 1, dport: 2, seq: 5, flags: tcpACK, payload: payloadOf(1400, 4)},
	} {
		want := build(t, p)
		ipLen, off, proto := 20, 16, uint8(protoTCP)
		if p.v6 {
			ipLen = 40
		}
		if p.udp {
			off, proto = 6, protoUDP
		}
		partial := append([]byte(nil), want...)
		setPartial(partial, ipLen, off, proto)
		orig := append([]byte(nil), partial...)
		h := Hdr{Flags: FlagNeedsCsum, CsumStart: uint16(ipLen), CsumOffset: uint16(off)}
		got, err := splitAll(t, h, partial)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !bytes.Equal(got[0], want) {
			t.Fatalf("v6 %v udp %v: finished packet differs from gopacket's", p.v6, p.udp)
		}
		if !bytes.Equal(partial, orig) {
			t.Fatal("Splitter wrote into its input")
		}
		// Without FlagNeedsCsum the packet is copied as it is.
		got, err = splitAll(t, Hdr{}, partial)
		if err != nil || len(got) != 1 || !bytes.Equal(got[0], orig) {
			t.Fatalf("GSONone copy: %v", err)
		}
	}
}

// zeroSumUDP returns a UDP packet whose checksum computes to 0 (two
// payload bytes chosen for it), built by gopacket.
func zeroSumUDP(t *testing.T, v6 bool) []byte {
	p := pkt{v6: v6, udp: true, sport: 7, dport: 9, payload: payloadOf(64, 0)}
	p.payload[0], p.payload[1] = 0, 0
	b := build(t, p)
	ipLen := 20
	if v6 {
		ipLen = 40
	}
	c := binary.BigEndian.Uint16(b[ipLen+6:])
	if c == 0xffff { // gopacket mangled a 0 already: the complement of 0xffff is 0
		c = 0
	}
	// Adding the checksum's value to the data makes the sum 0xffff, so
	// the checksum becomes 0.
	binary.BigEndian.PutUint16(p.payload, c)
	return build(t, p)
}

func TestSplitUDPZeroChecksum(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		full := zeroSumUDP(t, v6)
		ipLen := 20
		if v6 {
			ipLen = 40
		}
		if got := binary.BigEndian.Uint16(full[ipLen+6:]); got != 0xffff {
			t.Fatalf("test packet: gopacket wrote checksum %#x, want 0xffff", got)
		}
		partial := append([]byte(nil), full...)
		setPartial(partial, ipLen, 6, protoUDP)
		got, err := splitAll(t, Hdr{Flags: FlagNeedsCsum, CsumStart: uint16(ipLen), CsumOffset: 6}, partial)
		if err != nil || !bytes.Equal(got[0], full) {
			t.Fatalf("v6 %v: NEEDS_CSUM zero UDP checksum not stored as 0xffff: %v", v6, err)
		}
		// The same packet as a one-segment USO super-packet.
		got, err = splitAll(t, Hdr{Flags: FlagNeedsCsum, GSOType: GSOUDPL4, GSOSize: 1000, CsumStart: uint16(ipLen), CsumOffset: 6}, partial)
		if err != nil || len(got) != 1 || !bytes.Equal(got[0], full) {
			t.Fatalf("v6 %v: USO zero UDP checksum not stored as 0xffff: %v", v6, err)
		}
	}
	// IPv6 with a destination options header: still UDP, where a 0
	// checksum is invalid (RFC 8200 §8.1).
	full := withExt6(zeroSumUDP(t, true), extDstOpts, 0)
	partial := append([]byte(nil), full...)
	setPartial(partial, 48, 6, protoUDP)
	got, err := splitAll(t, Hdr{Flags: FlagNeedsCsum, CsumStart: 48, CsumOffset: 6}, partial)
	if err != nil || !bytes.Equal(got[0], full) {
		t.Fatalf("v6 extension header: NEEDS_CSUM zero UDP checksum not stored as 0xffff: %v", err)
	}
}

func TestSplitRefuses(t *testing.T) {
	tcp4 := build(t, pkt{sport: 1, dport: 2, flags: tcpACK, payload: payloadOf(3000, 0), opts: true})
	tcp6 := build(t, pkt{v6: true, sport: 1, dport: 2, flags: tcpACK, payload: payloadOf(3000, 0)})
	udp4 := build(t, pkt{udp: true, sport: 1, dport: 2, payload: payloadOf(3000, 0)})
	hdrOnly := build(t, pkt{sport: 1, dport: 2, flags: tcpACK})
	frag := append([]byte(nil), tcp4...)
	frag[6] |= 0x20 // MF
	badLen := append([]byte(nil), tcp4...)
	badLen[3]--
	ext6 := append([]byte(nil), tcp6...)
	ext6[6] = 0 // hop-by-hop
	ihl6 := append([]byte(nil), tcp4...)
	ihl6[0] = 0x46
	t4 := Hdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv4, GSOSize: 1000, CsumStart: 20, CsumOffset: 16}
	t6 := Hdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv6, GSOSize: 1000, CsumStart: 40, CsumOffset: 16}
	u4 := Hdr{Flags: FlagNeedsCsum, GSOType: GSOUDPL4, GSOSize: 1000, CsumStart: 20, CsumOffset: 6}
	with := func(h Hdr, f func(*Hdr)) Hdr { f(&h); return h }
	cases := []struct {
		name string
		h    Hdr
		p    []byte
		want error
	}{
		{"empty", Hdr{}, nil, ErrMalformed},
		{"ufo", with(u4, func(h *Hdr) { h.GSOType = GSOUDP }), udp4, ErrUnsupported},
		{"unknown type", with(t4, func(h *Hdr) { h.GSOType = 2 }), tcp4, ErrUnsupported},
		{"unknown type 6", with(t4, func(h *Hdr) { h.GSOType = 6 }), tcp4, ErrUnsupported},
		{"gso size 0", with(t4, func(h *Hdr) { h.GSOSize = 0 }), tcp4, ErrMalformed},
		{"v4 type on v6", t4, tcp6, ErrMalformed},
		{"v6 type on v4", t6, tcp4, ErrMalformed},
		{"tcp type on udp", t4, udp4, ErrMalformed},
		{"udp type on tcp", u4, tcp4, ErrMalformed},
		{"csum start not ihl", with(t4, func(h *Hdr) { h.CsumStart = 24 }), tcp4, ErrMalformed},
		{"csum start past", with(t4, func(h *Hdr) { h.CsumStart = 60 }), ihl6, ErrMalformed},
		{"v6 csum start 20", with(t6, func(h *Hdr) { h.CsumStart = 20 }), tcp6, ErrMalformed},
		{"v6 csum start past tcp", with(t6, func(h *Hdr) { h.CsumStart = 48 }), tcp6, ErrMalformed},
		{"v6 ext: fragment", with(t6, func(h *Hdr) { h.CsumStart = 48 }), withExt6(tcp6, 44, 0), ErrMalformed},
		{"v6 ext: AH", with(t6, func(h *Hdr) { h.CsumStart = 48 }), withExt6(tcp6, 51, 0), ErrUnsupported},
		{"v6 ext: routing, segments left", with(t6, func(h *Hdr) { h.CsumStart = 48 }), withExt6(tcp6, 43, 1), ErrUnsupported},
		{"v6 ext: csum start short", t6, withExt6(tcp6, 60, 0), ErrMalformed},
		{"v6 ext: csum start long", with(t6, func(h *Hdr) { h.CsumStart = 56 }), withExt6(tcp6, 60, 0), ErrMalformed},
		{"v6 ext: hop-by-hop second", with(t6, func(h *Hdr) { h.CsumStart = 56 }), withExt6(withExt6(tcp6, 0, 0), 60, 0), ErrMalformed},
		{"v6 next header", t6, ext6, ErrMalformed},
		{"tcp csum offset", with(t4, func(h *Hdr) { h.CsumOffset = 6 }), tcp4, ErrMalformed},
		{"udp csum offset", with(u4, func(h *Hdr) { h.CsumOffset = 16 }), udp4, ErrMalformed},
		{"fragment", t4, frag, ErrMalformed},
		{"total length", t4, badLen, ErrMalformed},
		{"truncated v4", t4, tcp4[:19], ErrMalformed},
		{"truncated tcp", t4, tcp4[:30], ErrMalformed},
		{"no payload", t4, hdrOnly, ErrMalformed},
		{"ecn on udp", with(u4, func(h *Hdr) { h.GSOType |= GSOECN }), udp4, ErrMalformed},
		{"ecn on none", Hdr{GSOType: GSOECN}, tcp4, ErrMalformed},
		{"needs csum past end", Hdr{Flags: FlagNeedsCsum, CsumStart: uint16(len(tcp4) - 17), CsumOffset: 16}, tcp4, ErrMalformed},
	}
	for _, tc := range cases {
		var s Splitter
		s.Reset(Hdr{}, tcp4) // a previous packet is dropped by a failed Reset
		err := s.Reset(tc.h, tc.p)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Reset = %v, want %v", tc.name, err, tc.want)
		}
		if s.Remaining() != 0 {
			t.Errorf("%s: Remaining %d after a failed Reset", tc.name, s.Remaining())
		}
		if n, err := s.Next(make([]byte, 70000)); n != 0 || err != io.EOF {
			t.Errorf("%s: Next after a failed Reset: %d, %v", tc.name, n, err)
		}
	}
}

// TestSplitTinySegments: super-packets of hundreds to tens of thousands
// of segments (a peer's small MSS; the kernel allows up to
// GSO_MAX_SEGS) are split, not refused: every segment has valid
// checksums, consecutive sequence numbers and IPv4 IDs (wrapping at
// 2^16), and the payloads make up the input's.
func TestSplitTinySegments(t *testing.T) {
	for _, tc := range []struct {
		v6       bool
		gso, len int
		id       uint16
		seq      uint32
	}{
		{false, 88, 64000, 0xfff0, 0xffffff00},
		{true, 36, 30000, 7, 1},
		{false, 1, 65535 - 40, 0xff00, 0xfffffff0},
	} {
		p := build(t, pkt{v6: tc.v6, sport: 1, dport: 2, id: tc.id, seq: tc.seq, flags: tcpACK, payload: payloadOf(tc.len, 3)})
		h := Hdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv4, GSOSize: uint16(tc.gso), CsumStart: 20, CsumOffset: 16}
		if tc.v6 {
			h.GSOType, h.CsumStart = GSOTCPv6, 40
		}
		segs, err := splitAll(t, h, p)
		if err != nil {
			t.Fatalf("gso %d: %v", tc.gso, err)
		}
		if want := (tc.len + tc.gso - 1) / tc.gso; len(segs) != want {
			t.Fatalf("gso %d: %d segments, want %d", tc.gso, len(segs), want)
		}
		var payload []byte
		for i, s := range segs {
			ipLen, _, valid, ok := refL4(s)
			if !ok || !valid {
				t.Fatalf("gso %d: segment %d: checksum", tc.gso, i)
			}
			tcp := s[ipLen:]
			if got := binary.BigEndian.Uint32(tcp[4:]); got != tc.seq+uint32(i*tc.gso) {
				t.Fatalf("gso %d: segment %d: seq %#x", tc.gso, i, got)
			}
			if !tc.v6 && binary.BigEndian.Uint16(s[4:]) != tc.id+uint16(i) {
				t.Fatalf("gso %d: segment %d: id %#x", tc.gso, i, binary.BigEndian.Uint16(s[4:]))
			}
			payload = append(payload, tcp[20:]...)
		}
		if !bytes.Equal(payload, payloadOf(tc.len, 3)) {
			t.Fatalf("gso %d: payloads differ", tc.gso)
		}
	}
}

// withExt6 returns a copy of the IPv6 packet p with an 8-byte extension
// header of type typ inserted after the IPv6 header (its next header
// p's, its third and fourth bytes 0 and segsLeft: a routing header's
// type and segments left), the IPv6 payload length grown to match.
func withExt6(p []byte, typ uint8, segsLeft uint8) []byte {
	out := append([]byte(nil), p[:40]...)
	out = append(out, p[6], 0, 0, segsLeft, 0, 0, 0, 0)
	out = append(out, p[40:]...)
	out[6] = typ
	binary.BigEndian.PutUint16(out[4:], uint16(len(out)-40))
	return out
}

// TestSplitIPv6ExtensionHeaders: TCP and UDP super-packets with
// hop-by-hop and destination options and a routing header with no
// segments left between IPv6 and L4 (a local sender's IPV6_DSTOPTS,
// IPV6_HOPOPTS, IPV6_RTHDR) are split; every segment carries the
// extension headers unchanged, valid lengths and checksums, and the
// payloads make up the input's.
func TestSplitIPv6ExtensionHeaders(t *testing.T) {
	tcp6 := build(t, pkt{v6: true, sport: 1, dport: 2, seq: 5, flags: tcpACK | tcpPSH, payload: payloadOf(3000, 1)})
	udp6 := build(t, pkt{v6: true, udp: true, sport: 1, dport: 2, payload: payloadOf(3000, 2)})
	for _, tc := range []struct {
		name string
		p    []byte
		typ  uint8
		cs   uint16
		co   uint16
	}{
		{"tcp dstopts", withExt6(tcp6, extDstOpts, 0), GSOTCPv6, 48, 16},
		{"tcp hbh+rthdr+dstopts", withExt6(withExt6(withExt6(tcp6, extDstOpts, 0), extRouting, 0), extHopByHop, 0), GSOTCPv6, 64, 16},
		{"udp dstopts", withExt6(udp6, extDstOpts, 0), GSOUDPL4, 48, 6},
	} {
		h := Hdr{Flags: FlagNeedsCsum, GSOType: tc.typ, GSOSize: 1000, CsumStart: tc.cs, CsumOffset: tc.co}
		segs, err := splitAll(t, h, tc.p)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(segs) != 3 {
			t.Fatalf("%s: %d segments", tc.name, len(segs))
		}
		var payload []byte
		for i, s := range segs {
			ipLen, proto, valid, ok := refL4(s)
			if !ok || !valid || ipLen != int(tc.cs) || !bytes.Equal(s[40:ipLen], tc.p[40:ipLen]) || !bytes.Equal(s[:4], tc.p[:4]) {
				t.Fatalf("%s: segment %d: ipLen %d proto %d valid %v ok %v", tc.name, i, ipLen, proto, valid, ok)
			}
			hl := 8
			if proto == protoTCP {
				hl = 20
				if got := binary.BigEndian.Uint32(s[ipLen+4:]); got != 5+uint32(i*1000) {
					t.Fatalf("%s: segment %d: seq %d", tc.name, i, got)
				}
			}
			payload = append(payload, s[ipLen+hl:]...)
		}
		if !bytes.HasSuffix(tc.p, payload) || len(payload) != 3000 {
			t.Fatalf("%s: payloads do not make up the input's", tc.name)
		}
	}
}

func TestSplitShortBuffer(t *testing.T) {
	super := build(t, pkt{sport: 1, dport: 2, flags: tcpACK, payload: payloadOf(2500, 0)})
	var s Splitter
	if err := s.Reset(Hdr{GSOType: GSOTCPv4, GSOSize: 1000, CsumStart: 20, CsumOffset: 16}, super); err != nil {
		t.Fatal(err)
	}
	small := bytes.Repeat([]byte{0xcc}, 1039)
	if n, err := s.Next(small); n != 0 || !errors.Is(err, ErrShortBuffer) {
		t.Fatalf("Next(1039 bytes) = %d, %v; want ErrShortBuffer", n, err)
	}
	if !bytes.Equal(small, bytes.Repeat([]byte{0xcc}, 1039)) {
		t.Fatal("Next wrote into a too small buffer")
	}
	if s.Remaining() != 3 {
		t.Fatalf("Remaining %d after ErrShortBuffer, want 3", s.Remaining())
	}
	if n, err := s.Next(make([]byte, 1040)); n != 1040 || err != nil {
		t.Fatalf("Next(1040 bytes) = %d, %v", n, err)
	}
	// GSONone: the whole packet or nothing.
	if err := s.Reset(Hdr{}, super); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next(small); !errors.Is(err, ErrShortBuffer) {
		t.Fatalf("GSONone Next(small) = %v", err)
	}
}
