//go:build linux

package gateway

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/internal/inet"
	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/internal/topo"
)

// Clear text between the protected networks (issue: IPsec bypass through
// a forwarding gateway). Invariant under test, RFC 4301 §5.2 and DESIGN
// "fail closed": with the gateway's kernel forwarding on, no clear-text
// packet between 10.1.0.0/24 and 10.2.0.0/24 crosses gateway A — not
// from the WAN to the LAN, not from the LAN or the gateway itself to the
// WAN — while the gateway runs (XDP program, then nftables) and after it
// stopped (nftables table left behind); ESP and bypass-policy traffic
// still pass.

const (
	injected     = 20
	portBlocked  = 9999
	portBypassed = 9998
	bypassSport  = 5353
)

// bypassPolicies: on A, UDP between 10.1.0.0/24 port 9998 and
// 10.2.0.0/24 port 5353 is sent in clear (bypass); the rest to
// 10.2.0.0/24 goes through the tunnel.
const bypassPolicies = `policies:
  - {name: clear-udp, src: 10.1.0.0/24, src_ports: 9998, dst: 10.2.0.0/24, proto: udp, dst_ports: 5353, action: bypass}
`

// udpFrame is an Ethernet frame with an IPv4/UDP packet (UDP checksum 0,
// which IPv4 allows).
func udpFrame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 14+20+8+len(payload))
	copy(b[0:], dstMAC)
	copy(b[6:], srcMAC)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	s, d := src.As4(), dst.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	binary.BigEndian.PutUint16(ip[10:], inet.Checksum(ip[:20]))
	u := ip[20:]
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	copy(u[8:], payload)
	return b
}

// packetSocket opens an AF_PACKET socket on ifname in ns (closed with
// the test). Frames sent on it bypass the sender's netfilter; received
// frames include the interface's outgoing ones.
func packetSocket(t *testing.T, ns *topo.NS, ifname string) (fd, ifindex int) {
	t.Helper()
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		ifindex = ifi.Index
		proto := int(htons(unix.ETH_P_ALL))
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd, ifindex
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// inject sends n copies of frame on the packet socket.
func inject(t *testing.T, fd, ifindex, n int, frame []byte) {
	t.Helper()
	for range n {
		if err := unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifindex, Halen: 6}); err != nil {
			t.Fatal(err)
		}
	}
}

// clearTo counts, until the deadline, the frames on the packet socket
// that are IPv4, not ESP and not UDP 500/4500, with a destination in
// dst.
func clearTo(fd int, dst netip.Prefix, d time.Duration) int {
	tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	buf := make([]byte, 4096)
	n := 0
	for end := time.Now().Add(d); time.Now().Before(end); {
		m, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil || m < 14+20 || binary.BigEndian.Uint16(buf[12:]) != 0x0800 {
			continue
		}
		ip := buf[14:m]
		a := netip.AddrFrom4([4]byte(ip[16:20]))
		if ip[9] == 50 || !dst.Contains(a) {
			continue
		}
		if ip[9] == 17 && len(ip) >= 24 {
			if p := binary.BigEndian.Uint16(ip[22:]); p == 500 || p == 4500 {
				continue
			}
		}
		n++
	}
	return n
}

// udpListener listens on addr in ns and counts datagrams until stop.
type udpListener struct {
	c    *net.UDPConn
	done chan int
}

func listenUDP(t *testing.T, ns *topo.NS, addr netip.AddrPort) *udpListener {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	l := &udpListener{c: c, done: make(chan int, 1)}
	go func() {
		buf := make([]byte, 2048)
		n := 0
		for {
			if _, err := c.Read(buf); err != nil {
				l.done <- n
				return
			}
			n++
		}
	}()
	t.Cleanup(func() { c.Close() })
	return l
}

// count waits for stragglers and returns what arrived.
func (l *udpListener) count() int {
	time.Sleep(300 * time.Millisecond)
	l.c.Close()
	return <-l.done
}

// sendUDP sends n datagrams from src (in ns) to dst.
func sendUDP(t *testing.T, ns *topo.NS, src, dst netip.AddrPort, n int) {
	t.Helper()
	err := ns.Do(func() error {
		c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(src), net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		for range n {
			if _, err := c.Write([]byte("clear text")); err != nil && !errors.Is(err, unix.EPERM) {
				return err
			}
			time.Sleep(2 * time.Millisecond)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

func requireNft(t *testing.T) {
	t.Helper()
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "nft")
}

func TestUnprotectedDiscardedAndFailClosed(t *testing.T) {
	requireNft(t)
	a, b := buildTopology(t)
	// A routes the remote protected network to the WAN, as a gateway with
	// a default route would: without the discard, the kernel forwards
	// clear text there.
	if err := a.gw.AddRoute(netip.MustParsePrefix("10.2.0.0/24"), netip.MustParseAddr("192.0.2.2"), "wan0", 0); err != nil {
		t.Fatal(err)
	}
	p := gwParams{keyAB: randKey(t), keyBA: randKey(t)}
	yamlA := gatewayYAML(a, b, "a", p) + bypassPolicies
	gwA := startGateway(t, a, yamlA)
	startGateway(t, b, gatewayYAML(b, a, "b", p))

	// ESP flows.
	if got := ping(t, a, b.hostAddr, 5); got != 5 {
		t.Fatalf("ping through the tunnel: %d/5", got)
	}

	// The WAN side (gwB's wan0, by AF_PACKET: B's own nftables table
	// would stop clear text it sends through its stack) injects clear text
	// from B's protected network to hostA.
	injFD, injIdx := packetSocket(t, b.gw, "wan0")
	capFD, _ := packetSocket(t, a.gw, "wan0")
	remote := netip.MustParseAddr("10.2.0.5")
	blocked := udpFrame(a.wanMAC, b.wanMAC, remote, a.hostAddr, 40000, portBlocked, []byte("bypass?"))
	exempt := udpFrame(a.wanMAC, b.wanMAC, remote, a.hostAddr, bypassSport, portBypassed, []byte("bypass policy"))

	phase := func(name string, running bool) {
		t.Helper()
		before := gwA.Stats()
		inBefore, outBefore, err := FailClosedCounters(gwA.g, a.s())
		if err != nil {
			t.Fatal(err)
		}
		lb := listenUDP(t, a.host, netip.AddrPortFrom(a.hostAddr, portBlocked))
		le := listenUDP(t, a.host, netip.AddrPortFrom(a.hostAddr, portBypassed))
		inject(t, injFD, injIdx, injected, blocked)
		inject(t, injFD, injIdx, injected, exempt)
		if got := lb.count(); got != 0 {
			t.Errorf("%s: %d/%d clear-text packets from 10.2.0.5 reached hostA", name, got, injected)
		}
		if got := le.count(); got != injected {
			t.Errorf("%s: %d/%d bypass-policy packets reached hostA", name, got, injected)
		}
		// The reverse direction: hostA (forwarded by A, only when the
		// XDP program is gone; while it runs it encrypts) and A itself
		// (its output) send clear text to B's network.
		done := make(chan int, 1)
		go func() { done <- clearTo(capFD, netip.MustParsePrefix("10.2.0.0/24"), 700*time.Millisecond) }()
		time.Sleep(50 * time.Millisecond)
		sendUDP(t, a.host, netip.AddrPortFrom(a.hostAddr, 40001), netip.AddrPortFrom(remote, portBlocked), injected)
		sendUDP(t, a.gw, netip.MustParseAddrPort("192.0.2.1:40002"), netip.AddrPortFrom(remote, portBlocked), injected)
		if got := <-done; got != 0 {
			t.Errorf("%s: %d clear-text packets to 10.2.0.0/24 left A's wan0", name, got)
		}
		inAfter, outAfter, err := FailClosedCounters(gwA.g, a.s())
		if err != nil {
			t.Fatal(err)
		}
		after := gwA.Stats()
		if running {
			if d := after.UnprotectedDropped - before.UnprotectedDropped; d != injected {
				t.Errorf("%s: XDP discarded %d, want %d", name, d, injected)
			}
			if d := after.UnprotectedByTunnel["peer"] - before.UnprotectedByTunnel["peer"]; d != injected {
				t.Errorf("%s: discards of tunnel peer +%d, want %d (%v)", name, d, injected, after.UnprotectedByTunnel)
			}
			if d := after.UnprotectedBypassed - before.UnprotectedBypassed; d != injected {
				t.Errorf("%s: XDP bypass exemptions %d, want %d", name, d, injected)
			}
			if inAfter != inBefore {
				t.Errorf("%s: nftables saw %d inbound clear-text packets the XDP program should have dropped", name, inAfter-inBefore)
			}
			// A's own output (hostA's packets are encrypted by XDP).
			if d := outAfter - outBefore; d != injected {
				t.Errorf("%s: nftables dropped %d outbound, want %d", name, d, injected)
			}
		} else {
			if d := inAfter - inBefore; d != injected {
				t.Errorf("%s: nftables dropped %d inbound, want %d", name, d, injected)
			}
			if d := outAfter - outBefore; d != 2*injected {
				t.Errorf("%s: nftables dropped %d outbound, want %d (forwarded and A's own)", name, d, 2*injected)
			}
		}
	}
	phase("running", true)
	if got := ping(t, a, b.hostAddr, 3); got != 3 {
		t.Errorf("ping through the tunnel after the discards: %d/3", got)
	}
	// The rate-limited log line (log_drops: 200ms in the test config).
	const line = "%CRYPTO-4-RECVD_PKT_NOT_IPSEC: unprotected packet from 10.2.0.5 to 10.1.0.2 discarded"
	for end := time.Now().Add(2 * time.Second); !strings.Contains(a.log.String(), line) && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
	if log := a.log.String(); !strings.Contains(log, line) {
		t.Errorf("no discard log line %q:\n%s", line, log)
	} else if n := strings.Count(log, "RECVD_PKT_NOT_IPSEC"); n > 5 {
		t.Errorf("%d discard log lines for one burst: not rate limited", n)
	}

	// The daemon goes away (its XDP links with it): the table stays.
	if err := gwA.Close(); err != nil {
		t.Fatal(err)
	}
	phase("stopped", false)

	// Removing is explicit and touches only our table.
	if _, err := a.gw.Exec(t.Context(), "nft", "add", "table", "inet", "someone_else"); err != nil {
		t.Fatal(err)
	}
	if err := RemoveFailClosed(gwA.g, a.s()); err != nil {
		t.Fatal(err)
	}
	out, err := a.gw.Exec(t.Context(), "nft", "list", "tables")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), FailClosedTable(gwA.g)) || !strings.Contains(string(out), "someone_else") {
		t.Errorf("after RemoveFailClosed: %s", out)
	}
	if err := RemoveFailClosed(gwA.g, a.s()); err != nil {
		t.Errorf("removing a missing table: %v", err)
	}
	// Without the table and the program, the kernel forwards clear text:
	// the hole this closes was real in this topology.
	lb := listenUDP(t, a.host, netip.AddrPortFrom(a.hostAddr, portBlocked))
	inject(t, injFD, injIdx, injected, blocked)
	if got := lb.count(); got == 0 {
		t.Error("control: with neither XDP nor nftables, no clear text was forwarded (is the test sending anything?)")
	}
}

// s is the gateway namespace path of a site.
func (s *site) s() string { return s.gw.Path() }

func TestFailClosedOffRemovesTable(t *testing.T) {
	requireNft(t)
	_, mk := topo.NewForTest(t, "fco")
	ns := mk("gw")
	g := &config.Gateway{Cipher: config.Iface{Name: "wan-x.1"}, Protected: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}, FailClosed: true}
	if err := InstallFailClosed(g, ns.Path()); err != nil {
		t.Fatal(err)
	}
	// Replacing is atomic and idempotent.
	g.Protected = append(g.Protected, netip.MustParsePrefix("fd09::/48"))
	if err := InstallFailClosed(g, ns.Path()); err != nil {
		t.Fatal(err)
	}
	out, err := ns.Exec(t.Context(), "nft", "list", "table", "inet", "espxdp_wan_x_1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "fd09::/48") || strings.Count(string(out), "chain forward") != 1 {
		t.Errorf("table after replacement:\n%s", out)
	}
	gw := &Gateway{g: &config.Gateway{Cipher: g.Cipher}, opts: Options{NetNS: ns.Path()}, log: testLogger(t)}
	if err := gw.applyFailClosed(); err != nil {
		t.Fatal(err)
	}
	if out, _ := ns.Exec(t.Context(), "nft", "list", "tables"); strings.Contains(string(out), "espxdp_") {
		t.Errorf("fail_closed: false left %s", out)
	}
	if _, err := os.Stat(ns.Path()); err != nil {
		t.Fatal(err)
	}
}
