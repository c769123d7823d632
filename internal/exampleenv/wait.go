package exampleenv

import (
	"context"
	"time"
)

// WaitUntil polls cond every 20 ms until it holds, ctx ends or d has
// passed, and reports whether it held.
func WaitUntil(ctx context.Context, d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
	}
}

// WaitStable waits until snap returns the same value n times in a row,
// interval apart (at least once), at most d and while ctx lasts, and
// reports whether it did: the examples read their counters once the
// traffic has gone quiet.
func WaitStable[T comparable](ctx context.Context, d, interval time.Duration, n int, snap func() T) bool {
	last, same := snap(), 0
	for deadline := time.Now().Add(d); time.Now().Before(deadline) && ctx.Err() == nil; {
		time.Sleep(interval)
		cur := snap()
		if cur != last {
			same, last = 0, cur
			continue
		}
		if same++; same >= max(n, 1) {
			return true
		}
	}
	return false
}
