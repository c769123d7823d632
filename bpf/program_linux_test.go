//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// allFeatures turns every feature on, so the verifier sees every branch.
var allFeatures = Options{
	NATTPort:          4501,
	LocalAddrs:        []netip.Addr{local4, local6},
	SteerFragments:    true,
	SocketsPerQueue:   MaxSocketsPerQueue,
	SPIHash:           true,
	Plaintext:         true,
	ProtectedPrefixes: []netip.Prefix{prot4, prot6},
	Queues:            MaxQueues,
}

func TestLoadAllFeatures(t *testing.T) {
	p := loadTest(t, allFeatures)
	if got, want := p.XSKMap().MaxEntries(), uint32(MaxQueues*MaxSocketsPerQueue); got != want {
		t.Errorf("XSKMAP entries %d, want %d", got, want)
	}
	if p.XSKMap().Type() != ebpf.XSKMap {
		t.Errorf("XSKMap() is a %v", p.XSKMap().Type())
	}
	if p.Program().Type() != ebpf.XDP {
		t.Errorf("Program() is a %v", p.Program().Type())
	}
	s, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s != (Stats{}) {
		t.Errorf("fresh program has counters %+v", s)
	}
	if p.Options().NATTPort != 4501 || len(p.Options().LocalAddrs) != 2 {
		t.Errorf("Options() = %+v", p.Options())
	}
}

func TestLoadRejectsInvalidOptions(t *testing.T) {
	// Validation comes before any syscall: no privileges needed.
	if _, err := Load(Options{SocketsPerQueue: 100}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("Load: %v, want ErrInvalidOptions", err)
	}
}

func TestSocketRegistration(t *testing.T) {
	p := loadTest(t, Options{SocketsPerQueue: 4, SPIHash: true, Queues: 2})
	fd := xskSocket(t)

	for _, tc := range []struct{ queue, slot, want int }{{0, 0, 0}, {0, 3, 3}, {1, 0, 4}, {1, 3, 7}} {
		if got, err := p.SocketIndex(tc.queue, tc.slot); err != nil || got != tc.want {
			t.Errorf("SocketIndex(%d, %d) = %d, %v; want %d", tc.queue, tc.slot, got, err, tc.want)
		}
	}
	for _, bad := range [][2]int{{2, 0}, {0, 4}, {-1, 0}, {0, -1}} {
		if _, err := p.SocketIndex(bad[0], bad[1]); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("SocketIndex(%d, %d): %v, want ErrInvalidOptions", bad[0], bad[1], err)
		}
	}
	for _, idx := range []int{-1, 8} {
		if err := p.RegisterSocket(idx, fd); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("RegisterSocket(%d): %v, want ErrInvalidOptions", idx, err)
		}
		if err := p.UnregisterSocket(idx); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("UnregisterSocket(%d): %v, want ErrInvalidOptions", idx, err)
		}
	}
	if err := p.RegisterSocket(0, -1); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("RegisterSocket(fd -1): %v", err)
	}

	// Only AF_XDP sockets go into an XSKMAP.
	udpFD, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(udpFD)
	if err := p.RegisterSocket(1, udpFD); err == nil {
		t.Error("RegisterSocket accepted a UDP socket")
	}

	if err := p.RegisterSocket(7, fd); err != nil {
		t.Fatal(err)
	}
	if err := p.UnregisterSocket(7); err != nil {
		t.Errorf("UnregisterSocket: %v", err)
	}
	if err := p.UnregisterSocket(7); err != nil {
		t.Errorf("UnregisterSocket of an empty slot: %v", err)
	}
}

func TestAttachRejectsBadArguments(t *testing.T) {
	p := loadTest(t, Options{})
	if _, err := p.Attach(0, AttachGeneric); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("Attach(ifindex 0): %v", err)
	}
	if _, err := p.Attach(1, AttachMode(42)); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("Attach(mode 42): %v", err)
	}
}

func TestCloseTwice(t *testing.T) {
	p := loadTest(t, Options{})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestWrapErr(t *testing.T) {
	tests := []struct {
		in   error
		want error
	}{
		{unix.EPERM, ErrPermission},
		{fmt.Errorf("map create: %w", unix.EPERM), ErrPermission},
		{unix.EOPNOTSUPP, ErrNotSupported},
		{fmt.Errorf("x: %w", ebpf.ErrNotSupported), ErrNotSupported},
		{unix.Errno(524), ErrNotSupported},
		{unix.EBUSY, ErrBusy},
		{unix.EINVAL, nil},
		{&ebpf.VerifierError{Cause: unix.EPERM}, nil},
	}
	sentinels := []error{ErrPermission, ErrNotSupported, ErrBusy, ErrInvalidOptions}
	for _, tc := range tests {
		got := wrapErr("op", tc.in)
		if !errors.Is(got, tc.in) {
			t.Errorf("wrapErr(%v) = %v lost the cause", tc.in, got)
		}
		for _, s := range sentinels {
			if errors.Is(got, s) != (s == tc.want) {
				t.Errorf("wrapErr(%v) = %v; errors.Is(%v) = %v", tc.in, got, s, errors.Is(got, s))
			}
		}
	}
}
