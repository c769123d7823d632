package exampleenv

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/internal/topo"
)

func testPlan() Plan {
	a := netip.MustParseAddr
	return Plan{
		MidLabel: "wan",
		HostIf:   "eth0", GwLANIf: "lan", GwWANIf: "wan", MidAIf: "to-gwA", MidBIf: "to-gwB",
		HostA: a("10.1.0.2"), GwALAN: a("10.1.0.1"), GwAWAN: a("192.0.2.1"), MidA: a("192.0.2.254"),
		MidB: a("198.51.100.254"), GwBWAN: a("198.51.100.1"), GwBLAN: a("10.2.0.1"), HostB: a("10.2.0.2"),
		Bits: 24, MTU: 1400, IPv4Only: true, HostTXChecksumOff: true,
	}
}

// TestBuildLine builds the line in a Session, routes it end to end,
// pings hostB from hostA through both gateways and the middle, counts
// the echo packets with a PacketCounter on the middle's port facing
// gwA, runs PingAndTransfer across, and checks that End removes every
// namespace (and that CheckNamespaces notices namespaces that are still
// there).
func TestBuildLine(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "ip")
	s := Begin(context.Background(), "exenv", time.Minute)
	t.Cleanup(func() { s.End(nil) })
	tp := s.Topo
	p := testPlan()
	n, err := Build(tp, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ns    *topo.NS
		label string
	}{{n.HostA, "hostA"}, {n.GwA, "gwA"}, {n.Mid, "wan"}, {n.GwB, "gwB"}, {n.HostB, "hostB"}} {
		if c.ns.Label != c.label {
			t.Errorf("namespace %s labelled %q, want %q", c.ns.Name, c.ns.Label, c.label)
		}
	}
	for _, c := range []struct {
		l    *topo.Link
		ns   *topo.NS
		name string
	}{{n.HostAEth, n.HostA, "eth0"}, {n.GwALAN, n.GwA, "lan"}, {n.GwAWAN, n.GwA, "wan"}, {n.MidA, n.Mid, "to-gwA"},
		{n.MidB, n.Mid, "to-gwB"}, {n.GwBWAN, n.GwB, "wan"}, {n.GwBLAN, n.GwB, "lan"}, {n.HostBEth, n.HostB, "eth0"}} {
		if c.l.NS != c.ns || c.l.Name != c.name {
			t.Errorf("link %s/%s, want %s/%s", c.l.NS.Label, c.l.Name, c.ns.Label, c.name)
		}
	}
	for _, l := range []*topo.Link{n.HostAEth, n.HostBEth, n.GwAWAN} {
		on, err := l.TXChecksum()
		if err != nil {
			t.Fatal(err)
		}
		if want := l == n.GwAWAN; on != want {
			t.Errorf("%s/%s: TX checksum offload %v, want %v", l.NS.Label, l.Name, on, want)
		}
	}
	any4 := netip.MustParsePrefix("0.0.0.0/0")
	if err := n.RouteHosts(any4, any4, 0); err != nil {
		t.Fatal(err)
	}
	if err := AddRoutes(
		Route{NS: n.GwA, Dst: any4, Via: p.MidA},
		Route{NS: n.GwB, Dst: any4, Via: p.MidB},
		Route{NS: n.Mid, Dst: netip.MustParsePrefix("10.1.0.0/24"), Via: p.GwAWAN},
		Route{NS: n.Mid, Dst: netip.MustParsePrefix("10.2.0.0/24"), Via: p.GwBWAN},
	); err != nil {
		t.Fatal(err)
	}
	if err := AddRoutes(Route{NS: n.HostA, Dst: any4, Dev: "nonexistent0"}); err == nil {
		t.Error("AddRoutes accepted a route through a missing device")
	}

	var icmp, other atomic.Uint64
	pc, err := OpenPacketCounter(n.MidA, func(f []byte) {
		if len(f) >= 34 && binary.BigEndian.Uint16(f[12:]) == 0x0800 && f[23] == 1 {
			icmp.Add(1)
		} else {
			other.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	const pings = 4
	res, err := topo.Ping(n.HostA, p.HostB, pings, 56, 20*time.Millisecond, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Received != pings {
		t.Errorf("%d of %d pings answered across the line", res.Received, res.Sent)
	}
	if err := pc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pc.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// Requests and replies both cross the middle's port facing gwA;
	// static neighbours and IPv4 only: nothing else does.
	if icmp.Load() != 2*pings || other.Load() != 0 || pc.Drops() != 0 {
		t.Errorf("counter saw %d ICMP and %d other frames, %d dropped; want %d, 0, 0", icmp.Load(), other.Load(), pc.Drops(), 2*pings)
	}
	if ab, ba, err := n.WANDrops(); err != nil || ab != 0 || ba != 0 {
		t.Errorf("WANDrops = %d, %d, %v; want no drops", ab, ba, err)
	}

	// The traffic of the examples: pings, pings of exactly the MTU, a
	// transfer whose segments fit it.
	var out bytes.Buffer
	const size = 256 << 10
	tr, err := PingAndTransfer(s.Ctx, &out, n, p.HostB, pings, p.MTU, "the link MTU", size)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	CheckTraffic(t, tr, pings, p.MTU, size)
	if err := tr.Lost(); err != nil {
		t.Error(err)
	}
	if lines := strings.Count(out.String(), "\n"); lines != 3 || !strings.Contains(out.String(), "1400-byte packets (the link MTU): 3/3") {
		t.Errorf("PingAndTransfer printed %d lines:\n%s", lines, out.String())
	}

	// Before End every namespace exists: CheckNamespaces says so.
	r := &recorder{TB: t}
	CheckNamespaces(r, tp.Namespaces(), 4)
	if len(r.errs) != 6 {
		t.Errorf("CheckNamespaces on live namespaces and a wrong count: %d failures %q, want 6", len(r.errs), r.errs)
	}
	runErr := errors.New("the run's own error")
	made, left, err := s.End(runErr)
	if !errors.Is(err, runErr) || err.Error() != runErr.Error() || len(left) != 0 {
		t.Fatalf("End: %v, left behind %v; want the run's error alone", err, left)
	}
	if s.Ctx.Err() == nil {
		t.Error("End left the session's context running")
	}
	CheckNamespaces(t, made, 5)
}

// TestBuildFailure: a plan that cannot be built fails, and Teardown
// still removes what was made.
func TestBuildFailure(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "ip")
	tp := topo.New("exenv")
	t.Cleanup(func() { tp.Close() })
	p := testPlan()
	p.GwWANIf = p.GwLANIf // two interfaces of gwA with one name
	if _, err := Build(tp, p); err == nil {
		t.Fatal("Build accepted two interfaces with one name")
	}
	made, left, err := Teardown(tp)
	if err != nil || len(left) != 0 {
		t.Fatalf("Teardown: %v, left behind %v", err, left)
	}
	CheckNamespaces(t, made, 5)
}

func TestParseLinkDrops(t *testing.T) {
	out := `[{"ifindex":2,"ifname":"wan","stats64":{"rx":{"bytes":1,"packets":2,"errors":0,"dropped":3},"tx":{"bytes":4,"packets":5,"errors":0,"dropped":6}}}]`
	if rx, tx, err := parseLinkDrops([]byte(out)); err != nil || rx != 3 || tx != 6 {
		t.Errorf("parseLinkDrops = %d, %d, %v; want 3, 6", rx, tx, err)
	}
	for _, bad := range []string{"", "[]", `[{"ifname":"wan"}]`, `[{"stats64":{}},{"stats64":{}}]`, "{"} {
		if _, _, err := parseLinkDrops([]byte(bad)); err == nil {
			t.Errorf("parseLinkDrops(%q) accepted", bad)
		}
	}
}

func TestTrafficLost(t *testing.T) {
	ok := Traffic{Ping: topo.PingResult{Sent: 4, Received: 4}, FullPing: topo.PingResult{Sent: 3, Received: 3}}
	if err := ok.Lost(); err != nil {
		t.Errorf("Lost with every ping answered: %v", err)
	}
	for _, tr := range []Traffic{
		{Ping: topo.PingResult{Sent: 4, Received: 3}, FullPing: topo.PingResult{Sent: 3, Received: 3}},
		{Ping: topo.PingResult{Sent: 4, Received: 4}, FullPing: topo.PingResult{Sent: 3, Received: 0}},
	} {
		if err := tr.Lost(); err == nil {
			t.Errorf("Lost(%+v) = nil", tr)
		}
	}
}

func TestCheckTraffic(t *testing.T) {
	good := Traffic{
		Ping:     topo.PingResult{Sent: 4, Received: 4},
		FullPing: topo.PingResult{Sent: 3, Received: 3},
		Transfer: topo.TransferResult{Sent: 1000, Received: 1000, ClientMSS: 1360},
	}
	for _, c := range []struct {
		name  string
		edit  func(*Traffic)
		fails int
	}{
		{"good", func(*Traffic) {}, 0},
		{"ping lost", func(tr *Traffic) { tr.Ping.Received = 3 }, 1},
		{"too few pings sent", func(tr *Traffic) { tr.Ping = topo.PingResult{Sent: 3, Received: 3} }, 1},
		{"full ping lost", func(tr *Traffic) { tr.FullPing.Received = 2 }, 1},
		{"short transfer", func(tr *Traffic) { tr.Transfer.Received = 999 }, 1},
		{"corrupt transfer", func(tr *Traffic) { tr.Transfer.ReceivedSum[0] = 1 }, 1},
		{"MSS too big", func(tr *Traffic) { tr.Transfer.ClientMSS = 1361 }, 1},
		{"no MSS", func(tr *Traffic) { tr.Transfer.ClientMSS = 0 }, 1},
	} {
		tr := good
		c.edit(&tr)
		r := &recorder{TB: t}
		CheckTraffic(r, tr, 4, 1400, 1000)
		if len(r.errs) != c.fails {
			t.Errorf("%s: %d failures %q, want %d", c.name, len(r.errs), r.errs, c.fails)
		}
	}
}

// TestBuildIPv6WAN: a plan with an IPv6 wan (WANBits 64) beside IPv4
// LANs (/24) puts each prefix length on its own links, forwards IPv6 in
// the gateways and the middle (not in the hosts), and carries a ping
// between the gateways' IPv6 wan addresses through the middle. A plan
// that is IPv4 only and forwards IPv6 is refused before anything is
// made.
func TestBuildIPv6WAN(t *testing.T) {
	if _, err := Build(topo.New("exenv"), Plan{IPv4Only: true, IPv6Forwarding: true}); err == nil {
		t.Error("Build accepted an IPv4-only plan that forwards IPv6")
	}
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "ip")
	s := Begin(context.Background(), "exenv6", time.Minute)
	t.Cleanup(func() { s.End(nil) })
	a := netip.MustParseAddr
	p := testPlan()
	p.GwAWAN, p.MidA, p.MidB, p.GwBWAN = a("2001:db8:a::1"), a("2001:db8:a::fe"), a("2001:db8:b::fe"), a("2001:db8:b::1")
	p.WANBits, p.IPv4Only, p.IPv6Forwarding = 64, false, true
	n, err := Build(s.Topo, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		l    *topo.Link
		want string
	}{{n.GwAWAN, "2001:db8:a::1/64"}, {n.MidB, "2001:db8:b::fe/64"}, {n.GwALAN, "10.1.0.1/24"}, {n.HostBEth, "10.2.0.2/24"}} {
		out, err := c.l.NS.IP("-br", "addr", "show", "dev", c.l.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, " "+c.want) {
			t.Errorf("%s/%s: %q, want %s on it", c.l.NS.Label, c.l.Name, out, c.want)
		}
	}
	for _, c := range []struct {
		ns   *topo.NS
		want string
	}{{n.GwA, "1"}, {n.Mid, "1"}, {n.GwB, "1"}, {n.HostA, "0"}} {
		var out []byte
		if err := c.ns.Do(func() (err error) {
			out, err = os.ReadFile("/proc/sys/net/ipv6/conf/all/forwarding")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(out)); got != c.want {
			t.Errorf("%s: IPv6 forwarding %s, want %s", c.ns.Label, got, c.want)
		}
	}
	if err := AddRoutes(
		Route{NS: n.GwA, Dst: netip.PrefixFrom(p.GwBWAN, 128), Via: p.MidA},
		Route{NS: n.GwB, Dst: netip.PrefixFrom(p.GwAWAN, 128), Via: p.MidB},
	); err != nil {
		t.Fatal(err)
	}
	res, err := topo.Ping(n.GwA, p.GwBWAN, 3, 56, 20*time.Millisecond, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Received != 3 {
		t.Errorf("%d of %d IPv6 pings answered across the wan", res.Received, res.Sent)
	}
}
