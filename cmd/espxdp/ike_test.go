package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/espxdp/espxdp/internal/gateway"
)

// TestIKEUsage: ike initiate and terminate want exactly one peer.
func TestIKEUsage(t *testing.T) {
	for _, args := range [][]string{{"ike", "initiate"}, {"ike", "terminate", "a", "b"}} {
		code, _, errs := runCLI(t, args...)
		if code != exitUsage || !strings.Contains(errs, "usage: espxdp ike ") {
			t.Errorf("%v: exit %d\n%s", args, code, errs)
		}
	}
}

// TestWriteIKE: show ike's text names the peer, its IKE SA (SPIs,
// proposal, NAT-T) and the child (SPIs, selectors, the one sending).
func TestWriteIKE(t *testing.T) {
	var b bytes.Buffer
	writeIKE(&b, []gateway.IKEPeerInfo{{Peer: "siteB", Local: "192.0.2.1", Remote: "198.51.100.1", Up: true, StartAction: "start",
		IKESAs: []gateway.IKESAInfo{{SPIs: "0011223344556677_i 8899aabbccddeeff_r", State: "established", Initiator: true, NATT: true,
			Proposal: "aes128gcm16-prfsha256-x25519", Established: "5s",
			Children: []gateway.IKEChildInfo{{Child: 3, SPIIn: "0xc0000001", SPIOut: "0x00001234", Transform: "aes128gcm16",
				LocalTS: []string{"10.1.0.0/24"}, RemoteTS: []string{"10.2.0.0/24"}, Primary: true, Age: "5s"}}}}}})
	out := b.String()
	for _, want := range []string{"peer siteB: 192.0.2.1 ⇄ 198.51.100.1, up", "0011223344556677_i 8899aabbccddeeff_r established (initiator, NAT-T)",
		"proposal aes128gcm16-prfsha256-x25519", "child 3: SPIs in 0xc0000001 out 0x00001234, aes128gcm16, 10.1.0.0/24 === 10.2.0.0/24", "sending"} {
		if !strings.Contains(out, want) {
			t.Errorf("show ike lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	writeIKE(&b, nil)
	if !strings.Contains(b.String(), "no IKE peers") {
		t.Errorf("no peers: %q", b.String())
	}
}

// TestWithOwners: show sa --json keeps the report's fields and adds the
// owners; without owners it is unchanged.
func TestWithOwners(t *testing.T) {
	rep := []byte(`{"title":"x","sas":[]}` + "\n")
	same, err := withOwners(rep, nil)
	if err != nil || !bytes.Equal(same, rep) {
		t.Fatalf("without owners: %s, %v", same, err)
	}
	out, err := withOwners(rep, []gateway.SAOwner{{SA: "b-in-c0000001", Peer: "b", IKESA: "01_i 02_r", Child: 4}})
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Title  string            `json:"title"`
		Owners []gateway.SAOwner `json:"owners"`
	}
	if err := json.Unmarshal(out, &m); err != nil || m.Title != "x" || len(m.Owners) != 1 || m.Owners[0].Peer != "b" {
		t.Errorf("with owners: %s, %v", out, err)
	}
}
