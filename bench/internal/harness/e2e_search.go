package harness

import (
	"errors"
	"time"
)

// The loss-free rate search of the e2e suite (RFC 2544 §26.1 style):
// NDR is the highest offered rate with no loss, PDR the highest with at
// most PDRLoss lost.
const (
	// PDRLoss is the loss fraction a PDR trial may have (0.5 %).
	PDRLoss = 0.005
	// SearchMaxTrials bounds the trials of one search.
	SearchMaxTrials = 8
	// SearchTolerance ends a search once the bracket is within this
	// fraction of its upper end.
	SearchTolerance = 0.02
	// DefaultE2ETrial is the length of one search trial when
	// Config.E2ETrialNs is 0 and the run is not quick.
	DefaultE2ETrial = time.Second
	// QuickE2ETrial is that length in a quick run.
	QuickE2ETrial = 20 * time.Millisecond
)

// ErrSearchBounds is returned by SearchRate for a non-positive maximum
// rate or trial bound.
var ErrSearchBounds = errors.New("harness: rate search: maximum rate and trial bound must be positive")

// Trial is one fixed-rate trial of a rate search: the rate asked for,
// the rate the generator achieved (measured: packets put on its TX
// rings over the time it sent), and the packets sent and delivered.
type Trial struct {
	Target    float64 // packets per second asked for
	Offered   float64 // packets per second achieved
	Sent      uint64
	Delivered uint64
}

// Loss is the fraction of the sent packets that were not delivered (0
// when nothing was sent; a sink that counted more than was sent is
// loss 0).
func (t Trial) Loss() float64 {
	if t.Sent == 0 || t.Delivered >= t.Sent {
		return 0
	}
	return float64(t.Sent-t.Delivered) / float64(t.Sent)
}

// passes reports whether t sent something and lost at most limit.
func (t Trial) passes(limit float64) bool { return t.Sent > 0 && t.Loss() <= limit }

// SearchRate is a bounded binary search for the highest rate in
// (0, max] whose trial loses at most limit (0: NDR; PDRLoss: PDR).
// known is a trial known to pass (the zero Trial if none; the PDR
// search starts from the NDR's): the bracket starts at its achieved
// rate and it is the result if no trial passes. The first trial is at
// max. Each step halves the bracket [lo, hi]: a passing trial raises
// lo, a failing one lowers hi, so lo only grows and hi only shrinks
// (the bracket is monotone). A trial whose generator fell short of the
// rate asked for counts at the rate it achieved. It stops
// after maxTrials trials or once hi − lo ≤ tol·hi.
//
// It returns the passing trial with the highest achieved rate (the zero
// Trial when no trial passed: a system that loses at every rate has
// NDR 0, not the lowest rate tried) and every trial run, in order.
func SearchRate(max float64, known Trial, limit, tol float64, maxTrials int, trial func(rate float64) (Trial, error)) (best Trial, trials []Trial, err error) {
	if max <= 0 || maxTrials <= 0 {
		return Trial{}, nil, ErrSearchBounds
	}
	lo := 0.0
	if known.passes(limit) {
		best = known
		lo = min(max, known.Target, known.Offered) // the bracket [lo, hi] starts inside [0, max]
	}
	hi := max
	rate := max
	for len(trials) < maxTrials {
		t, err := trial(rate)
		if err != nil {
			return best, trials, err
		}
		trials = append(trials, t)
		// The rate the trial proves something about: the one the
		// generator achieved when it fell short of the target (a pass
		// proves only that rate; a loss happened at it).
		eff := rate
		if t.Offered > 0 && t.Offered < rate {
			eff = t.Offered
		}
		// Invariant: lo only grows, hi only shrinks, lo ≤ hi.
		if t.passes(limit) {
			if t.Offered > best.Offered {
				best = t
			}
			lo = min(hi, maxf(lo, eff))
		} else {
			hi = maxf(lo, min(hi, eff))
		}
		if hi-lo <= tol*hi {
			break // also when the top of the bracket passed
		}
		rate = lo + (hi-lo)/2
	}
	return best, trials, nil
}

func maxf(a, b float64) float64 {
	if a > b {
		return a
	}
	return b
}

// e2eTrial is the length of one search trial of cfg.
func (cfg *Config) e2eTrial() time.Duration {
	switch {
	case cfg.E2ETrialNs > 0:
		return time.Duration(cfg.E2ETrialNs)
	case cfg.Quick:
		return QuickE2ETrial
	}
	return DefaultE2ETrial
}
