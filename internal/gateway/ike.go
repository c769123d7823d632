package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/espxdp/espxdp/ike"
	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/sa"
)

// This file runs the IKEv2 peers of the configuration (peers:): one
// ike.Endpoint per peer, on UDP sockets (ports 500 and 4500) per local
// address that the gateway reads itself and shares between the peers
// on that address (the XDP program passes IKE, and the non-ESP-marker
// and keepalive traffic of port 4500, to the kernel; ESP in UDP goes to
// the data plane). Each datagram goes to the Endpoint of the peer with
// that remote address, or else to the first %any peer of the local
// address.
//
// Child SAs are installed as one (addIKEChild: both SAs or none), bound
// to the peer's tunnel with the negotiated selectors, owned by the IKE
// SA (show sa, show ike). The tunnel sends on one child per peer, the
// primary: the oldest child of the newest IKE SA that is not retiring.
// A rekey is make-before-break on both sides: the successor is
// installed (inbound and outbound) while the old child stays primary;
// when the old child is deleted (by us after the rekey, or by the
// peer), it retires: the tunnel switches to the successor at once and
// the old SAs are deleted retireGrace later, so that the packets the
// peer sent under them before it switched still arrive.
//
// Invariant (no loss at a rekey, TestIKERekeyProperty): at any time
// the peer's tunnel sends on a child whose inbound SA the peer has
// installed (the oldest non-retiring one, which both sides have), and
// every inbound SA the peer may still send on is installed.
//
// Invariant (keys): key material goes from the ike.ChildSA into copies
// in config.SAs that addSAs wipes once the sa.SAs are built; it is never
// logged (the logs name SPIs, addresses, identities and algorithms).

// retireGrace is how long a retired child's SAs stay installed.
var retireGrace = 2 * time.Second

// IKE errors.
var (
	// ErrNoPeer: no peer of that name.
	ErrNoPeer = errors.New("gateway: no such IKE peer")
	// ErrNotInitiator: the peer has no remote address (%any).
	ErrNotInitiator = errors.New("gateway: peer has no remote address (%any): it only responds")
	// ErrInProgress: the negotiation did not finish in the time given.
	ErrInProgress = errors.New("gateway: IKE negotiation still in progress")
)

// ikeOwner is the IKE SA an installed SA belongs to.
type ikeOwner struct {
	peer  string
	c     *ike.ChildSA
	child sa.ChildID
}

// current is the IKE SA that owns the child now.
func (o *ikeOwner) current() *ike.IKESA {
	if s := o.c.Owner(); s != nil {
		return s
	}
	return o.c.IKE
}

// ikeSocks are the IKE sockets of one local address.
type ikeSocks struct {
	addr        netip.Addr
	ike, natt   *net.UDPConn // natt nil where the UDP cipher port has 4500
	wIKE, wNATT net.PacketConn
}

// sharedConn is a socket that Endpoints write to; closing it is the
// gateway's business (Endpoint.Close must not close it for the others).
type sharedConn struct{ *net.UDPConn }

// Close does nothing: the gateway closes the socket.
func (sharedConn) Close() error { return nil }

// ikeChild is a child SA the gateway installed for a peer.
type ikeChild struct {
	id        sa.ChildID
	c         *ike.ChildSA // for Owner (its keys are wiped)
	ikeSA     *ike.IKESA   // the IKE SA that negotiated it
	in, out   uint32
	transform string
	esn       bool
	localTS   []string
	remoteTS  []string
	added     time.Time
	retiring  bool
	rekeying  bool
}

// ikePeer is one configured peer at run time.
type ikePeer struct {
	gw   *Gateway
	conf *config.Peer
	sum  [32]byte
	ep   *ike.Endpoint
	log  *slog.Logger
	stop chan struct{}
	kick chan struct{}
	done chan struct{}

	// primaryMu serializes updatePrimary: choosing the primary child and
	// binding it are one step, so that a choice made before a child was
	// installed never overwrites a later one (callbacks run on several
	// goroutines: the socket readers, Terminate, the ike timers).
	primaryMu sync.Mutex

	mu       sync.Mutex
	current  *ike.IKESA   // the newest established IKE SA
	sas      []*ike.IKESA // every IKE SA with children, oldest first
	children []*ikeChild
	held     bool // terminated by the operator: no automatic initiation
	restart  bool // a dead peer with dpd_action restart: initiate again (also with start_action none)
	lastErr  string
	// psk is the Endpoint's copy of the PSK (ike.Config.PSK), wiped
	// once the Endpoint is closed (removePeer).
	psk []byte
	// inits are the initiations in flight (initiate); termGen counts
	// Terminate calls, so that an initiation that began before one
	// knows it was overtaken.
	inits   map[*initAttempt]struct{}
	termGen uint64

	up atomic.Bool
}

// initAttempt is one initiation in flight.
type initAttempt struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// ErrTerminated: the initiation was overtaken by ike terminate (or the
// peer's removal); its IKE SA, if it came up, was deleted.
var ErrTerminated = errors.New("gateway: IKE initiation cancelled by terminate")

// stopInitiations cancels the initiations in flight and waits (at most
// wait) until they have returned, which deletes what they negotiated.
//
// Invariant (TestRedTeamTerminateDuringInitiation): once Terminate (or
// removePeer) returns, no initiation that began before it leaves an
// IKE SA: initiate either fails (its context cancelled: the ike package
// abandons the half-open SA) or sees termGen changed and deletes the
// IKE SA it got, before the attempt is done.
func (p *ikePeer) stopInitiations(wait time.Duration) {
	p.mu.Lock()
	p.termGen++
	var done []chan struct{}
	for a := range p.inits {
		a.cancel()
		done = append(done, a.done)
	}
	p.mu.Unlock()
	deadline := time.After(wait)
	for _, d := range done {
		select {
		case <-d:
		case <-deadline:
			return
		}
	}
}

// ikeState is the gateway's IKE part (gw.ike).
type ikeState struct {
	mu    sync.Mutex
	socks map[netip.Addr]*ikeSocks
	peers []*ikePeer
	wg    sync.WaitGroup
}

// startIKE opens the sockets and starts the peers of the configuration
// (gw.mu held, in Start).
func (gw *Gateway) startIKE() error {
	gw.ike.socks = map[netip.Addr]*ikeSocks{}
	for _, pc := range gw.cfg.Peers {
		if err := gw.addPeer(pc); err != nil {
			return err
		}
	}
	return nil
}

// socksFor returns (opening them on first use) the sockets of a local
// address (gw.ike.mu held).
func (gw *Gateway) socksFor(a netip.Addr) (*ikeSocks, error) {
	if s := gw.ike.socks[a]; s != nil {
		return s, nil
	}
	s := &ikeSocks{addr: a}
	// With a UDP cipher port on a (interfaces.cipher.mode udp), port
	// 4500 is the port's: IKE datagrams reach the peers through its
	// NonESP callback (udpNonESP) and leave through its sockets.
	shared := gw.udp != nil && gw.udp.Addr().Addr() == a
	err := gw.inNS(func() error {
		var err error
		if s.ike, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 500))); err != nil {
			return err
		}
		if shared {
			return nil
		}
		if s.natt, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 4500))); err != nil {
			s.ike.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: IKE sockets on %v: %w", a, err)
	}
	s.wIKE = sharedConn{s.ike}
	if shared {
		s.wNATT = udpPortConn{gw.udp}
	} else {
		s.wNATT = sharedConn{s.natt}
	}
	gw.ike.socks[a] = s
	for _, c := range []*net.UDPConn{s.ike, s.natt} {
		if c == nil {
			continue
		}
		gw.ike.wg.Add(1)
		go gw.readIKE(s, c, c == s.natt)
	}
	return s, nil
}

// close closes the sockets.
func (s *ikeSocks) close() {
	s.ike.Close()
	if s.natt != nil {
		s.natt.Close()
	}
}

// readIKE reads one IKE socket until it is closed and dispatches every
// datagram.
func (gw *Gateway) readIKE(s *ikeSocks, c *net.UDPConn, natt bool) {
	defer gw.ike.wg.Done()
	buf := make([]byte, ike.MaxMessageLen)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if p := gw.peerFor(s.addr, from.Addr()); p != nil {
			p.ep.HandlePacket(buf[:n], from, natt)
		} else {
			gw.ikeUnknown.Add(1)
		}
	}
}

// peerFor returns the peer of a datagram from remote to local: the
// peer with that remote address, else the first %any peer of local.
func (gw *Gateway) peerFor(local, remote netip.Addr) *ikePeer {
	gw.ike.mu.Lock()
	defer gw.ike.mu.Unlock()
	var any *ikePeer
	for _, p := range gw.ike.peers {
		if p.conf.Local != local {
			continue
		}
		if p.conf.Remote == remote {
			return p
		}
		if any == nil && p.conf.Responder() {
			any = p
		}
	}
	return any
}

// addPeer creates a peer's Endpoint and starts its manager.
func (gw *Gateway) addPeer(pc *config.Peer) error {
	gw.ike.mu.Lock()
	defer gw.ike.mu.Unlock()
	s, err := gw.socksFor(pc.Local)
	if err != nil {
		return err
	}
	p := &ikePeer{gw: gw, conf: pc, sum: pc.Fingerprint(), stop: make(chan struct{}), kick: make(chan struct{}, 1),
		done: make(chan struct{}), log: gw.log.With("peer", pc.Name)}
	var lts, rts []ike.TrafficSelector
	for _, x := range pc.LocalTS {
		lts = append(lts, ike.SelectorFromPrefix(x))
	}
	for _, x := range pc.RemoteTS {
		rts = append(rts, ike.SelectorFromPrefix(x))
	}
	ic := ike.Config{
		PSK:           slices.Clone(pc.PSK),
		LocalID:       config.Identity(pc.LocalID, pc.Local),
		IKEProposals:  pc.IKEProposals,
		ESPTransforms: pc.ESPProposals,
		ESN:           pc.ESN,
		LocalTS:       lts, RemoteTS: rts,
		SAD:         gw.sad,
		OnChild:     p.onChild,
		OnChildDown: p.onChildDown,
		OnIKEUp:     p.established,
		OnIKEDown:   p.onIKEDown,
		// Dead peer detection is the ike package's (probes only when
		// the IKE SA and its children were idle for dpd_delay); what
		// follows a dead peer is the manager's (onIKEDown).
		DPDAction:       "clear",
		InboundActivity: p.inboundActivity,
		OnRemoteChanged: p.remoteChanged,
		OnESP:           func(_ []byte, from netip.AddrPort) { gw.strayESP(from) },
		ForceEncap:      pc.Encap || gw.g.Cipher.UDP, // a UDP cipher port carries ESP in UDP only
		Retransmit:      pc.RetransmitTimeout,
		Retries:         pc.RetransmitTries,
		Logger:          p.log,
	}
	if pc.RemoteID != "" {
		ic.RemoteID = config.Identity(pc.RemoteID, netip.Addr{})
	}
	if pc.DPDAction != "none" {
		ic.DPDDelay = pc.DPDDelay
	}
	ic.IKELifetime = pc.IKERekeyTime
	if ic.IKELifetime == 0 {
		ic.IKELifetime = -1 // ike_rekey_time: 0 is never
	}
	p.ep, err = ike.NewEndpoint(ic, s.wIKE, s.wNATT) // keeps ic.PSK, a copy
	pc.PSK.Wipe()                                    // p.sum was computed before
	p.psk = ic.PSK
	if err != nil {
		clear(ic.PSK)
		return pc.Pos.Errorf("%v", err)
	}
	gw.ike.peers = append(gw.ike.peers, p)
	gw.ike.wg.Add(1)
	go p.run()
	p.log.Info("ike peer added", "local", pc.Local.String(), "remote", remoteName(pc), "start_action", pc.StartAction, "tunnel", pc.Tunnel)
	return nil
}

// strayESP counts ESP in UDP that reached an IKE socket (the data
// plane did not take it) and is dropped.
//
// Invariant (TestRedTeamStrayESPNotSilent): such a drop is never
// silent: it is counted (espxdp_ike_stray_total{what="esp"}) and the
// first one, then at most one a minute, is logged with the total.
func (gw *Gateway) strayESP(from netip.AddrPort) {
	n := gw.ikeESP.Add(1)
	now := time.Now().UnixNano()
	last := gw.ikeESPLogged.Load()
	if (last == 0 || now-last >= int64(time.Minute)) && gw.ikeESPLogged.CompareAndSwap(last, now) {
		gw.log.Warn("ESP in UDP reached the IKE socket (not taken by the XDP program: generic mode, a frame too large for it?); dropped",
			"from", from.String(), "total", n)
	}
}

func remoteName(pc *config.Peer) string {
	if pc.Responder() {
		return "%any"
	}
	return pc.Remote.String()
}

// removePeer stops a peer: its IKE SAs are deleted (the peer told, for
// at most timeout) and its child SAs with them.
func (gw *Gateway) removePeer(p *ikePeer, timeout time.Duration) {
	gw.ike.mu.Lock()
	gw.ike.peers = slices.DeleteFunc(gw.ike.peers, func(x *ikePeer) bool { return x == p })
	gw.ike.mu.Unlock()
	close(p.stop)
	<-p.done
	p.stopInitiations(3 * time.Second) // those of ike initiate
	p.deleteAll(timeout)
	p.ep.Close()
	// Invariant (keys): a stopped peer's PSK does not outlive it. Once
	// Close returned no exchange runs (ike: no callback or message
	// handling after Close), so nothing reads the copy any more.
	clear(p.psk)
	// The children went down through OnChildDown; delete now what is
	// left (retiring ones included).
	p.mu.Lock()
	ids := make([]sa.ChildID, 0, len(p.children))
	for _, c := range p.children {
		ids = append(ids, c.id)
	}
	p.children = nil
	p.mu.Unlock()
	for _, id := range ids {
		gw.deleteChild(id, true)
	}
	p.up.Store(false)
	p.log.Info("ike peer removed")
}

// stopIKE stops every peer and closes the sockets (not holding gw.mu).
func (gw *Gateway) stopIKE() {
	gw.ike.mu.Lock()
	peers := slices.Clone(gw.ike.peers)
	gw.ike.mu.Unlock()
	for _, p := range peers {
		gw.removePeer(p, time.Second)
	}
	gw.ike.mu.Lock()
	for a, s := range gw.ike.socks {
		s.close()
		delete(gw.ike.socks, a)
	}
	gw.ike.mu.Unlock()
	gw.ike.wg.Wait()
}

// deleteAll deletes the peer's IKE SAs (telling the peer).
func (p *ikePeer) deleteAll(timeout time.Duration) {
	p.mu.Lock()
	all := slices.Clone(p.sas)
	if p.current != nil && !slices.Contains(all, p.current) {
		all = append(all, p.current)
	}
	p.mu.Unlock()
	for _, s := range all {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		s.Delete(ctx)
		cancel()
	}
}

// run is the peer's manager: it initiates (start_action start, and
// after a dead peer with dpd_action restart), again with back-off while
// that fails; liveness checks are the ike package's (onIKEDown).
func (p *ikePeer) run() {
	defer p.gw.ike.wg.Done()
	defer close(p.done)
	backoff := time.Second
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	auto := p.conf.StartAction == "start"
	nextTry := time.Now()
	for {
		p.mu.Lock()
		cur, held, restart := p.current, p.held, p.restart
		p.mu.Unlock()
		live := cur != nil && cur.Established()
		p.up.Store(live)
		if !live && (auto || restart) && !held && !p.conf.Responder() && !time.Now().Before(nextTry) {
			if err := p.initiate(); err != nil {
				nextTry = time.Now().Add(backoff)
				backoff = min(2*backoff, 30*time.Second)
			} else {
				backoff = time.Second
				p.mu.Lock()
				p.restart = false
				p.mu.Unlock()
			}
			continue
		}
		select {
		case <-p.stop:
			return
		case <-p.kick:
			nextTry = time.Now()
		case <-tick.C:
		}
	}
}

// initiate negotiates an IKE SA and its child with the peer.
func (p *ikePeer) initiate() error {
	if p.conf.Responder() {
		return ErrNotInitiator
	}
	timeout := p.conf.RetransmitTimeout * (1 << (p.conf.RetransmitTries + 1))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-p.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	att := &initAttempt{cancel: cancel, done: make(chan struct{})}
	p.mu.Lock()
	gen := p.termGen
	if p.inits == nil {
		p.inits = map[*initAttempt]struct{}{}
	}
	p.inits[att] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.inits, att)
		p.mu.Unlock()
		close(att.done)
	}()
	p.log.Info("ike: initiating", "remote", p.conf.Remote.String())
	s, err := p.ep.Initiate(ctx, netip.AddrPortFrom(p.conf.Remote, 500))
	p.mu.Lock()
	overtaken := p.termGen != gen
	p.mu.Unlock()
	if overtaken {
		// Terminated (or removed) meanwhile: what came up goes.
		if err == nil {
			dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
			s.Delete(dctx)
			dcancel()
			p.forget(s)
			p.log.Info("ike: IKE SA of an initiation overtaken by terminate deleted", "ike_sa", s.String())
		}
		return ErrTerminated
	}
	if err != nil {
		select {
		case <-p.stop:
			return err // the peer is being removed: not a failure
		default:
		}
		p.mu.Lock()
		p.lastErr = err.Error()
		p.mu.Unlock()
		p.log.Warn("ike: initiation failed", "remote", p.conf.Remote.String(), "err", err)
		return err
	}
	p.established(s)
	return nil
}

// established records s as the peer's current IKE SA; older IKE SAs of
// the peer are deleted (one IKE SA per peer, as strongSwan's unique
// IDs: a peer that restarted and negotiated again replaces the SAs it
// lost).
func (p *ikePeer) established(s *ike.IKESA) {
	p.mu.Lock()
	if p.current == s {
		p.mu.Unlock()
		return
	}
	old := p.current
	p.current = s
	p.lastErr = ""
	if !slices.Contains(p.sas, s) {
		p.sas = append(p.sas, s)
	}
	p.mu.Unlock()
	p.up.Store(true)
	p.log.Info("ike: IKE SA established", "ike_sa", s.String(), "remote", s.Remote().String())
	p.updatePrimary()
	if old != nil && old != s {
		go func() {
			// An IKE SA rekey replaced old by s (the ike package
			// deletes it, its children moved); otherwise old is a
			// stale SA of a peer that negotiated again.
			if in := old.Info(); in.State == ike.StateDeleting || len(in.Children) == 0 {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			old.Delete(ctx)
			p.forget(old)
		}()
	}
}

// forget drops a dead IKE SA from the peer's lists.
func (p *ikePeer) forget(s *ike.IKESA) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sas = slices.DeleteFunc(p.sas, func(x *ike.IKESA) bool { return x == s })
	if p.current == s {
		p.current = nil
	}
}

// onChild installs a negotiated child SA (ike.Config.OnChild).
func (p *ikePeer) onChild(c *ike.ChildSA) {
	gw := p.gw
	lt := p.conf.SoftHard(rand.Float64())
	in, out := childConfig(p.conf, c, c.In, lt), childConfig(p.conf, c, c.Out, lt)
	owner := &ikeOwner{peer: p.conf.Name, c: c, child: c.ID}
	if err := gw.addIKEChild([]*config.SA{in, out}, p.conf.Tunnel, owner); err != nil {
		in.Key.Wipe()
		in.AuthKey.Wipe()
		out.Key.Wipe()
		out.AuthKey.Wipe()
		p.log.Error("ike: cannot install the child SA; deleting it", "child", uint64(c.ID), "err", err)
		go c.IKE.Delete(context.Background())
		return
	}
	ch := &ikeChild{id: c.ID, c: c, ikeSA: c.IKE, in: c.In.SPI, out: c.Out.SPI, transform: c.Transform, esn: c.ESN,
		localTS: tsStrings(c.LocalTS), remoteTS: tsStrings(c.RemoteTS), added: time.Now()}
	p.mu.Lock()
	p.children = append(p.children, ch)
	if !slices.Contains(p.sas, c.IKE) {
		p.sas = append(p.sas, c.IKE)
	}
	o := ch.owner()
	newIKE := p.current != o
	p.mu.Unlock()
	p.log.Info("ike: child SA installed", "child", uint64(c.ID), "spi_in", fmt.Sprintf("0x%08x", c.In.SPI),
		"spi_out", fmt.Sprintf("0x%08x", c.Out.SPI), "transform", c.Transform, "local_ts", ch.localTS, "remote_ts", ch.remoteTS,
		"encap", c.Out.UDPEncap)
	if newIKE {
		p.established(o)
	} else {
		p.updatePrimary()
	}
}

// onChildDown retires a deleted child SA (ike.Config.OnChildDown).
func (p *ikePeer) onChildDown(c *ike.ChildSA) {
	p.mu.Lock()
	var ch *ikeChild
	for _, x := range p.children {
		if x.id == c.ID {
			ch = x
		}
	}
	if ch != nil {
		ch.retiring = true
	}
	dead := c.IKE != nil && !c.IKE.Established()
	p.mu.Unlock()
	if ch == nil {
		return
	}
	p.log.Info("ike: child SA down", "child", uint64(c.ID), "spi_in", fmt.Sprintf("0x%08x", c.In.SPI), "spi_out", fmt.Sprintf("0x%08x", c.Out.SPI))
	p.updatePrimary()
	if dead {
		p.forget(c.IKE)
	}
	time.AfterFunc(retireGrace, func() {
		p.gw.deleteChild(c.ID, true)
		p.mu.Lock()
		p.children = slices.DeleteFunc(p.children, func(x *ikeChild) bool { return x == ch })
		p.mu.Unlock()
	})
}

// updatePrimary chooses the child the tunnel sends on and binds it.
func (p *ikePeer) updatePrimary() {
	p.primaryMu.Lock()
	defer p.primaryMu.Unlock()
	p.mu.Lock()
	var id sa.ChildID
	for _, c := range p.children {
		if !c.retiring && c.owner() == p.current {
			id = c.id
			break
		}
	}
	if id == 0 {
		for _, c := range slices.Backward(p.children) {
			if !c.retiring {
				id = c.id
				break
			}
		}
	}
	p.mu.Unlock()
	if primaryYield != nil {
		primaryYield() // tests widen the window between choice and binding
	}
	p.gw.setPrimary(p.conf.Name, id)
}

// primaryYield, set by tests only, runs between choosing the primary
// child and binding it.
var primaryYield func()

// rekey rekeys the child id (its soft lifetime expired).
func (p *ikePeer) rekey(id sa.ChildID) {
	p.mu.Lock()
	var ch *ikeChild
	for _, c := range p.children {
		if c.id == id {
			ch = c
		}
	}
	if ch == nil || ch.retiring || ch.rekeying || !ch.owner().Established() {
		p.mu.Unlock()
		return
	}
	ch.rekeying = true
	p.mu.Unlock()
	go func() {
		timeout := p.conf.RetransmitTimeout * (1 << (p.conf.RetransmitTries + 1))
		for try := 0; try < 3; try++ {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			// This child (an IKE SA may hold several: additional child
			// SAs), on the IKE SA that owns it now.
			n, err := ch.owner().RekeyChildSA(ctx, ch.c)
			cancel()
			if err == nil {
				p.gw.ikeRekeys.Add(1)
				p.log.Info("ike: child SA rekeyed", "old", uint64(id), "new", uint64(n.ID))
				return
			}
			p.log.Warn("ike: child SA rekey failed", "child", uint64(id), "err", err, "try", try+1)
			if !ch.owner().Established() || errors.Is(err, ike.ErrConfig) {
				break // gone, or replaced (by the peer's rekey) or deleted meanwhile
			}
			select {
			case <-p.stop:
				return
			case <-time.After(time.Duration(200*(try+1)) * time.Millisecond):
			}
		}
		p.mu.Lock()
		ch.rekeying = false
		p.mu.Unlock()
	}()
}

// owner is the IKE SA the child belongs to now (its negotiator, or
// that one's successor after IKE SA rekeys).
func (c *ikeChild) owner() *ike.IKESA {
	if o := c.c.Owner(); o != nil {
		return o
	}
	return c.ikeSA
}

// onIKEDown forgets an IKE SA that went away (ike.Config.OnIKEDown);
// its children were reported down before.
func (p *ikePeer) onIKEDown(s *ike.IKESA, err error) {
	p.forget(s)
	if errors.Is(err, ike.ErrRekeyed) {
		p.log.Info("ike: IKE SA rekeyed", "old", s.String())
		return
	}
	p.up.Store(false)
	if errors.Is(err, ike.ErrTimeout) {
		// Invariant: a dead peer is reported once per IKE SA, and only
		// dpd_action restart initiates again after it.
		p.gw.ikeDPDDead.Add(1)
		p.log.Warn("ike: dead peer detected (no answer to liveness checks or requests)", "ike_sa", s.String(), "dpd_action", p.conf.DPDAction)
		p.mu.Lock()
		if p.conf.DPDAction != "restart" {
			p.held = true // clear: stay down until ike initiate
			p.mu.Unlock()
			return
		}
		p.restart = true
		p.mu.Unlock()
	} else {
		p.log.Info("ike: IKE SA down", "ike_sa", s.String(), "reason", err)
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// inboundActivity is the last time a child SA of s accepted a packet
// (ike.Config.InboundActivity: no liveness check while traffic flows).
func (p *ikePeer) inboundActivity(s *ike.IKESA) time.Time {
	p.mu.Lock()
	var ids []sa.ChildID
	for _, c := range p.children {
		if c.owner() == s {
			ids = append(ids, c.id)
		}
	}
	p.mu.Unlock()
	return p.gw.lastInbound(ids)
}

// remoteChanged moves the outbound SAs of s's children to the peer's
// new address (ike.Config.OnRemoteChanged, RFC 7296 §2.23), in place:
// sequence numbers and counters are kept.
func (p *ikePeer) remoteChanged(s *ike.IKESA, old, new netip.AddrPort) {
	p.mu.Lock()
	var ids []sa.ChildID
	for _, c := range p.children {
		if c.owner() == s {
			ids = append(ids, c.id)
		}
	}
	p.mu.Unlock()
	p.log.Warn("ike: peer moved", "ike_sa", s.String(), "from", old.String(), "to", new.String())
	p.gw.moveChildren(ids, new)
}

// childConfig converts one direction of a negotiated child SA to the
// config.SA the gateway installs, with copies of its keys.
func childConfig(pc *config.Peer, c *ike.ChildSA, sc sa.Config, lt config.Lifetime) *config.SA {
	dir, d := config.Out, "out"
	if sc.Direction == sa.In {
		dir, d = config.In, "in"
	}
	x := &config.SA{
		Name:         fmt.Sprintf("%s-%s-%08x", pc.Name, d, sc.SPI),
		Direction:    dir,
		SPI:          sc.SPI,
		Mode:         sc.Mode,
		Local:        sc.Local,
		Remote:       sc.Remote,
		LocalPort:    sc.LocalPort,
		RemotePort:   sc.RemotePort,
		Transform:    sc.Transform,
		Key:          config.Secret(slices.Clone(sc.Key)),
		AuthKey:      config.Secret(slices.Clone(sc.AuthKey)),
		ESN:          sc.ESN,
		ReplayWindow: config.DefaultReplayWindow,
		Lifetime:     lt,
		PathMTU:      config.DefaultPathMTU,
		Selectors:    slices.Clone(sc.Selectors),
		Child:        c.ID,
		FloatRemote:  sc.FloatRemote,
		Pos:          config.Pos{File: "ike", Field: "peer " + pc.Name},
	}
	if sc.UDPEncap {
		x.Encap = config.EncapUDP
	}
	if sc.PathMTU > 0 {
		x.PathMTU = sc.PathMTU
	}
	return x
}

func tsStrings(ts []ike.TrafficSelector) []string {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		out = append(out, tsString(t))
	}
	return out
}

// tsString prints a traffic selector as a prefix when it is one.
func tsString(t ike.TrafficSelector) string {
	s := t.Start.String() + "-" + t.End.String()
	for bits := 0; bits <= t.Start.BitLen(); bits++ {
		p := netip.PrefixFrom(t.Start, bits).Masked()
		if p.Addr() == t.Start && lastOf(p) == t.End {
			s = p.String()
			break
		}
	}
	if t.Proto != 0 || t.StartPort != 0 || t.EndPort != 65535 {
		s += fmt.Sprintf(" proto %d ports %d-%d", t.Proto, t.StartPort, t.EndPort)
	}
	return s
}

func lastOf(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// addIKEChild installs the two SAs of a negotiated child as one, bound
// to tunnel, owned by owner (not persisted in state_dir: fresh keys).
func (gw *Gateway) addIKEChild(cs []*config.SA, tunnel string, owner *ikeOwner) error {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	if !gw.running {
		return ErrClosed
	}
	return gw.addSAsLocked(cs, tunnel, owner)
}

// lastInbound is when an inbound SA of the children last carried a
// packet.
func (gw *Gateway) lastInbound(ids []sa.ChildID) time.Time {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	var last time.Time
	for k, e := range gw.sas {
		if k.dir == sa.In && e.owner != nil && slices.Contains(ids, e.owner.child) {
			if t := e.sa.LastUsed(); t.After(last) {
				last = t
			}
		}
	}
	return last
}

// moveChildren moves the outbound SAs of the children to ep in place
// (SA.Update; the same *sa.SA, so no sequence number is sent twice).
func (gw *Gateway) moveChildren(ids []sa.ChildID, ep netip.AddrPort) {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	for i, k := range slices.Clone(gw.order) {
		e := gw.sas[k]
		if k.dir != sa.Out || e.owner == nil || !slices.Contains(ids, e.owner.child) {
			continue
		}
		nc := *e.conf
		nc.Remote = ep.Addr()
		ch := sa.Changes{Remote: &nc.Remote}
		if nc.Encap == config.EncapUDP {
			nc.RemotePort = ep.Port()
			ch.RemotePort = &nc.RemotePort
		}
		if err := e.sa.Update(ch); err != nil {
			gw.log.Warn("ike: outbound SA not moved to the peer's new address", "sa", e.conf.Name, "to", ep.String(), "err", err)
			continue
		}
		nk := keyOf(&nc)
		e.conf = &nc
		delete(gw.sas, k)
		gw.sas[nk] = e
		gw.order[i] = nk
		gw.log.Warn("outbound SA moved to the peer's new address", "sa", nc.Name, "to", ep.String())
	}
}

// setPrimary makes child id the one the peer's tunnel sends on (0: none).
func (gw *Gateway) setPrimary(peer string, id sa.ChildID) {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	if gw.primary == nil {
		gw.primary = map[string]sa.ChildID{}
	}
	if gw.primary[peer] == id {
		return
	}
	gw.primary[peer] = id
	for _, t := range gw.tunnels {
		gw.rebindOut(t)
	}
}

// rekeyOn starts a rekey for an IKE-owned SA whose soft lifetime
// expired (from the event loop).
func (gw *Gateway) rekeyOn(s *sa.SA) {
	owner := gw.ownerOf(s)
	if owner == nil {
		return
	}
	if p := gw.peerByName(owner.peer); p != nil {
		p.rekey(owner.child)
	}
}

// hardExpiredIKE handles an IKE-owned SA that reached its hard
// lifetime without a successor (the rekeys failed): when its IKE SA
// holds another live child (additional child SAs), only this child is
// deleted; otherwise the IKE SA is deleted, the peer told, and
// start_action start negotiates afresh. Traffic never continues on an
// expired key.
func (gw *Gateway) hardExpiredIKE(s *sa.SA) {
	owner := gw.ownerOf(s)
	if owner == nil {
		return
	}
	p := gw.peerByName(owner.peer)
	if p == nil {
		return
	}
	ikeSA := owner.current()
	p.mu.Lock()
	retiring, others := true, false
	for _, c := range p.children {
		if c.id == owner.child {
			retiring = c.retiring
		} else if !c.retiring && c.owner() == ikeSA {
			others = true
		}
	}
	p.mu.Unlock()
	if retiring {
		return // already going
	}
	if others {
		p.log.Warn("ike: child SA reached its hard lifetime without a rekey; deleting it (its IKE SA has other children)", "child", uint64(owner.child), "ike_sa", ikeSA.String())
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			ikeSA.DeleteChild(ctx, owner.c)
		}()
		return
	}
	p.log.Warn("ike: child SA reached its hard lifetime without a rekey; deleting its IKE SA", "child", uint64(owner.child), "ike_sa", ikeSA.String())
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		ikeSA.Delete(ctx)
	}()
}

func (gw *Gateway) peerByName(name string) *ikePeer {
	gw.ike.mu.Lock()
	defer gw.ike.mu.Unlock()
	for _, p := range gw.ike.peers {
		if p.conf.Name == name {
			return p
		}
	}
	return nil
}

// Initiate starts negotiating with a peer now (espxdp ike initiate) and
// waits at most wait for the IKE SA; a peer held down by Terminate is
// released. After wait the negotiation goes on and Initiate returns
// ErrInProgress.
func (gw *Gateway) Initiate(peer string, wait time.Duration) error {
	p := gw.peerByName(peer)
	if p == nil {
		return fmt.Errorf("%w: %q", ErrNoPeer, peer)
	}
	if p.conf.Responder() {
		return fmt.Errorf("%w: %q", ErrNotInitiator, peer)
	}
	p.mu.Lock()
	p.held = false
	cur := p.current
	p.mu.Unlock()
	if cur != nil && cur.Established() {
		return nil
	}
	res := make(chan error, 1)
	go func() { res <- p.initiate() }()
	select {
	case err := <-res:
		return err
	case <-time.After(wait):
		return fmt.Errorf("%w: peer %s", ErrInProgress, peer)
	}
}

// Terminate deletes a peer's IKE SAs and child SAs (espxdp ike
// terminate); the peer is not initiated again until Initiate or a
// reload.
func (gw *Gateway) Terminate(peer string) error {
	p := gw.peerByName(peer)
	if p == nil {
		return fmt.Errorf("%w: %q", ErrNoPeer, peer)
	}
	p.mu.Lock()
	p.held = true
	p.mu.Unlock()
	p.stopInitiations(3 * time.Second)
	p.deleteAll(2 * time.Second)
	p.log.Info("ike: terminated by the operator")
	return nil
}

// IKEChildInfo is a child SA in show ike.
type IKEChildInfo struct {
	Child     uint64   `json:"child"`
	SPIIn     string   `json:"spi_in"`
	SPIOut    string   `json:"spi_out"`
	Transform string   `json:"transform"`
	ESN       bool     `json:"esn"`
	LocalTS   []string `json:"local_ts"`
	RemoteTS  []string `json:"remote_ts"`
	Retiring  bool     `json:"retiring,omitempty"`
	Primary   bool     `json:"primary,omitempty"`
	Age       string   `json:"age"`
}

// IKESAInfo is an IKE SA in show ike.
type IKESAInfo struct {
	SPIs        string         `json:"spis"`
	State       string         `json:"state"`
	Initiator   bool           `json:"initiator"`
	Local       string         `json:"local"`
	Remote      string         `json:"remote"`
	LocalID     string         `json:"local_id"`
	RemoteID    string         `json:"remote_id,omitempty"`
	Proposal    string         `json:"proposal,omitempty"`
	NATT        bool           `json:"natt"`
	NAT         bool           `json:"nat"`
	Established string         `json:"established,omitempty"`
	Children    []IKEChildInfo `json:"children"`
}

// IKEPeerInfo is a peer in show ike.
type IKEPeerInfo struct {
	Peer        string      `json:"peer"`
	Local       string      `json:"local"`
	Remote      string      `json:"remote"`
	Up          bool        `json:"up"`
	StartAction string      `json:"start_action"`
	Held        bool        `json:"held,omitempty"`
	LastError   string      `json:"last_error,omitempty"`
	IKESAs      []IKESAInfo `json:"ike_sas"`
	Stats       ike.Stats   `json:"stats"`
}

// IKEInfo returns the peers, their IKE SAs and child SAs.
func (gw *Gateway) IKEInfo() []IKEPeerInfo {
	gw.ike.mu.Lock()
	peers := slices.Clone(gw.ike.peers)
	gw.ike.mu.Unlock()
	gw.mu.Lock()
	primary := maps(gw.primary)
	gw.mu.Unlock()
	out := []IKEPeerInfo{}
	now := time.Now()
	for _, p := range peers {
		p.mu.Lock()
		pi := IKEPeerInfo{Peer: p.conf.Name, Local: p.conf.Local.String(), Remote: remoteName(p.conf),
			Up: p.current != nil && p.current.Established(), StartAction: p.conf.StartAction, Held: p.held, LastError: p.lastErr,
			Stats: p.ep.Stats()}
		for _, s := range p.sas {
			in := s.Info()
			si := IKESAInfo{SPIs: ikeSPIs(s), State: in.State, Initiator: in.Initiator, Local: in.Local.String(),
				Remote: in.Remote.String(), LocalID: in.LocalID, RemoteID: in.RemoteID, Proposal: in.Proposal,
				NATT: in.NATT, NAT: in.NAT}
			if !in.Established.IsZero() {
				si.Established = now.Sub(in.Established).Truncate(time.Second).String()
			}
			for _, c := range p.children {
				if c.owner() != s {
					continue
				}
				si.Children = append(si.Children, IKEChildInfo{Child: uint64(c.id), SPIIn: fmt.Sprintf("0x%08x", c.in),
					SPIOut: fmt.Sprintf("0x%08x", c.out), Transform: c.transform, ESN: c.esn, LocalTS: c.localTS,
					RemoteTS: c.remoteTS, Retiring: c.retiring, Primary: primary[p.conf.Name] == c.id,
					Age: now.Sub(c.added).Truncate(time.Second).String()})
			}
			pi.IKESAs = append(pi.IKESAs, si)
		}
		p.mu.Unlock()
		out = append(out, pi)
	}
	return out
}

func maps(m map[string]sa.ChildID) map[string]sa.ChildID {
	c := make(map[string]sa.ChildID, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// ikeSPIs is "SPIi_i SPIr_r" of an IKE SA.
func ikeSPIs(s *ike.IKESA) string {
	in := s.Info()
	return fmt.Sprintf("%016x_i %016x_r", in.SPIi, in.SPIr)
}

// SAOwner names the IKE SA that owns an installed SA (show sa).
type SAOwner struct {
	SA    string `json:"sa"`
	Peer  string `json:"peer"`
	IKESA string `json:"ike_sa"`
	Child uint64 `json:"child"`
}

// SAOwners returns the owner of every SA negotiated with IKE.
func (gw *Gateway) SAOwners() []SAOwner {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	var out []SAOwner
	for _, k := range gw.order {
		e := gw.sas[k]
		if e.owner == nil {
			continue
		}
		out = append(out, SAOwner{SA: e.conf.Name, Peer: e.owner.peer, IKESA: ikeSPIs(e.owner.current()), Child: uint64(e.owner.child)})
	}
	return out
}

// reloadPeers applies the peers of a new configuration (not holding
// gw.mu): removed and changed peers are stopped (their SAs deleted),
// new and changed ones started; unchanged ones keep running.
func (gw *Gateway) reloadPeers(peers []*config.Peer, res *ReloadResult) error {
	gw.ike.mu.Lock()
	cur := slices.Clone(gw.ike.peers)
	gw.ike.mu.Unlock()
	want := map[string]*config.Peer{}
	for _, pc := range peers {
		want[pc.Name] = pc
	}
	keep := map[string]bool{}
	for _, p := range cur {
		pc := want[p.conf.Name]
		if pc != nil && pc.Fingerprint() == p.sum {
			keep[p.conf.Name] = true
			pc.PSK.Wipe()
			continue
		}
		gw.removePeer(p, time.Second)
		if pc == nil {
			res.PeersRemoved = append(res.PeersRemoved, p.conf.Name)
		} else {
			res.PeersChanged = append(res.PeersChanged, p.conf.Name)
		}
	}
	var errs []error
	for _, pc := range peers {
		if keep[pc.Name] {
			continue
		}
		err := gw.addPeer(pc) // wipes pc.PSK
		pc.PSK.Wipe()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !slices.Contains(res.PeersChanged, pc.Name) {
			res.PeersAdded = append(res.PeersAdded, pc.Name)
		}
	}
	gw.closeIdleSocks()
	return errors.Join(errs...)
}

// closeIdleSocks closes the IKE sockets (UDP 500 and 4500) of the local
// addresses that no peer uses any more; socksFor opens them again when a
// peer comes back (after the reload that removed or moved the last
// peer of an address).
//
// Invariant (TestIKEReloadPeers): the gateway holds UDP 500/4500 on an
// address exactly while a peer of the configuration has that local
// address. Nothing else needs them: the data plane takes ESP in UDP
// from the XDP program, not from a socket; NAT-T keepalives go out of,
// and are counted by, raw sockets (keepalive_linux.go); and a gateway
// with static SAs only (encap: udp included) never opened them. Left
// open, they would answer IKE for peers that are gone (counted as
// unknown, but the port looks open) and keep the ports from an IKE
// daemon started beside the gateway.
func (gw *Gateway) closeIdleSocks() {
	gw.ike.mu.Lock()
	defer gw.ike.mu.Unlock()
	for a, s := range gw.ike.socks {
		if slices.ContainsFunc(gw.ike.peers, func(p *ikePeer) bool { return p.conf.Local == a }) {
			continue
		}
		s.close()
		delete(gw.ike.socks, a)
		gw.log.Info("ike sockets closed: no peer on the address any more", "local", a.String())
	}
}

// ownerOf returns the IKE owner of s, or nil when s is not an
// IKE-owned SA of the gateway.
func (gw *Gateway) ownerOf(s *sa.SA) *ikeOwner {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	var owner *ikeOwner
	for _, e := range gw.sas {
		if e.sa == s {
			owner = e.owner
		}
	}
	return owner
}
