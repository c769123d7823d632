package bpf

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// pinToOneCPU locks the test goroutine to its thread and the thread to
// one CPU (the Spread dealer counts per CPU), undone at cleanup.
func pinToOneCPU(t *testing.T) {
	t.Helper()
	runtime.LockOSThread()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		t.Fatal(err)
	}
	cpu := -1
	for i := range 1024 {
		if old.IsSet(i) {
			cpu = i
			break
		}
	}
	var one unix.CPUSet
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.SchedSetaffinity(0, &old)
		runtime.UnlockOSThread()
	})
}

// TestSpreadSteering checks the dealer: with Spread, the i-th hashed
// packet a CPU steers (ESP of one SPI, NAT-T, plaintext to one address,
// all mixed) goes to slot (i/SpreadChunk) % SocketsPerQueue, whatever
// its SPI or address, and fragments still go to slot 0 without moving
// the dealer. Invariant kept by steer() in steer.c.
func TestSpreadSteering(t *testing.T) {
	pinToOneCPU(t)
	for _, c := range []struct{ n, chunk int }{{2, 1}, {2, 4}, {3, 8}, {4, 32}} {
		p := loadTest(t, Options{SocketsPerQueue: c.n, Spread: true, SpreadChunk: c.chunk, Plaintext: true,
			ProtectedPrefixes: []netip.Prefix{prot4, prot6}, SteerFragments: true})
		fd := xskSocket(t)
		frames := [][]byte{
			pkt{proto: protoESP, l4: esp(0xdeadbeef, 8)}.bytes(),
			pkt{v6: true, proto: protoUDP, l4: udp(4500, esp(0x1234, 8))}.bytes(),
			pkt{dst: protHost4, proto: protoTCP, l4: tcpSeg}.bytes(),
		}
		frag := pkt{frag4: 0x2000 | 9, proto: protoESP, l4: esp(0xdeadbeef, 8)}.bytes()
		dealt := 0
		for slot := range c.n {
			idx, err := p.SocketIndex(0, slot)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.RegisterSocket(idx, fd); err != nil {
				t.Fatal(err)
			}
			for i := range 3 * c.n * c.chunk {
				want := (dealt/c.chunk)%c.n == slot
				v, _ := run(t, p, frames[i%len(frames)])
				dealt++
				if (v == VerdictRedirect) != want {
					t.Fatalf("n %d chunk %d: packet %d with a socket in slot %d only: %v, want redirect %v",
						c.n, c.chunk, dealt-1, slot, v, want)
				}
				if i%7 == 0 {
					v, s := run(t, p, frag)
					if want0 := slot == 0; (v == VerdictRedirect) != want0 || s.FragmentRedirected+s.RedirectNoSocket != 1 {
						t.Fatalf("fragment with a socket in slot %d: %v %+v", slot, v, s)
					}
				}
			}
			if err := p.UnregisterSocket(idx); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestSpreadOptions(t *testing.T) {
	for _, o := range []Options{
		{SocketsPerQueue: 2, Spread: true, SPIHash: true},
		{SocketsPerQueue: 2, Spread: true, SpreadChunk: 3},
		{SocketsPerQueue: 2, Spread: true, SpreadChunk: MaxSpreadChunk * 2},
		{SocketsPerQueue: 2, Spread: true, SpreadChunk: -4},
		{SocketsPerQueue: 2, SpreadChunk: 4},
		{SocketsPerQueue: 2},
	} {
		if _, err := o.normalize(); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%+v: %v, want ErrInvalidOptions", o, err)
		}
	}
	o, err := Options{SocketsPerQueue: 2, Spread: true}.normalize()
	if err != nil || o.SpreadChunk != DefaultSpreadChunk {
		t.Errorf("default chunk: %+v %v", o, err)
	}
}

// TestSpreadProperty checks the dealer against its model over random
// sequences of packets: hashed kinds (ESP and NAT-T of random SPIs,
// plaintext to random protected hosts) advance the dealer and go to
// slot (dealt/SpreadChunk) % n; fragments go to slot 0 and IKE to the
// kernel, neither moving the dealer. Each packet is run with a socket in
// one random slot only, so a redirect proves the slot.
func TestSpreadProperty(t *testing.T) {
	pinToOneCPU(t)
	rng := rand.New(rand.NewPCG(14, 4))
	for range 4 {
		n := 2 + rng.IntN(7)
		chunk := 1 << rng.IntN(7)
		p := loadTest(t, Options{SocketsPerQueue: n, Spread: true, SpreadChunk: chunk, Plaintext: true,
			ProtectedPrefixes: []netip.Prefix{prot4, prot6}, SteerFragments: true})
		fd := xskSocket(t)
		dealt := 0
		for i := range 300 {
			var frame []byte
			kind := rng.IntN(5)
			switch kind {
			case 0:
				frame = pkt{proto: protoESP, l4: esp(256+rng.Uint32N(1<<20), 8)}.bytes()
			case 1:
				frame = pkt{v6: true, proto: protoUDP, l4: udp(4500, esp(256+rng.Uint32N(1<<20), 8))}.bytes()
			case 2:
				frame = pkt{dst: protHost4, proto: protoTCP, l4: tcpSeg}.bytes()
			case 3:
				frame = pkt{frag4: 0x2000 | uint16(1+rng.IntN(100)), proto: protoESP, l4: esp(0x1234, 8)}.bytes()
			case 4:
				frame = pkt{proto: protoUDP, l4: udp(500, make([]byte, 28))}.bytes()
			}
			slot := rng.IntN(n)
			idx, err := p.SocketIndex(0, slot)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.RegisterSocket(idx, fd); err != nil {
				t.Fatal(err)
			}
			v, _ := run(t, p, frame)
			if err := p.UnregisterSocket(idx); err != nil {
				t.Fatal(err)
			}
			var want bool
			switch kind {
			case 3:
				want = slot == 0
			case 4:
				want = false
			default:
				want = (dealt/chunk)%n == slot
				dealt++
			}
			if (v == VerdictRedirect) != want {
				t.Fatalf("n %d chunk %d, packet %d (kind %d, %d dealt before), socket in slot %d: %v, want redirect %v",
					n, chunk, i, kind, dealt, slot, v, want)
			}
		}
	}
}
