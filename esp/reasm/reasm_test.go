package reasm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// check asserts the invariants that hold after every call: every fragment
// is accounted for once, and the bounds hold.
func check(t testing.TB, r *Reassembler) Stats {
	t.Helper()
	s := r.Stats()
	if !s.Balanced() {
		t.Fatalf("unbalanced: %+v", s)
	}
	if s.Bytes > uint64(r.cfg.MaxMemory) || s.Sets > uint64(r.cfg.MaxSets) {
		t.Fatalf("bounds exceeded: %+v with %+v", s, r.cfg)
	}
	// White box: one set per key, and mem is what the sets hold.
	have := 0
	for i, u := range r.used {
		if !u {
			continue
		}
		have += r.sets[i].have
		for j := i + 1; j < len(r.used); j++ {
			if r.used[j] && r.keys[j] == r.keys[i] {
				t.Fatalf("slots %d and %d have the same key", i, j)
			}
		}
	}
	if have != r.mem {
		t.Fatalf("sets hold %d bytes, mem says %d", have, r.mem)
	}
	return s
}

// feed adds frags in order and returns the last output and result.
func feed(t *testing.T, r *Reassembler, now int64, frags ...[]byte) ([]byte, Result) {
	t.Helper()
	var out []byte
	var res Result
	for i, f := range frags {
		out, res = r.Add(f, now)
		check(t, r)
		if i < len(frags)-1 && res != Buffered && res != Duplicate {
			t.Fatalf("fragment %d: %v", i, res)
		}
	}
	return out, res
}

// cases are good packets in the three outer families, each with its
// fragmentation.
func cases(rng *rand.Rand) []struct {
	name  string
	pkt   []byte
	frags [][]byte
} {
	type c = struct {
		name  string
		pkt   []byte
		frags [][]byte
	}
	p4 := v4(1, 2, 50, 0x1234, 0, espPayload(rng, 1400))
	p4o := v4(1, 2, 50, 0x1235, 8, espPayload(rng, 999))
	pn := v4(1, 2, 17, 0x4321, 0, nattPayload(rng, 1200))
	p6 := v6(1, 2, 1, 0, 50, espPayload(rng, 1500))
	p6d := v6(1, 2, 2, 1, 50, espPayload(rng, 1333))
	return []c{
		{"v4", p4, fragV4(p4, 400, 496, 320)},
		{"v4-options", p4o, fragV4(p4o, 256, 256, 256)},
		{"v4-natt", pn, fragV4(pn, 16, 600, 296)},
		{"v6-hbh", p6, fragV6(p6, 1, 77, 512, 400, 400)},
		{"v6-hbh-dstopts", p6d, fragV6(p6d, 2, 78, 160, 640, 88)},
	}
}

// TestReassembleEveryOrder reassembles 4-fragment sets of IPv4 ESP, IPv4
// with options, IPv4 NAT-T (only the first fragment has the UDP header)
// and IPv6 ESP with extension headers before and after the fragment
// header, in all 24 orders, each with one exact duplicate.
func TestReassembleEveryOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range cases(rng) {
		t.Run(c.name, func(t *testing.T) {
			if len(c.frags) != 4 {
				t.Fatalf("%d fragments, want 4", len(c.frags))
			}
			r := New(Config{})
			n := 0
			permutations(4, func(order []int) {
				fs := make([][]byte, 0, 5)
				for _, i := range order {
					fs = append(fs, bytes.Clone(c.frags[i]))
				}
				// An exact duplicate of the first sent, just before the end.
				fs = append(fs[:3], bytes.Clone(c.frags[order[0]]), fs[3])
				out, res := feed(t, r, int64(n), fs...)
				if res != Complete || !bytes.Equal(out, c.pkt) {
					t.Fatalf("order %v: %v\n got %x\nwant %x", order, res, out, c.pkt)
				}
				n++
			})
			s := check(t, r)
			if s.Reassembled != 24 || s.Duplicates != 24 || s.InPackets != 96 || s.Sets != 0 || s.Bytes != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestReassembleNotFragments(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	r := New(Config{})
	for _, p := range [][]byte{
		v4(1, 2, 50, 1, 0, espPayload(rng, 100)),
		v6(1, 2, 1, 1, 50, espPayload(rng, 100)),
		nil, {0x45}, {0x60, 0}, make([]byte, 100),
	} {
		if out, res := r.Add(p, 0); res != NotFragment || out != nil {
			t.Fatalf("%x: %v", p, res)
		}
	}
	if s := check(t, r); s != (Stats{}) {
		t.Fatalf("stats %+v", s)
	}
}

// TestReassembleAtomic: an IPv6 atomic fragment (RFC 6946) comes back
// without its fragment header, whatever its identification.
func TestReassembleAtomic(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	r := New(Config{})
	p := v6(1, 2, 1, 0, 50, espPayload(rng, 300))
	f := fragV6(p, 1, 9, 1000)
	if len(f) != 1 {
		t.Fatal("want one fragment")
	}
	// A pending set with the same key must not be disturbed.
	big := v6(1, 2, 1, 0, 50, espPayload(rng, 3000))
	bf := fragV6(big, 1, 9, 1000, 1000)
	if _, res := r.Add(bf[0], 0); res != Buffered {
		t.Fatal(res)
	}
	out, res := r.Add(f[0], 0)
	if res != Complete || !bytes.Equal(out, p) {
		t.Fatalf("%v\n got %x\nwant %x", res, out, p)
	}
	out, res = feed(t, r, 0, bf[1:]...)
	if res != Complete || !bytes.Equal(out, big) {
		t.Fatalf("big: %v", res)
	}
	if s := check(t, r); s.Atomic != 1 || s.Reassembled != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestReassembleNestedFragmentHeader: a fragment header inside the
// fragmentable part (the fuzzer found an atomic fragment whose next header
// was 44 again) is Malformed, for atomic, first and later fragments, so no
// completed packet ever carries a fragment header.
func TestReassembleNestedFragmentHeader(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	inner := func(dstopts int) []byte {
		// The fragmentable part: dstopts destination options headers,
		// then a fragment header in front of ESP.
		pl := make([]byte, 8+300)
		pl[0] = 50
		copy(pl[8:], espPayload(rng, 300))
		return v6(1, 2, 1, dstopts, 44, pl)
	}
	for _, tc := range []struct {
		name  string
		frags [][]byte
	}{
		{"atomic", fragV6(inner(0), 1, 3, 1000)},
		{"atomic-behind-dstopts", fragV6(inner(2), 1, 3, 1000)},
		{"first", fragV6(inner(0), 1, 4, 104)[:1]},
		{"first-behind-dstopts", fragV6(inner(1), 1, 5, 104)[:1]},
		{"later", fragV6(inner(0), 1, 6, 104)[1:2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := New(Config{})
			f := tc.frags[0]
			if tc.name == "later" {
				// A later fragment whose own header says 44 next.
				f[40+8] = 44
			}
			out, res := r.Add(f, 0)
			if res != Malformed || out != nil {
				t.Fatalf("%v %x", res, out)
			}
			if s := check(t, r); s.Malformed != 1 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
	// An atomic fragment whose header chain runs past its end is a first
	// fragment without its whole chain (RFC 7112).
	p := v6(1, 2, 1, 1, 50, espPayload(rng, 100))
	p[40+8+1] = 40 // the destination options header claims 328 bytes
	r := New(Config{})
	if out, res := r.Add(fragV6(p, 1, 9, 1000)[0], 0); res != TinyFirst || out != nil {
		t.Fatalf("chain overrun: %v", res)
	}
	check(t, r)
}

// TestReassembleOverlap: any overlap drops the whole set, for IPv4 and
// IPv6 alike (RFC 5722), including a fragment with the offset and length
// of a buffered one but other bytes.
func TestReassembleOverlap(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, c := range cases(rng) {
		t.Run(c.name, func(t *testing.T) {
			for _, mode := range []string{"shifted", "altered-duplicate", "covering"} {
				r := New(Config{})
				f := c.frags
				if _, res := r.Add(bytes.Clone(f[0]), 0); res != Buffered {
					t.Fatal(res)
				}
				if _, res := r.Add(bytes.Clone(f[1]), 0); res != Buffered {
					t.Fatal(res)
				}
				var bad []byte
				switch mode {
				case "shifted": // fragment 2 moved 8 bytes back into fragment 1
					bad = bytes.Clone(f[2])
					setOffset(bad, offsetOf(bad)-8)
				case "altered-duplicate":
					bad = bytes.Clone(f[1])
					bad[len(bad)-1] ^= 1
				case "covering": // fragment 2 moved to offset 0
					bad = bytes.Clone(f[2])
					setOffset(bad, 0)
				}
				if _, res := r.Add(bad, 0); res != Overlap {
					t.Fatalf("%s: %v", mode, res)
				}
				s := check(t, r)
				if s.Overlap != 1 || s.Discarded != 2 || s.Sets != 0 {
					t.Fatalf("%s: stats %+v", mode, s)
				}
				// The rest starts a new set that cannot complete.
				for _, g := range f[2:] {
					if _, res := r.Add(bytes.Clone(g), 0); res != Buffered {
						t.Fatalf("%s: rest: %v", mode, res)
					}
				}
				if s := check(t, r); s.Reassembled != 0 || s.Sets != 1 {
					t.Fatalf("%s: stats %+v", mode, s)
				}
			}
		})
	}
}

// offsetOf and setOffset read and write a fragment's offset in bytes.
func offsetOf(f []byte) int {
	if f[0]>>4 == 4 {
		return int(binary.BigEndian.Uint16(f[6:])&0x1fff) * 8
	}
	fh := fragHeader(f)
	return int(binary.BigEndian.Uint16(fh[2:])>>3) * 8
}

func setOffset(f []byte, off int) {
	if f[0]>>4 == 4 {
		fo := binary.BigEndian.Uint16(f[6:])
		binary.BigEndian.PutUint16(f[6:], fo&0xe000|uint16(off/8))
		hl := int(f[0]&0x0f) * 4
		putChecksum(f[:hl])
		return
	}
	fh := fragHeader(f)
	fo := binary.BigEndian.Uint16(fh[2:])
	binary.BigEndian.PutUint16(fh[2:], fo&7|uint16(off/8)<<3)
}

// fragHeader finds the IPv6 fragment header of a fragment built by fragV6.
func fragHeader(f []byte) []byte {
	nh, off := f[6], 40
	for nh != 44 {
		nh, off = f[off], off+8+int(f[off+1])*8
	}
	return f[off : off+8]
}

// TestReassembleDuplicates: exact duplicates are ignored, any number of
// times, also of the last fragment; the packet still completes once.
func TestReassembleDuplicates(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, c := range cases(rng) {
		r := New(Config{})
		f := c.frags
		out, res := feed(t, r, 0, f[3], f[3], f[0], f[3], f[0], f[1], f[1], f[2])
		if res != Complete || !bytes.Equal(out, c.pkt) {
			t.Fatalf("%s: %v", c.name, res)
		}
		// After completion a late duplicate starts a new set (it cannot
		// be told from a new packet with a reused identification).
		if _, res := r.Add(f[1], 1); res != Buffered {
			t.Fatalf("%s: late duplicate: %v", c.name, res)
		}
		if s := check(t, r); s.Duplicates != 4 || s.Reassembled != 1 || s.Pending != 1 {
			t.Fatalf("%s: stats %+v", c.name, s)
		}
	}
}

func TestReassembleTooMany(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	p := v4(1, 2, 50, 7, 0, espPayload(rng, 800))
	f := fragV4(p, 160, 160, 160, 160, 160) // 5 fragments
	r := New(Config{MaxFragments: 4})
	feed(t, r, 0, f[:4]...)
	if _, res := r.Add(f[4], 0); res != TooMany {
		t.Fatal(res)
	}
	if s := check(t, r); s.TooMany != 1 || s.Discarded != 4 || s.Sets != 0 {
		t.Fatalf("stats %+v", s)
	}
	// With room for 5 it completes.
	r = New(Config{MaxFragments: 5})
	if out, res := feed(t, r, 0, f...); res != Complete || !bytes.Equal(out, p) {
		t.Fatal(res)
	}
}

// TestReassembleTinyFirst: a first fragment that does not hold the
// upper-layer header (RFC 1858, RFC 3128) or, for IPv6, the whole header
// chain (RFC 7112) is refused and its set dropped.
func TestReassembleTinyFirst(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	// NAT-T: 8 bytes hold the UDP header but not the SPI / marker.
	pn := v4(1, 2, 17, 1, 0, nattPayload(rng, 200))
	fn := fragV4(pn, 8)
	// ESP, 8 bytes is enough; but an IPv6 packet whose destination
	// options header (after the fragment header) does not fit is not.
	p6 := v6(1, 2, 0, 3, 50, espPayload(rng, 200))
	f6 := fragV6(p6, 0, 5, 16)
	pe := v4(1, 2, 50, 2, 0, espPayload(rng, 200))
	fe := fragV4(pe, 8)
	r := New(Config{})
	if _, res := r.Add(fn[1], 0); res != Buffered {
		t.Fatal(res)
	}
	if _, res := r.Add(fn[0], 0); res != TinyFirst {
		t.Fatalf("natt: %v", res)
	}
	if _, res := r.Add(f6[0], 0); res != TinyFirst {
		t.Fatalf("v6 chain: %v", res)
	}
	if out, res := feed(t, r, 0, fe...); res != Complete || !bytes.Equal(out, pe) {
		t.Fatalf("esp 8 bytes: %v", res)
	}
	if s := check(t, r); s.TinyFirst != 2 || s.Discarded != 1 || s.Reassembled != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestReassembleTooBig: fragments ending beyond 65535 bytes.
func TestReassembleTooBig(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	r := New(Config{})
	// IPv4: the last fragment at the largest offset, 100 bytes long.
	p := v4(1, 2, 50, 3, 0, espPayload(rng, 200))
	f := fragV4(p, 104)
	if _, res := r.Add(f[0], 0); res != Buffered {
		t.Fatal(res)
	}
	setOffset(f[1], 8191*8)
	if _, res := r.Add(f[1], 0); res != TooBig {
		t.Fatal(res)
	}
	// Exactly 65535 with a 20-byte header is fine: 65515 bytes of data.
	// Offsets up to 65512 and 3 bytes at the end.
	q := v4(1, 2, 50, 4, 0, espPayload(rng, 65515))
	fq := fragV4(q, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480, 1480)
	r2 := New(Config{MaxMemory: 1 << 20})
	if out, res := feed(t, r2, 0, fq...); res != Complete || !bytes.Equal(out, q) {
		t.Fatalf("65535: %v", res)
	}
	// With 4 bytes of options the same data is 4 bytes too many: refused
	// when the first fragment (with the header) arrives last.
	q2 := bytes.Clone(fq[0])
	q2 = append(q2[:20:20], append([]byte{1, 1, 1, 1}, q2[20:]...)...)
	q2[0] = 0x46
	binary.BigEndian.PutUint16(q2[2:], uint16(len(q2)))
	putChecksum(q2[:24])
	for _, g := range fq[1:] {
		if _, res := r2.Add(g, 1); res != Buffered {
			t.Fatal(res)
		}
	}
	if _, res := r2.Add(q2, 1); res != TooBig {
		t.Fatalf("65539: %v", res)
	}
	// IPv6: payload length 65535 at most.
	p6 := v6(1, 2, 0, 0, 50, espPayload(rng, 300))
	f6 := fragV6(p6, 0, 6, 104)
	setOffset(f6[1], 65528)
	if _, res := r.Add(f6[1], 0); res != TooBig {
		t.Fatal(res)
	}
	for _, rr := range []*Reassembler{r, r2} {
		check(t, rr)
	}
	if s := r.Stats(); s.TooBig != 2 || s.Sets != 0 {
		t.Fatalf("stats %+v", s)
	}
	if s := r2.Stats(); s.TooBig != 1 || s.Sets != 0 || s.Reassembled != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestReassembleMalformedAndInconsistent(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	p := v4(1, 2, 50, 3, 0, espPayload(rng, 200))
	f := fragV4(p, 104)
	r := New(Config{})
	// Not a multiple of 8 with MF set.
	odd := bytes.Clone(f[0])
	odd = odd[:len(odd)-1]
	binary.BigEndian.PutUint16(odd[2:], uint16(len(odd)))
	putChecksum(odd[:20])
	// Total length beyond the buffer.
	long := bytes.Clone(f[0])
	binary.BigEndian.PutUint16(long[2:], 2000)
	// Empty fragment.
	empty := bytes.Clone(f[0][:20])
	binary.BigEndian.PutUint16(empty[2:], 20)
	for _, g := range [][]byte{odd, long, empty} {
		if _, res := r.Add(g, 0); res != Malformed {
			t.Fatal(res)
		}
	}
	// Two different last fragments.
	if _, res := r.Add(f[1], 0); res != Buffered {
		t.Fatal(res)
	}
	other := bytes.Clone(f[1])
	setOffset(other, 200)
	if _, res := r.Add(other, 0); res != Inconsistent {
		t.Fatal(res)
	}
	// A fragment with more to come that ends past the known end.
	if _, res := r.Add(f[1], 0); res != Buffered {
		t.Fatal(res)
	}
	past := bytes.Clone(f[0])
	setOffset(past, 200)
	if _, res := r.Add(past, 0); res != Inconsistent {
		t.Fatal(res)
	}
	if s := check(t, r); s.Malformed != 3 || s.Inconsistent != 2 || s.Discarded != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// TestReassembleFlood: a flood of incomplete sets keeps to MaxSets and
// MaxMemory, evicting the oldest; a good packet sent after it completes.
func TestReassembleFlood(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	r := New(Config{MaxSets: 8, MaxMemory: 6 * 1024})
	for i := range 1000 {
		p := v4(byte(i), 2, 50, uint16(i), 0, espPayload(rng, 2048))
		f := fragV4(p, 1024)
		if _, res := r.Add(f[0], int64(i)); res != Buffered {
			t.Fatal(res)
		}
		s := check(t, r)
		if i >= 6 && s.Sets != 6 {
			t.Fatalf("%d: %+v", i, s)
		}
	}
	s := check(t, r)
	if s.Evicted != 994 || s.Discarded != 994 || s.Pending != 6 {
		t.Fatalf("stats %+v", s)
	}
	// The oldest went first: the last six are the ones still there.
	for i := 994; i < 1000; i++ {
		if !r.holds(byte(i)) {
			t.Fatalf("set %d evicted, not an older one", i)
		}
	}
	p := v4(0xee, 2, 50, 1, 0, espPayload(rng, 3000))
	if out, res := feed(t, r, 1000, fragV4(p, 1024, 1024)...); res != Complete || !bytes.Equal(out, p) {
		t.Fatal(res)
	}
	// A packet bigger than MaxMemory cannot be reassembled.
	big := v4(0xef, 2, 50, 1, 0, espPayload(rng, 8000))
	fb := fragV4(big, 2048, 2048, 2048)
	feed(t, r, 1001, fb[:3]...)
	if _, res := r.Add(fb[3], 1001); res != NoMemory {
		t.Fatal(res)
	}
	if s := check(t, r); s.NoMemory != 1 || s.Sets != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// holds reports whether a set from source 192.0.2.src is buffered.
func (r *Reassembler) holds(src byte) bool {
	for i, u := range r.used {
		if u && r.keys[i].src[3] == src {
			return true
		}
	}
	return false
}

// TestReassembleSetLimit: with all slots used by recent sets, a new set
// evicts the oldest; timed-out sets go first.
func TestReassembleSetLimit(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	r := New(Config{MaxSets: 4, Timeout: 100})
	frag := func(src byte) []byte {
		return fragV4(v4(src, 2, 50, 1, 0, espPayload(rng, 100)), 8)[0]
	}
	for i := range 4 {
		r.Add(frag(byte(i)), int64(i)*50) // born at 0, 50, 100, 150
	}
	// At 120 the set born at 0 and the one born at 50 are... only 0 is
	// >= 100 old; it times out instead of an eviction.
	r.Add(frag(10), 120)
	if s := check(t, r); s.Timeouts != 1 || s.Evicted != 0 || r.holds(0) || !r.holds(1) {
		t.Fatalf("stats %+v", s)
	}
	r.Add(frag(11), 121)
	if s := check(t, r); s.Timeouts != 1 || s.Evicted != 1 || r.holds(1) {
		t.Fatalf("stats %+v", s)
	}
	// Expire drops everything old.
	r.Expire(1000)
	if s := check(t, r); s.Timeouts != 5 || s.Sets != 0 || s.Bytes != 0 {
		t.Fatalf("stats %+v", s)
	}
	// A fragment for a timed-out set starts a new one.
	p := v4(7, 2, 50, 1, 0, espPayload(rng, 100))
	f := fragV4(p, 8)
	r.Add(f[0], 0)
	if _, res := r.Add(f[1], 100); res != Buffered {
		t.Fatal(res)
	}
	if s := check(t, r); s.Timeouts != 6 || s.Pending != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestReassembleRandomSequences is a property test over random operation
// sequences: interleaved good packets in random fragment orders, with
// duplicates, forged overlapping fragments, garbage, time jumps and small
// bounds. After every call the accounting balances and the bounds hold;
// every Complete output is byte for byte a packet that was sent; and a
// packet whose set was not disturbed and not evicted completes.
func TestReassembleRandomSequences(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { randomSequence(t, seed) })
	}
}

func randomSequence(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	cfg := Config{MaxSets: 1 + rng.IntN(8), MaxFragments: 2 + rng.IntN(12), MaxMemory: 2000 + rng.IntN(20000), Timeout: 50}
	r := New(cfg)
	sent := map[string]bool{}
	// A forged fragment may legitimately fill a gap of its set (ESP's
	// ICV, not reassembly, catches that), so a packet whose set got a
	// forgery may complete with other bytes: only under its own label.
	tainted := map[string]bool{}
	type pending struct {
		frags [][]byte
		pkt   []byte
	}
	var queue []*pending
	var now int64
	completed := func(op int, out []byte) {
		t.Helper()
		if !wellFormed(out) {
			t.Fatalf("op %d: completed a malformed packet %x", op, out)
		}
		if !sent[string(out)] && !tainted[label(out)] {
			t.Fatalf("op %d: completed a packet never sent: %x", op, out)
		}
	}
	for op := 0; op < 400; op++ {
		switch k := rng.IntN(10); {
		case k < 3 || len(queue) == 0: // a new packet
			var p []byte
			var f [][]byte
			n := 24 + rng.IntN(3000)
			id := rng.Uint32()
			sizes := make([]int, 8)
			for i := range sizes {
				sizes[i] = 8 * (2 + rng.IntN(80))
			}
			switch rng.IntN(3) {
			case 0:
				p = v4(byte(rng.IntN(4)), 2, 50, uint16(id), 4*rng.IntN(3), espPayload(rng, n))
				f = fragV4(p, sizes...)
			case 1:
				p = v4(byte(rng.IntN(4)), 2, 17, uint16(id), 0, nattPayload(rng, n))
				f = fragV4(p, sizes...)
			default:
				h := rng.IntN(3)
				p = v6(byte(rng.IntN(4)), 2, h, rng.IntN(2), 50, espPayload(rng, n))
				binary.BigEndian.PutUint32(p, 0x60000000|id&0xfffff) // label
				f = fragV6(p, h, id, sizes...)
			}
			if len(f) == 1 {
				continue // not a fragment (IPv4) or atomic (IPv6)
			}
			rng.Shuffle(len(f), func(i, j int) { f[i], f[j] = f[j], f[i] })
			sent[string(p)] = true
			queue = append(queue, &pending{f, p})
		case k < 8: // the next fragment of some packet
			i := rng.IntN(len(queue))
			q := queue[i]
			g := q.frags[0]
			if rng.IntN(8) == 0 {
				g = bytes.Clone(g) // keep it: a duplicate later
			} else {
				q.frags = q.frags[1:]
			}
			if out, res := r.Add(bytes.Clone(g), now); res == Complete {
				completed(op, out)
			}
			if len(q.frags) == 0 {
				queue = append(queue[:i], queue[i+1:]...)
			}
		case k < 9: // a forged fragment: an existing one moved or altered
			q := queue[rng.IntN(len(queue))]
			tainted[label(q.pkt)] = true
			g := bytes.Clone(q.frags[rng.IntN(len(q.frags))])
			if rng.IntN(2) == 0 {
				setOffset(g, 8*rng.IntN(400))
			} else {
				g[len(g)-1] ^= 0x55
			}
			if out, res := r.Add(g, now); res == Complete {
				completed(op, out)
			}
		default: // garbage and time
			g := make([]byte, rng.IntN(80))
			for i := range g {
				g[i] = byte(rng.Uint32())
			}
			if len(g) > 0 {
				g[0] = 0x40 | g[0]&0x2f
			}
			r.Add(g, now)
			now += int64(rng.IntN(30))
			if rng.IntN(4) == 0 {
				r.Expire(now)
			}
		}
		check(t, r)
	}
}

// label tells the packets of the random sequences apart by header only:
// IPv4 source and identification, IPv6 source and flow label.
func label(p []byte) string {
	if p[0]>>4 == 4 {
		return string(p[12:16]) + string(p[4:6])
	}
	return string(p[8:24]) + string(p[1:4])
}

// wellFormed checks the length fields and fragment bits of a reassembled
// packet and, for IPv4, its header checksum.
func wellFormed(p []byte) bool {
	if len(p) >= 20 && p[0]>>4 == 4 {
		hl := int(p[0]&0x0f) * 4
		var sum uint32
		for i := 0; i < hl; i += 2 {
			sum += uint32(p[i])<<8 | uint32(p[i+1])
		}
		for sum > 0xffff {
			sum = sum>>16 + sum&0xffff
		}
		return int(binary.BigEndian.Uint16(p[2:])) == len(p) && binary.BigEndian.Uint16(p[6:])&0x3fff == 0 && sum == 0xffff
	}
	if len(p) >= 40 && p[0]>>4 == 6 {
		if int(binary.BigEndian.Uint16(p[4:]))+40 != len(p) {
			return false
		}
		nh, off := p[6], 40
		for nh == 0 || nh == 60 {
			if off+8 > len(p) {
				return false
			}
			nh, off = p[off], off+8+int(p[off+1])*8
		}
		return nh != 44
	}
	return false
}

// TestReassembleUndisturbedCompletes: without forgeries, interleaved
// packets that fit the bounds all complete, whatever the order.
func TestReassembleUndisturbedCompletes(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	r := New(Config{})
	var all [][]byte
	want := map[string]bool{}
	for i := range 40 {
		var p []byte
		var f [][]byte
		switch i % 3 {
		case 0:
			p = v4(byte(i), 2, 50, uint16(i), 0, espPayload(rng, 100+rng.IntN(4000)))
			f = fragV4(p, 512, 512, 512, 512, 512, 512, 512, 512)
		case 1:
			p = v4(byte(i), 2, 17, uint16(i), 0, nattPayload(rng, 100+rng.IntN(4000)))
			f = fragV4(p, 1024, 1024, 1024)
		default:
			p = v6(byte(i), 2, 1, 1, 50, espPayload(rng, 100+rng.IntN(4000)))
			f = fragV6(p, 1, uint32(i), 1232, 1232, 1232)
		}
		want[string(p)] = true
		all = append(all, f...)
	}
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	got := 0
	for _, f := range all {
		out, res := r.Add(f, 0)
		if res == NotFragment {
			out, res = f, Complete
		}
		if res == Complete {
			if !want[string(out)] {
				t.Fatal("unknown packet")
			}
			delete(want, string(out))
			got++
		} else if res != Buffered {
			t.Fatal(res)
		}
	}
	if len(want) != 0 || got != 40 {
		t.Fatalf("%d missing", len(want))
	}
	if s := check(t, r); s.Sets != 0 || s.Evicted != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestReassembleAlloc: Add and Expire allocate nothing, for buffered,
// completed, duplicate and dropped fragments and evictions.
func TestReassembleAlloc(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	var frags [][]byte
	for _, c := range cases(rng) {
		frags = append(frags, c.frags...)
		frags = append(frags, c.frags[0]) // starts a set that gets evicted
	}
	bad := bytes.Clone(frags[1])
	setOffset(bad, 0)
	frags = append(frags, frags[0], bad)
	r := New(Config{MaxSets: 2})
	var now int64
	allocs := testing.AllocsPerRun(100, func() {
		for _, f := range frags {
			r.Add(f, now) // none is atomic: Add does not write to f
		}
		now += 10
		r.Expire(now)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per run", allocs)
	}
	if s := check(t, r); s.Reassembled == 0 || s.Evicted == 0 || s.Overlap == 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestStatsAdd: Add sums every counter (a field added to Stats and
// forgotten in Add fails here), and the sum of balanced counters is
// balanced.
func TestStatsAdd(t *testing.T) {
	var a, b Stats
	va, vb := reflect.ValueOf(&a).Elem(), reflect.ValueOf(&b).Elem()
	for i := range va.NumField() {
		va.Field(i).SetUint(uint64(i + 1))
		vb.Field(i).SetUint(uint64(100 * (i + 1)))
	}
	sum := a
	sum.Add(b)
	vs := reflect.ValueOf(sum)
	for i := range vs.NumField() {
		if got, want := vs.Field(i).Uint(), uint64(101*(i+1)); got != want {
			t.Errorf("%s: %d, want %d", vs.Type().Field(i).Name, got, want)
		}
	}
	x := Stats{Fragments: 7, InPackets: 3, Duplicates: 1, Overlap: 2, Pending: 1}
	y := Stats{Fragments: 5, InPackets: 2, Discarded: 2, TinyFirst: 1}
	if !x.Balanced() || !y.Balanced() {
		t.Fatal("inputs not balanced")
	}
	x.Add(y)
	if !x.Balanced() {
		t.Errorf("sum %+v not balanced", x)
	}
}
