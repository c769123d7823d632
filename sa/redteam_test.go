package sa

import (
	"math"
	"testing"
)

// TestRedTeamESNCounterWraps breaks the invariant of nextSeq ("Numbers
// are never reused"; RFC 4303 §3.3.3: the counter must not cycle): on
// an ESN SA without SeqLimit the unlimited path is seq.Add(1), so the
// call after the one that overflowed (and hard-expired the SA) returns
// 1 again. The processor checks sa.expired() before nextSeq, but not
// atomically with it: in Shared mode several workers that passed the
// check before the overflow each call nextSeq, and all but the first
// after the wrap get small numbers (1, 2, ...) that were already sent
// under the key (reachable with Config.InitialSeq near 2^64, e.g. from
// persisted state or a carried-over counter). nextSeqLimited does it
// right (it never moves the counter on overflow); nextSeq should too
// (CAS loop, or saturate instead of Add).
//
// Re-run against the current handout (reserveSeq, which replaced
// nextSeq and nextSeqLimited): near the end of the 64-bit space it takes
// the compare-and-swap path, which never moves the counter past 2^64-1.
// The test now drives reserveSeq, with runs of one packet and of many.
func TestRedTeamESNCounterWraps(t *testing.T) {
	oc, _ := pairCfg("aes128gcm16", 0x3a01, func(c *Config) { c.ESN, c.InitialSeq = true, math.MaxUint64-1 })
	s := mustSA(t, oc)
	// Three workers past the expired() check, one after another.
	got := []uint64{}
	for range 3 {
		if first, n, _ := s.reserveSeq(1, 0, nil); n > 0 {
			got = append(got, first)
		}
	}
	// Runs of 64 from just below the fast path's bound: every number
	// handed out is above the last one, none past 2^64-1.
	oc2, _ := pairCfg("aes128gcm16", 0x3a02, func(c *Config) { c.ESN, c.InitialSeq = true, math.MaxUint64-1<<32-10 })
	s2 := mustSA(t, oc2)
	last := s2.seq.Load()
	for range 3 {
		first, n, _ := s2.reserveSeq(maxRun, 0, nil)
		if n > 0 && first <= last {
			t.Fatalf("run starting at %d after %d: a number handed out twice", first, last)
		}
		if n > 0 {
			last = first + n - 1
		}
	}
	s2.seq.Store(math.MaxUint64 - 5)
	for range 3 {
		first, n, _ := s2.reserveSeq(maxRun, 0, nil)
		if n > 0 && (first <= last || first+n-1 < first) {
			t.Fatalf("run %d+%d after %d: the counter cycled", first, n, last)
		}
		if n > 0 {
			last = first + n - 1
		}
	}
	if last != math.MaxUint64 {
		t.Fatalf("last number %d, want 2^64-1", last)
	}
	for _, n := range got {
		if n != math.MaxUint64 {
			t.Fatalf("sequence numbers handed out %v: %d after the 64-bit counter overflowed (cycled)", got, n)
		}
	}
}
