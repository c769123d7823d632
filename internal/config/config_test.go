package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/sa"
)

// Key material used by the tests; the tests also check that none of it
// ever appears in an error message.
const (
	key36 = "0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223"
	key32 = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	key16 = "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff"
)

const good = `# gateway A
sas:
  - name: to-siteB
    direction: out
    spi: 0x1000
    mode: tunnel
    local: 192.0.2.1
    remote: 198.51.100.2
    encap: udp
    local_port: 4501
    transform: aes256gcm16
    key: ` + key36 + `
    esn: true
    lifetime: {soft_bytes: 1000, hard_bytes: 2000, soft_packets: 10, hard_packets: 20, soft_seconds: 1h, hard_seconds: 4000}
    path_mtu: 1400
  - name: from-siteB
    direction: in
    spi: 4097
    mode: transport
    local: 2001:db8::1
    remote: 2001:db8::2
    transform: aes256-sha256
    key: ` + key32 + `
    auth_key: ` + key32 + `
    replay_window: 1024
  - name: legacy
    direction: in
    spi: 0x2000
    local: 192.0.2.1
    remote: 198.51.100.9
    transform: aes128-sha1
    key: "` + key16 + `"
    auth_key: 0x0102030405060708090a0b0c0d0e0f1011121314
`

func TestParseGood(t *testing.T) {
	cfg, err := Parse("gw.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.SAs) != 3 {
		t.Fatalf("got %d SAs, want 3", len(cfg.SAs))
	}
	a, ok := cfg.Lookup("to-siteB")
	if !ok {
		t.Fatal("to-siteB not found")
	}
	if a.Direction != Out || a.SPI != 0x1000 || a.Mode != esp.Tunnel || a.Encap != EncapUDP ||
		a.LocalPort != 4501 || a.RemotePort != 4500 || a.Transform.Name() != "aes256gcm16" ||
		len(a.Key) != 36 || a.Key[35] != 0x23 || a.AuthKey != nil || !a.ESN || a.ReplayWindow != 0 ||
		a.PathMTU != 1400 || a.Local.String() != "192.0.2.1" || a.Remote.String() != "198.51.100.2" {
		t.Errorf("to-siteB parsed wrong: %+v", *a)
	}
	wantLife := Lifetime{SoftBytes: 1000, HardBytes: 2000, SoftPackets: 10, HardPackets: 20, SoftTime: time.Hour, HardTime: 4000 * time.Second}
	if a.Lifetime != wantLife {
		t.Errorf("lifetime = %+v, want %+v", a.Lifetime, wantLife)
	}
	if a.Pos.Line != 3 || a.Pos.Field != "sas[0]" || a.Pos.File != "gw.yaml" {
		t.Errorf("pos = %+v", a.Pos)
	}
	b, _ := cfg.Lookup("from-siteB")
	if b == nil || b.Direction != In || b.SPI != 4097 || b.Mode != esp.Transport || b.Encap != EncapNone ||
		b.LocalPort != 0 || len(b.AuthKey) != 32 || b.ReplayWindow != 1024 || !b.IPv6() || b.PathMTU != DefaultPathMTU || b.Pos.Line != 16 {
		t.Errorf("from-siteB parsed wrong: %+v", b)
	}
	c, _ := cfg.Lookup("legacy")
	if c == nil || c.Mode != esp.Tunnel || c.ReplayWindow != DefaultReplayWindow || len(c.Key) != 16 || c.Key[15] != 0xff || len(c.AuthKey) != 20 {
		t.Errorf("legacy parsed wrong: %+v", c)
	}
	if _, ok := cfg.Lookup("nope"); ok {
		t.Error("Lookup found a missing SA")
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	cfg, err := Parse("gw.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.SAs[0]
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
		out := fmt.Sprintf(f, *a) + fmt.Sprintf(f, a.Key)
		if strings.Contains(out, "0405060708") || strings.Contains(out, "4 5 6 7 8") || strings.Contains(out, "\\x04\\x05") {
			t.Errorf("format %s leaks key material: %s", f, out)
		}
	}
	cfg.Wipe()
	for _, b := range a.Key {
		if b != 0 {
			t.Fatal("Wipe left key bytes")
		}
	}
}

func TestLoad(t *testing.T) {
	p := filepath.Join(t.TempDir(), "site.yaml")
	bad := strings.Replace(good, "spi: 0x1000", "spi: 0", 1)
	if err := os.WriteFile(p, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || err.Error() != "site.yaml:5: sas[0].spi: SPI 0 is reserved (RFC 4303 §2.1)" {
		t.Fatalf("Load error = %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// saText wraps SA fields (one per line, starting at line 3) in a config.
func saText(lines ...string) string {
	return "sas:\n  - " + strings.Join(lines, "\n    ") + "\n"
}

// base is a valid inbound SA; cases replace or add lines.
var base = []string{
	"name: a",                // line 2
	"direction: in",          // 3
	"spi: 0x100",             // 4
	"local: 10.0.0.1",        // 5
	"remote: 10.0.0.2",       // 6
	"transform: aes128gcm16", // 7
	"key: " + key36[:2+40],   // 8: 20 bytes
}

// with returns base with line i (2-based line number) replaced by s, or
// with s appended when i is 0.
func with(line int, s string) string {
	l := append([]string(nil), base...)
	if line == 0 {
		l = append(l, s)
	} else {
		l[line-2] = s
	}
	return saText(l...)
}

func TestParseErrors(t *testing.T) {
	if _, err := Parse("x.yaml", []byte(saText(base...))); err != nil {
		t.Fatalf("base config must be valid: %v", err)
	}
	two := saText(base...) + "  - " + strings.Join(base, "\n    ") + "\n" // line 9 onwards
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "x.yaml: empty configuration"},
		{"syntax", "sas:\n  - name: a\n    x: y: z\n", "x.yaml:3: YAML syntax: mapping values are not allowed in this context"},
		{"top list", "- a\n", "x.yaml:1: want a mapping with a sas: list at the top level"},
		{"unknown top", "sas: []\nsa: x\n", "x.yaml:1: sas: no SAs\nx.yaml:2: sa: unknown field"},
		{"no sas", "other: 1\n", "x.yaml:1: other: unknown field\nx.yaml:1: sas: missing (want a list of SAs)"},
		{"sas not list", "sas: {a: 1}\n", "x.yaml:1: sas: want a list of SAs"},
		{"sa not mapping", "sas:\n  - foo\n", "x.yaml:2: sas[0]: want a mapping of SA fields"},
		{"unknown field", with(0, "colour: blue"), "x.yaml:9: sas[0].colour: unknown field"},
		{"duplicate field", with(0, "spi: 7"), "x.yaml:9: sas[0].spi: duplicate field (first set on line 4)"},
		{"missing name", saText(base[1:]...), "x.yaml:2: sas[0].name: missing"},
		{"bad name", with(2, "name: 'a b'"), "x.yaml:2: sas[0].name: want 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"},
		{"missing direction", saText(append([]string{base[0]}, base[2:]...)...), "x.yaml:2: sas[0].direction: missing"},
		{"bad direction", with(3, "direction: sideways"), `x.yaml:3: sas[0].direction: want in or out, got "sideways"`},
		{"spi zero", with(4, "spi: 0"), "x.yaml:4: sas[0].spi: SPI 0 is reserved (RFC 4303 §2.1)"},
		{"spi too big", with(4, "spi: 0x100000000"), `x.yaml:4: sas[0].spi: "0x100000000" does not fit in 32 bits`},
		{"spi negative", with(4, "spi: -1"), `x.yaml:4: sas[0].spi: want a non-negative decimal or 0x-hex integer, got "-1"`},
		{"spi list", with(4, "spi: [1, 2]"), "x.yaml:4: sas[0].spi: want a single value, not a list"},
		{"spi empty", with(4, "spi:"), "x.yaml:4: sas[0].spi: empty value"},
		{"bad mode", with(0, "mode: beet"), `x.yaml:9: sas[0].mode: want tunnel or transport, got "beet"`},
		{"bad local", with(5, "local: 10.0.0.300"), `x.yaml:5: sas[0].local: want an IPv4 or IPv6 address, got "10.0.0.300"`},
		{"multicast remote", with(6, "remote: 224.0.0.1"), "x.yaml:6: sas[0].remote: 224.0.0.1 is not a unicast address"},
		{"family mismatch", with(6, "remote: 2001:db8::2"), "x.yaml:6: sas[0].remote: address family differs from local (2001:db8::2 vs 10.0.0.1)"},
		{"missing remote", saText(append(append([]string(nil), base[:4]...), base[5:]...)...), "x.yaml:2: sas[0].remote: missing"},
		{"bad encap", with(0, "encap: gre"), `x.yaml:9: sas[0].encap: want none or udp, got "gre"`},
		{"port without udp", with(0, "local_port: 4500"), "x.yaml:9: sas[0].local_port: only valid with encap: udp"},
		{"port zero", saText(append(append([]string(nil), base...), "encap: udp", "remote_port: 0")...), "x.yaml:10: sas[0].remote_port: port 0 is not valid"},
		{"port too big", saText(append(append([]string(nil), base...), "encap: udp", "remote_port: 70000")...), `x.yaml:10: sas[0].remote_port: "70000" does not fit in 16 bits`},
		{"bad transform", with(7, "transform: rot13"), `x.yaml:7: sas[0].transform: unknown transform "rot13" (want one of ` + strings.Join(esp.TransformNames(), ", ") + ")"},
		{"short key", with(8, "key: "+key32), "x.yaml:8: sas[0].key: want 20 bytes of hex for aes128gcm16 (key‖salt), got 32"},
		{"gcm256 key", saText(append(append([]string(nil), base[:5]...), "transform: aes256gcm16", "key: "+key32)...), "x.yaml:8: sas[0].key: want 36 bytes of hex for aes256gcm16 (key‖salt), got 32"},
		{"ctr key", saText(append(append([]string(nil), base[:5]...), "transform: aes128ctr-sha256", "key: "+key32[:32])...),
			"x.yaml:2: sas[0].auth_key: missing (aes128ctr-sha256 needs a 32-byte authentication key)\n" +
				"x.yaml:8: sas[0].key: want 20 bytes of hex for aes128ctr-sha256 (key‖nonce), got 16"},
		{"not hex", with(8, "key: 0x00zz"), "x.yaml:8: sas[0].key: not hex: character 3 is not 0-9, a-f or ':'"},
		{"odd hex", with(8, "key: 0x123"), "x.yaml:8: sas[0].key: odd number of hex digits"},
		{"split byte", with(8, "key: '1:23'"), "x.yaml:8: sas[0].key: separator at character 2 splits a byte"},
		{"missing key", saText(base[:6]...), "x.yaml:2: sas[0].key: missing (aes128gcm16 needs a 20-byte encryption key)"},
		{"auth key on aead", with(0, "auth_key: "+key32), "x.yaml:9: sas[0].auth_key: not used by the combined-mode transform aes128gcm16"},
		{"cbc wrong auth", saText(append(append([]string(nil), base[:5]...), "transform: aes256-sha512", "key: "+key32, "auth_key: "+key32)...),
			"x.yaml:9: sas[0].auth_key: want 64 bytes of hex for aes256-sha512, got 32"},
		{"null key", saText(append(append([]string(nil), base[:5]...), "transform: null-sha256", "key: "+key32, "auth_key: "+key32)...),
			"x.yaml:8: sas[0].key: null-sha256 uses no encryption key"},
		{"bad esn", with(0, "esn: maybe"), `x.yaml:9: sas[0].esn: want true or false, got "maybe"`},
		{"replay out", saText(append(append([]string{base[0], "direction: out"}, base[2:]...), "replay_window: 64")...), "x.yaml:9: sas[0].replay_window: only valid for direction: in (the receiver checks replay)"},
		{"replay huge", with(0, "replay_window: 100000"), "x.yaml:9: sas[0].replay_window: at most 65536 packets, got 100000"},
		{"lifetime scalar", with(0, "lifetime: 5"), "x.yaml:9: sas[0].lifetime: want a mapping of soft_/hard_ bytes, packets, seconds"},
		{"lifetime unknown", with(0, "lifetime: {soft_kb: 5}"), "x.yaml:9: sas[0].lifetime.soft_kb: unknown field"},
		{"lifetime soft>hard", with(0, "lifetime:\n      hard_bytes: 10\n      soft_bytes: 20"), "x.yaml:11: sas[0].lifetime.soft_bytes: larger than hard_bytes (20 > 10)"},
		{"lifetime time order", with(0, "lifetime: {soft_seconds: 2h, hard_seconds: 1h}"), "x.yaml:9: sas[0].lifetime.soft_seconds: larger than hard_seconds (2h0m0s > 1h0m0s)"},
		{"lifetime bad duration", with(0, "lifetime: {hard_seconds: soon}"), `x.yaml:9: sas[0].lifetime.hard_seconds: want seconds or a duration such as 1h or 90m, got "soon"`},
		{"lifetime fraction", with(0, "lifetime: {hard_seconds: 1500ms}"), "x.yaml:9: sas[0].lifetime.hard_seconds: 1.5s is not a whole number of seconds"},
		{"mtu small", with(0, "path_mtu: 60"), "x.yaml:9: sas[0].path_mtu: want 68 to 65535, got 60"},
		{"mtu v6 small", saText(append(append([]string(nil), base[:3]...), "local: 2001:db8::1", "remote: 2001:db8::2", base[5], base[6], "path_mtu: 1200")...),
			"x.yaml:9: sas[0].path_mtu: want 1280 to 65535, got 1200"},
		{"mtu no room", with(0, "path_mtu: 100"), "x.yaml:9: sas[0].path_mtu: 100 leaves no room for a packet after ESP overhead"},
		{"duplicate name", strings.Replace(two, "spi: 0x100", "spi: 0x101", 1), `x.yaml:9: sas[1].name: "a" already used by sas[0] on line 2`},
		{"duplicate inbound spi", strings.Replace(two, "name: a", "name: b", 1), "x.yaml:11: sas[1].spi: inbound SPI 0x100 already used by sas[0] (b) on line 4"},
		{"duplicate outbound spi", lastKeyChanged(strings.Replace(strings.Replace(two, "direction: in", "direction: out", -1), "name: a", "name: b", 1)),
			"x.yaml:11: sas[1].spi: outbound SPI 0x100 to 10.0.0.2 already used by sas[0] (b) on line 4"},
		{"two documents", saText(base...) + "---\nsas: []\n", "x.yaml:9: more than one YAML document"},
	}
	secrets := []string{strings.TrimPrefix(key36, "0x")[:20], key32[:20], "00:11:22:33"}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("x.yaml", []byte(tc.in))
			if err == nil {
				t.Fatalf("no error; parsed %d SAs from\n%s", len(cfg.SAs), tc.in)
			}
			if cfg != nil {
				t.Error("config returned together with an error")
			}
			if err.Error() != tc.want {
				t.Errorf("error:\n got %s\nwant %s\ninput:\n%s", err, tc.want, tc.in)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error quotes key material: %s", err)
				}
			}
		})
	}
}

func TestDecodeHexForms(t *testing.T) {
	for _, in := range []string{"0x0a0B", "0X0a0b", "0a0b", "0a:0b", "0a 0b"} {
		k, err := decodeHex(in)
		if err != nil || len(k) != 2 || k[0] != 0x0a || k[1] != 0x0b {
			t.Errorf("decodeHex(%q) = %v, %v", in, []byte(k), err)
		}
	}
	if _, err := decodeHex("0x"); err == nil {
		t.Error("empty key accepted")
	}
}

func TestErrorCap(t *testing.T) {
	var b strings.Builder
	b.WriteString("sas:\n  - name: a\n")
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&b, "    bogus%d: 1\n", i)
	}
	_, err := Parse("x.yaml", []byte(b.String()))
	var l ErrorList
	if !errors.As(err, &l) || len(l) != maxErrors {
		t.Fatalf("got %T with %d errors, want ErrorList of %d", err, len(l), maxErrors)
	}
	if l[0].Line != 3 || l[0].Field != "sas[0].bogus0" {
		t.Errorf("first error %v", l[0])
	}
}

func TestOutboundSPIPerRemote(t *testing.T) {
	two := saText(base...) + "  - " + strings.Join(base, "\n    ") + "\n"
	two = strings.Replace(two, "direction: in", "direction: out", -1)
	two = strings.Replace(two, "name: a", "name: b", 1)
	two = strings.Replace(two, "remote: 10.0.0.2", "remote: 10.0.0.3", 1)
	two = lastKeyChanged(two) // two outbound SAs never share a key
	if _, err := Parse("x.yaml", []byte(two)); err != nil {
		t.Errorf("same outbound SPI to different peers rejected: %v", err)
	}
}

func TestSAConfig(t *testing.T) {
	cfg, err := Parse("gw.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	out := cfg.SAs[0].SAConfig()
	if out.Name != "to-siteB" || out.Direction != sa.Out || out.SPI != 0x1000 || out.Mode != esp.Tunnel ||
		!out.UDPEncap || out.LocalPort != 4501 || out.RemotePort != 4500 || !out.ESN || out.PathMTU != 1400 ||
		out.ReplayWindow != 0 || len(out.Key) != 36 || out.Transform.Name() != "aes256gcm16" {
		t.Errorf("outbound SAConfig wrong: %+v", out)
	}
	if out.SoftLifetime != (sa.Lifetime{Bytes: 1000, Packets: 10, Time: time.Hour}) ||
		out.HardLifetime != (sa.Lifetime{Bytes: 2000, Packets: 20, Time: 4000 * time.Second}) {
		t.Errorf("lifetimes: soft %+v hard %+v", out.SoftLifetime, out.HardLifetime)
	}
	in := cfg.SAs[1].SAConfig()
	if in.Direction != sa.In || in.ReplayWindow != 1024 || in.Mode != esp.Transport || in.UDPEncap || in.LocalPort != 0 || len(in.AuthKey) != 32 {
		t.Errorf("inbound SAConfig wrong: %+v", in)
	}
	off := strings.Replace(good, "replay_window: 1024", "replay_window: 0", 1)
	cfg, err = Parse("gw.yaml", []byte(off))
	if err != nil {
		t.Fatal(err)
	}
	if w := cfg.SAs[1].SAConfig().ReplayWindow; w != sa.ReplayDisabled {
		t.Errorf("replay_window 0 became %d, want sa.ReplayDisabled", w)
	}
}

func TestLongValuesNotEchoed(t *testing.T) {
	long := strings.TrimPrefix(key36, "0x")
	_, err := Parse("x.yaml", []byte(with(4, "spi: "+long)))
	if err == nil || strings.Contains(err.Error(), long[8:]) || !strings.Contains(err.Error(), `"00010203"…`) {
		t.Errorf("error echoes a long value: %v", err)
	}
}

// lastKeyChanged changes the last hex digit of the last key in y.
func lastKeyChanged(y string) string {
	i := strings.LastIndex(y, "key: 0x")
	j := i + len("key: 0x")
	for j < len(y) && strings.ContainsRune("0123456789abcdefABCDEF", rune(y[j])) {
		j++
	}
	c := byte('0')
	if y[j-1] == '0' {
		c = '1'
	}
	return y[:j-1] + string(c) + y[j:]
}
