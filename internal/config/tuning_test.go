package config

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/espxdp/espxdp/sa"
)

// tuningGW is a gateway file with the given gateway options (one per
// line, indented by the caller) on lines 2.. .
func tuningGW(opts string) string {
	return "gateway:\n" + opts + "interfaces:\n  cipher: {name: a, next_hop: \"02:00:00:00:00:01\"}\n  tun: {name: t}\n" +
		gwYAML[strings.Index(gwYAML, "sas:"):]
}

func TestGatewayTuning(t *testing.T) {
	cfg, err := Parse("gw.yaml", []byte(tuningGW(`  queues: 2
  workers: 4
  concurrency: shared
  steering: spread
  spread_chunk: 64
  rings: {rx: 8192, tx: 1024, fill: 8192}
  busy_poll: {usecs: 50, budget: 64, prefer: true}
`)))
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Gateway
	if g.Queues != 2 || g.Workers != 4 || g.EngineWorkers() != 4 || g.Steering != SteerSpread || g.SpreadChunk != 64 ||
		g.Rings != (Rings{RX: 8192, TX: 1024, Fill: 8192}) || g.BusyPoll != (BusyPoll{Usecs: 50, Budget: 64, Prefer: true}) {
		t.Errorf("tuning: %+v", g)
	}

	// Defaults: today's behaviour, one worker per queue, auto steering,
	// engine ring sizes, no busy polling.
	cfg, err = Parse("gw.yaml", []byte(tuningGW("  queues: 3\n")))
	if err != nil {
		t.Fatal(err)
	}
	g = cfg.Gateway
	if g.Workers != 0 || g.EngineWorkers() != 3 || g.Steering != SteerAuto || g.SpreadChunk != 0 ||
		g.Rings != (Rings{}) || g.BusyPoll != (BusyPoll{}) {
		t.Errorf("defaults: %+v", g)
	}
}

// TestGatewayEffectiveSteering checks that auto steering follows the
// concurrency mode as the engine's SteerAuto does.
func TestGatewayEffectiveSteering(t *testing.T) {
	for _, tc := range []struct {
		opts, want string
	}{
		{"  queues: 1\n", SteerQueue}, // one worker, one queue
		{"  workers: 2\n", SteerSpread},
		{"  workers: 2\n  concurrency: shared\n", SteerSpread},
		{"  workers: 2\n  concurrency: sharded\n", SteerSPI},
		{"  workers: 2\n  concurrency: percpu\n", SteerSPI},
		{"  workers: 2\n  concurrency: ordered\n", SteerSPI},
		{"  queues: 2\n  concurrency: ordered\n", SteerSPI},
		{"  queues: 2\n  steering: queue\n", SteerQueue},
		{"  queues: 2\n  jumbo: true\n", SteerQueue},
		{"  workers: 2\n  concurrency: sharded\n  steering: spread\n", SteerSpread},
	} {
		cfg, err := Parse("gw.yaml", []byte(tuningGW(tc.opts)))
		if err != nil {
			t.Errorf("%q: %v", tc.opts, err)
			continue
		}
		if got := cfg.Gateway.EffectiveSteering(); got != tc.want {
			t.Errorf("%q: steering %s, want %s", tc.opts, got, tc.want)
		}
	}
}

func TestGatewayTuningErrors(t *testing.T) {
	for _, tc := range []struct {
		name, opts, want string
	}{
		{"workers 0", "  workers: 0\n", "gw.yaml:2: gateway.workers: want 1..64, got 0"},
		{"workers 65", "  workers: 65\n", "gw.yaml:2: gateway.workers: want 1..64"},
		{"workers word", "  workers: many\n", "gw.yaml:2: gateway.workers: want a non-negative"},
		{"steering", "  steering: rss\n", "gw.yaml:2: gateway.steering: want auto, queue, spi, spread, got \"rss\""},
		{"queue steering workers", "  queues: 2\n  workers: 4\n  steering: queue\n", "gw.yaml:4: gateway.steering: queue steering gives each worker one queue: want workers equal to queues (2), got 4"},
		{"jumbo spread", "  workers: 2\n  jumbo: true\n  steering: spread\n", "gw.yaml:4: gateway.steering: jumbo (multi-buffer) needs queue steering, not spread"},
		{"jumbo workers", "  workers: 2\n  jumbo: true\n", "gw.yaml:2: gateway.workers: jumbo (multi-buffer) needs one worker per queue: want 1, got 2"},
		{"jumbo concurrency", "  jumbo: true\n  concurrency: ordered\n", "gw.yaml:3: gateway.concurrency: jumbo (multi-buffer) needs the shared concurrency mode"},
		{"chunk not pow2", "  workers: 2\n  spread_chunk: 48\n", "gw.yaml:3: gateway.spread_chunk: want a power of two 1..32768, got 48"},
		{"chunk without spread", "  workers: 2\n  concurrency: percpu\n  spread_chunk: 16\n", "gw.yaml:4: gateway.spread_chunk: only with spread steering (here spi)"},
		{"chunk single worker", "  spread_chunk: 16\n", "gw.yaml:2: gateway.spread_chunk: only with spread steering (here queue)"},
		{"rings not mapping", "  rings: 4096\n", "gw.yaml:2: gateway.rings: want a mapping"},
		{"ring not pow2", "  rings:\n    rx: 3000\n", "gw.yaml:3: gateway.rings.rx: want a power of two 64..65536, got 3000"},
		{"ring too big", "  rings: {tx: 131072}\n", "gw.yaml:2: gateway.rings.tx: want a power of two 64..65536, got 131072"},
		{"ring too small", "  rings: {fill: 32}\n", "gw.yaml:2: gateway.rings.fill: want a power of two"},
		{"ring unknown", "  rings:\n    completion: 2048\n", "gw.yaml:3: gateway.rings.completion: unknown field"},
		{"busy poll usecs", "  busy_poll: {usecs: 5000}\n", "gw.yaml:2: gateway.busy_poll.usecs: want 1..1000 microseconds"},
		{"busy poll zero", "  busy_poll: {usecs: 0}\n", "gw.yaml:2: gateway.busy_poll.usecs: want 1..1000"},
		{"busy poll budget", "  busy_poll:\n    usecs: 50\n    budget: 65\n", "gw.yaml:4: gateway.busy_poll.budget: want 1..64 packets, got 65"},
		{"busy poll no usecs", "  busy_poll: {prefer: true}\n", "gw.yaml:2: gateway.busy_poll.usecs: missing"},
		{"busy poll prefer", "  busy_poll: {usecs: 10, prefer: maybe}\n", "gw.yaml:2: gateway.busy_poll.prefer"},
		{"busy poll unknown", "  busy_poll: {usecs: 10, spin: 1}\n", "gw.yaml:2: gateway.busy_poll.spin: unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("gw.yaml", []byte(tuningGW(tc.opts)))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestGatewayTuningProperty parses random combinations of the tuning
// options and checks the invariant the parser keeps: a configuration it
// accepts is one the engine accepts at start — workers 1..MaxWorkers,
// queue steering only with a worker per queue, jumbo only with queue
// steering and shared concurrency, spread_chunk only with spread steering
// and a power of two, ring sizes powers of two in range, busy polling in
// range with usecs set.
func TestGatewayTuningProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 1))
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	accepted := 0
	for range 2000 {
		var b strings.Builder
		if r.IntN(2) == 0 {
			fmt.Fprintf(&b, "  queues: %s\n", pick("1", "2", "3"))
		}
		if r.IntN(2) == 0 {
			fmt.Fprintf(&b, "  workers: %s\n", pick("0", "1", "2", "3", "4", "64", "65"))
		}
		if r.IntN(2) == 0 {
			fmt.Fprintf(&b, "  concurrency: %s\n", pick("shared", "sharded", "percpu", "ordered"))
		}
		if r.IntN(2) == 0 {
			fmt.Fprintf(&b, "  steering: %s\n", pick("auto", "queue", "spi", "spread", "bogus"))
		}
		if r.IntN(3) == 0 {
			fmt.Fprintf(&b, "  spread_chunk: %s\n", pick("0", "1", "16", "48", "32768", "65536"))
		}
		if r.IntN(4) == 0 {
			b.WriteString("  jumbo: true\n")
		}
		if r.IntN(3) == 0 {
			fmt.Fprintf(&b, "  rings: {%s: %s}\n", pick("rx", "tx", "fill"), pick("32", "64", "100", "4096", "65536", "131072"))
		}
		if r.IntN(3) == 0 {
			fmt.Fprintf(&b, "  busy_poll: {usecs: %s, budget: %s}\n", pick("0", "1", "50", "1000", "1001"), pick("1", "64", "65"))
		}
		cfg, err := Parse("gw.yaml", []byte(tuningGW(b.String())))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("%s: error %v is not ErrInvalid", b.String(), err)
			}
			continue
		}
		accepted++
		g := cfg.Gateway
		w, st := g.EngineWorkers(), g.EffectiveSteering()
		bad := func(why string) { t.Fatalf("accepted %s(%+v): %s", b.String(), g, why) }
		if w < 1 || w > MaxWorkers {
			bad("workers out of range")
		}
		if st == SteerQueue && w != g.Queues {
			bad("queue steering without a worker per queue")
		}
		if g.Jumbo && (st != SteerQueue || g.Concurrency != sa.Shared) {
			bad("jumbo without queue steering and shared concurrency")
		}
		if g.SpreadChunk != 0 && (st != SteerSpread || g.SpreadChunk&(g.SpreadChunk-1) != 0 || g.SpreadChunk > MaxSpreadChunk) {
			bad("spread_chunk")
		}
		for _, n := range []int{g.Rings.RX, g.Rings.TX, g.Rings.Fill} {
			if n != 0 && (n < MinRingSize || n > MaxRingSize || n&(n-1) != 0) {
				bad("ring size")
			}
		}
		if bp := g.BusyPoll; bp != (BusyPoll{}) && (bp.Usecs < 1 || bp.Usecs > MaxBusyPollUsecs || bp.Budget > MaxBusyPollBudget) {
			bad("busy_poll")
		}
	}
	if accepted < 100 {
		t.Errorf("only %d of 2000 random configurations accepted: the property checks too little", accepted)
	}
}
