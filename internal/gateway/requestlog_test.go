package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/internal/testenv"
)

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// serveTestControl serves gw's control protocol on a socket of its own
// (no engine: Handle works on a gateway that was not started).
func serveTestControl(t *testing.T, gw *Gateway) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	s, err := gw.listenControl(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.close() })
	return sock
}

// TestControlRequestLog: every control request is logged with the
// peer's uid, the command and the result; over random requests that
// carry keys (valid, duplicate, wrong length, bad hex, broken YAML,
// broken JSON), no 6-byte run of any key ever appears in the log.
func TestControlRequestLog(t *testing.T) {
	var logs testenv.SyncBuffer
	cfg, err := config.Parse("gw.yaml", []byte(`gateway: {}
interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:00:01"}
  plain: {name: lan0, next_hop: "02:00:00:00:00:02"}
protected: [10.2.0.0/24]
sas: []
`))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	sock := serveTestControl(t, gw)

	var keys []string
	saYAML := func(spi int, key string) string {
		return fmt.Sprintf("{name: s%d, direction: in, spi: %d, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: 0x%s}", spi, spi, key)
	}
	raw := func(line string) {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		c.Write([]byte(line + "\n"))
		buf := make([]byte, 4096)
		c.Read(buf)
	}
	for i := range 60 {
		k := randomHex(t, 20)
		keys = append(keys, k)
		spi := 0x100 + i%7
		switch i % 6 {
		case 0: // valid
			Call(sock, Request{Cmd: "sa-add", SA: saYAML(spi, k)}, 2*time.Second)
		case 1: // valid, then a duplicate SPI
			Call(sock, Request{Cmd: "sa-add", SA: saYAML(spi, k)}, 2*time.Second)
			Call(sock, Request{Cmd: "sa-add", SA: saYAML(spi, k)}, 2*time.Second)
		case 2: // wrong length
			Call(sock, Request{Cmd: "sa-update", SA: saYAML(spi, k[:30])}, 2*time.Second)
		case 3: // not hex
			Call(sock, Request{Cmd: "sa-add", SA: saYAML(spi, k[:20]+"zz"+k[22:])}, 2*time.Second)
		case 4: // broken YAML around a key
			Call(sock, Request{Cmd: "sa-add", SA: "{key: 0x" + k + ", ["}, 2*time.Second)
		case 5: // broken JSON around a key
			raw(`{"cmd":"sa-add","sa":"key: 0x` + k + `"`)
		}
		Call(sock, Request{Cmd: "sa-del", Direction: "in", SPI: uint32(spi)}, 2*time.Second)
	}
	Call(sock, Request{Cmd: "show-sa"}, 2*time.Second)
	out := logs.String()
	for _, k := range keys {
		for i := 0; i+12 <= len(k); i += 2 {
			if w := k[i : i+12]; strings.Contains(strings.ToLower(out), w) {
				t.Fatalf("log holds key bytes %s:\n%s", w, out)
			}
		}
	}
	uid := fmt.Sprintf("peer_uid=%d", os.Getuid())
	for _, want := range []string{
		`msg="control request" cmd=sa-add ` + uid, "ok=true", "sa=s256 direction=in spi=0x100",
		`msg="control request failed" cmd=sa-add`, "already", "cmd=sa-del", "cmd=(malformed)", "cmd=show-sa",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if runtime.GOOS == "linux" && !strings.Contains(out, fmt.Sprintf("peer_pid=%d", os.Getpid())) {
		t.Errorf("log lacks this process's pid")
	}
	if t.Failed() {
		t.Log(out)
	}
}

func TestRedact(t *testing.T) {
	secret := "key: 0xDEADBEEF00112233"
	for in, want := range map[string]string{
		`bad value "0xDEADBE"…`:  `bad value "0x[redacted]"…`,
		"spi 0x100 line 3":       "spi 0x100 line 3",
		"got deadbeef00112233":   "got [redacted]",
		"unrelated abcdef012345": "unrelated abcdef012345",
	} {
		if got := redact(in, secret); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}
