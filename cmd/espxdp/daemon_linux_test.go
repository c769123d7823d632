//go:build linux

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/internal/topo"
)

// TestRunDaemon drives `espxdp run` the way an operator does: start it
// on a config, ask it through the control socket with the client
// commands, change the file and send SIGHUP, add and delete an SA from
// the command line, then stop it and find the socket gone.
func TestRunDaemon(t *testing.T) {
	testenv.RequirePrivileged(t)
	tp, mk := topo.NewForTest(t, "dmt")
	gw, peer := mk("gw"), mk("peer")
	if _, _, err := tp.AddVeth(gw, "wan0", peer, "eth0", topo.VethOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tp.AddVeth(gw, "lan0", peer, "eth1", topo.VethOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "gw.sock")
	key := func() string { return "0x" + randHex(t, 20) }
	conf := func(extra string) string {
		return fmt.Sprintf(`gateway:
  control: %s
interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:00:01"}
  plain: {name: lan0, next_hop: "02:00:00:00:00:02"}
protected: [10.2.0.0/24]
tunnels:
  - {name: t1, out: [out1], in: [in1]}
sas:
  - {name: out1, direction: out, spi: 0x100, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: %s}
  - {name: in1, direction: in, spi: 0x200, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: %s, lifetime: {soft_seconds: 1, hard_seconds: 2}}
%s`, sock, key(), key(), extra)
	}
	cfgPath := writeFile(t, dir, "gw.yaml", conf(""))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hup := make(chan os.Signal, 1)
	var logs, stdout testenv.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runDaemon(ctx, cfgPath, gw.Name, "", slog.New(slog.NewTextHandler(&logs, nil)), hup, &stdout)
	}()
	waitSocket := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if code, _, _ := runCLI(t, "show", "stats", "--socket", sock); code == exitOK {
				return
			}
			select {
			case err := <-done:
				t.Fatalf("daemon exited: %v\n%s", err, logs.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("control socket never answered\n%s", logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitSocket()
	// `espxdp events` follows the daemon from the start.
	var events testenv.SyncBuffer
	evCtx, evCancel := context.WithCancel(context.Background())
	evDone := make(chan error, 1)
	go func() { evDone <- printEvents(evCtx, sock, 2*time.Second, false, &events) }()
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode: %v, %v (want 0600: keys travel over it)", fi.Mode(), err)
	}

	code, out, errs := runCLI(t, "show", "sa", "--socket", sock)
	if code != exitOK || !strings.Contains(out, "out1") || !strings.Contains(out, "in1") || !strings.Contains(out, "0x100") {
		t.Fatalf("show sa: %d\n%s\n%s", code, out, errs)
	}
	code, out, _ = runCLI(t, "show", "sa", "--socket", sock, "--json")
	if code != exitOK || !strings.Contains(out, `"spi": 256`) {
		t.Errorf("show sa --json: %d\n%s", code, out)
	}

	// The live view: two intervals, as JSON lines, then as text.
	code, out, errs = runCLI(t, "show", "sa", "--socket", sock, "--watch", "--interval", "100ms", "--count", "2", "--json")
	if code != exitOK || strings.Count(out, "\n") != 2 || !strings.Contains(out, `"name":"out1"`) || !strings.Contains(out, `"pkts_per_sec"`) {
		t.Errorf("show sa --watch --json: %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = runCLI(t, "show", "sa", "--socket", sock, "--watch", "--interval", "100ms", "--count", "1")
	if code != exitOK || !strings.Contains(out, "PKTS/S") || !strings.Contains(out, "in1") || !strings.Contains(out, "CIPHER RX/S") {
		t.Errorf("show sa --watch: %d\n%s\n%s", code, out, errs)
	}

	// SIGHUP after adding an SA to the file.
	if err := os.WriteFile(cfgPath, []byte(conf("  - {name: in2, direction: in, spi: 0x300, local: 192.0.2.1, remote: 192.0.2.3, transform: aes256gcm16, key: 0x"+randHex(t, 36)+"}\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	hup <- os.Signal(nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, out, _ = runCLI(t, "show", "sa", "--socket", sock)
		if strings.Contains(out, "in2") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SA from the reloaded file not shown:\n%s\nlogs:\n%s", out, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A broken file on SIGHUP: logged, old config kept.
	os.WriteFile(cfgPath, []byte("gateway: [\n"), 0o600)
	hup <- os.Signal(nil)
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "reload failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload failure logged:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, out, _ = runCLI(t, "show", "sa", "--socket", sock); !strings.Contains(out, "in2") {
		t.Errorf("SAs lost after a failed reload:\n%s", out)
	}

	// sa add / del from the command line.
	saFile := writeFile(t, dir, "sa.yaml", "name: in9\ndirection: in\nspi: 0x900\nlocal: 192.0.2.1\nremote: 192.0.2.9\ntransform: aes128-sha256\nkey: 0x"+randHex(t, 16)+"\nauth_key: 0x"+randHex(t, 32)+"\n")
	if code, out, errs := runCLI(t, "sa", "add", "--socket", sock, "--file", saFile); code != exitOK || !strings.Contains(out, "0x900") {
		t.Fatalf("sa add: %d %s %s", code, out, errs)
	}
	if code, _, errs := runCLI(t, "sa", "add", "--socket", sock, "--file", saFile); code != exitFailure || !strings.Contains(errs, "already") {
		t.Errorf("duplicate sa add: %d %s", code, errs)
	}
	if _, out, _ = runCLI(t, "show", "sa", "--socket", sock); !strings.Contains(out, "in9") {
		t.Errorf("added SA not shown:\n%s", out)
	}
	if code, _, errs := runCLI(t, "sa", "del", "--socket", sock, "--direction", "in", "--spi", "0x900"); code != exitOK {
		t.Fatalf("sa del: %d %s", code, errs)
	}
	if _, out, _ = runCLI(t, "show", "sa", "--socket", sock); strings.Contains(out, "in9") {
		t.Errorf("deleted SA still shown:\n%s", out)
	}
	if code, _, errs := runCLI(t, "sa", "del", "--socket", sock, "--direction", "in", "--spi", "0x900"); code != exitFailure || !strings.Contains(errs, "not found") {
		t.Errorf("second sa del: %d %s", code, errs)
	}

	// in1 has a 1 s soft and 2 s hard lifetime and no traffic: the
	// daemon's sweeper still fires both events and stops the SA.
	deadline = time.Now().Add(6 * time.Second)
	for !strings.Contains(logs.String(), "event=hard-expire sa=in1") {
		if time.Now().After(deadline) {
			t.Fatalf("no hard-expire event for the idle SA in1:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "event=soft-expire sa=in1") {
		t.Errorf("no soft-expire event before the hard one:\n%s", logs.String())
	}
	if _, out, _ = runCLI(t, "show", "sa", "--socket", sock, "--json"); !strings.Contains(out, `"state": "expired"`) {
		t.Errorf("in1 not shown expired:\n%s", out)
	}
	deadline = time.Now().Add(3 * time.Second)
	for !strings.Contains(events.String(), "hard-expire sa=in1 spi=0x200 dir=in") {
		if time.Now().After(deadline) {
			t.Fatalf("espxdp events printed no hard-expire for in1:\n%s", events.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ev := events.String(); !strings.Contains(ev, "soft-expire sa=in1") || strings.Index(ev, "soft-expire sa=in1") > strings.Index(ev, "hard-expire sa=in1") {
		t.Errorf("espxdp events: soft-expire missing or after hard-expire:\n%s", ev)
	}
	evCancel()
	if err := <-evDone; err != nil {
		t.Errorf("events client: %v", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("daemon stop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not stop")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("control socket left after stop: %v", err)
	}
	if code, _, errs := runCLI(t, "show", "sa", "--socket", sock, "--timeout", "200ms"); code != exitFailure || !strings.Contains(errs, "is espxdp run going") {
		t.Errorf("show sa without daemon: %d %s", code, errs)
	}
}
