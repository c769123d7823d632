package gateway

import (
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/sa"
)

// rtSA parses one SA as the control socket does.
func rtSA(t *testing.T, y string) *config.SA {
	t.Helper()
	c, err := config.ParseSA("ctl", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRedTeamSameKeyNewSPIReusesNonce breaks the invariant of state.go
// ("under one key no sequence number is sent twice, across restarts and
// crashes"): the state record is keyed by direction, SPI AND key, so the
// same key material installed under another SPI (sa del + sa add over
// the control socket, or a reload that only changes the SPI) starts at
// sequence number 1 again. With aes-gcm the IV is the sequence number
// and the salt is part of the key, so (key, nonce) pairs repeat: the
// GCM forbidden attack recovers the authentication key.
func TestRedTeamSameKeyNewSPIReusesNonce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	gw := stateGateway(t, dir)
	defer gw.Close()
	first := sendOut(t, gw, 5)
	if len(first) == 0 {
		t.Fatal("nothing sent")
	}
	if err := gw.DeleteSA(sa.Out, 0x1001, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	c := rtSA(t, `{name: a-to-b-2, direction: out, spi: 0x1002, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f10111213}`)
	if err := gw.AddSA(c, "peer"); err != nil {
		t.Fatal(err)
	}
	second := sendOut(t, gw, 5)
	noSeqTwice(t, first, second, "under the same key (SPI 0x1001, then 0x1002): GCM nonce reuse")
}

// TestRedTeamSameKeyNewSPIReload is the same defect through SIGHUP
// reload: the file changes only the SPI of the outbound SA, keeping its
// key; the reload deletes the old SA and adds a fresh one whose
// counter restarts at 1 (state_dir set).
func TestRedTeamSameKeyNewSPIReload(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	gw := stateGateway(t, dir)
	defer gw.Close()
	first := sendOut(t, gw, 5)
	y := "gateway: {state_dir: " + dir + "}\n" + `interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:0a:fe", local: 192.0.2.1}
  plain:  {name: lan0, next_hop: "02:00:00:00:01:02", address: 10.1.0.1}
protected: [10.2.0.0/24]
tunnels:
  - {name: peer, out: [a-to-b], in: [b-to-a]}
sas:
  - {name: a-to-b, direction: out, spi: 0x1002, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f10111213}
  - {name: b-to-a, direction: in, spi: 0x2001, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: 0x101112131415161718191a1b1c1d1e1f20212223}
`
	cfg, err := config.Parse("gw.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gw.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	second := sendOut(t, gw, 5)
	noSeqTwice(t, first, second, "under the same key after a reload that changed only the SPI")
}

// TestRedTeamDeleteReaddWithoutStateReusesNonce breaks "no sequence
// number is sent twice under one key" inside one process lifetime, with
// no restart: without state_dir, sa del then sa add of the same SA
// (same SPI, same key) over the control socket restarts the counter at
// 1. The gateway knows the key it just retired (the SAD fingerprints
// keys) but forgets its counter; the only warning (warnStatic) is
// printed at start and only about a restart.
func TestRedTeamDeleteReaddWithoutStateReusesNonce(t *testing.T) {
	gw := offlineGateway(t)
	first := sendOut(t, gw, 5)
	if err := gw.DeleteSA(sa.Out, 0x1001, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	c := rtSA(t, `{name: a-to-b, direction: out, spi: 0x1001, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f10111213}`)
	if err := gw.AddSA(c, "peer"); err != nil {
		t.Fatal(err)
	}
	second := sendOut(t, gw, 5)
	noSeqTwice(t, first, second, "under the same key and SPI after sa del + sa add (no state_dir, no restart)")
}

// TestRedTeamInboundDeleteReaddAcceptsReplay breaks "no packet is
// accepted twice under one key" with state_dir set: the inbound window
// is persisted only at a clean stop (Gateway.Close), not when the SA is
// deleted (control socket sa del, or a reload that drops it), so
// re-adding the same inbound SA (same SPI, same key) starts with an
// empty window and accepts every packet captured before the delete.
func TestRedTeamInboundDeleteReaddAcceptsReplay(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	in := peerSender(t)
	gw := stateGateway(t, dir)
	defer gw.Close()
	for _, s := range []uint64{1, 2, 3} {
		if r := in(gw, s); r != sa.DropNone {
			t.Fatalf("seq %d: %v", s, r)
		}
	}
	if err := gw.DeleteSA(sa.In, 0x2001, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	c := rtSA(t, `{name: b-to-a, direction: in, spi: 0x2001, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: 0x101112131415161718191a1b1c1d1e1f20212223}`)
	if err := gw.AddSA(c, "peer"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []uint64{1, 2, 3} {
		if r := in(gw, s); r != sa.DropReplay {
			t.Errorf("seq %d accepted twice under the same key after sa del + sa add (state_dir set): %v", s, r)
		}
	}
}

// TestRedTeamSameKeyOtherICVLength: SameKey and the state record both
// fingerprint the transform NAME with the key, so the same AES key and
// salt under another ICV length (aes128gcm16 -> aes128gcm12, or gmac)
// counts as a new key: sa-update (or a reload) replaces the SA with a
// fresh one whose counter restarts at 1, state_dir or not. But the
// (key, nonce) pair is all that matters for GCM: the keystream and the
// GHASH key H are the same whatever the tag length, so this repeats
// nonces exactly like a plain counter reset. Fix: fingerprint the
// cipher key material per underlying primitive (AES-GCM key‖salt,
// regardless of ICV length / GMAC) for SameKey and recordID, or refuse
// such an update.
func TestRedTeamSameKeyOtherICVLength(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	gw := stateGateway(t, dir)
	defer gw.Close()
	first := sendOut(t, gw, 5)
	c := rtSA(t, `{name: a-to-b, direction: out, spi: 0x1001, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm12, key: 0x000102030405060708090a0b0c0d0e0f10111213}`)
	if err := gw.UpdateSA(c, ""); err != nil {
		t.Fatal(err)
	}
	second := sendOut(t, gw, 5)
	noSeqTwice(t, first, second, "under the same AES-GCM key and salt (ICV 16 -> 12 bytes)")
}

// noSeqTwice fails the test when a sequence number of second was
// already sent in first (what names the operations in between).
func noSeqTwice(t *testing.T, first, second []uint64, what string) {
	t.Helper()
	sent := map[uint64]bool{}
	for _, s := range first {
		sent[s] = true
	}
	for _, s := range second {
		if sent[s] {
			t.Fatalf("sequence number %d sent twice %s", s, what)
		}
	}
}
