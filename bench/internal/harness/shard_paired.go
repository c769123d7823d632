package harness

import (
	"time"

	"github.com/espxdp/espxdp/sa"
)

// KindShardPaired is a per-CPU efficiency measured by alternating a
// scenario's 1-worker and n-worker cells (ShardPaired).
const KindShardPaired = "shard-paired"

// ShardPairs is how many n-worker cells ShardPaired measures per
// scenario (with one more 1-worker cell around them).
const ShardPairs = 15

// PairedSpecs are the one-SA scenarios whose efficiency ShardPaired
// measures at workers workers (issue #14's cells and the PerCPU
// reference, in which nothing is shared), for the inner packet size.
func PairedSpecs(workers, size int) []ShardSpec {
	mk := func(m sa.Concurrency, dir sa.Direction, in string) ShardSpec {
		return ShardSpec{Mode: m, Dir: dir, Workers: workers, SAs: 1, Dist: DistUniform, Ingress: in, Size: size}
	}
	return []ShardSpec{
		mk(sa.Shared, sa.Out, IngressSpray),
		mk(sa.Shared, sa.In, IngressSpray),
		mk(sa.PerCPU, sa.Out, IngressSpray),
		mk(sa.PerCPU, sa.In, IngressSteer),
		mk(sa.Ordered, sa.Out, IngressSpray),
		mk(sa.Ordered, sa.In, IngressSpray),
		mk(sa.Ordered, sa.In, IngressSteer),
	}
}

// ShardPaired measures spec (spec.Workers > 1) and the same scenario at
// one worker in alternation, 1, n, 1, n, ..., 1 (pairs n-worker cells),
// each for budget, and divides each n-worker cell's packets per
// CPU-second by the mean of the 1-worker cells just before and after
// it. The matrix's efficiency compares cells measured minutes apart, and
// this VM drifts between a fast and a slow speed on that scale (the same
// 1-worker cell measured 1.7 and 2.6 Mpps in one run); cells seconds
// apart see the same speed, so the median of these ratios is the figure
// the drift cannot bias. The result also carries the speed-up the same
// way, and the n-worker cells' replay drops (summed) and reordered
// share (the largest).
func ShardPaired(spec ShardSpec, pairs int, budget time.Duration, seed uint64) (Result, error) {
	one := spec
	one.Workers = 1
	r1, rn := &ShardRunner{Seed: seed}, &ShardRunner{Seed: seed}
	defer r1.Close()
	defer rn.Close()
	res := Result{Suite: "shard", Kind: KindShardPaired, Transform: "aes128gcm16", Op: spec.op(), Size: spec.Size, SAs: spec.SAs,
		Workers: spec.Workers, Mode: spec.Mode.String(), Dist: spec.Dist, Ingress: spec.Ingress}
	base := func() (cpu, mpps float64, err error) {
		r, err := r1.Run(one, budget)
		if err != nil {
			return 0, 0, err
		}
		cpu, _ = r.Get("Mpps/cpu")
		mpps, _ = r.Get("Mpps")
		return cpu, mpps, nil
	}
	c0, m0, err := base()
	if err != nil {
		return res, err
	}
	var effs, ups []float64
	var replay, reord float64
	for range pairs {
		r, err := rn.Run(spec, budget)
		if err != nil {
			return res, err
		}
		c1, m1, err := base()
		if err != nil {
			return res, err
		}
		cn, _ := r.Get("Mpps/cpu")
		mn, _ := r.Get("Mpps")
		if c0+c1 > 0 && m0+m1 > 0 {
			effs = append(effs, cn/((c0+c1)/2))
			ups = append(ups, mn/((m0+m1)/2))
		}
		d, _ := r.Get("drop-replay")
		replay += d
		o, _ := r.Get("reordered%")
		reord = max(reord, o)
		c0, m0 = c1, m1
	}
	if len(effs) > 0 {
		res.addSpread("paired-eff", effs, "x")
		res.add("paired-speedup", median(ups), "x")
	}
	res.add("pairs", float64(len(effs)), "pairs")
	res.add("drop-replay", replay, UnitPackets)
	res.add("reordered%", reord, UnitPercent)
	return res, nil
}
