package sa

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// ErrAmbiguous: several outbound SAs have that SPI (towards different
// peers); identify the SA itself (SAD.DeleteSA, SAD.RemoveSA) or its
// peer (SAD.GetOut).
var ErrAmbiguous = errors.New("sa: several outbound SAs have that SPI")

// outIndex holds the outbound SAs of a SAD, keyed by SPI, Remote and
// RemotePort (0 without UDPEncap). The SPI of an outbound SA is chosen
// by the peer, so two peers may pick the same one: each SPI maps to the
// (usually single) SAs that use it. Invariant: no two SAs in one list
// have the same outKey. Only writers and management use it, under
// SAD.mu; the data path reaches outbound SAs through Tunnels and the SPD.
type outIndex struct {
	bySPI map[uint32][]*SA
	n     int
}

// outKey is what identifies an outbound SA besides its SPI.
type outKey struct {
	remote netip.Addr
	port   uint16
}

func keyOfOut(s *SA) outKey {
	ep := s.attrs.Load().endpoint(s.cfg.UDPEncap)
	return outKey{remote: ep.Addr(), port: ep.Port()}
}

// keyOfOutAt is keyOfOut for the endpoint s would have after an Update.
func keyOfOutAt(s *SA, a *attrs) outKey {
	ep := a.endpoint(s.cfg.UDPEncap)
	return outKey{remote: ep.Addr(), port: ep.Port()}
}

// conflict returns another SA than s that has s's SPI and key k, or nil.
func (x *outIndex) conflict(s *SA, k outKey) *SA {
	for _, o := range x.bySPI[s.spi] {
		if o != s && keyOfOut(o) == k {
			return o
		}
	}
	return nil
}

// find returns the SA with s's key, or nil.
func (x *outIndex) find(s *SA) *SA {
	k := keyOfOut(s)
	for _, o := range x.bySPI[s.spi] {
		if keyOfOut(o) == k {
			return o
		}
	}
	return nil
}

func (x *outIndex) add(s *SA) {
	x.bySPI[s.spi] = append(x.bySPI[s.spi], s)
	x.n++
}

// remove deletes s and reports whether it was there.
func (x *outIndex) remove(s *SA) bool {
	l := x.bySPI[s.spi]
	i := slices.Index(l, s)
	if i < 0 {
		return false
	}
	if len(l) == 1 {
		delete(x.bySPI, s.spi)
	} else {
		x.bySPI[s.spi] = slices.Delete(slices.Clone(l), i, i+1)
	}
	x.n--
	return true
}

// swap puts s in old's place (same key).
func (x *outIndex) swap(old, s *SA) {
	l := slices.Clone(x.bySPI[old.spi])
	l[slices.Index(l, old)] = s
	x.bySPI[old.spi] = l
}

// all returns the outbound SAs in no particular order (not sorted:
// Sweep calls it every second, also with a million SAs).
func (x *outIndex) all() []*SA {
	out := make([]*SA, 0, x.n)
	for _, l := range x.bySPI {
		out = append(out, l...)
	}
	return out
}

// GetOut returns the outbound SA with this SPI towards remote, or nil.
// If several SAs to remote share the SPI and differ only in RemotePort
// (peers behind one NAT), it returns the one with the lowest port; use
// GetOutPort to choose.
func (d *SAD) GetOut(spi uint32, remote netip.Addr) *SA {
	d.mu.Lock()
	defer d.mu.Unlock()
	var best *SA
	for _, s := range d.out.bySPI[spi] {
		if k := keyOfOut(s); k.remote == remote && (best == nil || k.port < keyOfOut(best).port) {
			best = s
		}
	}
	return best
}

// GetOutPort returns the outbound SA with this SPI towards remote's
// address and port (port 0 for SAs without UDPEncap), or nil.
func (d *SAD) GetOutPort(spi uint32, remote netip.AddrPort) *SA {
	d.mu.Lock()
	defer d.mu.Unlock()
	want := outKey{remote.Addr(), remote.Port()}
	for _, s := range d.out.bySPI[spi] {
		if keyOfOut(s) == want {
			return s
		}
	}
	return nil
}

// Outbound returns the outbound SAs that use this SPI (towards different
// peers), ordered by Remote and RemotePort.
func (d *SAD) Outbound(spi uint32) []*SA {
	d.mu.Lock()
	l := slices.Clone(d.out.bySPI[spi])
	d.mu.Unlock()
	slices.SortFunc(l, func(a, b *SA) int {
		ka, kb := keyOfOut(a), keyOfOut(b)
		if c := ka.remote.Compare(kb.remote); c != 0 {
			return c
		}
		return cmp.Compare(ka.port, kb.port)
	})
	return l
}

// get returns the SA of dir and spi (d.mu held): the inbound SA, or the
// only outbound SA with that SPI.
func (d *SAD) get(dir Direction, spi uint32) (*SA, error) {
	if dir == Out {
		switch l := d.out.bySPI[spi]; len(l) {
		case 0:
		case 1:
			return l[0], nil
		default:
			return nil, fmt.Errorf("%w: SPI 0x%08x (%d SAs)", ErrAmbiguous, spi, len(l))
		}
	} else if sl := d.in.Load().find(spi); sl != nil {
		if s := sl.sa.Load(); s != nil {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w: %v SPI 0x%08x", ErrNotFound, dir, spi)
}

// removeLocked takes s, which is in d, out of the tables and its child
// group (d.mu held).
func (d *SAD) removeLocked(s *SA) {
	if s.dir == Out {
		d.out.remove(s)
	} else {
		t := d.in.Load()
		sl := t.find(s.spi)
		sl.key.Store(keyDead | uint64(s.spi)) // key first: readers stop matching
		sl.sa.Store(nil)
		t.live--
	}
	d.leaveChild(s)
	s.owner.Store(nil)
	d.retiring(s)
}

// checkOwned reports ErrNotFound unless s is in d (d.mu held).
func (d *SAD) checkOwned(s *SA) error {
	if s == nil || s.owner.Load() != d {
		return fmt.Errorf("%w: %v", ErrNotFound, s)
	}
	return nil
}

// RemoveSA takes s out of the SAD and out of its Tunnel without closing
// it (see Remove). It fails with ErrNotFound if s is not in this SAD.
func (d *SAD) RemoveSA(s *SA) error {
	d.mu.Lock()
	err := d.checkOwned(s)
	if err == nil {
		d.removeLocked(s)
	}
	d.mu.Unlock()
	if err != nil {
		return err
	}
	unbindAll(s)
	return nil
}

// deleteSA is RemoveSA then finishDelete.
func (d *SAD) deleteSA(s *SA) error {
	if err := d.RemoveSA(s); err != nil {
		return err
	}
	finishDelete(s)
	return nil
}

// DeleteSA deletes s from the SAD (see Delete): the way to delete an
// outbound SA whose SPI another outbound SA shares. It fails with
// ErrNotFound if s is not in this SAD.
func (d *SAD) DeleteSA(s *SA) error { return d.deleteSA(s) }

// finishDelete closes a removed SA and raises EventDeleted.
//
// Invariant (a deleted SA is never reachable through a tunnel): the SA
// left every tunnel it was bound to before Close; Close sets
// StateDeleted, which Tunnel.SetOutbound and AddInbound check under the
// tunnel's lock after recording the tunnel in the SA's binding set. A
// concurrent SetOutbound either saw StateDeleted (and refused the SA) or
// recorded its tunnel before Close, in which case the second unbindAll,
// after Close, finds that tunnel and takes the SA out again.
func finishDelete(s *SA) {
	s.Close()
	unbindAll(s)
	s.emit(nil, Event{Kind: EventDeleted, Time: time.Now()})
}
