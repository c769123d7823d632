package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/internal/gateway"
)

// offlineGatewayYAML is a gateway New accepts without its interfaces
// (it is never started).
const offlineGatewayYAML = `interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:0a:fe", local: 192.0.2.1}
  plain:  {name: lan0, next_hop: "02:00:00:00:01:02", address: 10.1.0.1}
protected: [10.2.0.0/24]
tunnels:
  - {name: peer, out: [a-to-b], in: [b-to-a]}
sas:
  - {name: a-to-b, direction: out, spi: 0x1001, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f10111213}
  - {name: b-to-a, direction: in, spi: 0x2001, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: 0x101112131415161718191a1b1c1d1e1f20212223}
`

// serveOffline serves an offline gateway's Handle on a unix socket, the
// protocol of the control socket without starting the data path, and
// returns the socket's path and the requests seen.
func serveOffline(t *testing.T) (*gateway.Gateway, string, func() []gateway.Request) {
	t.Helper()
	cfg, err := config.Parse("gw.yaml", []byte(offlineGatewayYAML))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	path := filepath.Join(t.TempDir(), "gw.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []gateway.Request
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadBytes('\n')
			var req gateway.Request
			resp := gateway.Response{Error: "bad request"}
			if json.Unmarshal(line, &req) == nil {
				mu.Lock()
				seen = append(seen, req)
				mu.Unlock()
				resp = gw.Handle(req)
			}
			b, _ := json.Marshal(resp)
			c.Write(append(b, '\n'))
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return gw, path, func() []gateway.Request {
		mu.Lock()
		defer mu.Unlock()
		return append([]gateway.Request(nil), seen...)
	}
}

func childSA(name, dir string, spi uint32) string {
	return fmt.Sprintf("{name: %s, direction: %s, spi: 0x%x, child: 9, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f1011%04x}", name, dir, spi, spi)
}

// TestCLIChildAndSPI: sa add of a list, sa del --child, sa alloc-spi and
// sa release-spi, good and bad, against an offline gateway.
func TestCLIChildAndSPI(t *testing.T) {
	gw, sock, seen := serveOffline(t)
	dir := t.TempDir()
	list := filepath.Join(dir, "child.yaml")
	if err := os.WriteFile(list, []byte("- "+childSA("c-out", "out", 0x3001)+"\n- "+childSA("c-in", "in", 0x3002)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("- "+childSA("d-out", "out", 0x3003)+"\n- {name: d-in, direction: in}\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	code, out, errs := runCLI(t, "sa", "add", "--socket", sock, "--file", bad)
	if code == exitOK || !strings.Contains(errs, "sa[1]") {
		t.Fatalf("bad list: %d %s %s", code, out, errs)
	}
	if len(seen()) != 0 {
		t.Fatal("a list that does not parse was sent")
	}
	code, out, errs = runCLI(t, "sa", "add", "--socket", sock, "--file", list, "--tunnel", "peer")
	if code != exitOK || !strings.Contains(out, "(c-out, child 9) done") || !strings.Contains(out, "(c-in, child 9) done") {
		t.Fatalf("sa add list: %d %s %s", code, out, errs)
	}
	if n := len(gw.SAD().Child(9)); n != 2 {
		t.Fatalf("child 9 has %d SAs", n)
	}
	// Again: every SA exists, nothing more is added.
	if code, _, errs := runCLI(t, "sa", "add", "--socket", sock, "--file", list); code != exitFailure || !strings.Contains(errs, "c-out") {
		t.Fatalf("second add: %d %s", code, errs)
	}

	for _, args := range [][]string{
		{"sa", "del", "--child", "0"},
		{"sa", "del", "--child", "x"},
		{"sa", "del", "--child", "9", "--spi", "0x3001"},
		{"sa", "del"},
		{"sa", "alloc-spi", "--min", "0x9000", "--max", "0x8000"},
		{"sa", "alloc-spi", "--min", "zz"},
		{"sa", "alloc-spi", "--ttl", "-1s"},
		{"sa", "release-spi"},
		{"sa", "release-spi", "--spi", "0x1ffffffff"},
	} {
		n := len(seen())
		if code, _, errs := runCLI(t, append(args, "--socket", sock)...); code != exitUsage {
			t.Errorf("%v: exit %d, want usage: %s", args, code, errs)
		}
		if len(seen()) != n {
			t.Errorf("%v: sent a request", args)
		}
	}
	if code, _, errs := runCLI(t, "sa", "del", "--socket", sock, "--child", "10"); code != exitFailure || !strings.Contains(errs, "not found") {
		t.Errorf("unknown child: %d %s", code, errs)
	}
	code, out, errs = runCLI(t, "sa", "del", "--socket", sock, "--child", "9")
	if code != exitOK || !strings.Contains(out, "child 9: 2 SAs deleted") {
		t.Fatalf("sa del --child: %d %s %s", code, out, errs)
	}

	code, out, errs = runCLI(t, "sa", "alloc-spi", "--socket", sock, "--min", "0x7000", "--max", "0x7000", "--ttl", "1m")
	if code != exitOK || strings.TrimSpace(out) != "0x00007000" {
		t.Fatalf("alloc-spi: %d %q %s", code, out, errs)
	}
	if r := seen()[len(seen())-1]; r.Cmd != "alloc-spi" || r.Min != 0x7000 || r.Max != 0x7000 || r.TTL != "1m0s" {
		t.Fatalf("request %+v", r)
	}
	if code, _, errs := runCLI(t, "sa", "alloc-spi", "--socket", sock, "--min", "0x7000", "--max", "0x7000"); code != exitFailure || !strings.Contains(errs, "no free SPI") {
		t.Fatalf("exhausted range: %d %s", code, errs)
	}
	code, out, _ = runCLI(t, "sa", "alloc-spi", "--socket", sock, "--json")
	var j struct{ SPI uint32 }
	if code != exitOK || json.Unmarshal([]byte(out), &j) != nil || j.SPI < 256 {
		t.Fatalf("alloc-spi --json: %d %q", code, out)
	}
	if code, out, errs := runCLI(t, "sa", "release-spi", "--socket", sock, "--spi", "0x"+strconv.FormatUint(uint64(j.SPI), 16)); code != exitOK || !strings.Contains(out, "released") {
		t.Fatalf("release-spi: %d %s %s", code, out, errs)
	}
	if code, _, errs := runCLI(t, "sa", "release-spi", "--socket", sock, "--spi", "0x7001"); code != exitFailure || !strings.Contains(errs, "not reserved") {
		t.Fatalf("release of an SPI never reserved: %d %s", code, errs)
	}
}
