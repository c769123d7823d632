package harness

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/sa"
)

// TestShardMatrix runs a tiny matrix (rounds of 64 packets per worker, a
// few ms per cell) and checks every cell's bookkeeping.
func TestShardMatrix(t *testing.T) {
	opts := ShardOptions{Workers: []int{1, 2}, SAs: []int{1, 16}, Sizes: []int{200},
		Dists: []string{DistUniform, DistElephant, DistZipf}, OutSAs: []int{1}}
	specs := ShardSpecs(opts)
	// Per mode and worker count, inbound: 1 SA (uniform only) + 16 SAs ×
	// 3 distributions, × 2 ingresses except Shared; outbound: 1.
	if want := 2 * ((1 + 3) + 3*(1+3)*2 + 4); len(specs) != want {
		t.Fatalf("%d cells, want %d", len(specs), want)
	}
	sr := &ShardRunner{Seed: 1, RoundLen: 64}
	defer sr.Close()
	var rs []Result
	for _, spec := range specs {
		r, err := sr.Run(spec, 2*time.Millisecond)
		if err != nil {
			t.Fatalf("%s: %v", spec.Label(), err)
		}
		rs = append(rs, r)
	}
	for i, spec := range specs {
		r := rs[i]
		name := spec.Label()
		if r.Kind != KindShard || r.Mode != spec.Mode.String() || r.Workers != spec.Workers || r.SAs != spec.SAs ||
			r.Dist != spec.Dist || r.Ingress != spec.Ingress || r.Size != spec.Size || r.Op != spec.op() {
			t.Errorf("%s: result describes another cell: %+v", name, r)
		}
		for _, m := range []string{"Mpps", "Gbps", "ns/pkt", "packets"} {
			if v, ok := r.Get(m); !ok || !(v > 0) {
				t.Errorf("%s: %s = %v (%v)", name, m, v, ok)
			}
		}
		if runtime.GOOS == "linux" {
			if v, ok := r.Get("Mpps/cpu"); !ok || !(v > 0) {
				t.Errorf("%s: Mpps/cpu = %v (%v)", name, v, ok)
			}
			if v, ok := r.Get("cpu-busy%"); !ok || !(v > 0) || v > 150 { // tiny rounds: clock reads are a visible part
				t.Errorf("%s: cpu-busy%% = %v (%v)", name, v, ok)
			}
		}
		ho, ok := r.Get("handed-off%")
		if !ok {
			t.Errorf("%s: no handed-off%%", name)
		}
		// Drops: only DropReplay, and only where packets of one SA
		// are reordered (several workers, and in Sharded/PerCPU mode
		// only when handed off).
		reorders := spec.Workers > 1 && (spec.Mode == sa.Shared || (spec.Ingress == IngressSpray && spec.Dir == sa.In))
		// Egress order: a worker's output leaves in its input order
		// except where it drains other workers' hand-offs (Sharded and
		// PerCPU inbound sprayed); Ordered never reorders.
		rd, ok := r.Get("reordered%")
		if !ok {
			t.Errorf("%s: no reordered%%", name)
		}
		if (spec.Mode == sa.Ordered || spec.Mode == sa.Shared || spec.Workers == 1 || spec.Ingress == IngressSteer) && rd != 0 {
			t.Errorf("%s: reordered %v%%, want 0", name, rd)
		}
		var drops float64
		for _, m := range r.Metrics {
			if strings.HasPrefix(m.Name, "drop-") {
				drops += m.Value
				if m.Name != "drop-replay" || !reorders {
					t.Errorf("%s: %v %s", name, m.Value, m.Name)
				}
			}
		}
		if d, _ := r.Get("drops"); d != drops {
			t.Errorf("%s: drops %v, by reason %v", name, d, drops)
		}
		if _, ok := r.Get("other-verdicts"); ok {
			t.Errorf("%s: packets with other verdicts", name)
		}
		switch {
		case spec.Workers == 1 || spec.Mode == sa.Shared || spec.Mode == sa.Ordered || spec.Ingress == IngressSteer:
			if ho != 0 {
				t.Errorf("%s: handed off %v%%, want 0", name, ho)
			}
		case spec.Mode == sa.PerCPU && spec.Dir == sa.Out:
			if ho != 0 {
				t.Errorf("%s: PerCPU outbound handed off %v%%, want 0", name, ho)
			}
		case spec.SAs >= 16 && spec.Dist == DistUniform:
			// Sprayed over 2 workers, about half the packets belong
			// to the other worker's SAs.
			if ho < 25 || ho > 75 {
				t.Errorf("%s: handed off %v%%, want about 50%%", name, ho)
			}
		case spec.SAs == 1 && spec.Mode == sa.Sharded:
			if math.Abs(ho-50) > 0.01 {
				t.Errorf("%s: handed off %v%%, want 50%% (every other packet)", name, ho)
			}
		}
		if spec.Ingress == IngressSteer && spec.Workers == 2 && spec.Mode == sa.Sharded && spec.SAs == 1 {
			if b, _ := r.Get("busiest-input%"); b != 100 {
				t.Errorf("%s: steered 1 SA, busiest input %v%%, want 100", name, b)
			}
		}
	}

	// The model: one projection per scenario, equal to the measurement
	// at 1 worker.
	ms, err := ShardModel(rs)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(specs) / 2; len(ms) != want {
		t.Errorf("%d model results, want %d", len(ms), want)
	}
	for _, m := range ms {
		var x1 float64
		for _, r := range rs {
			if r.Workers == 1 && scenarioOf(&r) == scenarioOf(&m) {
				x1, _ = r.Get("Mpps")
			}
		}
		if p, _ := m.Get("proj-Mpps-1"); math.Abs(p-x1) > 1e-9*x1 {
			t.Errorf("model %+v: projection at 1 core %v, measured %v", m, p, x1)
		}
		if p, ok := m.Get("proj-Mpps-32"); !ok || !(p > 0) {
			t.Errorf("model %s %s: projection at 32 cores %v", m.Mode, m.Ingress, p)
		}
	}
}

// TestShardModelFit checks the fitted parameters on synthetic points.
func TestShardModelFit(t *testing.T) {
	cell := func(mode, ingress string, w int, mpps float64) Result {
		r := Result{Kind: KindShard, Op: "decrypt", Mode: mode, Dist: DistUniform, Ingress: ingress, SAs: 16, Size: 1420, Workers: w}
		r.add("Mpps", mpps, UnitMpps)
		if mode == "shared" {
			// per CPU-second: 0.9 of 1 worker's at 2 workers.
			r.add("Mpps/cpu", []float64{1: 1, 2: 0.9}[w], UnitMpps)
		}
		return r
	}
	usl := func(n, sigma, kappa float64) float64 { return n / (1 + sigma*(n-1) + kappa*n*(n-1)) }
	rs := []Result{
		// Shared, Amdahl: 1.5× at 2 workers → σ = 1/3.
		cell("shared", IngressSpray, 1, 1), cell("shared", IngressSpray, 2, 1.5),
		// PerCPU sprayed: m = 1/N, f = 1/2 at 2 workers; 1.6× is 1250 ns
		// per packet at each worker, c = 1000 ns → h = 500 ns.
		cell("per-cpu", IngressSpray, 1, 1), cell("per-cpu", IngressSpray, 2, 1.6),
		// PerCPU steered on 4 worker counts generated by USL(0.1, 0.01).
		cell("per-cpu", IngressSteer, 1, 2), cell("per-cpu", IngressSteer, 2, 2*usl(2, 0.1, 0.01)),
		cell("per-cpu", IngressSteer, 4, 2*usl(4, 0.1, 0.01)), cell("per-cpu", IngressSteer, 8, 2*usl(8, 0.1, 0.01)),
	}
	ms, err := ShardModel(rs)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 {
		t.Fatalf("%d model results, want 3", len(ms))
	}
	near := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-6*math.Max(1, math.Abs(want)) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	get := func(r Result, name string) float64 {
		t.Helper()
		v, ok := r.Get(name)
		if !ok {
			t.Fatalf("%s %s: no %s", r.Mode, r.Ingress, name)
		}
		return v
	}
	sh := ms[0]
	near("shared σ", get(sh, "sigma"), 1.0/3)
	near("shared serial ns", get(sh, "serial-ns"), 1000.0/3)
	near("shared 4 cores", get(sh, "proj-Mpps-4"), usl(4, 1.0/3, 0))
	near("shared σ per CPU", get(sh, "cpu-sigma"), 2/1.8-1)
	near("shared 4 cores per CPU", get(sh, "cpu-proj-Mpps-4"), usl(4, 2/1.8-1, 0))
	if _, ok := ms[1].Get("cpu-sigma"); ok {
		t.Error("per-CPU fit without Mpps/cpu")
	}
	sp := ms[1]
	near("spray hand-off ns", get(sp, "handoff-ns"), 500)
	near("spray σ", get(sp, "sigma"), 0)
	near("spray 4 cores", get(sp, "proj-Mpps-4"), 1000/(0.25*(1000+500*0.75)))
	st := ms[2]
	near("steer σ", get(st, "sigma"), 0.1)
	near("steer κ", get(st, "kappa"), 0.01)
	near("steer 32 cores", get(st, "proj-Mpps-32"), 2*usl(32, 0.1, 0.01))
	near("steer hand-off", get(st, "handoff-ns"), 0)
}

// TestReorder checks the replay study: no drop while the displacement
// stays below the window, drops beyond it, exactly as many as the
// reversed-block pattern predicts.
func TestReorder(t *testing.T) {
	for _, c := range []struct {
		window, d int
		drops     bool
	}{
		{64, 0, false}, {64, 63, false}, {64, 64, true}, {64, 1000, true},
		{1024, 64, false}, {1024, 1023, false}, {1024, 4096, true}, {0, 1023, false}, {0, 2000, true},
	} {
		for _, pat := range []string{PatternReverse, PatternJitter} {
			name := fmt.Sprintf("window %d D %d %s", c.window, c.d, pat)
			r, err := Reorder(c.window, c.d, pat, 1)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			pct, ok := r.Get("drop-replay%")
			if !ok {
				t.Fatalf("%s: no drop-replay%%", name)
			}
			switch {
			case !c.drops && pct != 0:
				t.Errorf("%s: %v%% dropped, want 0", name, pct)
			case c.drops && pat == PatternReverse && pct == 0:
				t.Errorf("%s: nothing dropped", name)
			case c.drops && c.d >= 10*effectiveWindow(c.window) && pct < 50:
				t.Errorf("%s: %v%% dropped, want most", name, pct)
			}
			if pat == PatternReverse {
				if e, _ := r.Get("expected%"); math.Abs(e-pct) > 1e-9 {
					t.Errorf("%s: %v%% dropped, expected %v%%", name, pct, e)
				}
			}
		}
	}
	if _, err := Reorder(64, 10, "sideways", 1); err == nil {
		t.Error("unknown pattern accepted")
	}
}

// TestReorderOrder checks that the patterns are permutations displaced
// by at most D.
func TestReorderOrder(t *testing.T) {
	for _, pat := range []string{PatternReverse, PatternJitter} {
		for _, d := range []int{0, 1, 7, 100} {
			n := 1000
			o, err := reorderOrder(pat, d, n, 3)
			if err != nil {
				t.Fatal(err)
			}
			seen := make([]bool, n+1)
			moved := 0
			for i, s := range o {
				if s < 1 || int(s) > n || seen[s] {
					t.Fatalf("%s %d: not a permutation at %d: %d", pat, d, i, s)
				}
				seen[s] = true
				if disp := int(s) - 1 - i; disp > d || -disp > d {
					t.Fatalf("%s %d: seq %d at position %d", pat, d, s, i)
				}
				if int(s) != i+1 {
					moved++
				}
			}
			if d > 1 && moved == 0 {
				t.Errorf("%s %d: nothing reordered", pat, d)
			}
		}
	}
}

// TestSharedReorder runs two Shared workers on one SA: with fewer
// packets per round than the window nothing can be dropped.
func TestSharedReorder(t *testing.T) {
	r, err := SharedReorder(2, 65536, 1, 512, time.Millisecond, 1)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := r.Get("drop-replay"); !ok || d != 0 {
		t.Errorf("window 65536: %v replay drops (%v)", d, ok)
	}
	if p, _ := r.Get("packets"); p < 2*1024 {
		t.Errorf("%v packets, want at least 2 rounds", p)
	}
	if c, ok := r.Get("cpu-busy%"); runtime.GOOS == "linux" && (!ok || !(c > 0)) {
		t.Errorf("cpu-busy%% = %v (%v)", c, ok)
	}
	r, err = SharedReorder(2, 64, 32, 512, time.Millisecond, 1)
	if err != nil {
		t.Fatal(err)
	}
	if pct, ok := r.Get("drop-replay%"); !ok || pct < 0 || pct > 100 {
		t.Errorf("window 64: %v%% (%v)", pct, ok)
	}
}

// TestFlowWeights checks the distributions and the picker against them.
func TestFlowWeights(t *testing.T) {
	for _, dist := range []string{DistUniform, DistElephant, DistZipf} {
		w, err := flowWeights(dist, 16)
		if err != nil {
			t.Fatal(err)
		}
		sum := 0.0
		for _, x := range w {
			sum += x
		}
		if math.Abs(sum-1) > 1e-9 {
			t.Errorf("%s: weights sum to %v", dist, sum)
		}
		p, err := newFlowPicker(dist, 16, 1)
		if err != nil {
			t.Fatal(err)
		}
		const n = 200000
		count := make([]int, 16)
		for range n {
			count[p.next()]++
		}
		if got := float64(count[0]) / n; math.Abs(got-w[0]) > 0.01 {
			t.Errorf("%s: SA 0 drawn %v, weight %v", dist, got, w[0])
		}
	}
	if w, _ := flowWeights(DistElephant, 16); w[0] != ElephantShare {
		t.Errorf("elephant weight %v", w[0])
	}
	if _, err := flowWeights("pareto", 4); err == nil {
		t.Error("unknown distribution accepted")
	}
}

// TestShardSteps runs the suite's matrix and model steps on a small
// configuration and checks the replay steps are there.
func TestShardSteps(t *testing.T) {
	cfg := Config{Suites: []string{"shard"}, DurationNs: int64(time.Millisecond), SAs: []int{1},
		ShardWorkers: []int{1, 2}, ShardSizes: []int{64}, Seed: 1}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	steps, done := ShardSteps(cfg)
	defer done()
	var shard, models, reorder, paired int
	for _, s := range steps {
		switch {
		case strings.HasPrefix(s.label, "shard reorder"):
			reorder++
			continue // TestReorder and TestSharedReorder cover these
		}
		rs, err := s.run()
		if err != nil {
			t.Fatalf("%s: %v", s.label, err)
		}
		for _, r := range rs {
			switch r.Kind {
			case KindShard:
				shard++
				if r.Size != 64 || r.SAs != 1 {
					t.Errorf("%s: cell %+v", s.label, r)
				}
			case KindShardModel:
				models++
			case KindShardPaired:
				paired++
				// Every pair measured, the median within the range, a
				// positive efficiency: 1-worker and 2-worker cells of
				// the same scenario alternated.
				eff, _ := r.Get("paired-eff")
				lo, _ := r.Get("paired-eff-min")
				hi, _ := r.Get("paired-eff-max")
				if n, _ := r.Get("pairs"); n != ShardPairs || r.Workers != 2 || r.SAs != 1 || r.Size != 64 ||
					!(eff > 0 && lo <= eff && eff <= hi) {
					t.Errorf("%s: paired %+v", s.label, r)
				}
				if r.Mode == "ordered" {
					if o, _ := r.Get("reordered%"); o != 0 {
						t.Errorf("%s: %v%% reordered", s.label, o)
					}
				}
			default:
				t.Errorf("%s: kind %q", s.label, r.Kind)
			}
		}
	}
	// Per worker count: Shared 1 + 1 outbound, Sharded, PerCPU and
	// Ordered 2 + 1.
	if shard != 2*11 || models != 11 || paired != len(PairedSpecs(2, 64)) {
		t.Errorf("%d cells, %d models and %d paired, want 22, 11 and %d", shard, models, paired, len(PairedSpecs(2, 64)))
	}
	if want := len(ReorderWindows) * (1 + len(ReorderChunks)); reorder != want {
		t.Errorf("%d reorder steps, want %d", reorder, want)
	}
}
