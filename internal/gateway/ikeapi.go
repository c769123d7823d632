package gateway

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/ike"
	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/sa"
)

// This file holds what an IKE daemon needs beyond adding and deleting
// single SAs: child SAs added and deleted as one (Config.Child), inbound
// SPI allocation, and outbound SAs that follow a NAT-T peer whose
// address or port floats (FloatRemote).

// AddSAs installs several SAs described like entries of the
// configuration's sas list, all bound to tunnel (if named), atomically:
// every SA is checked and built first, then all are added to the SAD in
// one step (sa.SAD.AddChild); if any of them cannot be, none is added
// and nothing changes. The keys of cs are wiped once the SAs are built
// (on an error, the caller wipes them). Inbound SAs whose SPI was
// reserved with AllocSPI consume the reservation.
//
// Invariant (all or none): the gateway's SA map, its tunnels and the SAD
// change only after sa.SAD.AddChild accepted every SA; before that, an
// error closes the SAs built so far and returns.
func (gw *Gateway) AddSAs(cs []*config.SA, tunnel string) error {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	if tunnel != "" && gw.peerTunnelLocked(tunnel) {
		return fmt.Errorf("%w: tunnel %q carries an IKE peer's child SAs", ErrIKEOwned, tunnel)
	}
	for _, c := range cs {
		if err := gw.peerTSLocked(c, tunnel, gw.g.SelectorsOf(c, tunnel)); err != nil {
			return err
		}
	}
	return gw.addSAsLocked(cs, tunnel, nil)
}

// ErrPeerTS: a static SA's traffic selectors overlap the remote_ts of an
// IKE peer of the configuration (the error names the peer).
var ErrPeerTS = errors.New("gateway: selectors overlap an IKE peer's remote_ts")

// peerTSLocked refuses a static SA c (added or updated over the control
// socket) bound to tunnel whose selectors sels overlap the remote_ts of
// a configured IKE peer (config.PeerTSOverlap; gw.mu held). An inbound
// tunnel-mode SA without selectors delivers any source, so it overlaps
// every peer.
//
// Invariant (PAD, RFC 4301 §4.4.3; TestControlSAAddOverPeerTS): what the
// configuration file may not hold (config.Parse refuses a static SA or a
// protect policy over a peer's remote_ts), the control socket does not
// add either: no static SA speaks for an IKE peer's networks. Peers come
// only from the file, and a reload drops the SAs added over the socket,
// so the reverse (a peer over a static SA) is Parse's check alone.
func (gw *Gateway) peerTSLocked(c *config.SA, tunnel string, sels []sa.Selector) error {
	if gw.cfg == nil || len(gw.cfg.Peers) == 0 {
		return nil
	}
	if sels == nil {
		if c.Direction != config.In || c.Mode != esp.Tunnel {
			return nil
		}
		sels = []sa.Selector{{}}
	}
	if o := config.PeerTSOverlap(gw.cfg.Peers, tunnel, c.Direction, sels); o != nil {
		return fmt.Errorf("%w: sa %s: %v", ErrPeerTS, c.Name, o)
	}
	return nil
}

// ErrChildID: a child id in the wrong range: static SAs (config child:,
// sa-add, AddSAs) take ids below ike.ChildIDBase, the SAs of
// IKE-negotiated children ids from there up.
var ErrChildID = errors.New("gateway: child id in the other range (static SAs below ike.ChildIDBase, IKE children from it)")

// ErrIKEOwned: the SA (or tunnel) belongs to an IKE peer; it changes
// only through IKE (ike terminate, rekeys), not by sa-add, sa-update or
// sa-delete.
var ErrIKEOwned = errors.New("gateway: owned by an IKE peer (use ike terminate)")

// peerTunnelLocked reports whether tunnel is an IKE peer's (configured
// as one, or holding a negotiated SA); gw.mu held.
//
// Invariant (TestRedTeamOperatorDeletesIKEChildSA): whenever an IKE SA
// with a live child exists for a peer, its tunnel has an outbound SA
// the peer can decrypt, and only that peer's: the SAs of IKE children
// are added, changed and deleted by the IKE code alone (addIKEChild,
// DeleteChild, moveChildren), and no static SA joins a peer's tunnel
// (its outbound SAs would be spread per CPU with the peer's).
func (gw *Gateway) peerTunnelLocked(tunnel string) bool {
	if gw.cfg != nil {
		for _, pc := range gw.cfg.Peers {
			if pc.Tunnel == tunnel {
				return true
			}
		}
	}
	for _, e := range gw.sas {
		if e.owner != nil && e.tunnel == tunnel {
			return true
		}
	}
	return false
}

// addSAsLocked is AddSAs with gw.mu held; SAs with an owner (negotiated
// with IKE) get fresh keys, so they have no state record in state_dir.
func (gw *Gateway) addSAsLocked(cs []*config.SA, tunnel string, owner *ikeOwner) error {
	if len(cs) == 0 {
		return fmt.Errorf("gateway: no SA to add")
	}
	if tunnel != "" && gw.tunnels[tunnel] == nil {
		return fmt.Errorf("gateway: no tunnel %q", tunnel)
	}
	names := map[string]bool{}
	for _, e := range gw.sas {
		names[e.conf.Name] = true
	}
	keys := map[key]bool{}
	for _, c := range cs {
		// Invariant (TestIKEChildIDNeverStatic): an SAD child group
		// holds static SAs or one IKE child's, never both: static SAs
		// have ids below ike.ChildIDBase (or none), an IKE child's SAs
		// its ike id, from ike.ChildIDBase up. So deleteChild may
		// delete a whole group.
		if owner == nil && c.Child >= ike.ChildIDBase || owner != nil && (c.Child < ike.ChildIDBase || c.Child != owner.child) {
			return fmt.Errorf("%w: sa %s child %d", ErrChildID, c.Name, c.Child)
		}
		if names[c.Name] {
			return fmt.Errorf("%w: name %q", sa.ErrExists, c.Name)
		}
		names[c.Name] = true
		k := keyOf(c)
		if gw.sas[k] != nil || keys[k] {
			return fmt.Errorf("%w: %v SPI 0x%x (sa %s)", sa.ErrExists, k.dir, k.spi, c.Name)
		}
		keys[k] = true
	}
	type built struct {
		s         *sa.SA
		sels      []sa.Selector
		rid       string
		sum, isum [32]byte
	}
	bs := make([]built, 0, len(cs))
	closeAll := func() {
		for _, b := range bs {
			b.s.Close()
		}
	}
	for _, c := range cs {
		s, sels, rid, err := gw.newSAState(c, gw.g, tunnel, owner == nil)
		if err != nil {
			closeAll()
			return err
		}
		bs = append(bs, built{s, sels, rid, fingerprint(c, sels), immutableFingerprint(c, sels)})
	}
	all := make([]*sa.SA, len(bs))
	for i, b := range bs {
		all[i] = b.s
	}
	if err := gw.sad.AddChild(all...); err != nil {
		closeAll()
		return err
	}
	for i, c := range cs {
		b := bs[i]
		wipeKeys(c)
		gw.warnSelectors(c, b.sels)
		k := keyOf(c)
		gw.sas[k] = &entry{sa: b.s, conf: c, sum: b.sum, isum: b.isum, tunnel: tunnel, sels: b.sels, rid: b.rid, owner: owner}
		gw.order = append(gw.order, k)
		gw.bind(k)
	}
	if owner == nil {
		gw.warnStatic(cs)
	}
	for _, c := range cs {
		gw.log.Info("sa added", "sa", c.Name, "spi", fmt.Sprintf("0x%x", c.SPI), "dir", c.Direction.String(), "tunnel", tunnel, "child", uint64(c.Child))
	}
	return nil
}

// DeleteChild deletes every SA of child group id (config child:, or
// sa.Config.Child) in one step (sa.SAD.DeleteChild: no packet finds any
// of them once it returns) and returns how many; their keys are wiped
// once in-flight packets are done. It fails with sa.ErrNotFound when no
// SA has that child id, and with ErrIKEOwned for a child that a peer of
// the peers: section negotiated (ike terminate deletes those).
func (gw *Gateway) DeleteChild(id sa.ChildID) (int, error) {
	return gw.deleteChild(id, false)
}

// deleteChild is DeleteChild; ike allows deleting a child that a peer
// of the peers: section owns (the IKE code's own deletions). Others
// get ErrIKEOwned (see peerTunnelLocked for the invariant).
//
// The whole SAD group id goes: by the invariant of addSAsLocked
// (TestIKEChildIDNeverStatic) the group of an IKE child holds its SAs
// only, and a static group no IKE child's.
func (gw *Gateway) deleteChild(id sa.ChildID, ike bool) (int, error) {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	members := gw.sad.Child(id)
	if id == 0 || len(members) == 0 {
		return 0, fmt.Errorf("%w: child %d", sa.ErrNotFound, id)
	}
	if !ike {
		for _, e := range gw.sas {
			if e.owner != nil && slices.Contains(members, e.sa) {
				return 0, fmt.Errorf("%w: child %d (peer %s)", ErrIKEOwned, id, e.owner.peer)
			}
		}
	}
	touched := map[*sa.Tunnel]bool{}
	for _, k := range slices.Clone(gw.order) {
		e := gw.sas[k]
		if !slices.Contains(members, e.sa) {
			continue
		}
		if t := gw.unlink(k, e); t != nil {
			touched[t] = true
		}
	}
	for t := range touched {
		gw.rebindOut(t)
	}
	n, err := gw.sad.DeleteChild(id)
	if err != nil {
		return n, err
	}
	gw.log.Info("child deleted", "child", uint64(id), "sas", n)
	return n, nil
}

// AllocSPI reserves a free inbound SPI in [lo, hi] (hi 0: the whole
// space) for ttl (0: sa.DefaultSPIReservation), for an IKE daemon that
// must announce the SPI before it has the keys (sa.SAD.AllocSPI). An
// inbound SA added with that SPI consumes the reservation. It fails with
// an error wrapping sa.ErrNoSPI when the range is empty or full.
func (gw *Gateway) AllocSPI(lo, hi uint32, ttl time.Duration) (uint32, error) {
	if hi == 0 {
		hi = ^uint32(0)
	}
	if ttl < 0 {
		return 0, fmt.Errorf("gateway: negative ttl %v", ttl)
	}
	spi, err := gw.sad.AllocSPI(lo, hi, ttl)
	if err != nil {
		return 0, err
	}
	gw.log.Info("spi reserved", "spi", fmt.Sprintf("0x%x", spi), "ttl", ttl)
	return spi, nil
}

// ReleaseSPI gives back an SPI reserved by AllocSPI and not consumed
// (sa.ErrNotFound otherwise).
func (gw *Gateway) ReleaseSPI(spi uint32) error {
	return gw.sad.ReleaseSPI(spi)
}

// followEndpoint handles EventEndpointChanged: an authenticated packet
// of an inbound FloatRemote SA came from a new outer source. The
// outbound SAs that go to the same peer - those of the inbound SA's
// tunnel, and those of its child group - move to the new endpoint in
// place (SA.Update: the same *sa.SA, its sequence number, counters and
// lifetime usage kept, so no sequence number is ever sent twice), and
// the gateway's key of each follows. NAT-T keepalives read the SAs'
// current endpoint (nattPeers), so they follow too. It returns the names
// of the SAs moved.
//
// RFC 7296 §2.23 leaves this to the IKE daemon for IKE peers; the
// sa package raises the event only for SAs configured with
// float_remote, the operator's explicit choice for static NAT-T peers.
func (gw *Gateway) followEndpoint(ev sa.Event) []string {
	ep := ev.Endpoint
	if ev.Kind != sa.EventEndpointChanged || ev.SA == nil || !ep.IsValid() {
		return nil
	}
	ep = netip.AddrPortFrom(ep.Addr().Unmap(), ep.Port())
	gw.mu.Lock()
	defer gw.mu.Unlock()
	var in *entry
	for _, k := range gw.order {
		if e := gw.sas[k]; k.dir == sa.In && e.sa == ev.SA {
			in = e
			break
		}
	}
	if in == nil || (in.tunnel == "" && in.conf.Child == 0) {
		return nil // deleted meanwhile, or no outbound SA known to follow
	}
	var moved []string
	for i, k := range slices.Clone(gw.order) {
		e := gw.sas[k]
		if k.dir != sa.Out || !(in.tunnel != "" && e.tunnel == in.tunnel || in.conf.Child != 0 && e.conf.Child == in.conf.Child) {
			continue
		}
		if in.owner != nil && e.conf.Child != in.conf.Child {
			continue // an IKE child moves its own outbound SA only, not another peer's in the tunnel
		}
		cur := e.sa.Config()
		udp := e.conf.Encap == config.EncapUDP
		if cur.Remote == ep.Addr() && (!udp || cur.RemotePort == ep.Port()) {
			continue
		}
		if cur.Remote.Is4() != ep.Addr().Is4() {
			gw.log.Warn("peer endpoint changed to another address family; outbound SA not moved", "sa", e.conf.Name, "endpoint", ep.String())
			continue
		}
		nc := *e.conf
		nc.Remote = ep.Addr()
		ch := sa.Changes{Remote: &nc.Remote}
		if udp {
			nc.RemotePort = ep.Port()
			ch.RemotePort = &nc.RemotePort
		}
		nk := keyOf(&nc)
		if o := gw.sas[nk]; o != nil && o != e {
			gw.log.Warn("peer endpoint changed; outbound SA not moved: another SA has its SPI towards that peer", "sa", e.conf.Name, "other", o.conf.Name, "endpoint", ep.String())
			continue
		}
		if err := e.sa.Update(ch); err != nil {
			gw.log.Warn("peer endpoint changed; outbound SA not moved", "sa", e.conf.Name, "endpoint", ep.String(), "err", err)
			continue
		}
		if e.floated == nil {
			was := netip.AddrPortFrom(e.conf.Remote, e.conf.RemotePort)
			e.floated = &was
		}
		e.conf = &nc
		e.sum = withMutable(e.isum, &nc) // the keys of nc are wiped
		delete(gw.sas, k)
		gw.sas[nk] = e
		gw.order[i] = nk
		moved = append(moved, e.conf.Name)
		gw.log.Warn("outbound SA moved to the peer's new endpoint", "sa", e.conf.Name, "spi", fmt.Sprintf("0x%x", e.conf.SPI),
			"from", netip.AddrPortFrom(cur.Remote, cur.RemotePort).String(), "to", ep.String(), "inbound", in.conf.Name)
	}
	return moved
}

// keepFloated makes a reload keep the endpoint an outbound SA floated to
// (followEndpoint) as long as the file still names the endpoint it had
// before: the file did not change it, so the learnt one stays (gw.mu
// held). A file naming another endpoint sets that one.
func (gw *Gateway) keepFloated(cs []*config.SA) {
	for _, c := range cs {
		if c.Direction != config.Out {
			continue
		}
		for _, k := range gw.order {
			e := gw.sas[k]
			if k.dir == sa.Out && k.spi == c.SPI && e.conf.Name == c.Name && e.floated != nil &&
				*e.floated == netip.AddrPortFrom(c.Remote, c.RemotePort) {
				c.Remote, c.RemotePort = e.conf.Remote, e.conf.RemotePort
				break
			}
		}
	}
}
