package gateway

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/sa"
)

// stateGatewayYAML is stateGateway with offlineYAML edited by repl
// (old, new pairs).
func stateGatewayYAML(t *testing.T, dir string, repl ...string) *Gateway {
	t.Helper()
	y := strings.NewReplacer(repl...).Replace(offlineYAML)
	cfg, err := config.Parse("gw.yaml", []byte("gateway: {state_dir: "+dir+"}\n"+y))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return gw
}

// TestStateKeyAcrossSPIAndICV: the state record follows the key identity,
// not the SPI nor the ICV length: after a crash (nothing saved but the
// reservations), the outbound key configured under another SPI and as
// aes128gcm12 continues above every number sent before.
func TestStateKeyAcrossSPIAndICV(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	gw := stateGateway(t, dir)
	first := sendOut(t, gw, 5)
	// crash: no Close
	gw2 := stateGatewayYAML(t, dir, "spi: 0x1001", "spi: 0x1005", "transform: aes128gcm16, key: 0x0001", "transform: aes128gcm12, key: 0x0001")
	defer gw2.Close()
	if l := gw2.SAD().Outbound(0x1005); len(l) != 1 || l[0].Config().Transform.Name() != "aes128gcm12" {
		t.Fatalf("outbound SAs with SPI 0x1005: %v", l)
	}
	second := sendOut(t, gw2, 5)
	if len(first) == 0 || len(second) == 0 {
		t.Fatal("nothing sent")
	}
	for _, s := range second {
		if s <= first[len(first)-1] {
			t.Fatalf("sequence number %d after %d: the key under another SPI and ICV length started afresh", s, first[len(first)-1])
		}
	}
}

// TestStateLegacyRecordFolded: a record of the older format (direction/
// SPI/HMAC of transform name and key) is still honoured.
func TestStateLegacyRecordFolded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	gw := stateGateway(t, dir)
	gw.Close()
	path := filepath.Join(dir, stateFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st stateData
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, len(st.Secret)/2)
	fmt.Sscanf(st.Secret, "%x", &secret)
	k := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "%s|%d|", "aes128gcm16", len(k))
	m.Write(k)
	const legacyLimit = 1 << 30
	st.Out = map[string]uint64{fmt.Sprintf("out/%08x/%x", 0x1001, m.Sum(nil)[:16]): legacyLimit}
	b, _ = json.Marshal(&st)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	gw = stateGateway(t, dir)
	defer gw.Close()
	seqs := sendOut(t, gw, 3)
	if len(seqs) == 0 || seqs[0] <= legacyLimit {
		t.Fatalf("sent %v after a legacy reservation of %d", seqs, legacyLimit)
	}
}

// TestStateInboundWindowSavedOnRemove: the window of an inbound SA
// deleted over the control socket is saved at once, so after a crash
// (no clean stop) the key re-installed rejects what it accepted.
func TestStateInboundWindowSavedOnRemove(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	in := peerSender(t)
	gw := stateGateway(t, dir)
	for _, s := range []uint64{1, 2, 7} {
		if r := in(gw, s); r != sa.DropNone {
			t.Fatalf("seq %d: %v", s, r)
		}
	}
	if err := gw.DeleteSA(sa.In, 0x2001, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	// crash: no Close
	gw2 := stateGateway(t, dir)
	defer gw2.Close()
	for _, s := range []uint64{1, 2, 7} {
		if r := in(gw2, s); r != sa.DropReplay {
			t.Errorf("seq %d accepted again after remove + crash + restart: %v", s, r)
		}
	}
	if r := in(gw2, 3); r != sa.DropNone {
		t.Errorf("seq 3, never received: %v", r)
	}
}
