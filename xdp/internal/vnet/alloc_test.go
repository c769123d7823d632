package vnet

import (
	"testing"
)

func TestSplitAllocs(t *testing.T) {
	super := build(t, pkt{sport: 1, dport: 2, seq: 1, flags: tcpACK, opts: true, payload: payloadOf(44*1448, 0)})
	setPartial(super, 20, 16, protoTCP)
	h := Hdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv4, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}
	udp := build(t, pkt{v6: true, udp: true, sport: 1, dport: 2, payload: payloadOf(1000, 0)})
	hu := Hdr{Flags: FlagNeedsCsum, CsumStart: 40, CsumOffset: 6}
	s := new(Splitter)
	dst := make([]byte, 65536)
	segs := 0
	allocs := testing.AllocsPerRun(50, func() {
		segs = 0
		for _, c := range []struct {
			h Hdr
			p []byte
		}{{h, super}, {hu, udp}} {
			if err := s.Reset(c.h, c.p); err != nil {
				t.Fatal(err)
			}
			for s.Remaining() > 0 {
				if _, err := s.Next(dst); err != nil {
					t.Fatal(err)
				}
				segs++
			}
		}
	})
	if segs != 45 {
		t.Fatalf("%d packets, want 45", segs)
	}
	if allocs != 0 {
		t.Fatalf("Reset/Next: %v allocations per run, want 0", allocs)
	}
}

func TestCoalesceAllocs(t *testing.T) {
	orig := stream(t, false, 44, 1448, true)
	orig = append(orig, stream(t, true, 20, 1000, false)...)
	work := make([][]byte, len(orig))
	for i := range orig {
		work[i] = append([]byte(nil), orig[i]...)
	}
	c := new(Coalescer)
	writes := 0
	allocs := testing.AllocsPerRun(50, func() {
		for i := range orig {
			copy(work[i], orig[i]) // Finish rewrote the heads
		}
		c.Reset()
		for _, p := range work {
			c.Add(p)
		}
		c.Finish()
		writes = 0
		for i := range c.Writes() {
			if _, idx, _ := c.Write(i); len(idx) > 0 {
				writes++
			}
		}
	})
	if writes != 2 {
		t.Fatalf("%d writes, want 2", writes)
	}
	if allocs != 0 {
		t.Fatalf("Reset/Add/Finish/Write: %v allocations per run, want 0", allocs)
	}
}

func BenchmarkSplitTCP64K(b *testing.B) {
	super := build(b, pkt{sport: 1, dport: 2, seq: 1, flags: tcpACK, opts: true, payload: payloadOf(44*1448, 0)})
	setPartial(super, 20, 16, protoTCP)
	h := Hdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv4, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}
	var s Splitter
	dst := make([]byte, 2048)
	b.ReportAllocs()
	b.SetBytes(int64(len(super)))
	for b.Loop() {
		if err := s.Reset(h, super); err != nil {
			b.Fatal(err)
		}
		for s.Remaining() > 0 {
			if _, err := s.Next(dst); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkCoalesce44(b *testing.B) {
	orig := stream(b, false, 44, 1448, true)
	work := make([][]byte, len(orig))
	total := 0
	for i := range orig {
		work[i] = append([]byte(nil), orig[i]...)
		total += len(orig[i])
	}
	var c Coalescer
	b.ReportAllocs()
	b.SetBytes(int64(total))
	for b.Loop() {
		copy(work[0], orig[0][:64]) // the head's headers, rewritten by Finish
		c.Reset()
		for _, p := range work {
			c.Add(p)
		}
		c.Finish()
		if c.Writes() != 1 {
			b.Fatalf("%d writes", c.Writes())
		}
		c.Write(0)
	}
}
