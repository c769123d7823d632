package xdp

import "time"

// minIdleSpins is the fewest empty polls an engine worker makes before
// it sleeps once its spin budget has shrunk (see spinBudget).
const minIdleSpins = 4

// spinBudget is how many empty polls an engine worker makes before it
// sleeps in poll(2): between minIdleSpins and EngineConfig.IdleSpins,
// adapted after each sleep, like the spin of an adaptive mutex.
// Spinning pays when packets come back sooner than a sleep and a
// wake-up cost; it is pure waste when they come in bursts with long
// gaps (one TCP flow through a gateway: a GSO super-packet's segments,
// then nothing for a millisecond), where each gap used to cost the full
// 64 empty polls (~20 µs of CPU).
//
// Invariant: min <= cur <= max at all times (cur == max when max <=
// min: no adaptation, as in fixedSpinBudget).
type spinBudget struct {
	min, max, cur int
}

// newSpinBudget returns a budget of at most max empty polls (the
// worker's IdleSpins, not negative).
func newSpinBudget(max int) spinBudget {
	return spinBudget{min: min(minIdleSpins, max), max: max, cur: max}
}

// fixedSpinBudget returns a budget that stays at n empty polls.
func fixedSpinBudget(n int) spinBudget { return spinBudget{min: n, max: n, cur: n} }

// slept adapts the budget after a sleep: the worker spun rounds empty
// polls in spun, then slept for slept. If the sleep ended sooner than a
// spin of the whole budget (max rounds at the rate just measured) would
// have, spinning longer would have saved the sleep: the budget doubles.
// Otherwise the spin was wasted: it halves.
func (b *spinBudget) slept(rounds int, spun, slept time.Duration) {
	if b.max <= b.min || rounds <= 0 {
		return
	}
	full := spun / time.Duration(rounds) * time.Duration(b.max)
	if slept < full {
		b.cur = min(max(b.cur*2, b.min), b.max)
	} else {
		b.cur = max(b.cur/2, b.min)
	}
}
