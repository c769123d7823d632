//go:build linux

package harness

import (
	"slices"
	"strings"
	"testing"

	"github.com/espxdp/espxdp/internal/swan"
	"github.com/espxdp/espxdp/internal/testenv"
)

// TestPeersSuite runs the peers suite with 2 MiB transfers: each row
// negotiates (the row itself checks that the SPIs pair and that both
// inbound SAs counted the transfer), moves the bytes intact, and
// reports every metric the report shows; nothing is left behind.
func TestPeersSuite(t *testing.T) {
	swan.Require(t)
	testenv.RequireCommand(t, "ip")
	steps, done := PeersSteps(Config{Quick: true, WGBytes: 2 << 20, Seed: 7})
	defer done()
	if len(steps) != len(PeersRows) {
		t.Fatalf("%d steps, want %d", len(steps), len(PeersRows))
	}
	var impls []string
	for _, s := range steps {
		rs, err := s.run()
		if err != nil {
			t.Fatalf("%s: %v", s.label, err)
		}
		if len(rs) != 1 {
			t.Fatalf("%s: %d results", s.label, len(rs))
		}
		r := rs[0]
		impls = append(impls, r.Impl)
		if r.Kind != KindPeers || r.Transform != PeersTransform || r.Size != PeersInnerMTU {
			t.Errorf("%s: result %+v", s.label, r)
		}
		for _, m := range []string{"Gbps", "retransmits", "ping-ms", "ike-ms", "gwA-cpu-s-per-GB", "gwB-cpu-s-per-GB", "gwA-esp-in", "gwB-esp-in", "mss"} {
			v, ok := r.Get(m)
			if !ok || v < 0 || (m != "retransmits" && !strings.Contains(m, "cpu") && v == 0) {
				t.Errorf("%s: %s = %v (present %v)", s.label, m, v, ok)
			}
		}
		// The MSS fits the hosts' MTU: IPv4 and TCP headers, maybe
		// timestamps.
		if mss, _ := r.Get("mss"); mss > PeersInnerMTU-40 || mss < PeersInnerMTU-40-12 {
			t.Errorf("%s: MSS %v with MTU %d", s.label, mss, PeersInnerMTU)
		}
	}
	if want := []string{"strongswan-strongswan", "strongswan-espxdp", "espxdp-espxdp"}; !slices.Equal(impls, want) {
		t.Errorf("rows %q, want %q", impls, want)
	}
}
