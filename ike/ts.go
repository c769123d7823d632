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

// Bounds on negotiated traffic selectors. The peer chooses the
// selectors of a Child SA (narrowed to the configured ones) and each
// address range becomes one or more prefixes, whose cross product
// (saSelectors) every packet of the SA scans: without a bound, a few
// kilobytes of IKE_AUTH make an SA carry millions of sa.Selectors.
//
// Invariant (TestSelectorCapsProperty): per side, at most MaxTS
// selectors covering at most MaxTSPrefixes prefixes in all, so one SA
// has at most MaxTSPrefixes² sa.Selectors in each direction. The
// responder keeps it by narrowing further (RFC 7296 §2.9 lets it pick
// a subset: it keeps the first MaxTS selectors and cuts a range at the
// end of its prefix budget), the initiator by refusing (ErrTSUnacceptable)
// a response that exceeds it.
const (
	// MaxTS is the most traffic selectors per side of a Child SA.
	MaxTS = 16
	// MaxTSPrefixes is the most address prefixes the selectors of one
	// side of a Child SA split into.
	MaxTSPrefixes = 64
)

// narrow intersects every proposed selector with every configured one
// (the responder's narrowing, RFC 7296 §2.9), then narrows the result to
// the bounds MaxTS and MaxTSPrefixes.
func narrow(proposed, configured []TrafficSelector) []TrafficSelector {
	var out []TrafficSelector
	budget := MaxTSPrefixes
	for _, p := range proposed {
		for _, c := range configured {
			if len(out) == MaxTS || budget == 0 {
				return out
			}
			r, ok := intersect(p, c)
			if !ok {
				continue
			}
			pfs := rangePrefixes(r.Start, r.End, budget+1)
			if len(pfs) > budget {
				pfs = pfs[:budget]
				r.End = lastAddr(pfs[budget-1])
			}
			budget -= len(pfs)
			out = append(out, r)
		}
	}
	return out
}

// withinBounds reports whether ts keeps the bounds MaxTS and
// MaxTSPrefixes.
func withinBounds(ts []TrafficSelector) bool {
	if len(ts) > MaxTS {
		return false
	}
	n := 0
	for _, t := range ts {
		if !t.valid() {
			return false
		}
		n += len(rangePrefixes(t.Start, t.End, MaxTSPrefixes+1))
		if n > MaxTSPrefixes {
			return false
		}
	}
	return true
}

// within reports whether every selector of got lies inside one of
// proposed (the initiator's check of the responder's narrowing), and
// that got keeps the bounds MaxTS and MaxTSPrefixes.
func within(got, proposed []TrafficSelector) bool {
	if len(got) == 0 || !withinBounds(got) {
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

// rangePrefixes splits the address range [lo, hi] into prefixes, at
// most limit of them (the first ones, in address order).
func rangePrefixes(lo, hi netip.Addr, limit int) []netip.Prefix {
	var out []netip.Prefix
	bits := lo.BitLen()
	for lo.Compare(hi) <= 0 && len(out) < limit {
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
// packets from src to dst (inbound: src is the peer's side). Selectors
// beyond the bounds MaxTS and MaxTSPrefixes (which narrow and within
// keep) are left out: the SA then carries less, never more.
func saSelectors(src, dst []TrafficSelector) []sa.Selector {
	src, dst = src[:min(len(src), MaxTS)], dst[:min(len(dst), MaxTS)]
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
			for _, sp := range rangePrefixes(s.Start, s.End, MaxTSPrefixes) {
				for _, dp := range rangePrefixes(d.Start, d.End, MaxTSPrefixes) {
					if len(out) == MaxTSPrefixes*MaxTSPrefixes {
						return out
					}
					out = append(out, sa.Selector{Src: sp, Dst: dp, Proto: proto,
						SrcPorts: portRange(s.StartPort, s.EndPort), DstPorts: portRange(d.StartPort, d.EndPort)})
				}
			}
		}
	}
	return out
}
