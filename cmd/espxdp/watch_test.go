package main

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/gateway"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

func TestComputeRates(t *testing.T) {
	t0 := time.Unix(1000, 0)
	prev := snapshot{At: t0,
		SAs: []sa.Stats{
			{Name: "out1", SPI: 1, Direction: sa.Out, EncapsPkts: 100, EncapsBytes: 10000},
			{Name: "in1", SPI: 2, Direction: sa.In, DecapsPkts: 50, DecapsBytes: 5000},
			{Name: "gone", SPI: 9, Direction: sa.In, DecapsPkts: 7},
		},
		Stats: gateway.Stats{Engine: xdp.EngineStats{Workers: []xdp.EngineWorkerStats{{Queue: 0, CipherRX: 10, SADrops: 1}}}},
	}
	prev.SAs[1].Drops[sa.DropReplay] = 4
	cur := snapshot{At: t0.Add(2 * time.Second),
		SAs: []sa.Stats{
			{Name: "out1", SPI: 1, Direction: sa.Out, EncapsPkts: 300, EncapsBytes: 30000, HardRemaining: sa.Remaining{Bytes: -1, Packets: -1, Seconds: 60}},
			{Name: "in1", SPI: 2, Direction: sa.In, DecapsPkts: 1050, DecapsBytes: 105000},
			// Same SPI as out1 but inbound: a different SA.
			{Name: "in-new", SPI: 1, Direction: sa.In, DecapsPkts: 20, DecapsBytes: 2000},
		},
		Stats: gateway.Stats{Engine: xdp.EngineStats{Workers: []xdp.EngineWorkerStats{
			{Queue: 0, CipherRX: 30, SADrops: 5, TXFull: 2},
			{Worker: 1, Queue: 1, PlainRX: 8},
		}}},
	}
	cur.SAs[1].Drops[sa.DropReplay] = 10
	cur.SAs[1].Drops[sa.DropAuth] = 2
	cur.Stats.Processor.Drops[sa.DropNoSA] = 6
	r := computeRates(prev, cur)
	if r.Interval != 2 {
		t.Errorf("interval %v", r.Interval)
	}
	if len(r.SAs) != 3 || r.SAs[0].Name != "in1" || r.SAs[1].Name != "out1" || r.SAs[2].Name != "in-new" {
		t.Fatalf("order (busiest first) wrong: %+v", r.SAs)
	}
	in1, out1, nw := r.SAs[0], r.SAs[1], r.SAs[2]
	if in1.PktsPerSec != 500 || in1.BitsPerSec != 8*50000 || in1.DropsPerSec != 4 ||
		in1.DropsByReason["replay"] != 3 || in1.DropsByReason["auth"] != 1 || len(in1.DropsByReason) != 2 {
		t.Errorf("in1: %+v", in1)
	}
	if out1.PktsPerSec != 100 || out1.BitsPerSec != 80000 || out1.DropsPerSec != 0 || out1.HardRemaining.Seconds != 60 {
		t.Errorf("out1: %+v", out1)
	}
	if nw.PktsPerSec != 10 || nw.Pkts != 20 {
		t.Errorf("new SA counts from zero: %+v", nw)
	}
	if len(r.Workers) != 2 || r.Workers[0].CipherRXPerSec != 10 || r.Workers[0].DropsPerSec != 3 || r.Workers[0].TXFullPerSec != 1 ||
		r.Workers[1].PlainRXPerSec != 4 {
		t.Errorf("workers: %+v", r.Workers)
	}
	if r.Drops["no-sa"] != 3 || len(r.Drops) != 1 {
		t.Errorf("processor drops: %v", r.Drops)
	}
	// Zero interval: no rates, no division by zero.
	if z := computeRates(cur, cur); z.SAs[0].PktsPerSec != 0 || z.Workers[0].CipherRXPerSec != 0 {
		t.Errorf("zero interval: %+v", z)
	}
}

// TestComputeRatesProperties: over random counter histories (counters
// that grow, and SAs replaced or gateways restarted so that counters
// start again), every rate is finite and non-negative, and a rate times
// the interval never exceeds the current counter when it went back, nor
// the increase when it grew.
func TestComputeRatesProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	mk := func(at time.Time) snapshot {
		s := snapshot{At: at}
		for range rng.IntN(5) {
			st := sa.Stats{SPI: uint32(rng.IntN(4)), Direction: sa.Direction(rng.IntN(2)), Name: "s",
				EncapsPkts: rng.Uint64N(1e6), EncapsBytes: rng.Uint64N(1e9), DecapsPkts: rng.Uint64N(1e6), DecapsBytes: rng.Uint64N(1e9)}
			st.Drops[1+rng.IntN(int(sa.NumDropReasons)-1)] = rng.Uint64N(100)
			s.SAs = append(s.SAs, st)
		}
		for q := range rng.IntN(3) {
			s.Stats.Engine.Workers = append(s.Stats.Engine.Workers, xdp.EngineWorkerStats{Worker: q, Queue: q, CipherRX: rng.Uint64N(1e6), SADrops: rng.Uint64N(10)})
		}
		return s
	}
	for range 2000 {
		t0 := time.Unix(rng.Int64N(1e6), 0)
		prev, cur := mk(t0), mk(t0.Add(time.Duration(rng.Int64N(int64(3*time.Second)))))
		r := computeRates(prev, cur)
		check := func(what string, x float64) {
			if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
				t.Fatalf("%s = %v", what, x)
			}
		}
		for i, s := range r.SAs {
			check("pkts/s", s.PktsPerSec)
			check("bits/s", s.BitsPerSec)
			check("drops/s", s.DropsPerSec)
			if r.Interval > 0 && s.PktsPerSec*r.Interval > float64(s.Pkts)+0.5 {
				t.Fatalf("SA %d: %v pkts/s over %vs exceeds its counter %d", i, s.PktsPerSec, r.Interval, s.Pkts)
			}
			if i > 0 && r.SAs[i-1].PktsPerSec < s.PktsPerSec {
				t.Fatalf("not busiest first: %+v", r.SAs)
			}
		}
		for _, w := range r.Workers {
			check("worker rx/s", w.CipherRXPerSec)
			check("worker drops/s", w.DropsPerSec)
		}
	}
}

func TestWatchCountAndJSON(t *testing.T) {
	n := uint64(0)
	fetch := func() (snapshot, error) {
		n++
		return snapshot{At: time.Now(), SAs: []sa.Stats{{Name: "out1", SPI: 5, Direction: sa.Out, EncapsPkts: n * 100, EncapsBytes: n * 1000}}}, nil
	}
	var b strings.Builder
	if err := watch(context.Background(), &b, watchOptions{interval: 10 * time.Millisecond, count: 3, json: true}, fetch); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	lines := 0
	for sc.Scan() {
		lines++
		var r rates
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %d not JSON: %v: %s", lines, err, sc.Text())
		}
		if len(r.SAs) != 1 || r.SAs[0].PktsPerSec <= 0 || r.Interval <= 0 {
			t.Errorf("line %d: %+v", lines, r)
		}
	}
	if lines != 3 || n != 4 {
		t.Errorf("%d lines, %d fetches; want 3 and 4", lines, n)
	}

	b.Reset()
	if err := watch(context.Background(), &b, watchOptions{interval: 10 * time.Millisecond, count: 2, title: "gw"}, fetch); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.Count(out, "PKTS/S") != 2 || !strings.Contains(out, "out1") || strings.Contains(out, clearScreen) {
		t.Errorf("text output (not a terminal: no clear-screen):\n%q", out)
	}
	b.Reset()
	if err := watch(context.Background(), &b, watchOptions{interval: 10 * time.Millisecond, count: 1, clear: true}, fetch); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), clearScreen) {
		t.Errorf("terminal output does not clear the screen: %q", b.String())
	}
	// Usage errors.
	if code, _, errs := runCLI(t, "show", "sa", "--watch", "--config", "x.yaml"); code != exitUsage || !strings.Contains(errs, "--watch shows a running gateway") {
		t.Errorf("--watch --config: %d %s", code, errs)
	}
	if code, _, _ := runCLI(t, "show", "sa", "--watch", "--interval", "0s"); code != exitUsage {
		t.Errorf("--interval 0: exit %d", code)
	}
}

func TestLifetimeText(t *testing.T) {
	if got := lifetimeText(sa.Remaining{Bytes: -1, Packets: -1, Seconds: -1}); got != "unlimited" {
		t.Errorf("%q", got)
	}
	if got := lifetimeText(sa.Remaining{Bytes: 5000000, Packets: -1, Seconds: 3600}); got != "3600s 5.00MB" {
		t.Errorf("%q", got)
	}
}

// TestWatchWorkersOnOneQueue: with spi or spread steering several
// workers share a queue; each gets its own rate, keyed by worker.
func TestWatchWorkersOnOneQueue(t *testing.T) {
	t0 := time.Unix(1000, 0)
	mk := func(at time.Time, rx0, rx1 uint64) snapshot {
		return snapshot{At: at, Stats: gateway.Stats{Engine: xdp.EngineStats{Workers: []xdp.EngineWorkerStats{
			{Worker: 0, Queue: 0, CipherRX: rx0}, {Worker: 1, Queue: 0, CipherRX: rx1},
		}}}}
	}
	r := computeRates(mk(t0, 100, 1000), mk(t0.Add(time.Second), 150, 1300))
	if len(r.Workers) != 2 || r.Workers[0].Worker != 0 || r.Workers[0].CipherRXPerSec != 50 ||
		r.Workers[1].Worker != 1 || r.Workers[1].Queue != 0 || r.Workers[1].CipherRXPerSec != 300 {
		t.Errorf("workers: %+v", r.Workers)
	}
}
