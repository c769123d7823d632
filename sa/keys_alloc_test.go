package sa

import (
	"net/netip"
	"testing"

	"github.com/espxdp/espxdp/internal/race"
)

// TestZeroAllocsOuter: the outer checks, a FloatRemote SA receiving from
// a moved peer, and the tunnel acquire path allocate nothing per packet.
func TestZeroAllocsOuter(t *testing.T) {
	if race.Enabled || testing.CoverMode() != "" {
		t.Skip("allocation counts are not meaningful under -race or -cover; .ci/run checks them without")
	}
	r := newRig(t, "aes128gcm16", func(c *Config) { c.UDPEncap, c.FloatRemote = true, true })
	const n = 16
	wire := make([][]byte, 0, 64*n)
	for i := 0; i < cap(wire); i++ {
		q := r.seal(t, udpPacket(hostA, hostB, 1, 2, 100, uint64(i)))
		wire = append(wire, rewriteSrc(q.Data(), natIP, 40000))
	}
	b := newBatchBufs(n, wire[0], nil)
	next := 0
	round := func() {
		for i := range b.pkts {
			copy(b.bufs[i][len(b.bufs[i])-len(wire[next])-64:], wire[next])
			b.pkts[i] = Packet{Buf: b.bufs[i], Off: len(b.bufs[i]) - len(wire[next]) - 64, Len: len(wire[next])}
			next++
		}
		r.wRecv.Inbound(b.pkts)
	}
	round() // the move: one event
	if ev := r.evB.ofKind(EventEndpointChanged); len(ev) != 1 || ev[0].Endpoint != netip.AddrPortFrom(natIP, 40000) {
		t.Fatalf("events %+v", ev)
	}
	if a := testing.AllocsPerRun(50, round); a != 0 {
		t.Fatalf("FloatRemote inbound: %v allocations per batch", a)
	}
	for i := range b.pkts {
		if b.pkts[i].Verdict != VerdictOK {
			t.Fatalf("packet %d: %v", i, b.pkts[i].Reason)
		}
	}
	// Drops by the outer checks.
	for name, pkt := range map[string][]byte{
		"encap": toESP(wire[0]),
		"outer": rewriteDst(wire[0], gwC),
	} {
		bb := newBatchBufs(4, pkt, nil)
		if a := testing.AllocsPerRun(20, func() { bb.refill(); r.wRecv.Inbound(bb.pkts) }); a != 0 {
			t.Errorf("%s drop: %v allocations", name, a)
		}
		if bb.pkts[0].Reason != DropEncap && bb.pkts[0].Reason != DropOuter {
			t.Errorf("%s: %v", name, bb.pkts[0].Reason)
		}
	}
	// Tunnel acquire (rate-limited after the first).
	empty := NewTunnel("empty")
	bb := newBatchBufs(4, udpPacket(hostA, hostB, 1, 2, 20, 1), empty)
	if a := testing.AllocsPerRun(20, func() { bb.refill(); r.wSend.Outbound(bb.pkts) }); a != 0 {
		t.Errorf("tunnel acquire: %v allocations", a)
	}
	if bb.pkts[0].Reason != DropAcquire {
		t.Errorf("tunnel acquire: %v", bb.pkts[0].Reason)
	}
}
