//go:build linux

package gateway

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/inet"
	"github.com/espxdp/espxdp/internal/show"
	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/sa"
)

// injector sends hand-made ESP (the test's own cipher under a gateway's
// key) from a namespace to 192.0.2.2, with sequence numbers it chooses.
type injector struct {
	t   *testing.T
	ns  *topo.NS
	c   *esp.Cipher
	scr *esp.Scratch
	spi uint32
	udp bool
	seq uint64
}

func newInjector(t *testing.T, ns *topo.NS, keyHex string, spi uint32, udp bool) *injector {
	t.Helper()
	key, err := hex.DecodeString(strings.TrimPrefix(keyHex, "0x"))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := esp.ParseTransform("aes128gcm16")
	if err != nil {
		t.Fatal(err)
	}
	c, err := esp.New(esp.Config{Transform: tr, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Wipe)
	return &injector{t: t, ns: ns, c: c, scr: esp.NewScratch(), spi: spi, udp: udp}
}

// udp4 is an inner IPv4/UDP packet (UDP checksum 0: none).
func udp4(src, dst netip.Addr, dport uint16, payload string) []byte {
	b := make([]byte, 28+len(payload))
	b[0], b[8], b[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[10:], inet.Checksum(b[:20]))
	binary.BigEndian.PutUint16(b[20:], 40000)
	binary.BigEndian.PutUint16(b[22:], dport)
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	copy(b[28:], payload)
	return b
}

// udp6 is an inner IPv6/UDP packet (checksum left wrong: it must never
// be delivered anyway).
func udp6(src, dst netip.Addr, dport uint16) []byte {
	b := make([]byte, 48)
	b[0], b[6], b[7] = 0x60, 17, 64
	binary.BigEndian.PutUint16(b[4:], 8)
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	binary.BigEndian.PutUint16(b[40:], 40000)
	binary.BigEndian.PutUint16(b[42:], dport)
	binary.BigEndian.PutUint16(b[44:], 8)
	return b
}

// send encrypts inner with the next sequence number (or seq, if not 0)
// and sends it from 192.0.2.1 to 192.0.2.2.
func (in *injector) send(inner []byte, seq uint64) {
	in.t.Helper()
	if seq == 0 {
		in.seq++
		seq = in.seq
	}
	buf := make([]byte, esp.MaxHeadroom+len(inner)+esp.MaxTailroom)
	copy(buf[esp.MaxHeadroom:], inner)
	o := &esp.Outer{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), UDP: in.udp}
	pkt, err := in.c.EncapTunnel(in.scr, buf, esp.MaxHeadroom, len(inner), in.spi, seq, o)
	if err != nil {
		in.t.Fatal(err)
	}
	err = in.ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: [4]byte{192, 0, 2, 2}})
	})
	if err != nil {
		in.t.Fatal(err)
	}
}

// listenUDP listens on hostB and returns a function that collects the
// payloads received within d.
func collectUDP(t *testing.T, ns *topo.NS, addr netip.AddrPort) func(d time.Duration) []string {
	t.Helper()
	var conn *net.UDPConn
	if err := ns.Do(func() (err error) {
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return func(d time.Duration) []string {
		var got []string
		buf := make([]byte, 2048)
		end := time.Now().Add(d)
		for {
			conn.SetReadDeadline(end)
			n, err := conn.Read(buf)
			if err != nil {
				return got
			}
			got = append(got, string(buf[:n]))
		}
	}
}

// testInboundPolicy checks RFC 4301 §5.2 on gwB: decryptable ESP whose
// inner source is outside what gwB sends into the tunnel (10.1.0.0/24)
// is dropped with DropPolicy and counted on the SA; legitimate inner
// packets reach hostB.
func testInboundPolicy(t *testing.T, tun, udp bool) {
	testenv.RequirePrivileged(t)
	a, b := buildTopology(t)
	p := gwParams{tun: tun, udp: udp, keyAB: randKey(t), keyBA: randKey(t)}
	gb := startGateway(t, b, gatewayYAML(b, a, "b", p))
	recv := collectUDP(t, b.host, netip.AddrPortFrom(b.hostAddr, 7777))
	inj := newInjector(t, a.gw, p.keyAB, 0x1001, udp)
	spoofed := []netip.Addr{netip.MustParseAddr("10.9.9.9"), netip.MustParseAddr("10.2.0.99"), netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("10.1.1.2")}
	for _, src := range spoofed {
		inj.send(udp4(src, b.hostAddr, 7777, "spoofed "+src.String()), 0)
	}
	inj.send(udp6(netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8:2::2"), 7777), 0)
	for i := range 3 {
		inj.send(udp4(netip.MustParseAddr("10.1.0.2"), b.hostAddr, 7777, "legit "+string(rune('0'+i))), 0)
	}
	if !strings.Contains(b.log.String(), "STATIC KEYS WITHOUT STATE") {
		t.Errorf("no warning about static AEAD keys without state_dir:\n%s", b.log)
	}
	got := recv(time.Second)
	if len(got) != 3 {
		t.Errorf("hostB received %q, want the 3 legitimate datagrams\nlog:\n%s", got, b.log)
	}
	for _, g := range got {
		if !strings.HasPrefix(g, "legit") {
			t.Errorf("hostB received %q", g)
		}
	}
	s := statsOf(t, b.socket, "a-to-b")
	if n := s.Drops[sa.DropPolicy]; n != uint64(len(spoofed)+1) {
		t.Errorf("a-to-b policy drops %d, want %d (stats %+v)", n, len(spoofed)+1, s)
	}
	var shown strings.Builder
	if err := show.Text(&shown, gb.Report("gwB")); err != nil || !strings.Contains(shown.String(), fmt.Sprintf("policy %d", len(spoofed)+1)) {
		t.Errorf("show sa does not print the policy drops (%v):\n%s", err, shown.String())
	}
	// An explicit opt-out (selectors: any) delivers them.
	y := strings.Replace(gatewayYAML(b, a, "b", p), "in: [a-to-b]}", "in: [a-to-b], selectors: any}", 1)
	if rr, err := reload(t, gb, y); err != nil || len(rr.Replaced) != 1 {
		t.Fatalf("reload with selectors: any: %+v, %v", rr, err)
	}
	inj.send(udp4(netip.MustParseAddr("10.9.9.9"), b.hostAddr, 7777, "spoofed, allowed"), 0)
	time.Sleep(200 * time.Millisecond)
	if s := statsOf(t, b.socket, "a-to-b"); s.DecapsPkts != 1 || s.Drops[sa.DropPolicy] != 0 {
		t.Errorf("with selectors: any: decaps %d, policy drops %d", s.DecapsPkts, s.Drops[sa.DropPolicy])
	}
}

func TestInboundPolicyXDP(t *testing.T) { testInboundPolicy(t, false, false) }
func TestInboundPolicyTUN(t *testing.T) { testInboundPolicy(t, true, true) }
