package config

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/espxdp/espxdp/ike"
)

// peersYAML is a gateway with one tunnel and the peers given.
func peersYAML(peers string) string {
	return `interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:0a:fe", local: 192.0.2.1}
  plain:  {name: lan0, next_hop: "02:00:00:00:01:02", address: 10.1.0.1}
protected: [10.2.0.0/24]
tunnels:
  - {name: to-b}
peers:
` + peers
}

func pskFileT(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "p.psk")
	if err := os.WriteFile(f, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f, mode); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestPeerParse(t *testing.T) {
	f := pskFileT(t, "a long enough passphrase\n", 0o600)
	// Each peer has a tunnel of its own (TestRedTeamTwoPeersOneTunnel).
	cfg, err := Parse("gw.yaml", []byte(strings.Replace(peersYAML(fmt.Sprintf(`  - name: b
    local: 192.0.2.1
    remote: 192.0.2.2
    local_id: a.example
    remote_id: 192.0.2.2
    psk_file: %s
    ike_proposals: [aes256gcm16-prfsha384-ecp384, aes128gcm16-prfsha256-x25519]
    esp_proposals: [aes256gcm16, aes128gcm16]
    esn: both
    local_ts: [10.1.0.0/24]
    remote_ts: [10.2.0.0/24, 10.3.0.0/24]
    rekey_time: 30m
    rekey_bytes: 1000000
    dpd_delay: 10s
    dpd_action: clear
    encap: true
  - name: any
    local: 192.0.2.1
    remote: "%%any"
    psk_file: %s
    local_ts: [10.1.0.0/24]
    remote_ts: [10.9.0.0/16]
    tunnel: to-any
`, f, f)), "  - {name: to-b}\n", "  - {name: to-b}\n  - {name: to-any}\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Peers) != 2 {
		t.Fatalf("%d peers", len(cfg.Peers))
	}
	p := cfg.Peers[0]
	if string(p.PSK) != "a long enough passphrase" || p.Tunnel != "to-b" || p.ESN != "both" || !p.Encap ||
		p.DPDAction != "clear" || p.DPDDelay != 10*time.Second || p.RekeyTime != 30*time.Minute || len(p.RemoteTS) != 2 ||
		p.StartAction != "start" || p.IKERekeyTime != DefaultIKERekeyTime || p.RetransmitTries != DefaultRetransmitTries {
		t.Errorf("peer: %+v", p)
	}
	if id := Identity(p.RemoteID, p.Local); id.Type != ike.IDIPv4 {
		t.Errorf("remote_id of an address: %v", id)
	}
	if id := Identity(p.LocalID, p.Local); id.Type != ike.IDFQDN || id.String() != "a.example" {
		t.Errorf("local_id: %v", id)
	}
	q := cfg.Peers[1]
	if !q.Responder() || q.StartAction != "none" || q.Remote.IsValid() {
		t.Errorf("%%any peer: %+v", q)
	}
	l := p.SoftHard(0.5)
	if l.SoftTime != 30*time.Minute-90*time.Second || l.HardTime != 33*time.Minute || l.SoftBytes != 1000000 || l.HardBytes != 1100000 {
		t.Errorf("lifetimes: %+v", l)
	}
	// The PSK never prints.
	if s := fmt.Sprintf("%v %+v", p.PSK, *p); strings.Contains(s, "passphrase") {
		t.Errorf("PSK printed: %s", s)
	}
	cfg.Wipe()
	if strings.Trim(string(p.PSK), "\x00") != "" {
		t.Error("Wipe left the PSK")
	}
}

// TestPeerErrors: each mistake is reported at its line with its field.
func TestPeerErrors(t *testing.T) {
	good := pskFileT(t, "0x00112233445566778899aabbccddeeff", 0o600)
	open := pskFileT(t, "world readable secret!!", 0o644)
	short := pskFileT(t, "short", 0o600)
	t.Setenv("ESPXDP_TEST_PSK", "from the environment, long")
	base := func(extra string) string {
		return "  - name: b\n    local: 192.0.2.1\n    remote: 192.0.2.2\n    local_ts: [10.1.0.0/24]\n    remote_ts: [10.2.0.0/24]\n" + extra
	}
	cases := []struct {
		peers, want string
	}{
		{base("    psk_file: " + open + "\n"), "gw.yaml:13: peers[0].psk_file: " + open + " is mode 0644: a PSK file must not be accessible to group or others"},
		{base("    psk_file: " + short + "\n"), "peers[0].psk_file: the PSK has 5 bytes, want at least 16"},
		{base("    psk_file: relative.psk\n"), "peers[0].psk_file: want an absolute path"},
		{base(""), "peers[0].psk_file: missing (or psk_env)"},
		{base("    psk_env: ESPXDP_TEST_NO_SUCH_VAR\n"), "environment variable ESPXDP_TEST_NO_SUCH_VAR is not set"},
		{base("    psk_env: ESPXDP_TEST_PSK\n    psk_file: " + good + "\n"), "psk_file and psk_env are alternatives"},
		{base("    psk_file: " + good + "\n    ike_proposals: [aes128gcm16-prfmd5-x25519]\n"), "gw.yaml:14: peers[0].ike_proposals"},
		{base("    psk_file: " + good + "\n    esp_proposals: [rot13]\n"), "gw.yaml:14: peers[0].esp_proposals"},
		{base("    psk_file: " + good + "\n    tunnel: nowhere\n"), `peers[0].tunnel: no tunnel named "nowhere"`},
		{base("    psk_file: " + good + "\n    dpd_action: hold\n"), "peers[0].dpd_action: want restart, clear, none"},
		{base("    psk_file: " + good + "\n    rekey_time: 0\n"), "rekey_time, rekey_bytes and rekey_packets are all 0"},
		{base("    psk_file: " + good + "\n    colour: blue\n"), "peers[0].colour: unknown field"},
		{base("    psk_file: " + good + "\n    retransmit_timeout: 2m\n"), "peers[0].retransmit_timeout: at most 1m0s"},
		{base("    psk_file: " + good + "\n    retransmit_tries: 200\n"), "peers[0].retransmit_tries: want 1..10"},
		{base("    psk_file: " + good + "\n    esp_proposals: [aes256gcm16-ecp521]\n"), `unsupported DH group "ecp521"`},
		{"  - name: b\n    local: 192.0.2.9\n    remote: 192.0.2.2\n    psk_file: " + good + "\n    local_ts: [10.1.0.0/24]\n    remote_ts: [10.2.0.0/24]\n", "192.0.2.9 is not among interfaces.cipher.local"},
		{"  - name: b\n    local: 192.0.2.1\n    remote: \"%any\"\n    start_action: start\n    psk_file: " + good + "\n    local_ts: [10.1.0.0/24]\n    remote_ts: [10.2.0.0/24]\n", "start needs a remote address"},
		{base("    psk_file: "+good+"\n") + base("    psk_file: "+good+"\n"), `"b" already used by peers[0]`},
		{"  - name: b\n    local: 192.0.2.1\n    psk_file: " + good + "\n", "peers[0].remote: missing"},
	}
	for _, c := range cases {
		_, err := Parse("gw.yaml", []byte(peersYAML(c.peers)))
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrInvalid) {
			t.Errorf("peers:\n%s\nerror %v, want %q", c.peers, err, c.want)
		}
		if err != nil && (strings.Contains(err.Error(), "world readable secret") || strings.Contains(err.Error(), "00112233")) {
			t.Errorf("error quotes the PSK: %v", err)
		}
	}
	// psk_env works.
	cfg, err := Parse("gw.yaml", []byte(peersYAML(base("    psk_env: ESPXDP_TEST_PSK\n"))))
	if err != nil || string(cfg.Peers[0].PSK) != "from the environment, long" || cfg.Peers[0].PSKSource != "env ESPXDP_TEST_PSK" {
		t.Errorf("psk_env: %v", err)
	}
	// Without a gateway section, peers are an error.
	if _, err := Parse("gw.yaml", []byte("sas: []\npeers:\n"+base("    psk_file: "+good+"\n"))); err == nil {
		t.Error("peers without a gateway accepted")
	}
}

// TestPeerFingerprint: the fingerprint changes with every setting and
// the PSK's contents (so a reload notices a new PSK of the same length),
// and not with the position in the file.
func TestPeerFingerprint(t *testing.T) {
	p := &Peer{Name: "b", PSK: Secret("0123456789abcdef"), RekeyTime: time.Hour, Pos: Pos{Line: 3}}
	q := *p
	q.Pos.Line = 9
	if p.Fingerprint() != q.Fingerprint() {
		t.Error("position changes the fingerprint")
	}
	q.PSK = Secret("0123456789abcdeX")
	if p.Fingerprint() == q.Fingerprint() {
		t.Error("a PSK of the same length leaves the fingerprint")
	}
	q = *p
	q.DPDDelay = time.Second
	if p.Fingerprint() == q.Fingerprint() {
		t.Error("dpd_delay leaves the fingerprint")
	}
}

// TestREADMEPeersExample: the README's peers: configuration (the one
// beside the strongSwan swanctl.conf) parses, with its PSK file.
func TestREADMEPeersExample(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var y string
	for _, block := range strings.Split(string(b), "```yaml\n")[1:] {
		block = block[:strings.Index(block, "```")]
		if strings.Contains(block, "\npeers:\n") {
			y = block
		}
	}
	if y == "" {
		t.Fatal("no yaml block with peers: in README.md")
	}
	f := pskFileT(t, "the contents of siteB.psk", 0o600)
	y = strings.ReplaceAll(y, "/etc/espxdp/siteB.psk", f)
	cfg, err := Parse("README.md", []byte(y))
	if err != nil {
		t.Fatalf("README's peers example: %v", err)
	}
	if len(cfg.Peers) != 1 || cfg.Peers[0].Name != "siteB" || cfg.Peers[0].Tunnel != "to-B" {
		t.Errorf("peers: %+v", cfg.Peers)
	}
}

// TestPeerESPProposalsOrderIndependent: a peer with esp_proposals:
// [aes256gcm16-ecp384] (reported to fail once with "unsupported
// encryption algorithm") parses the same whatever the order of its
// fields, parsed repeatedly and concurrently. Invariant: peer parsing
// depends on the document only.
func TestPeerESPProposalsOrderIndependent(t *testing.T) {
	f := pskFileT(t, "a long enough passphrase\n", 0o600)
	fields := []string{"name: b", "local: 192.0.2.1", "remote: 192.0.2.2", "psk_file: " + f,
		"ike_proposals: [aes256gcm16-prfsha384-ecp384]", "esp_proposals: [aes256gcm16-ecp384]", "esn: no",
		"local_ts: [10.1.0.0/24]", "remote_ts: [10.2.0.0/24]", "tunnel: to-b", "rekey_time: 1h", "start_action: start"}
	rng := rand.New(rand.NewPCG(5, 6))
	errs := make(chan error, 64)
	var wg sync.WaitGroup
	for range 40 {
		fs := slices.Clone(fields)
		rng.Shuffle(len(fs), func(i, j int) { fs[i], fs[j] = fs[j], fs[i] })
		y := peersYAML("  - " + strings.Join(fs, "\n    ") + "\n")
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg, err := Parse("gw.yaml", []byte(y))
			if err != nil {
				errs <- fmt.Errorf("%v\n%s", err, y)
				return
			}
			if p := cfg.Peers[0]; !slices.Equal(p.ESPProposals, []string{"aes256gcm16-ecp384"}) {
				errs <- fmt.Errorf("esp_proposals %q", p.ESPProposals)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
