package gateway

import (
	"github.com/espxdp/espxdp/esp/reasm"
	"github.com/espxdp/espxdp/internal/show"
	"github.com/espxdp/espxdp/xdp"
)

// routerOptions copies the gateway duties (MSS clamping, TTL, ICMP
// errors) into the engine configuration. ICMP errors come from the
// plain interface's address; a TUN gateway leaves path MTU discovery to
// the kernel, which checks every packet it routes into the TUN against
// the TUN's MTU (the SAs' plaintext MTU) and answers itself.
func (gw *Gateway) routerOptions(ec *xdp.EngineConfig) {
	g := gw.g
	ec.ClampMSS = g.MSSClamp
	ec.DecrementTTL = g.DecrementTTL
	ec.FragmentInner = g.Fragmentation == "before-encryption"
	ec.MultiBuffer = g.Jumbo
	if g.Reassembly {
		ec.Reassembly = &reasm.Config{} // the package's bounds (sets, fragments, memory, timeout)
	}
	if g.Plain != nil && g.ICMPErrors && g.Plain.Address.IsValid() {
		ec.ICMPErrors = true
		if a := g.Plain.Address; a.Is4() {
			ec.ICMPSource4 = a
		} else {
			ec.ICMPSource6 = a
		}
	}
}

// routerCounters are the router-duty counters for show.
func (gw *Gateway) routerCounters(s Stats) []show.Counter {
	c := []show.Counter{
		{Name: "mss clamped", Value: s.MSSClamped}, {Name: "ttl expired", Value: s.TTLExpired},
		{Name: "icmp errors sent", Value: s.ICMPSent}, {Name: "icmp rate-limited", Value: s.ICMPRateLimited},
		{Name: "icmp not sent", Value: s.ICMPNotSent},
		{Name: "pmtu learned", Value: s.Wire.PMTUAccepted}, {Name: "pmtu rejected", Value: sumValues(s.Wire.PMTURejected)},
		{Name: "vlan drops", Value: s.Wire.VLANDrops}, {Name: "xsk rx dropped", Value: s.Wire.XSKRXDropped},
		{Name: "fragmented before encryption", Value: s.Wire.Fragmented},
		{Name: "outer fragments", Value: s.Wire.Reassembly.Fragments},
		{Name: "outer packets reassembled", Value: s.Wire.Reassembly.Reassembled},
		{Name: "outer fragments dropped", Value: s.Wire.Reassembly.Refused() + s.Wire.Reassembly.Discarded + s.Wire.ReasmNoFrame},
	}
	if t := s.TUN; t != nil {
		c = append(c,
			show.Counter{Name: "tun super-packets split", Value: t.SplitSuperPackets},
			show.Counter{Name: "tun segments split", Value: t.SplitSegments},
			show.Counter{Name: "tun super-packets coalesced", Value: t.CoalescedSuperPackets},
			show.Counter{Name: "tun segments coalesced", Value: t.CoalescedSegments},
			show.Counter{Name: "tun drops", Value: t.ReadDrops + t.OversizeDrops},
			show.Counter{Name: "tun write errors", Value: t.WriteErrors})
	}
	return c
}

func sumValues(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}
