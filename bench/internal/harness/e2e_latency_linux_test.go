//go:build linux

package harness

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// TestPercentiles: nearest-rank p50 and p99 are samples, ordered
// p50 ≤ p99 ≤ max, with at least half (99 %) of the samples at or below
// them and fewer than half (99 %) strictly below; checked over random
// sample sets, and on a known one.
func TestPercentiles(t *testing.T) {
	if a, b, c := Percentiles(nil); a != 0 || b != 0 || c != 0 {
		t.Errorf("no samples: %v %v %v", a, b, c)
	}
	known := []time.Duration{5, 1, 4, 2, 3}
	if p50, p99, mx := Percentiles(known); p50 != 3 || p99 != 5 || mx != 5 {
		t.Errorf("1..5: p50 %v p99 %v max %v", p50, p99, mx)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		n := 1 + rng.IntN(500)
		s := make([]time.Duration, n)
		for i := range s {
			s[i] = time.Duration(rng.IntN(1000))
		}
		ref := slices.Clone(s)
		p50, p99, mx := Percentiles(s)
		for _, c := range []struct {
			q float64
			v time.Duration
		}{{0.5, p50}, {0.99, p99}} {
			atOrBelow, below := 0, 0
			for _, x := range ref {
				if x <= c.v {
					atOrBelow++
				}
				if x < c.v {
					below++
				}
			}
			if !slices.Contains(ref, c.v) || float64(atOrBelow) < c.q*float64(n) || float64(below) >= c.q*float64(n) {
				t.Fatalf("n %d: q %v = %v: %d at or below, %d below", n, c.q, c.v, atOrBelow, below)
			}
		}
		if p50 > p99 || p99 > mx || mx != slices.Max(ref) {
			t.Fatalf("n %d: p50 %v p99 %v max %v (true max %v)", n, p50, p99, mx, slices.Max(ref))
		}
	}
}

// TestStamp: a stamp written into an inner IPv4/UDP packet reads back;
// packets without the magic, too short, not UDP or not IPv4 carry none.
func TestStamp(t *testing.T) {
	src, dst := netip.MustParseAddr("10.7.0.1"), netip.MustParseAddr("10.8.0.1")
	p := ipv4UDP(src, dst, 5000, latPort, 64)
	if _, ok := readStamp(p); ok {
		t.Error("an unstamped packet has a stamp")
	}
	putStamp(p[latPayloadOff:], 123456789)
	if ts, ok := readStamp(p); !ok || ts != 123456789 {
		t.Errorf("stamp read back as %d, %v", ts, ok)
	}
	for name, bad := range map[string][]byte{
		"short":    p[:latPayloadOff+latStampLen-1],
		"not UDP":  func() []byte { q := slices.Clone(p); q[9] = 6; return q }(),
		"not IPv4": func() []byte { q := slices.Clone(p); q[0] = 0x65; return q }(),
		"empty":    nil,
	} {
		if _, ok := readStamp(bad); ok {
			t.Errorf("%s: has a stamp", name)
		}
	}
	if a, b := monoNow(), monoNow(); b < a || a <= 0 {
		t.Errorf("CLOCK_MONOTONIC went from %d to %d", a, b)
	}
}
