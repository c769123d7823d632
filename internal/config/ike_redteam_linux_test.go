//go:build linux

package config

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestRedTeamPSKFileFIFO: a psk_file that is a FIFO made Parse (and so
// a reload) block forever in the read, waiting for a writer. It is now
// refused at once (not a regular file).
func TestRedTeamPSKFileFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "peer.psk")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := peersYAML(fmt.Sprintf("  - name: b\n    local: 192.0.2.1\n    remote: 192.0.2.2\n    psk_file: %s\n    local_ts: [10.1.0.0/24]\n    remote_ts: [10.2.0.0/24]\n", fifo))
	done := make(chan error, 1)
	go func() {
		cfg, err := Parse("gw.yaml", []byte(yaml))
		if err == nil {
			cfg.Wipe()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a FIFO accepted as psk_file")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Parse blocks on a FIFO psk_file (a reload would hang)")
	}
}
