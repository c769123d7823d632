//go:build linux

package swan

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/netns"
	"github.com/espxdp/espxdp/internal/testenv"
)

func TestParseStatCPU(t *testing.T) {
	// Field 2 with spaces and a ')' of its own; utime 150, stime 50 ticks.
	line := "1234 (char on) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 17 0 12345 0 0"
	d, err := parseStatCPU(line)
	if err != nil || d != 2*time.Second {
		t.Fatalf("parseStatCPU = %v, %v; want 2s", d, err)
	}
	for _, bad := range []string{"", "1234 (x S 1", "1 (x) S 1 2 3", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 zz 50 0"} {
		if _, err := parseStatCPU(bad); err == nil {
			t.Errorf("parseStatCPU(%q) accepted", bad)
		}
	}
}

// pair is two charons in two namespaces joined by a veth, each with a
// protected address on its loopback.
type pair struct {
	a, b     *Charon
	nsA, nsB *netns.NS
	conn     Conn // a's; b's is its mirror
}

var (
	outerA = netip.MustParseAddr("192.168.78.1")
	outerB = netip.MustParseAddr("192.168.78.2")
	innerA = netip.MustParseAddr("10.78.1.1")
	innerB = netip.MustParseAddr("10.78.2.1")
)

func newPair(t *testing.T) *pair {
	Require(t)
	testenv.RequireCommand(t, "ping")
	p := &pair{nsA: netns.New(t), nsB: netns.New(t)}
	v := netns.NewVethPair(t, p.nsA, p.nsB)
	v.A.AddAddr(t, netip.PrefixFrom(outerA, 24))
	v.B.AddAddr(t, netip.PrefixFrom(outerB, 24))
	p.nsA.IP(t, "addr", "add", innerA.String()+"/32", "dev", "lo")
	p.nsB.IP(t, "addr", "add", innerB.String()+"/32", "dev", "lo")
	p.a = StartTest(t, p.nsA.Name, Options{})
	p.b = StartTest(t, p.nsB.Name, Options{})
	p.conn = Conn{LocalAddrs: outerA.String(), RemoteAddrs: outerB.String(), LocalID: "a.swan.test", RemoteID: "b.swan.test",
		PSK: "swan-package-test-psk-0123456789", LocalTS: []netip.Prefix{netip.PrefixFrom(innerA, 32)}, RemoteTS: []netip.Prefix{netip.PrefixFrom(innerB, 32)}}
	if err := p.a.Load(p.conn); err != nil {
		t.Fatal(err)
	}
	if err := p.b.Load(mirror(p.conn)); err != nil {
		t.Fatal(err)
	}
	return p
}

func mirror(c Conn) Conn {
	c.LocalAddrs, c.RemoteAddrs = c.RemoteAddrs, c.LocalAddrs
	c.LocalID, c.RemoteID = c.RemoteID, c.LocalID
	c.LocalTS, c.RemoteTS = c.RemoteTS, c.LocalTS
	return c
}

// ping sends 3 echo requests from a's inner address to b's and fails t
// unless all are answered.
func (p *pair) ping(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if out, err := p.nsA.Exec(ctx, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", innerA.String(), innerB.String()); err != nil {
		t.Fatalf("ping through the tunnel: %v\n%s", err, out)
	}
}

// installed returns the installed child of each side and checks they
// are the two halves of one SA pair.
func (p *pair) installed(t *testing.T, exclude ...uint32) (a, b ChildSA) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	a, err := p.a.WaitChild(ctx, DefaultChild, exclude...)
	if err != nil {
		t.Fatal(err)
	}
	// b's outbound SPI is a's inbound one.
	var excludeB []uint32
	for {
		b, err = p.b.WaitChild(ctx, DefaultChild, excludeB...)
		if err != nil {
			t.Fatal(err)
		}
		if b.SPIOut == a.SPIIn {
			break
		}
		excludeB = append(excludeB, b.SPIIn)
	}
	if b.SPIIn != a.SPIOut || !a.Encap || !b.Encap || a.Mode != "TUNNEL" || a.EncrAlg != "AES_GCM_16" {
		t.Fatalf("children do not match: a %+v, b %+v", a, b)
	}
	return a, b
}

func count(t *testing.T, c *Charon, spiIn uint32) ChildSA {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sas, err := c.ListSAs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ike := range sas {
		for _, ch := range ike.Children {
			if ch.SPIIn == spiIn {
				return ch
			}
		}
	}
	t.Fatalf("no child SA with inbound SPI %08x in %+v", spiIn, sas)
	return ChildSA{}
}

// TestTwoCharons: a initiates, both list the same SA pair (UDP
// encapsulated, as kernel-libipsec needs), pings pass through the
// libipsec TUNs and are counted on both sides; a rekey gives new SPIs
// that carry traffic; Terminate removes the SAs on both sides.
func TestTwoCharons(t *testing.T) {
	p := newPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.a.Initiate(ctx, DefaultChild); err != nil {
		t.Fatalf("Initiate: %v", err)
	}
	a, b := p.installed(t)
	p.ping(t)
	if a, b := count(t, p.a, a.SPIIn), count(t, p.b, b.SPIIn); a.PacketsOut < 3 || a.PacketsIn < 3 || b.PacketsIn < 3 || b.PacketsOut < 3 {
		t.Fatalf("pings not counted: a %+v, b %+v", a, b)
	}
	sas, err := p.a.ListSAs(ctx)
	if err != nil || len(sas) != 1 || !sas[0].Initiator || sas[0].RemotePort != 4500 || sas[0].RemoteID != "b.swan.test" {
		t.Fatalf("a's IKE SA: %+v, %v", sas, err)
	}

	if err := p.a.Rekey(ctx, DefaultChild); err != nil {
		t.Fatalf("Rekey: %v", err)
	}
	a2, b2 := p.installed(t, a.SPIIn)
	if a2.SPIIn == a.SPIIn || b2.SPIIn == b.SPIIn {
		t.Fatalf("rekey kept the SPIs: %+v %+v", a2, b2)
	}
	p.ping(t)
	if c := count(t, p.a, a2.SPIIn); c.PacketsIn < 3 {
		t.Fatalf("the rekeyed child carried %d packets in", c.PacketsIn)
	}

	if err := p.a.Terminate(ctx, DefaultConn); err != nil {
		t.Fatalf("Terminate: %v", err)
	}
	if !netns.WaitFor(5*time.Second, func() bool {
		sas, err := p.b.ListSAs(ctx)
		return err == nil && len(sas) == 0
	}) {
		t.Fatal("b kept the IKE SA a deleted")
	}
	if !strings.Contains(p.b.Log(), "received DELETE for IKE_SA") {
		t.Errorf("b's log does not show the delete:\n%s", p.b.Log())
	}
}

// TestKill: after Kill, charon is gone (Done closed, swanctl says
// ErrExited) and the peer still lists its SA: nobody told it.
func TestKill(t *testing.T) {
	p := newPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.b.Initiate(ctx, DefaultChild); err != nil {
		t.Fatalf("Initiate: %v", err)
	}
	p.installed(t)
	cpu, err := p.a.CPUTime()
	if err != nil || cpu < 0 {
		t.Fatalf("CPUTime = %v, %v", cpu, err)
	}
	if err := p.a.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.a.Done():
	default:
		t.Fatal("Done not closed after Kill")
	}
	if _, err := p.a.ListSAs(ctx); !errors.Is(err, ErrExited) {
		t.Fatalf("ListSAs after Kill: %v, want ErrExited", err)
	}
	if _, err := p.a.CPUTime(); !errors.Is(err, ErrExited) {
		t.Fatalf("CPUTime after Kill: %v, want ErrExited", err)
	}
	if sas, err := p.b.ListSAs(ctx); err != nil || len(sas) != 1 || sas[0].State != "ESTABLISHED" {
		t.Fatalf("b after a's crash: %+v, %v", sas, err)
	}
	if err := p.a.Stop(); err != nil {
		t.Fatalf("Stop after Kill: %v", err)
	}
}
