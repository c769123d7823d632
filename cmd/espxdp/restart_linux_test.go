//go:build linux

package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/internal/gateway"
	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/sa"
)

// TestRestartNoReuse: `espxdp run` with a state_dir is killed with
// SIGKILL in the middle of traffic and started again on the same static
// keys. Its peer (an in-process gateway) is the witness on the wire: it
// accepts every packet sent after the restart at once (no black hole)
// and counts no replay (a sequence number sent twice under the key
// would be one: its window never restarts), and the first number after
// the restart is above the persisted reservation.
func TestRestartNoReuse(t *testing.T) {
	testenv.RequirePrivileged(t)
	g := newTwoGateways(t, "dkr")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	hostA, gwA, gwB := g.hostA, g.gwA, g.gwB
	mac := testMAC

	keyAB, keyBA := "0x"+randHex(t, 20), "0x"+randHex(t, 20)
	dir := t.TempDir()
	sockA := filepath.Join(dir, "a.sock")
	state := filepath.Join(dir, "state")
	cfgA := writeFile(t, dir, "a.yaml", fmt.Sprintf(`gateway: {control: %s, state_dir: %s}
interfaces:
  cipher: {name: wan0, next_hop: %q, local: 192.0.2.1}
  plain: {name: lan0, next_hop: %q}
protected: [10.2.0.0/24]
tunnels:
  - {name: peer, out: [a-to-b], in: [b-to-a]}
sas:
  - {name: a-to-b, direction: out, spi: 0x1001, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: %s}
  - {name: b-to-a, direction: in, spi: 0x2001, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: %s}
`, sockA, state, mac(0xa, 2), mac(1, 2), keyAB, keyBA))
	cfgB, err := config.Parse("b.yaml", []byte(fmt.Sprintf(`interfaces:
  cipher: {name: wan0, next_hop: %q, local: 192.0.2.2}
  plain: {name: lan0, next_hop: %q}
protected: [10.1.0.0/24]
tunnels:
  - {name: peer, out: [b-to-a], in: [a-to-b]}
sas:
  - {name: b-to-a, direction: out, spi: 0x2001, local: 192.0.2.2, remote: 192.0.2.1, transform: aes128gcm16, key: %s}
  - {name: a-to-b, direction: in, spi: 0x1001, local: 192.0.2.2, remote: 192.0.2.1, transform: aes128gcm16, key: %s}
`, mac(0xa, 1), mac(2, 2), keyBA, keyAB)))
	must(err)
	var logB testenv.SyncBuffer
	gb, err := gateway.New(cfgB, gateway.Options{NetNS: gwB.Path(), Logger: slog.New(slog.NewTextHandler(&logB, nil))})
	must(err)
	t.Cleanup(func() { gb.Close() })
	must(gb.Start())
	inB := func() sa.Stats {
		for _, s := range gb.SAStats() {
			if s.Name == "a-to-b" {
				return s
			}
		}
		t.Fatal("no a-to-b on gwB")
		return sa.Stats{}
	}

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
		deadline := time.Now().Add(15 * time.Second)
		for {
			if _, err := gateway.Call(sockA, gateway.Request{Cmd: "show-stats"}, time.Second); err == nil {
				return cmd
			}
			if time.Now().After(deadline) {
				t.Fatalf("daemon did not come up:\n%s", logA.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// send n datagrams from hostA to hostB through gwA and wait until
	// gwB decapsulated want packets in all.
	send := func(n int, want uint64) {
		t.Helper()
		must(hostA.Do(func() error {
			c, err := net.Dial("udp", "10.2.0.2:9")
			if err != nil {
				return err
			}
			defer c.Close()
			for range n {
				if _, err := c.Write([]byte("seq")); err != nil {
					return err
				}
				time.Sleep(2 * time.Millisecond)
			}
			return nil
		}))
		deadline := time.Now().Add(5 * time.Second)
		for inB().DecapsPkts < want && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}

	cmd := start()
	send(50, 50)
	before := inB()
	if before.DecapsPkts != 50 {
		t.Fatalf("before the kill: gwB decapsulated %d of 50\n%s\n%s", before.DecapsPkts, logA.String(), logB.String())
	}
	must(cmd.Process.Signal(syscall.SIGKILL))
	cmd.Wait()
	start()
	send(50, 100)
	after := inB()
	if after.DecapsPkts != 100 {
		t.Errorf("after kill -9 and restart: gwB decapsulated %d of the 50 new packets (black hole?)\ndrops %v", after.DecapsPkts-before.DecapsPkts, after.Drops)
	}
	if n := after.Drops[sa.DropReplay]; n != 0 {
		t.Errorf("gwB counted %d replays: sequence numbers were sent again under the same key", n)
	}
	if after.Seq <= before.Seq || after.Seq < gateway.SeqBlock {
		t.Errorf("gwB's highest sequence number %d (before the kill %d): the restarted daemon did not start above its reservation %d", after.Seq, before.Seq, gateway.SeqBlock)
	}
}
