package gateway

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// peerTSYAML: a static tunnel to-c (the default, with policy c for
// 10.3.0.0/24) beside IKE peer x (tunnel to-x, remote_ts 10.2.0.0/24).
func peerTSYAML(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "x.psk")
	if err := os.WriteFile(f, []byte("a long enough passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return `interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:0a:fe", local: 192.0.2.1}
  plain:  {name: lan0, next_hop: "02:00:00:00:01:02", address: 10.1.0.1}
protected: [10.2.0.0/24, 10.3.0.0/24]
tunnels:
  - {name: to-c}
  - {name: to-x}
policies:
  - {name: c, src: 10.1.0.0/24, dst: 10.3.0.0/24, action: protect, tunnel: to-c}
peers:
` + fmt.Sprintf("  - {name: x, local: 192.0.2.1, remote: \"%%any\", psk_file: %s, local_ts: [10.1.0.0/24], remote_ts: [10.2.0.0/24], tunnel: to-x}\n", f)
}

// TestControlSAAddOverPeerTS: sa-add and sa-update over the control
// socket refuse a static SA whose selectors overlap IKE peer x's
// remote_ts (its inbound side would deliver x's sources from another
// peer; RFC 4301 §4.4.3), with an error naming the peer, and change
// nothing; SAs apart from x's networks are added.
func TestControlSAAddOverPeerTS(t *testing.T) {
	gw := yamlGateway(t, peerTSYAML(t))
	path := filepath.Join(t.TempDir(), "ctl.sock")
	s, err := gw.listenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	call := func(req Request) (Response, error) { return Call(path, req, 2*time.Second) }

	for _, bad := range []struct{ name, sa, tunnel string }{
		{"inbound remote_ts inside", saLine("c-in", "in", 0x3002, ", remote_ts: [10.2.0.128/25]"), "to-c"},
		{"inbound remote_ts around", saLine("c-in", "in", 0x3002, ", remote_ts: [10.0.0.0/8], local_ts: [10.1.0.0/24]"), "to-c"},
		{"inbound selectors any", saLine("c-in", "in", 0x3002, ", selectors: any"), "to-c"},
		{"inbound selectors list", saLine("c-in", "in", 0x3002, ", selectors: [{src: 10.2.0.7/32, dst: 10.1.0.0/24}]"), ""},
		{"outbound remote_ts", saLine("c-out", "out", 0x3001, ", remote_ts: [10.2.0.0/24]"), "to-c"},
		{"pair, second over", "[" + saLine("c-out", "out", 0x3001, ", remote_ts: [10.3.0.0/24]") + ", " + saLine("c-in", "in", 0x3002, ", remote_ts: [10.2.0.0/24]") + "]", "to-c"},
	} {
		before := installed(gw)
		resp, err := call(Request{Cmd: "sa-add", SA: bad.sa, Tunnel: bad.tunnel})
		if err == nil || resp.OK {
			t.Errorf("%s: sa-add accepted a static SA over peer x's remote_ts", bad.name)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "IKE peer x") || !strings.Contains(msg, "10.2.0.0/24") {
			t.Errorf("%s: error %q does not name peer x and its remote_ts", bad.name, msg)
		}
		if after := installed(gw); !slices.Equal(before, after) {
			t.Errorf("%s: refused sa-add changed the SAs: %v → %v", bad.name, before, after)
		}
	}

	// Apart from x's networks: added; then sa-update may not move them
	// over x's.
	ok := "[" + saLine("c-out", "out", 0x3001, ", remote_ts: [10.3.0.0/24]") + ", " + saLine("c-in", "in", 0x3002, ", remote_ts: [10.3.0.0/24]") + "]"
	if _, err := call(Request{Cmd: "sa-add", SA: ok, Tunnel: "to-c"}); err != nil {
		t.Fatalf("sa-add of SAs apart from peer x: %v", err)
	}
	if got := installed(gw); !slices.Contains(got, "c-in") || !slices.Contains(got, "c-out") {
		t.Fatalf("SAs after sa-add: %v", got)
	}
	_, err = call(Request{Cmd: "sa-update", SA: saLine("c-in", "in", 0x3002, ", remote_ts: [10.2.0.0/23]")})
	if err == nil || !strings.Contains(err.Error(), "IKE peer x") {
		t.Errorf("sa-update moving c-in over peer x's remote_ts: %v, want an error naming peer x", err)
	}
	if sels := gw.SAD().Lookup(0x3002).Config().Selectors; len(sels) != 1 || sels[0].Src.String() != "10.3.0.0/24" {
		t.Errorf("c-in's selectors after the refused update: %v", sels)
	}
	// Derived selectors (none of its own): the default tunnel to-c
	// leaves x's networks out, so an inbound SA there is accepted and
	// does not deliver x's sources.
	if _, err := call(Request{Cmd: "sa-add", SA: saLine("c-in2", "in", 0x3004, ""), Tunnel: "to-c"}); err != nil {
		t.Errorf("sa-add of an inbound SA with derived selectors in to-c: %v", err)
	}
}
