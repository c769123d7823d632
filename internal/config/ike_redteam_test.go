package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/espxdp/espxdp/sa"
)

// TestRedTeamTwoPeersOneTunnel breaks peer isolation (RFC 4301 §4.4.3,
// the PAD: a peer gets only the traffic of the selectors configured for
// it). The configuration binds every peer without tunnel: to the first
// tunnel, and the gateway makes each peer's primary child an outbound
// SA of that tunnel (rebindOut). A tunnel with several outbound SAs is
// per-CPU spreading (sa.Tunnel.SetOutbound: worker i sends on
// sas[i%n]), not a choice by destination: with peers X and Y on one
// tunnel, packets for Y's networks are encrypted to X (and with one
// worker all of Y's traffic goes to X). So are packets for a peer
// whose tunnel also has static outbound SAs. Fix: Parse refuses two
// peers on one tunnel, and a peer on a tunnel with static outbound SAs.
func TestRedTeamTwoPeersOneTunnel(t *testing.T) {
	f := pskFileT(t, "a long enough passphrase\n", 0o600)
	peer := func(name, remote, rts, tunnel string) string {
		s := fmt.Sprintf("  - name: %s\n    local: 192.0.2.1\n    remote: %q\n    psk_file: %s\n    local_ts: [10.1.0.0/24]\n    remote_ts: [%s]\n", name, remote, f, rts)
		if tunnel != "" {
			s += "    tunnel: " + tunnel + "\n"
		}
		return s
	}
	gw := func(tunnels, sas string) string {
		return `interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:0a:fe", local: 192.0.2.1}
  plain:  {name: lan0, next_hop: "02:00:00:00:01:02", address: 10.1.0.1}
protected: [10.2.0.0/24, 10.3.0.0/24]
tunnels:
` + tunnels + sas + "peers:\n"
	}
	two := "  - {name: to-x}\n  - {name: to-y}\n"
	static := `sas:
  - {name: a-to-s, direction: out, spi: 0x1001, local: 192.0.2.1, remote: 198.51.100.9, transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f10111213}
`
	for _, c := range []struct {
		name, yaml string
		ok         bool
	}{
		{"default tunnel for both", gw(two, "") + peer("x", "%any", "10.2.0.0/24", "") + peer("y", "198.51.100.2", "10.3.0.0/24", ""), false},
		{"one tunnel named twice", gw(two, "") + peer("x", "198.51.100.1", "10.2.0.0/24", "to-y") + peer("y", "198.51.100.2", "10.3.0.0/24", "to-y"), false},
		{"peer beside a static outbound SA", gw("  - {name: to-x, out: [a-to-s]}\n", static) + peer("x", "198.51.100.1", "10.2.0.0/24", ""), false},
		{"one tunnel each", gw(two, "") + peer("x", "198.51.100.1", "10.2.0.0/24", "to-x") + peer("y", "198.51.100.2", "10.3.0.0/24", "to-y"), true},
	} {
		cfg, err := Parse("gw.yaml", []byte(c.yaml))
		if err == nil {
			cfg.Wipe()
		}
		switch {
		case c.ok && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case !c.ok && err == nil:
			t.Errorf("%s: accepted: the tunnel would spread one peer's traffic over another peer's SA", c.name)
		case !c.ok && !strings.Contains(err.Error(), "tunnel"):
			t.Errorf("%s: error does not name the tunnel: %v", c.name, err)
		}
	}
}

// TestRedTeamPSKFileSwapAndOwner breaks the PSK file check (a file
// others may write lets them choose the gateway's PSK and impersonate
// any peer). pskFile checked the path with os.Stat and then read the
// path again with os.ReadFile: whoever may replace a symlink on the
// way (a config-management symlink, a directory writable by a deploy
// user) swaps it between the check and the read, and the gateway uses a
// world-writable file (here 0666) as its PSK. And a 0600 file owned by
// another user (here uid 65534) passed: its owner may rewrite it. Fix:
// the check is made on the open file (File.Stat of the descriptor that
// is read), and the file must belong to root or the gateway's user.
func TestRedTeamPSKFileSwapAndOwner(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.psk")
	bad := filepath.Join(dir, "bad.psk")
	link := filepath.Join(dir, "peer.psk")
	for _, f := range []struct {
		path, content string
		mode          os.FileMode
	}{{good, "the operator's own key", 0o600}, {bad, "the attacker's chosen key", 0o666}} {
		if err := os.WriteFile(f.path, []byte(f.content), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f.path, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	yaml := peersYAML(fmt.Sprintf("  - name: b\n    local: 192.0.2.1\n    remote: 192.0.2.2\n    psk_file: %s\n    local_ts: [10.1.0.0/24]\n    remote_ts: [10.2.0.0/24]\n", link))
	// The swap, between the check and the read.
	pskChecked = func(string) {
		tmp := link + ".new"
		if err := os.Symlink(bad, tmp); err != nil {
			t.Error(err)
			return
		}
		if err := os.Rename(tmp, link); err != nil {
			t.Error(err)
		}
	}
	cfg, err := Parse("gw.yaml", []byte(yaml))
	pskChecked = nil
	if err == nil {
		psk := string(cfg.Peers[0].PSK)
		cfg.Wipe()
		if psk == "the attacker's chosen key" {
			t.Error("symlink swapped after the permission check: the gateway took the PSK of a mode 0666 file")
		}
	}

	// A 0600 file of another user.
	if os.Geteuid() != 0 {
		t.Log("not root: the owner case needs chown")
		return
	}
	other := filepath.Join(dir, "other.psk")
	if err := os.WriteFile(other, []byte("a key that uid 65534 may rewrite"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(other, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	yaml = peersYAML(fmt.Sprintf("  - name: b\n    local: 192.0.2.1\n    remote: 192.0.2.2\n    psk_file: %s\n    local_ts: [10.1.0.0/24]\n    remote_ts: [10.2.0.0/24]\n", other))
	cfg, err = Parse("gw.yaml", []byte(yaml))
	if err == nil {
		cfg.Wipe()
		t.Error("a PSK file owned by uid 65534 accepted: its owner chooses the gateway's PSK")
	} else if strings.Contains(err.Error(), "65534 may rewrite") {
		t.Errorf("error quotes the PSK: %v", err)
	}
}

// redTeamTwoPeers is a gateway configuration with the tunnels to-x and
// to-y, up to the peers list (the tests append two peers).
const redTeamTwoPeers = `interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:0a:fe", local: 192.0.2.1}
  plain:  {name: lan0, next_hop: "02:00:00:00:01:02", address: 10.1.0.1}
protected: [10.2.0.0/24, 10.3.0.0/24]
tunnels:
  - {name: to-x}
  - {name: to-y}
peers:
`

// TestRedTeamPeersOverlappingRemoteTS breaks the PAD rule (RFC 4301
// §4.4.3: a peer may only get child SAs for the selectors configured
// for it, so that it cannot send as another peer's hosts). Each peer's
// children are narrowed to its own remote_ts and their inbound SAs
// deliver inner sources in the negotiated selectors; nothing kept two
// peers' remote_ts apart. A %any peer with remote_ts 10.0.0.0/8 (any
// identity proving its PSK: remote_id unset) negotiates 10.3.0.0/24,
// the network of peer y, and its inbound SA then delivers packets with
// y's sources to the LAN. Fix: Parse refuses peers whose remote_ts
// overlap.
func TestRedTeamPeersOverlappingRemoteTS(t *testing.T) {
	f := pskFileT(t, "a long enough passphrase\n", 0o600)
	yaml := func(xts, yts string) string {
		return redTeamTwoPeers + fmt.Sprintf("  - {name: x, local: 192.0.2.1, remote: \"%%any\", psk_file: %s, local_ts: [10.1.0.0/24], remote_ts: [%s], tunnel: to-x}\n", f, xts) +
			fmt.Sprintf("  - {name: y, local: 192.0.2.1, remote: 198.51.100.2, psk_file: %s, local_ts: [10.1.0.0/24], remote_ts: [%s], tunnel: to-y}\n", f, yts)
	}
	for _, c := range []struct {
		x, y string
		ok   bool
	}{
		{"10.0.0.0/8", "10.3.0.0/24", false},
		{"10.2.0.0/24, 10.3.0.128/25", "10.3.0.0/24", false},
		{"0.0.0.0/0", "10.3.0.0/24", false},
		{"10.2.0.0/24", "10.3.0.0/24", true},
		{"10.2.0.0/24", "fd00::/64, 10.3.0.0/24", true},
	} {
		cfg, err := Parse("gw.yaml", []byte(yaml(c.x, c.y)))
		if err == nil {
			cfg.Wipe()
		}
		switch {
		case c.ok && err != nil:
			t.Errorf("x %s, y %s: refused: %v", c.x, c.y, err)
		case !c.ok && err == nil:
			t.Errorf("x remote_ts %s, y remote_ts %s accepted: x's children may carry (and deliver) y's sources", c.x, c.y)
		}
	}
}

// TestRedTeamTwoAnyPeersOneAddress: the gateway dispatches a datagram
// from an address that is no peer's remote to the first %any peer of
// the local address (gateway.peerFor); a second %any peer on the same
// local address never gets a datagram, whatever its remote_id: its
// clients are authenticated against the first peer's PSK and identity
// and refused (or, without remote_id there, get the first peer's
// selectors). Fix: Parse refuses a second %any peer on one local
// address.
func TestRedTeamTwoAnyPeersOneAddress(t *testing.T) {
	f := pskFileT(t, "a long enough passphrase\n", 0o600)
	y := redTeamTwoPeers + fmt.Sprintf("  - {name: x, local: 192.0.2.1, remote: \"%%any\", remote_id: x.example, psk_file: %s, local_ts: [10.1.0.0/24], remote_ts: [10.2.0.0/24], tunnel: to-x}\n", f) +
		fmt.Sprintf("  - {name: y, local: 192.0.2.1, remote: \"%%any\", remote_id: y.example, psk_file: %s, local_ts: [10.1.0.0/24], remote_ts: [10.3.0.0/24], tunnel: to-y}\n", f)
	cfg, err := Parse("gw.yaml", []byte(y))
	if err == nil {
		cfg.Wipe()
		t.Fatal("two %any peers on 192.0.2.1 accepted: the second never gets a datagram")
	}
}

// TestRedTeamPeerRemoteTSCoversStaticPolicy: the remote_ts of a peer
// may not cover the networks that protect policies send into another
// tunnel (a static peer's). A %any peer with remote_ts 10.0.0.0/8
// negotiates 10.3.0.0/24, the network the policy c sends to tunnel to-c,
// and its inbound SA then delivers packets with the static peer's
// sources (RFC 4301 §4.4.3, §5.2). Fix: Parse refuses the overlap.
func TestRedTeamPeerRemoteTSCoversStaticPolicy(t *testing.T) {
	f := pskFileT(t, "a long enough passphrase\n", 0o600)
	y := func(rts string) string { return staticBesidePeerYAML(f, rts, "", "") }
	if cfg, err := Parse("gw.yaml", []byte(y("10.2.0.0/24"))); err != nil {
		t.Fatalf("a peer apart from the static policy refused: %v", err)
	} else {
		cfg.Wipe()
	}
	for _, rts := range []string{"10.0.0.0/8", "10.3.0.7/32"} {
		cfg, err := Parse("gw.yaml", []byte(y(rts)))
		if err == nil {
			cfg.Wipe()
			t.Errorf("peer remote_ts %s accepted over policy c's 10.3.0.0/24 (tunnel to-c): the peer may source the static peer's hosts", rts)
		}
	}
}

// TestPeerRemoteTSCoversStaticSA: a static SA's own selectors (remote_ts
// or selectors:, either direction) may not overlap a peer's remote_ts:
// an inbound one would deliver packets with the peer's sources from the
// static peer, an outbound one claims the peer's networks. Parse refuses
// it naming the peer; selectors apart from the peer's pass.
func TestPeerRemoteTSCoversStaticSA(t *testing.T) {
	f := pskFileT(t, "a long enough passphrase\n", 0o600)
	y := func(inSel, outSel string) string { return staticBesidePeerYAML(f, "10.2.0.0/24", inSel, outSel) }
	for _, ok := range [][2]string{{"", ""}, {", remote_ts: [10.3.0.0/24]", ", remote_ts: [10.3.0.0/24]"}} {
		cfg, err := Parse("gw.yaml", []byte(y(ok[0], ok[1])))
		if err != nil {
			t.Fatalf("static SAs apart from the peer refused (%q, %q): %v", ok[0], ok[1], err)
		}
		cfg.Wipe()
	}
	for _, bad := range []struct{ in, out, where string }{
		{", remote_ts: [10.2.0.0/16]", "", "sas[1].selectors"},
		{", remote_ts: [10.2.0.9/32], local_ts: [10.1.0.0/24]", "", "sas[1].selectors"},
		{", selectors: any", "", "sas[1].selectors"},
		{"", ", remote_ts: [10.2.0.0/25]", "sas[0].selectors"},
	} {
		cfg, err := Parse("gw.yaml", []byte(y(bad.in, bad.out)))
		if err == nil {
			cfg.Wipe()
			t.Errorf("static SA selectors %q/%q over peer x's remote_ts 10.2.0.0/24 accepted", bad.in, bad.out)
			continue
		}
		if !strings.Contains(err.Error(), bad.where) || !strings.Contains(err.Error(), "IKE peer x") {
			t.Errorf("static SA selectors %q/%q: error %v, want one at %s naming peer x", bad.in, bad.out, err, bad.where)
		}
	}
}

// TestDerivedSelectorsLeaveOutPeers: the inbound SAs of the default
// (static) tunnel derived the protected prefixes as their sources,
// including a peer's remote_ts that is protected too: the static peer
// could send packets with the IKE peer's sources and have them
// delivered. Now derived selectors leave out the remote_ts of the peers
// of other tunnels; the peer's own tunnel keeps them.
func TestDerivedSelectorsLeaveOutPeers(t *testing.T) {
	f := pskFileT(t, "a long enough passphrase\n", 0o600)
	cfg, err := Parse("gw.yaml", []byte(`interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:0a:fe", local: 192.0.2.1}
  plain:  {name: lan0, next_hop: "02:00:00:00:01:02", address: 10.1.0.1}
protected: [10.2.0.0/16, 10.3.0.0/24]
tunnels:
  - {name: to-c, out: [a-to-c], in: [c-to-a]}
  - {name: to-x}
sas:
  - {name: a-to-c, direction: out, spi: 0x1002, local: 192.0.2.1, remote: 198.51.100.2, transform: aes128gcm16, key: 0x202122232425262728292a2b2c2d2e2f30313233}
  - {name: c-to-a, direction: in, spi: 0x2002, local: 192.0.2.1, remote: 198.51.100.2, transform: aes128gcm16, key: 0x303132333435363738393a3b3c3d3e3f40414243}
peers:
`+fmt.Sprintf("  - {name: x, local: 192.0.2.1, remote: \"%%any\", psk_file: %s, local_ts: [10.1.0.0/24], remote_ts: [10.2.7.0/24], tunnel: to-x}\n", f)))
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Wipe()
	peer := netip.MustParsePrefix("10.2.7.0/24")
	sels := cfg.Gateway.SelectorsOf(cfg.SAs[1], "to-c")
	if len(sels) == 0 {
		t.Fatal("the static tunnel's inbound SA derived no selectors")
	}
	covered := map[string]bool{}
	for _, s := range sels {
		if !s.Src.IsValid() || s.Src.Overlaps(peer) {
			t.Errorf("static inbound SA derived source %v, which overlaps peer x's remote_ts %v", s.Src, peer)
		}
		for _, a := range []string{"10.2.0.1", "10.2.6.255", "10.2.8.0", "10.2.255.254", "10.3.0.9"} {
			if s.Src.Contains(netip.MustParseAddr(a)) {
				covered[a] = true
			}
		}
	}
	if len(covered) != 5 {
		t.Errorf("derived sources %v lost protected addresses outside the peer's (covered %v)", sels, covered)
	}
	if o := PeerTSOverlap(cfg.Peers, "to-c", In, sels); o != nil {
		t.Errorf("PeerTSOverlap: %v", o)
	}
	// The peer's own tunnel: PeerTSOverlap skips its peer.
	if o := PeerTSOverlap(cfg.Peers, "to-x", In, []sa.Selector{{Src: peer}}); o != nil {
		t.Errorf("the peer's own tunnel reported as overlapping: %v", o)
	}
}

// staticBesidePeerYAML is a gateway with a static tunnel to-c (policy c to
// 10.3.0.0/24, SAs a-to-c and c-to-a with extra fields outSel and inSel)
// and a %any peer x (PSK file f, remote_ts rts) in tunnel to-x.
func staticBesidePeerYAML(f, rts, inSel, outSel string) string {
	return `interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:0a:fe", local: 192.0.2.1}
  plain:  {name: lan0, next_hop: "02:00:00:00:01:02", address: 10.1.0.1}
protected: [10.2.0.0/24, 10.3.0.0/24]
tunnels:
  - {name: to-c, out: [a-to-c], in: [c-to-a]}
  - {name: to-x}
policies:
  - {name: c, src: 10.1.0.0/24, dst: 10.3.0.0/24, action: protect, tunnel: to-c}
sas:
  - {name: a-to-c, direction: out, spi: 0x1002, local: 192.0.2.1, remote: 198.51.100.2, transform: aes128gcm16, key: 0x202122232425262728292a2b2c2d2e2f30313233` + outSel + `}
  - {name: c-to-a, direction: in, spi: 0x2002, local: 192.0.2.1, remote: 198.51.100.2, transform: aes128gcm16, key: 0x303132333435363738393a3b3c3d3e3f40414243` + inSel + `}
peers:
` + fmt.Sprintf("  - {name: x, local: 192.0.2.1, remote: \"%%any\", psk_file: %s, local_ts: [10.1.0.0/24], remote_ts: [%s], tunnel: to-x}\n", f, rts)
}
