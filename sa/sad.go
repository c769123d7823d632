package sa

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// SAD is the Security Association Database. Inbound SAs are keyed by
// SPI, as a receiver finds them (RFC 4301 §4.1); outbound SAs are keyed
// by SPI, Remote and (with UDPEncap) RemotePort, because the SPI of an
// outbound SA is chosen by the peer: two peers may pick the same one.
// The data path reaches outbound SAs through Tunnels and the SPD, never
// by SPI; GetOut finds one for management.
//
// Reads (Lookup, used by every inbound packet) take no lock and do not
// allocate. The inbound table is an open-addressing hash table with
// linear probing whose slots hold the SPI and an atomic pointer to the
// SA; the table itself sits behind an atomic pointer. Writers (Add, Replace,
// Delete) serialise on a mutex and change single slots in place, with
// atomic stores ordered so that a concurrent reader sees either the old
// or the new entry; only growth copies the table, so an update costs
// O(1) amortised whatever the size, and a lookup stays a hash and one or
// two probes from one SA to millions. (A copy-on-write map would copy the
// whole map per update: fine for tens of SAs, far too slow at a million.)
type SAD struct {
	mu       sync.Mutex
	in       atomic.Pointer[table]
	out      outIndex          // under mu
	children map[ChildID][]*SA // under mu; see child.go
	spis     map[uint32]int64  // under mu: reserved inbound SPIs → expiry (unix nanos); see spialloc.go
	liveOut  map[[32]byte]*SA  // under mu: outbound SAs by key fingerprint (retired.go)
	pending  map[retKey][]*SA  // under mu: SAs that left, not closed yet (retired.go)
	retired  retiredSet        // under mu: retired keys (retired.go)
	events   EventFunc
	clock    func() time.Time
}

// Slot keys: 0 is an empty slot, keyLive|spi a used one and keyDead|spi
// a deleted one (a tombstone, which lookups probe past). A tombstone is
// only ever reused by the same SPI, so a slot whose key says spi never
// holds another SPI's SA: a lookup can trust the key without reading the
// SA (one cache miss less on large tables). Other SPIs' tombstones are
// cleared when the table is rebuilt.
const (
	keyLive = 1 << 32
	keyDead = 2 << 32
)

type slot struct {
	key atomic.Uint64
	sa  atomic.Pointer[SA]
}

type table struct {
	slots []slot
	shift uint8 // 64 - log2(len(slots))
	live  int   // writer-only fields (under SAD.mu)
	used  int   // live + tombstones
}

func newTable(n int) *table {
	bits := uint8(3)
	for 1<<bits < n {
		bits++
	}
	return &table{slots: make([]slot, 1<<bits), shift: 64 - bits}
}

// spiHash is Fibonacci hashing: SPIs are often sequential, and the
// multiply spreads them over the high bits used as the index.
func (t *table) home(spi uint32) uint64 {
	return (uint64(spi) * 0x9E3779B97F4A7C15) >> t.shift
}

func (t *table) lookup(spi uint32) *SA {
	mask := uint64(len(t.slots) - 1)
	want := keyLive | uint64(spi)
	for i, n := t.home(spi), 0; n < len(t.slots); i, n = (i+1)&mask, n+1 {
		s := &t.slots[i]
		switch k := s.key.Load(); k {
		case 0:
			return nil
		case want:
			// nil if deleted between the two loads.
			if sa := s.sa.Load(); sa != nil {
				return sa
			}
		}
	}
	return nil
}

// find returns the slot holding spi, or nil (writer only).
func (t *table) find(spi uint32) *slot {
	mask := uint64(len(t.slots) - 1)
	want := keyLive | uint64(spi)
	for i, n := t.home(spi), 0; n < len(t.slots); i, n = (i+1)&mask, n+1 {
		switch k := t.slots[i].key.Load(); k {
		case 0:
			return nil
		case want:
			return &t.slots[i]
		}
	}
	return nil
}

// insert puts sa in a free slot; the caller checked it is absent and
// that the table has room (writer only).
func (t *table) insert(sa *SA) {
	mask := uint64(len(t.slots) - 1)
	for i := t.home(sa.spi); ; i = (i + 1) & mask {
		s := &t.slots[i]
		k := s.key.Load()
		if k == 0 || k == keyDead|uint64(sa.spi) {
			s.sa.Store(sa) // pointer first: a reader that sees the key sees it
			s.key.Store(keyLive | uint64(sa.spi))
			t.live++
			if k == 0 {
				t.used++
			}
			return
		}
	}
}

// NewSAD returns an empty SAD.
func NewSAD(opts SADOptions) *SAD {
	d := &SAD{events: opts.Events, clock: opts.Clock, children: map[ChildID][]*SA{}, spis: map[uint32]int64{},
		liveOut: map[[32]byte]*SA{}, pending: map[retKey][]*SA{}}
	d.retired.max = MaxRetiredKeys
	if d.clock == nil {
		d.clock = time.Now
	}
	d.in.Store(newTable(8))
	d.out.bySPI = map[uint32][]*SA{}
	return d
}

// Lookup returns the inbound SA with the given SPI, or nil. It takes no
// lock and does not allocate.
func (d *SAD) Lookup(spi uint32) *SA { return d.in.Load().lookup(spi) }

// Add inserts s. It fails with ErrExists if an inbound SA with the same
// SPI, or an outbound SA with the same SPI, Remote and RemotePort, is
// present, and with ErrClosed for a closed SA or ErrExists for one that
// is already in a SAD. An inbound SA whose SPI was reserved by AllocSPI
// consumes the reservation. If s has no EventFunc, it gets
// SADOptions.Events.
//
// Keys: Add refuses (ErrExists) an outbound SA whose key (SA.SameKey) a
// live outbound SA of the SAD uses, or one removed and not closed yet.
// An SA whose key the SAD saw retire (see Remove, Delete, Replace)
// continues above the highest sequence number used under it (outbound)
// or rejects what it accepted (inbound, windows merged), whatever its
// SPI or ICV length; that is done before Add returns, while workers keep
// off s.
func (d *SAD) Add(s *SA) error { return d.AddChild(s) }

// addLocked inserts s, which checkAdd accepted (d.mu held).
func (d *SAD) addLocked(s *SA) {
	if d.events != nil && s.events.Load() == nil {
		s.SetEvents(d.events)
	}
	if s.cfg.Child != 0 {
		d.children[s.cfg.Child] = append(d.children[s.cfg.Child], s)
	}
	if s.dir == Out {
		d.out.add(s)
		d.liveOut[s.keyFP] = s
		return
	}
	delete(d.spis, s.spi) // the reservation, if any, is consumed
	p := &d.in
	t := p.Load()
	// Keep the load (live entries and tombstones) at most one half, so
	// probe sequences stay short. When it would pass that, rebuild into
	// a fresh table - twice the size if live entries fill more than 3/8
	// of it, else the same size without tombstones - and publish it with
	// one atomic store.
	if (t.used+1)*2 > len(t.slots) {
		size := len(t.slots)
		if (t.live+1)*8 > size*3 {
			size *= 2
		}
		nt := newTable(size)
		for i := range t.slots {
			if t.slots[i].key.Load()&keyLive != 0 {
				if sa := t.slots[i].sa.Load(); sa != nil {
					nt.insert(sa)
				}
			}
		}
		p.Store(nt)
		t = nt
	}
	t.insert(s)
}

// Replace atomically puts s in place of the SA with the same key (SPI
// inbound; SPI, Remote and RemotePort outbound), so that no packet finds
// neither, then closes the old SA (waiting for in-flight packets, wiping
// its keys) and returns it. The old SA leaves its child group (s joins
// its own, Config.Child). Replace raises no EventDeleted: the SPI stays
// in use.
//
// When s has the same key as the old SA (SA.SameKey: the same key
// material under the same primitive, whatever the ICV length), it is
// the same SA under the same key and takes its state
// over: outbound, s continues after the higher of the old SA's last
// sequence number and s's InitialSeq (and inherits its SeqLimit when s
// has none); inbound, s starts with the old window merged into its own,
// so it rejects every packet the old SA accepted. The old SA's byte and
// packet usage counts against s's lifetimes too (s may expire at once);
// time lifetimes run from s's Config.Created, so pass the old SA's
// Config().Created to keep them. Until that is done
// workers keep off s (packets for it drop as DropNoSA, for at most the
// time a worker takes to finish its batch). With a different key s
// keeps its own fresh state, or the state the SAD remembers for its key
// (see Add). Replace refuses (ErrExists) an outbound s whose key another
// outbound SA of the SAD uses. To change lifetimes, path MTU or the peer
// endpoint, SA.Update is simpler: it keeps the SA.
func (d *SAD) Replace(s *SA) (old *SA, err error) {
	d.mu.Lock()
	if s.State() == StateDeleted {
		d.mu.Unlock()
		return nil, fmt.Errorf("%w: %v", ErrClosed, s)
	}
	var sl *slot
	if s.dir == Out {
		old = d.out.find(s)
	} else if sl = d.in.Load().find(s.spi); sl != nil {
		old = sl.sa.Load()
	}
	if old == nil {
		d.mu.Unlock()
		return nil, fmt.Errorf("%w: %v SPI 0x%08x", ErrNotFound, s.dir, s.spi)
	}
	if old == s {
		d.mu.Unlock()
		return nil, fmt.Errorf("%w: replacing %v by itself", ErrExists, s)
	}
	if err := d.keyConflict(s, old); err != nil {
		d.mu.Unlock()
		return nil, err
	}
	if !s.owner.CompareAndSwap(nil, d) {
		d.mu.Unlock()
		return nil, fmt.Errorf("%w: %v is in another SAD", ErrExists, s)
	}
	if d.events != nil && s.events.Load() == nil {
		s.SetEvents(d.events)
	}
	same := s.SameKey(old)
	swap := func() {
		if sl != nil {
			sl.sa.Store(s)
		} else {
			d.out.swap(old, s)
			d.liveOut[s.keyFP] = s
		}
		d.leaveChild(old)
		if s.cfg.Child != 0 {
			d.children[s.cfg.Child] = append(d.children[s.cfg.Child], s)
		}
		old.owner.Store(nil)
		if same {
			// old is closed below under d.mu (Close's hook would wait
			// for d.mu): recorded there.
			if d.liveOut[old.keyFP] == old {
				delete(d.liveOut, old.keyFP)
			}
		} else {
			d.retiring(old)
		}
	}
	if same {
		// Invariant: under one key no sequence number is sent twice and
		// no packet is accepted twice. Keep workers off s, wait for any
		// that used it before, retire old (Close waits for its runs),
		// carry its state into s, and only then let s be used - all under
		// d.mu, so that a concurrent Replace of s waits for the carry.
		s.held.Store(true)
		s.waitIdle()
		swap()
		old.Close()
		old.closed.Store(true)
		d.retired.put(old)
		var ev eventList
		s.carryFrom(old, &ev)
		s.held.Store(false)
		d.mu.Unlock()
		ev.deliver() // outside d.mu: a handler may call the SAD
		return old, nil
	}
	d.inherit(s)
	swap()
	d.mu.Unlock()
	old.Close()
	return old, nil
}

// Remove takes the SA out of the SAD and out of its Tunnel without
// closing it and returns it; the caller owns it and should Close it when
// done. For outbound SAs the SPI must identify one SA (else ErrAmbiguous:
// use RemoveSA). Remove raises no EventDeleted. Until it is closed, its
// key counts as in use (Add refuses another outbound SA with it, but
// takes the removed SA itself back); when it is closed, the SAD
// remembers its key with its final counter or window (retired.go).
func (d *SAD) Remove(dir Direction, spi uint32) (*SA, error) {
	d.mu.Lock()
	s, err := d.get(dir, spi)
	if err == nil {
		d.removeLocked(s)
	}
	d.mu.Unlock()
	if err != nil {
		return nil, err
	}
	unbindAll(s)
	return s, nil
}

// Delete removes the SA (see Remove), unbinds it from its Tunnel and
// closes it: once in-flight packets are done its keys are wiped, then
// EventDeleted is raised. Packets that arrive for it later count as
// DropNoSA (inbound) or raise an acquire (outbound, through its tunnel).
func (d *SAD) Delete(dir Direction, spi uint32) error {
	d.mu.Lock()
	s, err := d.get(dir, spi)
	d.mu.Unlock()
	if err != nil {
		return err
	}
	return d.deleteSA(s)
}

// Len returns the number of SAs (both directions).
func (d *SAD) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.in.Load().live + d.out.n
}

// Range calls fn for every SA, inbound first, until fn returns false.
// It reads the inbound table like Lookup does, without locking out
// writers; outbound SAs come from a snapshot taken under the SAD's lock,
// so fn may call the SAD. The order is unspecified.
func (d *SAD) Range(fn func(*SA) bool) {
	t := d.in.Load()
	for i := range t.slots {
		if t.slots[i].key.Load()&keyLive == 0 {
			continue
		}
		if sa := t.slots[i].sa.Load(); sa != nil && !fn(sa) {
			return
		}
	}
	d.mu.Lock()
	out := d.out.all()
	d.mu.Unlock()
	for _, sa := range out {
		if !fn(sa) {
			return
		}
	}
}

// All returns every SA, inbound first.
func (d *SAD) All() []*SA {
	var out []*SA
	d.Range(func(s *SA) bool { out = append(out, s); return true })
	return out
}

// Sweep checks the time lifetimes of every SA at now (zero: the SAD's
// clock) and raises the soft and hard expire events that are due. The
// data path checks time lifetimes only when packets flow; call Sweep
// periodically (say once a second) so that idle SAs expire too. It also
// drops expired SPI reservations (AllocSPI).
func (d *SAD) Sweep(now time.Time) {
	if now.IsZero() {
		now = d.clock()
	}
	n := now.UnixNano()
	d.mu.Lock()
	d.expireReservations(n)
	d.mu.Unlock()
	d.Range(func(s *SA) bool {
		s.checkTime(s.attrs.Load(), n, nil)
		return true
	})
}
