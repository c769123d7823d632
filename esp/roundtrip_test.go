package esp

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"

	"github.com/espxdp/espxdp/internal/race"
)

// testCipher builds a Cipher with random keys for the named transform.
func testCipher(tb testing.TB, name string, esn bool) *Cipher {
	tb.Helper()
	t := MustParseTransform(name)
	key := make([]byte, t.KeyLen())
	auth := make([]byte, t.AuthKeyLen())
	rand.Read(key)
	rand.Read(auth)
	c, err := New(Config{Transform: t, Key: key, AuthKey: auth, ESN: esn})
	if err != nil {
		tb.Fatalf("New(%s): %v", name, err)
	}
	return c
}

func TestRoundTripAllTransforms(t *testing.T) {
	s := NewScratch()
	for _, name := range TransformNames() {
		for _, esn := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/esn=%v", name, esn), func(t *testing.T) {
				c := testCipher(t, name, esn)
				for _, n := range []int{0, 1, 2, 3, 15, 16, 17, 64, 1420, 9000} {
					plain := make([]byte, n)
					rand.Read(plain)
					buf := make([]byte, MaxHeadroom+n+MaxTailroom)
					copy(buf[MaxHeadroom:], plain)
					seq := uint64(0x1_0000_0005)
					if !esn {
						seq &= 0xffffffff
					}
					pkt, err := c.Seal(s, buf, MaxHeadroom, n, 0x1234, seq, 4)
					if err != nil {
						t.Fatalf("n=%d Seal: %v", n, err)
					}
					if want := n + c.Overhead(n); len(pkt) != want {
						t.Fatalf("n=%d len=%d want Overhead-derived %d", n, len(pkt), want)
					}
					if (len(pkt)-c.HeaderLen()-c.t.icv)%c.align() != 0 {
						t.Fatalf("n=%d: encrypted part not aligned", n)
					}
					if c.t.Encrypts() && n >= 16 && bytes.Contains(pkt, plain) {
						t.Fatalf("n=%d: plaintext visible in packet", n)
					}
					spi, sq, err := ParseHeader(pkt)
					if err != nil || spi != 0x1234 || sq != uint32(seq) {
						t.Fatalf("header %x %x %v", spi, sq, err)
					}
					wire := append([]byte(nil), pkt...)
					got, nh, err := c.Open(s, pkt, seq)
					if err != nil || nh != 4 || !bytes.Equal(got, plain) {
						t.Fatalf("n=%d Open: nh=%d err=%v equal=%v", n, nh, err, bytes.Equal(got, plain))
					}
					// Every single-bit flip anywhere must fail authentication
					// (or, for header bits, at least not yield the plaintext).
					for _, pos := range []int{0, 4, 8, len(wire) / 2, len(wire) - 1} {
						bad := append([]byte(nil), wire...)
						bad[pos] ^= 0x01
						if _, _, err := c.Open(s, bad, seq); !errors.Is(err, ErrAuth) {
							t.Fatalf("n=%d flip at %d: err=%v, want ErrAuth", n, pos, err)
						}
					}
					if esn {
						if _, _, err := c.Open(s, append([]byte(nil), wire...), seq+1<<32); !errors.Is(err, ErrAuth) {
							t.Fatalf("wrong ESN high bits accepted: %v", err)
						}
					}
				}
			})
		}
	}
}

func TestSealZeroAllocs(t *testing.T) {
	if race.Enabled || testing.CoverMode() != "" {
		t.Skip("allocation counts are not meaningful under -race or -cover; .ci/run checks them without")
	}
	s := NewScratch()
	for _, name := range TransformNames() {
		for _, esn := range []bool{false, true} {
			c := testCipher(t, name, esn)
			buf := make([]byte, MaxHeadroom+1420+MaxTailroom)
			wire := make([]byte, len(buf))
			seq := uint64(1)
			// Warm the scratch (hash states, growable buffer) first.
			pkt, _ := c.Seal(s, buf, MaxHeadroom, 1420, 1, seq, 4)
			n := copy(wire, pkt)
			c.Open(s, wire[:n], seq)
			allocs := testing.AllocsPerRun(100, func() {
				seq++
				pkt, err := c.Seal(s, buf, MaxHeadroom, 1420, 1, seq, 4)
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := c.Open(s, pkt, seq); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("%s esn=%v: %.1f allocs per Seal+Open, want 0", name, esn, allocs)
			}
		}
	}
}
