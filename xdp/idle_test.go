package xdp

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestSpinBudgetProperty drives spinBudget with random spins and sleeps
// and checks its invariant after every step: min <= cur <= max, and a
// budget without room to adapt (max <= minIdleSpins) never moves. A
// sleep shorter than a whole budget's spin doubles the budget (up to
// max), a longer one halves it (down to min).
func TestSpinBudgetProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, maxSpins := range []int{0, 1, minIdleSpins, minIdleSpins + 1, 64, 1000} {
		fixed := fixedSpinBudget(maxSpins)
		for range 100 {
			fixed.slept(r.IntN(100)+1, time.Duration(r.IntN(100_000)), time.Duration(r.IntN(10_000_000)))
			if fixed.cur != maxSpins {
				t.Fatalf("fixed budget of %d moved to %d", maxSpins, fixed.cur)
			}
		}
		b := newSpinBudget(maxSpins)
		if b.cur != maxSpins {
			t.Fatalf("max %d: starts at %d, want max", maxSpins, b.cur)
		}
		for i := range 10000 {
			before := b.cur
			rounds := r.IntN(2*maxSpins+2) + 1
			spun := time.Duration(r.IntN(100_000)) * time.Nanosecond
			slept := time.Duration(r.IntN(10_000_000)) * time.Nanosecond
			b.slept(rounds, spun, slept)
			if b.cur < b.min || b.cur > b.max || b.min != min(minIdleSpins, maxSpins) || b.max != maxSpins {
				t.Fatalf("max %d, step %d: budget %+v out of bounds", maxSpins, i, b)
			}
			if maxSpins <= minIdleSpins && b.cur != maxSpins {
				t.Fatalf("max %d: budget moved to %d", maxSpins, b.cur)
			}
			if maxSpins > minIdleSpins {
				full := spun / time.Duration(rounds) * time.Duration(maxSpins)
				want := max(before/2, b.min)
				if slept < full {
					want = min(max(before*2, b.min), b.max)
				}
				if b.cur != want {
					t.Fatalf("max %d, step %d: %d rounds in %v, slept %v: budget %d -> %d, want %d", maxSpins, i, rounds, spun, slept, before, b.cur, want)
				}
			}
		}
	}
}

// TestSpinBudgetBursts: long sleeps (bursty traffic: one TCP flow) take
// the budget down to minIdleSpins in a few sleeps; short ones (steady
// traffic) bring it back to the configured IdleSpins.
func TestSpinBudgetBursts(t *testing.T) {
	b := newSpinBudget(64)
	for range 5 {
		b.slept(64, 20*time.Microsecond, time.Millisecond) // 0.3 µs a poll; gaps of 1 ms
	}
	if b.cur != minIdleSpins {
		t.Fatalf("after long sleeps: budget %d, want %d", b.cur, minIdleSpins)
	}
	for range 5 {
		b.slept(b.cur, time.Duration(b.cur)*300*time.Nanosecond, 2*time.Microsecond)
	}
	if b.cur != 64 {
		t.Fatalf("after short sleeps: budget %d, want 64", b.cur)
	}
}
