//go:build linux

package xdp

import (
	"testing"
	"time"

	"github.com/espxdp/espxdp/bpf"
)

// TestBusyPollSocket: a socket opened with BusyPoll carries the socket
// options (SO_BUSY_POLL and SO_PREFER_BUSY_POLL read back with
// getsockopt; the kernel cannot read SO_BUSY_POLL_BUDGET back, but
// refuses a bad one, which NewSocket reports), one without carries none,
// and a busy-polling socket still receives what the steering program
// redirects to it.
func TestBusyPollSocket(t *testing.T) {
	requireNet(t)
	n := newTestNet(t, 1)
	prog := loadProgram(t, bpf.Options{Queues: 1})
	att := attach(t, prog, n.v.A)
	t.Cleanup(func() { att.Close() })

	u := newTestUMEM(t, UMEMConfig{NumFrames: 256, FillSize: 128, CompletionSize: 128})
	want := BusyPoll{Usecs: 20, Budget: 16, Prefer: true}
	s := openSocket(t, n.xns, u, SocketConfig{Ifindex: n.v.A.Index, RXSize: 128, TXSize: 128, BusyPoll: want})
	got, err := busyPollOf(s.FD())
	if err != nil {
		t.Fatal(err)
	}
	if got.Usecs != want.Usecs || got.Prefer != want.Prefer {
		t.Errorf("socket busy-poll options %+v, want %+v", got, want)
	}
	u2 := newTestUMEM(t, UMEMConfig{NumFrames: 64, FillSize: 32, CompletionSize: 32})
	plain := openSocket(t, n.peer, u2, SocketConfig{Ifindex: n.v.B.Index, RXSize: -1, TXSize: 32})
	if got, err := busyPollOf(plain.FD()); err != nil || got.Usecs != 0 || got.Prefer {
		t.Errorf("socket without BusyPoll: %+v, %v", got, err)
	}

	register(t, prog, 0, s)
	if s.Refill() == 0 {
		t.Fatal("no frame on the fill ring")
	}
	const count = 8
	for i := range count {
		if err := sendIPv4(n.peer, 50, ipv4(n.p4, n.x4, 50, uint16(i), espPayload(0x01020304, uint32(i+1), 40))); err != nil {
			t.Fatal(err)
		}
	}
	if rx := receive(t, s, count, 2*time.Second); len(rx) != count {
		t.Errorf("busy-polling socket received %d of %d packets", len(rx), count)
	}
	quiet(t, u, s)
}
