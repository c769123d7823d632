package harness

import (
	"fmt"
	"slices"

	"github.com/espxdp/espxdp/sa"
)

// ModelCores are the core counts of the scaling projection.
var ModelCores = []int{1, 2, 4, 8, 16, 32}

// scenario identifies the cells of the shard matrix that differ only in
// their worker count.
type scenario struct {
	op, mode, dist, ingress string
	sas, size, window       int
}

func scenarioOf(r *Result) scenario {
	return scenario{op: r.Op, mode: r.Mode, dist: r.Dist, ingress: r.Ingress, sas: r.SAs, size: r.Size, window: r.Window}
}

// maxShare is the largest fraction of a scenario's packets that one of n
// workers processes: 1/n in Shared mode (any worker takes any packet)
// and in PerCPU mode (each tunnel's traffic spread evenly over its n
// SAs, one per worker); in Sharded mode the sum of the traffic weights of
// the SAs the busiest worker owns, owners computed by sa.Processor's
// hash for n workers, as the matrix assigns them.
func maxShare(s scenario, n int) (float64, error) {
	if s.mode != sa.Sharded.String() || n == 1 {
		return 1 / float64(n), nil
	}
	p, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sa.NewSAD(sa.SADOptions{}), Workers: n, Concurrency: sa.Sharded, QueueLen: 1})
	if err != nil {
		return 0, err
	}
	dist := s.dist
	if s.op == "encrypt" {
		dist = DistUniform
	}
	wt, err := flowWeights(dist, s.sas)
	if err != nil {
		return 0, err
	}
	load := make([]float64, n)
	for i, x := range wt {
		load[p.OwnerOf(shardSPI(i))] += x
	}
	return slices.Max(load), nil
}

// handoffFraction is the fraction of the busiest worker's packets that
// another worker handed to it: (n-1)/n when packets arrive on any worker
// (spray) and the SA has an owner (Sharded; PerCPU inbound), else 0.
func handoffFraction(s scenario, n int) float64 {
	if s.ingress != IngressSpray || s.mode == sa.Shared.String() || (s.mode == sa.PerCPU.String() && s.op == "encrypt") {
		return 0
	}
	return float64(n-1) / float64(n)
}

// ShardModel fits the scaling model to the KindShard results of rs, one
// KindShardModel result per scenario that has a 1-worker cell, with the
// projected Mpps at each of ModelCores.
//
// The model: with c the measured time per packet of one worker
// (1000/Mpps at 1 worker, ns), m(N) the busiest worker's share of the
// packets (maxShare) and f(N) the fraction of its packets that were
// handed to it by another worker (handoffFraction), a structural bound
//
//	B(N) = 1000 / (m(N) · (c + h·f(N)))   Mpps
//
// with h the cost of one hand-off (both sides, ns), divided by a
// Universal Scalability Law term for contention (σ) and coherency (κ):
//
//	X(N) = B(N) / (1 + σ(N−1) + κN(N−1)).
//
// Fitted per scenario on the measured worker counts N > 1 (least
// squares, parameters ≥ 0): h where f > 0 (σ = κ = 0), otherwise σ, and
// κ too when at least two worker counts > 1 were measured. In Shared
// mode B(N) = N/c, so σ is the serial fraction (Amdahl) and σ·c the
// serial time per packet (replay-window lock, cache lines of the SA's
// atomics moving between cores).
//
// The fit is done twice (see modelBases): on the measured Mpps, and,
// with metrics prefixed "cpu-", on N × Mpps per CPU-second.
func ShardModel(rs []Result) ([]Result, error) {
	groups := map[scenario][]*Result{}
	var order []scenario
	for i := range rs {
		r := &rs[i]
		if r.Kind != KindShard {
			continue
		}
		s := scenarioOf(r)
		if _, ok := groups[s]; !ok {
			order = append(order, s)
		}
		groups[s] = append(groups[s], r)
	}
	var out []Result
	for _, s := range order {
		res := Result{Suite: "shard", Kind: KindShardModel, Transform: "aes128gcm16", Op: s.op, Mode: s.mode, Dist: s.dist,
			Ingress: s.ingress, SAs: s.sas, Size: s.size, Window: s.window}
		shares := map[int]float64{}
		share := func(n int) (float64, error) {
			if v, ok := shares[n]; ok {
				return v, nil
			}
			v, err := maxShare(s, n)
			shares[n] = v
			return v, err
		}
		fitted := false
		for _, basis := range modelBases {
			ok, err := fitScenario(&res, s, groups[s], basis.prefix, basis.value, share)
			if err != nil {
				return nil, err
			}
			fitted = fitted || ok
		}
		if !fitted {
			continue
		}
		for _, n := range ModelCores {
			m, err := share(n)
			if err != nil {
				return nil, err
			}
			res.add(fmt.Sprintf("max-share%%-%d", n), 100*m, UnitPercent)
		}
		out = append(out, res)
	}
	return out, nil
}

// modelBases are the two throughputs the model is fitted to: the
// measured Mpps (wall clock), and N × Mpps per CPU-second of the
// workers, what N workers would do if each had a core of its own and
// used it as measured (metrics prefixed "cpu-"). On a machine whose CPUs
// are shared with other load, the second shows the scaling of the code;
// it does not count time a worker sleeps blocked on a lock, only spinning.
var modelBases = []struct {
	prefix string
	value  func(r *Result) (float64, bool)
}{
	{"", func(r *Result) (float64, bool) { return r.Get("Mpps") }},
	{"cpu-", func(r *Result) (float64, bool) {
		v, ok := r.Get("Mpps/cpu")
		return v * float64(r.Workers), ok
	}},
}

// fitScenario fits the model to the cells of one scenario, throughput
// given by value, and adds the parameters and projections to res with
// prefix; false if there is no 1-worker cell with that value.
func fitScenario(res *Result, s scenario, cells []*Result, prefix string, value func(*Result) (float64, bool), share func(int) (float64, error)) (bool, error) {
	var x1 float64
	type pt struct{ n, x float64 }
	var pts []pt
	for _, r := range cells {
		x, ok := value(r)
		if !ok || x <= 0 {
			continue
		}
		if r.Workers == 1 {
			x1 = x
		} else {
			pts = append(pts, pt{float64(r.Workers), x})
		}
	}
	if x1 == 0 {
		return false, nil
	}
	c := 1000 / x1
	// h from the hand-off cells.
	var h, sfh, sff float64
	for _, p := range pts {
		f := handoffFraction(s, int(p.n))
		if f == 0 {
			continue
		}
		m, err := share(int(p.n))
		if err != nil {
			return false, err
		}
		t := 1000 / (p.x * m) // ns per packet at the busiest worker
		sfh += f * (t - c)
		sff += f * f
	}
	if sff > 0 {
		h = max(0, sfh/sff)
	}
	// σ, κ from what B(N) does not explain, when h was not fitted.
	var sigma, kappa float64
	if sff == 0 && len(pts) > 0 {
		var saa, sab, sbb, say, sby float64
		for _, p := range pts {
			m, err := share(int(p.n))
			if err != nil {
				return false, err
			}
			b := 1000 / (m * c)
			y := b/p.x - 1
			a1, b1 := p.n-1, p.n*(p.n-1)
			saa += a1 * a1
			sab += a1 * b1
			sbb += b1 * b1
			say += a1 * y
			sby += b1 * y
		}
		if len(pts) >= 2 {
			if det := saa*sbb - sab*sab; det != 0 {
				sigma = (say*sbb - sby*sab) / det
				kappa = (saa*sby - sab*say) / det
			}
		}
		if len(pts) < 2 || kappa < 0 || sigma < 0 {
			switch {
			case len(pts) >= 2 && sigma < 0 && kappa >= 0:
				sigma, kappa = 0, max(0, sby/sbb)
			default:
				sigma, kappa = max(0, say/saa), 0
			}
		}
	}
	res.add(prefix+"c-ns", c, UnitNs)
	res.add(prefix+"handoff-ns", h, UnitNs)
	res.add(prefix+"sigma", sigma, UnitRatio)
	res.add(prefix+"kappa", kappa, UnitRatio)
	if s.mode == sa.Shared.String() {
		res.add(prefix+"serial-ns", sigma*c, UnitNs)
	}
	res.add(prefix+"fit-points", float64(len(pts)), "points")
	for _, n := range ModelCores {
		m, err := share(n)
		if err != nil {
			return false, err
		}
		nf := float64(n)
		b := 1000 / (m * (c + h*handoffFraction(s, n)))
		x := b / (1 + sigma*(nf-1) + kappa*nf*(nf-1))
		res.add(fmt.Sprintf("%sproj-Mpps-%d", prefix, n), x, UnitMpps)
	}
	return true, nil
}
