package sa

import (
	"container/list"
	"fmt"
	"slices"

	"github.com/espxdp/espxdp/sa/replay"
)

// Retired keys.
//
// Invariant (per SAD): under one key no sequence number is sent twice,
// and no packet accepted once is accepted again - also when the SA
// holding the key leaves the SAD (Delete, Remove, DeleteChild, Replace)
// and an SA with the same key (SA.SameKey: the same key identity, whatever
// the SPI or the ICV length) is added later:
//
//   - a live outbound SA's key is never added twice: Add and Replace
//     refuse an outbound SA whose key a live outbound SA of the SAD uses,
//     or a removed one that is not closed yet (it may still send);
//   - when an SA that left the SAD is closed (its final counter and exact
//     window are known then), the SAD keeps its key fingerprint with the
//     highest sequence number used (outbound) or its window (inbound);
//   - an SA added later with that fingerprint gets its counter raised to
//     that number, or the window merged into its own, before any worker
//     can use it (held, as Replace's carry-over), inbound also the
//     current window of a removed SA that is not closed yet.
//
// Memory is bounded: at most MaxRetiredKeys fingerprints per SAD, the
// least recently retired forgotten first, and an inbound window is kept
// with at most retiredWinWords bitmap words (older numbers below its top
// count as seen: the truncation only rejects more). Residual risk: a key
// re-added after more than MaxRetiredKeys other keys retired since, or
// added to another SAD or process (without the gateway's state_dir),
// starts afresh. Only fingerprints (keyed HMACs, keyFingerprint) are
// kept, never keys.

// MaxRetiredKeys bounds the retired key fingerprints a SAD remembers.
const MaxRetiredKeys = 65536

// retiredWinWords bounds the bitmap of a remembered inbound window.
const retiredWinWords = 16

// retKey names a retired key: direction and fingerprint.
type retKey struct {
	dir Direction
	fp  [32]byte
}

type retiredKey struct {
	k   retKey
	seq uint64      // outbound: highest sequence number used
	win ReplayState // inbound: merged windows
}

// retiredSet is the SAD's memory of retired keys (under SAD.mu).
type retiredSet struct {
	m   map[retKey]*list.Element // of *retiredKey
	lru list.List                // front: least recently retired
	max int
}

func (r *retiredSet) get(k retKey) *retiredKey {
	if e := r.m[k]; e != nil {
		return e.Value.(*retiredKey)
	}
	return nil
}

// put merges the final state of the closed SA s into the set.
func (r *retiredSet) put(s *SA) {
	if r.m == nil {
		r.m = map[retKey]*list.Element{}
	}
	k := retKey{s.dir, s.keyFP}
	e := r.m[k]
	if e == nil {
		for r.lru.Len() >= r.max && r.lru.Len() > 0 {
			old := r.lru.Remove(r.lru.Front()).(*retiredKey)
			delete(r.m, old.k)
		}
		e = r.lru.PushBack(&retiredKey{k: k})
		r.m[k] = e
	} else {
		r.lru.MoveToBack(e)
	}
	rk := e.Value.(*retiredKey)
	if s.dir == Out {
		rk.seq = max(rk.seq, s.seq.Load())
		return
	}
	rk.win = mergeStates(rk.win, s.ReplayState())
}

// mergeStates returns a state that records everything a or b records,
// with a bitmap of at most retiredWinWords words.
func mergeStates(a, b ReplayState) ReplayState {
	return truncState(replay.MergeStates(truncState(a), truncState(b)))
}

// truncState cuts st's bitmap to retiredWinWords words (the numbers it no
// longer covers count as recorded).
func truncState(st ReplayState) ReplayState {
	if len(st.Bitmap) > retiredWinWords {
		st.Bitmap = st.Bitmap[:retiredWinWords]
	}
	st.Bitmap = slices.Clone(st.Bitmap)
	return st
}

// retiring notes that s, an SA of d, leaves d (d.mu held): until it is
// closed its key counts as in use (outbound), and when it is closed its
// final state is remembered.
func (d *SAD) retiring(s *SA) {
	k := retKey{s.dir, s.keyFP}
	d.pending[k] = append(d.pending[k], s)
	if s.dir == Out && d.liveOut[s.keyFP] == s {
		delete(d.liveOut, s.keyFP)
	}
	s.retireTo.Store(d)
	// Close sets closed before it swaps retireTo: one of the two sees
	// the other and exactly one records s (the compare-and-swap).
	if s.closed.Load() && s.retireTo.CompareAndSwap(d, nil) {
		d.retireLocked(s)
	}
}

// retire is called by Close of an SA that left d.
func (d *SAD) retire(s *SA) {
	d.mu.Lock()
	d.retireLocked(s)
	d.mu.Unlock()
}

func (d *SAD) retireLocked(s *SA) {
	d.unpend(s)
	d.retired.put(s)
}

// unpend drops s from the pending list of its key.
func (d *SAD) unpend(s *SA) {
	k := retKey{s.dir, s.keyFP}
	l := slices.DeleteFunc(d.pending[k], func(x *SA) bool { return x == s })
	if len(l) == 0 {
		delete(d.pending, k)
	} else {
		d.pending[k] = l
	}
}

// settle records the pending SAs of k that are closed but whose Close
// has not recorded them yet (it waits for d.mu, held here).
func (d *SAD) settle(k retKey) {
	for _, o := range slices.Clone(d.pending[k]) {
		if o.closed.Load() && o.retireTo.CompareAndSwap(d, nil) {
			d.retireLocked(o)
		}
	}
}

// keyConflict reports an outbound SA of d other than s and old that
// uses s's key: live, or removed and not yet closed (d.mu held).
func (d *SAD) keyConflict(s, old *SA) error {
	if s.dir != Out {
		return nil
	}
	d.settle(retKey{Out, s.keyFP})
	if o := d.liveOut[s.keyFP]; o != nil && o != s && o != old {
		return fmt.Errorf("%w: %v: key already in use by outbound SA %v", ErrExists, s, o)
	}
	for _, o := range d.pending[retKey{Out, s.keyFP}] {
		if o != s && o != old && !o.closed.Load() {
			return fmt.Errorf("%w: %v: key still in use by outbound SA %v (removed, not closed yet)", ErrExists, s, o)
		}
	}
	return nil
}

// inherit raises s, about to join d, to the state remembered for its key
// (d.mu held): outbound, its counter above the highest number used under
// the key; inbound, the retired windows (and those of removed SAs not
// closed yet) merged into its own. Workers keep off s meanwhile.
func (d *SAD) inherit(s *SA) {
	k := retKey{s.dir, s.keyFP}
	if s.retireTo.CompareAndSwap(d, nil) { // re-added after Remove
		d.unpend(s)
	}
	d.settle(k)
	rk := d.retired.get(k)
	var pend []*SA
	if s.dir == In {
		pend = d.pending[k]
	}
	if rk == nil && len(pend) == 0 {
		return
	}
	s.held.Store(true)
	s.waitIdle()
	s.updMu.Lock()
	if s.dir == Out {
		for {
			cur := s.seq.Load()
			if rk.seq <= cur || s.seq.CompareAndSwap(cur, rk.seq) {
				break
			}
		}
	} else {
		var st ReplayState
		if rk != nil {
			st = rk.win
		}
		for _, o := range pend {
			st = mergeStates(st, o.ReplayState())
		}
		s.mu.Lock()
		s.win.Merge(st)
		top := s.win.Top()
		s.mu.Unlock()
		if top > s.rxTop.Load() {
			s.rxTop.Store(top)
		}
	}
	s.updMu.Unlock()
	s.held.Store(false)
}
