//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/internal/testenv"
)

// loadTest loads a program for a test and closes it with the test.
func loadTest(t testing.TB, opts Options) *Program {
	t.Helper()
	testenv.RequirePrivileged(t)
	p, err := Load(opts)
	if err != nil {
		t.Fatalf("Load(%+v): %v", opts, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// xskSocket returns a fresh, unbound AF_XDP socket, closed with the test.
//
// An XSKMAP accepts unbound sockets, and bpf_redirect_map only looks at
// whether the slot is occupied, so with one in the slot a test run of the
// program returns XDP_REDIRECT (the verdict a real socket would get),
// while an empty slot makes it return the XDP_PASS fallback. On a live
// interface a redirect to an unbound socket fails after the program has
// returned and the frame is dropped; the attach test relies on that.
func xskSocket(t testing.TB) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EAFNOSUPPORT) {
			testenv.Unavailable(t, "kernel without AF_XDP")
		}
		t.Fatalf("socket(AF_XDP): %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// xdpMD mirrors struct xdp_md, the context of a BPF_PROG_TEST_RUN.
type xdpMD struct {
	Data           uint32
	DataEnd        uint32
	DataMeta       uint32
	IngressIfindex uint32
	RxQueueIndex   uint32
	EgressIfindex  uint32
}

// runCountedDrop runs frame through p, checks its verdict and counters,
// and that exactly the clear-text drop counter of tunnel (-1: none) grew
// by one.
func runCountedDrop(t *testing.T, p *Program, frame []byte, want Verdict, stats Stats, tunnel int) {
	t.Helper()
	before, err := p.UnprotectedDrops()
	if err != nil {
		t.Fatal(err)
	}
	got, st := run(t, p, frame)
	if got != want || st != stats {
		t.Errorf("verdict %v stats %+v, want %v %+v", got, st, want, stats)
	}
	after, err := p.UnprotectedDrops()
	if err != nil {
		t.Fatal(err)
	}
	for i := range after {
		w := uint64(0)
		if i == tunnel {
			w = 1
		}
		if d := after[i] - before[i]; d != w {
			t.Errorf("tunnel %d drops +%d, want +%d", i, d, w)
		}
	}
}

// run test-runs frame through p on queue 0 and returns the verdict and
// the change of the counters.
func run(t testing.TB, p *Program, frame []byte) (Verdict, Stats) {
	t.Helper()
	return runOpts(t, p, &ebpf.RunOptions{Data: frame})
}

// runOnQueue test-runs frame with ctx->rx_queue_index = queue of interface
// ifindex, which must exist in the calling thread's network namespace
// (use it inside netns.NS.Do).
func runOnQueue(p *Program, frame []byte, ifindex, queue int) (Verdict, Stats, error) {
	ctx := xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ifindex), RxQueueIndex: uint32(queue)}
	return tryRun(p, &ebpf.RunOptions{Data: frame, Context: ctx})
}

func runOpts(t testing.TB, p *Program, opts *ebpf.RunOptions) (Verdict, Stats) {
	t.Helper()
	v, s, err := tryRun(p, opts)
	if err != nil {
		t.Fatal(err)
	}
	return v, s
}

// tryRun is runOpts for goroutines that must not call t.Fatal.
func tryRun(p *Program, opts *ebpf.RunOptions) (Verdict, Stats, error) {
	before, err := p.Stats()
	if err != nil {
		return 0, Stats{}, err
	}
	ret, err := p.Program().Run(opts)
	if err != nil {
		return 0, Stats{}, fmt.Errorf("BPF_PROG_TEST_RUN on %d bytes: %w", len(opts.Data), err)
	}
	after, err := p.Stats()
	if err != nil {
		return 0, Stats{}, err
	}
	return Verdict(ret), after.Sub(before), nil
}

// fillQueue registers fd in every slot of queue and empties them again
// when the test ends.
func fillQueue(t testing.TB, p *Program, queue, fd int) {
	t.Helper()
	for slot := range p.Options().SocketsPerQueue {
		idx, err := p.SocketIndex(queue, slot)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.RegisterSocket(idx, fd); err != nil {
			t.Fatalf("RegisterSocket(%d): %v", idx, err)
		}
		t.Cleanup(func() {
			if err := p.UnregisterSocket(idx); err != nil {
				t.Errorf("UnregisterSocket(%d): %v", idx, err)
			}
		})
	}
}
