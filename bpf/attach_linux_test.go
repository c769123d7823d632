//go:build linux

package bpf

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/internal/netns"
	"github.com/espxdp/espxdp/internal/testenv"
)

// TestQueueSocketIndex test-runs packets as if received on each RX queue
// of a 4-queue veth and checks the XSKMAP index is
// queue*SocketsPerQueue + SPIHashSlot(spi).
func TestQueueSocketIndex(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "ip")
	const queues, perQueue = 4, 2
	ns, peer := netns.New(t), netns.New(t)
	v := netns.NewVethPairOpts(t, ns, peer, netns.VethOptions{Queues: queues})
	p := loadTest(t, Options{SocketsPerQueue: perQueue, SPIHash: true, Queues: queues})
	fd := xskSocket(t)

	if got := p.XSKMap().MaxEntries(); got != queues*perQueue {
		t.Errorf("XSKMAP has %d entries, want %d", got, queues*perQueue)
	}
	for q := range queues {
		for _, spi := range []uint32{1, 0xdeadbeef, 77, 4242} {
			frame := pkt{proto: protoESP, l4: esp(spi, 8)}.bytes()
			want := q*perQueue + SPIHashSlot(spi, perQueue)
			for idx := range queues * perQueue {
				if err := p.RegisterSocket(idx, fd); err != nil {
					t.Fatal(err)
				}
				var v2 Verdict
				var s Stats
				err := ns.Do(func() (err error) {
					v2, s, err = runOnQueue(p, frame, v.A.Index, q)
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				if idx == want && (v2 != VerdictRedirect || s != (Stats{ESPRedirected: 1})) {
					t.Errorf("queue %d spi %#x, socket at expected index %d: %v %+v", q, spi, idx, v2, s)
				}
				if idx != want && (v2 != VerdictPass || s != (Stats{RedirectNoSocket: 1})) {
					t.Errorf("queue %d spi %#x, socket only at index %d (want %d): %v %+v", q, spi, idx, want, v2, s)
				}
				if err := p.UnregisterSocket(idx); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// TestQueueBeyondXSKMap: a packet from an RX queue the XSKMAP has no
// slots for finds no socket and is passed.
func TestQueueBeyondXSKMap(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "ip")
	ns, peer := netns.New(t), netns.New(t)
	v := netns.NewVethPairOpts(t, ns, peer, netns.VethOptions{Queues: 4})
	p := loadTest(t, Options{Queues: 2})
	fd := xskSocket(t)
	fillQueue(t, p, 0, fd)
	fillQueue(t, p, 1, fd)
	frame := pkt{proto: protoUDP, l4: natESP}.bytes()
	for q, want := range []Stats{{NATTRedirected: 1}, {NATTRedirected: 1}, {RedirectNoSocket: 1}, {RedirectNoSocket: 1}} {
		var verdict Verdict
		var s Stats
		if err := ns.Do(func() (err error) {
			verdict, s, err = runOnQueue(p, frame, v.A.Index, q)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if s != want || (verdict == VerdictRedirect) != (want.NATTRedirected == 1) {
			t.Errorf("queue %d: %v %+v, want %+v", q, verdict, s, want)
		}
	}
}

// TestAttach attaches the program to a veth in a fresh namespace, sends
// real traffic from the peer namespace and checks what reaches the
// kernel, the counters, and that Close detaches.
func TestAttach(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "ip")
	for _, mode := range []AttachMode{AttachGeneric, AttachNative, AttachAuto} {
		t.Run(mode.String(), func(t *testing.T) { testAttach(t, mode) })
	}
}

func testAttach(t *testing.T, mode AttachMode) {
	var (
		addrA  = netip.MustParseAddr("192.0.2.1")
		addrB  = netip.MustParseAddr("192.0.2.2")
		addrA6 = netip.MustParseAddr("2001:db8::1")
		addrB6 = netip.MustParseAddr("2001:db8::2")
	)
	a, b := netns.New(t), netns.New(t)
	v := netns.NewVethPair(t, a, b)
	v.A.AddAddr(t, netip.PrefixFrom(addrA, 24))
	v.B.AddAddr(t, netip.PrefixFrom(addrB, 24))
	v.A.AddAddr(t, netip.PrefixFrom(addrA6, 64))
	v.B.AddAddr(t, netip.PrefixFrom(addrB6, 64))
	v.A.SetNeighbour(t, addrB, v.B.MAC)
	v.B.SetNeighbour(t, addrA, v.A.MAC)
	v.A.SetNeighbour(t, addrB6, v.B.MAC)
	v.B.SetNeighbour(t, addrA6, v.A.MAC)

	p := loadTest(t, Options{LocalAddrs: []netip.Addr{addrA, addrA6}})
	if v.A.XDPAttached(t) {
		t.Fatal("XDP program attached before Attach")
	}
	var att *Attachment
	err := a.Do(func() (err error) {
		att, err = p.Attach(v.A.Index, mode)
		return err
	})
	if err != nil {
		t.Fatalf("Attach(%v): %v", mode, err)
	}
	t.Cleanup(func() { att.Close() })
	switch {
	case mode == AttachAuto && att.Mode() != AttachNative && att.Mode() != AttachGeneric:
		t.Errorf("auto attach reports mode %v", att.Mode())
	case mode != AttachAuto && att.Mode() != mode:
		t.Errorf("attached in %v mode, asked for %v", att.Mode(), mode)
	}
	t.Logf("attached in %v mode", att.Mode())
	if att.Ifindex() != v.A.Index {
		t.Errorf("Ifindex %d, want %d", att.Ifindex(), v.A.Index)
	}
	if !v.A.XDPAttached(t) {
		t.Fatal("ip link shows no XDP program after Attach")
	}

	// A second program cannot take the interface in the same mode.
	other := loadTest(t, Options{})
	err = a.Do(func() error {
		att2, err := other.Attach(v.A.Index, att.Mode())
		if err == nil {
			att2.Close()
		}
		return err
	})
	if !errors.Is(err, ErrBusy) {
		t.Errorf("second Attach: %v, want ErrBusy", err)
	}

	// Receivers in A, senders in B.
	var rx4, rx6, tx4, tx6 *net.UDPConn
	var rawESP int
	err = a.Do(func() (err error) {
		if rx4, err = net.ListenUDP("udp4", &net.UDPAddr{IP: addrA.AsSlice(), Port: DefaultNATTPort}); err != nil {
			return err
		}
		rx6, err = net.ListenUDP("udp6", &net.UDPAddr{IP: addrA6.AsSlice(), Port: DefaultNATTPort})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx4.Close(); rx6.Close() })
	err = b.Do(func() (err error) {
		if tx4, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: addrA.AsSlice(), Port: DefaultNATTPort}); err != nil {
			return err
		}
		if tx6, err = net.DialUDP("udp6", nil, &net.UDPAddr{IP: addrA6.AsSlice(), Port: DefaultNATTPort}); err != nil {
			return err
		}
		rawESP, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ESP)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx4.Close(); tx6.Close(); unix.Close(rawESP) })

	stats := func() Stats {
		t.Helper()
		s, err := p.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Counters other traffic (neighbour discovery, MLD) may move.
	relevant := func(s Stats) Stats {
		s.PassedOther, s.PassedNonIP = 0, 0
		return s
	}
	keepalive := []byte{0xff}
	natESP := esp(0x1001, 16)

	send := func(name string, conn *net.UDPConn, rx *net.UDPConn, payload []byte, arrives bool, want Stats) {
		t.Helper()
		before := stats()
		if _, err := conn.Write(payload); err != nil {
			t.Fatalf("%s: send: %v", name, err)
		}
		// The program runs before the stack sees the packet, so once the
		// counter moved a passed packet is queued at the socket already.
		if !netns.WaitFor(2*time.Second, func() bool { return relevant(stats().Sub(before)) == want }) {
			t.Errorf("%s: counters changed by %+v, want %+v", name, relevant(stats().Sub(before)), want)
		}
		got, err := recvWithin(rx, 200*time.Millisecond)
		switch {
		case arrives && err != nil:
			t.Errorf("%s: not received by the kernel socket: %v", name, err)
		case arrives && !bytes.Equal(got, payload):
			t.Errorf("%s: received %x, want %x", name, got, payload)
		case !arrives && err == nil:
			t.Errorf("%s: reached the kernel socket (%x), but should have been redirected", name, got)
		}
	}

	send("keepalive v4", tx4, rx4, keepalive, true, Stats{KeepalivePassed: 1})
	send("keepalive v6", tx6, rx6, keepalive, true, Stats{KeepalivePassed: 1})
	send("IKE non-ESP marker", tx4, rx4, append(make([]byte, 4), "ike"...), true, Stats{IKEPassed: 1})
	send("NAT-T ESP, empty XSKMAP", tx4, rx4, natESP, true, Stats{RedirectNoSocket: 1})

	// With a socket in queue 0's slot the program redirects; the socket
	// is unbound, so the kernel drops the frame after the program ran,
	// and the UDP socket must not see it.
	fd := xskSocket(t)
	if err := p.RegisterSocket(0, fd); err != nil {
		t.Fatal(err)
	}
	send("NAT-T ESP v4, socket registered", tx4, rx4, natESP, false, Stats{NATTRedirected: 1})
	send("NAT-T ESP v6, socket registered", tx6, rx6, natESP, false, Stats{NATTRedirected: 1})
	send("keepalive v4 after redirect", tx4, rx4, keepalive, true, Stats{KeepalivePassed: 1})

	before := stats()
	dst := &unix.SockaddrInet4{Addr: addrA.As4()}
	if err := unix.Sendto(rawESP, natESP, 0, dst); err != nil {
		t.Fatalf("send raw ESP: %v", err)
	}
	if !netns.WaitFor(2*time.Second, func() bool { return relevant(stats().Sub(before)) == Stats{ESPRedirected: 1} }) {
		t.Errorf("raw ESP: counters changed by %+v, want ESPRedirected 1", relevant(stats().Sub(before)))
	}

	if err := att.Close(); err != nil {
		t.Fatalf("Attachment.Close: %v", err)
	}
	if v.A.XDPAttached(t) {
		t.Error("ip link still shows an XDP program after Close")
	}
	if err := att.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// Detached: traffic reaches the kernel and the counters stay put.
	before = stats()
	if _, err := tx4.Write(natESP); err != nil {
		t.Fatal(err)
	}
	if got, err := recvWithin(rx4, 2*time.Second); err != nil || !bytes.Equal(got, natESP) {
		t.Errorf("after detach: received %x, %v; want %x", got, err, natESP)
	}
	if d := stats().Sub(before); d.Total() != 0 {
		t.Errorf("after detach the counters moved: %+v", d)
	}
}

func recvWithin(c *net.UDPConn, d time.Duration) ([]byte, error) {
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		return nil, err
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return buf[:n], nil
}
