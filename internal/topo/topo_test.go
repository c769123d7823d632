//go:build linux

package topo

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/testenv"
)

// TestPingAndTransfer builds a--r--b with a router in the middle (so TTL
// and forwarding are real), pings across and moves 4 MiB intact, then
// checks Close removes every namespace.
func TestPingAndTransfer(t *testing.T) {
	testenv.RequirePrivileged(t)
	tp := New("tt")
	t.Cleanup(func() { tp.Close() })
	a, err := tp.AddNS("a")
	if err != nil {
		t.Fatal(err)
	}
	r, _ := tp.AddNS("r")
	b, _ := tp.AddNS("b")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	la, lra, err := tp.AddVeth(a, "eth0", r, "ra", VethOptions{})
	must(err)
	lrb, lb, err := tp.AddVeth(r, "rb", b, "eth0", VethOptions{MTU: 1400})
	must(err)
	must(la.AddAddr(netip.MustParsePrefix("10.9.1.2/24")))
	if on, err := la.TXChecksum(); err != nil || !on {
		t.Fatalf("veth TX checksum offload before: %v, %v (want on)", on, err)
	}
	must(la.DisableTXChecksum())
	if on, err := la.TXChecksum(); err != nil || on {
		t.Fatalf("veth TX checksum offload after disabling: %v, %v", on, err)
	}
	must(lra.AddAddr(netip.MustParsePrefix("10.9.1.1/24")))
	must(lrb.AddAddr(netip.MustParsePrefix("10.9.2.1/24")))
	must(lb.AddAddr(netip.MustParsePrefix("10.9.2.2/24")))
	must(r.Sysctl("net.ipv4.ip_forward", "1"))
	must(a.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), netip.MustParseAddr("10.9.1.1"), "", 0))
	must(b.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), netip.MustParseAddr("10.9.2.1"), "", 0))

	pr, err := Ping(a, netip.MustParseAddr("10.9.2.2"), 3, 56, 50*time.Millisecond, 2*time.Second)
	must(err)
	if pr.Sent != 3 || pr.Received != 3 {
		t.Fatalf("ping: %+v, want 3 of 3", pr)
	}
	// Nobody there: no replies, no error.
	pr, err = Ping(a, netip.MustParseAddr("10.9.2.99"), 1, 8, 0, 300*time.Millisecond)
	must(err)
	if pr.Received != 0 {
		t.Fatalf("ping to nowhere got %d replies", pr.Received)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last int64
	res, err := Transfer(ctx, b, netip.MustParseAddrPort("10.9.2.2:5001"), a, 4<<20, 7, func(n int64) { last = n })
	must(err)
	if !res.Intact() || res.Received != 4<<20 || last != 4<<20 {
		t.Fatalf("transfer %+v, progress %d", res, last)
	}
	// The 1400-byte link caps the segment size below 1400-40.
	if res.ServerMSS == 0 || res.ServerMSS > 1360 {
		t.Errorf("server MSS %d, want 1..1360 (1400-byte MTU on its side)", res.ServerMSS)
	}

	nss := tp.Namespaces()
	must(tp.Close())
	for _, ns := range nss {
		if ns.Exists() {
			t.Errorf("namespace %s left behind", ns.Name)
		}
	}
	must(tp.Close()) // idempotent
}
