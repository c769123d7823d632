package sa

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/esp"
)

func TestConfigErrors(t *testing.T) {
	base, _ := pairCfg("aes256-sha256", 0x107, nil)
	cases := []struct {
		field string
		mod   func(*Config)
		is    error
	}{
		{"SPI", func(c *Config) { c.SPI = 0 }, nil},
		{"SPI", func(c *Config) { c.SPI = 1 }, nil},
		{"SPI", func(c *Config) { c.SPI = 255 }, nil},
		{"Direction", func(c *Config) { c.Direction = 0 }, nil},
		{"Mode", func(c *Config) { c.Mode = 9 }, nil},
		{"Transform", func(c *Config) { c.Transform = esp.Transform{} }, nil},
		{"Key", func(c *Config) { c.Key = c.Key[:5] }, esp.ErrKeySize},
		{"AuthKey", func(c *Config) { c.AuthKey = nil }, esp.ErrKeySize},
		{"ReplayWindow", func(c *Config) { c.ReplayWindow = MaxReplayWindow + 1 }, nil},
		{"ReplayWindow", func(c *Config) { c.ReplayWindow = -2 }, nil},
		{"Local/Remote", func(c *Config) { c.Remote = netip.Addr{} }, nil},
		{"Local/Remote", func(c *Config) { c.Remote = gwB6 }, nil},
		{"Local/Remote", func(c *Config) { c.Remote = netip.MustParseAddr("::ffff:198.51.100.2") }, nil},
		{"SoftLifetime.Bytes", func(c *Config) { c.SoftLifetime.Bytes = 10; c.HardLifetime.Bytes = 5 }, nil},
		{"SoftLifetime.Packets", func(c *Config) { c.SoftLifetime.Packets = 10; c.HardLifetime.Packets = 5 }, nil},
		{"SoftLifetime.Time", func(c *Config) { c.SoftLifetime.Time = time.Hour; c.HardLifetime.Time = time.Minute }, nil},
		{"HardLifetime.Time", func(c *Config) { c.HardLifetime.Time = -1 }, nil},
		{"PathMTU", func(c *Config) { c.PathMTU = 20 }, nil},
		{"PathMTU", func(c *Config) { c.PathMTU = 70000 }, nil},
		{"Selectors[1]", func(c *Config) {
			c.Selectors = []Selector{{}, {DstPorts: PortRange{Lo: 9, Hi: 3}}}
		}, nil},
		{"TFCPadTo", func(c *Config) { c.TFCPadTo = -1 }, nil},
		{"Worker", func(c *Config) { c.PinWorker, c.Worker = true, -1 }, nil},
	}
	for _, c := range cases {
		cfg := base
		c.mod(&cfg)
		_, err := New(cfg)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != c.field || !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err = %v", c.field, err)
			continue
		}
		if c.is != nil && !errors.Is(err, c.is) {
			t.Errorf("%s: %v does not wrap %v", c.field, err, c.is)
		}
		if !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: message %q does not name the field", c.field, err)
		}
	}
	// Transport mode needs no addresses; the window accepts the extremes.
	for _, mod := range []func(*Config){
		func(c *Config) { c.Mode, c.Local, c.Remote = esp.Transport, netip.Addr{}, netip.Addr{} },
		func(c *Config) { c.ReplayWindow = MaxReplayWindow },
		func(c *Config) { c.ReplayWindow = ReplayDisabled },
	} {
		cfg := base
		mod(&cfg)
		if _, err := New(cfg); err != nil {
			t.Errorf("valid config rejected: %v", err)
		}
	}
}

func TestReplayWindowSizes(t *testing.T) {
	for _, c := range []struct{ cfg, want int }{{0, DefaultReplayWindow}, {ReplayDisabled, 0}, {1, 1}, {65536, 65536}, {5000, 5000}} {
		_, ic := pairCfg("aes128gcm16", 0x101, func(x *Config) { x.ReplayWindow = c.cfg })
		s := mustSA(t, ic)
		if s.win.Size() != c.want || s.Stats().ReplayWindow != c.want {
			t.Errorf("ReplayWindow %d: size %d, want %d", c.cfg, s.win.Size(), c.want)
		}
	}
}

// TestKeysRedacted prints configs and SAs every way a program might and
// checks that no key byte shows up, in any encoding.
func TestKeysRedacted(t *testing.T) {
	cfg, _ := pairCfg("aes256-sha512", 0x4242, nil)
	for i := range cfg.Key {
		cfg.Key[i] = 0xA0 + byte(i%16)
	}
	for i := range cfg.AuthKey {
		cfg.AuthKey[i] = 0xC0 + byte(i%16)
	}
	s := mustSA(t, cfg)
	var logBuf bytes.Buffer
	lg := slog.New(slog.NewTextHandler(&logBuf, nil))
	lg.Info("cfg", "cfg", cfg, "sa", s)
	lg.Info("ptr", "cfg", &cfg)
	jc, _ := json.Marshal(cfg)
	js, _ := json.Marshal(s)
	jw, _ := json.Marshal(struct{ C Config }{cfg})
	type wrap struct {
		C Config
		S *SA
	}
	outs := []string{
		cfg.String(), s.String(),
		fmt.Sprint(cfg), fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg),
		fmt.Sprintf("%s", cfg), fmt.Sprintf("%q", cfg), fmt.Sprintf("%x", cfg), fmt.Sprintf("%X", cfg), fmt.Sprintf("%d", cfg),
		fmt.Sprintf("%v", &cfg), fmt.Sprintf("%+v", &cfg), fmt.Sprintf("%#v", &cfg),
		fmt.Sprintf("%v %+v %#v %s %x %d", s, s, s, s, s, s),
		fmt.Sprintf("%v %+v %#v", wrap{cfg, s}, wrap{cfg, s}, wrap{cfg, s}),
		fmt.Sprintf("%+v", s.Config()), fmt.Sprintf("%+v", Event{SA: s}),
		string(jc), string(js), string(jw), logBuf.String(),
	}
	keyHex := []string{hex.EncodeToString(cfg.Key[:8]), hex.EncodeToString(cfg.AuthKey[:8]),
		strings.ToUpper(hex.EncodeToString(cfg.Key[:8]))}
	keyDec := fmt.Sprint(cfg.Key[:6])[1:]      // "160 161 ..." as %v prints []byte
	authDec := fmt.Sprint(cfg.AuthKey[:6])[1:] // without the '['
	keyDec, authDec = keyDec[:len(keyDec)-1], authDec[:len(authDec)-1]
	// The detectors do find keys printed the ordinary way.
	if raw := fmt.Sprintf("%v %x", struct{ K []byte }{cfg.Key}, cfg.AuthKey); !strings.Contains(raw, keyDec) || !strings.Contains(raw, keyHex[1]) {
		t.Fatalf("leak detector broken: %s", raw)
	}
	for i, o := range outs {
		for _, k := range append(keyHex, keyDec, authDec, string(cfg.Key[:6]), string(cfg.AuthKey[:6])) {
			if strings.Contains(o, k) {
				t.Errorf("output %d leaks key material %q: %s", i, k, o)
			}
		}
	}
	if !strings.Contains(cfg.String(), "redacted") || !strings.Contains(string(jc), "redacted") {
		t.Errorf("redaction marker missing: %s / %s", cfg, jc)
	}
	if !strings.Contains(cfg.String(), "0x00004242") {
		t.Errorf("String lost the SPI: %s", cfg)
	}
	if c := s.Config(); c.Key != nil || c.AuthKey != nil {
		t.Fatal("SA.Config returns keys")
	}
}

func TestNewCopiesKeys(t *testing.T) {
	oc, ic := pairCfg("aes128gcm16", 0x109, nil)
	key := oc.Key
	out, in := mustSA(t, oc), mustSA(t, ic)
	clear(key) // the caller wipes its copy; the SA keeps working
	sadA, sadB := NewSAD(SADOptions{}), NewSAD(SADOptions{})
	sadA.Add(out)
	sadB.Add(in)
	tun := NewTunnel("k")
	tun.SetOutbound(out)
	tx, _ := NewProcessor(ProcessorOptions{SAD: sadA, Tunnel: tun})
	rx, _ := NewProcessor(ProcessorOptions{SAD: sadB})
	b := []Packet{packetFor(udpPacket(hostA, hostB, 1, 2, 50, 1))}
	tx.Worker(0).Outbound(b)
	rx.Worker(0).Inbound(b)
	if b[0].Verdict != VerdictOK {
		t.Fatalf("after wiping the caller's key: %v %v", b[0].Verdict, b[0].Reason)
	}
}

func TestCloseWipes(t *testing.T) {
	r := newRig(t, "aes256-sha256", nil)
	p := r.seal(t, udpPacket(hostA, hostB, 1, 2, 10, 1))
	if err := r.sadB.Delete(In, r.in.SPI()); err != nil {
		t.Fatal(err)
	}
	if r.in.State() != StateDeleted {
		t.Fatalf("state %v", r.in.State())
	}
	// The cipher refuses to work: keys are gone.
	if _, _, err := r.in.cipher.Open(esp.NewScratch(), p.Data()[20:], 1); !errors.Is(err, esp.ErrUnsupported) {
		t.Fatalf("Open after delete: %v", err)
	}
	if q := r.open(p); q.Reason != DropNoSA {
		t.Fatalf("after delete: %v", q.Reason)
	}
	if err := r.sadB.Delete(In, r.in.SPI()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if err := r.sadB.Add(r.in); !errors.Is(err, ErrClosed) {
		t.Fatalf("re-adding a closed SA: %v", err)
	}
	r.in.Close() // harmless
	// An outbound SA deleted while its tunnel still points at it.
	r.sadA.Delete(Out, r.out.SPI())
	b := []Packet{packetFor(udpPacket(hostA, hostB, 1, 2, 10, 1))}
	r.wSend.Outbound(b)
	if b[0].Reason != DropNoSA {
		t.Fatalf("outbound on a deleted SA: %v", b[0].Reason)
	}
}

func TestStringsAndParse(t *testing.T) {
	for r := DropReason(0); r < NumDropReasons; r++ {
		s := r.String()
		if strings.Contains(s, "(") {
			t.Errorf("reason %d has no name", r)
		}
		back, err := ParseDropReason(s)
		if err != nil || back != r {
			t.Errorf("ParseDropReason(%q) = %v %v", s, back, err)
		}
	}
	if DropReason(200).String() != "DropReason(200)" {
		t.Error("unknown reason string")
	}
	var dc DropCounts
	dc[DropReplay], dc[DropAuth] = 3, 4
	j, _ := json.Marshal(dc)
	var back DropCounts
	if err := json.Unmarshal(j, &back); err != nil || back != dc || dc.Total() != 7 {
		t.Errorf("DropCounts JSON %s → %v %v", j, back, err)
	}
	if !strings.Contains(string(j), `"replay":3`) {
		t.Errorf("DropCounts JSON %s", j)
	}
	if err := json.Unmarshal([]byte(`{"bogus":1}`), &back); err == nil {
		t.Error("unknown drop reason accepted")
	}
	for s, want := range map[string]Direction{"in": In, "OUT": Out, "inbound": In} {
		if d, err := ParseDirection(s); err != nil || d != want {
			t.Errorf("ParseDirection(%q) = %v %v", s, d, err)
		}
	}
	if _, err := ParseDirection("sideways"); err == nil {
		t.Error("bad direction accepted")
	}
	for s, want := range map[string]Concurrency{"shared": Shared, "sharded": Sharded, "per-cpu": PerCPU, "percpu": PerCPU} {
		if c, err := ParseConcurrency(s); err != nil || c != want {
			t.Errorf("ParseConcurrency(%q) = %v %v", s, c, err)
		}
	}
	for s, want := range map[string]Action{"protect": Protect, "bypass": Bypass, "discard": Discard, "ipsec": Protect, "drop": Discard} {
		if a, err := ParseAction(s); err != nil || a != want {
			t.Errorf("ParseAction(%q) = %v %v", s, a, err)
		}
	}
	var d Direction
	if err := json.Unmarshal([]byte(`"out"`), &d); err != nil || d != Out {
		t.Errorf("Direction JSON: %v %v", d, err)
	}
	r := newRig(t, "aes128gcm16", func(c *Config) { c.PathMTU = 1400 })
	j, err := json.Marshal(r.in.Stats())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"direction":"in"`, `"state":"active"`, `"drops":{`, `"plaintext_mtu":`, `"transform":"aes128gcm16"`} {
		if !strings.Contains(string(j), k) {
			t.Errorf("Stats JSON lacks %s: %s", k, j)
		}
	}
}
