//go:build linux

package gateway

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/swan"
	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/internal/topo"
)

// The strongSwan tests run gwA as an espxdp gateway with an IKE peer and
// gwB as strongSwan's charon with kernel-libipsec (internal/swan): ESP
// in UDP only, which charon gets by faking NAT detection (and we force
// with encap: true).

const swanPSK = "a PSK strongSwan and espxdp share"

// swanConn is charon's connection to gwA.
func swanConn() swan.Conn {
	return swan.Conn{LocalAddrs: wanB4, RemoteAddrs: wanA4, LocalID: "strongswan.test", RemoteID: "espxdp.test",
		PSK: swanPSK, LocalTS: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/24")},
		RemoteTS: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")}, Encap: true, NoMobike: true}
}

// swanPeerExtra is what gwA's peer adds for strongSwan.
const swanPeerExtra = "    local_id: espxdp.test\n    remote_id: strongswan.test\n    encap: true\n"

// charonChild waits for charon's installed child SA.
func charonChild(t *testing.T, c *swan.Charon, exclude ...uint32) swan.ChildSA {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch, err := c.WaitChild(ctx, swan.DefaultChild, exclude...)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func spiHex(s string) uint32 {
	var v uint32
	fmt.Sscanf(s, "0x%x", &v)
	return v
}

// TestIKEStrongSwan: espxdp and strongSwan, each the initiator in turn,
// bring up a tunnel (SPIs pair up, UDP-encapsulated), carry pings and
// checksummed TCP both ways, rekey the child under traffic without
// losing a packet (our rekey, then strongSwan's), and delete from the
// other side; with espxdp initiating, strongSwan then dies (SIGKILL)
// and espxdp's dead peer detection removes the SAs.
func TestIKEStrongSwan(t *testing.T) {
	swan.Require(t)
	for _, espxdpInitiates := range []bool{true, false} {
		name := "strongswan-initiates"
		if espxdpInitiates {
			name = "espxdp-initiates"
		}
		t.Run(name, func(t *testing.T) {
			a, b := buildTopology(t)
			charon := swan.StartTest(t, b.gw.Name, swan.Options{})
			conn := swanConn()
			p := ikeParams{psk: swanPSK, extra: swanPeerExtra}
			if espxdpInitiates {
				p.start, p.rekey, p.dpd = true, "3s", "1s"
			} else {
				// strongSwan's rand_time defaults to life_time -
				// rekey_time: 1 s here, so its rekeys come every 2-3 s
				// (with a larger spread kernel-libipsec may get a soft
				// lifetime of 0, i.e. none, and the child hard-expires).
				conn.ChildRekeyTime, conn.ChildLifeTime = 3*time.Second, 4*time.Second
			}
			if err := charon.Load(conn); err != nil {
				t.Fatal(err)
			}
			ga := startGateway(t, a, ikeGatewayYAML(t, a, b, "a", p))
			if !espxdpInitiates {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := charon.Initiate(ctx, swan.DefaultChild)
				cancel()
				if err != nil {
					t.Fatalf("charon initiate: %v\nlogA:\n%s", err, a.log)
				}
			}
			ia := waitIKEUp(t, a, 10*time.Second)
			ca, _ := primaryChild(ia)
			cs := charonChild(t, charon)
			if spiHex(ca.SPIIn) != cs.SPIOut || spiHex(ca.SPIOut) != cs.SPIIn || !cs.Encap {
				t.Fatalf("SPIs do not pair up: espxdp %+v, strongSwan %+v", ca, cs)
			}
			if s := ia.IKESAs[len(ia.IKESAs)-1]; !s.NATT || s.RemoteID != "strongswan.test" {
				t.Errorf("IKE SA: %+v, want NAT-T and the peer's identity", s)
			}
			if got := ping(t, a, b.hostAddr, 5); got != 5 {
				t.Fatalf("ping through strongSwan: %d of 5\nlogA:\n%s\ncharon:\n%s", got, a.log, charon.Log())
			}
			for i, dir := range [][2]*site{{b, a}, {a, b}} {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				res, err := topo.Transfer(ctx, dir[0].host, netip.AddrPortFrom(dir[0].hostAddr, uint16(5201+i)), dir[1].host, 1<<20, uint64(i+7), nil)
				cancel()
				if err != nil || !res.Intact() {
					t.Fatalf("transfer %d: %+v, %v", i, res, err)
				}
			}

			// Rekeys every 3 s (ours or strongSwan's) under 20 ms pings.
			const n = 300
			r, err := topo.Ping(a.host, b.hostAddr, n, 56, 20*time.Millisecond, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if r.Received != n {
				t.Errorf("%d of %d pings answered across rekeys\nlogA:\n%s\ncharon:\n%s", r.Received, n, a.log, charon.Log())
			}
			ia = waitIKEUp(t, a, 2*time.Second)
			ca2, _ := primaryChild(ia)
			if ca2.SPIIn == ca.SPIIn {
				t.Errorf("no rekey in %d pings: child %+v", n, ca2)
			}
			if espxdpInitiates && ga.ikeRekeys.Load() == 0 {
				t.Errorf("espxdp did not rekey")
			}
			cs2 := charonChild(t, charon, cs.SPIIn)
			if got := ping(t, a, b.hostAddr, 3); got != 3 {
				t.Fatalf("ping after rekeys: %d of 3 (strongSwan child %+v)", got, cs2)
			}

			if espxdpInitiates {
				// strongSwan deletes: our SAs go, we initiate again.
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := charon.Terminate(ctx, swan.DefaultConn)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				waitSPIGone(t, a, ca2.SPIIn)
				ia = waitIKEUp(t, a, 10*time.Second)
				if got := ping(t, a, b.hostAddr, 3); got != 3 {
					t.Fatalf("ping after strongSwan's delete and our new initiation: %d of 3", got)
				}
				// strongSwan dies without a word: DPD (1 s, 3 tries of
				// 200 ms) finds it and the SAs go.
				last, _ := primaryChild(ia)
				charon.Kill()
				deadline := time.Now().Add(10 * time.Second)
				for time.Now().Before(deadline) && !strings.Contains(a.log.String(), "dead peer detected") {
					time.Sleep(100 * time.Millisecond)
				}
				if !strings.Contains(a.log.String(), "dead peer detected") {
					t.Fatalf("no dead peer detection:\n%s", a.log)
				}
				waitSPIGone(t, a, last.SPIIn)
				return
			}
			// We delete: strongSwan's SAs go.
			if _, err := Call(a.socket, Request{Cmd: "ike-terminate", Peer: "gwB"}, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				sas, err := charon.ListSAs(ctx)
				cancel()
				if err == nil && len(sas) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("strongSwan still has SAs after our delete: %+v, %v", sas, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if got := pingNone(t, a, b.hostAddr, 2); got != 0 {
				t.Errorf("ping after the delete: %d answered", got)
			}
		})
	}
}

// waitSPIGone waits until no SA of s's gateway has the SPI in its name.
func waitSPIGone(t *testing.T, s *site, spi string) {
	t.Helper()
	suffix := strings.TrimPrefix(spi, "0x")
	for end := time.Now().Add(8 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		r, err := Call(s.socket, Request{Cmd: "show-sa"}, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, x := range r.SAs {
			found = found || strings.HasSuffix(x.Name, suffix)
		}
		if !found {
			return
		}
	}
	t.Fatalf("SA %s still installed\nlog:\n%s", spi, s.log)
}

// TestIKEStrongSwanRefused: a wrong PSK (either side initiating) and a
// proposal mismatch are refused with a clear line in espxdp's log and no
// SA.
func TestIKEStrongSwanRefused(t *testing.T) {
	swan.Require(t)
	testenv.RequireCommand(t, "ip")
	a, b := buildTopology(t)
	charon := swan.StartTest(t, b.gw.Name, swan.Options{})
	cases := []struct {
		name       string
		conn       swan.Conn
		p          ikeParams
		swanStarts bool
		want       string
	}{
		{name: "wrong-psk-espxdp-initiates", p: ikeParams{psk: "not the PSK strongSwan has", start: true},
			want: "peer refused our authentication (AUTHENTICATION_FAILED)"},
		{name: "wrong-psk-strongswan-initiates", p: ikeParams{psk: "not the PSK strongSwan has"}, swanStarts: true,
			want: "authentication failed (wrong PSK or identity)"},
		{name: "proposal-mismatch", p: ikeParams{psk: swanPSK, start: true, proposal: "aes256gcm16-prfsha384-ecp384"},
			want: "NO_PROPOSAL_CHOSEN"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := charon.Load(swanConn()); err != nil {
				t.Fatal(err)
			}
			a.log = &testenv.SyncBuffer{}
			c.p.extra = swanPeerExtra
			ga := startGateway(t, a, ikeGatewayYAML(t, a, b, "a", c.p))
			defer ga.Close()
			if c.swanStarts {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if err := charon.Initiate(ctx, swan.DefaultChild); err == nil {
					t.Errorf("strongSwan's initiation succeeded with a wrong PSK")
				}
				cancel()
			}
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) && !strings.Contains(a.log.String(), c.want) {
				time.Sleep(50 * time.Millisecond)
			}
			if !strings.Contains(a.log.String(), c.want) {
				t.Errorf("espxdp's log lacks %q:\n%s", c.want, a.log)
			}
			if st := ga.SAStats(); len(st) != 0 {
				t.Errorf("SAs installed: %+v", st)
			}
		})
	}
}
