package sa

import (
	"slices"
	"sync"
	"sync/atomic"
)

// Tunnel binds SAs to a route-based tunnel (an ipsec/xfrm/VTI interface,
// a TUN device, a peer of a VPN product): the current outbound SA - or,
// for per-CPU SAs (RFC 9611), one per worker - and the inbound SAs whose
// traffic belongs to the tunnel. It replaces the SPD when routing, not
// selectors, decides what is encrypted.
//
// Make-before-break rekeying: add the new inbound SA to the SAD (and
// AddInbound), add the new outbound SA to the SAD, SetOutbound(new) -
// one atomic pointer store, so every later packet uses the new SA and
// none is dropped - then, once packets sent under the old SAs have had
// time to arrive, delete the old outbound and inbound SAs.
type Tunnel struct {
	name string
	mu   sync.Mutex
	out  atomic.Pointer[[]*SA]
	in   atomic.Pointer[[]*SA]

	lastAcquire atomic.Int64 // unix nanos of the last acquire event (see acquire.go)
}

// NewTunnel returns a tunnel without SAs.
func NewTunnel(name string) *Tunnel {
	t := &Tunnel{name: name}
	t.out.Store(new([]*SA))
	t.in.Store(new([]*SA))
	return t
}

// Name returns the tunnel's name.
func (t *Tunnel) Name() string { return t.name }

// String returns the name.
func (t *Tunnel) String() string { return "Tunnel(" + t.name + ")" }

// SetOutbound atomically makes sas the tunnel's outbound SAs. With one
// SA every worker uses it; with several (per-CPU SAs) worker i uses
// sas[i % len(sas)]. Without arguments the tunnel has no outbound SA and
// its packets raise EventAcquire and are dropped with DropAcquire. SAs
// that are not outbound, and deleted (closed) ones, are ignored.
func (t *Tunnel) SetOutbound(sas ...*SA) {
	l := make([]*SA, 0, len(sas))
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range sas {
		if s == nil || s.dir != Out {
			continue
		}
		// Record the binding, then check the state, under t.mu: see
		// finishDelete.
		s.binds.add(t)
		if s.State() != StateDeleted {
			l = append(l, s)
		}
	}
	for _, s := range l {
		s.tunnel.Store(t)
	}
	t.out.Store(&l)
}

// Outbound returns the current outbound SAs.
func (t *Tunnel) Outbound() []*SA { return slices.Clone(*t.out.Load()) }

// pick returns worker w's outbound SA, or nil.
func (t *Tunnel) pick(w int) *SA {
	l := *t.out.Load()
	switch len(l) {
	case 0:
		return nil
	case 1:
		return l[0]
	}
	return l[w%len(l)]
}

// AddInbound records s as one of the tunnel's inbound SAs; Inbound then
// reports the tunnel in Packet.Tunnel of the packets s decrypts. A
// deleted (closed) SA is ignored.
func (t *Tunnel) AddInbound(s *SA) {
	if s == nil || s.dir != In {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s.binds.add(t)
	if s.State() == StateDeleted { // after recording the binding, under t.mu: see finishDelete
		return
	}
	old := *t.in.Load()
	if slices.Contains(old, s) {
		return
	}
	l := append(slices.Clone(old), s)
	s.tunnel.Store(t)
	t.in.Store(&l)
}

// RemoveInbound forgets s.
func (t *Tunnel) RemoveInbound(s *SA) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.in.Load()
	i := slices.Index(old, s)
	if i < 0 {
		return
	}
	l := slices.Delete(slices.Clone(old), i, i+1)
	s.tunnel.CompareAndSwap(t, nil)
	t.in.Store(&l)
}

// Inbound returns the inbound SAs.
func (t *Tunnel) Inbound() []*SA { return slices.Clone(*t.in.Load()) }

// tunnelSet is the set of tunnels an SA was ever bound to (an SA may be
// in several), so that deleting it can take it out of every one. Lock
// order: a Tunnel's mu, then the set's.
type tunnelSet struct {
	mu sync.Mutex
	l  []*Tunnel
}

func (b *tunnelSet) add(t *Tunnel) {
	b.mu.Lock()
	if !slices.Contains(b.l, t) {
		b.l = append(b.l, t)
	}
	b.mu.Unlock()
}

func (b *tunnelSet) list() []*Tunnel {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.l)
}

// unbindAll takes s out of every tunnel it was bound to.
func unbindAll(s *SA) {
	for _, t := range s.binds.list() {
		t.unbind(s)
	}
}

// unbind removes s from the outbound and inbound lists; SAD deletion
// calls it, so that a deleted SA is never reachable through a tunnel.
func (t *Tunnel) unbind(s *SA) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old := *t.out.Load(); slices.Contains(old, s) {
		l := slices.DeleteFunc(slices.Clone(old), func(x *SA) bool { return x == s })
		t.out.Store(&l)
	}
	if old := *t.in.Load(); slices.Contains(old, s) {
		l := slices.DeleteFunc(slices.Clone(old), func(x *SA) bool { return x == s })
		t.in.Store(&l)
	}
	s.tunnel.CompareAndSwap(t, nil)
}
