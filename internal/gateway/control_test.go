package gateway

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/config"
)

// TestControlSocketPath: only a stale socket is ever removed; a regular
// file, a directory, a symlink and a live socket at the path, or a
// directory others can write to, are refused and left as they were.
func TestControlSocketPath(t *testing.T) {
	gw := offlineGateway(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "ctl.sock")

	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := gw.listenControl(path); !errors.Is(err, ErrSocketPath) {
		t.Errorf("regular file: %v", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "precious" {
		t.Errorf("regular file changed: %q, %v", b, err)
	}
	os.Remove(path)

	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := gw.listenControl(path); !errors.Is(err, ErrSocketPath) {
		t.Errorf("empty directory: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
		t.Errorf("directory removed: %v", err)
	}
	os.Remove(path)

	target := filepath.Join(dir, "target")
	os.WriteFile(target, nil, 0o600)
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if _, err := gw.listenControl(path); !errors.Is(err, ErrSocketPath) {
		t.Errorf("symlink: %v", err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("symlink removed: %v", err)
	}
	os.Remove(path)

	live, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gw.listenControl(path); !errors.Is(err, ErrSocketPath) || !strings.Contains(err.Error(), "in use") {
		t.Errorf("live socket: %v", err)
	}
	if c, err := net.Dial("unix", path); err != nil {
		t.Errorf("live socket disturbed: %v", err)
	} else {
		c.Close()
	}
	live.SetUnlinkOnClose(false)
	live.Close() // leaves a stale socket file

	s, err := gw.listenControl(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode: %v, %v", fi.Mode(), err)
	}
	s.close()

	for i, mode := range []os.FileMode{0o777, 0o770, 0o777 | os.ModeSticky, 0o722} {
		open := filepath.Join(dir, "open"+string(rune('0'+i)))
		if err := os.Mkdir(open, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(open, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := gw.listenControl(filepath.Join(open, "ctl.sock")); !errors.Is(err, ErrSocketPath) {
			t.Errorf("directory mode %v: %v", mode, err)
		}
	}
}

// TestControlSocketLimits: the connections served at once and the
// request size are bounded, with an error the client can read.
func TestControlSocketLimits(t *testing.T) {
	gw := offlineGateway(t)
	path := filepath.Join(t.TempDir(), "ctl.sock")
	s, err := gw.listenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	var idle []net.Conn
	for range MaxConns {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	// Wait until the server took all slots.
	deadline := time.Now().Add(5 * time.Second)
	for len(s.slots) < MaxConns && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := Call(path, Request{Cmd: "show-sa"}, 2*time.Second); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Errorf("connection %d: %v, want busy", MaxConns+1, err)
	}
	idle[0].Close()
	deadline = time.Now().Add(5 * time.Second)
	for {
		resp, err := Call(path, Request{Cmd: "show-sa"}, 2*time.Second)
		if err == nil && len(resp.SAs) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a slot freed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range idle[1:] {
		c.Close()
	}

	// The server frees the slots of the closed connections when it reads
	// their end: until then a new connection may still be told "busy".
	oversized := func() (Response, error) {
		c, err := net.Dial("unix", path)
		if err != nil {
			return Response{}, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		go func() {
			big := strings.Repeat("x", MaxRequest+10)
			io.WriteString(c, `{"cmd":"sa-add","sa":"`+big+`"}`+"\n")
		}()
		var resp Response
		err = json.NewDecoder(bufio.NewReader(c)).Decode(&resp)
		return resp, err
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		resp, err := oversized()
		if err == nil && strings.Contains(resp.Error, "busy") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if err != nil || resp.OK || !strings.Contains(resp.Error, "larger than") {
			t.Errorf("oversized request: %+v, %v", resp, err)
		}
		break
	}
}

// TestWarnStaticKeys: outbound counter-IV SAs without a state_dir are
// warned about; with one, or with CBC, they are not.
func TestWarnStaticKeys(t *testing.T) {
	for _, c := range []struct {
		extra, transform string
		warn             bool
	}{
		{"", "aes128gcm16", true},
		{"gateway: {state_dir: /var/lib/espxdp}\n", "aes128gcm16", false},
		{"", "aes128-sha256", false},
	} {
		y := c.extra + strings.ReplaceAll(offlineYAML, "transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f10111213",
			"transform: "+c.transform+", key: 0x000102030405060708090a0b0c0d0e0f, auth_key: 0x000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f")
		if c.transform == "aes128gcm16" {
			y = c.extra + offlineYAML
		}
		cfg, err := config.Parse("gw.yaml", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		var log strings.Builder
		gw, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
		if err != nil {
			t.Fatal(err)
		}
		gw.warnStatic(cfg.SAs)
		gw.Close()
		got := strings.Contains(log.String(), "STATIC KEYS WITHOUT STATE") && strings.Contains(log.String(), "a-to-b")
		if got != c.warn {
			t.Errorf("%q %s: warned %v, want %v\n%s", c.extra, c.transform, got, c.warn, log.String())
		}
	}
}
