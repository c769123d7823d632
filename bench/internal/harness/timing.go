package harness

import (
	"runtime"
	"slices"
	"time"
)

// clockCost is the median cost of time.Since(time.Now()) in ns; it is
// subtracted from every timed window.
func clockCost() float64 {
	v := make([]float64, 1001)
	for i := range v {
		t0 := time.Now()
		v[i] = float64(time.Since(t0).Nanoseconds())
	}
	return median(v)
}

// median returns the median of v (which it sorts); 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	m := len(v) / 2
	if len(v)%2 == 0 {
		return (v[m-1] + v[m]) / 2
	}
	return v[m]
}

// pair is the outcome of an interleaved measurement of two sides A and B.
type pair struct {
	aNs, bNs float64 // median ns per packet of each side
	ratio    float64 // median over window pairs of bNs/aNs
	delta    float64 // median over window pairs of aNs-bNs
	packets  int     // packets per side
}

// interleave runs a and b (each timing w packets and returning the
// elapsed time) in alternating windows of w packets until budget is
// spent (at least minPairs pairs), alternating which side goes first,
// and returns per-packet medians. Medians over windows of a few
// microseconds mostly see uninterrupted runs even on a shared machine,
// and both sides see the same frequency, cache state and load.
func interleave(w int, budget time.Duration, a, b func(w int) time.Duration) pair {
	const minPairs = 16
	clock := clockCost()
	var ra, rb, ratio, delta []float64
	start := time.Now()
	for k := 0; k < minPairs || time.Since(start) < budget; k++ {
		var ta, tb time.Duration
		if k%2 == 0 {
			ta, tb = a(w), b(w)
		} else {
			tb, ta = b(w), a(w)
		}
		x := max(float64(ta.Nanoseconds())-clock, 0) / float64(w)
		y := max(float64(tb.Nanoseconds())-clock, 0) / float64(w)
		ra, rb = append(ra, x), append(rb, y)
		if x > 0 {
			ratio = append(ratio, y/x)
		}
		delta = append(delta, x-y)
	}
	return pair{aNs: median(ra), bNs: median(rb), ratio: median(ratio), delta: median(delta), packets: len(ra) * w}
}

// allocsPer runs f n times and returns the heap allocations per call:
// the least of three rounds, with GOMAXPROCS at 1 as in
// testing.AllocsPerRun, so that an allocation of the runtime's own
// background work during a slow round is not charged to f.
func allocsPer(n int, f func()) float64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f() // warm up: first-use allocations are not per packet
	best := -1.0
	for range 3 {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		for range n {
			f()
		}
		runtime.ReadMemStats(&m1)
		if v := float64(m1.Mallocs-m0.Mallocs) / float64(n); best < 0 || v < best {
			best = v
		}
	}
	return best
}
