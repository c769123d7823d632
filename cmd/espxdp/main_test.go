package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/espxdp/espxdp/esp"
)

// runCLI runs the command in-process and returns its exit status and
// output.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUsageAndExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.yaml", "sas:\n  - name: x\n    direction: in\n    spi: 0\n")
	good, _ := showConfig(t)
	cfg := writeFile(t, dir, "gw.yaml", good)
	in := filepath.Join(dir, "in.pcap")
	out := filepath.Join(dir, "out.pcap")
	tests := []struct {
		name     string
		args     []string
		code     int
		inStderr string
	}{
		{"no args", nil, exitUsage, "missing command"},
		{"unknown", []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{"pcap alone", []string{"pcap"}, exitUsage, "pcap: missing subcommand"},
		{"pcap unknown", []string{"pcap", "mangle"}, exitUsage, `pcap: unknown subcommand "mangle"`},
		{"show unknown", []string{"show", "policy"}, exitUsage, `show: unknown subcommand "policy"`},
		{"missing flags", []string{"pcap", "decrypt", "--config", "x"}, exitUsage, "pcap decrypt: missing --in, --out"},
		{"encrypt needs sa", []string{"pcap", "encrypt", "--config", "x", "--in", "a", "--out", "b"}, exitUsage, "pcap encrypt: missing --sa"},
		{"bad flag", []string{"show", "sa", "--bogus"}, exitUsage, "flag provided but not defined: -bogus"},
		{"stray arg", []string{"show", "sa", "--config", "x", "extra"}, exitUsage, `unexpected argument "extra"`},
		{"same file", []string{"pcap", "decrypt", "--config", "x", "--in", "a", "--out", "a"}, exitUsage, "--in and --out are the same file"},
		{"missing config", []string{"show", "sa", "--config", filepath.Join(dir, "nope.yaml")}, exitFailure, "no such file"},
		{"bad config", []string{"show", "sa", "--config", bad}, exitFailure, "bad.yaml:4: sas[0].spi: SPI 0 is reserved"},
		{"unknown sa", []string{"pcap", "encrypt", "--config", cfg, "--sa", "nope", "--in", in, "--out", out}, exitFailure, `gw.yaml: no SA named "nope"`},
		{"inbound sa", []string{"pcap", "encrypt", "--config", cfg, "--sa", "from-b", "--in", in, "--out", out}, exitFailure, `gw.yaml:13: sas[1]: SA "from-b" is inbound`},
		{"missing pcap", []string{"pcap", "decrypt", "--config", cfg, "--in", in, "--out", out}, exitFailure, "in.pcap: no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			if !strings.Contains(stderr, tc.inStderr) {
				t.Errorf("stderr does not mention %q:\n%s", tc.inStderr, stderr)
			}
			if tc.code == exitUsage && !strings.Contains(stderr, "usage:") {
				t.Errorf("usage error without usage text:\n%s", stderr)
			}
		})
	}
	if code, out, _ := runCLI(t, "help"); code != exitOK || !strings.Contains(out, "  pcap encrypt  ") {
		t.Errorf("help: exit %d, output %q", code, out)
	}
}

// showConfig is a config with one peer (a pair of SAs, NAT-T) and one
// inbound-only transport SA; keys are random and must never be printed.
func showConfig(t *testing.T) (yaml string, secrets []string) {
	k1, k2, k3, a3 := randHex(t, 36), randHex(t, 36), randHex(t, 16), randHex(t, 32)
	yaml = fmt.Sprintf(`sas:
  - name: to-b
    direction: out
    spi: 0x1000
    local: 192.0.2.1
    remote: 198.51.100.2
    encap: udp
    transform: aes256gcm16
    key: 0x%s
    esn: true
    lifetime: {hard_bytes: 5000000, hard_seconds: 1h, soft_seconds: 50m}
    path_mtu: 1400
  - name: from-b
    direction: in
    spi: 0x2000
    local: 192.0.2.1
    remote: 198.51.100.2
    encap: udp
    transform: aes256gcm16
    key: %s
    replay_window: 128
  - name: host
    direction: in
    spi: 0x4d77
    mode: transport
    local: 2001:db8::1
    remote: 2001:db8::2
    transform: aes128-sha256
    key: %s
    auth_key: %s
    replay_window: 0
`, k1, k2, k3, a3)
	return yaml, []string{k1[:16], k2[:16], k3[:16], a3[:16], k1[len(k1)-16:]}
}

func TestShowSA(t *testing.T) {
	yaml, secrets := showConfig(t)
	cfg := writeFile(t, t.TempDir(), "gw.yaml", yaml)
	code, out, stderr := runCLI(t, "show", "sa", "--config", cfg)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// The outbound SA's plaintext MTU, as the esp package computes it.
	c, err := esp.New(esp.Config{Transform: esp.MustParseTransform("aes256gcm16"), Key: make([]byte, 36), ESN: true})
	if err != nil {
		t.Fatal(err)
	}
	ptMTU := c.PlaintextMTU(1400, esp.Tunnel, false, true)
	for _, want := range []string{
		"local  ident (addr/port): (192.0.2.1/4500)",
		"remote ident (addr/port): (198.51.100.2/4500)",
		"current_peer 198.51.100.2 port 4500",
		"#pkts encaps: 0, #pkts encrypt: 0, #pkts digest: 0",
		"#pkts decaps: 0, #pkts decrypt: 0, #pkts verify: 0",
		"#send errors 0, #recv errors 0",
		fmt.Sprintf("plaintext mtu %d, path mtu 1400", ptMTU),
		"current outbound spi: 0x1000(4096)",
		"spi: 0x2000(8192)",
		"spi: 0x4D77(19831)",
		"transform: esp-aes256gcm16 ,",
		"transform: esp-aes128-sha256 ,",
		"in use settings ={Tunnel, UDP-Encaps, ESN, }",
		"in use settings ={Transport, }",
		"sa timing: remaining key lifetime (bytes/sec): (5000000/3600)",
		"sa timing: remaining key lifetime (bytes/sec): (unlimited/unlimited)",
		"replay detection support: Y, replay window size: 128",
		"replay detection support: N",
		"local  ident (addr): (2001:db8::1)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// The peer block lists the pair together: one current_peer line for
	// 198.51.100.2, the transport SA in its own block.
	if n := strings.Count(out, "current_peer"); n != 2 {
		t.Errorf("%d peer blocks, want 2", n)
	}
	for _, s := range secrets {
		if strings.Contains(strings.ToLower(out), strings.ToLower(s)) {
			t.Errorf("output contains key material %s", s)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}

	code, js, stderr := runCLI(t, "show", "sa", "--config", cfg, "--json")
	if code != exitOK {
		t.Fatalf("--json: exit %d: %s", code, stderr)
	}
	var r struct {
		SAs []struct {
			Name         string `json:"name"`
			SPI          uint32 `json:"spi"`
			ReplayWindow int    `json:"replay_window"`
			PathMTU      int    `json:"path_mtu"`
			PlaintextMTU int    `json:"plaintext_mtu"`
			UDPEncap     bool   `json:"udp_encap"`
		} `json:"sas"`
	}
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		t.Fatalf("bad JSON: %v\n%s", err, js)
	}
	if len(r.SAs) != 3 || r.SAs[0].Name != "to-b" || r.SAs[0].SPI != 0x1000 || r.SAs[0].PlaintextMTU != ptMTU ||
		!r.SAs[0].UDPEncap || r.SAs[1].ReplayWindow != 128 || r.SAs[2].SPI != 0x4d77 || r.SAs[2].ReplayWindow != 0 {
		t.Errorf("JSON SAs wrong: %+v", r.SAs)
	}
	for _, s := range secrets {
		if strings.Contains(strings.ToLower(js), strings.ToLower(s)) {
			t.Errorf("JSON contains key material %s", s)
		}
	}
}

// TestShowSARejectedBySA checks that an SA the sa package refuses is
// reported with the file and line of its definition.
func TestShowSAErrorsNameTheLine(t *testing.T) {
	yaml, _ := showConfig(t)
	// Same inbound SPI twice is caught by the config loader.
	dup := strings.Replace(yaml, "spi: 0x4d77", "spi: 0x2000", 1)
	cfg := writeFile(t, t.TempDir(), "dup.yaml", dup)
	code, _, stderr := runCLI(t, "show", "sa", "--config", cfg)
	if code != exitFailure || !strings.Contains(stderr, "dup.yaml:24: sas[2].spi: inbound SPI 0x2000 already used by sas[1] (from-b) on line 15") {
		t.Errorf("exit %d, stderr %s", code, stderr)
	}
}
