package gateway

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/espxdp/espxdp/bpf"
	"github.com/espxdp/espxdp/internal/config"
)

// Fail closed (DESIGN: protected traffic never leaves in clear, also when
// the daemon dies). The XDP program's discard (Unprotected) lives only as
// long as the daemon's XDP link; the nftables table below outlives the
// process. The daemon installs it at start, replacing an older one of the
// same name in one transaction, and leaves it in place when it stops or
// dies, so no moment exists in which the kernel forwards clear text
// between the protected networks. Only this table, by its name, is ever
// replaced or deleted: nobody else's rules are touched. It is removed by
// an operator: `espxdp failclosed remove --config F`, or fail_closed:
// false in the configuration (the daemon then removes it at start).
//
// The table (inet family, so IPv4 and IPv6) has base chains on the
// forward, input and output hooks at priority filter-5. A drop in any
// base chain is final, so other tables' accepts cannot undo it.
//
//   - forward: packets in from the cipher interface go to from_remote,
//     packets out to it go to to_remote.
//   - input: ESP and UDP 500/4500 (IKE, NAT-T, keepalives) from the
//     cipher interface are accepted; the rest goes to from_remote.
//   - output: ESP and UDP from port 500/4500 out to the cipher interface
//     are accepted; the rest goes to to_remote.
//   - from_remote returns (no verdict) unless the source lies in a remote
//     protected prefix; then the policies, read inbound, decide in order
//     (bypass accepts, protect and discard drop, counted in the named
//     counter unprotected_in); what matches none is dropped if its
//     source lies in a prefix that is not RulesOnly.
//   - to_remote is the same for destinations and the policies as
//     written (counter unprotected_out).
//
// With a cipher VLAN (interfaces.cipher.vlan), the kernel sees the
// tagged traffic on a VLAN device stacked on the cipher interface, not on
// the interface itself, so "the cipher interface" above means a set of
// names: the interface, the conventional name of its VLAN device
// (<name>.<vlan>, matched even before such a device exists) and, when the
// table is installed, every VLAN device on the interface with that VLAN
// ID whatever its name (one created later under another name is not
// covered until the next start).
//
// Differences from the XDP program, all on the side of dropping more:
// forwarded ESP and NAT-T from a protected source are dropped too (ESP
// for this gateway is delivered locally, never forwarded); a source in
// both a RulesOnly prefix and a wider default-drop prefix is dropped when
// no policy matches even if the RulesOnly prefix is the longer match.

// FailClosedTable is the name of the gateway's nftables table (family
// inet): espxdp_ and the cipher interface's name, characters other than
// letters, digits and underscores replaced by underscores.
func FailClosedTable(g *config.Gateway) string {
	var b strings.Builder
	b.WriteString("espxdp_")
	for _, r := range g.Cipher.Name {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// Names of the table's counters.
const (
	counterIn  = "unprotected_in"
	counterOut = "unprotected_out"
)

// FailClosedRuleset returns the nft(8) script that atomically creates or
// replaces the gateway's table (see FailClosedTable).
func FailClosedRuleset(g *config.Gateway) (string, error) {
	return failClosedRuleset(g, nil)
}

// cipherIfnames is the set of interface names the table treats as the
// cipher interface: its name, with a VLAN also <name>.<vlan> and the VLAN
// devices found (vlanDevs), without duplicates.
func cipherIfnames(g *config.Gateway, vlanDevs []string) []string {
	names := []string{g.Cipher.Name}
	if g.Cipher.VLAN != 0 {
		names = append(names, fmt.Sprintf("%s.%d", g.Cipher.Name, g.Cipher.VLAN))
		for _, d := range vlanDevs {
			if !slices.Contains(names, d) {
				names = append(names, d)
			}
		}
	}
	return names
}

// failClosedRuleset is FailClosedRuleset with the VLAN devices of the
// cipher interface found in its namespace.
func failClosedRuleset(g *config.Gateway, vlanDevs []string) (string, error) {
	u, err := Unprotected(g)
	if err != nil {
		return "", err
	}
	name := FailClosedTable(g)
	var quoted []string
	for _, n := range cipherIfnames(g, vlanDevs) {
		quoted = append(quoted, nftString(n))
	}
	// One name: "wan0"; several: an anonymous set { "wan0", "wan0.100" }.
	iface := quoted[0]
	if len(quoted) > 1 {
		iface = "{ " + strings.Join(quoted, ", ") + " }"
	}
	var all4, all6, drop4, drop6 []string
	for _, p := range u.Prefixes {
		pfx := p.Prefix.Masked()
		if pfx.Addr().Is4() {
			all4 = append(all4, pfx.String())
			if !p.RulesOnly {
				drop4 = append(drop4, pfx.String())
			}
		} else {
			all6 = append(all6, pfx.String())
			if !p.RulesOnly {
				drop6 = append(drop6, pfx.String())
			}
		}
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	// Create (if missing), delete and recreate in one transaction: the
	// old rules stay until the new ones are in.
	w("table inet %s", name)
	w("delete table inet %s", name)
	w("table inet %s {", name)
	w("\tcomment \"espxdp fail-closed: no clear text between protected networks on %s\"", strings.Trim(quoted[0], `"`))
	set := func(n, typ string, elems []string) {
		w("\tset %s {", n)
		w("\t\ttype %s", typ)
		w("\t\tflags interval")
		w("\t\tauto-merge")
		if len(elems) > 0 {
			w("\t\telements = { %s }", strings.Join(elems, ", "))
		}
		w("\t}")
	}
	set("remote4", "ipv4_addr", all4)
	set("remote6", "ipv6_addr", all6)
	set("drop4", "ipv4_addr", drop4)
	set("drop6", "ipv6_addr", drop6)
	w("\tcounter %s {", counterIn)
	w("\t}")
	w("\tcounter %s {", counterOut)
	w("\t}")

	chain := func(n, counter string, inbound bool) {
		field := "daddr"
		if inbound {
			field = "saddr"
		}
		w("\tchain %s {", n)
		w("\t\tmeta nfproto ipv4 ip %s != @remote4 return", field)
		w("\t\tmeta nfproto ipv6 ip6 %s != @remote6 return", field)
		for _, r := range u.Rules {
			if !inbound {
				r.Src, r.Dst, r.SrcPorts, r.DstPorts = r.Dst, r.Src, r.DstPorts, r.SrcPorts
			}
			verdict := fmt.Sprintf("counter name %s drop", counter)
			if r.Bypass {
				verdict = "accept"
			}
			w("\t\t%s %s", nftRule(r), verdict)
		}
		w("\t\tip %s @drop4 counter name %s drop", field, counter)
		w("\t\tip6 %s @drop6 counter name %s drop", field, counter)
		w("\t}")
	}
	chain("from_remote", counterIn, true)
	chain("to_remote", counterOut, false)

	w("\tchain forward {")
	w("\t\ttype filter hook forward priority filter - 5; policy accept;")
	w("\t\tiifname %s jump from_remote", iface)
	w("\t\toifname %s jump to_remote", iface)
	w("\t}")
	w("\tchain input {")
	w("\t\ttype filter hook input priority filter - 5; policy accept;")
	w("\t\tiifname %s meta l4proto esp accept", iface)
	w("\t\tiifname %s udp dport { %d, %d } accept", iface, bpf.IKEPort, bpf.DefaultNATTPort)
	w("\t\tiifname %s jump from_remote", iface)
	w("\t}")
	w("\tchain output {")
	w("\t\ttype filter hook output priority filter - 5; policy accept;")
	w("\t\toifname %s meta l4proto esp accept", iface)
	w("\t\toifname %s udp sport { %d, %d } accept", iface, bpf.IKEPort, bpf.DefaultNATTPort)
	w("\t\toifname %s jump to_remote", iface)
	w("\t}")
	w("}")
	return b.String(), nil
}

// removeScript deletes the table if it exists (and only it).
func removeScript(table string) string {
	return fmt.Sprintf("table inet %s\ndelete table inet %s\n", table, table)
}

// nftRule is the match part of an nft rule for r, in the orientation
// given (Src is the packet's source).
func nftRule(r bpf.InboundRule) string {
	var parts []string
	addr := func(field string, p netip.Prefix) {
		if !p.IsValid() {
			return
		}
		p = p.Masked()
		if p.Addr().Is4() {
			parts = append(parts, fmt.Sprintf("ip %s %s", field, p))
		} else {
			parts = append(parts, fmt.Sprintf("ip6 %s %s", field, p))
		}
	}
	if !r.Src.IsValid() && !r.Dst.IsValid() {
		parts = append(parts, "meta nfproto { ipv4, ipv6 }")
	}
	addr("saddr", r.Src)
	addr("daddr", r.Dst)
	hasPorts := r.SrcPorts != (bpf.PortRange{}) || r.DstPorts != (bpf.PortRange{})
	switch {
	case r.Proto != 0:
		parts = append(parts, fmt.Sprintf("meta l4proto %d", r.Proto))
	case hasPorts:
		parts = append(parts, "meta l4proto { 6, 17, 33, 132, 136 }")
	}
	port := func(field string, pr bpf.PortRange) {
		switch {
		case pr == (bpf.PortRange{}):
		case pr.Lo == pr.Hi:
			parts = append(parts, fmt.Sprintf("th %s %d", field, pr.Lo))
		default:
			parts = append(parts, fmt.Sprintf("th %s %d-%d", field, pr.Lo, pr.Hi))
		}
	}
	port("sport", r.SrcPorts)
	port("dport", r.DstPorts)
	return strings.Join(parts, " ")
}

// nftString quotes an interface name for nft.
func nftString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
