package inet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
)

// rawIPv4 is an IPv4 packet of n bytes (20-byte header, no DF) whose data
// counts up.
func rawIPv4(n int, id uint16, flagsOff uint16) []byte {
	p := make([]byte, n)
	p[0], p[8], p[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(p[2:], uint16(n))
	binary.BigEndian.PutUint16(p[4:], id)
	binary.BigEndian.PutUint16(p[6:], flagsOff)
	copy(p[12:], []byte{10, 1, 0, 2, 10, 2, 0, 2})
	binary.BigEndian.PutUint16(p[10:], Checksum(p[:20]))
	for i := 20; i < n; i++ {
		p[i] = byte(i * 13)
	}
	return p
}

// TestFragment4Property fragments random packets at random MTUs.
// Invariants: every fragment fits the MTU, has a valid header checksum,
// the original's ID, addresses and TTL, an offset that is a multiple of
// 8 bytes, MF on all but the last (which keeps the original's), and the
// fragments' data put back at their offsets is the original's data,
// with no gaps or overlaps.
func TestFragment4Property(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for iter := range 2000 {
		n := 21 + rng.IntN(9000)
		mtu := 28 + rng.IntN(2000)
		// Sometimes the packet is itself a first or middle fragment.
		var fo uint16
		if rng.IntN(4) == 0 {
			fo = 0x2000 | uint16(rng.IntN(100))
		}
		pkt := rawIPv4(n, uint16(iter), fo)
		orig := append([]byte(nil), pkt...)
		count, step, err := Fragments4(pkt, mtu)
		if n <= mtu {
			if !errors.Is(err, ErrFragMTU) {
				t.Fatalf("n %d mtu %d: %v, want ErrFragMTU", n, mtu, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("n %d mtu %d: %v", n, mtu, err)
		}
		data := make([]byte, n-20)
		covered := make([]bool, n-20)
		frags := make([][]byte, count)
		for i := count - 1; i >= 0; i-- { // fragment 0 last, in place
			dst := make([]byte, 20+step)
			if i == 0 {
				dst = pkt
			}
			frags[i] = dst[:WriteFragment4(dst, pkt, i, step)]
		}
		for i, f := range frags {
			if len(f) > mtu || Checksum(f[:20]) != 0 || binary.BigEndian.Uint16(f[2:]) != uint16(len(f)) {
				t.Fatalf("fragment %d of %d: %d bytes for MTU %d, checksum %#x", i, count, len(f), mtu, Checksum(f[:20]))
			}
			if !bytes.Equal(f[4:6], orig[4:6]) || !bytes.Equal(f[8:10], orig[8:10]) || !bytes.Equal(f[12:20], orig[12:20]) {
				t.Fatalf("fragment %d: header %x, original %x", i, f[:20], orig[:20])
			}
			ffo := binary.BigEndian.Uint16(f[6:])
			mf := ffo&0x2000 != 0
			if want := i < count-1 || fo&0x2000 != 0; mf != want {
				t.Fatalf("fragment %d of %d: MF %v", i, count, mf)
			}
			off := int(ffo&0x1fff-fo&0x1fff) * 8
			if i < count-1 && (len(f)-20)%8 != 0 {
				t.Fatalf("fragment %d: %d data bytes, not a multiple of 8", i, len(f)-20)
			}
			for j := range len(f) - 20 {
				if covered[off+j] {
					t.Fatalf("fragment %d overlaps at %d", i, off+j)
				}
				covered[off+j] = true
				data[off+j] = f[20+j]
			}
		}
		for j, c := range covered {
			if !c {
				t.Fatalf("byte %d of the data is in no fragment", j)
			}
		}
		if !bytes.Equal(data, orig[20:]) {
			t.Fatalf("reassembled data differs")
		}
	}
}

func TestFragments4Refuses(t *testing.T) {
	df := rawIPv4(1500, 1, 0x4000)
	if _, _, err := Fragments4(df, 1400); !errors.Is(err, ErrFragDF) {
		t.Errorf("DF: %v", err)
	}
	opt := rawIPv4(1500, 1, 0)
	opt[0] = 0x46
	if _, _, err := Fragments4(opt, 1400); !errors.Is(err, ErrFragOptions) {
		t.Errorf("options: %v", err)
	}
	if _, _, err := Fragments4(rawIPv4(1500, 1, 0), 27); !errors.Is(err, ErrFragMTU) {
		t.Errorf("MTU 27: %v", err)
	}
	if _, _, err := Fragments4(make([]byte, 40), 20); !errors.Is(err, ErrMalformed) {
		t.Errorf("garbage: %v", err)
	}
}

func TestFragment4Alloc(t *testing.T) {
	p := rawIPv4(3000, 1, 0)
	dst := make([]byte, 1500)
	if n := testing.AllocsPerRun(100, func() {
		c, s, _ := Fragments4(p, 1400)
		for i := c - 1; i >= 1; i-- {
			WriteFragment4(dst, p, i, s)
		}
	}); n != 0 {
		t.Errorf("allocates %v", n)
	}
}

func FuzzFragments4(f *testing.F) {
	f.Add(rawIPv4(1500, 1, 0), uint16(576))
	f.Add(rawIPv4(100, 1, 0x2003), uint16(60))
	f.Fuzz(func(t *testing.T, pkt []byte, mtu uint16) {
		count, step, err := Fragments4(pkt, int(mtu))
		if err != nil {
			return
		}
		if count < 2 || step < 8 || step%8 != 0 || count > len(pkt) {
			t.Fatalf("count %d step %d for %d bytes at MTU %d", count, step, len(pkt), mtu)
		}
		dst := make([]byte, 20+step)
		for i := count - 1; i >= 1; i-- {
			if n := WriteFragment4(dst, pkt, i, step); n > int(mtu) || n < 21 {
				t.Fatalf("fragment %d: %d bytes at MTU %d", i, n, mtu)
			}
		}
	})
}
