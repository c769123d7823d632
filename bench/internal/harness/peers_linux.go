//go:build linux

package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/espxdp/espxdp/ike"
	"github.com/espxdp/espxdp/internal/swan"
	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

// The gateways' IKE identities.
const (
	peersIDA = "gwa.peers.espxdp.test"
	peersIDB = "gwb.peers.espxdp.test"
)

// ErrPeersCheck is returned when a peers row does not show what it must
// (matching SPIs on both sides, the traffic counted by both gateways'
// inbound SAs): the numbers would not measure IPsec.
var ErrPeersCheck = errors.New("harness: peers check failed")

// peerGW is one gateway of a peers row.
type peerGW interface {
	// initiate negotiates the IKE SA and the child SA with the peer at
	// remote, waiting for the result.
	initiate(ctx context.Context, remote netip.Addr) error
	// child waits for the installed child SA and returns its SPIs.
	child(ctx context.Context) (in, out uint32, err error)
	// espIn returns the packets the inbound SA(s) accepted so far.
	espIn(ctx context.Context) (uint64, error)
	// cpu returns the CPU time of the gateway's data plane so far.
	cpu() (time.Duration, error)
	// stop ends it (deleting its SAs with the peer, if still running).
	stop()
}

// side returns gateway g's wan address, the peer's, its protected
// network, the remote one and the IKE identities (ours, the peer's).
func (n *wgNet) side(g *topo.NS) (local, remote netip.Addr, lnet, rnet netip.Prefix, lid, rid string) {
	if g == n.gwA {
		return wgGwAWan, wgGwBWan, wgNetA, wgNetB, peersIDA, peersIDB
	}
	return wgGwBWan, wgGwAWan, wgNetB, wgNetA, peersIDB, peersIDA
}

// swanGW is strongSwan's charon (kernel-libipsec) in a gateway.
type swanGW struct {
	c       *swan.Charon
	untrack func()
}

func (n *wgNet) startSwan(g *topo.NS, psk string) (*swanGW, error) {
	local, remote, lnet, rnet, lid, rid := n.side(g)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := swan.Start(ctx, g.Name, swan.Options{})
	if err != nil {
		return nil, err
	}
	// On SIGINT the namespaces go (CloseNetworks), and charon with them.
	s := &swanGW{c: c, untrack: trackNet(c.Kill)}
	err = c.Load(swan.Conn{
		LocalAddrs: local.String(), RemoteAddrs: remote.String(), LocalID: lid, RemoteID: rid, PSK: psk,
		ESPProposals: PeersTransform, LocalTS: []netip.Prefix{lnet}, RemoteTS: []netip.Prefix{rnet}, Encap: true,
	})
	if err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *swanGW) initiate(ctx context.Context, _ netip.Addr) error {
	return s.c.Initiate(ctx, swan.DefaultChild)
}

func (s *swanGW) child(ctx context.Context) (uint32, uint32, error) {
	c, err := s.c.WaitChild(ctx, swan.DefaultChild)
	return c.SPIIn, c.SPIOut, err
}

func (s *swanGW) espIn(ctx context.Context) (uint64, error) {
	sas, err := s.c.ListSAs(ctx)
	var n uint64
	for _, ike := range sas {
		for _, c := range ike.Children {
			n += c.PacketsIn
		}
	}
	return n, err
}

func (s *swanGW) cpu() (time.Duration, error) { return s.c.CPUTime() }

func (s *swanGW) stop() {
	s.untrack()
	s.c.Stop()
}

// espGW is espxdp in a gateway: an ike.Endpoint on the wan address
// (UDP 500 and 4500, kernel sockets: the engine's XDP program passes IKE
// to the kernel) whose child SAs go into the SAD of an xdp.Engine
// (ESP-in-UDP steered to AF_XDP on the wan, plaintext on the lan).
type espGW struct {
	ep     *ike.Endpoint
	e      *xdp.Engine
	sad    *sa.SAD
	tun    *sa.Tunnel
	log    *testenv.SyncBuffer // warnings and errors of the Endpoint
	served chan struct{}
	up     chan struct{} // a child was installed

	mu    sync.Mutex
	in    []*sa.SA // inbound SAs installed (for their counters)
	cur   *ike.ChildSA
	err   error // of OnChild
	stray uint64
}

func (n *wgNet) startESPIKE(g *topo.NS, psk string) (_ *espGW, err error) {
	local, _, lnet, rnet, lid, rid := n.side(g)
	s := &espGW{sad: sa.NewSAD(sa.SADOptions{}), tun: sa.NewTunnel("peer"), log: &testenv.SyncBuffer{},
		served: make(chan struct{}), up: make(chan struct{}, 1)}
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: s.sad, Tunnel: s.tun})
	if err != nil {
		return nil, err
	}
	if s.e, err = xdp.NewEngine(n.engineConfig(g, proc, rnet, local)); err != nil {
		return nil, err
	}
	if err := g.Do(s.e.Start); err != nil {
		return nil, fmt.Errorf("harness: engine in %s: %w", g.Label, err)
	}
	var conn, natt net.PacketConn
	if err := g.Do(func() (err error) {
		if conn, err = net.ListenPacket("udp4", netip.AddrPortFrom(local, 500).String()); err != nil {
			return err
		}
		if natt, err = net.ListenPacket("udp4", netip.AddrPortFrom(local, 4500).String()); err != nil {
			conn.Close()
		}
		return err
	}); err != nil {
		s.e.Stop()
		return nil, fmt.Errorf("harness: IKE sockets in %s: %w", g.Label, err)
	}
	s.ep, err = ike.NewEndpoint(ike.Config{
		PSK: []byte(psk), LocalID: ike.FQDN(lid), RemoteID: ike.FQDN(rid),
		ESPTransforms: []string{PeersTransform},
		LocalTS:       []ike.TrafficSelector{ike.SelectorFromPrefix(lnet)},
		RemoteTS:      []ike.TrafficSelector{ike.SelectorFromPrefix(rnet)},
		SAD:           s.sad, OnChild: s.onChild, OnChildDown: s.onChildDown,
		OnESP: func([]byte, netip.AddrPort) {
			s.mu.Lock()
			s.stray++
			s.mu.Unlock()
		},
		// Both sides UDP-encapsulated, as strongSwan's libipsec needs:
		// every row runs ESP-in-UDP.
		ForceEncap: true,
		Logger:     slog.New(slog.NewTextHandler(s.log, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}, conn, natt)
	if err != nil {
		conn.Close()
		natt.Close()
		s.e.Stop()
		return nil, err
	}
	go func() {
		defer close(s.served)
		s.ep.Serve()
	}()
	return s, nil
}

// onChild installs a negotiated child SA in the engine's SAD and makes
// it the tunnel's outbound SA.
func (s *espGW) onChild(c *ike.ChildSA) {
	err := func() error {
		in, err := sa.New(c.In)
		if err != nil {
			return err
		}
		out, err := sa.New(c.Out)
		if err != nil {
			return err
		}
		if err := s.sad.AddChild(in, out); err != nil {
			return err
		}
		s.tun.SetOutbound(out)
		s.mu.Lock()
		s.in = append(s.in, in)
		s.cur = c
		s.mu.Unlock()
		return nil
	}()
	s.mu.Lock()
	if err != nil && s.err == nil {
		s.err = fmt.Errorf("harness: installing child SA %d: %w", c.ID, err)
	}
	s.mu.Unlock()
	select {
	case s.up <- struct{}{}:
	default:
	}
}

func (s *espGW) onChildDown(c *ike.ChildSA) { s.sad.DeleteChild(c.ID) }

func (s *espGW) initiate(ctx context.Context, remote netip.Addr) error {
	_, err := s.ep.Initiate(ctx, netip.AddrPortFrom(remote, 500))
	if err != nil {
		return fmt.Errorf("harness: espxdp initiate: %w (log: %s)", err, s.log.String())
	}
	return nil
}

func (s *espGW) child(ctx context.Context) (uint32, uint32, error) {
	for {
		s.mu.Lock()
		c, err := s.cur, s.err
		s.mu.Unlock()
		if err != nil {
			return 0, 0, err
		}
		if c != nil {
			return c.In.SPI, c.Out.SPI, nil
		}
		select {
		case <-s.up:
		case <-ctx.Done():
			return 0, 0, fmt.Errorf("harness: espxdp: no child SA: %w (IKE stats %+v, log: %s)", ctx.Err(), s.ep.Stats(), s.log.String())
		}
	}
}

func (s *espGW) espIn(context.Context) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n uint64
	for _, in := range s.in {
		n += in.Stats().DecryptPkts
	}
	return n, nil
}

// cpu sums the CPU time of the engine's worker threads: the data
// plane. The IKE endpoint's goroutines are idle during a transfer.
func (s *espGW) cpu() (time.Duration, error) {
	tids := s.e.WorkerThreads()
	if len(tids) == 0 {
		return 0, fmt.Errorf("harness: espxdp engine not running")
	}
	var sum time.Duration
	for _, tid := range tids {
		d, err := swan.TaskCPUTime(os.Getpid(), tid)
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

func (s *espGW) stop() {
	s.ep.Close()
	<-s.served
	s.e.Stop()
}

// peersRun holds the state of the peers suite across its steps.
type peersRun struct {
	cfg   Config
	net   *wgNet
	runs  int
	bytes int64
}

func (r *peersRun) setup() error {
	if r.net != nil {
		return nil
	}
	if os.Geteuid() != 0 {
		return ErrNeedRoot
	}
	if _, err := exec.LookPath("swanctl"); err != nil {
		return fmt.Errorf("harness: peers: strongSwan's swanctl: %w (Debian: strongswan-swanctl)", err)
	}
	if _, err := os.Stat(swan.CharonPath); err != nil {
		return fmt.Errorf("harness: peers: strongSwan's charon: %w (Debian: strongswan-charon, libcharon-extra-plugins)", err)
	}
	n, err := newWGNet()
	if err != nil {
		return err
	}
	// The hosts' links at kernel-libipsec's TUN MTU (1400, fixed:
	// charon reads the TUN into buffers of that size), in every row.
	for _, l := range []*topo.Link{n.aEth, n.gwALan, n.gwBLan, n.bEth} {
		if err := l.SetMTU(PeersInnerMTU); err != nil {
			n.close()
			return err
		}
	}
	// No clear-text path between the networks: what the tunnels do not
	// carry does not arrive (a missing strongSwan route fails the row
	// instead of measuring plain forwarding).
	for _, rt := range []struct {
		g   *topo.NS
		dst netip.Prefix
	}{{n.gwA, wgNetB}, {n.gwB, wgNetA}} {
		if _, err := rt.g.IP("route", "del", rt.dst.String()); err != nil {
			n.close()
			return err
		}
	}
	r.net = n
	return nil
}

func (r *peersRun) close() {
	if r.net != nil {
		r.net.close()
		r.net = nil
	}
}

func (r *peersRun) start(impl string, g *topo.NS, psk string) (peerGW, error) {
	if impl == PeerStrongSwan {
		return r.net.startSwan(g, psk)
	}
	return r.net.startESPIKE(g, psk)
}

// row measures one pairing: gwB (the responder) starts first, gwA
// initiates; both must show the same SA pair; then pings and the TCP
// transfers, with the gateways' CPU time around them; both gateways'
// inbound SAs must have counted the traffic.
func (r *peersRun) row(implA, implB string) (Result, error) {
	impl := implA + "-" + implB
	res := Result{Suite: "peers", Kind: KindPeers, Impl: impl, Transform: PeersTransform, Traffic: "tcp", Size: PeersInnerMTU}
	key := make([]byte, 24)
	rand.Read(key)
	psk := hex.EncodeToString(key)
	n := r.net
	gb, err := r.start(implB, n.gwB, psk)
	if err != nil {
		return res, err
	}
	defer gb.stop()
	ga, err := r.start(implA, n.gwA, psk)
	if err != nil {
		return res, err
	}
	defer ga.stop()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := ga.initiate(ctx, wgGwBWan); err != nil {
		return res, err
	}
	aIn, aOut, err := ga.child(ctx)
	if err != nil {
		return res, err
	}
	bIn, bOut, err := gb.child(ctx)
	if err != nil {
		return res, err
	}
	setup := time.Since(t0)
	if aIn != bOut || aOut != bIn {
		return res, fmt.Errorf("%w: %s: SPIs do not pair: gwA in %08x out %08x, gwB in %08x out %08x", ErrPeersCheck, impl, aIn, aOut, bIn, bOut)
	}

	cpuA0, errA := ga.cpu()
	cpuB0, errB := gb.cpu()
	if err := errors.Join(errA, errB); err != nil {
		return res, err
	}
	m, err := n.measureTCP(impl, r.runs, PeersPings, r.bytes, nil, n.transferTCP(r.bytes, r.cfg.Seed))
	if err != nil {
		return res, err
	}
	cpuA1, errA := ga.cpu()
	cpuB1, errB := gb.cpu()
	if err := errors.Join(errA, errB); err != nil {
		return res, err
	}
	inA, errA := ga.espIn(ctx)
	inB, errB := gb.espIn(ctx)
	if err := errors.Join(errA, errB); err != nil {
		return res, err
	}
	// The transfer's segments went through gwB's inbound SA, its ACKs
	// through gwA's: at least one packet per 64 KiB each way.
	if want := uint64(r.bytes) * uint64(r.runs) >> 16; inA < want || inB < want {
		return res, fmt.Errorf("%w: %s: inbound SAs counted %d (gwA) and %d (gwB) packets, want ≥ %d each", ErrPeersCheck, impl, inA, inB, want)
	}
	m.add(&res, r.bytes)
	res.add("ike-ms", setup.Seconds()*1e3, "ms")
	gb1 := float64(r.bytes) * float64(r.runs) / 1e9
	res.add("gwA-cpu-s-per-GB", (cpuA1-cpuA0).Seconds()/gb1, "s/GB")
	res.add("gwB-cpu-s-per-GB", (cpuB1-cpuB0).Seconds()/gb1, "s/GB")
	res.add("gwA-esp-in", float64(inA), UnitPackets)
	res.add("gwB-esp-in", float64(inB), UnitPackets)
	return res, nil
}

// PeersSteps returns the steps of the peers suite (one per PeersRows
// pairing) and a function that removes what they built; it must be
// called after the steps ran (or failed).
func PeersSteps(cfg Config) ([]suiteStep, func()) {
	r := &peersRun{cfg: cfg, runs: 3, bytes: cfg.WGBytes}
	if cfg.Quick {
		r.runs = 1
	}
	var steps []suiteStep
	for _, p := range PeersRows {
		steps = append(steps, suiteStep{"peers " + strings.Join(p[:], " ⇄ "), func() ([]Result, error) {
			if err := r.setup(); err != nil {
				return nil, err
			}
			res, err := r.row(p[0], p[1])
			if err != nil {
				return nil, err
			}
			return []Result{res}, nil
		}})
	}
	return steps, r.close
}
