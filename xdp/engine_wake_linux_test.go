//go:build linux

package xdp

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/netns"
)

// TestEngineSendWake checks the wake-up protocol between Engine.Send and
// a sleeping worker (engineWorker.sleep): Send writes the worker's
// eventfd only while the worker sleeps or is about to, and never loses
// a wake-up. The worker's sleep timeout is raised to a minute, so a lost
// wake-up leaves a packet unencrypted far past the test's bound instead
// of being covered by the timeout. No XDP: the ciphertext side is an
// in-memory port, Send the only source.
//
// Invariants, over random gaps between Sends (some while the worker
// surely sleeps, some while it is busy or on its way to sleep): every
// packet is encrypted and transmitted; every Send made while the
// worker was seen asleep wrote the eventfd (SendWakes counts it); no
// Send wrote it more than once.
func TestEngineSendWake(t *testing.T) {
	old := idleSleep
	idleSleep = time.Minute
	t.Cleanup(func() { idleSleep = old })

	proc := outboundProc(t, 1)
	local, remote := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	port := &memPort{}
	e := startEngineIn(t, nil, EngineConfig{Processor: proc, CipherPort: port, Deliver: func([][]byte) {},
		UMEM: UMEMConfig{NumFrames: 1024, FillSize: 256, CompletionSize: 256}})
	ew := e.rt.workers[0]
	asleep := func() bool { return netns.WaitFor(5*time.Second, ew.asleep.Load) }

	r := rand.New(rand.NewPCG(3, 4))
	const rounds = 200
	sends, seenAsleep := 0, 0
	for i := range rounds {
		pkt := innerUDP(local, remote, uint16(i), 20+r.IntN(200))
		switch r.IntN(3) {
		case 0: // surely asleep: wait for it
			if !asleep() {
				t.Fatalf("round %d: worker never went to sleep", i)
			}
			time.Sleep(time.Duration(r.IntN(200)) * time.Microsecond)
			seenAsleep++
		case 1: // somewhere between busy and asleep
			time.Sleep(time.Duration(r.IntN(50)) * time.Microsecond)
		default: // right after the last Send: likely busy
		}
		if k, err := e.Send(0, [][]byte{pkt}); k != 1 || err != nil {
			t.Fatalf("round %d: Send: %d, %v", i, k, err)
		}
		sends++
		want := uint64(i + 1)
		if !netns.WaitFor(5*time.Second, func() bool { return port.tx.Load() >= want }) {
			t.Fatalf("round %d: packet not transmitted within 5 s (lost wake-up?); transmitted %d, stats %+v",
				i, port.tx.Load(), e.Stats().Workers[0])
		}
	}
	w := e.Stats().Workers[0]
	if w.Sent != rounds || w.Encrypted != rounds || port.tx.Load() != rounds {
		t.Errorf("Sent %d, Encrypted %d, transmitted %d; want %d each", w.Sent, w.Encrypted, port.tx.Load(), rounds)
	}
	if w.SendWakes < uint64(seenAsleep) || w.SendWakes > uint64(sends) {
		t.Errorf("SendWakes %d: want at least %d (Sends to a sleeping worker), at most %d (Sends)", w.SendWakes, seenAsleep, sends)
	}
	if w.Batches < rounds {
		t.Errorf("Batches %d for %d packets sent one at a time after the last was done", w.Batches, rounds)
	}
	t.Logf("%d Sends, %d to a sleeping worker, %d eventfd wakes, %d sleeps", sends, seenAsleep, w.SendWakes, w.Sleeps)
}
