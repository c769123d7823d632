package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/sa"
)

// The interop tests run scapy (Debian's python3-scapy, under
// /usr/bin/python3) as the peer: scapy encrypts, we decrypt, and the other
// way round, and the packets that come out must equal the ones that went
// in, byte for byte, with their timestamps.

const scapyPython = "/usr/bin/python3"

// requireScapy skips the test without scapy, or fails it when CI=true.
func requireScapy(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(scapyPython); err != nil {
		testenv.Unavailable(t, "needs "+scapyPython+" with scapy: "+err.Error())
	}
	out, err := exec.Command(scapyPython, "-c", "import scapy.layers.ipsec, cryptography").CombinedOutput()
	if err != nil {
		testenv.Unavailable(t, fmt.Sprintf("needs python3-scapy with cryptography under %s: %v\n%s", scapyPython, err, out))
	}
}

// runScapy runs testdata/scapy_peer.py on the ops in one process and
// returns the per-op results.
func runScapy(t *testing.T, dir string, ops []map[string]any) []map[string]any {
	t.Helper()
	job, err := json.Marshal(map[string]any{"ops": ops})
	if err != nil {
		t.Fatal(err)
	}
	jobPath := filepath.Join(dir, fmt.Sprintf("job-%d.json", time.Now().UnixNano()))
	if err := os.WriteFile(jobPath, job, 0o600); err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs(filepath.Join("testdata", "scapy_peer.py"))
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(scapyPython, script, jobPath)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("scapy_peer.py: %v\nstderr:\n%s", err, stderr.String())
	}
	var res struct {
		Results []map[string]any `json:"results"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || len(res.Results) != len(ops) {
		t.Fatalf("scapy_peer.py output: %v\n%s", err, stdout.String())
	}
	return res.Results
}

// interopCase is one SA configuration tested in both directions.
type interopCase struct {
	name      string
	transform string // ours
	crypt     string // scapy's crypt_algo
	auth      string // scapy's auth_algo, "" for AEAD
	icv       int    // AEAD ICV length for scapy
	mode      esp.Mode
	local     string // our address; the peer's is remote
	remote    string
	natt      bool
	esn       bool
	link      string // raw | ether
	families  []int  // inner packet families
}

var interopCases = []interopCase{
	{name: "gcm-tunnel4-esn", transform: "aes256gcm16", crypt: "AES-GCM", icv: 16, mode: esp.Tunnel,
		local: "192.0.2.1", remote: "198.51.100.2", esn: true, link: "raw", families: []int{4, 6}},
	{name: "cbc-tunnel6-natt", transform: "aes128-sha256", crypt: "AES-CBC", auth: "SHA2-256-128", mode: esp.Tunnel,
		local: "2001:db8::1", remote: "2001:db8:1::2", natt: true, link: "ether", families: []int{4, 6}},
	{name: "cbc-transport4-natt", transform: "aes256-sha256", crypt: "AES-CBC", auth: "SHA2-256-128", mode: esp.Transport,
		local: "192.0.2.1", remote: "198.51.100.7", natt: true, link: "ether", families: []int{4}},
	{name: "gcm-transport6", transform: "aes128gcm16", crypt: "AES-GCM", icv: 16, mode: esp.Transport,
		local: "2001:db8::1", remote: "2001:db8::7", link: "raw", families: []int{6}},
	{name: "chacha-tunnel4-natt", transform: "chacha20poly1305", crypt: "CHACHA20-POLY1305", icv: 16, mode: esp.Tunnel,
		local: "192.0.2.1", remote: "203.0.113.9", natt: true, link: "ether", families: []int{4, 6}},
	{name: "ctr-transport4", transform: "aes128ctr-sha1", crypt: "AES-CTR", auth: "HMAC-SHA1-96", mode: esp.Transport,
		local: "192.0.2.1", remote: "198.51.100.8", link: "raw", families: []int{4}},
}

// keys holds the random key material of one case and direction.
type keys struct{ key, authKey string }

func newKeys(t *testing.T, transform string) keys {
	tr := esp.MustParseTransform(transform)
	k := keys{key: randHex(t, tr.KeyLen())}
	if tr.AuthKeyLen() > 0 {
		k.authKey = randHex(t, tr.AuthKeyLen())
	}
	return k
}

// saYAML is one SA of the test configuration.
func saYAML(c interopCase, dir string, spi uint32, k keys) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  - name: %s-%s\n    direction: %s\n    spi: 0x%x\n    mode: %s\n    local: %s\n    remote: %s\n    transform: %s\n    key: %s\n",
		c.name, dir, dir, spi, c.mode, c.local, c.remote, c.transform, k.key)
	if k.authKey != "" {
		fmt.Fprintf(&b, "    auth_key: %s\n", k.authKey)
	}
	if c.natt {
		b.WriteString("    encap: udp\n")
	}
	if c.esn {
		b.WriteString("    esn: true\n")
	}
	if dir == "in" {
		b.WriteString("    replay_window: 64\n")
	}
	return b.String()
}

// scapySA describes the same SA for scapy_peer.py; src and dst are the
// outer addresses of the packets it builds.
func scapySA(c interopCase, spi uint32, k keys, src, dst string) map[string]any {
	m := map[string]any{
		"spi": spi, "crypt": c.crypt, "key": k.key, "mode": c.mode.String(),
		"src": src, "dst": dst, "esn": c.esn,
	}
	if c.auth != "" {
		m["auth"], m["auth_key"] = c.auth, k.authKey
	}
	if c.icv != 0 {
		m["icv"] = c.icv
	}
	if c.natt {
		m["natt"] = map[string]any{"sport": 4500, "dport": 4500}
	}
	return m
}

// plainOp makes scapy write plaintext packets for case c, from src to
// dst in transport mode (the SA's endpoints).
func plainOp(c interopCase, out, src, dst string, seed int) map[string]any {
	op := map[string]any{
		"op": "plain", "out": out, "link": c.link, "families": c.families, "seed": seed,
		"src4": "10.1.0.1", "dst4": "10.2.0.1", "src6": "fd00:1::1", "dst6": "fd00:2::1",
	}
	if c.mode == esp.Transport {
		if strings.Contains(src, ":") {
			op["src6"], op["dst6"] = src, dst
		} else {
			op["src4"], op["dst4"] = src, dst
		}
	}
	return op
}

type frame struct {
	data []byte
	ts   time.Time
}

func readFrames(t *testing.T, path string) ([]frame, *pcapIn) {
	t.Helper()
	in, err := openPcap(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var out []frame
	for {
		data, ci, err := in.next()
		if isEOF(err) {
			return out, in
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, frame{append([]byte(nil), data...), ci.Timestamp})
	}
}

// sameFrames asserts that two captures hold the same frames with the same
// timestamps.
func sameFrames(t *testing.T, what, wantPath, gotPath string) {
	t.Helper()
	want, _ := readFrames(t, wantPath)
	got, _ := readFrames(t, gotPath)
	if len(got) != len(want) {
		t.Errorf("%s: %d packets, want %d", what, len(got), len(want))
	}
	for i := 0; i < len(got) && i < len(want); i++ {
		if !bytes.Equal(got[i].data, want[i].data) {
			t.Errorf("%s: packet %d differs:\n got %x\nwant %x", what, i, got[i].data, want[i].data)
		}
		if !got[i].ts.Equal(want[i].ts) {
			t.Errorf("%s: packet %d timestamp %v, want %v", what, i, got[i].ts, want[i].ts)
		}
	}
}

// saJSON is the part of the --json report the tests read.
type saJSON struct {
	Name        string            `json:"name"`
	SPI         uint32            `json:"spi"`
	EncapsPkts  uint64            `json:"encaps_pkts"`
	DecapsPkts  uint64            `json:"decaps_pkts"`
	VerifyPkts  uint64            `json:"verify_pkts"`
	DecapsBytes uint64            `json:"decaps_bytes"`
	Drops       map[string]uint64 `json:"drops"`
}

type reportJSON struct {
	SAs      []saJSON          `json:"sas"`
	Unowned  map[string]uint64 `json:"unowned_drops"`
	Counters []struct {
		Name  string `json:"name"`
		Value uint64 `json:"value"`
	} `json:"counters"`
}

func (r *reportJSON) counter(name string) uint64 {
	for _, c := range r.Counters {
		if c.Name == name {
			return c.Value
		}
	}
	return ^uint64(0)
}

func (r *reportJSON) sa(name string) *saJSON {
	for i := range r.SAs {
		if r.SAs[i].Name == name {
			return &r.SAs[i]
		}
	}
	return nil
}

func runJSON(t *testing.T, args ...string) *reportJSON {
	t.Helper()
	code, out, stderr := runCLI(t, append(args, "--json")...)
	if code != exitOK {
		t.Fatalf("espxdp %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
	var r reportJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bad JSON: %v\n%s", err, out)
	}
	return &r
}

// nonZero returns the non-zero counters of m.
func nonZero(m map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

func sumDrops(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// TestScapyInterop: scapy encrypts, we decrypt; we encrypt, scapy
// decrypts; for every case the plaintext comes back unchanged.
func TestScapyInterop(t *testing.T) {
	requireScapy(t)
	dir := t.TempDir()
	var yaml strings.Builder
	yaml.WriteString("sas:\n")
	var ops1 []map[string]any
	type paths struct{ plainIn, espIn, plainOut string }
	ps := make([]paths, len(interopCases))
	outSA := make([]map[string]any, len(interopCases))
	for i, c := range interopCases {
		spiIn, spiOut := uint32(0x1000+i), uint32(0x2000+i)
		kin, kout := newKeys(t, c.transform), newKeys(t, c.transform)
		yaml.WriteString(saYAML(c, "in", spiIn, kin))
		yaml.WriteString(saYAML(c, "out", spiOut, kout))
		p := paths{
			plainIn:  filepath.Join(dir, c.name+"-plain-in.pcap"),
			espIn:    filepath.Join(dir, c.name+"-esp-in.pcap"),
			plainOut: filepath.Join(dir, c.name+"-plain-out.pcap"),
		}
		ps[i] = p
		// Towards us: from remote to local. From us: local to remote.
		ops1 = append(ops1,
			plainOp(c, p.plainIn, c.remote, c.local, i+1),
			map[string]any{"op": "encrypt", "sa": scapySA(c, spiIn, kin, c.remote, c.local), "in": p.plainIn, "out": p.espIn, "link": c.link},
			plainOp(c, p.plainOut, c.local, c.remote, i+100))
		outSA[i] = scapySA(c, spiOut, kout, c.local, c.remote)
	}
	cfg := writeFile(t, dir, "interop.yaml", yaml.String())
	runScapy(t, dir, ops1)

	var ops2 []map[string]any
	for i, c := range interopCases {
		p := ps[i]
		t.Run("decrypt/"+c.name, func(t *testing.T) {
			dec := filepath.Join(dir, c.name+"-dec.pcap")
			r := runJSON(t, "pcap", "decrypt", "--config", cfg, "--in", p.espIn, "--out", dec)
			sameFrames(t, "our decryption of scapy's ESP", p.plainIn, dec)
			want, _ := readFrames(t, p.plainIn)
			s := r.sa(c.name + "-in")
			if s == nil {
				t.Fatalf("no counters for %s-in in %+v", c.name, r.SAs)
			}
			if s.DecapsPkts != uint64(len(want)) || s.VerifyPkts != uint64(len(want)) || sumDrops(s.Drops) != 0 || sumDrops(r.Unowned) != 0 {
				t.Errorf("counters: %+v, unowned %v; want %d decaps, no drops", *s, r.Unowned, len(want))
			}
			if r.counter("packets read") != uint64(len(want)) || r.counter("packets written") != uint64(len(want)) {
				t.Errorf("read/written counters: %+v", r.Counters)
			}
		})
		t.Run("encrypt/"+c.name, func(t *testing.T) {
			enc := filepath.Join(dir, c.name+"-esp-out.pcap")
			r := runJSON(t, "pcap", "encrypt", "--config", cfg, "--sa", c.name+"-out", "--in", p.plainOut, "--out", enc)
			plain, _ := readFrames(t, p.plainOut)
			got, in := readFrames(t, enc)
			if s := r.sa(c.name + "-out"); s == nil || s.EncapsPkts != uint64(len(plain)) || sumDrops(s.Drops) != 0 {
				t.Errorf("counters: %+v", s)
			}
			if len(got) != len(plain) {
				t.Fatalf("%d ESP packets for %d plaintext packets", len(got), len(plain))
			}
			// Each output frame must be ESP from local to remote with our SPI.
			for j, f := range got {
				hl, err := linkHeaderLen(in.lt, f.data)
				if err != nil {
					t.Fatalf("packet %d: %v", j, err)
				}
				var po esp.Parsed
				if err := esp.ParseOuter(f.data[hl:], 0, &po); err != nil {
					t.Fatalf("packet %d is not ESP: %v", j, err)
				}
				spi, seq, _ := esp.ParseHeader(f.data[hl+po.ESPOffset:])
				if spi != uint32(0x2000+i) || seq != uint32(j+1) || po.UDP != c.natt ||
					po.Src.String() != c.local || po.Dst.String() != c.remote {
					t.Errorf("packet %d: spi %#x seq %d udp %v %v -> %v", j, spi, seq, po.UDP, po.Src, po.Dst)
				}
				if !f.ts.Equal(plain[j].ts) {
					t.Errorf("packet %d: timestamp %v, want %v", j, f.ts, plain[j].ts)
				}
				if hl > 0 && !bytes.Equal(f.data[:12], plain[j].data[:12]) {
					t.Errorf("packet %d: MAC addresses % x, want % x", j, f.data[:12], plain[j].data[:12])
				}
			}
		})
		ops2 = append(ops2, map[string]any{"op": "decrypt", "sa": outSA[i], "in": filepath.Join(dir, c.name+"-esp-out.pcap"),
			"out": filepath.Join(dir, c.name+"-back.pcap"), "link": c.link})
	}
	if t.Failed() {
		return
	}
	res := runScapy(t, dir, ops2)
	for i, c := range interopCases {
		t.Run("scapy-decrypts/"+c.name, func(t *testing.T) {
			if errs, _ := res[i]["errors"].([]any); len(errs) > 0 {
				t.Errorf("scapy could not decrypt our packets: %v", errs)
			}
			sameFrames(t, "scapy's decryption of our ESP", ps[i].plainOut, filepath.Join(dir, c.name+"-back.pcap"))
		})
	}
}

// TestScapyTamperReplay: a tampered and a replayed packet (and packets
// for an SPI we do not know) are dropped, counted by reason and never
// written; the good packets all are.
func TestScapyTamperReplay(t *testing.T) {
	requireScapy(t)
	dir := t.TempDir()
	c := interopCases[0] // AES-GCM tunnel, ESN
	kin, kother := newKeys(t, c.transform), newKeys(t, c.transform)
	const spi, unknownSPI = 0x3000, 0x3001
	cfg := writeFile(t, dir, "tr.yaml", "sas:\n"+saYAML(c, "in", spi, kin))
	plain := filepath.Join(dir, "plain.pcap")
	espPath := filepath.Join(dir, "esp.pcap")
	other := scapySA(c, unknownSPI, kother, c.remote, c.local)
	res := runScapy(t, dir, []map[string]any{
		plainOp(c, plain, c.remote, c.local, 7),
		{"op": "encrypt", "sa": scapySA(c, spi, kin, c.remote, c.local), "in": plain, "out": espPath, "link": c.link,
			"replay": []int{2}, "tamper": []int{5}},
		{"op": "encrypt", "sa": other, "in": plain, "out": espPath, "link": c.link, "append": true},
	})
	want, _ := readFrames(t, plain)
	n := len(want)
	if got := int(res[1]["n"].(float64)); got != n+2 {
		t.Fatalf("scapy wrote %d packets, want %d", got, n+2)
	}
	dec := filepath.Join(dir, "dec.pcap")
	r := runJSON(t, "pcap", "decrypt", "--config", cfg, "--in", espPath, "--out", dec)
	// Exactly the originals: neither the replay, the tampered packet nor
	// the unknown-SPI packets were written.
	sameFrames(t, "decryption with bad packets", plain, dec)
	s := r.sa(c.name + "-in")
	if s == nil {
		t.Fatalf("no counters for the SA: %+v", r.SAs)
	}
	if s.DecapsPkts != uint64(n) {
		t.Errorf("decaps %d, want %d", s.DecapsPkts, n)
	}
	wantDrops := map[string]uint64{sa.DropAuth.String(): 1, sa.DropReplay.String(): 1}
	if got := nonZero(s.Drops); len(got) != len(wantDrops) || got[sa.DropAuth.String()] != 1 || got[sa.DropReplay.String()] != 1 {
		t.Errorf("SA drops %v, want %v", s.Drops, wantDrops)
	}
	if r.Unowned[sa.DropNoSA.String()] != uint64(n) || sumDrops(r.Unowned) != uint64(n) {
		t.Errorf("drops without an SA %v, want %s %d", r.Unowned, sa.DropNoSA, n)
	}
	if r.counter("packets read") != uint64(2*n+2) || r.counter("packets written") != uint64(n) {
		t.Errorf("read/written: %+v", r.Counters)
	}

	// The text report says the same.
	code, text, stderr := runCLI(t, "pcap", "decrypt", "--config", cfg, "--in", espPath, "--out", dec)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, w := range []string{
		fmt.Sprintf("#pkts decaps: %d", n),
		fmt.Sprintf("#recv errors %d", 2),
		fmt.Sprintf("%s 1", sa.DropAuth), fmt.Sprintf("%s 1", sa.DropReplay),
		fmt.Sprintf("drops without an SA: %s %d", sa.DropNoSA, n),
		fmt.Sprintf("packets written: %d", n),
	} {
		if !strings.Contains(text, w) {
			t.Errorf("text report lacks %q:\n%s", w, text)
		}
	}
}
