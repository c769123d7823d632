package sa

import (
	"fmt"
	"slices"
)

// ChildID groups the SAs of one IKE child SA: the inbound and the
// outbound SA negotiated together (and per-CPU siblings, RFC 9611), so
// that a control plane can add and delete them as one (Config.Child,
// SAD.AddChild, SAD.DeleteChild, SAD.Child). 0 means no group.
type ChildID uint64

// AddChild adds several SAs atomically: either all are added or, if one
// of them cannot be (see Add for the reasons, plus two of them with the
// same key), none is and the error names the first that failed. The SAs
// join the child groups of their Config.Child (usually one id for all);
// inbound SAs consume the SPI reservations of their SPIs (AllocSPI).
func (d *SAD) AddChild(sas ...*SA) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock().UnixNano()
	for i, s := range sas {
		if err := d.checkAdd(s, sas[:i], now); err != nil {
			return err
		}
	}
	for i, s := range sas {
		if !s.owner.CompareAndSwap(nil, d) {
			for _, o := range sas[:i] {
				o.owner.Store(nil)
			}
			return fmt.Errorf("%w: %v is in another SAD", ErrExists, s)
		}
	}
	for _, s := range sas {
		d.inherit(s) // before any worker can find s
		d.addLocked(s)
	}
	return nil
}

// checkAdd reports why s cannot be added to d alongside before, the SAs
// of the same AddChild call ahead of it (d.mu held).
func (d *SAD) checkAdd(s *SA, before []*SA, now int64) error {
	if s == nil {
		return fmt.Errorf("%w: nil SA", ErrNotFound)
	}
	if s.State() == StateDeleted {
		return fmt.Errorf("%w: %v", ErrClosed, s)
	}
	if s.owner.Load() != nil {
		return fmt.Errorf("%w: %v is already in a SAD", ErrExists, s)
	}
	dup := false
	if s.dir == Out {
		dup = d.out.find(s) != nil
		k := keyOfOut(s)
		for _, o := range before {
			dup = dup || o == s || o.dir == Out && o.spi == s.spi && keyOfOut(o) == k
		}
	} else {
		dup = d.in.Load().find(s.spi) != nil
		for _, o := range before {
			dup = dup || o == s || o.dir == In && o.spi == s.spi
		}
		// An expired reservation is dropped; a live one is consumed by
		// addLocked.
		if exp, ok := d.spis[s.spi]; ok && now >= exp {
			delete(d.spis, s.spi)
		}
	}
	if dup {
		return fmt.Errorf("%w: %v SPI 0x%08x", ErrExists, s.dir, s.spi)
	}
	// Invariant: no two outbound SAs of a SAD use one key (retired.go).
	if err := d.keyConflict(s, nil); err != nil {
		return err
	}
	for _, o := range before {
		if s.dir == Out && o.dir == Out && o.SameKey(s) {
			return fmt.Errorf("%w: %v: key already in use by outbound SA %v", ErrExists, s, o)
		}
	}
	return nil
}

// leaveChild takes s out of its child group (d.mu held).
func (d *SAD) leaveChild(s *SA) {
	id := s.cfg.Child
	if id == 0 {
		return
	}
	l := slices.DeleteFunc(slices.Clone(d.children[id]), func(x *SA) bool { return x == s })
	if len(l) == 0 {
		delete(d.children, id)
	} else {
		d.children[id] = l
	}
}

// Child returns the SAs of child group id in the order they were added
// (nil for id 0 or an empty group).
func (d *SAD) Child(id ChildID) []*SA {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.children[id])
}

// DeleteChild deletes every SA of child group id (as Delete does: out
// of the SAD and its tunnel, keys wiped, EventDeleted) and returns how
// many. No packet can find any of them once the SAD's lock is released,
// as they leave the SAD together. It fails with ErrNotFound when the
// group is empty.
func (d *SAD) DeleteChild(id ChildID) (int, error) {
	if id == 0 {
		return 0, fmt.Errorf("%w: child 0 is no group", ErrNotFound)
	}
	d.mu.Lock()
	l := d.children[id]
	for _, s := range slices.Clone(l) {
		d.removeLocked(s)
	}
	d.mu.Unlock()
	if len(l) == 0 {
		return 0, fmt.Errorf("%w: child %d", ErrNotFound, id)
	}
	for _, s := range l {
		unbindAll(s)
	}
	for _, s := range l {
		finishDelete(s)
	}
	return len(l), nil
}
