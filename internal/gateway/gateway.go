package gateway

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/espxdp/espxdp/bpf"
	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/internal/show"
	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

// Errors.
var (
	// ErrNotGateway: the configuration has no gateway sections.
	ErrNotGateway = errors.New("gateway: configuration has no interfaces section")
	// ErrRestart: a reload changed something only a restart can change
	// (interfaces, queues, options, the default tunnel); nothing was
	// changed.
	ErrRestart = errors.New("gateway: change needs a restart")
	// ErrClosed: the gateway is not running.
	ErrClosed = errors.New("gateway: not running")
)

// Options are the parts of a gateway that are not in its configuration.
type Options struct {
	// NetNS is the path of the network namespace of the interfaces (e.g.
	// /run/netns/gw); empty means the caller's.
	NetNS string
	// Logger receives events, drops and errors (nil: slog.Default()).
	Logger *slog.Logger
}

// key identifies an SA: inbound by SPI; outbound by SPI and peer, as
// two peers may choose the same SPI for our outbound SAs (the
// configuration allows that, see config's duplicate check).
type key struct {
	dir    sa.Direction
	spi    uint32
	remote netip.Addr // outbound only
}

// entry is one installed SA and the configuration it came from.
//
// Invariant (keys): the gateway holds key material only inside its sa.SAs
// (which wipe it when deleted or closed): the Key and AuthKey of every
// config.SA it installs or keeps are wiped as soon as the SA is built
// (wipeKeys), so removing, replacing or reloading an SA, or stopping,
// leaves no copy behind in the configuration.
type entry struct {
	sa     *sa.SA
	conf   *config.SA
	sum    [32]byte // fingerprint of conf and sels, keys included
	isum   [32]byte // the same without the attributes SA.Update changes
	tunnel string
	sels   []sa.Selector // the traffic selectors the SA was given
	rid    string        // record in the state file ("" without state_dir)
	// floated, for an outbound SA moved to a NAT-T peer's new endpoint
	// (followEndpoint), is the endpoint it had before the first move (as
	// configured): a reload naming that endpoint keeps the current one.
	floated *netip.AddrPort
	// owner, for an SA negotiated with IKE (ike.go), is its IKE SA; nil
	// for SAs of the file and the control socket.
	owner *ikeOwner
}

// Gateway is a running (or ready to run) gateway. Its methods are safe
// for concurrent use.
type Gateway struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex // control plane: SAs, tunnels, policies, reloads
	cfg     *config.Config
	g       *config.Gateway
	sad     *sa.SAD
	spd     *sa.SPD
	proc    *sa.Processor
	def     *sa.Tunnel // default tunnel (first configured), may be nil
	tunnels map[string]*sa.Tunnel
	sas     map[key]*entry
	order   []key

	state   *stateStore // nil without state_dir
	eng     *xdp.Engine
	tun     *xdp.TUN
	tunQ    []*xdp.TUN // the TUN's queues, one per worker (tun is tunQ[0])
	ctl     *controlServer
	running bool
	stop    chan struct{}
	wg      sync.WaitGroup

	kaSent, kaRecv, kaErrors atomic.Uint64
	eventsLost               atomic.Uint64
	events                   chan sa.Event
	hub                      hub   // event-stream subscribers
	links                    links // interface states (link monitor)
	started                  time.Time
	reloader                 ReloadFunc

	metrics     *metricsServer // metrics.go
	eventCounts eventCounters
	pmtu        pmtuState // outer path MTU discovery (wire.go)

	// IKE (ike.go): the peers and their sockets, the child each peer's
	// tunnel sends on (gw.mu), and counters.
	ike                                       ikeState
	primary                                   map[string]sa.ChildID
	ikeUnknown, ikeESP, ikeDPDDead, ikeRekeys atomic.Uint64
	// udp is the engine's UDP cipher port (interfaces.cipher.mode udp;
	// nil otherwise), udpIKE the IKE datagrams it received (udpport.go).
	udp    *xdp.UDPPort
	udpIKE chan udpDatagram
	// ikeESPLogged is when strayESP last logged (UnixNano, 0: never).
	ikeESPLogged atomic.Int64
}

// New builds a gateway from cfg, which it keeps, wiping the keys of its
// SAs once they are built (the caller wipes cfg if New fails). It checks
// everything it can without touching the system; Start runs it.
func New(cfg *config.Config, opts Options) (*Gateway, error) {
	if cfg == nil || cfg.Gateway == nil {
		return nil, ErrNotGateway
	}
	gw := &Gateway{opts: opts, log: opts.Logger, cfg: cfg, g: cfg.Gateway,
		tunnels: map[string]*sa.Tunnel{}, sas: map[key]*entry{}, events: make(chan sa.Event, 256)}
	if gw.log == nil {
		gw.log = slog.Default()
	}
	fn := sa.EventChannel(gw.events, &gw.eventsLost)
	gw.sad = sa.NewSAD(sa.SADOptions{Events: func(e sa.Event) {
		if e.Kind != 0 {
			fn(e)
		}
	}})
	gw.spd = sa.NewSPD(sa.SPDOptions{Events: fn})
	if gw.g.StateDir != "" {
		st, err := openState(gw.g.StateDir)
		if err != nil {
			return nil, err
		}
		gw.state = st
	}
	for _, t := range gw.g.Tunnels {
		gw.tunnels[t.Name] = sa.NewTunnel(t.Name)
	}
	if len(gw.g.Tunnels) > 0 {
		gw.def = gw.tunnels[gw.g.Tunnels[0].Name]
	}
	for _, c := range cfg.SAs {
		if err := gw.install(c, gw.g, tunnelOf(gw.g, c.Name)); err != nil {
			gw.closeSAs()
			return nil, err
		}
	}
	if err := gw.spd.Set(gw.policies(gw.g)); err != nil {
		gw.closeSAs()
		return nil, err
	}
	if _, err := Unprotected(gw.g); err != nil {
		gw.closeSAs()
		return nil, err
	}
	proc, err := sa.NewProcessor(sa.ProcessorOptions{
		Workers: gw.g.EngineWorkers(), Concurrency: gw.g.Concurrency,
		SAD: gw.sad, SPD: gw.spd, Tunnel: gw.def,
	})
	if err != nil {
		gw.closeSAs()
		return nil, err
	}
	gw.proc = proc
	return gw, nil
}

// tunnelOf returns the name of the configured tunnel an SA belongs to.
func tunnelOf(g *config.Gateway, name string) string {
	for _, t := range g.Tunnels {
		if slices.Contains(t.Out, name) || slices.Contains(t.In, name) {
			return t.Name
		}
	}
	return ""
}

// immutableFingerprint is fingerprint without the mutable attributes
// (lifetimes, path MTU, peer address and NAT-T port): two configurations
// with the same one differ only in what SA.Update changes in place.
func immutableFingerprint(c *config.SA, sels []sa.Selector) [32]byte {
	m := *c
	m.Lifetime, m.PathMTU, m.Remote, m.RemotePort = config.Lifetime{}, 0, netip.Addr{}, 0
	return baseFingerprint(&m, sels)
}

// fingerprint identifies a configured SA, keys included: its immutable
// fingerprint and its mutable attributes. Being built on the immutable
// one, it can be recomputed after the keys were wiped (withMutable), when
// an SA is changed in place.
func fingerprint(c *config.SA, sels []sa.Selector) [32]byte {
	return withMutable(immutableFingerprint(c, sels), c)
}

// withMutable is the fingerprint of an SA of immutable fingerprint isum
// with the mutable attributes of c.
func withMutable(isum [32]byte, c *config.SA) [32]byte {
	h := sha256.New()
	h.Write(isum[:])
	fmt.Fprintf(h, "|%+v|%d|%v|%d|", c.Lifetime, c.PathMTU, c.Remote, c.RemotePort)
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

func baseFingerprint(c *config.SA, sels []sa.Selector) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%v|%d|%v|%v|%v|%v|%d|%d|%v|%v|%d|%+v|%d|%v|%d|%v|", c.Name, c.Direction, c.SPI, c.Mode, c.Local, c.Remote,
		c.Encap, c.LocalPort, c.RemotePort, c.Transform, c.ESN, c.ReplayWindow, c.Lifetime, c.PathMTU, sels, c.Child, c.FloatRemote)
	h.Write([]byte(strconv.Itoa(len(c.Key))))
	h.Write(c.Key)
	h.Write(c.AuthKey)
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

func keyOf(c *config.SA) key {
	if c.Direction == config.Out {
		return key{sa.Out, c.SPI, c.Remote}
	}
	return key{dir: sa.In, spi: c.SPI}
}

// newSA makes the sa.SA of a configured SA bound to tunnel in the
// gateway configuration g, with the gateway's MTU and TTL conventions
// and its traffic selectors (config.Gateway.SelectorsOf), which it also
// returns.
func (gw *Gateway) newSA(c *config.SA, g *config.Gateway, tunnel string) (*sa.SA, []sa.Selector, error) {
	s, sels, _, err := gw.newSAState(c, g, tunnel, false)
	return s, sels, err
}

// newSAState is newSA; with persist and a state_dir, an outbound SA
// starts above its persisted reservation under a new durable one and an
// inbound SA with its saved window; rid names its state record.
func (gw *Gateway) newSAState(c *config.SA, g *config.Gateway, tunnel string, persist bool) (s *sa.SA, sels []sa.Selector, rid string, err error) {
	sc := c.SAConfig()
	sc.DF = true
	sc.Selectors = g.SelectorsOf(c, tunnel)
	if persist && gw.state != nil {
		rid = gw.state.recordID(c)
		if c.Direction == config.Out {
			if sc.InitialSeq, sc.SeqLimit, err = gw.state.start(rid, c.ESN); err != nil {
				return nil, nil, "", err
			}
		} else {
			sc.Replay = gw.state.replay(rid)
		}
	}
	s, err = sa.New(sc)
	if err != nil {
		return nil, nil, "", c.Pos.Errorf("%v", err)
	}
	return s, sc.Selectors, rid, nil
}

// warnSelectors logs an inbound tunnel-mode SA that got no traffic
// selectors: it delivers any inner packet.
func (gw *Gateway) warnSelectors(c *config.SA, sels []sa.Selector) {
	if c.Direction == config.In && c.Mode == esp.Tunnel && sels == nil {
		gw.log.Warn("inbound SA has no traffic selectors: the configuration sends nothing into its tunnel, so any inner source is delivered; set selectors or remote_ts", "sa", c.Name)
	}
}

// install creates and adds one SA (no entry with its key may exist) and
// binds it to tunnel (if named); g is the configuration it comes from.
func (gw *Gateway) install(c *config.SA, g *config.Gateway, tunnel string) error {
	k := keyOf(c)
	if _, dup := gw.sas[k]; dup {
		return fmt.Errorf("%w: %v SPI 0x%x", sa.ErrExists, k.dir, k.spi)
	}
	s, sels, rid, err := gw.newSAState(c, g, tunnel, true)
	if err != nil {
		return err
	}
	sum, isum := fingerprint(c, sels), immutableFingerprint(c, sels)
	wipeKeys(c)
	if err := gw.sad.Add(s); err != nil {
		s.Close()
		return err
	}
	gw.warnSelectors(c, sels)
	gw.sas[k] = &entry{sa: s, conf: c, sum: sum, isum: isum, tunnel: tunnel, sels: sels, rid: rid}
	gw.order = append(gw.order, k)
	gw.bind(k)
	return nil
}

// bind (re)computes the SAs of the tunnel of k's entry.
func (gw *Gateway) bind(k key) {
	e := gw.sas[k]
	if e == nil || e.tunnel == "" {
		return
	}
	t := gw.tunnels[e.tunnel]
	if t == nil {
		return
	}
	if k.dir == sa.In {
		t.AddInbound(e.sa)
		return
	}
	gw.rebindOut(t)
}

// rebindOut sets a tunnel's outbound SAs to the installed outbound SAs
// bound to it, in installation order.
func (gw *Gateway) rebindOut(t *sa.Tunnel) {
	var out []*sa.SA
	for _, k := range gw.order {
		if e := gw.sas[k]; e != nil && k.dir == sa.Out && e.tunnel == t.Name() &&
			(e.owner == nil || gw.primary[e.owner.peer] == e.owner.child) {
			out = append(out, e.sa)
		}
	}
	t.SetOutbound(out...)
}

// remove deletes the SA of k from the SAD and its tunnel.
func (gw *Gateway) remove(k key) error {
	e := gw.sas[k]
	if e == nil {
		return fmt.Errorf("%w: %v SPI 0x%x", sa.ErrNotFound, k.dir, k.spi)
	}
	if t := gw.unlink(k, e); t != nil {
		gw.rebindOut(t)
	}
	if err := gw.sad.DeleteSA(e.sa); err != nil {
		return err
	}
	gw.saveWindow(e)
	return nil
}

// saveWindow saves the exact window of e's inbound SA, closed, in its
// state record (if any): an SA with the key installed later, even after
// a restart, rejects every packet e's SA accepted. (The SAD remembers it
// in memory too.)
func (gw *Gateway) saveWindow(e *entry) {
	if gw.state == nil || e.rid == "" || e.sa.Direction() != sa.In {
		return
	}
	if err := gw.state.saveReplay(map[string]sa.ReplayState{e.rid: e.sa.ReplayState()}); err != nil {
		gw.log.Error("saving the replay window of a removed SA", "sa", e.conf.Name, "err", err)
	}
}

// unlink drops the SA e of k from the gateway's tables and, when it is
// inbound, from its tunnel. For an outbound SA it returns its tunnel,
// which the caller rebinds (rebindOut) once it has unlinked all it
// removes; otherwise nil. The SAD still holds the SA.
func (gw *Gateway) unlink(k key, e *entry) *sa.Tunnel {
	delete(gw.sas, k)
	gw.order = slices.DeleteFunc(gw.order, func(x key) bool { return x == k })
	t := gw.tunnels[e.tunnel]
	if t == nil {
		return nil
	}
	if k.dir == sa.In {
		t.RemoveInbound(e.sa)
		return nil
	}
	return t
}

// update changes the SA of k in place to the mutable attributes of c
// (lifetimes, path MTU, peer address and NAT-T port), keeping its
// sequence number, replay window and counters; c must differ from the
// entry's configuration in nothing else (same isum).
func (gw *Gateway) update(c *config.SA, sels []sa.Selector) error {
	k := keyOf(c)
	e := gw.sas[k]
	if e == nil {
		return fmt.Errorf("%w: %v SPI 0x%x", sa.ErrNotFound, k.dir, k.spi)
	}
	sc := c.SAConfig()
	ch := sa.Changes{SoftLifetime: &sc.SoftLifetime, HardLifetime: &sc.HardLifetime, PathMTU: &sc.PathMTU}
	if c.Remote != e.conf.Remote {
		ch.Remote = &sc.Remote
	}
	if c.Encap == config.EncapUDP && c.RemotePort != e.conf.RemotePort {
		ch.RemotePort = &sc.RemotePort
	}
	if err := e.sa.Update(ch); err != nil {
		return c.Pos.Errorf("%v", err)
	}
	e.sum = fingerprint(c, sels)
	if c.Remote != e.conf.Remote || c.RemotePort != e.conf.RemotePort {
		e.floated = nil // an explicit endpoint replaces a learnt one
	}
	e.conf = c
	wipeKeys(c)
	return nil
}

// replace swaps the SA of k for a new one made from c, make-before-break:
// an outbound tunnel switches to the new SA before the old one closes.
// With the same key, SAD.Replace carries the sequence number and replay
// window over (no sequence number is sent twice under one key).
func (gw *Gateway) replace(c *config.SA, g *config.Gateway, tunnel string) error {
	k := keyOf(c)
	old := gw.sas[k]
	if old == nil {
		return fmt.Errorf("%w: %v SPI 0x%x", sa.ErrNotFound, k.dir, k.spi)
	}
	s, sels, rid, err := gw.newSAState(c, g, tunnel, true)
	if err != nil {
		return err
	}
	sum, isum := fingerprint(c, sels), immutableFingerprint(c, sels)
	wipeKeys(c)
	gw.warnSelectors(c, sels)
	if s.SameKey(old.sa) {
		// SAD.Replace looks the old SA up under s's key (SPI and peer):
		// move the old SA to s's peer first, in place.
		if err := movePeer(old.sa, s); err != nil {
			s.Close()
			return err
		}
		// Same key: s must not send or accept anything before
		// SAD.Replace carried the old SA's sequence number and window
		// into it (else it would start at 1 again: nonce reuse), so it
		// goes into the SAD first and into the tunnel after.
		if _, err := gw.sad.Replace(s); err != nil {
			s.Close()
			return err
		}
		gw.sas[k] = &entry{sa: s, conf: c, sum: sum, isum: isum, tunnel: tunnel, sels: sels, rid: rid}
		if t := gw.tunnels[old.tunnel]; t != nil {
			if k.dir == sa.In {
				t.RemoveInbound(old.sa)
			} else {
				gw.rebindOut(t)
			}
		}
		gw.bind(k)
		return nil
	}
	gw.sas[k] = &entry{sa: s, conf: c, sum: sum, isum: isum, tunnel: tunnel, sels: sels, rid: rid}
	if t := gw.tunnels[old.tunnel]; t != nil && old.tunnel != tunnel {
		if k.dir == sa.In {
			t.RemoveInbound(old.sa)
		} else {
			gw.rebindOut(t)
		}
	}
	gw.bind(k)
	if err := gw.swapSA(old.sa, s); err != nil {
		gw.sas[k] = old
		gw.bind(k)
		s.Close()
		return err
	}
	if k.dir == sa.In {
		if t := gw.tunnels[tunnel]; t != nil {
			t.RemoveInbound(old.sa)
		}
	}
	gw.saveWindow(old) // closed by the swap
	return nil
}

// swapSA puts s in old's place in the SAD: Replace when both have the
// same SAD key; an outbound SA whose NAT-T port changed has another key,
// so it is added before the old one is deleted (make-before-break).
func (gw *Gateway) swapSA(old, s *sa.SA) error {
	oc, nc := old.Config(), s.Config()
	if s.Direction() == sa.Out && (oc.UDPEncap != nc.UDPEncap || oc.RemotePort != nc.RemotePort || oc.Remote != nc.Remote) {
		if err := gw.sad.Add(s); err != nil {
			return err
		}
		return gw.sad.DeleteSA(old)
	}
	_, err := gw.sad.Replace(s)
	return err
}

// movePeer moves the outbound SA old to the peer address and NAT-T port
// of s, in place (SA.Update), so that both have the same SAD key.
func movePeer(old, s *sa.SA) error {
	if s.Direction() != sa.Out {
		return nil
	}
	oc, nc := old.Config(), s.Config()
	var ch sa.Changes
	if oc.Remote != nc.Remote {
		ch.Remote = &nc.Remote
	}
	if oc.UDPEncap && nc.UDPEncap && oc.RemotePort != nc.RemotePort {
		ch.RemotePort = &nc.RemotePort
	}
	if ch.Remote == nil && ch.RemotePort == nil {
		return nil
	}
	return old.Update(ch)
}

// wipeKeys clears the key material of a configured SA once the sa.SA
// holds its own copy.
func wipeKeys(c *config.SA) {
	c.Key.Wipe()
	c.AuthKey.Wipe()
}

func (gw *Gateway) closeSAs() {
	for _, k := range gw.order {
		gw.sad.DeleteSA(gw.sas[k].sa)
	}
	gw.sas, gw.order = map[key]*entry{}, nil
}

// policies converts the configured policies.
func (gw *Gateway) policies(g *config.Gateway) []*sa.Policy {
	var out []*sa.Policy
	for _, p := range g.Policies {
		pol := &sa.Policy{Name: p.Name, Selector: p.Selector, Action: p.Action}
		if p.Tunnel != "" {
			pol.Tunnel = gw.tunnels[p.Tunnel]
		}
		if p.SA != "" {
			for _, k := range gw.order {
				if e := gw.sas[k]; k.dir == sa.Out && e.conf.Name == p.SA {
					pol.SA = e.sa
				}
			}
		}
		out = append(out, pol)
	}
	return out
}

func xdpMode(s string) xdp.Mode {
	switch s {
	case "copy":
		return xdp.ModeCopy
	case "zerocopy":
		return xdp.ModeZeroCopy
	}
	return xdp.ModeAuto
}

func attachMode(s string) bpf.AttachMode {
	switch s {
	case "native":
		return bpf.AttachNative
	case "generic":
		return bpf.AttachGeneric
	}
	return bpf.AttachAuto
}

// inNS runs fn in the gateway's namespace.
func (gw *Gateway) inNS(fn func() error) error {
	if gw.opts.NetNS == "" {
		return fn()
	}
	return topo.Do(gw.opts.NetNS, fn)
}

// engineConfig is the xdp.EngineConfig of the configuration.
func (gw *Gateway) engineConfig() xdp.EngineConfig {
	g := gw.g
	ec := xdp.EngineConfig{
		Processor:  gw.proc,
		Cipher:     xdp.Port{Name: g.Cipher.Name, NextHop: g.Cipher.NextHop, VLAN: g.Cipher.VLAN},
		LocalAddrs: g.Cipher.Local,
		Queues:     g.Queues,
		Mode:       xdpMode(g.XDPMode),
		Attach:     attachMode(g.Attach),
		CPUs:       g.CPUs,
	}
	tuneEngine(&ec, g)
	if g.Plain != nil {
		ec.Plain = &xdp.Port{Name: g.Plain.Name, NextHop: g.Plain.NextHop, VLAN: g.Plain.VLAN}
		ec.ProtectedPrefixes = g.Protected
	}
	gw.routerOptions(&ec)
	ec.Unprotected, _ = Unprotected(g) // checked by New
	if g.Cipher.UDP {
		// No AF_XDP on the ciphertext side: the UDP port (udpport.go).
		ec.Cipher, ec.LocalAddrs, ec.Unprotected = xdp.Port{}, nil, bpf.Unprotected{}
		gw.udp = gw.newUDPCipherPort()
		ec.CipherPort = gw.udp
	}
	return ec
}

// Start creates the TUN device (if configured), starts the engine, the
// control socket and the background tasks.
func (gw *Gateway) Start() (err error) {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	if gw.running {
		return nil
	}
	gw.stop = make(chan struct{})
	defer func() {
		if err != nil {
			gw.teardown()
		}
	}()
	ec := gw.engineConfig()
	if t := gw.g.TUN; t != nil {
		if err := gw.inNS(func() error {
			tuns, err := openTUN(t.Name, gw.g.EngineWorkers(), gw.log)
			if err != nil {
				return err
			}
			gw.tun, gw.tunQ = tuns[0], tuns
			return setupTUN(t, gw.tunMTU())
		}); err != nil {
			return fmt.Errorf("gateway: tun %s: %w", t.Name, err)
		}
		if gw.tun.Offload() {
			// The workers read and write the device's queues themselves
			// (split into and coalesced from UMEM frames, no reader
			// goroutine, no copy between device and engine).
			port, err := xdp.NewTUNPort(gw.tunQ)
			if err != nil {
				return fmt.Errorf("gateway: tun %s: %w", t.Name, err)
			}
			ec.PlainPort = port
		} else {
			ec.Deliver = xdp.DeliverTUNs(gw.tunQ)
		}
	}
	eng, err := xdp.NewEngine(ec)
	if err != nil {
		return err
	}
	if err := gw.applyFailClosed(); err != nil { // before the engine: never a window
		return err
	}
	if err := gw.inNS(eng.Start); err != nil {
		return fmt.Errorf("gateway: start engine: %w", err)
	}
	gw.eng = eng
	gw.running = true
	gw.started = time.Now()
	watch := []string{gw.g.Cipher.Name}
	if gw.g.Plain != nil {
		watch = append(watch, gw.g.Plain.Name)
	}
	if gw.tun != nil {
		watch = append(watch, gw.tun.Name())
	}
	gw.startLinkMonitor(watch)
	for q, tun := range gw.tunQ {
		if ec.PlainPort != nil {
			break // the workers read the queues
		}
		// One reader per queue of the device: queue q feeds worker q.
		gw.wg.Add(1)
		go func() {
			defer gw.wg.Done()
			if err := xdp.ServeTUN(eng, tun, q, gw.stop); err != nil {
				gw.log.Error("tun reader stopped", "tun", tun.Name(), "queue", q, "err", err)
			}
		}()
	}
	if gw.g.Control != "" {
		ctl, err := gw.listenControl(gw.g.Control)
		if err != nil {
			return err
		}
		gw.ctl = ctl
	}
	if err := gw.startMetrics(); err != nil {
		return err
	}
	gw.wg.Add(4)
	go gw.sweep()
	go gw.logEvents()
	// Options read once here: Reload swaps gw.g but refuses to change
	// these (ErrRestart).
	go gw.logDrops(gw.g.LogDrops)
	go gw.keepalives(gw.g.Keepalive)
	gw.warnStatic(gw.cfg.SAs)
	gw.wg.Add(1)
	go gw.logUnprotected(gw.g.LogDrops)
	gw.startPMTU()
	if gw.udp != nil {
		gw.wg.Add(1)
		go gw.dispatchUDPIKE(gw.udp.Addr().Addr(), gw.stop)
	}
	if err := gw.startIKE(); err != nil {
		return err
	}
	gw.log.Info("gateway running", "cipher", gw.g.Cipher.Name, "plain", plainName(gw.g), "queues", gw.g.Queues,
		"workers", gw.g.EngineWorkers(), "steering", eng.Steering().String(), "sas", len(gw.sas))
	return nil
}

// counterIV reports whether a transform's IV is the sequence number
// (AES-GCM, GMAC, ChaCha20-Poly1305, AES-CTR): a repeated sequence number
// under the same key repeats a nonce.
func counterIV(t esp.Transform) bool { return t.CounterIV() }

// warnStatic warns loudly about outbound SAs with counter-based IVs when
// there is no state_dir: RFC 4106 §2 requires automated key management
// for these transforms; with static keys only a persisted sequence
// number keeps a restart from reusing nonces.
func (gw *Gateway) warnStatic(sas []*config.SA) {
	if gw.g.StateDir != "" {
		return
	}
	var names []string
	for _, c := range sas {
		if c.Direction == config.Out && counterIV(c.Transform) {
			names = append(names, c.Name)
		}
	}
	if len(names) > 0 {
		gw.log.Warn("STATIC KEYS WITHOUT STATE: these outbound SAs use a counter-based IV (RFC 4106 §2 requires automated key management); without gateway.state_dir a restart starts their sequence numbers at 1 again and REUSES NONCES under the same key, and the peer drops the traffic as replays. Set gateway.state_dir or rekey on every restart.",
			"sas", names)
	}
}

func plainName(g *config.Gateway) string {
	if g.Plain != nil {
		return g.Plain.Name
	}
	if g.TUN != nil {
		return "tun:" + g.TUN.Name
	}
	return ""
}

// tunMTU is the TUN's MTU: the smallest plaintext MTU of the outbound
// SAs (which follows the path MTUs learned from ICMP), at most the
// configured MTU; without either 1400.
func (gw *Gateway) tunMTU() int {
	mtu := 0
	for _, k := range gw.order {
		if k.dir != sa.Out {
			continue
		}
		if m := gw.sas[k].sa.PlaintextMTU(); m > 0 && (mtu == 0 || m < mtu) {
			mtu = m
		}
	}
	if c := gw.g.TUN.MTU; c > 0 && (mtu == 0 || c < mtu) {
		mtu = c
	}
	if mtu == 0 {
		mtu = 1400
	}
	return min(mtu, xdp.TUNBufSize-1)
}

// Close stops everything Start started, deletes the SAs (wiping their
// keys) and removes the control socket. The gateway cannot be restarted.
func (gw *Gateway) Close() error {
	gw.mu.Lock()
	udp := gw.udp != nil
	gw.mu.Unlock()
	if udp {
		// The peers are told (IKE DELETE) through the UDP port, and
		// their answers come back through it: end IKE while the engine
		// and the dispatcher still run (teardown stops them).
		gw.stopIKE()
	}
	gw.mu.Lock()
	defer gw.mu.Unlock()
	err := gw.teardown()
	inbound := map[string]*sa.SA{}
	for k, e := range gw.sas {
		if k.dir == sa.In && e.rid != "" {
			inbound[e.rid] = e.sa
		}
	}
	gw.closeSAs()
	if gw.state != nil && len(inbound) > 0 {
		// Closed SAs export their exact windows.
		wins := map[string]sa.ReplayState{}
		for rid, s := range inbound {
			wins[rid] = s.ReplayState()
		}
		if serr := gw.state.saveReplay(wins); serr != nil {
			gw.log.Error("saving replay windows", "err", serr)
			err = errors.Join(err, serr)
		}
	}
	return err
}

// extendSeq reserves the next sequence block of every outbound SA that
// used half of its current one (only: just that SA), durably, then
// raises its limit. Called on EventSeqLimit and by the sweeper (in case
// an event was lost).
func (gw *Gateway) extendSeq(only *sa.SA) {
	if gw.state == nil {
		return
	}
	gw.mu.Lock()
	defer gw.mu.Unlock()
	for k, e := range gw.sas {
		if k.dir != sa.Out || e.rid == "" || (only != nil && e.sa != only) {
			continue
		}
		lim := e.sa.SeqLimit()
		if lim == 0 || e.sa.Seq() < lim-min(lim, seqBlock/2) || e.sa.State() >= sa.StateExpired {
			continue
		}
		n, err := gw.state.extend(e.rid, e.conf.ESN)
		if err != nil {
			// Traffic stops at the old limit (DropSeqLimit) rather
			// than risk a reuse.
			gw.log.Error("cannot persist the next sequence reservation; the SA will stop at its limit", "sa", e.conf.Name, "limit", lim, "err", err)
			continue
		}
		e.sa.SetSeqLimit(n)
	}
}

// teardown stops what runs; gw.mu is held.
func (gw *Gateway) teardown() error {
	var errs []error
	if gw.stop != nil {
		select {
		case <-gw.stop:
		default:
			close(gw.stop)
		}
	}
	if gw.ctl != nil {
		errs = append(errs, gw.ctl.close())
		gw.ctl = nil
	}
	errs = append(errs, gw.stopMetrics())
	if gw.eng != nil {
		errs = append(errs, gw.eng.Stop())
	}
	gw.stopLinkMonitor()
	gw.mu.Unlock()
	gw.stopIKE() // deletes the peers' SAs: takes gw.mu
	gw.wg.Wait() // background tasks may take gw.mu
	gw.mu.Lock()
	for _, t := range gw.tunQ {
		errs = append(errs, t.Close())
	}
	gw.tun, gw.tunQ = nil, nil
	gw.running = false
	return errors.Join(errs...)
}

// Running reports whether Start succeeded and Close was not called.
func (gw *Gateway) Running() bool {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	return gw.running
}

// Processor returns the gateway's SA processor (for its SAD, SPD...).
func (gw *Gateway) Processor() *sa.Processor { return gw.proc }

// SAD returns the gateway's SAD.
func (gw *Gateway) SAD() *sa.SAD { return gw.sad }

// SAStats returns the counters of every SA, in configuration order (SAs
// added over the control socket last).
func (gw *Gateway) SAStats() []sa.Stats {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	out := make([]sa.Stats, 0, len(gw.order))
	now := time.Now()
	for _, k := range gw.order {
		out = append(out, gw.sas[k].sa.StatsAt(now))
	}
	return out
}

// Report is the SA counters as internal/show prints them.
func (gw *Gateway) Report(title string) *show.Report {
	es := gw.Stats() // with the processor's counters
	r := &show.Report{Title: title, SAs: gw.SAStats(), Unowned: &es.Processor.Drops}
	r.Extra = []show.Counter{
		{Name: "cipher rx", Value: es.CipherRX}, {Name: "plain rx", Value: es.PlainRX},
		{Name: "encrypted", Value: es.Encrypted}, {Name: "decrypted", Value: es.Decrypted},
		{Name: "bypassed", Value: es.Bypassed}, {Name: "mtu drops", Value: es.MTUDrops},
		{Name: "nat-t keepalives sent", Value: es.KeepalivesSent},
	}
	r.Extra = append(r.Extra, gw.routerCounters(es)...)
	r.Extra = append(r.Extra, unprotectedCounters(es)...)
	return r
}

// Stats is a snapshot of the gateway's counters.
type Stats struct {
	Uptime time.Duration `json:"uptime_ns"`
	// Sums over the engine's workers.
	CipherRX  uint64 `json:"cipher_rx"`
	PlainRX   uint64 `json:"plain_rx"`
	Encrypted uint64 `json:"encrypted"`
	Decrypted uint64 `json:"decrypted"`
	Bypassed  uint64 `json:"bypassed"`
	SADrops   uint64 `json:"sa_drops"`
	MTUDrops  uint64 `json:"mtu_drops"`
	TXFull    uint64 `json:"tx_full"`
	// Router duties (gateway options mss_clamp, decrement_ttl,
	// icmp_errors).
	MSSClamped      uint64 `json:"mss_clamped"`
	TTLExpired      uint64 `json:"ttl_expired"`
	ICMPSent        uint64 `json:"icmp_sent"`
	ICMPRateLimited uint64 `json:"icmp_rate_limited"`
	ICMPNotSent     uint64 `json:"icmp_not_sent"`

	// Clear text from the remote protected networks discarded by the
	// XDP program (RFC 4301 §5.2), exempted by bypass policies, and the
	// discards by tunnel name ("-": no tunnel).
	UnprotectedDropped  uint64            `json:"unprotected_dropped"`
	UnprotectedBypassed uint64            `json:"unprotected_bypassed"`
	UnprotectedByTunnel map[string]uint64 `json:"unprotected_by_tunnel,omitempty"`

	KeepalivesSent     uint64 `json:"keepalives_sent"`
	KeepalivesReceived uint64 `json:"keepalives_received"`
	KeepaliveErrors    uint64 `json:"keepalive_errors"`
	EventsLost         uint64 `json:"events_lost"`
	// Event stream: subscribers now, events they lost (slow readers).
	Subscribers     int    `json:"subscribers"`
	SubscribersLost uint64 `json:"subscribers_lost"`

	// Links are the gateway's interfaces as the link monitor saw them.
	Links []LinkState `json:"links,omitempty"`

	// EngineInfo is the data plane's layout: steering, workers, queues.
	EngineInfo
	// Kernel sums the kernel's AF_XDP counters (XDP_STATISTICS) over all
	// the engine's sockets (xdp.EngineStats.KernelTotals): packets it
	// dropped because a socket's RX ring was full or it had no frame to
	// receive into, invalid descriptors. Per socket in Engine.
	Kernel xdp.KernelStats `json:"kernel"`

	Processor sa.ProcessorStats `json:"processor"`
	Engine    xdp.EngineStats   `json:"engine"`
	// Wire: path MTU discovery and VLAN counters (wire.go).
	Wire WireStats `json:"wire"`
	// TUN sums the route-based TUN's queues (nil without a TUN):
	// super-packets split and coalesced by its offloads, drops.
	TUN *xdp.TUNStats `json:"tun,omitempty"`
}

// Stats returns the gateway's counters.
func (gw *Gateway) Stats() Stats {
	gw.mu.Lock()
	eng := gw.eng
	started := gw.started
	tuns := gw.tunQ
	var s Stats
	s.Workers, s.Queues = gw.g.EngineWorkers(), gw.g.Queues
	gw.mu.Unlock()
	if len(tuns) > 0 {
		s.TUN = new(xdp.TUNStats)
		for _, t := range tuns {
			s.TUN.Add(t.Stats())
		}
	}
	if eng != nil {
		s.Engine = eng.Stats()
		s.Steering = eng.Steering().String()
		s.Kernel = s.Engine.KernelTotals()
		for _, w := range s.Engine.Workers {
			s.CipherRX += w.CipherRX
			s.PlainRX += w.PlainRX
			s.Encrypted += w.Encrypted
			s.Decrypted += w.Decrypted
			s.Bypassed += w.Bypassed
			s.SADrops += w.SADrops
			s.MTUDrops += w.MTUDrops
			s.TXFull += w.TXFull
			s.MSSClamped += w.MSSClamped
			s.TTLExpired += w.TTLExpired
			s.ICMPSent += w.ICMPSent
			s.ICMPRateLimited += w.ICMPRateLimited
			s.ICMPNotSent += w.ICMPNotSent
		}
		s.Uptime = time.Since(started)
		gw.unprotectedStats(&s)
	}
	s.Processor = gw.proc.Stats()
	s.Wire = gw.wireStats(s.Engine)
	s.KeepalivesSent, s.KeepalivesReceived, s.KeepaliveErrors = gw.kaSent.Load(), gw.kaRecv.Load(), gw.kaErrors.Load()
	s.EventsLost = gw.eventsLost.Load()
	s.Subscribers, s.SubscribersLost = gw.hub.count(), gw.hub.lost.Load()
	s.Links = gw.links.snapshot()
	return s
}

// sweepInterval is how often time lifetimes are checked without traffic.
const sweepInterval = time.Second

// sweep checks the SAs' time lifetimes every sweepInterval, so that an
// idle SA still expires (and raises its events) on time rather than at
// its next packet.
func (gw *Gateway) sweep() {
	defer gw.wg.Done()
	tick := time.NewTicker(sweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-gw.stop:
			return
		case now := <-tick.C:
			gw.sad.Sweep(now)
			gw.extendSeq(nil)
		}
	}
}

// logEvents logs SA lifetime and acquire events.
func (gw *Gateway) logEvents() {
	defer gw.wg.Done()
	for {
		select {
		case <-gw.stop:
			return
		case e := <-gw.events:
			gw.countEvent(e.Kind)
			gw.hub.publish(eventOf(e))
			if e.Kind == sa.EventSeqLimit {
				gw.extendSeq(e.SA)
				continue
			}
			if e.Kind == sa.EventSoftExpire && e.SA != nil {
				gw.rekeyOn(e.SA) // IKE-owned SAs only
			}
			if e.Kind == sa.EventHardExpire && e.SA != nil {
				gw.hardExpiredIKE(e.SA) // IKE-owned SAs only
			}
			switch e.Kind {
			case sa.EventAcquire:
				pol := ""
				if e.Policy != nil {
					pol = e.Policy.Name
				}
				gw.log.Warn("acquire: no SA for protected traffic", "policy", pol, "tunnel", e.TunnelName, "src", e.Packet.Src, "dst", e.Packet.Dst, "proto", e.Packet.Proto)
			case sa.EventDeleted:
				gw.log.Info("sa event", "event", e.Kind.String(), "sa", e.Name, "spi", fmt.Sprintf("0x%x", e.SPI), "dir", e.Direction.String())
			case sa.EventEndpointChanged:
				gw.log.Warn("sa event", "event", e.Kind.String(), "sa", e.Name, "spi", fmt.Sprintf("0x%x", e.SPI), "endpoint", e.Endpoint.String())
				gw.followEndpoint(e)
			default:
				gw.log.Warn("sa event", "event", e.Kind.String(), "sa", e.Name, "spi", fmt.Sprintf("0x%x", e.SPI), "dir", e.Direction.String(), "limit", e.Limit.String())
			}
		}
	}
}

// maxDropLines bounds the drop log per interval.
const maxDropLines = 16

// logDrops logs, every LogDrops interval, the drops counted since the
// last one: at most maxDropLines lines, the largest first.
func (gw *Gateway) logDrops(interval time.Duration) {
	defer gw.wg.Done()
	if interval <= 0 {
		return
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	last := map[string]uint64{}
	for {
		select {
		case <-gw.stop:
			return
		case <-tick.C:
		}
		lines := gw.dropDeltas(last)
		for i, l := range lines {
			if i == maxDropLines {
				gw.log.Warn("drops", "more", len(lines)-maxDropLines)
				break
			}
			gw.log.Warn("drops", "where", l.where, "reason", l.reason, "count", l.n, "interval", interval)
		}
	}
}

type dropLine struct {
	where, reason string
	n             uint64
}

// dropDeltas returns the drop counts that grew since last (updating it),
// largest first.
func (gw *Gateway) dropDeltas(last map[string]uint64) []dropLine {
	var out []dropLine
	add := func(where string, d *sa.DropCounts) {
		for r, n := range d {
			if n == 0 {
				continue
			}
			k := where + "|" + sa.DropReason(r).String()
			if n > last[k] {
				out = append(out, dropLine{where, sa.DropReason(r).String(), n - last[k]})
			}
			last[k] = n
		}
	}
	es := gw.Stats() // with the processor's counters
	add("processor", &es.Processor.Drops)
	for _, st := range gw.SAStats() {
		add("sa "+st.Name, &st.Drops)
	}
	for name, n := range map[string]uint64{"tx ring full": es.TXFull} {
		k := "engine|" + name
		if n > last[k] {
			out = append(out, dropLine{"engine", name, n - last[k]})
		}
		last[k] = n
	}
	slices.SortStableFunc(out, func(a, b dropLine) int {
		switch {
		case a.n > b.n:
			return -1
		case a.n < b.n:
			return 1
		}
		return 0
	})
	return out
}

// keepalives sends a NAT-keepalive (RFC 3948 §2.3: one 0xFF byte in UDP
// from the NAT-T port) to the peer of every UDP-encapsulating outbound SA
// each interval, from a raw socket in the gateway's namespace, so that
// the NAT-T port stays free for an IKE daemon (keepalive_linux.go); the
// peers' keepalives are counted from copies.
func (gw *Gateway) keepalives(interval time.Duration) {
	defer gw.wg.Done()
	if interval <= 0 {
		return
	}
	var ka *kaSocket
	wait := func() {}
	defer func() {
		if ka != nil {
			ka.close()
			wait()
		}
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for first := true; ; first = false {
		if !first {
			select {
			case <-gw.stop:
				return
			case <-tick.C:
			}
		}
		peers, port := gw.nattPeers()
		if len(peers) == 0 {
			continue
		}
		if ka == nil {
			err := gw.inNS(func() (err error) {
				ka, err = openKeepalive(port)
				return err
			})
			if err != nil {
				gw.kaErrors.Add(1)
				gw.log.Error("nat-t keepalive socket", "err", err)
				ka = nil
				continue
			}
			wait = ka.count(func() { gw.kaRecv.Add(1) })
		}
		for _, p := range peers {
			if err := ka.send(p.local, p.remote); err != nil {
				gw.kaErrors.Add(1)
				continue
			}
			gw.kaSent.Add(1)
		}
	}
}

// kaPeer is one keepalive flow: from our NAT-T address to the peer's.
type kaPeer struct{ local, remote netip.AddrPort }

// nattPeers returns the distinct keepalive flows of the live
// UDP-encapsulating outbound SAs and the local port whose keepalives are
// counted.
func (gw *Gateway) nattPeers() ([]kaPeer, uint16) {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	var out []kaPeer
	port := uint16(0)
	for _, k := range gw.order {
		e := gw.sas[k]
		if k.dir != sa.Out || e.conf.Encap != config.EncapUDP || e.sa.State() >= sa.StateExpired {
			continue
		}
		// The SA's current endpoint: a NAT-T peer that floated
		// (followEndpoint) gets its keepalives at the new one.
		c := e.sa.Config()
		p := kaPeer{netip.AddrPortFrom(c.Local, c.LocalPort), netip.AddrPortFrom(c.Remote, c.RemotePort)}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
		if port == 0 {
			port = c.LocalPort
		}
	}
	return out, port
}

var _ io.Closer = (*Gateway)(nil)
