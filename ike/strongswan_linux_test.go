//go:build linux

package ike

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/netns"
	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/sa"
)

// The strongSwan interop tests run charon (strongSwan 5.9, kernel-libipsec:
// ESP in userspace through a TUN device, always UDP-encapsulated) in one
// namespace and our Endpoint in the test process, with its sockets in a
// second namespace, joined by a veth. ESP that strongSwan sends is
// decrypted here with the derived inbound SA (Packet.ESPOnly over the
// NAT-T socket) and ICMP echo requests are answered through the
// outbound SA.

const charonPath = "/usr/lib/ipsec/charon"

var (
	ssOuter = netip.MustParseAddr("192.168.77.1") // strongSwan's side of the veth
	goOuter = netip.MustParseAddr("192.168.77.2") // ours
	ssInner = netip.MustParseAddr("10.77.1.1")    // strongSwan's protected address
	goInner = netip.MustParseAddr("10.77.2.1")    // ours (answered by the test)
)

type swan struct {
	t    *testing.T
	dir  string
	ns   *netns.NS
	uri  string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startCharon(t *testing.T, ns *netns.NS, psk string) *swan {
	t.Helper()
	return startCharonESP(t, ns, psk, "aes128gcm16")
}

// startCharonESP is startCharon with the child's esp_proposals.
func startCharonESP(t *testing.T, ns *netns.NS, psk, espProposals string) *swan {
	t.Helper()
	swanctl := testenv.RequireCommand(t, "swanctl")
	testenv.RequireCommand(t, charonPath)
	dir := t.TempDir()
	s := &swan{t: t, dir: dir, ns: ns, uri: "unix://" + dir + "/charon.vici", log: dir + "/charon.log", done: make(chan struct{})}
	_ = swanctl
	if err := os.Mkdir(dir+"/run", 0o755); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`charon {
  load = random nonce openssl aes sha1 sha2 hmac gcm curve25519 kdf pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici
  install_routes = yes
  retransmit_tries = 3
  retransmit_timeout = 1.0
  plugins {
    vici { socket = %s }
  }
  filelog {
    charonlog {
      path = %s
      default = 1
      ike = 2
      cfg = 2
      flush_line = yes
    }
  }
}
`, s.uri, s.log)
	writeFile(t, dir+"/strongswan.conf", conf)
	writeFile(t, dir+"/swanctl.conf", fmt.Sprintf(`connections {
  gw {
    version = 2
    local_addrs = %s
    remote_addrs = %s
    proposals = aes128gcm16-prfsha256-x25519
    local { auth = psk
      id = strongswan.test }
    remote { auth = psk
      id = espxdp.test }
    children {
      net {
        local_ts = %s/32
        remote_ts = 10.77.2.0/24
        esp_proposals = %s
        start_action = none
      }
    }
  }
}
secrets {
  ike-gw {
    id-1 = strongswan.test
    id-2 = espxdp.test
    secret = "%s"
  }
}
`, ssOuter, goOuter, ssInner, espProposals, psk))
	// A private /run for this charon (its pid file), its own config.
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "unshare", "-m", "sh", "-c",
		`mount --bind "$1" /run && exec "$2"`, "sh", dir+"/run", charonPath)
	cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+dir+"/strongswan.conf")
	out, err := os.Create(dir + "/charon.out")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start charon: %v", err)
	}
	s.cmd = cmd
	go func() { cmd.Wait(); out.Close(); close(s.done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(s.log)
			o, _ := os.ReadFile(dir + "/charon.out")
			t.Logf("charon log:\n%s\n%s", b, o)
		}
	})
	// Wait for the vici socket, then load the config.
	ok := netns.WaitFor(10*time.Second, func() bool {
		select {
		case <-s.done:
			return true
		default:
		}
		_, err := s.swanctl(5*time.Second, "--stats")
		return err == nil
	})
	select {
	case <-s.done:
		t.Fatal("charon exited")
	default:
	}
	if !ok {
		t.Fatal("charon's vici socket did not come up")
	}
	if out, err := s.swanctl(10*time.Second, "--load-all", "--file", dir+"/swanctl.conf"); err != nil {
		t.Fatalf("swanctl --load-all: %v\n%s", err, out)
	}
	return s
}

func writeFile(t *testing.T, name, s string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (s *swan) swanctl(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args = append(args, "--uri", s.uri)
	out, err := exec.CommandContext(ctx, "swanctl", args...).CombinedOutput()
	return string(out), err
}

func (s *swan) logText() string {
	b, _ := os.ReadFile(s.log)
	return string(b)
}

// goSide is our IKE endpoint plus an ESP responder for pings.
type goSide struct {
	ep      *Endpoint
	conn    net.PacketConn
	natt    net.PacketConn
	sad     *sa.SAD
	proc    *sa.Processor
	tun     *sa.Tunnel
	mu      sync.Mutex
	child   *ChildSA
	in, out *sa.SA
	echoes  int
	// echoesSeen is echoes at the last checkTraffic.
	echoesSeen int
	up         chan struct{}
}

func startGo(t *testing.T, ns *netns.NS, psk string) *goSide {
	t.Helper()
	return startGoCfg(t, ns, psk, nil)
}

// startGoCfg is startGo with the Endpoint's Config changed by mod.
func startGoCfg(t *testing.T, ns *netns.NS, psk string, mod func(*Config)) *goSide {
	t.Helper()
	g := &goSide{sad: sa.NewSAD(sa.SADOptions{}), tun: sa.NewTunnel("ss"), up: make(chan struct{}, 4)}
	var err error
	g.proc, err = sa.NewProcessor(sa.ProcessorOptions{SAD: g.sad, Tunnel: g.tun})
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(func() error {
		var err error
		if g.conn, err = net.ListenPacket("udp4", netip.AddrPortFrom(goOuter, 500).String()); err != nil {
			return err
		}
		g.natt, err = net.ListenPacket("udp4", netip.AddrPortFrom(goOuter, 4500).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		PSK: []byte(psk), LocalID: FQDN("espxdp.test"), RemoteID: FQDN("strongswan.test"),
		LocalTS: ts("10.77.2.0/24"), RemoteTS: ts(ssInner.String() + "/32"),
		SAD:    g.sad,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnChild: func(c *ChildSA) {
			in, out := c.In, c.Out
			in.ESPOnly, out.ESPOnly = true, true
			isa, err := sa.New(in)
			if err != nil {
				t.Errorf("inbound SA: %v", err)
				return
			}
			osa, err := sa.New(out)
			if err != nil {
				t.Errorf("outbound SA: %v", err)
				return
			}
			if err := g.sad.AddChild(isa, osa); err != nil {
				t.Errorf("AddChild: %v", err)
				return
			}
			g.tun.SetOutbound(osa)
			g.mu.Lock()
			g.child, g.in, g.out = c, isa, osa
			g.mu.Unlock()
			g.up <- struct{}{}
		},
		OnChildDown: func(c *ChildSA) {
			if _, err := g.sad.DeleteChild(c.ID); err != nil {
				t.Errorf("DeleteChild: %v", err)
			}
		},
		OnESP: g.esp,
	}
	if mod != nil {
		mod(&cfg)
	}
	g.ep, err = NewEndpoint(cfg, g.conn, g.natt)
	if err != nil {
		t.Fatal(err)
	}
	go g.ep.Serve()
	t.Cleanup(func() { g.ep.Close() })
	return g
}

// esp decrypts one ESP packet from strongSwan and answers ICMP echo
// requests through the outbound SA.
func (g *goSide) esp(pkt []byte, from netip.AddrPort) {
	g.mu.Lock()
	defer g.mu.Unlock()
	buf := make([]byte, esp.MaxHeadroom+len(pkt)+esp.MaxTailroom)
	copy(buf[esp.MaxHeadroom:], pkt)
	p := []sa.Packet{{Buf: buf, Off: esp.MaxHeadroom, Len: len(pkt), ESPOnly: true}}
	g.proc.Worker(0).Inbound(p)
	if p[0].Verdict != sa.VerdictOK {
		return
	}
	inner := p[0].Buf[p[0].Off : p[0].Off+p[0].Len]
	if len(inner) < 28 || inner[0]>>4 != 4 || inner[9] != 1 || inner[20] != 8 {
		return
	}
	ihl := int(inner[0]&15) * 4
	reply := append([]byte(nil), inner...)
	copy(reply[12:16], inner[16:20])
	copy(reply[16:20], inner[12:16])
	csum(reply[:ihl], 10)
	reply[ihl] = 0 // echo reply
	csum(reply[ihl:], 2)
	out := make([]byte, esp.MaxHeadroom+len(reply)+esp.MaxTailroom)
	copy(out[esp.MaxHeadroom:], reply)
	q := []sa.Packet{{Buf: out, Off: esp.MaxHeadroom, Len: len(reply), ESPOnly: true}}
	g.proc.Worker(0).Outbound(q)
	if q[0].Verdict != sa.VerdictOK {
		return
	}
	g.echoes++
	g.natt.WriteTo(q[0].Buf[q[0].Off:q[0].Off+q[0].Len], net.UDPAddrFromAddrPort(from))
}

func (g *goSide) current() *ChildSA {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.child
}

func interopNets(t *testing.T) (ssNS, goNS *netns.NS) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "ip")
	testenv.RequireCommand(t, "ping")
	testenv.RequireCommand(t, "swanctl")
	testenv.RequireCommand(t, charonPath)
	ssNS, goNS = netns.New(t), netns.New(t)
	v := netns.NewVethPair(t, ssNS, goNS)
	v.A.AddAddr(t, netip.PrefixFrom(ssOuter, 24))
	v.B.AddAddr(t, netip.PrefixFrom(goOuter, 24))
	ssNS.IP(t, "addr", "add", ssInner.String()+"/32", "dev", "lo")
	return ssNS, goNS
}

var sasLine = regexp.MustCompile(`(?m)^\s+(in|out)\s+[0-9a-f]{8}.*?(\d+) bytes,\s+(\d+) packets`)

// checkTraffic pings our inner address from strongSwan's and checks
// both sides saw the ESP.
func checkTraffic(t *testing.T, ss *swan, g *goSide) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := ss.ns.Exec(ctx, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", ssInner.String(), goInner.String())
	if err != nil {
		t.Fatalf("ping through the tunnel: %v\n%s", err, out)
	}
	g.mu.Lock()
	echoes := g.echoes - g.echoesSeen
	g.echoesSeen = g.echoes
	st := g.in.Stats()
	g.mu.Unlock()
	if echoes < 3 {
		t.Fatalf("answered %d echo requests, want 3", echoes)
	}
	if st.DecryptPkts < 3 {
		t.Fatalf("inbound SA decrypted %d packets", st.DecryptPkts)
	}
	sas, err := ss.swanctl(10*time.Second, "--list-sas")
	if err != nil {
		t.Fatalf("swanctl --list-sas: %v\n%s", err, sas)
	}
	t.Logf("swanctl --list-sas:\n%s", sas)
	if !strings.Contains(sas, "ESTABLISHED") || !strings.Contains(sas, "INSTALLED") {
		t.Fatalf("strongSwan does not show ESTABLISHED and INSTALLED:\n%s", sas)
	}
	counts := map[string]int{}
	for _, m := range sasLine.FindAllStringSubmatch(sas, -1) {
		n, _ := strconv.Atoi(m[3])
		counts[m[1]] += n
	}
	if counts["in"] < 3 || counts["out"] < 3 {
		t.Fatalf("strongSwan counted %d packets in, %d out; want ≥ 3 each", counts["in"], counts["out"])
	}
}

func waitUp(t *testing.T, g *goSide) {
	t.Helper()
	select {
	case <-g.up:
	case <-time.After(15 * time.Second):
		t.Fatal("no child SA on our side")
	}
}

const interopPSK = "espxdp-strongswan-interop-psk-1234"

func TestStrongSwanInitiates(t *testing.T) {
	ssNS, goNS := interopNets(t)
	g := startGo(t, goNS, interopPSK)
	ss := startCharon(t, ssNS, interopPSK)
	if out, err := ss.swanctl(20*time.Second, "--initiate", "--child", "net", "--timeout", "15"); err != nil {
		t.Fatalf("swanctl --initiate: %v\n%s", err, out)
	}
	waitUp(t, g)
	checkTraffic(t, ss, g)
	if out, err := ss.swanctl(20*time.Second, "--terminate", "--ike", "gw", "--timeout", "10"); err != nil {
		t.Fatalf("swanctl --terminate: %v\n%s", err, out)
	}
	if !netns.WaitFor(5*time.Second, func() bool {
		return len(g.sad.Child(g.current().ID)) == 0 && g.ep.Stats().Received > 0 && !g.current().IKE.Established()
	}) {
		t.Fatal("the IKE SA survived strongSwan's delete")
	}
}

// TestStrongSwanInitiatesCookie: strongSwan initiates to our responder,
// which demands a cookie for every IKE_SA_INIT (RFC 7296 §2.6):
// strongSwan retries with it and the SA comes up.
func TestStrongSwanInitiatesCookie(t *testing.T) {
	ssNS, goNS := interopNets(t)
	g := startGoCfg(t, goNS, interopPSK, func(c *Config) { c.CookieThreshold = -1 })
	ss := startCharon(t, ssNS, interopPSK)
	if out, err := ss.swanctl(20*time.Second, "--initiate", "--child", "net", "--timeout", "15"); err != nil {
		t.Fatalf("swanctl --initiate: %v\n%s", err, out)
	}
	waitUp(t, g)
	if n := g.ep.Stats().CookiesSent; n == 0 {
		t.Fatal("no COOKIE sent")
	}
	checkTraffic(t, ss, g)
}

func TestStrongSwanResponds(t *testing.T) {
	ssNS, goNS := interopNets(t)
	g := startGo(t, goNS, interopPSK)
	ss := startCharon(t, ssNS, interopPSK)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ike, err := g.ep.Initiate(ctx, netip.AddrPortFrom(ssOuter, 500))
	if err != nil {
		t.Fatalf("Initiate: %v", err)
	}
	waitUp(t, g)
	if c := ike.Child(); !c.In.UDPEncap || c.Out.RemotePort != 4500 {
		t.Fatalf("child SA not UDP-encapsulated to 4500 (strongSwan's libipsec fakes NAT-D): encap %v port %d", c.In.UDPEncap, c.Out.RemotePort)
	}
	checkTraffic(t, ss, g)
	if err := ike.Ping(ctx); err != nil {
		t.Fatalf("liveness check: %v", err)
	}
	if err := ike.Delete(ctx); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if !netns.WaitFor(5*time.Second, func() bool {
		out, _ := ss.swanctl(5*time.Second, "--list-sas")
		return !strings.Contains(out, "ESTABLISHED")
	}) {
		t.Fatal("strongSwan kept the IKE SA we deleted")
	}
}

func TestStrongSwanWrongPSK(t *testing.T) {
	ssNS, goNS := interopNets(t)
	g := startGo(t, goNS, "not-the-psk-strongswan-knows-123")
	ss := startCharon(t, ssNS, interopPSK)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := g.ep.Initiate(ctx, netip.AddrPortFrom(ssOuter, 500))
	if !errors.Is(err, ErrAuthenticationFailed) {
		t.Fatalf("Initiate with a wrong PSK: %v, want ErrAuthenticationFailed", err)
	}
	if log := ss.logText(); !strings.Contains(log, "AUTH_FAILED") {
		t.Fatalf("strongSwan's log does not show the refusal:\n%s", log)
	}
	// And the other way: strongSwan initiates with its PSK, we refuse.
	out, err := ss.swanctl(20*time.Second, "--initiate", "--child", "net", "--timeout", "15")
	if err == nil {
		t.Fatalf("strongSwan established with a wrong PSK:\n%s", out)
	}
	if g.ep.Stats().AuthFailed < 2 {
		t.Fatalf("AuthFailed = %d, want 2", g.ep.Stats().AuthFailed)
	}
}

// TestStrongSwanRekey: strongSwan rekeys the child SA with us
// (CREATE_CHILD_SA), then we rekey it with strongSwan; traffic flows
// through each successor.
func TestStrongSwanRekey(t *testing.T) {
	ssNS, goNS := interopNets(t)
	g := startGo(t, goNS, interopPSK)
	ss := startCharon(t, ssNS, interopPSK)
	if out, err := ss.swanctl(20*time.Second, "--initiate", "--child", "net", "--timeout", "15"); err != nil {
		t.Fatalf("swanctl --initiate: %v\n%s", err, out)
	}
	waitUp(t, g)
	checkTraffic(t, ss, g)
	first := g.current()
	if out, err := ss.swanctl(20*time.Second, "--rekey", "--child", "net"); err != nil {
		t.Fatalf("swanctl --rekey: %v\n%s", err, out)
	}
	waitUp(t, g)
	if g.current().In.SPI == first.In.SPI {
		t.Fatal("no new child after strongSwan's rekey")
	}
	if !netns.WaitFor(10*time.Second, func() bool { return len(g.sad.Child(first.ID)) == 0 }) {
		t.Fatal("strongSwan did not delete the old child SA")
	}
	checkTraffic(t, ss, g)
	second := g.current()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := second.IKE.RekeyChild(ctx); err != nil {
		t.Fatalf("RekeyChild: %v", err)
	}
	waitUp(t, g)
	if len(g.sad.Child(second.ID)) != 0 {
		t.Fatal("old child still installed after our rekey")
	}
	checkTraffic(t, ss, g)
}

// ikeEvents records OnIKEUp and OnIKEDown of a goSide.
type ikeEvents struct {
	up   chan *IKESA
	down chan ikeDownEv
}

func (ev *ikeEvents) config(c *Config) {
	ev.up, ev.down = make(chan *IKESA, 8), make(chan ikeDownEv, 8)
	c.OnIKEUp = func(s *IKESA) { ev.up <- s }
	c.OnIKEDown = func(s *IKESA, err error) { ev.down <- ikeDownEv{s, err} }
}

func (ev *ikeEvents) waitUp(t *testing.T) *IKESA {
	t.Helper()
	select {
	case s := <-ev.up:
		return s
	case <-time.After(15 * time.Second):
		t.Fatal("no OnIKEUp")
		return nil
	}
}

func (ev *ikeEvents) waitDown(t *testing.T, d time.Duration) ikeDownEv {
	t.Helper()
	select {
	case e := <-ev.down:
		return e
	case <-time.After(d):
		t.Fatal("no OnIKEDown")
		return ikeDownEv{}
	}
}

// ssHasIKESPI tells whether strongSwan lists an ESTABLISHED IKE SA with
// our SPI (as its initiator or responder SPI).
func ssHasIKESPI(ss *swan, in IKESAInfo) bool {
	out, _ := ss.swanctl(5*time.Second, "--list-sas")
	return strings.Contains(out, fmt.Sprintf("%016x_i", in.SPIi)) && strings.Contains(out, fmt.Sprintf("%016x_r", in.SPIr)) &&
		strings.Contains(out, "ESTABLISHED")
}

// TestStrongSwanRekeyIKE: strongSwan rekeys the IKE SA with us, then
// we rekey it with strongSwan; the child moves along (traffic flows, no
// OnChildDown), both sides list the same new IKE SA, and a child rekey
// on the new SA (its SK_d) works.
func TestStrongSwanRekeyIKE(t *testing.T) {
	ssNS, goNS := interopNets(t)
	var ev ikeEvents
	g := startGoCfg(t, goNS, interopPSK, ev.config)
	ss := startCharon(t, ssNS, interopPSK)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first, err := g.ep.Initiate(ctx, netip.AddrPortFrom(ssOuter, 500))
	if err != nil {
		t.Fatalf("Initiate: %v", err)
	}
	waitUp(t, g)
	ev.waitUp(t)
	child := g.current()
	checkTraffic(t, ss, g)

	// strongSwan rekeys.
	if out, err := ss.swanctl(20*time.Second, "--rekey", "--ike", "gw"); err != nil {
		t.Fatalf("swanctl --rekey --ike: %v\n%s", err, out)
	}
	second := ev.waitUp(t)
	if d := ev.waitDown(t, 15*time.Second); d.s != first || !errors.Is(d.err, ErrRekeyed) {
		t.Fatalf("OnIKEDown(%v, %v)", d.s, d.err)
	}
	if in := second.Info(); in.Initiator || len(in.Children) != 1 || in.Children[0].ID != child.ID || !ssHasIKESPI(ss, in) {
		t.Fatalf("after strongSwan's IKE SA rekey: %+v", in)
	}
	if g.current() != child || len(g.sad.Child(child.ID)) == 0 {
		t.Fatal("the child changed or went down")
	}
	checkTraffic(t, ss, g)
	if err := second.Ping(ctx); err != nil {
		t.Fatalf("Ping on the rekeyed SA: %v", err)
	}

	// We rekey.
	third, err := second.RekeyIKE(ctx)
	if err != nil {
		t.Fatalf("RekeyIKE: %v", err)
	}
	if up := ev.waitUp(t); up != third {
		t.Fatal("OnIKEUp for another SA")
	}
	if d := ev.waitDown(t, 15*time.Second); d.s != second || !errors.Is(d.err, ErrRekeyed) {
		t.Fatalf("OnIKEDown(%v, %v)", d.s, d.err)
	}
	in := third.Info()
	if !in.Initiator || len(in.Children) != 1 || !netns.WaitFor(5*time.Second, func() bool { return ssHasIKESPI(ss, in) }) {
		t.Fatalf("after our IKE SA rekey: %+v", in)
	}
	checkTraffic(t, ss, g)
	// The new SA's SK_d keys a child rekey strongSwan accepts.
	if _, err := third.RekeyChild(ctx); err != nil {
		t.Fatalf("RekeyChild on the rekeyed IKE SA: %v", err)
	}
	waitUp(t, g)
	checkTraffic(t, ss, g)
	if !netns.WaitFor(5*time.Second, func() bool {
		out, _ := ss.swanctl(5*time.Second, "--list-sas")
		return strings.Count(out, "ESTABLISHED") == 1
	}) {
		t.Fatal("strongSwan keeps more than one IKE SA")
	}
}

// TestStrongSwanRekeyPFS: child rekeys with PFS (x25519) started by
// each side: KE payloads in CREATE_CHILD_SA, KEYMAT with g^ir.
func TestStrongSwanRekeyPFS(t *testing.T) {
	ssNS, goNS := interopNets(t)
	g := startGoCfg(t, goNS, interopPSK, func(c *Config) { c.ESPTransforms = []string{"aes128gcm16-x25519"} })
	ss := startCharonESP(t, ssNS, interopPSK, "aes128gcm16-x25519")
	if out, err := ss.swanctl(20*time.Second, "--initiate", "--child", "net", "--timeout", "15"); err != nil {
		t.Fatalf("swanctl --initiate: %v\n%s", err, out)
	}
	waitUp(t, g)
	first := g.current()
	if first.PFS != 0 {
		t.Fatal("the IKE_AUTH child has a DH group")
	}
	checkTraffic(t, ss, g)
	if out, err := ss.swanctl(20*time.Second, "--rekey", "--child", "net"); err != nil {
		t.Fatalf("swanctl --rekey: %v\n%s", err, out)
	}
	waitUp(t, g)
	second := g.current()
	if second.PFS != Curve25519 {
		t.Fatalf("strongSwan's rekey: PFS %v, want x25519", second.PFS)
	}
	checkTraffic(t, ss, g)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	third, err := second.Owner().RekeyChild(ctx)
	if err != nil {
		t.Fatalf("RekeyChild: %v", err)
	}
	waitUp(t, g)
	if third.PFS != Curve25519 || g.current() != third {
		t.Fatalf("our rekey: PFS %v", third.PFS)
	}
	checkTraffic(t, ss, g)
	if out, _ := ss.swanctl(5*time.Second, "--list-sas"); !strings.Contains(out, "CURVE_25519") {
		t.Fatalf("strongSwan does not show the DH group on the child:\n%s", out)
	}
}

// TestStrongSwanDPD: charon is killed; with DPDDelay 1s our side probes,
// times out and reports the IKE SA down within a bounded time.
func TestStrongSwanDPD(t *testing.T) {
	ssNS, goNS := interopNets(t)
	var ev ikeEvents
	downs := make(chan *ChildSA, 4)
	g := startGoCfg(t, goNS, interopPSK, func(c *Config) {
		ev.config(c)
		c.DPDDelay, c.Retransmit, c.Retries = time.Second, 200*time.Millisecond, 3
		prev := c.OnChildDown
		c.OnChildDown = func(ch *ChildSA) { prev(ch); downs <- ch }
	})
	ss := startCharon(t, ssNS, interopPSK)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ike, err := g.ep.Initiate(ctx, netip.AddrPortFrom(ssOuter, 500))
	if err != nil {
		t.Fatalf("Initiate: %v", err)
	}
	waitUp(t, g)
	ev.waitUp(t)
	// Alive: DPD probes are answered for a few delays.
	time.Sleep(2500 * time.Millisecond)
	if !ike.Established() {
		t.Fatal("DPD killed the SA of a live peer")
	}
	ss.cmd.Process.Kill()
	<-ss.done
	start := time.Now()
	d := ev.waitDown(t, 15*time.Second)
	if d.s != ike || !errors.Is(d.err, ErrTimeout) {
		t.Fatalf("OnIKEDown(%v, %v)", d.s, d.err)
	}
	t.Logf("dead peer detected %v after the kill", time.Since(start))
	select {
	case <-downs:
	default:
		t.Fatal("OnChildDown did not precede OnIKEDown")
	}
	if len(g.ep.IKESAs()) != 0 {
		t.Fatal("the dead IKE SA is still listed")
	}
}
