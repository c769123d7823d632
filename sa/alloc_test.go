package sa

import (
	"testing"

	"github.com/espxdp/espxdp/internal/race"

	"github.com/espxdp/espxdp/esp"
)

// batchBufs is a reusable batch whose packets are refilled each round.
type batchBufs struct {
	pkts  []Packet
	bufs  [][]byte
	inner []byte
	tun   *Tunnel
}

func newBatchBufs(n int, inner []byte, tun *Tunnel) *batchBufs {
	b := &batchBufs{pkts: make([]Packet, n), inner: inner, tun: tun}
	for i := 0; i < n; i++ {
		b.bufs = append(b.bufs, make([]byte, esp.MaxHeadroom+len(inner)+esp.MaxTailroom))
	}
	b.refill()
	return b
}

func (b *batchBufs) refill() {
	for i := range b.pkts {
		copy(b.bufs[i][esp.MaxHeadroom:], b.inner)
		b.pkts[i] = Packet{Buf: b.bufs[i], Off: esp.MaxHeadroom, Len: len(b.inner), Tunnel: b.tun}
	}
}

func TestZeroAllocs(t *testing.T) {
	if race.Enabled || testing.CoverMode() != "" {
		t.Skip("allocation counts are not meaningful under -race or -cover; .ci/run checks them without")
	}
	for _, mode := range []Concurrency{Shared, Sharded, PerCPU, Ordered} {
		for _, tr := range []string{"aes128gcm16", "aes256-sha256", "chacha20poly1305", "aes128gcm8", "aes128gmac"} {
			t.Run(mode.String()+"/"+tr, func(t *testing.T) {
				nw := 1
				if mode != PerCPU {
					nw = 2 // hand-off, locked windows, the Ordered board
				}
				s := newTwoSides(t, mode, nw, 4, tr)
				b := newBatchBufs(32, udpPacket(hostA, hostB, 1000, 2000, 1200, 7), nil)
				drain := make([]Packet, 64)
				wire := make([]Packet, 0, 64)
				all := make([]Packet, 0, 128)
				var ok int
				// One round: worker 0 encrypts packets for all tunnels,
				// handing those it does not own to worker 1 (Sharded),
				// which drains them; the receiver does the same.
				round := func() {
					b.refill()
					for i := range b.pkts {
						b.pkts[i].Tunnel = s.tuns[i%len(s.tuns)]
					}
					s.tx.Worker(0).Outbound(b.pkts)
					n := s.tx.Worker(nw - 1).Drain(drain)
					wire = wire[:0]
					all = append(append(all[:0], b.pkts...), drain[:n]...)
					for _, p := range all {
						if p.Verdict == VerdictOK {
							wire = append(wire, p)
						}
					}
					s.rx.Worker(0).Inbound(wire)
					n = s.rx.Worker(nw - 1).Drain(drain)
					ok = 0
					all = append(append(all[:0], wire...), drain[:n]...)
					for _, p := range all {
						if p.Verdict == VerdictOK {
							ok++
						}
					}
				}
				for i := 0; i < 3; i++ {
					round()
				}
				if ok != len(b.pkts) {
					t.Fatalf("only %d of %d packets made the round trip", ok, len(b.pkts))
				}
				if a := testing.AllocsPerRun(50, round); a != 0 {
					t.Fatalf("%v allocations per round of %d packets", a, len(b.pkts))
				}
				if ok != len(b.pkts) {
					t.Fatalf("only %d of %d packets made the round trip", ok, len(b.pkts))
				}
				if mode == Sharded && s.rx.Stats().HandedOff == 0 {
					t.Fatal("no hand-off exercised")
				}
			})
		}
	}
}

// TestZeroAllocsSPD covers the policy path (flow parse, SPD scan) and
// the drop paths that do not involve esp errors.
func TestZeroAllocsSPD(t *testing.T) {
	if race.Enabled || testing.CoverMode() != "" {
		t.Skip("allocation counts are not meaningful under -race or -cover; .ci/run checks them without")
	}
	out, _ := mustPair(t, "aes128gcm16", 0x1077, func(c *Config) { c.PathMTU = 1400 })
	sad := NewSAD(SADOptions{})
	sad.Add(out)
	spd := NewSPD(SPDOptions{Events: func(Event) {}})
	spd.Set([]*Policy{
		{Name: "b", Selector: Selector{Proto: 17, DstPorts: PortRange{53, 53}}, Action: Bypass},
		{Name: "p", Selector: Selector{Src: pfx("10.1.0.0/16"), Dst: pfx("10.2.0.0/16")}, Action: Protect, SA: out},
		{Name: "a", Selector: Selector{Dst: pfx("10.3.0.0/16")}, Action: Protect},
	})
	p, _ := NewProcessor(ProcessorOptions{SAD: sad, SPD: spd})
	w := p.Worker(0)
	mk := func(inner []byte) *batchBufs { return newBatchBufs(8, inner, nil) }
	batches := []*batchBufs{
		mk(udpPacket(hostA, hostB, 1, 2, 100, 0)),                    // protect
		mk(udpPacket(hostA, hostB, 1, 53, 100, 0)),                   // bypass
		mk(udpPacket(hostA, hostB, 1, 2, 1500, 0)),                   // MTU
		mk(udpPacket(hostA, pfx("10.3.0.1/32").Addr(), 1, 2, 10, 0)), // acquire
	}
	round := func() {
		for _, b := range batches {
			b.refill()
			w.Outbound(b.pkts)
		}
	}
	round()
	want := []DropReason{DropNone, DropNone, DropMTU, DropAcquire}
	for i, b := range batches {
		if b.pkts[0].Reason != want[i] {
			t.Fatalf("batch %d: %v", i, b.pkts[0].Reason)
		}
	}
	if a := testing.AllocsPerRun(50, round); a != 0 {
		t.Fatalf("%v allocations per round", a)
	}
}

// TestZeroAllocsDropPaths feeds packets that are dropped (or passed to
// the control plane) and checks that dropping costs no allocation
// either: a flood of junk must not turn into garbage-collector work.
func TestZeroAllocsDropPaths(t *testing.T) {
	if race.Enabled || testing.CoverMode() != "" {
		t.Skip("allocation counts are not meaningful under -race or -cover; .ci/run checks them without")
	}
	r := newRig(t, "aes128gcm16", nil)
	sealed := r.seal(t, udpPacket(hostA, hostB, 1, 2, 50, 1))
	good := sealed.Data()
	if q := r.open(clonePacket(sealed)); q.Verdict != VerdictOK { // so that good is a replay below
		t.Fatal(q.Reason)
	}
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-1] ^= 1
	udp := func(dport uint16, pl ...byte) []byte {
		u := append([]byte{0x11, 0x94, byte(dport >> 8), byte(dport), 0, byte(8 + len(pl)), 0, 0}, pl...)
		return ipv4(gwA, gwB, 17, u)
	}
	in := map[string][]byte{
		"replay":         good, // after the first round
		"tampered":       tampered,
		"unknown SPI":    ipv4(gwA, gwB, 50, append([]byte{0, 0, 9, 9}, make([]byte, 40)...)),
		"truncated":      good[:30],
		"IKE":            udp(4500, 0, 0, 0, 0, 1, 2, 3, 4),
		"keepalive":      udp(4500, 0xff),
		"TCP":            ipv4(gwA, gwB, 6, make([]byte, 20)),
		"UDP other port": udp(53, 1, 2, 3, 4, 5, 6, 7, 8),
		"IP version 5":   {0x50, 0, 0, 0},
	}
	for name, pkt := range in {
		b := newBatchBufs(4, pkt, nil)
		r.wRecv.Inbound(b.pkts)
		if v := b.pkts[0].Verdict; v != VerdictDrop && v != VerdictControl {
			t.Errorf("%s: verdict %v", name, v)
		}
		if a := testing.AllocsPerRun(20, func() { b.refill(); r.wRecv.Inbound(b.pkts) }); a != 0 {
			t.Errorf("inbound %s (%v): %v allocations per batch of 4 — the error comes from package esp, which builds it with fmt.Errorf on every packet",
				name, b.pkts[0].Reason, a)
		}
	}
	for name, pkt := range map[string][]byte{"not IP": {0x70, 1, 2, 3}, "empty-ish": {0x45}} {
		b := newBatchBufs(4, pkt, r.tun)
		if a := testing.AllocsPerRun(20, func() { b.refill(); r.wSend.Outbound(b.pkts) }); a != 0 {
			t.Errorf("outbound %s (%v): %v allocations per batch of 4 — from esp.EncapTunnel's fmt.Errorf", name, b.pkts[0].Reason, a)
		}
	}
}
