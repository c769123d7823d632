//go:build linux

package gateway

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/espxdp/espxdp/internal/topo"
)

// TestFailClosedRulesetVLAN: with a cipher VLAN the chains match the
// interface, its conventional VLAN device name and the VLAN devices
// found, in every hook.
func TestFailClosedRulesetVLAN(t *testing.T) {
	g := parseGW(t, strings.Replace(unprotYAML, "cipher: {name: wan0,", "cipher: {name: wan0, vlan: 100,", 1))
	s, err := failClosedRuleset(g, []string{"vx7", "wan0.100"})
	if err != nil {
		t.Fatal(err)
	}
	set := `{ "wan0", "wan0.100", "vx7" }`
	for _, want := range []string{
		"iifname " + set + " jump from_remote",
		"oifname " + set + " jump to_remote",
		"iifname " + set + " meta l4proto esp accept",
		"oifname " + set + " udp sport { 500, 4500 } accept",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, `iifname "wan0" `) || strings.Contains(s, `oifname "wan0" `) {
		t.Errorf("a chain matches the base interface alone:\n%s", s)
	}
}

// TestFailClosedVLANDevice is the red team's lead, verified: with the
// cipher VLAN on a VLAN device of the cipher interface (here named vx7,
// not wan0.100), the kernel sees clear text from the remote protected
// network on vx7. Invariant: the installed table drops it all the same
// (before the fix its iifname "wan0" rules never matched).
func TestFailClosedVLANDevice(t *testing.T) {
	requireNft(t)
	tp := topo.New("fcv")
	t.Cleanup(func() { _ = tp.Close() })
	gw, err := tp.AddNS("gw")
	if err != nil {
		t.Fatal(err)
	}
	peer, err := tp.AddNS("peer")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tp.AddVeth(gw, "wan0", peer, "pw0", topo.VethOptions{}); err != nil {
		t.Fatal(err)
	}
	ipc := func(ns *topo.NS, args ...string) {
		t.Helper()
		if out, err := ns.IP(args...); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	// A kernel feature, not a privilege: without CONFIG_VLAN_8021Q there
	// are no VLAN devices, and then no VLAN device for the table to miss
	// (the kernel drops tagged frames no device claims).
	if out, err := gw.IP("link", "add", "link", "wan0", "name", "vx7", "type", "vlan", "id", "100"); err != nil {
		if strings.Contains(out+err.Error(), "Unknown device type") {
			t.Skipf("kernel without 802.1Q VLAN devices (CONFIG_VLAN_8021Q): %v", err)
		}
		t.Fatalf("ip link add vlan: %v %s", err, out)
	}
	ipc(gw, "addr", "add", "192.0.2.1/24", "dev", "vx7")
	ipc(gw, "link", "set", "vx7", "up")
	ipc(gw, "addr", "add", "10.1.0.1/32", "dev", "lo")
	ipc(gw, "route", "add", "10.2.0.0/24", "via", "192.0.2.2")
	ipc(peer, "link", "add", "link", "pw0", "name", "pv", "type", "vlan", "id", "100")
	ipc(peer, "addr", "add", "192.0.2.2/24", "dev", "pv")
	ipc(peer, "link", "set", "pv", "up")
	ipc(peer, "addr", "add", "10.2.0.5/32", "dev", "lo")
	ipc(peer, "route", "add", "10.1.0.0/24", "via", "192.0.2.1")

	dst := netip.MustParseAddrPort("10.1.0.1:9999")
	src := netip.MustParseAddrPort("10.2.0.5:40000")
	send := func() int {
		l := listenUDP(t, gw, dst)
		sendUDP(t, peer, src, dst, 10)
		return l.count()
	}
	if got := send(); got != 10 {
		t.Fatalf("without the table %d of 10 datagrams arrived (the test's premise)", got)
	}
	g := parseGW(t, strings.Replace(unprotYAML, "cipher: {name: wan0,", "cipher: {name: wan0, vlan: 100,", 1))
	if err := InstallFailClosed(g, gw.Path()); err != nil {
		t.Fatal(err)
	}
	if got := send(); got != 0 {
		t.Errorf("clear text from 10.2.0.5 on VLAN device vx7: %d of 10 arrived with the table installed, want 0", got)
	}
	in, _, err := FailClosedCounters(g, gw.Path())
	if err != nil {
		t.Fatal(err)
	}
	if in < 10 {
		t.Errorf("unprotected_in counter %d, want ≥ 10", in)
	}
}

// TestInstallFailClosedVLAN: nft accepts the interface sets, on any
// kernel (no VLAN device needed): the installed table matches the
// conventional VLAN device name.
func TestInstallFailClosedVLAN(t *testing.T) {
	requireNft(t)
	tp := topo.New("fci")
	t.Cleanup(func() { _ = tp.Close() })
	gw, err := tp.AddNS("gw")
	if err != nil {
		t.Fatal(err)
	}
	g := parseGW(t, strings.Replace(unprotYAML, "cipher: {name: wan0,", "cipher: {name: wan0, vlan: 100,", 1))
	if err := InstallFailClosed(g, gw.Path()); err != nil {
		t.Fatal(err)
	}
	out, err := nft(gw.Path(), "", "list", "table", "inet", FailClosedTable(g))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `iifname { "wan0", "wan0.100" } jump from_remote`) {
		t.Errorf("installed table does not match the VLAN device:\n%s", out)
	}
}
