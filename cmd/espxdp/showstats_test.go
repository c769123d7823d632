package main

import (
	"bufio"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/espxdp/espxdp/internal/gateway"
	"github.com/espxdp/espxdp/xdp"
)

// serveStats answers every request on a unix socket with st.
func serveStats(t *testing.T, st gateway.Stats) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gw.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			bufio.NewReader(c).ReadBytes('\n')
			b, _ := json.Marshal(gateway.Response{OK: true, Stats: &st})
			c.Write(append(b, '\n'))
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return path
}

// TestShowStatsWorkers: show stats prints the steering and layout, a
// row per worker (two on one queue) and the kernel's AF_XDP totals.
func TestShowStatsWorkers(t *testing.T) {
	st := gateway.Stats{EngineInfo: gateway.EngineInfo{Steering: "spread", Workers: 2, Queues: 1},
		Kernel: xdp.KernelStats{RxDropped: 3, RxRingFull: 5, RxFillRingEmptyDescs: 7, RxInvalidDescs: 1, TxInvalidDescs: 2}}
	st.Engine.Workers = []xdp.EngineWorkerStats{
		{Worker: 0, Queue: 0, CipherRX: 11, PlainRX: 12, Encrypted: 12, Decrypted: 11, SADrops: 1},
		{Worker: 1, Queue: 0, CipherRX: 21, PlainRX: 22, Encrypted: 22, Decrypted: 21, TXFull: 4},
	}
	sock := serveStats(t, st)
	code, out, errs := runCLI(t, "show", "stats", "--socket", sock)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"steering:                    spread (workers 2, queues 1)\n",
		"xsk rx dropped:              3\n", "xsk rx ring full:            5\n",
		"xsk fill ring empty:         7\n", "xsk invalid descs:           3\n",
		"worker 0 (tx queue 0):       rx 11/12, encrypted 12, decrypted 11, handed off 0, drops 1, tx ring full 0\n",
		"worker 1 (tx queue 0):       rx 21/22, encrypted 22, decrypted 21, handed off 0, drops 4, tx ring full 4\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show stats lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCLI(t, "show", "stats", "--socket", sock, "--json")
	var back gateway.Stats
	if code != exitOK || json.Unmarshal([]byte(out), &back) != nil || back.Steering != "spread" || back.Workers != 2 ||
		back.Queues != 1 || back.Kernel != st.Kernel {
		t.Errorf("show stats --json: exit %d\n%s", code, out)
	}
}
