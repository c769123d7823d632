package gateway

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"

	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/sa"
)

// ReloadResult says what a Reload changed.
type ReloadResult struct {
	Added    []string `json:"added,omitempty"`
	Removed  []string `json:"removed,omitempty"`
	Replaced []string `json:"replaced,omitempty"`
	// Updated SAs changed only lifetimes, path MTU or the peer address
	// or port: changed in place (SA.Update), keeping their state.
	Updated   []string `json:"updated,omitempty"`
	Unchanged int      `json:"unchanged"`
	Policies  int      `json:"policies"`
	// IKE peers added, removed and changed (stopped, their SAs
	// deleted, and started again) by name.
	PeersAdded   []string `json:"peers_added,omitempty"`
	PeersRemoved []string `json:"peers_removed,omitempty"`
	PeersChanged []string `json:"peers_changed,omitempty"`
}

// Reload applies a new configuration without stopping the data path
// (it keeps cfg and wipes the keys of the SAs it applied; on an error
// the caller wipes cfg):
// SAs whose configuration (keys included) is unchanged keep running with
// their replay windows, sequence numbers and counters; changed ones are
// replaced make-before-break; removed ones are deleted (keys wiped); new
// ones added; tunnels rebound and the SPD swapped atomically. A change
// to interfaces, queues, gateway options or the set of tunnels fails
// with ErrRestart and changes nothing. SAs added over the control
// socket and not in the file are removed, as the file is the truth;
// SAs negotiated with IKE stay with their peer. Then IKE peers
// (peers:) that are new are started, removed ones stopped (their SAs
// deleted, the peer told) and changed ones restarted; unchanged ones
// keep their IKE and child SAs.
func (gw *Gateway) Reload(cfg *config.Config) (ReloadResult, error) {
	res, err := gw.reloadSAs(cfg)
	if err != nil {
		return res, err // peers unchanged
	}
	gw.mu.Lock()
	running := gw.running
	gw.mu.Unlock()
	if running {
		if perr := gw.reloadPeers(cfg.Peers, &res); perr != nil {
			err = errors.Join(err, perr)
		}
	}
	return res, err
}

func (gw *Gateway) reloadSAs(cfg *config.Config) (ReloadResult, error) {
	var res ReloadResult
	if cfg == nil || cfg.Gateway == nil {
		return res, ErrNotGateway
	}
	gw.mu.Lock()
	defer gw.mu.Unlock()
	if why := restartNeeded(gw.g, cfg.Gateway); why != "" {
		return res, fmt.Errorf("%w: %s", ErrRestart, why)
	}
	gw.keepFloated(cfg.SAs)
	// Check every new SA before changing anything.
	ng := cfg.Gateway
	sels := func(c *config.SA) []sa.Selector { return ng.SelectorsOf(c, tunnelOf(ng, c.Name)) }
	sum := func(c *config.SA) [32]byte { return fingerprint(c, sels(c)) }
	for _, c := range cfg.SAs {
		if e := gw.sas[keyOf(c)]; e != nil && e.sum == sum(c) {
			continue
		}
		s, _, err := gw.newSA(c, ng, tunnelOf(ng, c.Name))
		if err != nil {
			return res, err
		}
		s.Close()
	}
	want := map[key]*config.SA{}
	for _, c := range cfg.SAs {
		want[keyOf(c)] = c
	}
	for _, c := range cfg.SAs {
		if c.Direction == config.Out {
			gw.followPeer(c, func(k key) bool { return want[k] == nil && gw.sas[k].owner == nil })
		}
	}
	var errs []error
	for _, k := range slices.Clone(gw.order) {
		if want[k] == nil && gw.sas[k].owner == nil {
			name := gw.sas[k].conf.Name
			if err := gw.remove(k); err != nil {
				errs = append(errs, err)
				continue
			}
			res.Removed = append(res.Removed, name)
		}
	}
	for _, c := range cfg.SAs {
		k, tn := keyOf(c), tunnelOf(cfg.Gateway, c.Name)
		e := gw.sas[k]
		switch {
		case e == nil:
			if err := gw.install(c, ng, tn); err != nil {
				errs = append(errs, err)
				continue
			}
			res.Added = append(res.Added, c.Name)
		case e.sum != sum(c) && e.tunnel == tn && e.isum == immutableFingerprint(c, sels(c)):
			if err := gw.update(c, sels(c)); err != nil {
				errs = append(errs, err)
				continue
			}
			res.Updated = append(res.Updated, c.Name)
		case e.sum != sum(c) || e.tunnel != tn:
			if err := gw.replace(c, ng, tn); err != nil {
				errs = append(errs, err)
				continue
			}
			res.Replaced = append(res.Replaced, c.Name)
		default:
			e.conf = c // same content; keep the new file's positions
			wipeKeys(c)
			res.Unchanged++
		}
	}
	// Order as in the file.
	slices.SortStableFunc(gw.order, func(a, b key) int {
		return slices.IndexFunc(cfg.SAs, func(c *config.SA) bool { return keyOf(c) == a }) -
			slices.IndexFunc(cfg.SAs, func(c *config.SA) bool { return keyOf(c) == b })
	})
	for _, t := range gw.tunnels {
		gw.rebindOut(t)
	}
	gw.g = cfg.Gateway
	gw.cfg = cfg
	if err := gw.spd.Set(gw.policies(gw.g)); err != nil {
		errs = append(errs, err)
	}
	res.Policies = len(gw.g.Policies)
	gw.log.Info("reloaded", "added", len(res.Added), "removed", len(res.Removed), "replaced", len(res.Replaced), "updated", len(res.Updated), "unchanged", res.Unchanged)
	if len(errs) > 0 {
		return res, fmt.Errorf("gateway: reload partly failed: %v", errs)
	}
	return res, nil
}

// restartNeeded says why going from a to b needs a restart, or "".
func restartNeeded(a, b *config.Gateway) string {
	switch {
	case a.Queues != b.Queues || a.Concurrency != b.Concurrency || a.XDPMode != b.XDPMode || a.Attach != b.Attach ||
		!slices.Equal(a.CPUs, b.CPUs):
		return "queues, concurrency, xdp_mode, attach or cpus changed"
	case !sameTuning(a, b):
		return "workers, steering, spread_chunk, rings or busy_poll changed (the data plane's sockets and workers are made at start)"
	case a.MSSClamp != b.MSSClamp || a.DecrementTTL != b.DecrementTTL || a.ICMPErrors != b.ICMPErrors ||
		a.Keepalive != b.Keepalive || a.LogDrops != b.LogDrops || a.Control != b.Control || a.StateDir != b.StateDir ||
		a.Metrics != b.Metrics || a.MetricsMaxSAs != b.MetricsMaxSAs || a.PMTUAge != b.PMTUAge ||
		a.Fragmentation != b.Fragmentation || a.Jumbo != b.Jumbo || a.Reassembly != b.Reassembly:
		return "gateway options changed"
	case !sameIface(&a.Cipher, &b.Cipher) || (a.Plain == nil) != (b.Plain == nil) ||
		(a.Plain != nil && !sameIface(a.Plain, b.Plain)) || !reflect.DeepEqual(tunKey(a.TUN), tunKey(b.TUN)):
		return "interfaces changed"
	case !slices.Equal(a.Protected, b.Protected):
		return "protected prefixes changed (they are loaded into the XDP program)"
	case !sameUnprotected(a, b):
		return "the clear text discarded changed (policies or fail_closed: loaded into the XDP program and nftables)"
	}
	var an, bn []string
	for _, t := range a.Tunnels {
		an = append(an, t.Name)
	}
	for _, t := range b.Tunnels {
		bn = append(bn, t.Name)
	}
	if !slices.Equal(an, bn) {
		return "the set of tunnels changed"
	}
	return ""
}

func sameIface(a, b *config.Iface) bool {
	return a.Name == b.Name && a.NextHop.String() == b.NextHop.String() && slices.Equal(a.Local, b.Local) && a.Address == b.Address && a.VLAN == b.VLAN && a.UDP == b.UDP
}

func tunKey(t *config.TUNIface) any {
	if t == nil {
		return nil
	}
	return struct {
		Name    string
		Address netip.Prefix
		MTU     int
		Routes  []netip.Prefix
	}{t.Name, t.Address, t.MTU, t.Routes}
}

// AddSA installs an SA described like an entry of the configuration's
// sas list (see config.ParseSA), optionally bound to a configured tunnel;
// c's keys are wiped once the SA is built (on an error, the caller wipes
// them).
func (gw *Gateway) AddSA(c *config.SA, tunnel string) error {
	return gw.AddSAs([]*config.SA{c}, tunnel)
}

// UpdateSA changes the SA with c's direction and SPI to c, keeping its
// tunnel unless tunnel is set: in place (SA.Update, state kept) when only
// lifetimes, path MTU or the peer address or port differ; otherwise by a
// replacement (SAD.Replace, which carries the sequence number and replay
// window over when the key is the same). The old SA's keys are wiped
// once in-flight packets are done.
func (gw *Gateway) UpdateSA(c *config.SA, tunnel string) error {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	if c.Direction == config.Out {
		gw.followPeer(c, func(k key) bool { return gw.sas[k].owner == nil }) // not an IKE child's
	}
	e := gw.sas[keyOf(c)]
	if e == nil {
		return fmt.Errorf("%w: %v SPI 0x%x", sa.ErrNotFound, keyOf(c).dir, c.SPI)
	}
	if e.owner != nil {
		return fmt.Errorf("%w: sa %s (peer %s)", ErrIKEOwned, e.conf.Name, e.owner.peer)
	}
	if tunnel != "" && tunnel != e.tunnel && gw.peerTunnelLocked(tunnel) {
		return fmt.Errorf("%w: tunnel %q carries an IKE peer's child SAs", ErrIKEOwned, tunnel)
	}
	if tunnel == "" {
		tunnel = e.tunnel
	} else if gw.tunnels[tunnel] == nil {
		return fmt.Errorf("gateway: no tunnel %q", tunnel)
	}
	sels := gw.g.SelectorsOf(c, tunnel)
	if err := gw.peerTSLocked(c, tunnel, sels); err != nil {
		return err
	}
	if tunnel == e.tunnel && e.isum == immutableFingerprint(c, sels) {
		if err := gw.update(c, sels); err != nil {
			return err
		}
		gw.log.Info("sa updated in place", "sa", c.Name, "spi", fmt.Sprintf("0x%x", c.SPI), "dir", c.Direction.String())
		return nil
	}
	if err := gw.replace(c, gw.g, tunnel); err != nil {
		return err
	}
	gw.log.Info("sa updated", "sa", c.Name, "spi", fmt.Sprintf("0x%x", c.SPI), "dir", c.Direction.String())
	return nil
}

// followPeer keeps the identity of an outbound SA whose peer address
// moved: the gateway (like the SAD) keys outbound SAs by SPI and peer, so
// c's key differs from that of the installed SA with c's name and SPI.
// Re-keying that entry (when free(old key) allows) makes the caller
// update it in place or replace it with its state carried over, instead
// of deleting it and adding a fresh SA - which, under an unchanged key,
// would send its sequence numbers again (nonce reuse).
func (gw *Gateway) followPeer(c *config.SA, free func(key) bool) {
	k := keyOf(c)
	if gw.sas[k] != nil {
		return
	}
	for i, ok := range gw.order {
		e := gw.sas[ok]
		if ok.dir == sa.Out && ok.spi == k.spi && e.conf.Name == c.Name && free(ok) {
			delete(gw.sas, ok)
			gw.sas[k] = e
			gw.order[i] = k
			return
		}
	}
}

// DeleteSA removes the SA with this direction and SPI; its keys are
// wiped once in-flight packets are done. An outbound SA is identified by
// its SPI and remote; remote may be left invalid when only one outbound
// SA has the SPI (else the error wraps sa.ErrAmbiguous).
func (gw *Gateway) DeleteSA(dir sa.Direction, spi uint32, remote netip.Addr) error {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	k := key{dir: dir, spi: spi}
	if dir == sa.Out {
		k.remote = remote
		if !remote.IsValid() {
			var found []key
			for x := range gw.sas {
				if x.dir == sa.Out && x.spi == spi {
					found = append(found, x)
				}
			}
			if len(found) > 1 {
				return fmt.Errorf("%w: SPI 0x%x: give the remote address", sa.ErrAmbiguous, spi)
			}
			if len(found) == 1 {
				k = found[0]
			}
		}
	}
	if e := gw.sas[k]; e != nil && e.owner != nil {
		return fmt.Errorf("%w: sa %s (peer %s)", ErrIKEOwned, e.conf.Name, e.owner.peer)
	}
	if err := gw.remove(k); err != nil {
		return err
	}
	gw.log.Info("sa deleted", "spi", fmt.Sprintf("0x%x", spi), "dir", dir.String())
	return nil
}
