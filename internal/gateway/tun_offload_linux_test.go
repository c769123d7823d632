//go:build linux

package gateway

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/xdp"
)

// Inner IPv6 addresses of the hosts of buildTUNTopology.
var (
	host6A, host6B = netip.MustParseAddr("fd00:e1::2"), netip.MustParseAddr("fd00:e2::2")
)

// buildTUNTopology is buildTopology for route-based gateways whose hosts
// keep every offload on (TX checksum, TSO, GRO: nothing tuned), with
// IPv6 inside too (fd00:e1::/64 behind A, fd00:e2::/64 behind B); the
// wan link has queues queues.
func buildTUNTopology(t *testing.T, queues int) (a, b *site) {
	t.Helper()
	tp, mk := topo.NewForTest(t, "gwo")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	a = &site{host: mk("hostA"), gw: mk("gwA"), hostAddr: netip.MustParseAddr("10.1.0.2")}
	b = &site{host: mk("hostB"), gw: mk("gwB"), hostAddr: netip.MustParseAddr("10.2.0.2")}
	for i, s := range []*site{a, b} {
		n := byte(i + 1)
		s.hostMAC, s.gwMAC, s.wanMAC = mac(2, n), mac(1, n), mac(0xfe, n)
		hl, gl, err := tp.AddVeth(s.host, "eth0", s.gw, "lan0", topo.VethOptions{MACA: s.hostMAC, MACB: s.gwMAC})
		must(err)
		if on, err := hl.TXChecksum(); err != nil || !on {
			t.Fatalf("host TX checksum offload: %v, %v (the test needs it on)", on, err)
		}
		h6 := []netip.Addr{host6A, host6B}[i]
		g6 := netip.AddrFrom16([16]byte{0xfd, 0, 0, 0xe0 + n, 15: 1}) // fd00:eN::1
		gwLAN := netip.AddrFrom4([4]byte{10, n, 0, 1})
		must(hl.AddAddr(netip.PrefixFrom(s.hostAddr, 24)))
		must(hl.AddAddr(netip.PrefixFrom(h6, 64)))
		must(gl.AddAddr(netip.PrefixFrom(gwLAN, 24)))
		must(gl.AddAddr(netip.PrefixFrom(g6, 64)))
		must(s.host.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), gwLAN, "", 0))
		must(s.host.AddRoute(netip.MustParsePrefix("::/0"), g6, "", 0))
		must(hl.SetNeighbour(gwLAN, s.gwMAC))
		must(hl.SetNeighbour(g6, s.gwMAC))
		must(gl.SetNeighbour(s.hostAddr, s.hostMAC))
		must(gl.SetNeighbour(h6, s.hostMAC))
		must(s.gw.Sysctl("net.ipv4.ip_forward", "1"))
		must(s.gw.Sysctl("net.ipv6.conf.all.forwarding", "1"))
		s.socket = filepath.Join(t.TempDir(), "ctl.sock")
		s.log = &testenv.SyncBuffer{}
	}
	wa, wb, err := tp.AddVeth(a.gw, "wan0", b.gw, "wan0", topo.VethOptions{MACA: a.wanMAC, MACB: b.wanMAC, Queues: queues})
	must(err)
	wanA, wanB := netip.MustParseAddr(wanA4), netip.MustParseAddr(wanB4)
	must(wa.AddAddr(netip.PrefixFrom(wanA, 24)))
	must(wb.AddAddr(netip.PrefixFrom(wanB, 24)))
	must(wa.SetNeighbour(wanB, b.wanMAC))
	must(wb.SetNeighbour(wanA, a.wanMAC))
	return a, b
}

// tunYAML is gatewayYAML for a route-based gateway of buildTUNTopology:
// the TUN routes the peer's IPv4 and IPv6 networks.
func tunYAML(s, peer *site, side string, p gwParams) string {
	p.tun = true
	y := gatewayYAML(s, peer, side, p)
	if side == "a" {
		return strings.Replace(y, "routes: [10.2.0.0/24]", "routes: [10.2.0.0/24, \"fd00:e2::/64\"]", 1)
	}
	return strings.Replace(y, "routes: [10.1.0.0/24]", "routes: [10.1.0.0/24, \"fd00:e1::/64\"]", 1)
}

// tunStats returns the counters of gw's TUN device, summed over its
// queues, as show stats reports them (zero without a TUN).
func tunStats(gw *Gateway) xdp.TUNStats {
	if st := gw.Stats().TUN; st != nil {
		return *st
	}
	return xdp.TUNStats{}
}

// udpLockstep sends datagrams of growing size from `from` to `to` one
// at a time and checks that each arrives intact.
func udpLockstep(t *testing.T, from, to *topo.NS, dst netip.AddrPort, count int) {
	t.Helper()
	var rc, sc *net.UDPConn
	if err := to.Do(func() (err error) { rc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(dst)); return err }); err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := from.Do(func() (err error) { sc, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst)); return err }); err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	buf := make([]byte, 2048)
	for i := range count {
		msg := bytes.Repeat([]byte{byte(i + 1)}, 64+16*i)
		got := false
		// Lost datagrams (the first ones, while neighbours settle) are
		// sent again, a bounded number of times.
		for try := 0; try < 5 && !got; try++ {
			if _, err := sc.Write(msg); err != nil {
				t.Fatal(err)
			}
			rc.SetReadDeadline(time.Now().Add(time.Second))
			n, err := rc.Read(buf)
			if err == nil && !bytes.Equal(buf[:n], msg) {
				t.Fatalf("udp datagram %d to %v corrupted: %d bytes", i, dst, n)
			}
			got = err == nil
		}
		if !got {
			t.Fatalf("udp datagram %d to %v lost", i, dst)
		}
	}
}

// TestGatewayTUNOffload: two route-based gateways with TUN offloads,
// hosts with their offloads on. TCP (checksummed byte for byte) and UDP
// cross the tunnel over IPv4 and IPv6 inside, and the TUNs report that
// they split the hosts' super-packets and coalesced what they delivered;
// with two queues the TUN is a multi-queue device read by two workers.
func TestGatewayTUNOffload(t *testing.T) {
	testenv.RequirePrivileged(t)
	for _, queues := range []int{1, 2} {
		t.Run(fmt.Sprintf("queues=%d", queues), func(t *testing.T) {
			a, b := buildTUNTopology(t, queues)
			p := gwParams{keyAB: randKey(t), keyBA: randKey(t), extra: fmt.Sprintf("  queues: %d\n", queues)}
			gwA := startGateway(t, a, tunYAML(a, b, "a", p))
			gwB := startGateway(t, b, tunYAML(b, a, "b", p))
			for _, gw := range []*Gateway{gwA, gwB} {
				if s := tunStats(gw); !s.Offload {
					t.Fatalf("the gateway's TUN has no offloads: %+v", s)
				}
				gw.mu.Lock()
				n := len(gw.tunQ)
				gw.mu.Unlock()
				if n != queues {
					t.Fatalf("%d TUN queues, want %d", n, queues)
				}
			}
			if got := ping(t, a, b.hostAddr, 5); got != 5 {
				t.Fatalf("ping through the tunnel: %d of 5\nlogA:\n%s\nlogB:\n%s", got, a.log, b.log)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			for i, dst := range []netip.Addr{b.hostAddr, host6B} {
				res, err := topo.Transfer(ctx, b.host, netip.AddrPortFrom(dst, uint16(5101+i)), a.host, 8<<20, uint64(i+1), nil)
				if err != nil || !res.Intact() {
					t.Fatalf("transfer to %v: %+v, %v\nlogA:\n%s\nlogB:\n%s", dst, res, err, a.log, b.log)
				}
				t.Logf("TCP to %v: %.2f Gbit/s", dst, res.Gbps())
			}
			udpLockstep(t, a.host, b.host, netip.AddrPortFrom(b.hostAddr, 5111), 20)
			udpLockstep(t, b.host, a.host, netip.AddrPortFrom(host6A, 5112), 20)
			sa, sb := tunStats(gwA), tunStats(gwB)
			t.Logf("TUN A %+v", sa)
			t.Logf("TUN B %+v", sb)
			if sa.SplitSuperPackets == 0 || sa.SplitSegments <= sa.SplitSuperPackets {
				t.Errorf("gateway A split no super-packets of host A's TCP: %+v", sa)
			}
			if sb.CoalescedSuperPackets == 0 || sb.CoalescedSegments <= sb.CoalescedSuperPackets {
				t.Errorf("gateway B coalesced nothing it delivered: %+v", sb)
			}
			if sa.ReadDrops+sb.ReadDrops+sa.WriteErrors+sb.WriteErrors != 0 {
				t.Errorf("TUN drops or errors: A %+v, B %+v", sa, sb)
			}
		})
	}
}

// TestGatewayTUNGoodput measures one TCP stream through two TUN
// gateways with and without offloads (ESPXDP_TUN_GOODPUT=1 runs it; it
// asserts nothing about speed).
func TestGatewayTUNGoodput(t *testing.T) {
	if os.Getenv("ESPXDP_TUN_GOODPUT") == "" {
		t.Skip("set ESPXDP_TUN_GOODPUT=1 to measure")
	}
	testenv.RequirePrivileged(t)
	defer func() { tunOffload = true }()
	var res [2][]float64
	for round := range 3 {
		for i, off := range []bool{false, true} {
			t.Run(fmt.Sprintf("offload=%v/%d", off, round), func(t *testing.T) {
				tunOffload = off
				a, b := buildTUNTopology(t, 1)
				p := gwParams{keyAB: randKey(t), keyBA: randKey(t)}
				startGateway(t, a, tunYAML(a, b, "a", p))
				startGateway(t, b, tunYAML(b, a, "b", p))
				ping(t, a, b.hostAddr, 3)
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				r, err := topo.Transfer(ctx, b.host, netip.AddrPortFrom(b.hostAddr, 5201), a.host, 256<<20, 7, nil)
				if err != nil || !r.Intact() {
					t.Fatalf("transfer: %+v, %v", r, err)
				}
				res[i] = append(res[i], r.Gbps())
				t.Logf("offload %v: %.3f Gbit/s", off, r.Gbps())
			})
		}
	}
	t.Logf("bare %v Gbit/s, offload %v Gbit/s", res[0], res[1])
}
