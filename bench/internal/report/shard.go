package report

import (
	"fmt"
	"slices"
	"strings"

	"gonum.org/v1/plot/plotter"

	"github.com/espxdp/espxdp/bench/internal/harness"
)

// Plots and targets of the shard suite.
const (
	plotShardOneTunnel = "shard-scaling-one-tunnel.svg"
	plotShardMany      = "shard-scaling-many-sas.svg"
	// TargetScaling: each added worker must add at least this fraction
	// of one worker's throughput (speed-up ≥ 1 + 0.5·(N−1) at N).
	TargetScaling = 0.5
)

// shardKey selects shard results.
type shardKey struct {
	op, mode, ingress, dist string
	sas, size               int
}

func (k shardKey) match(r *harness.Result) bool {
	return r.Op == k.op && r.Mode == k.mode && r.Ingress == k.ingress && r.Dist == k.dist && r.SAs == k.sas && r.Size == k.size
}

func (k shardKey) label() string {
	in := k.ingress
	if k.mode == "shared" || (k.mode == "per-cpu" && k.op == "encrypt") {
		in = "" // no owner, nothing to steer to
	}
	s := k.op + " " + k.mode
	if in != "" {
		s += " " + in
	}
	return s
}

func (k shardKey) what() string {
	if k.sas == 1 {
		if k.mode == "per-cpu" {
			return "one tunnel (one SA per worker)"
		}
		return "one SA"
	}
	w := fmt.Sprintf("%d SAs %s", k.sas, k.dist)
	if k.mode == "per-cpu" {
		w = fmt.Sprintf("%d tunnels %s", k.sas, k.dist)
	}
	return w
}

// shardSize is the packet size the summaries use: 1420 if measured.
func shardSize(rs []harness.Result) int {
	size := 0
	for _, r := range rs {
		if r.Size == 1420 {
			return 1420
		}
		if size == 0 {
			size = r.Size
		}
	}
	return size
}

// shardMany is the SA count of the "many SAs" summaries: 1000 if
// measured, else the largest count.
func shardMany(rs []harness.Result) int {
	n := 0
	for _, r := range rs {
		if r.SAs == 1000 {
			return 1000
		}
		n = max(n, r.SAs)
	}
	return n
}

// oneTunnelKeys and manyKeys are the scenarios of the summaries, plots
// and targets.
func oneTunnelKeys(size int) []shardKey {
	return []shardKey{
		{"encrypt", "shared", harness.IngressSpray, harness.DistUniform, 1, size},
		{"encrypt", "per-cpu", harness.IngressSpray, harness.DistUniform, 1, size},
		{"encrypt", "sharded", harness.IngressSpray, harness.DistUniform, 1, size},
		{"decrypt", "shared", harness.IngressSpray, harness.DistUniform, 1, size},
		{"decrypt", "per-cpu", harness.IngressSteer, harness.DistUniform, 1, size},
		{"decrypt", "sharded", harness.IngressSteer, harness.DistUniform, 1, size},
		{"encrypt", "ordered", harness.IngressSpray, harness.DistUniform, 1, size},
		{"decrypt", "ordered", harness.IngressSpray, harness.DistUniform, 1, size},
		{"decrypt", "ordered", harness.IngressSteer, harness.DistUniform, 1, size},
	}
}

func manyKeys(n, size int) []shardKey {
	return []shardKey{
		{"decrypt", "shared", harness.IngressSpray, harness.DistUniform, n, size},
		{"decrypt", "sharded", harness.IngressSteer, harness.DistUniform, n, size},
		{"decrypt", "sharded", harness.IngressSpray, harness.DistUniform, n, size},
		{"decrypt", "per-cpu", harness.IngressSteer, harness.DistUniform, n, size},
	}
}

// speedup returns r's Mpps over the 1-worker cell of its scenario.
func speedup(rs []harness.Result, r *harness.Result) (float64, bool) { return ratioTo1(rs, r, "Mpps") }

// efficiency returns r's Mpps per CPU-second over the 1-worker cell's.
func efficiency(rs []harness.Result, r *harness.Result) (float64, bool) {
	return ratioTo1(rs, r, "Mpps/cpu")
}

func effCell(rs []harness.Result, r *harness.Result) string {
	if e, ok := efficiency(rs, r); ok {
		return num(e)
	}
	return "–"
}

// ratioTo1 returns r's metric over the 1-worker cell of its scenario.
func ratioTo1(rs []harness.Result, r *harness.Result, metric string) (float64, bool) {
	base := find(rs, func(x *harness.Result) bool {
		return x.Workers == 1 && x.Op == r.Op && x.Mode == r.Mode && x.Ingress == r.Ingress && x.Dist == r.Dist && x.SAs == r.SAs && x.Size == r.Size && x.Window == r.Window
	})
	b1, ok1 := val(base, metric)
	v, ok2 := r.Get(metric)
	if !ok1 || !ok2 || b1 <= 0 {
		return 0, false
	}
	return v / b1, true
}

// dropsCell lists the non-zero drop reasons of r, or 0.
func dropsCell(r *harness.Result) string {
	var parts []string
	for _, m := range r.Metrics {
		if name, ok := strings.CutPrefix(m.Name, "drop-"); ok && m.Value > 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f", name, m.Value))
		}
	}
	if len(parts) == 0 {
		return "0"
	}
	pct, _ := r.Get("drop%")
	return strings.Join(parts, ", ") + fmt.Sprintf(" (%s%%)", num(pct))
}

// shardConditions describes the CPU situation of the run.
func shardConditions(rep *harness.Report, rs []harness.Result) string {
	maxW, maxLoad := 0, 0.0
	for _, r := range rs {
		maxW = max(maxW, r.Workers)
		if v, ok := r.Get("loadavg"); ok {
			maxLoad = max(maxLoad, v)
		}
	}
	s := fmt.Sprintf("%d cores, GOMAXPROCS %d, up to %d workers", rep.Machine.Cores, rep.Machine.GOMAXPROCS, maxW)
	if maxLoad > 0 {
		s += fmt.Sprintf(", load average up to %s during the run", num(maxLoad))
		if maxLoad > 0.5*float64(rep.Machine.Cores) {
			s += " (the CPUs were shared with other processes)"
		}
	}
	return s
}

// Targets of issue #14 (one SA over many cores).
const (
	// TargetSharedEff is the per-CPU efficiency one Shared SA must keep
	// at 2 workers.
	TargetSharedEff = 0.9
	// TargetOrderedEff is the Ordered mode's per-CPU efficiency at 2
	// workers.
	TargetOrderedEff = 0.85
)

// oneSATargets checks one SA at 2 workers: Shared keeps TargetSharedEff
// of one worker's packets per CPU-second with no replay drop (an
// in-order stream sprayed over the workers), Ordered TargetOrderedEff
// with nothing reordered at egress.
func oneSATargets(rs, paired []harness.Result, size int, cond string) []Target {
	var ts []Target
	for _, k := range oneTunnelKeys(size) {
		if k.sas != 1 || (k.mode != "shared" && k.mode != "ordered") {
			continue
		}
		var top *harness.Result
		for i := range rs {
			if k.match(&rs[i]) && rs[i].Workers == 2 {
				top = &rs[i]
			}
		}
		if top == nil {
			continue
		}
		e, ok := efficiency(rs, top)
		if !ok {
			continue
		}
		need := TargetSharedEff
		if k.mode == "ordered" {
			need = TargetOrderedEff
		}
		replay, _ := top.Get("drop-replay")
		reord, _ := top.Get("reordered%")
		measured := fmt.Sprintf("%s×, %s replay drops, %s%% reordered (%s)", num(e), num(replay), num(reord), cond)
		if p := pairedOf(paired, k, top.Workers); p != nil {
			// The alternated measurement is the figure: the matrix's
			// cells are minutes apart (see the paired table).
			pe, _ := p.Get("paired-eff")
			lo, _ := p.Get("paired-eff-min")
			hi, _ := p.Get("paired-eff-max")
			pr, _ := p.Get("drop-replay")
			po, _ := p.Get("reordered%")
			measured = fmt.Sprintf("%s× (1 and 2 workers alternated, median of %s pairs, %s-%s; the matrix cells %s×), %s replay drops, %s%% reordered (%s)",
				num(pe), intCell(p, "pairs"), num(lo), num(hi), num(e), num(replay+pr), num(max(reord, po)), cond)
			e, replay, reord = pe, replay+pr, max(reord, po)
		}
		ts = append(ts, Target{
			What: fmt.Sprintf("one SA over 2 workers (issue #14): %s, %d B: per CPU-second ≥ %s× of 1 worker's, 0 replay drops, 0 reordered at egress",
				k.label(), size, num(need)),
			Measured: measured,
			Met:      e >= need && replay == 0 && reord == 0,
		})
	}
	return ts
}

func shardTargets(rep *harness.Report) []Target {
	rs := rep.Filter(harness.KindShard)
	if len(rs) == 0 {
		return nil
	}
	size := shardSize(rs)
	cond := shardConditions(rep, rs)
	ts := oneSATargets(rs, rep.Filter(harness.KindShardPaired), size, cond)
	for _, k := range append(oneTunnelKeys(size), manyKeys(shardMany(rs), size)...) {
		if k.mode == "sharded" && k.sas == 1 {
			continue // one SA on one core by design
		}
		var top *harness.Result
		for i := range rs {
			if k.match(&rs[i]) && (top == nil || rs[i].Workers > top.Workers) {
				top = &rs[i]
			}
		}
		if top == nil || top.Workers < 2 {
			continue
		}
		up, ok := speedup(rs, top)
		if !ok {
			continue
		}
		n := float64(top.Workers)
		need := 1 + TargetScaling*(n-1)
		extra := ""
		if e, ok := efficiency(rs, top); ok {
			extra = fmt.Sprintf("; per CPU-second %s× of 1 worker's", num(e))
		}
		if c, ok := top.Get("cpu-busy%"); ok {
			extra += fmt.Sprintf("; the workers got %s%% of %d CPUs", num(c), top.Workers)
		}
		ts = append(ts, Target{
			What:     fmt.Sprintf("throughput grows with workers up to the cores available (≥ %s× at %d workers): %s, %s, %d B", num(need), top.Workers, k.label(), k.what(), size),
			Measured: fmt.Sprintf("%s× (%s%s)", num(up), cond, extra),
			Met:      up >= need,
		})
	}
	return ts
}

func shardSection(b *strings.Builder, rep *harness.Report, plots map[string][]byte) {
	rs := rep.Filter(harness.KindShard)
	ro := rep.Filter(harness.KindShardReorder)
	ms := rep.Filter(harness.KindShardModel)
	if len(rs)+len(ro)+len(ms) == 0 {
		return
	}
	b.WriteString("## Shard: per-core SA sharding study\n\n")
	if len(rs) > 0 {
		fmt.Fprintf(b, "Conditions: %s.\n\n", shardConditions(rep, rs))
		fmt.Fprintf(b, `Each worker is a goroutine locked to an OS thread and pinned to a CPU
(worker k to the k-th, modulo the CPUs) with its own input, as if from its NIC queue, processed in batches of
64 (Inbound or Outbound, then Drain in the Sharded, PerCPU and Ordered
modes; a worker without input polls Drain for 20 µs, then sleeps until
work for it is published, as an xdp engine worker does, and its CPU time
counts the polls, not the sleep). The work runs in rounds: worker 0
plans the round's packets, every worker builds its own input (inbound:
ESP packets sealed with the peer's key and the next sequence numbers;
outbound: inner packets bound to the flow's tunnel), untimed; then all
are released together and the round's time runs until the last packet
is done (the last batch, Drain or AEAD job of any worker; not the time a
helper asleep at the end takes to wake up and learn that the round is
over). Mpps is the median over
rounds of packets per second (OK or dropped), Gbps the inner bits of the
OK ones at that rate, speed-up Mpps over the same scenario at 1 worker,
"handed off" the fraction of the packets that went through another
worker's queue (their whole cost — the push, the pop and the Drain — is
inside the timed span). aes128gcm16, tunnel mode, IPv4, replay window
1024 by default, grown by the processor with several workers up to what
the workers' reordering needs ("window": its size at the end of the
cell), and with several workers at least the floor the xdp engine sets
when it deals a queue over its workers (twice a round's input and a
batch per other worker). "reordered" counts the OK packets a worker emitted after a
higher sequence number of the same SA (per worker output, one TX
queue). "Mpps per CPU-s" divides the packets by the CPU time the workers'
threads actually got within that span (CLOCK_THREAD_CPUTIME_ID: the
worker that did the last packet up to it, a worker that slept through
the end up to that sleep, the others to the end of the round, including
their polling for other workers' hand-offs; an input-less worker that
slept through a round starts the next asleep, so the periodic wake-ups
an idle engine worker pays, about 2 %% of a CPU, are not counted), "per-CPU
efficiency" is that over the 1-worker cell's, and "CPU got" that CPU time
over wall time × workers: on a machine with fewer free CPUs than workers
wall-clock speed-up cannot show scaling, but a per-CPU efficiency near 1
shows that the workers did not slow each other down.

- Ingress "spray": packet k arrives on worker k mod N whatever its SA
  (RSS that cannot see the SPI); "steer": on the worker owning its SA
  (an SPI-steering XDP program or RSS on the SPI). Shared mode has no
  owner, so only spray; PerCPU outbound has nothing to hand off.
- Traffic: "uniform" over the SAs; "elephant": %.0f%% of the packets on
  one SA, the rest uniform over the others; "zipf": P(SA k) ∝
  (1+k)^-%.1f. PerCPU: the SA count is the number of tunnels, each with
  one SA per worker (RFC 9611), the peer's sending CPU (which SA of the
  tunnel) uniform.
- Drops must be 0 except DropReplay where packets of one SA are
  reordered: between Shared workers, or between a packet handed off
  by a sprayed worker and the owner's own input. Any other drop is a
  failure of the run.

`, 100*harness.ElephantShare, harness.ZipfS)
		size := shardSize(rs)
		b.WriteString("### One tunnel: one SA (Shared, Sharded) or one PerCPU tunnel\n\n")
		b.WriteString("The \"one tunnel is limited to one core\" case. Encrypt: Shared reserves sequence numbers for a run of packets with one atomic add; PerCPU gives each worker its own SA in the tunnel; Sharded hands every packet to the SA's owner; Ordered spreads each run's AEAD over the workers and keeps each worker's output in its input order (steer: one sequencer receives the SA, the other workers only help).\n\n")
		b.WriteString("| direction / mode | bytes | workers | Mpps | Gbps | speed-up | Mpps per CPU-s | per-CPU efficiency | CPU got | handed off | reordered | window | drops |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, k := range oneTunnelKeys(size) {
			for i := range rs {
				r := &rs[i]
				if k.match(r) {
					fmt.Fprintf(b, "| **%s** | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", k.label(), r.Size, r.Workers, cell(r, "Mpps"), cell(r, "Gbps"),
						speedCell(rs, r), cell(r, "Mpps/cpu"), effCell(rs, r), pctCell(r, "cpu-busy%"), pctCell(r, "handed-off%"),
						pctCell(r, "reordered%"), intCell(r, "replay-window"), dropsCell(r))
				}
			}
		}
		if _, ok := plots[plotShardOneTunnel]; ok {
			fmt.Fprintf(b, "\n![one tunnel: measured and projected](%s)\n", plotShardOneTunnel)
		}
		pairedTable(b, rep.Filter(harness.KindShardPaired), size)
		b.WriteString("\n### All cells\n\n")
		b.WriteString("| direction | mode | ingress | SAs | traffic | bytes | workers | Mpps | Gbps | speed-up | Mpps per CPU-s | per-CPU efficiency | CPU got | handed off | busiest input | reordered | drops |\n|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for i := range rs {
			r := &rs[i]
			fmt.Fprintf(b, "| %s | %s | %s | %d | %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Op, r.Mode, r.Ingress, r.SAs, r.Dist, r.Size, r.Workers,
				cell(r, "Mpps"), cell(r, "Gbps"), speedCell(rs, r), cell(r, "Mpps/cpu"), effCell(rs, r), pctCell(r, "cpu-busy%"),
				pctCell(r, "handed-off%"), pctCell(r, "busiest-input%"), pctCell(r, "reordered%"), dropsCell(r))
		}
		b.WriteString("\n")
	}
	if len(ro) > 0 {
		reorderSection(b, ro)
	}
	if len(ms) > 0 {
		modelSection(b, rs, ms, plots)
	}
}

// pctCell is cell with a percent sign, or "–".
func pctCell(r *harness.Result, name string) string {
	if _, ok := val(r, name); ok {
		return cell(r, name) + "%"
	}
	return "–"
}

func speedCell(rs []harness.Result, r *harness.Result) string {
	if up, ok := speedup(rs, r); ok {
		return num(up) + "×"
	}
	return "–"
}

func reorderSection(b *strings.Builder, ro []harness.Result) {
	b.WriteString(`### Replay window vs reordering

Packets of one SA delivered out of order, one worker, against replay
windows of 64, 1024 (the default) and 65536 (the maximum) packets: the
fraction dropped as DropReplay. "reverse": blocks of D+1 sequence numbers
delivered newest first, the worst case for a displacement bound D
(expected: (D+1−W)/(D+1) for D ≥ W, in parentheses); "jitter": each
packet delayed by a uniform 0..D positions. A packet is dropped when it
is W or more behind the newest one seen, so nothing is lost while the
displacement stays below the window, and most of the packets are once it
is many windows.

`)
	var windows []int
	type row struct {
		pattern string
		d       int
	}
	var rows []row
	for _, r := range ro {
		if r.Pattern == harness.PatternWorkers {
			continue
		}
		if !slices.Contains(windows, r.Window) {
			windows = append(windows, r.Window)
		}
		if x := (row{r.Pattern, r.Displace}); !slices.Contains(rows, x) {
			rows = append(rows, x)
		}
	}
	slices.Sort(windows)
	if len(rows) > 0 {
		b.WriteString("| pattern | displacement D |")
		for _, w := range windows {
			fmt.Fprintf(b, " window %d |", w)
		}
		b.WriteString("\n|---|---:|" + strings.Repeat("---:|", len(windows)) + "\n")
		for _, x := range rows {
			fmt.Fprintf(b, "| %s | %d |", x.pattern, x.d)
			for _, w := range windows {
				r := find(ro, func(r *harness.Result) bool {
					return r.Pattern == x.pattern && r.Displace == x.d && r.Window == w
				})
				s := pctCell(r, "drop-replay%")
				if e, ok := val(r, "expected%"); ok {
					s += " (" + num(e) + "%)"
				}
				fmt.Fprintf(b, " %s |", s)
			}
			b.WriteString("\n")
		}
		b.WriteString(`
Reordering by more than a few hundred packets comes from paths that
spread one SA over several queues or cores: ECMP or LAG members of
different latency, several workers on one SA (below), hand-offs. 1024
absorbs what a batch-based data plane does to one SA on a few cores;
65536 (the package's maximum, 8 KB of bitmap per inbound SA) covers
displacements of tens of thousands of packets (about 0.1 s at 1 Mpps on
one SA) at the cost of memory per SA and a weaker bound on how old a
replayed packet may be.

`)
	}
	var ws []harness.Result
	for _, r := range ro {
		if r.Pattern == harness.PatternWorkers {
			ws = append(ws, r)
		}
	}
	if len(ws) > 0 {
		b.WriteString(`Several Shared-mode workers on one SA: the SA's stream is dealt to the
workers in chunks (chunk 1: packet k to worker k mod N, as the matrix's
spray does), each worker processes its share concurrently on its own OS
thread; the displacement is whatever their relative progress makes it
(so it depends on the OS scheduler and on other load on the machine:
"CPU got" is the workers' CPU time over wall time × workers; well below
100% they did not run side by side, and one ran ahead of the other by
up to a whole round).

| workers | chunk | window | packets | DropReplay | Mpps | CPU got |
|---:|---:|---:|---:|---:|---:|---:|
`)
		for i := range ws {
			r := &ws[i]
			fmt.Fprintf(b, "| %d | %d | %d | %s | %s | %s | %s |\n", r.Workers, r.Displace, r.Window, intCell(r, "packets"), pctCell(r, "drop-replay%"), cell(r, "Mpps"), pctCell(r, "cpu-busy%"))
		}
		b.WriteString("\n")
	}
}

func modelSection(b *strings.Builder, rs, ms []harness.Result, plots map[string][]byte) {
	b.WriteString(`### Scaling model: a projection to 32 cores

**This is a projection, not a measurement.** Fitted to the cells above
(per scenario: direction, mode, ingress, SAs, traffic, size); c is the
measured time per packet of 1 worker, m(N) the busiest worker's share of
the packets (1/N in Shared mode and for PerCPU tunnels; in Sharded mode
computed from the owner hash of the actual SPIs at N workers and the
traffic weights, so an elephant SA keeps m ≥ 0.9), f(N) the fraction of
that worker's packets handed to it by others ((N−1)/N when sprayed to
an owner, else 0):

    B(N) = 1 / (m(N)·(c + h·f(N)))          structural bound
    X(N) = B(N) / (1 + σ(N−1) + κN(N−1))     Universal Scalability Law

h (the cost of one hand-off, both sides) is fitted where packets are
handed off, otherwise σ (contention) and, with at least two worker
counts above 1, κ (coherency); least squares, all ≥ 0. With 1 and 2
workers measured there is one point to fit, so κ = 0: an Amdahl
model. In Shared mode σ·c is the serial time per packet (the replay
window's mutex, the SA's atomics and counters moving between cores).
Assumptions: N real cores as fast as the measured ones, nothing else
running, no limit from memory bandwidth, the NIC or the I/O path (this
is the sa package alone, no AF_XDP); hand-off cost per packet constant
in N. A fit to a run on a loaded machine folds the other load into σ
or h: read the projections as the shape, not the numbers.

The fit is done twice: on the measured Mpps (wall clock), and on the
"per-CPU basis", N × Mpps per CPU-second the workers' threads got, i.e.
what N workers would do with a core each, used as measured. When the
workers got much less than N CPUs ("CPU got" above), the wall-clock fit
mostly measures that, and the per-CPU basis is the better guide to the
code's own scaling; but it does not count time a worker slept blocked on
a lock (only spinning), so for Shared mode it is optimistic. The plots
show the measured wall-clock Mpps (solid) and the per-CPU-basis
projection (dashed; the wall-clock one where no CPU time was measured).

`)
	size := shardSize(rs)
	many := shardMany(rs)
	b.WriteString("| scenario | SAs | traffic | bytes | c ns | h ns | σ | κ | measured Mpps (workers) | projected Mpps at 4 / 8 / 16 / 32 cores | per-CPU basis: h ns | σ | N × Mpps per CPU-s (workers) | projected at 4 / 8 / 16 / 32 |\n|---|---:|---|---:|---:|---:|---:|---:|---|---|---:|---:|---|---|\n")
	for i := range ms {
		m := &ms[i]
		if m.Size != size || (m.SAs != 1 && m.SAs != many) || m.Dist == harness.DistZipf {
			continue
		}
		k := shardKey{m.Op, m.Mode, m.Ingress, m.Dist, m.SAs, m.Size}
		var meas, measCPU []string
		for j := range rs {
			if r := &rs[j]; k.match(r) {
				meas = append(meas, fmt.Sprintf("%s (%d)", cell(r, "Mpps"), r.Workers))
				if v, ok := r.Get("Mpps/cpu"); ok {
					measCPU = append(measCPU, fmt.Sprintf("%s (%d)", num(v*float64(r.Workers)), r.Workers))
				}
			}
		}
		var proj, projCPU []string
		for _, n := range []int{4, 8, 16, 32} {
			proj = append(proj, cell(m, fmt.Sprintf("proj-Mpps-%d", n)))
			projCPU = append(projCPU, cell(m, fmt.Sprintf("cpu-proj-Mpps-%d", n)))
		}
		fmt.Fprintf(b, "| %s | %d | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", k.label(), m.SAs, m.Dist, m.Size,
			cell(m, "c-ns"), cell(m, "handoff-ns"), cell(m, "sigma"), cell(m, "kappa"), strings.Join(meas, ", "), strings.Join(proj, " / "),
			cell(m, "cpu-handoff-ns"), cell(m, "cpu-sigma"), strings.Join(measCPU, ", "), strings.Join(projCPU, " / "))
	}
	b.WriteString("\nEvery scenario's fit (all sizes, SA counts and distributions) is in results.json (kind shard-model).\n")
	for _, p := range []struct{ name, alt string }{{plotShardOneTunnel, "one tunnel"}, {plotShardMany, "many SAs"}} {
		if _, ok := plots[p.name]; ok {
			fmt.Fprintf(b, "\n![%s: measured Mpps (solid) and projection (dashed)](%s)\n", p.alt, p.name)
		}
	}
	b.WriteString("\n")
}

// shardPlots draws measured Mpps against workers (solid) and the
// model's projection (dashed) for the one-tunnel and many-SA scenarios.
func shardPlots(rep *harness.Report, out map[string][]byte) error {
	rs := rep.Filter(harness.KindShard)
	ms := rep.Filter(harness.KindShardModel)
	if len(rs) == 0 {
		return nil
	}
	size := shardSize(rs)
	for _, p := range []struct {
		name, title string
		keys        []shardKey
	}{
		{plotShardOneTunnel, fmt.Sprintf("One tunnel, %d B: measured and projected", size), oneTunnelKeys(size)},
		{plotShardMany, fmt.Sprintf("%d SAs uniform, decrypt, %d B", shardMany(rs), size), manyKeys(shardMany(rs), size)},
	} {
		var ss []series
		for i, k := range p.keys {
			var sel []harness.Result
			for j := range rs {
				if k.match(&rs[j]) {
					sel = append(sel, rs[j])
				}
			}
			if len(sel) == 0 {
				continue
			}
			ss = append(ss, series{label: k.label(), pts: xy(sel, func(r *harness.Result) int { return r.Workers }, "Mpps"), color: i})
			m := find(ms, func(r *harness.Result) bool { return k.match(r) })
			if m == nil {
				continue
			}
			prefix, label := "cpu-", " (projected, per-CPU basis)"
			if _, ok := m.Get("cpu-proj-Mpps-1"); !ok {
				prefix, label = "", " (projected)"
			}
			var pts plotter.XYs
			for _, n := range harness.ModelCores {
				if v, ok := m.Get(fmt.Sprintf("%sproj-Mpps-%d", prefix, n)); ok && v > 0 {
					pts = append(pts, plotter.XY{X: float64(n), Y: v})
				}
			}
			ss = append(ss, series{label: k.label() + label, pts: pts, color: i, dashed: true})
		}
		svg, err := render(p.title, "workers / cores (log)", "Mpps", true, true, ss)
		if err != nil {
			return err
		}
		if svg != nil {
			out[p.name] = svg
		}
	}
	return nil
}

// pairedOf returns the alternated measurement (harness.ShardPaired) of
// scenario k at workers workers, or nil.
func pairedOf(paired []harness.Result, k shardKey, workers int) *harness.Result {
	for i := range paired {
		if k.match(&paired[i]) && paired[i].Workers == workers {
			return &paired[i]
		}
	}
	return nil
}

// pairedTable writes the one-SA efficiencies measured by alternating 1
// and n workers.
func pairedTable(b *strings.Builder, paired []harness.Result, size int) {
	if len(paired) == 0 {
		return
	}
	b.WriteString(`
### One tunnel, 1 and 2 workers alternated

The matrix above measures a scenario's 1-worker cell minutes before its
2-worker cell, and this VM drifts between a fast and a slow speed on
that scale: on the VMs these reports came from, the same 1-worker cell
ran at about 2.6 or about 1.7 Mpps minutes apart, which moves a per-CPU
efficiency by half. Here each scenario runs 1, 2, 1, 2, ..., 1 workers back to back
(each cell as long as a matrix cell); every 2-worker cell's packets per
CPU-second are divided by the mean of the 1-worker cells just before
and after it, and the table gives the median of those ratios (and
their range). The issue #14 targets use it.

| direction / mode | bytes | workers | pairs | per-CPU efficiency (median) | range | speed-up (median) | replay drops | reordered | load |
|---|---:|---:|---:|---:|---|---:|---:|---:|---:|
`)
	for _, k := range oneTunnelKeys(size) {
		for i := range paired {
			p := &paired[i]
			if !k.match(p) {
				continue
			}
			lo, _ := p.Get("paired-eff-min")
			hi, _ := p.Get("paired-eff-max")
			fmt.Fprintf(b, "| **%s** | %d | %d | %s | %s | %s-%s | %s× | %s | %s | %s |\n", k.label(), p.Size, p.Workers, intCell(p, "pairs"),
				cell(p, "paired-eff"), num(lo), num(hi), cell(p, "paired-speedup"), intCell(p, "drop-replay"), pctCell(p, "reordered%"), cell(p, "loadavg"))
		}
	}
}
