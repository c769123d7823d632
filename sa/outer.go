package sa

import (
	"net/netip"
	"time"

	"github.com/espxdp/espxdp/esp"
)

// Outer-header checks of inbound packets (RFC 4301 §5.2 asks the
// receiver to check that a packet arrived on the SA it claims; RFC 3948
// §3 that ESP-in-UDP is only accepted by SAs negotiated with it).
//
// They run in two places. Before decryption, the cheap header facts that
// decide the packet's fate whatever its ICV: the encapsulation, the
// outer destination (Local) and, unless FloatRemote, the outer source
// (Remote, and RemotePort with UDPEncap). Dropping such packets early
// saves the decryption of garbage. After authentication, and only for
// FloatRemote SAs, the source is compared with the last known endpoint:
// a NAT-T peer's move is believed only from a packet that verified and
// advanced the replay window (RFC 7296 §2.23), so neither a forged nor
// a replayed or delayed packet can report a new endpoint.
//
// ESPOnly packets have no outer header (the embedder's UDP socket owns
// it) and skip both; the embedder checks its socket's peer itself.

// outerCheck returns the reason to drop a packet whose outer headers
// (parsed by esp.ParseOuter) do not fit s, or DropNone. a is the SA's
// mutable attributes as loaded for the current run (the peer's address
// and port can change with SA.Update). A few compares, no allocation.
func (s *SA) outerCheck(a *attrs, p *esp.Parsed) DropReason {
	c := &s.cfg
	if p.UDP != c.UDPEncap {
		return DropEncap
	}
	if c.Local.IsValid() && p.Dst != c.Local {
		return DropOuter
	}
	if !c.FloatRemote {
		if a.outer.Dst.IsValid() && p.Src != a.outer.Dst {
			return DropOuter
		}
		if p.UDP && p.SrcPort != a.remotePort {
			return DropOuter
		}
	}
	return DropNone
}

// configEndpoint is the peer's endpoint as configured (by New or the
// last SA.Update): Remote, and RemotePort with UDPEncap (else port 0).
func (s *SA) configEndpoint() netip.AddrPort {
	return s.attrs.Load().endpoint(s.cfg.UDPEncap)
}

// endpoint is the peer's address, with its UDP port when udp.
func (a *attrs) endpoint(udp bool) netip.AddrPort {
	var port uint16
	if udp {
		port = a.remotePort
	}
	return netip.AddrPortFrom(a.outer.Dst, port)
}

// Endpoint returns the peer's outer address and port as last seen by an
// inbound SA with Config.FloatRemote (the configured Remote and
// RemotePort until a move was reported), or the configured ones.
func (s *SA) Endpoint() netip.AddrPort {
	if p := s.lastEP.Load(); p != nil {
		return *p
	}
	return s.configEndpoint()
}

// noteEndpoint records the source of an authenticated packet that
// advanced the window of a FloatRemote SA and raises
// EventEndpointChanged when it differs from the last endpoint reported
// (at most once per move: the comparison is with the last one, not the
// configured one). It allocates only when the endpoint changes.
func (s *SA) noteEndpoint(src netip.Addr, port uint16, now int64, sink eventSink) {
	ep := netip.AddrPortFrom(src, port)
	cur := s.lastEP.Load()
	if cur == nil && ep == s.configEndpoint() || cur != nil && *cur == ep {
		return
	}
	p := new(netip.AddrPort) // only here: ep itself must not escape
	*p = ep
	if s.lastEP.CompareAndSwap(cur, p) {
		s.emit(sink, Event{Kind: EventEndpointChanged, Time: time.Unix(0, now), Endpoint: ep})
	}
}
