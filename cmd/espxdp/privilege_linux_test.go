//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/internal/gateway"
	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/internal/topo"
)

// daemonCaps is the capability set `espxdp run` needs, as
// docs/OPERATIONS.md and dist/espxdp@.service give it (setpriv names).
var daemonCaps = []string{"net_admin", "net_raw", "bpf", "perfmon", "ipc_lock"}

// goCommand is the Go toolchain's command.
const goCommand = "go"

// buildBinary builds cmd/espxdp into a directory every user can read.
func buildBinary(t *testing.T) string {
	t.Helper()
	// The Go toolchain that runs this test (the machine image's, not a
	// Debian package).
	goTool, err := exec.LookPath(goCommand)
	if err != nil {
		t.Fatalf("the go command that runs the tests is not in PATH: %v", err)
	}
	dir, err := os.MkdirTemp("", "espxdp-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "espxdp")
	args := []string{"build", "-o", bin, "."}
	cmd := exec.Command(goTool, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestRunWithoutRoot runs `espxdp run` as uid 65534 with only daemonCaps
// (setpriv, inside the gateway's namespace with ip netns exec) against a
// root gateway in this process, and pings through the tunnel: the
// daemon needs nothing beyond those capabilities.
func TestRunWithoutRoot(t *testing.T) {
	testenv.RequirePrivileged(t)
	setpriv := testenv.RequireCommand(t, "setpriv")
	ipTool := testenv.RequireCommand(t, "ip")
	bin := buildBinary(t)

	tp, mk := topo.NewForTest(t, "prv")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	hostA, gwA, gwB, hostB := mk("hA"), mk("gA"), mk("gB"), mk("hB")
	hw := func(side, last byte) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, side, last} }
	hostAMAC, gwALAN, gwAWAN := hw(1, 2), hw(1, 1), hw(1, 0xfe)
	hostBMAC, gwBLAN, gwBWAN := hw(2, 2), hw(2, 1), hw(2, 0xfe)
	for _, s := range []struct {
		host, gw         *topo.NS
		hostMAC, gwMAC   net.HardwareAddr
		hostAddr, gwAddr string
	}{{hostA, gwA, hostAMAC, gwALAN, "10.1.0.2", "10.1.0.1"}, {hostB, gwB, hostBMAC, gwBLAN, "10.2.0.2", "10.2.0.1"}} {
		hl, gl, err := tp.AddVeth(s.host, "eth0", s.gw, "lan0", topo.VethOptions{MACA: s.hostMAC, MACB: s.gwMAC})
		must(err)
		must(hl.AddAddr(netip.MustParsePrefix(s.hostAddr + "/24")))
		must(hl.DisableTXChecksum())
		must(gl.AddAddr(netip.MustParsePrefix(s.gwAddr + "/24")))
		must(s.host.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), netip.MustParseAddr(s.gwAddr), "", 0))
		must(hl.SetNeighbour(netip.MustParseAddr(s.gwAddr), s.gwMAC))
		must(gl.SetNeighbour(netip.MustParseAddr(s.hostAddr), s.hostMAC))
	}
	wa, wb, err := tp.AddVeth(gwA, "wan0", gwB, "wan0", topo.VethOptions{MACA: gwAWAN, MACB: gwBWAN})
	must(err)
	must(wa.AddAddr(netip.MustParsePrefix("192.0.2.1/24")))
	must(wb.AddAddr(netip.MustParsePrefix("192.0.2.2/24")))

	keyAB, keyBA := "0x"+randHex(t, 20), "0x"+randHex(t, 20)
	conf := func(sock, peerWAN, hostMAC, local, remote, protected, out, in, outSPI, inSPI, outKey, inKey string) string {
		return fmt.Sprintf(`gateway:
  control: %s
  keepalive: 0
interfaces:
  cipher: {name: wan0, next_hop: "%s", local: %s}
  plain: {name: lan0, next_hop: "%s"}
protected: [%s]
tunnels:
  - {name: peer, out: [%s], in: [%s]}
sas:
  - {name: %s, direction: out, spi: %s, local: %s, remote: %s, transform: aes128gcm16, key: %s}
  - {name: %s, direction: in, spi: %s, local: %s, remote: %s, transform: aes128gcm16, key: %s}
`, sock, peerWAN, local, hostMAC, protected, out, in, out, outSPI, local, remote, outKey, in, inSPI, local, remote, inKey)
	}

	// gwB: in this process, as root.
	sockB := filepath.Join(t.TempDir(), "b.sock")
	cfgB, err := config.Parse("b.yaml", []byte(conf(sockB, gwAWAN.String(), hostBMAC.String(), "192.0.2.2", "192.0.2.1", "10.1.0.0/24",
		"b-to-a", "a-to-b", "0x2001", "0x1001", keyBA, keyAB)))
	must(err)
	var logB testenv.SyncBuffer
	gB, err := gateway.New(cfgB, gateway.Options{NetNS: gwB.Path(), Logger: slog.New(slog.NewTextHandler(&logB, nil))})
	must(err)
	t.Cleanup(func() { gB.Close() })
	must(gB.Start())

	// gwA: the binary as nobody. Its directory (config and control
	// socket) belongs to it, as systemd's RuntimeDirectory would.
	dir, err := os.MkdirTemp("", "espxdp-nobody-")
	must(err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	must(os.Chown(dir, 65534, 65534))
	sockA := filepath.Join(dir, "a.sock")
	cfgA := filepath.Join(dir, "a.yaml")
	must(os.WriteFile(cfgA, []byte(conf(sockA, gwBWAN.String(), hostAMAC.String(), "192.0.2.1", "192.0.2.2", "10.2.0.0/24",
		"a-to-b", "b-to-a", "0x1001", "0x2001", keyAB, keyBA)), 0o600))
	must(os.Chown(cfgA, 65534, 65534))

	caps := "-all"
	for _, c := range daemonCaps {
		caps += ",+" + c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// ip netns exec NS setpriv ... espxdp run: the programs are ipTool and
	// setpriv (found above).
	unprivileged := func(caps string, run ...string) []string {
		return append([]string{"netns", "exec", gwA.Name, setpriv,
			"--reuid=65534", "--regid=65534", "--clear-groups",
			"--inh-caps=" + caps, "--ambient-caps=" + caps, "--bounding-set=" + caps, "--", bin}, run...)
	}
	cmd := exec.CommandContext(ctx, ipTool, unprivileged(caps, "run", "--config", cfgA, "--log-format", "json")...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	must(cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-exited:
			return err
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			return fmt.Errorf("daemon did not stop on SIGINT")
		}
	}
	t.Cleanup(func() { stop() })

	deadline := time.Now().Add(15 * time.Second)
	for {
		if code, _, _ := runCLI(t, "show", "stats", "--socket", sockA, "--timeout", "500ms"); code == exitOK {
			break
		}
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("unprivileged daemon exited: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("unprivileged daemon's control socket never answered\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	r, err := topo.Ping(hostA, netip.MustParseAddr("10.2.0.2"), 5, 56, 20*time.Millisecond, time.Second)
	must(err)
	if r.Received != 5 {
		t.Errorf("%d of 5 pings through the unprivileged gateway\n%s\n%s", r.Received, out.String(), logB.String())
	}
	code, js, errs := runCLI(t, "show", "sa", "--socket", sockA, "--json")
	if code != exitOK || !strings.Contains(js, `"name": "a-to-b"`) {
		t.Errorf("show sa: %d %s %s", code, js, errs)
	}
	// Its control socket belongs to nobody, mode 0600.
	if fi, err := os.Stat(sockA); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket: %v %v", fi, err)
	}
	// It really runs as 65534 with no other capability.
	// ip netns exec and setpriv exec, so espxdp keeps their pid.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err == nil {
		s := string(status)
		if !strings.Contains(s, "Uid:\t65534") {
			t.Errorf("daemon not running as 65534:\n%s", s)
		}
		if eff := capSet(s, "CapEff"); eff != capMask(t, daemonCaps) {
			t.Errorf("daemon CapEff %#x, want %#x", eff, capMask(t, daemonCaps))
		}
	} else {
		t.Errorf("daemon status: %v", err)
	}
	if err := stop(); err != nil {
		t.Errorf("daemon stop: %v\n%s", err, out.String())
	}
	if _, err := os.Stat(sockA); !os.IsNotExist(err) {
		t.Errorf("control socket left after stop: %v", err)
	}
	if strings.Contains(out.String(), "capabilities missing") {
		t.Errorf("the daemon thinks it lacks capabilities:\n%s", out.String())
	}

	// Without CAP_PERFMON the verifier refuses the program: the error
	// names the capability and where to read about it.
	fewer := strings.Replace(caps, ",+perfmon", "", 1)
	res, _ := exec.CommandContext(ctx, ipTool, unprivileged(fewer, "run", "--config", cfgA)...).CombinedOutput()
	if s := string(res); !strings.Contains(s, "capabilities missing") || !strings.Contains(s, "CAP_PERFMON (") || !strings.Contains(s, "docs/OPERATIONS.md") {
		t.Errorf("start without CAP_PERFMON:\n%s", s)
	}
}

// capMask turns capability names into a mask.
func capMask(t *testing.T, names []string) uint64 {
	t.Helper()
	bits := map[string]uint{"net_admin": 12, "net_raw": 13, "ipc_lock": 14, "sys_admin": 21, "bpf": 39, "perfmon": 38}
	var m uint64
	for _, n := range names {
		b, ok := bits[n]
		if !ok {
			t.Fatalf("unknown capability %s", n)
		}
		m |= 1 << b
	}
	return m
}
