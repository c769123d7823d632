package harness

import (
	"slices"
	"time"
)

// LatencyLoad is the fraction of the NDR at which the e2e suite
// measures latency (e2e_latency_linux.go).
const LatencyLoad = 0.9

// Percentiles returns the p50, p99 and maximum of samples (nearest
// rank: the smallest sample with at least that fraction at or below it),
// sorting samples in place; all zero for no samples.
func Percentiles(samples []time.Duration) (p50, p99, maxv time.Duration) {
	if len(samples) == 0 {
		return 0, 0, 0
	}
	slices.Sort(samples)
	rank := func(q float64) time.Duration {
		i := int(q*float64(len(samples))+0.999999999) - 1
		return samples[min(max(i, 0), len(samples)-1)]
	}
	return rank(0.50), rank(0.99), samples[len(samples)-1]
}
