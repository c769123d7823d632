package gateway

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"

	"github.com/espxdp/espxdp/bpf"
	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/sa"
)

// ErrTooManyPolicies: more policies than the XDP program's clear-text
// rules hold (bpf.MaxUnprotectedRules).
var ErrTooManyPolicies = errors.New("gateway: too many policies for the clear-text discard")

// Unprotected derives from a gateway configuration the clear text that
// must never cross the gateway (RFC 4301 §5.2): the remote protected
// networks and the SPD read in the inbound direction.
//
//   - The remote protected networks are the protected prefixes (plain
//     interface) and the TUN routes: everything to them goes through the
//     default tunnel, so clear text from them is dropped unless a bypass
//     policy exempts it; and the destinations of protect and discard
//     policies, RulesOnly: from those, the first matching policy decides.
//   - Every policy, in order, becomes an inbound rule: its selector with
//     source and destination (and their ports) swapped; bypass passes,
//     protect and discard drop.
//
// Tunnel counter indexes are 1 + the position of the tunnel in
// g.Tunnels (0: not attributable; tunnels past bpf.MaxTunnelIndex count
// as 0). TunnelName maps them back.
func Unprotected(g *config.Gateway) (bpf.Unprotected, error) {
	var u bpf.Unprotected
	if g == nil {
		return u, nil
	}
	if len(g.Policies) > bpf.MaxUnprotectedRules {
		return u, fmt.Errorf("%w: %d policies, at most %d", ErrTooManyPolicies, len(g.Policies), bpf.MaxUnprotectedRules)
	}
	def := 0
	if len(g.Tunnels) > 0 {
		def = tunnelIndex(g, g.Tunnels[0].Name)
	}
	var remote []netip.Prefix
	remote = append(remote, g.Protected...)
	if g.TUN != nil {
		remote = append(remote, g.TUN.Routes...)
	}
	for _, p := range remote {
		u.Prefixes = append(u.Prefixes, bpf.RemotePrefix{Prefix: p, Tunnel: def})
	}
	for _, p := range g.Policies {
		tun := policyTunnel(g, p)
		r := bpf.InboundRule{
			Src: p.Selector.Dst, Dst: p.Selector.Src, Proto: p.Selector.Proto,
			SrcPorts: bpf.PortRange(p.Selector.DstPorts), DstPorts: bpf.PortRange(p.Selector.SrcPorts),
			Bypass: p.Action == sa.Bypass, Tunnel: tun,
		}
		u.Rules = append(u.Rules, r)
		if p.Action == sa.Bypass {
			continue
		}
		dsts := []netip.Prefix{p.Selector.Dst}
		if !p.Selector.Dst.IsValid() {
			// Any destination: both families (a source prefix, if any,
			// narrows it to one).
			dsts = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
			if s := p.Selector.Src; s.IsValid() {
				dsts = []netip.Prefix{netip.PrefixFrom(netip.IPv6Unspecified(), 0)}
				if s.Addr().Is4() {
					dsts = []netip.Prefix{netip.PrefixFrom(netip.IPv4Unspecified(), 0)}
				}
			}
		}
		for _, d := range dsts {
			if !coveredByDefault(u.Prefixes, d) {
				u.Prefixes = append(u.Prefixes, bpf.RemotePrefix{Prefix: d, Tunnel: tun, RulesOnly: true})
			}
		}
	}
	return u, nil
}

// coveredByDefault reports whether d lies within a prefix that is not
// RulesOnly: adding d as RulesOnly would then let traffic that matches
// no rule pass where the wider prefix drops it.
func coveredByDefault(ps []bpf.RemotePrefix, d netip.Prefix) bool {
	for _, p := range ps {
		if !p.RulesOnly && p.Prefix.Bits() <= d.Bits() && p.Prefix.Contains(d.Addr()) {
			return true
		}
	}
	return false
}

// policyTunnel is the counter index of a policy's tunnel (its own, or
// that of its SA).
func policyTunnel(g *config.Gateway, p *config.Policy) int {
	if p.Tunnel != "" {
		return tunnelIndex(g, p.Tunnel)
	}
	if p.SA != "" {
		return tunnelIndex(g, tunnelOf(g, p.SA))
	}
	return 0
}

func tunnelIndex(g *config.Gateway, name string) int {
	for i, t := range g.Tunnels {
		if t.Name == name && i+1 <= bpf.MaxTunnelIndex {
			return i + 1
		}
	}
	return 0
}

// TunnelName is the name of the tunnel of a counter index of
// Unprotected ("" for 0 or an unknown index).
func TunnelName(g *config.Gateway, index int) string {
	if g == nil || index < 1 || index > len(g.Tunnels) {
		return ""
	}
	return g.Tunnels[index-1].Name
}

// sameUnprotected reports whether a and b discard the same clear text
// and keep the same fail-closed table.
func sameUnprotected(a, b *config.Gateway) bool {
	ua, errA := Unprotected(a)
	ub, errB := Unprotected(b)
	return errA == nil && errB == nil && reflect.DeepEqual(ua, ub) && a.FailClosed == b.FailClosed
}
