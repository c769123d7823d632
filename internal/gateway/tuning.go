package gateway

import (
	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/xdp"
)

// steering maps gateway.steering to the engine's.
func steering(s string) xdp.Steering {
	switch s {
	case config.SteerQueue:
		return xdp.SteerQueue
	case config.SteerSPI:
		return xdp.SteerSPI
	case config.SteerSpread:
		return xdp.SteerSpread
	}
	return xdp.SteerAuto
}

// tuneEngine sets the engine tuning of g on ec: workers, steering,
// spreading, ring sizes and busy polling (zero values: the engine's
// defaults).
func tuneEngine(ec *xdp.EngineConfig, g *config.Gateway) {
	ec.Workers = g.EngineWorkers()
	ec.Steering = steering(g.Steering)
	ec.SpreadChunk = g.SpreadChunk
	ec.RXSize, ec.TXSize = g.Rings.RX, g.Rings.TX
	ec.UMEM.FillSize = g.Rings.Fill
	ec.BusyPoll = xdp.BusyPoll{Usecs: g.BusyPoll.Usecs, Budget: g.BusyPoll.Budget, Prefer: g.BusyPoll.Prefer}
}

// sameTuning reports whether a and b tune the engine alike.
func sameTuning(a, b *config.Gateway) bool {
	return a.EngineWorkers() == b.EngineWorkers() && a.EffectiveSteering() == b.EffectiveSteering() &&
		a.SpreadChunk == b.SpreadChunk && a.Rings == b.Rings && a.BusyPoll == b.BusyPoll
}

// EngineInfo is how the data plane is laid out: what show stats and the
// metrics report beside the counters.
type EngineInfo struct {
	// Steering is the steering the engine runs with (queue, spi or
	// spread; auto resolved), "" when no engine runs.
	Steering string `json:"steering,omitempty"`
	// Workers and Queues: engine workers and interface queues served.
	Workers int `json:"workers"`
	Queues  int `json:"queues"`
}
