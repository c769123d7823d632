// Package replay implements the IPsec anti-replay window of RFC 4303
// §3.4.3 with 64-bit Extended Sequence Numbers per RFC 4303 Appendix A,
// as a ring of 64-bit bitmap blocks in the style of RFC 6479: advancing
// the window clears only the blocks it moves over, never shifts the
// whole bitmap, so the cost of a packet does not grow with the window.
//
// A receiver calls Check with the 32 low-order bits from the ESP header
// before it verifies the ICV; Check returns the full (inferred) sequence
// number to authenticate with. Only after the ICV verified does it call
// Update, which records the number and reports false if a concurrent
// packet with the same number got there first. A Window is not safe for
// concurrent use; package sa wraps it in a lock when SAs are shared.
package replay

import (
	"errors"
	"fmt"
)

// MaxSize is the largest window New accepts.
const MaxSize = 1 << 16

// ErrSize is returned by New for a negative or too large window.
var ErrSize = errors.New("replay: window size out of range")

// Window is an anti-replay window. The zero value is a disabled window
// without ESN; use New.
type Window struct {
	size uint64   // W; 0 means anti-replay disabled
	esn  bool     // infer the high 32 bits (RFC 4303 Appendix A)
	top  uint64   // highest sequence number recorded (the right edge)
	mask uint64   // len(bits)*64 - 1
	bits []uint64 // ring of blocks; bit (seq & mask) records seq
}

// New returns a window of size packets (0 disables anti-replay: every
// sequence number is accepted but the right edge is still tracked, so
// that ESN inference keeps working). size must be in [0, MaxSize].
func New(size int, esn bool) (*Window, error) {
	w := new(Window)
	if err := w.Init(size, esn); err != nil {
		return nil, err
	}
	return w, nil
}

// Init (re)initialises w in place, like New.
func (w *Window) Init(size int, esn bool) error {
	if size < 0 || size > MaxSize {
		return fmt.Errorf("%w: %d (want 0..%d)", ErrSize, size, MaxSize)
	}
	*w = Window{size: uint64(size), esn: esn}
	if size > 0 {
		// One block more than the window needs, so that the block of
		// the right edge never overlaps the oldest block in use; a power
		// of two, so that the ring index is a mask.
		n := 1
		for n < (size+63)/64+1 {
			n <<= 1
		}
		w.bits = make([]uint64, n)
		w.mask = uint64(n)*64 - 1
	}
	return nil
}

// Size returns the window size (0 when disabled).
func (w *Window) Size() int { return int(w.size) }

// ESN reports whether the window infers extended sequence numbers.
func (w *Window) ESN() bool { return w.esn }

// Top returns the right edge: the highest sequence number recorded.
func (w *Window) Top() uint64 { return w.top }

// Reset forgets every recorded number.
func (w *Window) Reset() {
	clear(w.bits)
	w.top = 0
}

// Infer returns the full 64-bit sequence number for the low-order 32
// bits seqLo received in a packet, per RFC 4303 Appendix A2.1. Without
// ESN it is seqLo itself. ok is false when the number cannot be valid:
// zero (never sent), or below the first subspace, or past 2^64-1. When
// anti-replay is disabled the window used for inference is half the
// 32-bit space: the number closest to the right edge wins.
func (w *Window) Infer(seqLo uint32) (seq uint64, ok bool) {
	if !w.esn {
		return uint64(seqLo), seqLo != 0
	}
	win := w.size
	if win == 0 {
		win = 1 << 31
	}
	tl, th := uint32(w.top), w.top>>32
	var sh uint64
	if uint64(tl) >= win-1 {
		// Case A: the window lies within one subspace.
		if uint64(seqLo) >= uint64(tl)-win+1 {
			sh = th
		} else {
			if th == 1<<32-1 {
				return 0, false
			}
			sh = th + 1
		}
	} else {
		// Case B: the window spans two subspaces.
		if seqLo >= tl-uint32(win)+1 {
			if th == 0 {
				return 0, false
			}
			sh = th - 1
		} else {
			sh = th
		}
	}
	seq = sh<<32 | uint64(seqLo)
	return seq, seq != 0
}

// Check is the pre-ICV test. It infers the full sequence number from
// seqLo and reports whether a packet with it may be accepted: it is new
// to the right of the window, or inside the window and not yet seen.
// Check changes nothing; call Update once the ICV verified.
func (w *Window) Check(seqLo uint32) (seq uint64, ok bool) {
	seq, ok = w.Infer(seqLo)
	if !ok {
		return seq, false
	}
	return seq, w.fresh(seq)
}

// fresh reports whether seq would be accepted now.
func (w *Window) fresh(seq uint64) bool {
	if w.size == 0 || seq > w.top {
		return true
	}
	if w.top-seq >= w.size {
		return false // too old: left of the window
	}
	i := seq & w.mask
	return w.bits[i>>6]&(1<<(i&63)) == 0
}

// Update records seq, the full sequence number of a packet whose ICV
// verified, moving the window when seq is to the right of it. It
// reports false, recording nothing, if seq is no longer acceptable
// (another packet with it was recorded since Check, or the window moved
// past it).
func (w *Window) Update(seq uint64) bool {
	if seq == 0 {
		return false
	}
	if w.size == 0 {
		w.top = max(w.top, seq)
		return true
	}
	if seq > w.top {
		cur, next := w.top>>6, seq>>6
		n := uint64(len(w.bits))
		if next-cur < n {
			n = next - cur
		}
		for i := uint64(1); i <= n; i++ {
			w.bits[(cur+i)&(w.mask>>6)] = 0
		}
		w.top = seq
	} else if w.top-seq >= w.size {
		return false
	}
	i := seq & w.mask
	b := &w.bits[i>>6]
	bit := uint64(1) << (i & 63)
	if *b&bit != 0 {
		return false
	}
	*b |= bit
	return true
}

// State is the content of a window, to carry it into another window
// (SA replacement with the same key) or across a process restart.
//
// Bit k of the bitmap (bit k%64 of Bitmap[k/64]) says whether Top-k was
// recorded. Every number at or below Top that the bitmap does not cover
// (k ≥ 64*len(Bitmap)) counts as recorded: a window that is merged with
// a State never accepts a number the exporting window would have
// rejected.
type State struct {
	// Top is the highest sequence number recorded; 0: none.
	Top uint64 `json:"top"`
	// Bitmap records the numbers below Top; nil for a disabled window,
	// which then makes every number up to Top count as recorded.
	Bitmap []uint64 `json:"bitmap,omitempty"`
}

// State exports the window's content. The bitmap covers the window size
// rounded up to 64; the numbers in the rounding, left of the window,
// are marked recorded (the window rejects them as too old).
func (w *Window) State() State {
	st := State{Top: w.top}
	if w.size == 0 || w.top == 0 {
		return st
	}
	n := (w.size + 63) / 64
	st.Bitmap = make([]uint64, n)
	for k := uint64(0); k < n*64; k++ {
		seq := w.top - k
		if seq == 0 {
			break
		}
		if k >= w.size || w.bits[(seq&w.mask)>>6]&(1<<(seq&63)) != 0 {
			st.Bitmap[k>>6] |= 1 << (k & 63)
		}
	}
	return st
}

// Merge records in w every number that st records, moving w's right
// edge to st.Top if that is further right: afterwards w rejects every
// number that it rejected before or that the window st came from
// rejected (within what the window can hold; older numbers are rejected
// as too old anyway). Its cost is bounded by the window size.
func (w *Window) Merge(st State) {
	if st.Top == 0 {
		return
	}
	if w.size == 0 {
		w.top = max(w.top, st.Top)
		return
	}
	w.Update(st.Top) // the top of a window was always recorded
	cov := uint64(len(st.Bitmap)) * 64
	for k := uint64(1); k < w.size && k < st.Top; k++ {
		seq := st.Top - k
		if w.top-seq >= w.size {
			break // left of w's window: rejected already
		}
		if k >= cov || st.Bitmap[k>>6]&(1<<(k&63)) != 0 {
			i := seq & w.mask
			w.bits[i>>6] |= 1 << (i & 63)
		}
	}
}

// Grow enlarges an enabled window to size packets (at most MaxSize; a
// size not larger than the current one, or a disabled window, changes
// nothing) keeping everything it recorded. It allocates the larger
// bitmap.
//
// Invariant: Grow never makes a number acceptable that the window
// rejected before. The numbers that the larger window newly covers
// (older than the old left edge) were rejected as too old, so they are
// marked recorded: the window grows only for numbers still to come.
func (w *Window) Grow(size int) error {
	if size < 0 || size > MaxSize {
		return fmt.Errorf("%w: %d (want 0..%d)", ErrSize, size, MaxSize)
	}
	if w.size == 0 || uint64(size) <= w.size {
		return nil
	}
	old := *w
	if err := w.Init(size, old.esn); err != nil {
		return err
	}
	w.top = old.top
	for k := uint64(0); k < w.size && k < old.top; k++ {
		seq := old.top - k
		if k < old.size {
			if i := seq & old.mask; old.bits[i>>6]&(1<<(i&63)) == 0 {
				continue
			}
		}
		i := seq & w.mask
		w.bits[i>>6] |= 1 << (i & 63)
	}
	return nil
}

// MergeStates returns a State that records every number a or b records
// (a window merged with it rejects whatever a window merged with a or
// with b rejects), with a bitmap as long as the longer of theirs.
func MergeStates(a, b State) State {
	switch {
	case a.Top == 0:
		return State{Top: b.Top, Bitmap: append([]uint64(nil), b.Bitmap...)}
	case b.Top == 0:
		return State{Top: a.Top, Bitmap: append([]uint64(nil), a.Bitmap...)}
	}
	n := max(len(a.Bitmap), len(b.Bitmap))
	if n == 0 {
		return State{Top: max(a.Top, b.Top)}
	}
	var w Window
	if err := w.Init(min(n*64, MaxSize), true); err != nil {
		panic(err) // in range
	}
	w.Merge(a)
	w.Merge(b)
	return w.State()
}
