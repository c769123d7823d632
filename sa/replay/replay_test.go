package replay

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"testing"
)

// accept runs the Check / Update pair as a receiver whose ICV always
// verifies and returns the sequence number and whether it was accepted.
func accept(w *Window, lo uint32) (uint64, bool) {
	seq, ok := w.Check(lo)
	if !ok {
		return seq, false
	}
	if !w.Update(seq) {
		panic("Update refused a number Check accepted, with no other packet in between")
	}
	return seq, true
}

func mustNew(t *testing.T, size int, esn bool) *Window {
	t.Helper()
	w, err := New(size, esn)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestSizes(t *testing.T) {
	for _, n := range []int{-1, MaxSize + 1, 1 << 20} {
		if _, err := New(n, false); !errors.Is(err, ErrSize) {
			t.Errorf("New(%d): err = %v, want ErrSize", n, err)
		}
	}
	for _, n := range []int{0, 1, 63, 64, 65, 1000, 1024, MaxSize} {
		w := mustNew(t, n, false)
		if w.Size() != n {
			t.Errorf("Size() = %d, want %d", w.Size(), n)
		}
		if n > 0 && uint64(len(w.bits))*64 < uint64(n)+64 {
			t.Errorf("size %d: only %d blocks", n, len(w.bits))
		}
	}
}

func TestBasic(t *testing.T) {
	w := mustNew(t, 64, false)
	steps := []struct {
		lo   uint32
		want bool
		why  string
	}{
		{0, false, "zero is never sent"},
		{1, true, "first"},
		{1, false, "duplicate"},
		{3, true, "ahead"},
		{2, true, "late but in window"},
		{2, false, "duplicate of late"},
		{100, true, "jump"},
		{37, true, "exactly the left edge (100-63)"},
		{36, false, "just left of the window"},
		{99, true, "in window"},
		{100, false, "duplicate right edge"},
		{100 + 64*10, true, "far ahead: 10 windows"},
		{100, false, "now far too old"},
		{100 + 64*10 - 1, true, "left neighbour after the far jump"},
		{100 + 64*10 - 63, true, "left edge after the far jump"},
		{100 + 64*10 - 64, false, "one past the left edge"},
		{100 + 64*10 + 1, true, "next"},
	}
	for i, s := range steps {
		if _, got := accept(w, s.lo); got != s.want {
			t.Fatalf("step %d (%s): seq %d accepted=%v, want %v", i, s.why, s.lo, got, s.want)
		}
	}
	if w.Top() != 100+64*10+1 {
		t.Fatalf("Top = %d", w.Top())
	}
}

// TestFarJumpClearsRing checks that bits recorded one ring lap earlier do
// not make fresh numbers look like duplicates.
func TestFarJumpClearsRing(t *testing.T) {
	for _, size := range []int{64, 100, 1024} {
		w := mustNew(t, size, false)
		ring := uint32(len(w.bits) * 64)
		for s := uint32(1); s <= uint32(size); s++ {
			accept(w, s)
		}
		// Each of these lands on ring positions used before.
		for _, jump := range []uint32{ring, ring + 1, 2*ring - 1, 5 * ring} {
			base := uint32(w.Top())
			if _, ok := accept(w, base+jump); !ok {
				t.Fatalf("size %d: jump +%d refused", size, jump)
			}
			for d := uint32(1); d < uint32(size) && d < 200; d++ {
				if _, ok := w.Check(base + jump - d); !ok {
					t.Fatalf("size %d: after jump +%d, %d behind the edge refused (stale bit)", size, jump, d)
				}
			}
		}
	}
}

func TestUpdateAfterConcurrentAccept(t *testing.T) {
	w := mustNew(t, 64, false)
	s1, ok1 := w.Check(5)
	s2, ok2 := w.Check(5)
	if !ok1 || !ok2 {
		t.Fatal("fresh number refused")
	}
	if !w.Update(s1) {
		t.Fatal("first Update refused")
	}
	if w.Update(s2) {
		t.Fatal("second Update of the same number accepted: replay")
	}
	// The window moved past a checked number before its Update.
	s3, ok := w.Check(10)
	if !ok {
		t.Fatal("refused 10")
	}
	accept(w, 200)
	if w.Update(s3) {
		t.Fatal("Update accepted a number that fell out of the window")
	}
}

func TestDisabled(t *testing.T) {
	w := mustNew(t, 0, false)
	for _, lo := range []uint32{5, 5, 1, 1, 1000, 3} {
		if _, ok := accept(w, lo); !ok {
			t.Fatalf("disabled window refused %d", lo)
		}
	}
	if w.Top() != 1000 {
		t.Fatalf("Top = %d, want 1000 (the edge is still tracked)", w.Top())
	}
	if _, ok := w.Check(0); ok {
		t.Fatal("sequence number 0 accepted")
	}
}

// TestESNAppendixA walks the cases of RFC 4303 Appendix A2.1 across the
// 2^32 boundary.
func TestESNAppendixA(t *testing.T) {
	const W = 64
	w := mustNew(t, W, true)
	// A fresh window (edge 0) reads 0xFFFF_FFF6 as "before zero": the
	// first packets of an SA are small numbers.
	if s, ok := w.Check(0xFFFF_FFF6); ok {
		t.Fatalf("fresh window accepted %#x", s)
	}
	// Bring the edge there as earlier traffic would have.
	if !w.Update(0xFFFF_FFF6) {
		t.Fatal("Update")
	}
	type step struct {
		lo   uint32
		want uint64
		ok   bool
	}
	for i, s := range []step{
		// Case A (Tl >= W-1): low numbers below the window are the next subspace.
		{0xFFFF_FFF0, 0xFFFF_FFF0, true},   // in window, same subspace
		{0xFFFF_FFF0, 0xFFFF_FFF0, false},  // duplicate
		{0xFFFF_FFB7, 0xFFFF_FFB7, true},   // left edge: Tl-W+1
		{0xFFFF_FFB6, 0x1_FFFF_FFB6, true}, // below the window → Th+1, far ahead: accepted
	} {
		got, ok := accept(w, s.lo)
		if ok != s.ok || (ok && got != s.want) {
			t.Fatalf("A step %d lo=%#x: got %#x %v, want %#x %v", i, s.lo, got, ok, s.want, s.ok)
		}
	}

	w = mustNew(t, W, true)
	w.Update(0xFFFF_FFF6)
	if s, ok := accept(w, 5); !ok || s != 1<<32|5 {
		t.Fatalf("wrap: %#x %v, want %#x", s, ok, uint64(1<<32|5))
	}
	// Now Tl = 5 < W-1: Case B, the window spans subspaces 0 and 1.
	for i, s := range []step{
		{0xFFFF_FFF6, 0xFFFF_FFF6, false},        // seen before the wrap
		{0xFFFF_FFF0, 0xFFFF_FFF0, true},         // Th-1, inside the window
		{0xFFFF_FFC6, 0xFFFF_FFC6, true},         // left edge: 2^32+5-63
		{0xFFFF_FFC5, 1<<32 | 0xFFFF_FFC5, true}, // just left of the window: read as subspace 1, far ahead (the ICV will decide)
		{3, 1<<32 | 3, true},                     // Th, in window
		{5, 1<<32 | 5, false},                    // duplicate edge
		{6, 1<<32 | 6, true},                     // ahead
	} {
		got, ok := w.Check(s.lo)
		if ok != s.ok || (ok && got != s.want) {
			t.Fatalf("B step %d lo=%#x: got %#x %v, want %#x %v", i, s.lo, got, ok, s.want, s.ok)
		}
		if ok && s.lo != 0xFFFF_FFC5 && !w.Update(got) {
			t.Fatalf("B step %d: Update refused", i)
		}
	}

	// Th = 0 and Case B: numbers "before zero" are invalid.
	w = mustNew(t, W, true)
	accept(w, 3)
	if s, ok := w.Check(0xFFFF_FFF0); ok {
		t.Fatalf("subspace -1 accepted as %#x", s)
	}
	// Sequence 0 is invalid but 2^32 (low bits 0) is valid.
	w = mustNew(t, W, true)
	if _, ok := w.Check(0); ok {
		t.Fatal("full sequence 0 accepted")
	}
	w.Update(0xFFFF_FFFF)
	if s, ok := accept(w, 0); !ok || s != 1<<32 {
		t.Fatalf("2^32: %#x %v", s, ok)
	}
}

// TestESNDisabledWindow: with anti-replay off, ESN inference uses half
// the space around the edge.
func TestESNDisabledWindow(t *testing.T) {
	w := mustNew(t, 0, true)
	w.Update(0xFFFF_FF00)
	if s, ok := accept(w, 0x10); !ok || s != 1<<32|0x10 {
		t.Fatalf("got %#x %v", s, ok)
	}
	if s, ok := accept(w, 0xFFFF_FF00); !ok || s != 0xFFFF_FF00 {
		t.Fatalf("late packet from subspace 0: %#x %v", s, ok)
	}
	if s, ok := accept(w, 0x7000_0000); !ok || s != 1<<32|0x7000_0000 {
		t.Fatalf("ahead: %#x %v", s, ok)
	}
}

// ref is the obvious reference model: a set of every number accepted.
type ref struct {
	w    uint64
	top  uint64
	seen map[uint64]bool
}

func (r *ref) accept(s uint64) bool {
	if s == 0 {
		return false
	}
	if r.w > 0 && (r.seen[s] || (s <= r.top && r.top-s >= r.w)) {
		return false
	}
	r.seen[s] = true
	r.top = max(r.top, s)
	return true
}

// TestPropertyVsReference feeds random, reordered, duplicated and
// jumping sequences to the window and to the reference model, with and
// without ESN (starting just below 2^32 so that ESN crosses subspaces).
func TestPropertyVsReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 32, 64, 100, 1024, 4096} {
		for _, esn := range []bool{false, true} {
			w := mustNew(t, size, esn)
			r := &ref{w: uint64(size), seen: map[uint64]bool{}}
			next := uint64(1)
			if esn {
				next = 1<<32 - 3000
				// Prime both with the same start.
				w.Update(next)
				r.accept(next)
			}
			for i := 0; i < 20000; i++ {
				var s uint64
				switch k := rng.IntN(100); {
				case k < 60: // in order
					next++
					s = next
				case k < 85: // reordered: a little behind the sender
					back := uint64(rng.IntN(2*size + 10))
					s = next - min(back, next-1)
				case k < 95: // duplicate of something recent
					s = next - min(uint64(rng.IntN(8)), next-1)
				default: // loss burst: jump ahead
					next += uint64(rng.IntN(5*size + 200))
					s = next
				}
				if !esn && s > 1<<32-1 {
					t.Fatal("test overflowed 32 bits")
				}
				got, ok := w.Check(uint32(s))
				if ok && got != s {
					// Appendix A reads a number left of the window as
					// the next subspace; the ICV (computed with the
					// wrong high bits) would then fail. Only numbers
					// that are too old may be inferred wrongly.
					if s > r.top || r.top-s < max(r.w, 1) {
						t.Fatalf("size %d esn %v: inferred %#x for %#x (top %#x)", size, esn, got, s, w.Top())
					}
					ok = false
				}
				if ok {
					ok = w.Update(got)
				}
				if want := r.accept(s); ok != want {
					t.Fatalf("size %d esn %v step %d seq %#x: window %v, reference %v (top %#x)", size, esn, i, s, ok, want, w.Top())
				}
			}
			if w.Top() != r.top {
				t.Fatalf("size %d esn %v: top %d, reference %d", size, esn, w.Top(), r.top)
			}
		}
	}
}

func BenchmarkCheckUpdate(b *testing.B) {
	for _, size := range []int{64, 1024, 65536} {
		b.Run("w="+strconv.Itoa(size), func(b *testing.B) {
			w, _ := New(size, true)
			b.ReportAllocs()
			var s uint64
			for i := 0; i < b.N; i++ {
				s++
				// Mild reordering: every 8th number arrives 3 late.
				lo := uint32(s)
				if s%8 == 0 && s > 3 {
					lo -= 3
				}
				if seq, ok := w.Check(lo); ok {
					w.Update(seq)
				}
			}
		})
	}
}

// TestStateMerge: a window merged with another's State accepts exactly
// what both would accept (within its size), for random histories and
// sizes, including a larger importing window (numbers the export does
// not cover count as seen).
func TestStateMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	for iter := 0; iter < 300; iter++ {
		sizes := []int{0, 1, 32, 64, 100, 1024}
		sa, sb := sizes[rng.IntN(len(sizes))], sizes[rng.IntN(len(sizes))]
		a, _ := New(sa, false)
		base := uint64(rng.IntN(5000) + 1)
		for i := 0; i < 200; i++ {
			a.Update(base + uint64(rng.IntN(3000)))
		}
		st := a.State()
		if st.Top != a.Top() {
			t.Fatalf("Top %d != %d", st.Top, a.Top())
		}
		b, _ := New(sb, false)
		b.Merge(st)
		for seq := uint64(1); seq < base+3100; seq++ {
			_, okA := a.Check(uint32(seq))
			_, okB := b.Check(uint32(seq))
			if sb != 0 && okB && !okA {
				t.Fatalf("sizes %d→%d: seq %d accepted after merge, rejected by the source (top %d)", sa, sb, seq, st.Top)
			}
			if sa == sb && sa != 0 && okA != okB {
				t.Fatalf("size %d: seq %d: source %v merged %v", sa, seq, okA, okB)
			}
		}
	}
}

// TestGrow checks Grow against its invariant on random histories: after
// growing, the window accepts no number it rejected before, still
// rejects what it recorded, and then accepts new numbers displaced by
// up to the new size.
func TestGrow(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for it := 0; it < 200; it++ {
		small := 64 * (1 + rng.IntN(8))
		big := small * (2 + rng.IntN(4))
		w, _ := New(small, false)
		for i := 0; i < 500; i++ {
			s := uint64(1 + rng.IntN(5000))
			if s < w.Top()+uint64(small) {
				w.Update(s)
			}
		}
		before := map[uint64]bool{}
		for s := uint64(1); s <= w.Top()+10; s++ {
			_, ok := w.Check(uint32(s))
			before[s] = ok
		}
		if err := w.Grow(big); err != nil {
			t.Fatal(err)
		}
		if w.Size() != big {
			t.Fatalf("size %d, want %d", w.Size(), big)
		}
		for s, ok := range before {
			if _, now := w.Check(uint32(s)); now && !ok {
				t.Fatalf("grow %d→%d: %d rejected before, accepted after", small, big, s)
			} else if !now && ok {
				t.Fatalf("grow %d→%d: %d accepted before, rejected after", small, big, s)
			}
		}
		// New numbers displaced by up to big-1 are accepted once.
		top := w.Top()
		if !w.Update(top + uint64(big)) {
			t.Fatal("new top refused")
		}
		if !w.Update(top+1) || w.Update(top+1) {
			t.Fatalf("grow %d→%d: displaced new number %d not accepted exactly once", small, big, top+1)
		}
	}
	w, _ := New(0, false)
	if w.Grow(1024); w.Size() != 0 {
		t.Fatal("a disabled window grew")
	}
	w, _ = New(128, false)
	if err := w.Grow(MaxSize + 1); err == nil || w.Size() != 128 {
		t.Fatal("grew past MaxSize")
	}
}
