//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/internal/topo"
)

// TestFailClosedSurvivesSIGKILL: `espxdp run` on a forwarding host
// (ip_forward=1) discards clear text from the remote protected network
// in XDP; after SIGKILL (the XDP link dies with the process) its
// nftables table still does; only `espxdp failclosed remove` opens the
// path again.
func TestFailClosedSurvivesSIGKILL(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "nft")
	tp, mk := topo.NewForTest(t, "fck")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	gw, peer, host := mk("gw"), mk("peer"), mk("host")
	wanMAC, peerMAC := net.HardwareAddr{2, 0, 0, 0, 9, 1}, net.HardwareAddr{2, 0, 0, 0, 9, 2}
	lanMAC, hostMAC := net.HardwareAddr{2, 0, 0, 0, 9, 3}, net.HardwareAddr{2, 0, 0, 0, 9, 4}
	wan, pl, err := tp.AddVeth(gw, "wan0", peer, "eth0", topo.VethOptions{MACA: wanMAC, MACB: peerMAC})
	must(err)
	lan, hl, err := tp.AddVeth(gw, "lan0", host, "eth0", topo.VethOptions{MACA: lanMAC, MACB: hostMAC})
	must(err)
	must(wan.AddAddr(netip.MustParsePrefix("192.0.2.1/24")))
	must(pl.AddAddr(netip.MustParsePrefix("192.0.2.2/24")))
	must(pl.AddAddr(netip.MustParsePrefix("10.2.0.5/32"))) // the peer's protected network, in clear
	must(lan.AddAddr(netip.MustParsePrefix("10.1.0.1/24")))
	must(hl.AddAddr(netip.MustParsePrefix("10.1.0.2/24")))
	must(host.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), netip.MustParseAddr("10.1.0.1"), "", 0))
	must(peer.AddRoute(netip.MustParsePrefix("10.1.0.0/24"), netip.MustParseAddr("192.0.2.1"), "", 0))
	must(wan.SetNeighbour(netip.MustParseAddr("192.0.2.2"), peerMAC))
	must(pl.SetNeighbour(netip.MustParseAddr("192.0.2.1"), wanMAC))
	must(lan.SetNeighbour(netip.MustParseAddr("10.1.0.2"), hostMAC))
	must(gw.Sysctl("net.ipv4.ip_forward", "1"))
	// The same in IPv6.
	must(wan.AddAddr(netip.MustParsePrefix("fd00:9::1/64")))
	must(pl.AddAddr(netip.MustParsePrefix("fd00:9::2/64")))
	must(pl.AddAddr(netip.MustParsePrefix("fd00:2::5/128")))
	must(lan.AddAddr(netip.MustParsePrefix("fd00:1::1/64")))
	must(hl.AddAddr(netip.MustParsePrefix("fd00:1::2/64")))
	must(host.AddRoute(netip.MustParsePrefix("::/0"), netip.MustParseAddr("fd00:1::1"), "", 0))
	must(peer.AddRoute(netip.MustParsePrefix("fd00:1::/64"), netip.MustParseAddr("fd00:9::1"), "", 0))
	must(wan.SetNeighbour(netip.MustParseAddr("fd00:9::2"), peerMAC))
	must(pl.SetNeighbour(netip.MustParseAddr("fd00:9::1"), wanMAC))
	must(lan.SetNeighbour(netip.MustParseAddr("fd00:1::2"), hostMAC))
	must(gw.Sysctl("net.ipv6.conf.all.forwarding", "1"))

	dir := t.TempDir()
	sock := filepath.Join(dir, "gw.sock")
	cfgPath := writeFile(t, dir, "gw.yaml", fmt.Sprintf(`gateway:
  control: %s
interfaces:
  cipher: {name: wan0, next_hop: %q, local: 192.0.2.1}
  plain: {name: lan0, next_hop: %q}
protected: [10.2.0.0/24, "fd00:2::/64"]
tunnels:
  - {name: t1, out: [out1], in: [in1]}
sas:
  - {name: out1, direction: out, spi: 0x100, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: 0x%s}
  - {name: in1, direction: in, spi: 0x200, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: 0x%s}
`, sock, peerMAC, hostMAC, randHex(t, 20), randHex(t, 20)))

	exe, err := os.Executable()
	must(err)
	var logs testenv.SyncBuffer
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), daemonArgsEnv+"="+strings.Join([]string{"run", "--config", cfgPath, "--netns", gw.Name}, "\x1f"))
	cmd.Stdout, cmd.Stderr = &logs, &logs
	must(cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	for deadline := time.Now().Add(15 * time.Second); ; {
		if code, _, _ := runCLI(t, "show", "stats", "--socket", sock, "--timeout", "200ms"); code == exitOK {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("daemon exited: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon never answered:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	const n = 20
	// sendFrom sends n datagrams from src (the peer's protected network)
	// to dst (the host) and returns how many arrived.
	sendFrom := func(src, dst string) int {
		t.Helper()
		var ln *net.UDPConn
		srcA, dstA := netip.MustParseAddr(src), netip.MustParseAddr(dst)
		must(host.Do(func() (err error) {
			ln, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(dstA, 9999)))
			return err
		}))
		defer ln.Close()
		must(peer.Do(func() error {
			c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(srcA, 0)), net.UDPAddrFromAddrPort(netip.AddrPortFrom(dstA, 9999)))
			if err != nil {
				return err
			}
			defer c.Close()
			for range n {
				if _, err := c.Write([]byte("clear text")); err != nil {
					return err
				}
			}
			return nil
		}))
		got := 0
		buf := make([]byte, 100)
		ln.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			if _, err := ln.Read(buf); err != nil {
				return got
			}
			got++
		}
	}
	// send does it in IPv4 and IPv6 and returns both counts.
	send := func() (int, int) {
		t.Helper()
		return sendFrom("10.2.0.5", "10.1.0.2"), sendFrom("fd00:2::5", "fd00:1::2")
	}
	statRe := regexp.MustCompile(`unprotected discarded:\s+(\d+)`)
	if g4, g6 := send(); g4 != 0 || g6 != 0 {
		t.Errorf("daemon running: %d (IPv4) and %d (IPv6) of %d clear-text packets reached the LAN host", g4, g6, n)
	}
	code, out, errs := runCLI(t, "show", "stats", "--socket", sock)
	m := statRe.FindStringSubmatch(out)
	if code != exitOK || m == nil || m[1] != strconv.Itoa(2*n) {
		t.Errorf("show stats after %d discards: %d\n%s%s", n, code, out, errs)
	}
	if !strings.Contains(out, "unprotected tunnel t1:") {
		t.Errorf("show stats has no per-tunnel discard line:\n%s", out)
	}

	must(cmd.Process.Signal(syscall.SIGKILL))
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("daemon survived SIGKILL")
	}
	exited <- nil // for the cleanup
	if g4, g6 := send(); g4 != 0 || g6 != 0 {
		t.Errorf("daemon killed: %d (IPv4) and %d (IPv6) of %d clear-text packets reached the LAN host", g4, g6, n)
	}
	code, out, errs = runCLI(t, "failclosed", "show", "--config", cfgPath, "--netns", gw.Name)
	if code != exitOK || !regexp.MustCompile(`unprotected in dropped:\s+40\b`).MatchString(out) {
		t.Errorf("failclosed show: %d\n%s%s", code, out, errs)
	}
	if code, out, errs = runCLI(t, "failclosed", "remove", "--config", cfgPath, "--netns", gw.Name); code != exitOK {
		t.Fatalf("failclosed remove: %d\n%s%s", code, out, errs)
	}
	// Control: now the kernel forwards the clear text; the test can see
	// the hole it closes.
	if g4, g6 := send(); g4 == 0 || g6 == 0 {
		t.Errorf("after failclosed remove, forwarded %d (IPv4) and %d (IPv6): the test proves nothing where 0", g4, g6)
	}
	if out, _ := gw.Exec(context.Background(), "nft", "list", "tables"); strings.Contains(string(out), "espxdp_") {
		t.Errorf("table left after remove: %s", out)
	}
}
