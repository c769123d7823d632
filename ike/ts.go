package ike

import (
	"net/netip"

	"github.com/espxdp/espxdp/sa"
)

// SelectorFromPrefix returns the traffic selector covering prefix p,
// any protocol, any port.
func SelectorFromPrefix(p netip.Prefix) TrafficSelector {
	p = p.Masked()
	return TrafficSelector{StartPort: 0, EndPort: 65535, Start: p.Addr(), End: lastAddr(p)}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// valid reports whether s is a well-formed selector (same family,
// ordered ranges).
func (s TrafficSelector) valid() bool {
	return s.Start.IsValid() && s.End.IsValid() && s.Start.Is4() == s.End.Is4() &&
		s.Start.Compare(s.End) <= 0 && s.StartPort <= s.EndPort
}

// intersect returns the intersection of a and b.
func intersect(a, b TrafficSelector) (TrafficSelector, bool) {
	if !a.valid() || !b.valid() || a.Start.Is4() != b.Start.Is4() {
		return TrafficSelector{}, false
	}
	r := a
	switch {
	case a.Proto == 0:
		r.Proto = b.Proto
	case b.Proto != 0 && a.Proto != b.Proto:
		return TrafficSelector{}, false
	}
	r.StartPort, r.EndPort = max(a.StartPort, b.StartPort), min(a.EndPort, b.EndPort)
	if b.Start.Compare(r.Start) > 0 {
		r.Start = b.Start
	}
	if b.End.Compare(r.End) < 0 {
		r.End = b.End
	}
	if r.StartPort > r.EndPort || r.Start.Compare(r.End) > 0 {
		return TrafficSelector{}, false
	}
	return r, true
}

// narrow intersects every proposed selector with every configured one
// (the responder's narrowing, RFC 7296 §2.9).
func narrow(proposed, configured []TrafficSelector) []TrafficSelector {
	var out []TrafficSelector
	for _, p := range proposed {
		for _, c := range configured {
			if r, ok := intersect(p, c); ok {
				out = append(out, r)
			}
		}
	}
	return out
}

// within reports whether every selector of got lies inside one of
// proposed (the initiator's check of the responder's narrowing).
func within(got, proposed []TrafficSelector) bool {
	if len(got) == 0 {
		return false
	}
	for _, g := range got {
		ok := false
		for _, p := range proposed {
			if r, in := intersect(g, p); in && r == g {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// rangePrefixes splits the address range [lo, hi] into prefixes.
func rangePrefixes(lo, hi netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	bits := lo.BitLen()
	for lo.Compare(hi) <= 0 && len(out) < 256 {
		n := bits
		for n > 0 {
			p := netip.PrefixFrom(lo, n-1).Masked()
			if p.Addr() != lo || lastAddr(p).Compare(hi) > 0 {
				break
			}
			n--
		}
		p := netip.PrefixFrom(lo, n)
		out = append(out, p)
		last := lastAddr(p)
		next := last.Next()
		if !next.IsValid() || next.Compare(last) <= 0 {
			break
		}
		lo = next
	}
	return out
}

func portRange(lo, hi uint16) sa.PortRange {
	if lo == 0 && hi == 65535 {
		return sa.PortRange{}
	}
	return sa.PortRange{Lo: lo, Hi: hi}
}

// saSelectors converts negotiated selectors into sa.Selectors for
// packets from src to dst (inbound: src is the peer's side).
func saSelectors(src, dst []TrafficSelector) []sa.Selector {
	var out []sa.Selector
	for _, s := range src {
		for _, d := range dst {
			if s.Start.Is4() != d.Start.Is4() {
				continue
			}
			proto := s.Proto
			if proto == 0 {
				proto = d.Proto
			} else if d.Proto != 0 && d.Proto != s.Proto {
				continue
			}
			for _, sp := range rangePrefixes(s.Start, s.End) {
				for _, dp := range rangePrefixes(d.Start, d.End) {
					out = append(out, sa.Selector{Src: sp, Dst: dp, Proto: proto,
						SrcPorts: portRange(s.StartPort, s.EndPort), DstPorts: portRange(d.StartPort, d.EndPort)})
				}
			}
		}
	}
	return out
}
