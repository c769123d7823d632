package sa

import (
	"math"
	"testing"
	"time"
)

// sendN pushes n packets of the given inner size through the rig, one
// batch, and returns how many were delivered.
func (r *rig) sendN(tb testing.TB, n, size int) (ok int, reasons map[DropReason]int) {
	tb.Helper()
	reasons = map[DropReason]int{}
	b := make([]Packet, n)
	for i := range b {
		b[i] = packetFor(udpPacket(hostA, hostB, 1, 2, size, uint64(i)))
	}
	r.wSend.Outbound(b)
	var good []Packet
	for _, p := range b {
		if p.Verdict == VerdictOK {
			good = append(good, p)
		} else {
			reasons[p.Reason]++
		}
	}
	r.wRecv.Inbound(good)
	for _, p := range good {
		if p.Verdict == VerdictOK {
			ok++
		} else {
			reasons[p.Reason]++
		}
	}
	return ok, reasons
}

func TestLifetimePackets(t *testing.T) {
	r := newRig(t, "aes128gcm16", func(c *Config) {
		c.SoftLifetime.Packets = 5
		c.HardLifetime.Packets = 8
	})
	if ok, _ := r.sendN(t, 4, 10); ok != 4 {
		t.Fatalf("delivered %d of 4", ok)
	}
	if r.evA.count(EventSoftExpire) != 0 || r.out.State() != StateActive {
		t.Fatal("soft expiry before the limit")
	}
	if st := r.out.Stats(); st.SoftRemaining.Packets != 1 || st.HardRemaining.Packets != 4 || st.HardRemaining.Bytes != Unlimited {
		t.Fatalf("remaining %+v %+v", st.SoftRemaining, st.HardRemaining)
	}
	r.sendN(t, 1, 10)
	if r.evA.count(EventSoftExpire) != 1 || r.evB.count(EventSoftExpire) != 1 {
		t.Fatalf("soft events A %v B %v", r.evA.kinds(), r.evB.kinds())
	}
	if r.out.State() != StateSoftExpired {
		t.Fatalf("state %v", r.out.State())
	}
	// Hard limit 8: exactly 3 more go through, the rest drop as expired.
	ok, reasons := r.sendN(t, 6, 10)
	if ok != 3 || reasons[DropExpired] != 3 {
		t.Fatalf("past the hard limit: ok %d, reasons %v", ok, reasons)
	}
	if r.out.State() != StateExpired || r.evA.count(EventHardExpire) != 1 || r.evA.count(EventSoftExpire) != 1 {
		t.Fatalf("state %v events %v", r.out.State(), r.evA.kinds())
	}
	if n := r.out.Stats().Drops[DropExpired]; n != 3 {
		t.Fatalf("expired drops %d", n)
	}
	ev := r.evA.lastOf(EventHardExpire)
	if ev.SA != r.out || ev.SPI != r.out.SPI() || ev.Limit != LimitPackets || ev.Direction != Out {
		t.Fatalf("event %+v", ev)
	}
	if st := r.out.Stats(); st.HardRemaining.Packets != 0 {
		t.Fatalf("hard remaining %+v", st.HardRemaining)
	}
}

func TestLifetimeBytes(t *testing.T) {
	// Inner packets of 28+72 = 100 bytes.
	r := newRig(t, "aes256-sha256", func(c *Config) {
		c.SoftLifetime.Bytes = 250
		c.HardLifetime.Bytes = 400
	})
	r.sendN(t, 2, 72)
	if r.evA.count(EventSoftExpire) != 0 {
		t.Fatal("early soft expiry")
	}
	r.sendN(t, 1, 72) // 300 ≥ 250
	if r.evA.count(EventSoftExpire) != 1 || r.evB.count(EventSoftExpire) != 1 {
		t.Fatalf("soft events %v %v", r.evA.kinds(), r.evB.kinds())
	}
	ok, reasons := r.sendN(t, 3, 72) // the 4th packet reaches 400; the 5th and 6th drop
	if ok != 1 || reasons[DropExpired] != 2 {
		t.Fatalf("ok %d reasons %v", ok, reasons)
	}
	if r.evA.count(EventHardExpire) != 1 || r.in.State() != StateExpired {
		t.Fatalf("hard: %v, in %v", r.evA.kinds(), r.in.State())
	}
	if ev := r.evA.lastOf(EventHardExpire); ev.Limit != LimitBytes {
		t.Fatalf("limit %v", ev.Limit)
	}
}

func TestLifetimeTime(t *testing.T) {
	r := newRig(t, "aes128gcm16", func(c *Config) {
		c.SoftLifetime.Time = 50 * time.Second
		c.HardLifetime.Time = 60 * time.Second
	})
	if ok, _ := r.sendN(t, 3, 10); ok != 3 {
		t.Fatal("young SA dropped packets")
	}
	if st := r.out.StatsAt(r.clock.Now()); st.SoftRemaining.Seconds != 50 || st.HardRemaining.Seconds != 60 {
		t.Fatalf("remaining %+v %+v", st.SoftRemaining, st.HardRemaining)
	}
	r.clock.Add(49 * time.Second)
	r.sendN(t, 1, 10)
	if len(r.evA.kinds()) != 0 {
		t.Fatalf("events at 49s: %v", r.evA.kinds())
	}
	r.clock.Add(2 * time.Second) // 51s: the data path notices
	if ok, _ := r.sendN(t, 1, 10); ok != 1 {
		t.Fatal("soft-expired SA dropped")
	}
	if r.evA.count(EventSoftExpire) != 1 || r.evB.count(EventSoftExpire) != 1 {
		t.Fatalf("soft at 51s: %v %v", r.evA.kinds(), r.evB.kinds())
	}
	// Idle SAs expire through Sweep.
	r.clock.Add(10 * time.Second)
	r.sadA.Sweep(time.Time{})
	if r.out.State() != StateExpired || r.evA.count(EventHardExpire) != 1 || r.in.State() != StateSoftExpired {
		t.Fatalf("after sweep at 61s: out %v in %v events %v", r.out.State(), r.in.State(), r.evA.kinds())
	}
	ok, reasons := r.sendN(t, 2, 10)
	if ok != 0 || reasons[DropExpired] != 2 {
		t.Fatalf("hard-expired SA: ok %d %v", ok, reasons)
	}
	if ev := r.evA.lastOf(EventHardExpire); ev.Limit != LimitTime || !ev.Time.Equal(r.clock.Now()) {
		t.Fatalf("event %+v", ev)
	}
	r.sadB.Sweep(r.clock.Now())
	if r.in.State() != StateExpired {
		t.Fatal("inbound not hard-expired by Sweep")
	}
	if st := r.out.StatsAt(r.clock.Now()); st.HardRemaining.Seconds != 0 || st.Age != 61*time.Second {
		t.Fatalf("stats %+v age %v", st.HardRemaining, st.Age)
	}
}

func TestExpireByControlPlane(t *testing.T) {
	r := newRig(t, "aes128gcm16", nil)
	r.out.Expire(false)
	r.out.Expire(false)
	if r.out.State() != StateSoftExpired || r.evA.count(EventSoftExpire) != 1 {
		t.Fatalf("soft: %v %v", r.out.State(), r.evA.kinds())
	}
	r.out.Expire(true)
	if ok, reasons := r.sendN(t, 1, 10); ok != 0 || reasons[DropExpired] != 1 {
		t.Fatalf("after Expire(true): %d %v", ok, reasons)
	}
}

func TestSequenceOverflow(t *testing.T) {
	r := newRig(t, "aes128gcm16", nil)
	// Pretend 2^32-3 packets were sent; the receiver saw them too.
	r.out.seq.Store(math.MaxUint32 - 2)
	r.in.win.Update(math.MaxUint32 - 2)
	ok, reasons := r.sendN(t, 4, 10)
	// 2^32-2 and 2^32-1 go out; then the counter would wrap.
	if ok != 2 || reasons[DropSeqOverflow] != 2 {
		t.Fatalf("ok %d reasons %v", ok, reasons)
	}
	if r.out.State() != StateExpired || r.evA.count(EventSeqOverflow) != 1 || r.evA.count(EventHardExpire) != 0 {
		t.Fatalf("state %v events %v", r.out.State(), r.evA.kinds())
	}
	if st := r.out.Stats(); st.Seq != math.MaxUint32 || st.Drops[DropSeqOverflow] != 2 {
		t.Fatalf("stats seq %d drops %v", st.Seq, st.Drops)
	}
	if ok, reasons := r.sendN(t, 1, 10); ok != 0 || reasons[DropSeqOverflow] != 1 {
		t.Fatalf("later: %d %v", ok, reasons)
	}

	// With ESN the counter goes on past 2^32 and the receiver infers it.
	r = newRig(t, "aes128gcm16", func(c *Config) { c.ESN = true })
	r.out.seq.Store(math.MaxUint32 - 2)
	r.in.win.Update(math.MaxUint32 - 2)
	ok, reasons = r.sendN(t, 6, 10)
	if ok != 6 || len(reasons) != 0 {
		t.Fatalf("ESN across 2^32: ok %d %v", ok, reasons)
	}
	if st := r.in.Stats(); st.Seq != 1<<32+3 {
		t.Fatalf("receiver edge %#x", st.Seq)
	}
}

// TestESNAcrossWrapReordered delivers packets around 2^32 out of order.
func TestESNAcrossWrapReordered(t *testing.T) {
	r := newRig(t, "aes256-sha256", func(c *Config) { c.ESN = true; c.ReplayWindow = 64 })
	r.out.seq.Store(1<<32 - 10)
	r.in.win.Update(1<<32 - 20)
	b := make([]Packet, 20)
	for i := range b {
		b[i] = packetFor(udpPacket(hostA, hostB, 1, 2, 10, uint64(i)))
	}
	r.wSend.Outbound(b)
	// Reverse the order: the receiver sees high numbers first.
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	dup := clonePacket(b[3])
	r.wRecv.Inbound(b)
	for i, p := range b {
		if p.Verdict != VerdictOK {
			t.Fatalf("packet %d: %v %v", i, p.Verdict, p.Reason)
		}
	}
	if q := r.open(dup); q.Reason != DropReplay {
		t.Fatalf("duplicate across the wrap: %v", q.Reason)
	}
}
