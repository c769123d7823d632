package harness

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// fakeSystem is a trial function of a system that delivers everything
// up to capacity pps and loses the excess, with a generator that can
// offer at most genMax.
func fakeSystem(capacity, genMax float64, trials *int) func(float64) (Trial, error) {
	return func(rate float64) (Trial, error) {
		*trials++
		off := min(rate, genMax)
		sent := uint64(off) // one second
		del := sent
		if off > capacity {
			del = uint64(capacity)
		}
		return Trial{Target: rate, Offered: off, Sent: sent, Delivered: del}, nil
	}
}

// TestSearchRateConverges checks, over random capacities, that the
// search stays within its trial bound, that its bracket is monotone
// (each trial's rate lies inside the bracket the earlier trials left),
// that the rate it returns passed, and that it is within the tolerance
// of the true loss-free rate when the trial bound allows.
func TestSearchRateConverges(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		max := 1e5 + rng.Float64()*1e7
		capacity := rng.Float64() * 1.2 * max
		n := 0
		best, trials, err := SearchRate(max, Trial{}, 0, SearchTolerance, SearchMaxTrials, fakeSystem(capacity, max, &n))
		if err != nil {
			t.Fatal(err)
		}
		if n > SearchMaxTrials || len(trials) != n {
			t.Fatalf("%d trials run, %d reported, bound %d", n, len(trials), SearchMaxTrials)
		}
		checkBracket(t, max, trials)
		want := min(capacity, max)
		if best.Offered > want {
			t.Fatalf("capacity %v: NDR %v above it", capacity, best.Offered)
		}
		if best.Offered > 0 && best.Loss() != 0 {
			t.Fatalf("NDR trial lost %v", best.Loss())
		}
		// A trial at max and seven halvings leave a bracket of max/128:
		// the search is within that of the true rate (or within the
		// tolerance).
		if want-best.Offered > max/128+1 && want-best.Offered > SearchTolerance*want {
			t.Fatalf("capacity %v, max %v: NDR %v too low after %d trials", capacity, max, best.Offered, n)
		}
	}
}

// TestSearchRateAllLoss checks that a system that loses at every rate
// has NDR 0 (the zero Trial), not the lowest rate tried.
func TestSearchRateAllLoss(t *testing.T) {
	n := 0
	lossy := func(rate float64) (Trial, error) {
		n++
		return Trial{Target: rate, Offered: rate, Sent: uint64(rate) + 1, Delivered: uint64(rate) / 2}, nil
	}
	best, trials, err := SearchRate(1e6, Trial{}, 0, SearchTolerance, SearchMaxTrials, lossy)
	if err != nil {
		t.Fatal(err)
	}
	if best != (Trial{}) || best.Offered != 0 {
		t.Fatalf("NDR %+v, want zero", best)
	}
	if len(trials) != SearchMaxTrials || n != SearchMaxTrials {
		t.Fatalf("%d trials", len(trials))
	}
	// PDR with a lossy system at 0.5 %: also 0.
	if best, _, _ := SearchRate(1e6, Trial{}, PDRLoss, SearchTolerance, SearchMaxTrials, lossy); best.Offered != 0 {
		t.Fatalf("PDR %v, want 0", best.Offered)
	}
}

// TestSearchRateEdges: a system without loss stops after one trial at
// the maximum; PDR accepts loss up to PDRLoss and not above; the PDR
// search from a known NDR never returns less than it; errors stop the
// search; bad bounds are refused.
func TestSearchRateEdges(t *testing.T) {
	n := 0
	best, trials, err := SearchRate(1e6, Trial{}, 0, SearchTolerance, SearchMaxTrials, fakeSystem(2e6, 2e6, &n))
	if err != nil || len(trials) != 1 || best.Offered != 1e6 {
		t.Fatalf("lossless: %v trials, best %+v, %v", len(trials), best, err)
	}
	// Loses 0.4 % at every rate: NDR 0, PDR the maximum.
	leaky := func(rate float64) (Trial, error) {
		return Trial{Target: rate, Offered: rate, Sent: 100000, Delivered: 99600}, nil
	}
	if b, _, _ := SearchRate(1e6, Trial{}, 0, SearchTolerance, SearchMaxTrials, leaky); b.Offered != 0 {
		t.Fatalf("NDR %v with 0.4 %% loss", b.Offered)
	}
	if b, _, _ := SearchRate(1e6, Trial{}, PDRLoss, SearchTolerance, SearchMaxTrials, leaky); b.Offered != 1e6 {
		t.Fatalf("PDR %v with 0.4 %% loss", b.Offered)
	}
	// PDR from an NDR: never below the NDR's rate when trials pass.
	n = 0
	ndr, _, _ := SearchRate(1e6, Trial{}, 0, SearchTolerance, SearchMaxTrials, fakeSystem(3e5, 1e6, &n))
	pdr, _, _ := SearchRate(1e6, ndr, PDRLoss, SearchTolerance, SearchMaxTrials, fakeSystem(3e5, 1e6, &n))
	if pdr.Offered < ndr.Offered {
		t.Fatalf("PDR %v below NDR %v", pdr.Offered, ndr.Offered)
	}
	boom := errors.New("boom")
	if _, tr, err := SearchRate(1e6, Trial{}, 0, SearchTolerance, SearchMaxTrials, func(float64) (Trial, error) { return Trial{}, boom }); !errors.Is(err, boom) || len(tr) != 0 {
		t.Fatalf("error: %v, %d trials", err, len(tr))
	}
	if _, _, err := SearchRate(0, Trial{}, 0, SearchTolerance, SearchMaxTrials, leaky); !errors.Is(err, ErrSearchBounds) {
		t.Fatalf("max 0: %v", err)
	}
	if _, _, err := SearchRate(1, Trial{}, 0, SearchTolerance, 0, leaky); !errors.Is(err, ErrSearchBounds) {
		t.Fatalf("0 trials: %v", err)
	}
}

// checkBracket checks that each trial's rate lies inside the bracket
// the earlier trials left (counted at their achieved rates), and that
// the bracket is monotone.
func checkBracket(t *testing.T, max float64, trials []Trial) {
	t.Helper()
	lo, hi := 0.0, max
	for _, tr := range trials {
		if tr.Target < lo || tr.Target > hi {
			t.Fatalf("trial at %v outside the bracket [%v, %v]", tr.Target, lo, hi)
		}
		eff := min(tr.Target, tr.Offered)
		nlo, nhi := lo, hi
		if tr.Loss() == 0 {
			nlo = min(hi, maxf(lo, eff))
		} else {
			nhi = maxf(lo, min(hi, eff))
		}
		if nlo < lo || nhi > hi || nlo > nhi {
			t.Fatalf("bracket [%v, %v] → [%v, %v]", lo, hi, nlo, nhi)
		}
		lo, hi = nlo, nhi
	}
}

// TestSearchRateShortfall: a generator that sometimes achieves only a
// fraction of the rate asked for. The search stays in its bound and its
// bracket monotone, and the NDR it reports is an achieved rate that
// passed, never above the system's capacity.
func TestSearchRateShortfall(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 500 {
		max := 1e5 + rng.Float64()*1e7
		capacity := rng.Float64() * 1.2 * max
		n := 0
		sys := fakeSystem(capacity, max, &n)
		short := func(rate float64) (Trial, error) {
			if rng.IntN(3) == 0 {
				rate *= 0.2 + 0.8*rng.Float64() // the generator fell behind
			}
			tr, err := sys(rate)
			return tr, err
		}
		best, trials, err := SearchRate(max, Trial{}, 0, SearchTolerance, SearchMaxTrials, func(rate float64) (Trial, error) {
			tr, err := short(rate)
			tr.Target = rate
			return tr, err
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(trials) > SearchMaxTrials {
			t.Fatalf("%d trials", len(trials))
		}
		checkBracket(t, max, trials)
		if best.Offered > capacity || best.Loss() != 0 {
			t.Fatalf("capacity %v: NDR %+v", capacity, best)
		}
	}
}
