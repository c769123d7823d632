package config

import (
	"net/netip"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/sa"
)

// Traffic selectors (RFC 4301 §4.4.1.1, §5.2): an SA or a tunnel may name
// the inner packets it carries,
//
//	selectors: [{src: 10.2.0.0/24, dst: 10.1.0.0/24, proto: tcp, dst_ports: 80-443}]
//	selectors: any            # no check (opt out of the derived default)
//	remote_ts: [10.2.0.0/24]  # the peer's side; local_ts: [10.1.0.0/24] ours
//
// `selectors:` of an SA are written as the packets the SA carries appear
// (for an inbound SA, src is the peer's side); those of a tunnel apply to
// its inbound SAs and are written the same way. remote_ts × local_ts is
// the shorthand that orients itself by direction. Without any of these,
// a gateway derives an inbound tunnel-mode SA's selectors from what it
// sends into the SA's tunnel (Gateway.InboundSelectors).

// selectorFields are the SA and tunnel fields parsed here.
var selectorFields = map[string]bool{"selectors": true, "remote_ts": true, "local_ts": true}

// anySelector matches every packet (`selectors: any`).
var anySelector = []sa.Selector{{}}

// selectorSpec parses the selector fields found in vals (at most
// selectors, or remote_ts/local_ts); inbound orients remote_ts as the
// source. Nil means none were given.
func (p *parser) selectorSpec(vals map[string]*yaml.Node, path string, inbound bool) []sa.Selector {
	sel, rts, lts := vals["selectors"], vals["remote_ts"], vals["local_ts"]
	if sel != nil && (rts != nil || lts != nil) {
		p.errorf(sel.Line, join(path, "selectors"), "set selectors or remote_ts/local_ts, not both")
		return nil
	}
	if sel != nil {
		return p.selectorList(sel, join(path, "selectors"))
	}
	if rts == nil && lts == nil {
		return nil
	}
	var remote, local []netip.Prefix
	if rts != nil {
		remote = p.prefixOrList(rts, join(path, "remote_ts"))
	}
	if lts != nil {
		local = p.prefixOrList(lts, join(path, "local_ts"))
	}
	out := crossSelectors(remote, local, inbound)
	if len(out) == 0 {
		p.errorf(max(lineOf(rts), lineOf(lts)), join(path, "remote_ts"), "empty: an SA that carries nothing; write selectors: any to turn the check off")
	}
	return out
}

// crossSelectors returns a selector for every pair of a remote and a
// local prefix of the same family; a family missing on one side is any
// on that side.
func crossSelectors(remote, local []netip.Prefix, inbound bool) []sa.Selector {
	has := func(l []netip.Prefix, v4 bool) bool {
		return slices.ContainsFunc(l, func(p netip.Prefix) bool { return p.Addr().Is4() == v4 })
	}
	var out []sa.Selector
	add := func(r, l netip.Prefix) {
		s := sa.Selector{Src: r, Dst: l}
		if !inbound {
			s.Src, s.Dst = l, r
		}
		out = append(out, s)
	}
	for _, r := range remote {
		if !has(local, r.Addr().Is4()) {
			add(r, netip.Prefix{})
			continue
		}
		for _, l := range local {
			if l.Addr().Is4() == r.Addr().Is4() {
				add(r, l)
			}
		}
	}
	for _, l := range local {
		if !has(remote, l.Addr().Is4()) {
			add(netip.Prefix{}, l)
		}
	}
	return out
}

func (p *parser) prefixOrList(v *yaml.Node, field string) []netip.Prefix {
	if v.Kind == yaml.ScalarNode {
		if pf := p.prefix(v, field, true); pf.IsValid() {
			return []netip.Prefix{pf}
		}
		return nil
	}
	return p.prefixList(v, field)
}

var selectorKeys = map[string]bool{"src": true, "dst": true, "proto": true, "src_ports": true, "dst_ports": true}

// selectorList parses `any` or a list of {src, dst, proto, src_ports,
// dst_ports} mappings.
func (p *parser) selectorList(v *yaml.Node, path string) []sa.Selector {
	if v.Kind == yaml.ScalarNode {
		if t, _ := p.scalar(v, path); strings.EqualFold(t, "any") {
			return slices.Clone(anySelector)
		}
		p.errorf(v.Line, path, "want any or a list of {src, dst, proto, src_ports, dst_ports}")
		return nil
	}
	out := []sa.Selector{}
	p.list(v, path, func(m *yaml.Node, f string) {
		if m.Kind != yaml.MappingNode {
			p.errorf(m.Line, f, "want a mapping {src, dst, proto, src_ports, dst_ports}")
			return
		}
		var s sa.Selector
		p.fields(m, f, func(key string, _, v *yaml.Node) bool {
			if !selectorKeys[key] {
				return false
			}
			kf := join(f, key)
			switch key {
			case "src":
				s.Src = p.prefix(v, kf, true)
			case "dst":
				s.Dst = p.prefix(v, kf, true)
			case "proto":
				s.Proto = p.proto(v, kf)
			case "src_ports":
				s.SrcPorts = p.ports(v, kf)
			case "dst_ports":
				s.DstPorts = p.ports(v, kf)
			}
			return true
		})
		if s.Src.IsValid() && s.Dst.IsValid() && s.Src.Addr().Is4() != s.Dst.Addr().Is4() {
			p.errorf(m.Line, f, "src and dst of different address families")
		}
		if (!s.SrcPorts.IsZero() || !s.DstPorts.IsZero()) && s.Proto != 6 && s.Proto != 17 && s.Proto != 132 {
			p.errorf(m.Line, f, "ports need proto tcp, udp or sctp")
		}
		out = append(out, s)
	})
	if len(out) == 0 {
		p.errorf(v.Line, path, "empty: an SA that carries nothing; write any to turn the check off")
	}
	return out
}

// TunnelOf returns the name of the configured tunnel the SA called name
// is bound to, or "". A nil Gateway has none.
func (g *Gateway) TunnelOf(name string) string {
	if g == nil {
		return ""
	}
	for _, t := range g.Tunnels {
		if slices.Contains(t.Out, name) || slices.Contains(t.In, name) {
			return t.Name
		}
	}
	return ""
}

// SelectorsOf returns the traffic selectors the SA s gets when bound to
// tunnel (a configured tunnel's name, or ""): its own (selectors:,
// remote_ts/local_ts), else for an inbound SA its tunnel's, else for an
// inbound tunnel-mode SA those derived by InboundSelectors. Nil means no
// check. A nil Gateway (a file with only sas) gives s's own.
func (g *Gateway) SelectorsOf(s *SA, tunnel string) []sa.Selector {
	if s.Selectors != nil {
		return slices.Clone(s.Selectors)
	}
	if g == nil || s.Direction != In {
		return nil
	}
	for _, t := range g.Tunnels {
		if t.Name == tunnel && t.Selectors != nil {
			return slices.Clone(t.Selectors)
		}
	}
	if s.Mode != esp.Tunnel {
		// Transport mode: the inner addresses are the (possibly
		// NAT-rewritten) endpoints; nothing to derive.
		return nil
	}
	return g.InboundSelectors(tunnel)
}

// InboundSelectors derives the selectors of the inbound SAs of tunnel
// from the configuration (RFC 4301 §5.2: what a tunnel may deliver is
// what the gateway sends into it, mirrored):
//
//   - every protect policy bound to the tunnel (by tunnel:, by an
//     outbound SA of the tunnel, or unbound, which means the first
//     tunnel) gives its selector with source and destination swapped;
//   - the first tunnel (the default route of the processor) also
//     accepts sources in the protected prefixes (AF_XDP gateway) or the
//     TUN routes, to any destination (the configuration does not know
//     the local prefixes), minus every address that a protect policy
//     sends into another tunnel: a protected prefix is split around the
//     destination prefixes of those policies (a prefix inside one of
//     them is left out whole). The policy's source side is not taken
//     into account (conservative: the address belongs to the other
//     tunnel's peer for at least some local hosts, so the default
//     tunnel's peer never speaks for it), and neither are bypass or
//     discard policies. The remote_ts of the IKE peers (peers:) of other
//     tunnels are left out the same way: they are the peers' networks.
//
// Invariant (TestSelectorsInvariant, TestRedTeamDefaultTunnelAccepts-
// OtherPeersSources): no inbound SA of one tunnel accepts an inner
// source that a protect policy binds to another tunnel, unless a policy
// of its own tunnel sends to that address too.
//
// An SA in no tunnel ("") gets, when tunnels are configured, the
// mirrored protect policies bound (by sa:) to an outbound SA in no
// tunnel, and the protected prefixes and TUN routes minus every address
// a policy binds to some tunnel - no longer the union over all tunnels,
// which let its peer speak for every other peer (without tunnels, "" is
// the default and gets everything as above). Nil means
// the configuration sends nothing into the tunnel (the caller warns).
func (g *Gateway) InboundSelectors(tunnel string) []sa.Selector {
	if g == nil {
		return nil
	}
	def := ""
	if len(g.Tunnels) > 0 {
		def = g.Tunnels[0].Name
	}
	var out []sa.Selector
	add := func(s sa.Selector) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	// others: the remote-side prefixes policies send into tunnels other
	// than this one (an invalid prefix is any address), and the
	// remote_ts of the peers of other tunnels.
	var others []netip.Prefix
	for pt, ts := range g.peerTS {
		if pt != tunnel {
			others = append(others, ts...)
		}
	}
	for _, pol := range g.Policies {
		if pol.Action != sa.Protect {
			continue
		}
		bound := pol.Tunnel
		switch {
		case pol.SA != "":
			bound = g.TunnelOf(pol.SA)
		case bound == "":
			bound = def
		}
		if bound != tunnel {
			others = append(others, pol.Selector.Dst)
			continue
		}
		ps := pol.Selector
		add(sa.Selector{Src: ps.Dst, Dst: ps.Src, Proto: ps.Proto, SrcPorts: ps.DstPorts, DstPorts: ps.SrcPorts})
	}
	if tunnel == def || tunnel == "" {
		var pfs []netip.Prefix
		pfs = append(pfs, g.Protected...)
		if g.TUN != nil {
			pfs = append(pfs, g.TUN.Routes...)
		}
		for _, pf := range pfs {
			for _, p := range subtractPrefixes(pf, others) {
				add(sa.Selector{Src: p})
			}
		}
	}
	return out
}

// subtractPrefixes returns p minus the addresses of every prefix in
// minus (an invalid prefix in minus removes everything), as disjoint
// prefixes in address order. The result has at most 128 prefixes per
// element of minus.
func subtractPrefixes(p netip.Prefix, minus []netip.Prefix) []netip.Prefix {
	p = p.Masked()
	for _, m := range minus {
		if !m.IsValid() {
			return nil
		}
		m = m.Masked()
		if m.Addr().Is4() != p.Addr().Is4() || !m.Overlaps(p) {
			continue
		}
		if m.Bits() <= p.Bits() {
			return nil // m contains p
		}
		// m is strictly inside p: split p in halves and recurse.
		lo := netip.PrefixFrom(p.Addr(), p.Bits()+1)
		hi := netip.PrefixFrom(lastAddr(p), p.Bits()+1).Masked()
		return append(subtractPrefixes(lo, minus), subtractPrefixes(hi, minus)...)
	}
	return []netip.Prefix{p}
}

// lastAddr returns the highest address of p (p masked).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
