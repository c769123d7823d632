package vnet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
)

// splitSeeds are valid super-packets of every kind, with their headers.
func splitSeeds(t testing.TB) []struct {
	h Hdr
	p []byte
} {
	var out []struct {
		h Hdr
		p []byte
	}
	add := func(h Hdr, p []byte) {
		out = append(out, struct {
			h Hdr
			p []byte
		}{h, p})
	}
	add(Hdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv4 | GSOECN, GSOSize: 500, CsumStart: 20, CsumOffset: 16},
		build(t, pkt{sport: 1, dport: 2, seq: 9, flags: tcpACK | tcpCWR | tcpPSH, opts: true, payload: payloadOf(1300, 0)}))
	add(Hdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv6, GSOSize: 700, CsumStart: 40, CsumOffset: 16},
		build(t, pkt{v6: true, sport: 1, dport: 2, seq: 9, flags: tcpACK | tcpFIN, payload: payloadOf(1500, 0)}))
	add(Hdr{Flags: FlagNeedsCsum, GSOType: GSOUDPL4, GSOSize: 300, CsumStart: 20, CsumOffset: 6},
		build(t, pkt{udp: true, sport: 1, dport: 2, payload: payloadOf(1000, 0)}))
	add(Hdr{Flags: FlagNeedsCsum, GSOType: GSOUDPL4, GSOSize: 300, CsumStart: 40, CsumOffset: 6},
		build(t, pkt{v6: true, udp: true, sport: 1, dport: 2, payload: payloadOf(1000, 0)}))
	add(Hdr{Flags: FlagNeedsCsum, CsumStart: 20, CsumOffset: 6},
		build(t, pkt{udp: true, sport: 1, dport: 2, payload: payloadOf(100, 0)}))
	add(Hdr{}, build(t, pkt{sport: 1, dport: 2, payload: payloadOf(100, 0)}))
	return out
}

// FuzzSplit: Splitter never panics, refuses with a sentinel error, never
// writes into its input or past what it returns, and every TCP/UDP
// segment of an accepted super-packet has valid checksums and lengths,
// the segments' payloads making up the input's in order.
func FuzzSplit(f *testing.F) {
	for _, s := range splitSeeds(f) {
		f.Add(s.p, s.h.Flags, s.h.GSOType, s.h.GSOSize, s.h.CsumStart, s.h.CsumOffset, uint16(200))
	}
	dst := make([]byte, 70000)
	f.Fuzz(func(t *testing.T, p []byte, flags, typ uint8, gso, cs, co, small uint16) {
		h := Hdr{Flags: flags, GSOType: typ, GSOSize: gso, CsumStart: cs, CsumOffset: co}
		orig := append([]byte(nil), p...)
		var s Splitter
		if err := s.Reset(h, p); err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("Reset: %v", err)
			}
			if s.Remaining() != 0 {
				t.Fatal("Remaining after a failed Reset")
			}
			return
		}
		n := s.Remaining()
		if n < 1 || n > MaxSegments {
			t.Fatalf("Remaining %d", n)
		}
		var payload []byte
		for k := range n {
			if m, err := s.Next(dst[:small]); err == nil {
				if m > int(small) {
					t.Fatalf("Next wrote %d bytes into %d", m, small)
				}
				payload = checkSegment(t, h, p, dst[:m], k, payload)
				continue
			} else if !errors.Is(err, ErrShortBuffer) {
				t.Fatalf("Next(small): %v", err)
			}
			m, err := s.Next(dst)
			if err != nil || m > len(dst) {
				t.Fatalf("Next: %d, %v", m, err)
			}
			payload = checkSegment(t, h, p, dst[:m], k, payload)
		}
		if s.Remaining() != 0 {
			t.Fatal("Remaining after the last Next")
		}
		if !bytes.Equal(p, orig) {
			t.Fatal("Splitter wrote into its input")
		}
		if typ&^GSOECN != GSONone {
			ipLen, _, _, _ := refL4(p)
			if !bytes.HasSuffix(p, payload) || len(payload) == 0 || len(payload) >= len(p)-ipLen {
				t.Fatal("segment payloads do not make up the input's payload")
			}
		}
	})
}

// checkSegment checks segment k of p split with h and returns payload
// with the segment's payload appended.
func checkSegment(t *testing.T, h Hdr, p, seg []byte, k int, payload []byte) []byte {
	t.Helper()
	if h.GSOType&^GSOECN == GSONone {
		if len(seg) != len(p) {
			t.Fatalf("GSONone: %d bytes of %d", len(seg), len(p))
		}
		if h.Flags&FlagNeedsCsum == 0 {
			if !bytes.Equal(seg, p) {
				t.Fatal("GSONone: not a copy")
			}
			return payload
		}
		f := int(h.CsumStart) + int(h.CsumOffset)
		c := uint32(binary.BigEndian.Uint16(seg[f:]))
		if !bytes.Equal(seg[:f], p[:f]) || !bytes.Equal(seg[f+2:], p[f+2:]) ||
			refSum(p[h.CsumStart:], c) != 0xffff {
			t.Fatal("NEEDS_CSUM: checksum not finished")
		}
		return payload
	}
	ipLen, proto, valid, ok := refL4(seg)
	if !ok || !valid {
		t.Fatalf("segment %d: lengths or checksums do not verify", k)
	}
	l4 := seg[ipLen:]
	hl := 8
	if proto == protoTCP {
		hl = int(l4[12]>>4) * 4
	} else if int(binary.BigEndian.Uint16(l4[4:])) != len(l4) {
		t.Fatalf("segment %d: UDP length", k)
	}
	if len(seg)-ipLen-hl > int(h.GSOSize) {
		t.Fatalf("segment %d: payload over GSOSize", k)
	}
	return append(payload, l4[hl:]...)
}

// packBatch serializes packets as 2-byte length + bytes, the input of
// FuzzCoalesce.
func packBatch(in [][]byte) []byte {
	var b []byte
	for _, p := range in {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
	}
	return b
}

// FuzzCoalesce: the Coalescer never panics, and every batch keeps the
// invariants of checkCoalesce (each packet written once, flows in order,
// only valid TCP segments coalesced, each super-packet splits back into
// exactly its packets).
func FuzzCoalesce(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 8 {
		f.Add(packBatch(genFlows(f, rng, 24)), i%2 == 0)
	}
	f.Add(packBatch(stream(f, false, 20, 100, true)), true)
	f.Add(packBatch(stream(f, true, 20, 100, false)), false)
	f.Fuzz(func(t *testing.T, data []byte, fix bool) {
		var in [][]byte
		for len(data) >= 2 && len(in) < MaxPackets {
			n := min(int(binary.BigEndian.Uint16(data)), len(data)-2)
			p := data[2 : 2+n]
			if fix {
				// Mutated headers with valid checksums: explores what
				// may merge, not only what is dropped.
				p = append([]byte(nil), p...)
				fixChecksums(p)
			}
			in = append(in, p)
			data = data[2+n:]
		}
		checkCoalesce(t, in)
	})
}

// fixChecksums recomputes the IPv4 header checksum and the TCP checksum
// of p where its headers let them be found.
func fixChecksums(p []byte) {
	if len(p) < 40 {
		return
	}
	ipLen := 40
	proto := p[6]
	if p[0]>>4 == 4 {
		ipLen, proto = int(p[0]&0xf)*4, p[9]
		if ipLen < 20 || ipLen > len(p) {
			return
		}
		p[10], p[11] = 0, 0
		binary.BigEndian.PutUint16(p[10:], ^uint16(refSum(p[:ipLen], 0)))
	}
	if proto != protoTCP || len(p) < ipLen+20 {
		return
	}
	l4 := p[ipLen:]
	l4[16], l4[17] = 0, 0
	binary.BigEndian.PutUint16(l4[16:], ^uint16(refSum(l4, refPseudo(p, protoTCP, len(l4)))))
}
