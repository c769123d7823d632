//go:build linux

package xdp

import (
	"errors"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/esp"
)

func TestDescLayout(t *testing.T) {
	if unsafe.Sizeof(Desc{}) != unsafe.Sizeof(unix.XDPDesc{}) ||
		unsafe.Offsetof(Desc{}.Len) != unsafe.Offsetof(unix.XDPDesc{}.Len) ||
		unsafe.Offsetof(Desc{}.Options) != unsafe.Offsetof(unix.XDPDesc{}.Options) {
		t.Fatal("Desc does not match struct xdp_desc")
	}
}

func TestUMEMConfig(t *testing.T) {
	good := []UMEMConfig{
		{},
		{FrameSize: 2048, NumFrames: 64, FillSize: 32, CompletionSize: 32},
		{FrameSize: 2048, Headroom: 2048 - KernelHeadroom - MinDataRoom},
		{FrameSize: 4096, Headroom: MinHeadroom, NumFrames: 8, FillSize: 8, CompletionSize: 1},
	}
	for _, c := range good {
		n, err := c.normalize()
		if err != nil {
			t.Errorf("%+v: %v", c, err)
			continue
		}
		if n.FrameSize == 0 || n.NumFrames == 0 || n.Headroom < MinHeadroom || n.FillSize == 0 || n.CompletionSize == 0 {
			t.Errorf("%+v normalized to %+v: defaults missing", c, n)
		}
	}
	if n, _ := (UMEMConfig{}).normalize(); n != (UMEMConfig{FrameSize: DefaultFrameSize, NumFrames: DefaultNumFrames,
		Headroom: DefaultHeadroom, FillSize: DefaultRingSize, CompletionSize: DefaultRingSize}) {
		t.Errorf("zero config normalized to %+v", n)
	}
	if DefaultHeadroom < esp.MaxHeadroom {
		t.Errorf("DefaultHeadroom %d < esp.MaxHeadroom %d", DefaultHeadroom, esp.MaxHeadroom)
	}
	bad := []UMEMConfig{
		{FrameSize: 1024},
		{FrameSize: 8192},
		{FrameSize: 3000},
		{Headroom: MinHeadroom - 1},
		{FrameSize: 2048, Headroom: 2048 - KernelHeadroom - MinDataRoom + 1},
		{NumFrames: -1},
		{NumFrames: MaxNumFrames + 1},
		{NumFrames: 16, FillSize: 32},
		{FillSize: 100},
		{CompletionSize: -4},
		{FillSize: 2 * MaxRingSize, NumFrames: 4 * MaxRingSize},
	}
	for _, c := range bad {
		if _, err := NewUMEM(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewUMEM(%+v): %v, want ErrInvalidConfig", c, err)
		}
	}
}

func TestSocketConfig(t *testing.T) {
	u := newTestUMEM(t, UMEMConfig{NumFrames: 16, FillSize: 16, CompletionSize: 16})
	bad := []SocketConfig{
		{},
		{Ifindex: -1},
		{Ifindex: 1, Queue: -1},
		{Ifindex: 1, Mode: Mode(7)},
		{Ifindex: 1, RXSize: -1, TXSize: -1},
		{Ifindex: 1, RXSize: 3},
		{Ifindex: 1, TXSize: 2 * MaxRingSize},
	}
	for _, c := range bad {
		if _, err := u.NewSocket(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewSocket(%+v): %v, want ErrInvalidConfig", c, err)
		}
	}
	if got := u.NumSockets(); got != 0 {
		t.Errorf("%d sockets after failed NewSocket calls", got)
	}
}

func TestForwarderConfig(t *testing.T) {
	s := &Socket{}
	for _, c := range []ForwarderConfig{
		{},
		{In: s},
		{In: s, Out: s, BatchSize: MaxBatch + 1},
		{In: s, Out: s, BatchSize: -1},
		{In: s, Out: s, PinCPU: true, CPU: -1},
	} {
		if _, err := NewForwarder(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewForwarder(%+v): %v, want ErrInvalidConfig", c, err)
		}
	}
}

func newTestUMEM(t testing.TB, cfg UMEMConfig) *UMEM {
	t.Helper()
	u, err := NewUMEM(cfg)
	if err != nil {
		t.Fatalf("NewUMEM(%+v): %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := u.CheckFrames(); err != nil {
			t.Errorf("frame accounting at the end of the test: %v", err)
		}
		if err := u.Close(); err != nil {
			t.Errorf("UMEM.Close: %v", err)
		}
		if c := u.Counts(); c.Free+c.App != c.Total {
			t.Errorf("frames after Close: %+v", c)
		}
	})
	return u
}

// TestAllocator exercises Alloc, Free, Frame, SetPacket and the audit on
// a UMEM without sockets.
func TestAllocator(t *testing.T) {
	const frames = 32
	u := newTestUMEM(t, UMEMConfig{FrameSize: 2048, NumFrames: frames, FillSize: 16, CompletionSize: 16})
	if got := u.DataOffset(); got != DefaultHeadroom+KernelHeadroom {
		t.Errorf("DataOffset %d, want %d", got, DefaultHeadroom+KernelHeadroom)
	}
	descs := make([]Desc, frames+5)
	n := u.Alloc(descs)
	if n != frames {
		t.Fatalf("Alloc(%d) = %d, want %d", len(descs), n, frames)
	}
	if u.Alloc(descs[:1]) != 0 {
		t.Fatal("Alloc from an empty UMEM succeeded")
	}
	seen := map[uint64]bool{}
	for _, d := range descs[:n] {
		base := d.Addr &^ 2047
		if seen[base] {
			t.Fatalf("frame %#x handed out twice", base)
		}
		seen[base] = true
		frame, off := u.Frame(d)
		if len(frame) != 2048 || off != u.DataOffset() || int(d.Len) != 2048-u.DataOffset() {
			t.Fatalf("Frame(%+v) = %d bytes, offset %d", d, len(frame), off)
		}
		// Headroom, packet and tailroom are all writable.
		frame[0], frame[off], frame[len(frame)-1] = 1, 2, 3
	}
	if c := u.Counts(); c != (FrameCounts{Total: frames, App: frames}) {
		t.Errorf("counts after allocating everything: %+v", c)
	}

	// SetPacket moves the packet into the headroom and back.
	d := descs[0]
	if err := u.SetPacket(&d, 8, 100); err != nil {
		t.Fatal(err)
	}
	f0, _ := u.Frame(descs[0])
	if f, off := u.Frame(d); off != 8 || d.Len != 100 || &f[0] != &f0[0] {
		t.Errorf("after SetPacket(8, 100): offset %d len %d", off, d.Len)
	}
	for _, c := range []struct{ off, n int }{{-1, 10}, {0, 2049}, {2000, 49}, {0, -1}} {
		dd := descs[0]
		if err := u.SetPacket(&dd, c.off, c.n); !errors.Is(err, ErrInvalidConfig) || dd != descs[0] {
			t.Errorf("SetPacket(%d, %d): %v, desc %+v", c.off, c.n, err, dd)
		}
	}
	outside := Desc{Addr: frames * 2048, Len: 10}
	if f, off := u.Frame(outside); f != nil || off != 0 || u.Packet(outside) != nil {
		t.Error("Frame of a descriptor outside the UMEM is not nil")
	}
	if err := u.SetPacket(&outside, 0, 10); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("SetPacket outside the UMEM: %v", err)
	}
	if u.Packet(Desc{Addr: 2048 - 10, Len: 11}) != nil {
		t.Error("Packet crossing the frame end is not nil")
	}

	// Free everything, including a second time and foreign addresses.
	if got := u.Free(descs[:n]); got != frames {
		t.Fatalf("Free = %d, want %d", got, frames)
	}
	if got := u.Free(descs[:n]); got != 0 {
		t.Fatalf("second Free = %d, want 0", got)
	}
	if got := u.Free([]Desc{outside, {Addr: ^uint64(0)}}); got != 0 {
		t.Fatalf("Free of foreign addresses = %d", got)
	}
	if got := u.BadFrees(); got != frames+2 {
		t.Errorf("BadFrees = %d, want %d", got, frames+2)
	}
	if c := u.Counts(); c != (FrameCounts{Total: frames, Free: frames}) {
		t.Errorf("counts after freeing everything: %+v", c)
	}
	if err := u.CheckFrames(); err != nil {
		t.Error(err)
	}
	// Freeing with a pointer into the middle of the frame works too.
	u.Alloc(descs[:1])
	descs[0].Addr += 100
	if u.Free(descs[:1]) != 1 {
		t.Error("Free of a descriptor pointing inside its frame failed")
	}
	if err := u.CheckFrames(); err != nil {
		t.Error(err)
	}
}

// TestCheckFramesDetects corrupts the allocator on purpose and expects
// the audit to notice.
func TestCheckFramesDetects(t *testing.T) {
	cfg := UMEMConfig{FrameSize: 2048, NumFrames: 8, FillSize: 8, CompletionSize: 8}
	for name, corrupt := range map[string]func(u *UMEM){
		"duplicate on free list": func(u *UMEM) { u.free[0] = u.free[1] },
		"lost frame": func(u *UMEM) {
			u.free = u.free[:len(u.free)-1]
		},
		"app count": func(u *UMEM) { u.app = 3 },
		"state":     func(u *UMEM) { u.state[2] = stateApp },
	} {
		t.Run(name, func(t *testing.T) {
			u := newTestUMEM(t, cfg)
			if err := u.CheckFrames(); err != nil {
				t.Fatalf("fresh UMEM: %v", err)
			}
			u.mu.Lock()
			corrupt(u)
			u.mu.Unlock()
			if err := u.CheckFrames(); !errors.Is(err, ErrFrameAccounting) {
				t.Errorf("CheckFrames after corruption: %v", err)
			}
			// Put it right so Close does not trip over it.
			u.mu.Lock()
			u.free = u.free[:0]
			for i := range u.state {
				u.state[i] = stateFree
				u.free = append(u.free, uint64(i)<<u.shift)
			}
			u.app = 0
			u.mu.Unlock()
		})
	}
}

func TestClosedUMEM(t *testing.T) {
	u, err := NewUMEM(UMEMConfig{NumFrames: 8, FillSize: 8, CompletionSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	d := make([]Desc, 2)
	if u.Alloc(d) != 2 {
		t.Fatal("Alloc failed")
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if err := u.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if f, _ := u.Frame(d[0]); f != nil {
		t.Error("Frame works on a closed UMEM")
	}
	if u.Alloc(d) != 0 {
		t.Error("Alloc works on a closed UMEM")
	}
	if _, err := u.NewSocket(SocketConfig{Ifindex: 1}); !errors.Is(err, ErrClosed) {
		t.Errorf("NewSocket on a closed UMEM: %v", err)
	}
	if c := u.Counts(); c.App != 2 || c.Free != 6 {
		t.Errorf("counts of a closed UMEM: %+v", c)
	}
}
