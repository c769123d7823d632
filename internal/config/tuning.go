package config

import (
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/espxdp/espxdp/sa"
)

// Limits of the engine tuning options. They are the xdp and bpf
// packages' (bpf.MaxSocketsPerQueue, bpf.MaxSpreadChunk,
// xdp.MaxRingSize, xdp.MaxBusyPollUsecs, xdp.MaxBusyPollBudget), repeated
// here so that the configuration does not link the data plane; a test in
// internal/gateway checks they agree.
const (
	// MaxWorkers is the largest gateway.workers.
	MaxWorkers = 64
	// MaxSpreadChunk is the largest gateway.spread_chunk.
	MaxSpreadChunk = 1 << 15
	// MinRingSize and MaxRingSize bound gateway.rings sizes.
	MinRingSize = 64
	MaxRingSize = 1 << 16
	// MaxBusyPollUsecs and MaxBusyPollBudget bound gateway.busy_poll.
	MaxBusyPollUsecs  = 1000
	MaxBusyPollBudget = 64
)

// Steering names of gateway.steering (xdp.Steering).
const (
	SteerAuto   = "auto"
	SteerQueue  = "queue"
	SteerSPI    = "spi"
	SteerSpread = "spread"
)

// Rings are the AF_XDP ring sizes of every engine socket
// (gateway.rings: {rx, tx, fill}); 0: the engine's default
// (xdp.EngineRXSize, EngineTXSize, EngineFillSize). The completion ring
// follows tx.
type Rings struct {
	RX, TX, Fill int
}

// BusyPoll is gateway.busy_poll: {usecs, budget, prefer}, preferred
// busy polling of the engine's sockets (xdp.BusyPoll). Usecs 0: off.
//
// Off by default, although it measured better (one TCP stream through
// two AF_XDP gateways on veth: 1.93 against 1.43 Gbit/s, CPU per GB at
// full load about the same, bench/RESULTS.md "Peers"), because:
//   - it turns every wait of a worker into a spin of up to usecs: the
//     gain was measured at full load, where workers rarely wait; at low
//     load the spinning costs CPU that was not measured, and on shared
//     hosts (VMs, containers, the box the bench ran on) that CPU is taken
//     from the neighbours;
//   - the gain came from veth, whose NAPI the worker's own system calls
//     then run; on a physical NIC the kernel leaves the queue to the
//     workers only with the interface's interrupts deferred
//     (napi_defer_hard_irqs, gro_flush_timeout), host settings the
//     daemon does not make;
//   - set explicitly, a kernel that refuses it (before 5.11 for budget
//     and prefer) stops the start instead of running without what the
//     operator asked for, which a default could not do.
//
// Turn it on where a core per queue is the gateway's to spend.
type BusyPoll struct {
	Usecs  int
	Budget int
	Prefer bool
}

// EngineWorkers is the number of engine (and SA processor) workers:
// gateway.workers, or by default one per queue.
func (g *Gateway) EngineWorkers() int {
	if g.Workers > 0 {
		return g.Workers
	}
	return g.Queues
}

// EffectiveSteering is the steering the engine uses for g: gateway.steering,
// or for auto what the engine's SteerAuto picks: queue with one worker
// on one queue or with jumbo (multi-buffer); else spread for the shared
// concurrency mode (one SA's packets dealt over every worker) and spi
// for sharded, percpu and ordered (each SA's packets reach its owner or
// sequencer).
func (g *Gateway) EffectiveSteering() string {
	if g.Steering != "" && g.Steering != SteerAuto {
		return g.Steering
	}
	switch {
	case g.EngineWorkers() == 1 && g.Queues == 1 || g.Jumbo:
		return SteerQueue
	case g.Concurrency == sa.Shared:
		return SteerSpread
	default:
		return SteerSPI
	}
}

var tuningFields = map[string]bool{
	"workers": true, "steering": true, "spread_chunk": true, "rings": true, "busy_poll": true,
}

// tuningOption parses one engine tuning option of the gateway section.
func (p *parser) tuningOption(key string, v *yaml.Node, g *Gateway) {
	f := "gateway." + key
	switch key {
	case "workers":
		if x, ok := p.uint(v, f, 16); ok {
			if x < 1 || x > MaxWorkers {
				p.errorf(v.Line, f, "want 1..%d, got %d", MaxWorkers, x)
			}
			g.Workers = int(x)
		}
	case "steering":
		g.Steering = p.oneOf(v, f, SteerAuto, SteerQueue, SteerSPI, SteerSpread)
	case "spread_chunk":
		if x, ok := p.uint(v, f, 16); ok {
			if x < 1 || x > MaxSpreadChunk || x&(x-1) != 0 {
				p.errorf(v.Line, f, "want a power of two 1..%d, got %d", MaxSpreadChunk, x)
			}
			g.SpreadChunk = int(x)
		}
	case "rings":
		if v.Kind != yaml.MappingNode {
			p.errorf(v.Line, f, "want a mapping such as {rx: 4096, tx: 2048, fill: 4096}")
			return
		}
		p.fields(v, f, func(k string, _, w *yaml.Node) bool {
			var dst *int
			switch k {
			case "rx":
				dst = &g.Rings.RX
			case "tx":
				dst = &g.Rings.TX
			case "fill":
				dst = &g.Rings.Fill
			default:
				return false
			}
			ff := f + "." + k
			if x, ok := p.uint(w, ff, 32); ok {
				if x < MinRingSize || x > MaxRingSize || x&(x-1) != 0 {
					p.errorf(w.Line, ff, "want a power of two %d..%d, got %d", MinRingSize, MaxRingSize, x)
				}
				*dst = int(x)
			}
			return true
		})
	case "busy_poll":
		if v.Kind != yaml.MappingNode {
			p.errorf(v.Line, f, "want a mapping such as {usecs: 50, budget: 64, prefer: true}")
			return
		}
		var usecs *yaml.Node
		p.fields(v, f, func(k string, _, w *yaml.Node) bool {
			ff := f + "." + k
			switch k {
			case "usecs":
				usecs = w
				if x, ok := p.uint(w, ff, 32); ok {
					if x < 1 || x > MaxBusyPollUsecs {
						p.errorf(w.Line, ff, "want 1..%d microseconds (leave busy_poll out for off), got %d", MaxBusyPollUsecs, x)
					}
					g.BusyPoll.Usecs = int(x)
				}
			case "budget":
				if x, ok := p.uint(w, ff, 32); ok {
					if x < 1 || x > MaxBusyPollBudget {
						p.errorf(w.Line, ff, "want 1..%d packets, got %d", MaxBusyPollBudget, x)
					}
					g.BusyPoll.Budget = int(x)
				}
			case "prefer":
				g.BusyPoll.Prefer, _ = p.bool(w, ff)
			default:
				return false
			}
			return true
		})
		if usecs == nil {
			p.errorf(v.Line, f+".usecs", "missing: how long a system call busy-polls (budget and prefer need it)")
		}
	}
}

// checkTuning checks the tuning options against each other and the
// rest of the gateway section n (after all its options are parsed), so
// that a combination the engine would refuse at start is an error at
// the line of the option that makes it impossible.
func (p *parser) checkTuning(n *yaml.Node, g *Gateway) {
	line := func(key string) int {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if deref(n.Content[i]).Value == key {
				return deref(n.Content[i+1]).Line
			}
		}
		return n.Line
	}
	st := g.EffectiveSteering()
	switch {
	case g.Steering == SteerQueue && g.EngineWorkers() != g.Queues:
		p.errorf(line("steering"), "gateway.steering", "queue steering gives each worker one queue: want workers equal to queues (%d), got %d", g.Queues, g.EngineWorkers())
	case g.Jumbo && st != SteerQueue:
		p.errorf(line("steering"), "gateway.steering", "jumbo (multi-buffer) needs queue steering, not %s", st)
	case g.Jumbo && g.EngineWorkers() != g.Queues:
		p.errorf(line("workers"), "gateway.workers", "jumbo (multi-buffer) needs one worker per queue: want %d, got %d", g.Queues, g.EngineWorkers())
	}
	if g.Jumbo && g.Concurrency != sa.Shared {
		p.errorf(line("concurrency"), "gateway.concurrency", "jumbo (multi-buffer) needs the shared concurrency mode, not %s", strings.ToLower(g.Concurrency.String()))
	}
	if g.SpreadChunk != 0 && st != SteerSpread {
		p.errorf(line("spread_chunk"), "gateway.spread_chunk", "only with spread steering (here %s)", st)
	}
}
