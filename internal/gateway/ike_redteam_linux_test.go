//go:build linux

package gateway

import (
	"errors"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/testenv"
)

// TestRedTeamTerminateDuringInitiation races the operator's ike
// terminate with a negotiation in flight: A's ike initiate is under way
// (B's answers dropped, A retransmitting) when the operator terminates
// the peer. Terminate deleted the IKE SAs A had (none: the new one was
// half-open, in no list) and held the peer; when B answered the
// retransmission, the negotiation finished and installed its child: the
// peer was up again, with SAs, although the operator had terminated it
// (and Terminate returned ok). Invariant: after Terminate returns, no
// IKE SA of the peer is established until Initiate or a reload.
func TestRedTeamTerminateDuringInitiation(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "nft")
	a, b := buildTopology(t)
	p := ikeParams{psk: "terminate race pre-shared key", any: true}
	startGateway(t, b, ikeGatewayYAML(t, b, a, "b", p))
	p.any = false // A: start_action none
	ga := startGateway(t, a, ikeGatewayYAML(t, a, b, "a", p))

	blockIKE(t, b, true)
	if err := ga.Initiate("gwB", 300*time.Millisecond); !errors.Is(err, ErrInProgress) {
		t.Fatalf("initiate while B is silent: %v, want ErrInProgress", err)
	}
	if err := ga.Terminate("gwB"); err != nil {
		t.Fatal(err)
	}
	blockIKE(t, b, false) // B answers A's next retransmission
	// The negotiation gives up after 200ms·(1+2+4+8); watch past that.
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		info := ga.IKEInfo()
		if len(info) != 1 {
			t.Fatalf("show ike: %+v", info)
		}
		for _, s := range info[0].IKESAs {
			if s.State == "established" {
				t.Fatalf("an IKE SA came up after ike terminate (held %v): %+v\nlog A:\n%s", info[0].Held, s, a.log)
			}
		}
		if owners := ga.SAOwners(); len(owners) != 0 {
			t.Fatalf("child SAs installed after ike terminate: %+v", owners)
		}
	}
}
