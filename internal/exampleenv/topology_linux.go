package exampleenv

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/espxdp/espxdp/internal/topo"
)

// Plan describes the line of five namespaces the examples run in
//
//	hostA ──── gwA ──── middle ──── gwB ──── hostB
//	HostIf  GwLANIf GwWANIf  MidAIf MidBIf  GwWANIf GwLANIf  HostIf
//
// where the middle is the "Internet": a router, or a NAT.
type Plan struct {
	// MidLabel is the middle namespace's label ("wan", "nat").
	MidLabel string
	// Interface names: the hosts' (HostIf), the gateways' LAN and WAN
	// ports, and the middle's ports facing gwA and gwB.
	HostIf, GwLANIf, GwWANIf string
	MidAIf, MidBIf           string
	// The addresses of the eight interfaces, left to right, with
	// prefix length Bits, except the four on the links between the
	// gateways and the middle (GwAWAN, MidA, MidB, GwBWAN), which have
	// WANBits when it is set: an IPv6 wan (/64) beside IPv4 LANs (/24).
	HostA, GwALAN, GwAWAN, MidA netip.Addr
	MidB, GwBWAN, GwBLAN, HostB netip.Addr
	Bits, WANBits               int
	// MTU of every link.
	MTU int
	// IPv4Only disables IPv6 in every namespace before the links exist:
	// no router solicitations or MLD reports on the wire or in the
	// counters.
	IPv4Only bool
	// IPv6Forwarding turns IPv6 forwarding on in the gateways and the
	// middle, before the links exist (so they never send router
	// solicitations). It needs IPv4Only false.
	IPv6Forwarding bool
	// HostTXChecksumOff turns TX checksum offload off on the hosts' ends
	// (topo.Link.DisableTXChecksum): needed when a gateway takes their
	// TCP/UDP with XDP and encrypts it.
	HostTXChecksumOff bool
}

// Line is a built Plan: the namespaces, and the two ends of every
// link.
type Line struct {
	Plan                        Plan
	HostA, GwA, Mid, GwB, HostB *topo.NS
	HostAEth, GwALAN, GwAWAN    *topo.Link
	MidA, MidB                  *topo.Link
	GwBWAN, GwBLAN, HostBEth    *topo.Link
}

// Build creates the five namespaces of p (labels hostA, gwA,
// p.MidLabel, gwB, hostB), turns IP forwarding on in the gateways and
// the middle, and joins them with veth pairs, each end addressed and
// with a static neighbour entry for the other (no ARP is needed
// anywhere: the gateways' XDP programs write Ethernet headers
// themselves). Routes are the caller's (AddRoutes, RouteHosts).
// Everything belongs to tp, whose Close (or Teardown) removes it.
func Build(tp *topo.Topology, p Plan) (*Line, error) {
	if p.IPv4Only && p.IPv6Forwarding {
		return nil, fmt.Errorf("exampleenv: a plan cannot be IPv4 only and forward IPv6")
	}
	n := &Line{Plan: p}
	var err error
	for _, x := range []struct {
		ns    **topo.NS
		label string
	}{{&n.HostA, "hostA"}, {&n.GwA, "gwA"}, {&n.Mid, p.MidLabel}, {&n.GwB, "gwB"}, {&n.HostB, "hostB"}} {
		if *x.ns, err = tp.AddNS(x.label); err != nil {
			return nil, err
		}
		if !p.IPv4Only {
			continue
		}
		for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
			if err := (*x.ns).Sysctl(k, "1"); err != nil {
				return nil, err
			}
		}
	}
	for _, ns := range []*topo.NS{n.GwA, n.Mid, n.GwB} {
		if err := ns.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
			return nil, err
		}
		if !p.IPv6Forwarding {
			continue
		}
		for _, k := range []string{"net.ipv6.conf.all.forwarding", "net.ipv6.conf.default.forwarding"} {
			if err := ns.Sysctl(k, "1"); err != nil {
				return nil, err
			}
		}
	}
	wanBits := p.Bits
	if p.WANBits != 0 {
		wanBits = p.WANBits
	}
	link := func(a *topo.NS, nameA string, addrA netip.Addr, b *topo.NS, nameB string, addrB netip.Addr, bits int) (*topo.Link, *topo.Link, error) {
		la, lb, err := tp.AddVeth(a, nameA, b, nameB, topo.VethOptions{MTU: p.MTU})
		if err != nil {
			return nil, nil, err
		}
		for _, s := range []struct {
			l, other  *topo.Link
			own, peer netip.Addr
		}{{la, lb, addrA, addrB}, {lb, la, addrB, addrA}} {
			if err := s.l.AddAddr(netip.PrefixFrom(s.own, bits)); err != nil {
				return nil, nil, err
			}
			if err := s.l.SetNeighbour(s.peer, s.other.MAC); err != nil {
				return nil, nil, err
			}
		}
		return la, lb, nil
	}
	if n.HostAEth, n.GwALAN, err = link(n.HostA, p.HostIf, p.HostA, n.GwA, p.GwLANIf, p.GwALAN, p.Bits); err != nil {
		return nil, err
	}
	if n.GwAWAN, n.MidA, err = link(n.GwA, p.GwWANIf, p.GwAWAN, n.Mid, p.MidAIf, p.MidA, wanBits); err != nil {
		return nil, err
	}
	if n.MidB, n.GwBWAN, err = link(n.Mid, p.MidBIf, p.MidB, n.GwB, p.GwWANIf, p.GwBWAN, wanBits); err != nil {
		return nil, err
	}
	if n.GwBLAN, n.HostBEth, err = link(n.GwB, p.GwLANIf, p.GwBLAN, n.HostB, p.HostIf, p.HostB, p.Bits); err != nil {
		return nil, err
	}
	if p.HostTXChecksumOff {
		for _, l := range []*topo.Link{n.HostAEth, n.HostBEth} {
			if err := l.DisableTXChecksum(); err != nil {
				return nil, err
			}
		}
	}
	return n, nil
}

// Route is one route for AddRoutes: "ip route replace DST [via VIA]
// [dev DEV] [mtu MTU]" in NS.
type Route struct {
	NS  *topo.NS
	Dst netip.Prefix
	Via netip.Addr
	Dev string
	MTU int
}

// AddRoutes adds the routes in order.
func AddRoutes(routes ...Route) error {
	for _, r := range routes {
		if err := r.NS.AddRoute(r.Dst, r.Via, r.Dev, r.MTU); err != nil {
			return fmt.Errorf("route in %s: %w", r.NS.Label, err)
		}
	}
	return nil
}

// RouteHosts routes dstA from hostA and dstB from hostB via their
// gateways' LAN addresses, with mtu on the routes (0: none): with a
// tunnel's inner MTU there, TCP picks a segment size that fits.
func (n *Line) RouteHosts(dstA, dstB netip.Prefix, mtu int) error {
	return AddRoutes(
		Route{NS: n.HostA, Dst: dstA, Via: n.Plan.GwALAN, MTU: mtu},
		Route{NS: n.HostB, Dst: dstB, Via: n.Plan.GwBLAN, MTU: mtu})
}

// WANDrops sums the drops the interfaces between the gateways counted,
// per direction. A veth whose receiver runs XDP drops frames when the
// receiver's ring is full: under load (or on a busy machine) some ESP
// is lost on the way, as on any network, and TCP retransmits it.
func (n *Line) WANDrops() (aToB, bToA uint64, err error) {
	return PathDrops(n.GwAWAN, n.MidA, n.MidB, n.GwBWAN)
}

// PathDrops sums the drops counted by the links of a path given in
// order from one end to the other as the two ends of each hop (sender,
// receiver, sender, receiver, ...): forward are the drops of packets
// going that way (senders' transmit, receivers' receive drops), backward
// those of packets coming back. Each link's counters are read once.
func PathDrops(links ...*topo.Link) (forward, backward uint64, err error) {
	for i, l := range links {
		rx, tx, err := LinkDrops(l)
		if err != nil {
			return 0, 0, err
		}
		if i%2 == 0 {
			forward, backward = forward+tx, backward+rx
		} else {
			forward, backward = forward+rx, backward+tx
		}
	}
	return forward, backward, nil
}

// LinkDrops returns the packets l dropped on receive and on transmit,
// from its counters ("ip -s link show").
func LinkDrops(l *topo.Link) (rx, tx uint64, err error) {
	out, err := l.NS.IP("-j", "-s", "link", "show", "dev", l.Name)
	if err != nil {
		return 0, 0, err
	}
	if rx, tx, err = parseLinkDrops([]byte(out)); err != nil {
		return 0, 0, fmt.Errorf("parse ip -s link show %s: %v", l.Name, err)
	}
	return rx, tx, nil
}

// parseLinkDrops reads the drop counters of the one link in the JSON
// output of "ip -j -s link show dev DEV".
func parseLinkDrops(out []byte) (rx, tx uint64, err error) {
	var links []struct {
		Stats *struct {
			RX struct{ Dropped uint64 } `json:"rx"`
			TX struct{ Dropped uint64 } `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		return 0, 0, err
	}
	if len(links) != 1 || links[0].Stats == nil {
		return 0, 0, fmt.Errorf("want one link with stats64, got %d links", len(links))
	}
	return links[0].Stats.RX.Dropped, links[0].Stats.TX.Dropped, nil
}

// Teardown removes every namespace of tp (tp.Close) and returns the
// namespaces it had made, the names of those still present afterwards,
// and Close's error.
func Teardown(tp *topo.Topology) (made []*topo.NS, leftBehind []string, err error) {
	made = tp.Namespaces()
	err = tp.Close()
	for _, ns := range made {
		if ns.Exists() {
			leftBehind = append(leftBehind, ns.Name)
		}
	}
	return made, leftBehind, err
}
