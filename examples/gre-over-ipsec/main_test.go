//go:build linux

package main

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/exampleenv"
	"github.com/espxdp/espxdp/internal/testenv"
)

// TestRun builds the whole topology, and checks that traffic went
// through GRE and transport-mode ESP and nothing else: every GRE packet
// one gateway encapsulated was encrypted, crossed the WAN as ESP (the
// router saw no GRE in clear), was decrypted and decapsulated by the
// other; and nothing was left behind.
func TestRun(t *testing.T) {
	testenv.RequirePrivileged(t)
	for _, c := range []struct {
		transform string
		key       uint32
	}{{"aes256gcm16", 42}, {"aes128-sha256", 0}} {
		t.Run(c.transform, func(t *testing.T) {
			var out bytes.Buffer
			const size = 1 << 20
			res, err := run(context.Background(), &out, Options{Transform: c.transform, Key: c.key, Pings: 4, Size: size, Timeout: 60 * time.Second})
			t.Log("\n" + out.String())
			if err != nil {
				t.Fatal(err)
			}
			// Pings answered, transfer intact, and TCP segments fit the
			// tunnel: MSS = tunnel MTU - 40.
			exampleenv.CheckTraffic(t, res.Traffic, 4, res.InnerMTU, size)
			overhead := 24
			if c.key != 0 {
				overhead = 28
			}
			if res.InnerMTU != res.A.Out.PlaintextMTU-overhead || res.A.Out.PlaintextMTU <= 1400 || res.A.Out.PlaintextMTU >= wanMTU {
				t.Errorf("tunnel MTU %d, SA plaintext MTU %d", res.InnerMTU, res.A.Out.PlaintextMTU)
			}
			a, b := res.A, res.B
			for _, s := range []struct {
				name   string
				mode   string
				encap  bool
				counts uint64
			}{{"gwA out", a.Out.Mode, true, a.Out.EncapsPkts}, {"gwB out", b.Out.Mode, true, b.Out.EncapsPkts},
				{"gwA in", a.In.Mode, false, a.In.DecapsPkts}, {"gwB in", b.In.Mode, false, b.In.DecapsPkts}} {
				if !strings.EqualFold(s.mode, "transport") {
					t.Errorf("%s: mode %q, want transport", s.name, s.mode)
				}
				// Data segments one way, ACKs (fewer, but not much fewer) the other.
				if s.counts < size/uint64(res.InnerMTU)/16 {
					t.Errorf("%s: only %d packets", s.name, s.counts)
				}
			}
			eq := func(what string, x, y uint64) { t.Helper(); exampleenv.CheckEqual(t, what, x, y) }
			eq("gwA GRE encapsulated vs gwA SA encaps", a.GRE.Encapsulated, a.Out.EncapsPkts)
			eq("gwA SA encaps vs gwB SA decaps", a.Out.EncapsPkts, b.In.DecapsPkts)
			eq("gwB SA decaps vs gwB GRE decapsulated", b.In.DecapsPkts, b.GRE.Decapsulated)
			eq("gwA GRE encapsulated vs gwB GRE decapsulated", a.GRE.Encapsulated, b.GRE.Decapsulated)
			eq("gwB GRE encapsulated vs gwB SA encaps", b.GRE.Encapsulated, b.Out.EncapsPkts)
			eq("gwB SA encaps vs gwA SA decaps", b.Out.EncapsPkts, a.In.DecapsPkts)
			eq("gwB GRE encapsulated vs gwA GRE decapsulated", b.GRE.Encapsulated, a.GRE.Decapsulated)
			for _, g := range []GatewayResult{a, b} {
				if g.GRE.Bad != 0 || g.GRE.SendDrops != 0 || g.Out.Drops.Total() != 0 || g.In.Drops.Total() != 0 || g.Engine.SADrops != 0 {
					t.Errorf("drops: GRE %+v, out SA %v, in SA %v, engine %d", g.GRE, g.Out.Drops, g.In.Drops, g.Engine.SADrops)
				}
			}
			// The WAN carried the ESP packets of both directions, and not
			// one GRE packet in clear.
			if res.WAN.Drops != 0 {
				t.Fatalf("capture dropped %d packets", res.WAN.Drops)
			}
			eq("ESP on the wan vs encaps of both gateways", res.WAN.ESP, a.Out.EncapsPkts+b.Out.EncapsPkts)
			if res.WAN.GRE != 0 {
				t.Errorf("%d GRE packets crossed the wan in clear", res.WAN.GRE)
			}
			exampleenv.CheckNamespaces(t, res.Namespaces, 5)
			if len(res.LeftBehind) != 0 {
				t.Errorf("left behind: %v", res.LeftBehind)
			}
		})
	}
}

// TestGRE checks the Go GRE code on its own: a packet survives
// encapsulation and decapsulation, and the decapsulator refuses packets
// from another peer, with another key or of another protocol.
func TestGRE(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
	tx := &greTunnel{local: a, remote: b, keyed: true, key: 7}
	rx := &greTunnel{local: b, remote: a, keyed: true, key: 7}
	inner := []byte{0x45, 0, 0, 24, 0, 1, 0, 0, 64, 17, 0, 0, 10, 1, 0, 2, 10, 2, 0, 2, 0, 9, 0, 9}
	pkt, err := tx.encapsulate(inner)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkt) != len(inner)+greOverhead(true) || pkt[9] != 47 || pkt[6]&0x40 == 0 {
		t.Fatalf("outer packet % x", pkt)
	}
	got, err := rx.decapsulate(pkt)
	if err != nil || !bytes.Equal(got, inner) {
		t.Fatalf("decapsulate: %v, % x", err, got)
	}
	pkt[len(pkt)-1] ^= 1 // the result must not alias the input
	if got[len(got)-1] != inner[len(inner)-1] {
		t.Error("decapsulated packet aliases the frame")
	}
	pkt[len(pkt)-1] ^= 1
	for name, g := range map[string]*greTunnel{
		"other key":  {local: b, remote: a, keyed: true, key: 8},
		"no key":     {local: b, remote: a},
		"other peer": {local: b, remote: netip.MustParseAddr("203.0.113.9"), keyed: true, key: 7},
	} {
		if _, err := g.decapsulate(pkt); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, bad := range [][]byte{nil, pkt[:20], pkt[:23], append(append([]byte{}, pkt[:9]...), 6)} {
		if _, err := rx.decapsulate(bad); err == nil {
			t.Errorf("accepted % x", bad)
		}
	}
	if _, err := tx.encapsulate([]byte{1, 2, 3}); err == nil {
		t.Error("encapsulated a non-IP packet")
	}
}
