//go:build linux

package harness

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/internal/topo"
)

// TestRunHelperArgs: a helper started with bad arguments reports an
// error instead of running.
func TestRunHelperArgs(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"sink", "127.0.0.1:1"},
		{"sink", "127.0.0.1:1", "0", "1s"},
		{"sink", "127.0.0.1:1", "65", "1s"},
		{"sink", "127.0.0.1:1", "1", "soon"},
		{"source", "127.0.0.1:1", "2", "1", "1s"},
		{"source", "127.0.0.1:1", "1", "x", "1s"},
		{"both", "127.0.0.1:1", "1", "1s"},
	} {
		if res := runHelper(args); res.Err == "" {
			t.Errorf("runHelper(%q) = %+v, want an error", args, res)
		}
	}
}

// TestChildTransfer: a transfer between two helper processes in two
// namespaces delivers every byte over each number of streams, reports a
// positive duration and MSS, and the helpers' CPU time; the harness
// process's own CPU time (sampleCPU) does not go backwards.
func TestChildTransfer(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "ip")
	tp, add := topo.NewForTest(t, "tcph")
	a, b := add("a"), add("b")
	la, lb, err := tp.AddVeth(a, "eth0", b, "eth0", topo.VethOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pa, pb := netip.MustParsePrefix("10.9.0.1/24"), netip.MustParsePrefix("10.9.0.2/24")
	if err := la.AddAddr(pa); err != nil {
		t.Fatal(err)
	}
	if err := lb.AddAddr(pb); err != nil {
		t.Fatal(err)
	}
	c0, err := sampleCPU()
	if err != nil {
		t.Fatal(err)
	}
	for _, streams := range []int{1, 3} {
		const size = 3<<20 + 1
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		sink, mss, hostCPU, err := childTransfer(ctx, b, netip.AddrPortFrom(pb.Addr(), 5201), a, size, streams)
		cancel()
		if err != nil {
			t.Fatalf("%d streams: %v", streams, err)
		}
		if sink.Bytes != size || sink.Ns <= 0 || mss <= 0 || hostCPU <= 0 {
			t.Errorf("%d streams: %+v, MSS %d, hosts' CPU %v", streams, sink, mss, hostCPU)
		}
	}
	c1, err := sampleCPU()
	if err != nil {
		t.Fatal(err)
	}
	if c1.self < c0.self || c1.softirq < c0.softirq {
		t.Errorf("CPU counters went backwards: %+v then %+v", c0, c1)
	}
}
