package gateway

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"

	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/sa"
)

// ReloadResult says what a Reload changed.
type ReloadResult struct {
	Added     []string `json:"added,omitempty"`
	Removed   []string `json:"removed,omitempty"`
	Replaced  []string `json:"replaced,omitempty"`
	Unchanged int      `json:"unchanged"`
	Policies  int      `json:"policies"`
}

// Reload applies a new configuration without stopping the data path:
// SAs whose configuration (keys included) is unchanged keep running with
// their replay windows, sequence numbers and counters; changed ones are
// replaced make-before-break; removed ones are deleted (keys wiped); new
// ones added; tunnels rebound and the SPD swapped atomically. A change
// to interfaces, queues, gateway options or the set of tunnels fails
// with ErrRestart and changes nothing. SAs added over the control
// socket and not in the file are removed, as the file is the truth.
func (gw *Gateway) Reload(cfg *config.Config) (ReloadResult, error) {
	var res ReloadResult
	if cfg == nil || cfg.Gateway == nil {
		return res, ErrNotGateway
	}
	gw.mu.Lock()
	defer gw.mu.Unlock()
	if why := restartNeeded(gw.g, cfg.Gateway); why != "" {
		return res, fmt.Errorf("%w: %s", ErrRestart, why)
	}
	// Check every new SA before changing anything.
	for _, c := range cfg.SAs {
		if e := gw.sas[keyOf(c)]; e != nil && e.sum == fingerprint(c) {
			continue
		}
		s, err := gw.newSA(c)
		if err != nil {
			return res, err
		}
		s.Close()
	}
	want := map[key]*config.SA{}
	for _, c := range cfg.SAs {
		want[keyOf(c)] = c
	}
	var errs []error
	for _, k := range slices.Clone(gw.order) {
		if want[k] == nil {
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
			if err := gw.install(c, tn); err != nil {
				errs = append(errs, err)
				continue
			}
			res.Added = append(res.Added, c.Name)
		case e.sum != fingerprint(c) || e.tunnel != tn:
			if err := gw.replace(c, tn); err != nil {
				errs = append(errs, err)
				continue
			}
			res.Replaced = append(res.Replaced, c.Name)
		default:
			e.conf = c // same content; keep the new file's positions
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
	gw.log.Info("reloaded", "added", len(res.Added), "removed", len(res.Removed), "replaced", len(res.Replaced), "unchanged", res.Unchanged)
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
	case a.MSSClamp != b.MSSClamp || a.DecrementTTL != b.DecrementTTL || a.ICMPErrors != b.ICMPErrors ||
		a.Keepalive != b.Keepalive || a.LogDrops != b.LogDrops || a.Control != b.Control || a.PMTUAge != b.PMTUAge ||
		a.Fragmentation != b.Fragmentation || a.Jumbo != b.Jumbo:
		return "gateway options changed"
	case !sameIface(&a.Cipher, &b.Cipher) || (a.Plain == nil) != (b.Plain == nil) ||
		(a.Plain != nil && !sameIface(a.Plain, b.Plain)) || !reflect.DeepEqual(tunKey(a.TUN), tunKey(b.TUN)):
		return "interfaces changed"
	case !slices.Equal(a.Protected, b.Protected):
		return "protected prefixes changed (they are loaded into the XDP program)"
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
	return a.Name == b.Name && a.NextHop.String() == b.NextHop.String() && slices.Equal(a.Local, b.Local) && a.Address == b.Address && a.VLAN == b.VLAN
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
// sas list (see config.ParseSA), optionally bound to a configured tunnel.
func (gw *Gateway) AddSA(c *config.SA, tunnel string) error {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	if tunnel != "" && gw.tunnels[tunnel] == nil {
		return fmt.Errorf("gateway: no tunnel %q", tunnel)
	}
	for _, e := range gw.sas {
		if e.conf.Name == c.Name {
			return fmt.Errorf("%w: name %q", sa.ErrExists, c.Name)
		}
	}
	if err := gw.install(c, tunnel); err != nil {
		return err
	}
	gw.log.Info("sa added", "sa", c.Name, "spi", fmt.Sprintf("0x%x", c.SPI), "dir", c.Direction.String(), "tunnel", tunnel)
	return nil
}

// UpdateSA replaces the SA with c's direction and SPI by one made from c
// (new keys, lifetimes, path MTU...), keeping its tunnel unless tunnel is
// set. The old SA's keys are wiped once in-flight packets are done.
func (gw *Gateway) UpdateSA(c *config.SA, tunnel string) error {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	e := gw.sas[keyOf(c)]
	if e == nil {
		return fmt.Errorf("%w: %v SPI 0x%x", sa.ErrNotFound, keyOf(c).dir, c.SPI)
	}
	if tunnel == "" {
		tunnel = e.tunnel
	} else if gw.tunnels[tunnel] == nil {
		return fmt.Errorf("gateway: no tunnel %q", tunnel)
	}
	if err := gw.replace(c, tunnel); err != nil {
		return err
	}
	gw.log.Info("sa updated", "sa", c.Name, "spi", fmt.Sprintf("0x%x", c.SPI), "dir", c.Direction.String())
	return nil
}

// DeleteSA removes the SA with this direction and SPI; its keys are
// wiped once in-flight packets are done.
func (gw *Gateway) DeleteSA(dir sa.Direction, spi uint32) error {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	if err := gw.remove(key{dir, spi}); err != nil {
		return err
	}
	gw.log.Info("sa deleted", "spi", fmt.Sprintf("0x%x", spi), "dir", dir.String())
	return nil
}
