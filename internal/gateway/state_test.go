package gateway

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/sa"
)

// stateGateway is an offline gateway with a state_dir, not closed when
// the test ends (the tests close or abandon it themselves).
func stateGateway(t *testing.T, dir string) *Gateway {
	t.Helper()
	return newYAMLGateway(t, "gateway: {state_dir: "+dir+"}\n"+offlineYAML)
}

// sendOut encrypts n packets through gw's worker 0 and returns the
// sequence numbers of those that left.
func sendOut(t *testing.T, gw *Gateway, n int) []uint64 {
	t.Helper()
	var seqs []uint64
	w := gw.Processor().Worker(0)
	pkts := make([]sa.Packet, 1)
	for range n {
		pkts[0] = plainPacket(netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("10.2.0.2"))
		w.Outbound(pkts)
		p := &pkts[0]
		if p.Verdict != sa.VerdictOK {
			if p.Reason != sa.DropSeqLimit {
				t.Fatalf("outbound drop %v", p.Reason)
			}
			continue
		}
		d := p.Data()
		seqs = append(seqs, uint64(binary.BigEndian.Uint32(d[24:28]))) // IPv4 (20) + SPI (4)
	}
	return seqs
}

// TestStatePersistedSequence checks the invariant of state.go over
// random runs of a gateway with a small reservation block: packets sent,
// reservations extended (the sweeper's job), clean stops and crashes
// (the gateway abandoned without Close) in any order never send a
// sequence number twice under the key, and after every restart the
// first number is above everything sent before.
func TestStatePersistedSequence(t *testing.T) {
	defer func(b uint64) { seqBlock = b }(seqBlock)
	seqBlock = 64
	r := rand.New(rand.NewPCG(3, 4))
	for iter := range 10 {
		dir := filepath.Join(t.TempDir(), "state")
		gw := stateGateway(t, dir)
		sent := map[uint64]bool{}
		var high uint64
		restarted := false
		for op := range 60 {
			switch x := r.IntN(10); {
			case x < 6:
				seqs := sendOut(t, gw, 1+r.IntN(40))
				for i, s := range seqs {
					if sent[s] {
						t.Fatalf("iter %d op %d: sequence number %d sent twice", iter, op, s)
					}
					if i == 0 && restarted && s <= high {
						t.Fatalf("iter %d op %d: first number %d after a restart, %d sent before", iter, op, s, high)
					}
					sent[s] = true
					high = max(high, s)
				}
				if len(seqs) > 0 {
					restarted = false
				}
			case x < 8:
				gw.extendSeq(nil)
			case x == 8:
				gw.Close()
				gw = stateGateway(t, dir)
				restarted = true
			default: // crash: no Close, nothing saved beyond what was durable
				gw = stateGateway(t, dir)
				restarted = true
			}
		}
		gw.Close()
		fi, err := os.Stat(filepath.Join(dir, stateFile))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("state file: %v, %v", fi, err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, stateFile))
		if strings.Contains(string(b), "0001020304050607") {
			t.Fatal("state file contains key material")
		}
	}
}

// TestStateReplayWindow: an inbound window saved at a clean stop comes
// back at start: a packet accepted before the stop is a replay after it.
func TestStateReplayWindow(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	in := peerSender(t)
	gw := stateGateway(t, dir)
	for _, s := range []uint64{1, 2, 5, 40} {
		if r := in(gw, s); r != sa.DropNone {
			t.Fatalf("seq %d: %v", s, r)
		}
	}
	gw.Close()
	gw = stateGateway(t, dir)
	defer gw.Close()
	for _, s := range []uint64{1, 2, 5, 40} {
		if r := in(gw, s); r != sa.DropReplay {
			t.Errorf("seq %d after restart: %v, want replay", s, r)
		}
	}
	if r := in(gw, 3); r != sa.DropNone {
		t.Errorf("seq 3 (never received) after restart: %v", r)
	}
}

// TestStateDamaged: a damaged state file stops the gateway from starting
// rather than starting from zero.
func TestStateDamaged(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, stateFile), []byte("{garbage"), 0o600)
	cfg, err := config.Parse("gw.yaml", []byte("gateway: {state_dir: "+dir+"}\n"+offlineYAML))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, Options{}); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("damaged state file: %v", err)
	}
}

// TestStateDirPrivate: a state_dir others can write to is refused.
func TestStateDirPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	cfg, err := config.Parse("gw.yaml", []byte("gateway: {state_dir: "+dir+"}\n"+offlineYAML))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, Options{}); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("world-writable state_dir: %v", err)
	}
}
