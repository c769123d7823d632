package show

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/espxdp/espxdp/sa"
)

func stats() []sa.Stats {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.2")
	out := sa.Stats{Name: "o", SPI: 0x10, Child: 4, Direction: sa.Out, Mode: "tunnel", Transform: "aes128gcm16", Local: a, Remote: b,
		EncapsPkts: 5, EncryptPkts: 5, DigestPkts: 5, EncapsBytes: 500, PathMTU: 1500, PlaintextMTU: 1446, Seq: 5,
		HardRemaining: sa.Remaining{Bytes: sa.Unlimited, Packets: 95, Seconds: sa.Unlimited},
		SoftRemaining: sa.Remaining{Bytes: sa.Unlimited, Packets: sa.Unlimited, Seconds: sa.Unlimited}}
	out.Drops[sa.DropMTU] = 2
	in := sa.Stats{Name: "i", SPI: 0x20, Direction: sa.In, Mode: "tunnel", Transform: "aes128gcm16", Local: a, Remote: b,
		DecapsPkts: 7, DecryptPkts: 8, VerifyPkts: 9, DecapsBytes: 700, ReplayWindow: 64, Seq: 9,
		HardRemaining: sa.Remaining{Bytes: 1000, Packets: sa.Unlimited, Seconds: 60},
		SoftRemaining: sa.Remaining{Bytes: 800, Packets: sa.Unlimited, Seconds: sa.Unlimited}}
	in.Drops[sa.DropReplay] = 3
	in.Drops[sa.DropAuth] = 4
	other := sa.Stats{Name: "x", SPI: 0x30, Direction: sa.In, Mode: "transport", Transform: "aes256-sha256",
		Local: a, Remote: netip.MustParseAddr("203.0.113.5"), UDPEncap: true, LocalPort: 4500, RemotePort: 1024}
	return []sa.Stats{out, in, other}
}

func TestText(t *testing.T) {
	var unowned sa.DropCounts
	unowned[sa.DropNoSA] = 11
	var buf bytes.Buffer
	r := &Report{Title: "test", SAs: stats(), Unowned: &unowned, Extra: []Counter{{"packets read", 42}}}
	if err := Text(&buf, r); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"test\n",
		"current_peer 198.51.100.2\n",
		"#pkts encaps: 5, #pkts encrypt: 5, #pkts digest: 5",
		"#pkts decaps: 7, #pkts decrypt: 8, #pkts verify: 9",
		"#bytes encaps: 500, #bytes decaps: 700",
		"#send errors 2, #recv errors 7",
		"plaintext mtu 1446, path mtu 1500",
		"current outbound spi: 0x10(16)",
		"drops: auth 4, replay 3",
		"drops: mtu 2",
		"remaining key lifetime (packets): 95",
		"sa timing: remaining key lifetime (bytes/sec): (1000/60)",
		"rekey due in (bytes/packets/sec): (800/unlimited/unlimited)",
		"replay detection support: Y, replay window size: 64",
		"highest seq received: 9",
		"last seq sent: 5",
		"current_peer 203.0.113.5 port 1024",
		"remote ident (addr/port): (203.0.113.5/1024)",
		"in use settings ={Transport, UDP-Encaps, }",
		"replay detection support: N",
		"drops without an SA: no-sa 11",
		"packets read: 42",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if n := strings.Count(out, "child: "); n != 1 || !strings.Contains(out, "        child: 4\n") {
		t.Errorf("child id shown %d times, want once as child: 4", n)
	}
	// Inbound SAs are listed before outbound ones within a peer block.
	if i, o := strings.Index(out, "\n      spi: 0x20(32)"), strings.Index(out, "\n      spi: 0x10(16)"); i < 0 || o < 0 || i > o {
		t.Errorf("inbound SA at %d, outbound at %d", i, o)
	}
	if t.Failed() {
		t.Log(out)
	}
}

func TestTextEmptyAndJSON(t *testing.T) {
	var buf bytes.Buffer
	if err := Text(&buf, &Report{}); err != nil || !strings.Contains(buf.String(), "no SAs") {
		t.Errorf("empty report: %v %q", err, buf.String())
	}
	buf.Reset()
	if err := JSON(&buf, &Report{}); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if l, ok := m["sas"].([]any); !ok || len(l) != 0 {
		t.Errorf("empty report JSON sas = %v, want []", m["sas"])
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errWrite }

var errWrite = bytes.ErrTooLarge

func TestTextWriteError(t *testing.T) {
	if err := Text(failWriter{}, &Report{SAs: stats()}); err != errWrite {
		t.Errorf("write error not returned: %v", err)
	}
}
