//go:build linux

package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/gateway"
	"github.com/espxdp/espxdp/internal/swan"
	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/internal/topo"
)

// TestIKERestartRenegotiates: `espxdp run` with an IKE peer (strongSwan,
// kernel-libipsec) is killed with SIGKILL, so it cannot tell the peer,
// and started again: it negotiates a new IKE SA and child SA, with new
// SPIs and fresh keys (a new Diffie-Hellman exchange), so no sequence
// number is ever sent twice under one key, and traffic flows again.
func TestIKERestartRenegotiates(t *testing.T) {
	swan.Require(t)
	g := newTwoGateways(t, "ikr")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	hostA, gwA, gwB, hostB := g.hostA, g.gwA, g.gwB, g.hostB
	mac := testMAC
	must(g.gwALan.SetNeighbour(netip.MustParseAddr("10.1.0.2"), mac(1, 2)))
	must(hostB.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), netip.MustParseAddr("10.2.0.1"), "", 0))
	must(gwB.Sysctl("net.ipv4.ip_forward", "1"))
	must(g.wanA.SetNeighbour(netip.MustParseAddr("192.0.2.2"), mac(0xa, 2)))
	must(g.wanB.SetNeighbour(netip.MustParseAddr("192.0.2.1"), mac(0xa, 1)))

	const psk = "restart test pre-shared key"
	charon := swan.StartTest(t, gwB.Name, swan.Options{})
	must(charon.Load(swan.Conn{LocalAddrs: "192.0.2.2", RemoteAddrs: "192.0.2.1", LocalID: "strongswan.test",
		RemoteID: "espxdp.test", PSK: psk, LocalTS: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/24")},
		RemoteTS: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")}, Encap: true, NoMobike: true}))

	dir := t.TempDir()
	sockA := filepath.Join(dir, "a.sock")
	pskFile := filepath.Join(dir, "b.psk")
	must(os.WriteFile(pskFile, []byte(psk), 0o600))
	cfgA := writeFile(t, dir, "a.yaml", fmt.Sprintf(`gateway: {control: %s, mss_clamp: 1300}
interfaces:
  cipher: {name: wan0, next_hop: %q, local: 192.0.2.1}
  plain: {name: lan0, next_hop: %q}
protected: [10.2.0.0/24]
tunnels:
  - {name: to-b}
peers:
  - name: b
    local: 192.0.2.1
    remote: 192.0.2.2
    local_id: espxdp.test
    remote_id: strongswan.test
    psk_file: %s
    local_ts: [10.1.0.0/24]
    remote_ts: [10.2.0.0/24]
    encap: true
    retransmit_timeout: 200ms
    retransmit_tries: 3
`, sockA, mac(0xa, 2), mac(1, 2), pskFile))

	var logA testenv.SyncBuffer
	start := func() *exec.Cmd {
		t.Helper()
		cmd := exec.Command(os.Args[0], "run", "--config", cfgA, "--netns", gwA.Name)
		cmd.Env = append(os.Environ(), "ESPXDP_TEST_RUN_MAIN=1")
		cmd.Stdout, cmd.Stderr = &logA, &logA
		must(cmd.Start())
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
		return cmd
	}
	// up waits for the daemon's IKE SA and child, and returns them.
	up := func() (gateway.IKESAInfo, gateway.IKEChildInfo) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			resp, err := gateway.Call(sockA, gateway.Request{Cmd: "show-ike"}, time.Second)
			if err == nil && len(resp.IKE) == 1 && resp.IKE[0].Up {
				for _, s := range resp.IKE[0].IKESAs {
					for _, c := range s.Children {
						if c.Primary {
							return s, c
						}
					}
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("no IKE SA:\n%s\ncharon:\n%s", logA.String(), charon.Log())
		return gateway.IKESAInfo{}, gateway.IKEChildInfo{}
	}
	ping := func(n int) int {
		t.Helper()
		r, err := topo.Ping(hostA, netip.MustParseAddr("10.2.0.2"), n, 56, 20*time.Millisecond, time.Second)
		must(err)
		return r.Received
	}

	cmd := start()
	ike1, child1 := up()
	if got := ping(5); got != 5 {
		t.Fatalf("ping before the kill: %d of 5\n%s", got, logA.String())
	}
	must(cmd.Process.Signal(syscall.SIGKILL))
	cmd.Wait()
	start()
	ike2, child2 := up()
	if ike2.SPIs == ike1.SPIs || child2.SPIIn == child1.SPIIn || child2.SPIOut == child1.SPIOut {
		t.Fatalf("the restarted daemon reuses SPIs: IKE %s → %s, child %+v → %+v", ike1.SPIs, ike2.SPIs, child1, child2)
	}
	// strongSwan installed the new child: its SPIs pair with ours.
	var in, out uint32
	fmt.Sscanf(child2.SPIIn, "0x%x", &in)
	fmt.Sscanf(child2.SPIOut, "0x%x", &out)
	paired := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		sas, err := charon.ListSAs(ctx)
		must(err)
		for _, s := range sas {
			for _, c := range s.Children {
				if c.SPIIn == out && c.SPIOut == in && c.State == "INSTALLED" {
					return true
				}
			}
		}
		return false
	}
	for end := time.Now().Add(5 * time.Second); !paired(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("strongSwan has no child with our new SPIs %s/%s", child2.SPIIn, child2.SPIOut)
		}
	}
	if got := ping(5); got != 5 {
		t.Fatalf("ping after kill -9 and restart: %d of 5\n%s\ncharon:\n%s", got, logA.String(), charon.Log())
	}
}
