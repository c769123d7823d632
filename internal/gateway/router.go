package gateway

import (
	"github.com/espxdp/espxdp/internal/show"
	"github.com/espxdp/espxdp/xdp"
)

// routerOptions copies the gateway duties (MSS clamping, TTL, ICMP
// errors) into the engine configuration.
func (gw *Gateway) routerOptions(ec *xdp.EngineConfig) {}

// routerCounters are the router-duty counters for show.
func (gw *Gateway) routerCounters(s Stats) []show.Counter { return nil }
