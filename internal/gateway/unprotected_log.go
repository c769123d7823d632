package gateway

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/espxdp/espxdp/bpf"
	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/internal/show"
)

// unprotectedStats fills the clear-text discard counters of s from the
// engine's (s.Engine must be set).
func (gw *Gateway) unprotectedStats(s *Stats) {
	g := gw.config()
	s.UnprotectedDropped = s.Engine.CipherProgram.UnprotectedDropped
	s.UnprotectedBypassed = s.Engine.CipherProgram.BypassPassed
	for i, n := range s.Engine.UnprotectedDrops {
		if s.UnprotectedByTunnel == nil {
			s.UnprotectedByTunnel = map[string]uint64{}
		}
		s.UnprotectedByTunnel[tunnelLabel(g, i)] += n
	}
}

// tunnelLabel names a tunnel counter index: the tunnel's name, or "-"
// for drops no tunnel can be blamed for.
func tunnelLabel(g *config.Gateway, i int) string {
	if name := TunnelName(g, i); name != "" {
		return name
	}
	if i == 0 {
		return "-"
	}
	return "#" + strconv.Itoa(i)
}

// config is the gateway configuration in force (Reload swaps it).
func (gw *Gateway) config() *config.Gateway {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	return gw.g
}

// unprotectedCounters are the show lines of the clear-text discard.
func unprotectedCounters(s Stats) []show.Counter {
	out := []show.Counter{
		{Name: "unprotected discarded", Value: s.UnprotectedDropped},
		{Name: "unprotected bypassed", Value: s.UnprotectedBypassed},
	}
	names := make([]string, 0, len(s.UnprotectedByTunnel))
	for n := range s.UnprotectedByTunnel {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		out = append(out, show.Counter{Name: "unprotected discarded, tunnel " + n, Value: s.UnprotectedByTunnel[n]})
	}
	return out
}

// logUnprotected writes at most one line per interval while clear text
// from the protected networks is being discarded, in the spirit of IOS's
// %CRYPTO-4-RECVD_PKT_NOT_IPSEC: how many, and the last one's addresses.
func (gw *Gateway) logUnprotected(interval time.Duration) {
	defer gw.wg.Done()
	if interval <= 0 {
		return
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last uint64
	for {
		select {
		case <-gw.stop:
			return
		case <-tick.C:
		}
		gw.mu.Lock()
		eng := gw.eng
		gw.mu.Unlock()
		if eng == nil {
			continue
		}
		es := eng.Stats()
		n := es.CipherProgram.UnprotectedDropped
		if n <= last {
			last = n
			continue
		}
		if p := es.LastUnprotected; p != nil {
			gw.log.Warn(unprotectedMessage(*p), "count", n-last, "interval", interval,
				"proto", p.Proto, "tunnel", tunnelLabel(gw.config(), p.Tunnel))
		}
		last = n
	}
}

// unprotectedMessage is the log message of a discarded packet.
func unprotectedMessage(p bpf.UnprotectedPacket) string {
	return fmt.Sprintf("%%CRYPTO-4-RECVD_PKT_NOT_IPSEC: unprotected packet from %v to %v discarded", p.Src, p.Dst)
}
