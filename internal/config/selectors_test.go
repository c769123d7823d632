package config

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/espxdp/espxdp/sa"
)

func TestSelectorsDerived(t *testing.T) {
	cfg, err := Parse("gw.yaml", []byte(gwYAML))
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Gateway
	in, _ := cfg.Lookup("b-to-a")
	got := g.SelectorsOf(in, g.TunnelOf(in.Name))
	p := netip.MustParsePrefix
	want := []sa.Selector{
		{Src: p("10.2.0.0/24"), Dst: p("10.1.0.0/24"), Proto: 6, SrcPorts: sa.PortRange{Lo: 80, Hi: 443}}, // web, mirrored
		{Src: p("10.2.0.0/24")},     // rest (and protected)
		{Src: p("2001:db8:2::/48")}, // protected
	}
	if !slices.Equal(got, want) {
		t.Errorf("derived selectors:\n got %+v\nwant %+v", got, want)
	}
	out, _ := cfg.Lookup("a-to-b")
	if s := g.SelectorsOf(out, "to-B"); s != nil {
		t.Errorf("outbound SA got derived selectors %v", s)
	}
	// The SA's own selectors win; a tunnel's come before derived ones.
	own := strings.Replace(gwYAML, "in, spi: 0x2001,", "in, spi: 0x2001, remote_ts: [10.2.0.128/25, \"2001:db8:2::/64\"], local_ts: 10.1.0.0/24,", 1)
	cfg, err = Parse("gw.yaml", []byte(own))
	if err != nil {
		t.Fatal(err)
	}
	in, _ = cfg.Lookup("b-to-a")
	got = cfg.Gateway.SelectorsOf(in, "to-B")
	if want := []sa.Selector{{Src: p("10.2.0.128/25"), Dst: p("10.1.0.0/24")}, {Src: p("2001:db8:2::/64")}}; !slices.Equal(got, want) {
		t.Errorf("remote_ts × local_ts: %+v", got)
	}
	tun := strings.Replace(gwYAML, "in: [b-to-a]}", "in: [b-to-a], selectors: any}", 1)
	cfg, err = Parse("gw.yaml", []byte(tun))
	if err != nil {
		t.Fatal(err)
	}
	in, _ = cfg.Lookup("b-to-a")
	if got := cfg.Gateway.SelectorsOf(in, "to-B"); !slices.Equal(got, []sa.Selector{{}}) {
		t.Errorf("tunnel selectors: any: %+v", got)
	}
	sel := strings.Replace(gwYAML, "in, spi: 0x2001,", "in, spi: 0x2001, selectors: [{src: 10.2.0.0/24, proto: udp, src_ports: 53}],", 1)
	cfg, err = Parse("gw.yaml", []byte(sel))
	if err != nil {
		t.Fatal(err)
	}
	in, _ = cfg.Lookup("b-to-a")
	if got := in.SAConfig().Selectors; !slices.Equal(got, []sa.Selector{{Src: p("10.2.0.0/24"), Proto: 17, SrcPorts: sa.PortRange{Lo: 53, Hi: 53}}}) {
		t.Errorf("SAConfig selectors: %+v", got)
	}
}

func TestSelectorsErrors(t *testing.T) {
	for _, c := range []struct{ field, want string }{
		{"selectors: [], ", "empty"},
		{"selectors: all, ", "want any or a list"},
		{"selectors: [{src: 10.2.0.0/24}], remote_ts: [10.2.0.0/24], ", "not both"},
		{"remote_ts: [], ", "empty"},
		{"selectors: [{src: 10.2.0.0/24, dst: \"2001:db8::/32\"}], ", "different address families"},
		{"selectors: [{dst_ports: 80}], ", "ports need proto"},
		{"selectors: [{src: 10.2.0.1/24}], ", "host bits"},
		{"selectors: [{color: red}], ", "color"},
	} {
		y := strings.Replace(gwYAML, "in, spi: 0x2001, ", "in, spi: 0x2001, "+c.field, 1)
		_, err := Parse("gw.yaml", []byte(y))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.field, err, c.want)
		}
	}
}

func ipv4(src, dst netip.Addr, proto uint8, sport, dport uint16) []byte {
	b := make([]byte, 28)
	b[0], b[9] = 0x45, proto
	binary.BigEndian.PutUint16(b[2:], 28)
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[20:], sport)
	binary.BigEndian.PutUint16(b[22:], dport)
	return b
}

// TestSelectorsInvariant checks over random gateway configurations the
// invariant InboundSelectors keeps: an inner packet a tunnel delivers
// (matches a derived selector) has a source the gateway sends into that
// tunnel (a protected prefix or TUN route of the default tunnel, or the
// destination of a protect policy bound to it), and every such source
// is accepted (to any destination, for prefixes; mirrored, for
// policies).
func TestSelectorsInvariant(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	randPrefix := func() netip.Prefix {
		bits := 8 + r.IntN(17)
		a := netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.IntN(4)), 0})
		return netip.PrefixFrom(a, bits).Masked()
	}
	randAddr := func() netip.Addr {
		return netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.IntN(4)), byte(r.IntN(256))})
	}
	tunnels := []string{"t0", "t1"}
	for iter := range 300 {
		g := &Gateway{Tunnels: []*Tunnel{{Name: "t0"}, {Name: "t1"}}}
		for range r.IntN(3) {
			g.Protected = append(g.Protected, randPrefix())
		}
		for i := range r.IntN(4) {
			pol := &Policy{Name: "p" + string(rune('a'+i)), Action: sa.Action(r.IntN(3))}
			pol.Selector.Dst = randPrefix()
			if r.IntN(2) == 0 {
				pol.Selector.Src = randPrefix()
			}
			if r.IntN(3) > 0 {
				pol.Tunnel = tunnels[r.IntN(2)]
			}
			g.Policies = append(g.Policies, pol)
		}
		for _, tn := range append(tunnels, "") {
			sels := g.InboundSelectors(tn)
			for range 50 {
				src, dst := randAddr(), randAddr()
				pkt := ipv4(src, dst, 17, 1000, 2000)
				accepted := slices.ContainsFunc(sels, func(s sa.Selector) bool { return s.Matches(pkt) })
				sent := false // would the gateway send dst→src into tn?
				if tn == "t0" {
					// The default route, unless a protect policy
					// sends src into the other tunnel.
					sent = slices.ContainsFunc(g.Protected, func(p netip.Prefix) bool { return p.Contains(src) }) &&
						!slices.ContainsFunc(g.Policies, func(pol *Policy) bool {
							return pol.Action == sa.Protect && pol.Tunnel == "t1" && pol.Selector.Dst.Contains(src)
						})
				}
				if tn == "" {
					// An SA in no tunnel: only what no policy
					// binds to a tunnel.
					sent = slices.ContainsFunc(g.Protected, func(p netip.Prefix) bool { return p.Contains(src) }) &&
						!slices.ContainsFunc(g.Policies, func(pol *Policy) bool {
							return pol.Action == sa.Protect && pol.Selector.Dst.Contains(src)
						})
				}
				for _, pol := range g.Policies {
					bound := pol.Tunnel
					if bound == "" {
						bound = "t0"
					}
					if pol.Action == sa.Protect && bound == tn && pol.Selector.Dst.Contains(src) &&
						(!pol.Selector.Src.IsValid() || pol.Selector.Src.Contains(dst)) {
						sent = true
					}
				}
				if accepted != sent {
					t.Fatalf("iter %d tunnel %s: %v→%v accepted %v, sent into the tunnel %v\nselectors %+v\nprotected %v", iter, tn, src, dst, accepted, sent, sels, g.Protected)
				}
			}
		}
	}
}

// TestSubtractPrefixes checks over random prefixes the invariant of
// subtractPrefixes: an address is in the result iff it is in p and in
// no prefix of minus, and the result's prefixes are disjoint.
func TestSubtractPrefixes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	randPrefix := func() netip.Prefix {
		a := netip.AddrFrom4([4]byte{10, byte(r.IntN(2)), byte(r.IntN(4)), byte(r.IntN(256))})
		return netip.PrefixFrom(a, 14+r.IntN(19)).Masked()
	}
	for iter := range 500 {
		p := randPrefix()
		var minus []netip.Prefix
		for range r.IntN(4) {
			minus = append(minus, randPrefix())
		}
		got := subtractPrefixes(p, minus)
		for i := range got {
			for j := range i {
				if got[i].Overlaps(got[j]) {
					t.Fatalf("iter %d: %v overlaps %v", iter, got[i], got[j])
				}
			}
		}
		for range 200 {
			a := netip.AddrFrom4([4]byte{10, byte(r.IntN(2)), byte(r.IntN(4)), byte(r.IntN(256))})
			want := p.Contains(a) && !slices.ContainsFunc(minus, func(m netip.Prefix) bool { return m.Contains(a) })
			in := slices.ContainsFunc(got, func(q netip.Prefix) bool { return q.Contains(a) })
			if in != want {
				t.Fatalf("iter %d: %v - %v = %v: %v in it %v, want %v", iter, p, minus, got, a, in, want)
			}
		}
	}
	if got := subtractPrefixes(netip.MustParsePrefix("10.0.0.0/8"), []netip.Prefix{{}}); got != nil {
		t.Fatalf("minus any: %v", got)
	}
}
