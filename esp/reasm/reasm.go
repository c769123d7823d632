package reasm

import (
	"encoding/binary"
	"fmt"

	"github.com/espxdp/espxdp/internal/inet"
)

// Limits of the reassembled packet and of the headers kept in front of it.
const (
	// MaxIPv4Len is the largest reassembled IPv4 packet (total length).
	MaxIPv4Len = 65535
	// MaxIPv6Len is the largest reassembled IPv6 packet: the 40-byte
	// header and a payload length of at most 65535.
	MaxIPv6Len = 40 + 65535
	// MaxHeaderLen is the longest header kept in front of the reassembled
	// data: the IPv4 header with options, or the IPv6 header with the
	// extension headers before the fragment header (the unfragmentable
	// part). IPv6 fragments with a longer unfragmentable part are refused
	// as Malformed.
	MaxHeaderLen = 512
	// SlotSize is the size of one set's buffer. The fragment data of a
	// set lies at MaxHeaderLen + fragment offset, the header right in
	// front of it.
	SlotSize = MaxHeaderLen + 65535
)

// Defaults of the Config fields.
const (
	DefaultMaxSets      = 64
	DefaultMaxFragments = 64
	DefaultMaxMemory    = 2 << 20
	DefaultTimeout      = 3e9 // nanoseconds
)

// Bounds on the Config fields.
const (
	// MaxMaxSets bounds Config.MaxSets (the preallocated memory is
	// MaxSets × SlotSize).
	MaxMaxSets = 4096
	// MaxMaxFragments bounds Config.MaxFragments: 65535 bytes in 8-byte
	// fragments.
	MaxMaxFragments = 8192
)

// Config bounds a Reassembler. Zero fields take the defaults.
type Config struct {
	// MaxSets is the number of sets (packets being reassembled) held at
	// once; that many SlotSize buffers are preallocated. Default 64.
	MaxSets int
	// MaxFragments is the most fragments one set may have. Default 64
	// (a 64 KiB packet in fragments of 1 KiB).
	MaxFragments int
	// MaxMemory bounds the fragment data buffered over all sets, in bytes.
	// Default 2 MiB.
	MaxMemory int
	// Timeout is how long a set may take to complete, in the unit of the
	// times passed to Add and Expire (nanoseconds by convention), counted
	// from its first fragment. Default 3 s.
	Timeout int64
}

// Result is what Add did with a packet.
type Result uint8

// Results of Add. NotFragment, Buffered, Duplicate and Complete are not
// drops; every other Result is, and says why.
const (
	// NotFragment: the packet is not a fragment (or too broken to tell);
	// the caller processes it as it is.
	NotFragment Result = iota
	// Buffered: the fragment was kept; its packet is not complete yet.
	Buffered
	// Duplicate: an exact copy of a buffered fragment, ignored.
	Duplicate
	// Complete: the fragment completed a packet (or was an IPv6 atomic
	// fragment); Add returned it.
	Complete
	// Malformed: a fragment with broken headers, no data, or a length
	// that is not a multiple of 8 while more fragments follow. Only the
	// fragment is dropped.
	Malformed
	// TinyFirst: a first fragment too short to hold the upper-layer
	// header chain. The set is dropped.
	TinyFirst
	// Overlap: the fragment overlaps a buffered one. The set is dropped.
	Overlap
	// TooBig: the fragment ends beyond the largest packet. The set is
	// dropped.
	TooBig
	// TooMany: the set already has MaxFragments fragments. The set is
	// dropped.
	TooMany
	// NoMemory: the fragment does not fit in MaxMemory even after
	// evicting every other set. The set is dropped.
	NoMemory
	// Inconsistent: a last fragment that disagrees with the set's length,
	// or a fragment ending beyond it. The set is dropped.
	Inconsistent
	numResults
)

var resultNames = [numResults]string{
	"not a fragment", "buffered", "duplicate", "complete", "malformed",
	"tiny first fragment", "overlap", "too big", "too many fragments",
	"no memory", "inconsistent",
}

// String names the result.
func (r Result) String() string {
	if r < numResults {
		return resultNames[r]
	}
	return fmt.Sprintf("Result(%d)", uint8(r))
}

// Dropped reports whether the packet given to Add was dropped.
func (r Result) Dropped() bool { return r >= Malformed && r < numResults }

// Stats are a Reassembler's counters. The gauges (Sets, Pending, Bytes)
// are the current state; everything else only grows.
type Stats struct {
	// Fragments is the number of fragments given to Add (not counting
	// the atomic fragments passed on as Atomic).
	Fragments uint64
	// Reassembled is the number of packets completed, InPackets the
	// number of fragments in them.
	Reassembled, InPackets uint64
	// Atomic is the number of IPv6 atomic fragments (RFC 6946) passed on.
	Atomic uint64
	// Duplicates is the number of exact duplicates ignored.
	Duplicates uint64
	// Fragments refused on arrival, by reason (see Result).
	Malformed, TinyFirst, Overlap, TooBig, TooMany, NoMemory, Inconsistent uint64
	// Timeouts is the number of sets dropped because they did not
	// complete within Timeout; Evicted the number dropped (oldest first)
	// to make room for another.
	Timeouts, Evicted uint64
	// Discarded is the number of buffered fragments thrown away with
	// their sets (by any reason).
	Discarded uint64
	// Sets, Pending and Bytes are the sets, fragments and bytes of
	// fragment data buffered now.
	Sets, Pending, Bytes uint64
}

// Refused is the number of fragments dropped on arrival.
func (s *Stats) Refused() uint64 {
	return s.Malformed + s.TinyFirst + s.Overlap + s.TooBig + s.TooMany + s.NoMemory + s.Inconsistent
}

// Balanced reports whether every fragment is accounted for exactly once:
// Fragments == InPackets + Duplicates + Refused + Discarded + Pending.
func (s *Stats) Balanced() bool {
	return s.Fragments == s.InPackets+s.Duplicates+s.Refused()+s.Discarded+s.Pending
}

// Add adds o's counters to s (to sum the reassemblers of several
// workers); the result stays Balanced when both were.
func (s *Stats) Add(o Stats) {
	s.Fragments += o.Fragments
	s.Reassembled += o.Reassembled
	s.InPackets += o.InPackets
	s.Atomic += o.Atomic
	s.Duplicates += o.Duplicates
	s.Malformed += o.Malformed
	s.TinyFirst += o.TinyFirst
	s.Overlap += o.Overlap
	s.TooBig += o.TooBig
	s.TooMany += o.TooMany
	s.NoMemory += o.NoMemory
	s.Inconsistent += o.Inconsistent
	s.Timeouts += o.Timeouts
	s.Evicted += o.Evicted
	s.Discarded += o.Discarded
	s.Sets += o.Sets
	s.Pending += o.Pending
	s.Bytes += o.Bytes
}

// key identifies a set: RFC 791 (src, dst, id, protocol) for IPv4,
// RFC 8200 (src, dst, id) for IPv6 (proto 0, v6 true).
type key struct {
	src, dst [16]byte
	id       uint32
	proto    uint8
	v6       bool
}

// span is the byte range [off, end) of the fragmentable part one fragment
// carried.
type span struct{ off, end uint32 }

// set is one packet being reassembled, in its slot.
//
// Invariants (kept by Add, checked by the tests through Stats):
//   - spans[:n] are pairwise disjoint, so have (their total length) equals
//     the number of distinct bytes received, and have == total means that
//     [0, total) is covered;
//   - total is -1 until the last fragment (MF clear) arrived, then every
//     span ends at or before it;
//   - hlen is 0 until the first fragment (offset 0) arrived; then
//     buf[MaxHeaderLen-hlen:MaxHeaderLen] holds its header;
//   - the bytes of span s are buf[MaxHeaderLen+s.off : MaxHeaderLen+s.end].
type set struct {
	born  int64  // time of the first fragment
	order uint64 // creation order, for eviction
	n     int    // fragments buffered
	have  int    // bytes buffered
	total int    // length of the fragmentable part, -1 if not known yet
	hlen  int    // header length of the first fragment, 0 if not seen
	nhOff int    // IPv6: offset in the header of the next-header byte that said 44
	nh    uint8  // IPv6: next header of the fragment header of the first fragment
	spans []span
	buf   []byte
}

// Reassembler reassembles the fragments of one worker. It is not safe for
// concurrent use.
//
// Invariants (between calls; the tests check them through Stats after
// every call of random operation sequences):
//   - used[i] holds for at most MaxSets slots, and no two used slots
//     have the same key: a fragment joins the set of its key or starts
//     one;
//   - mem is the sum of the used sets' have, and mem <= MaxMemory: a
//     fragment is only copied in after room was made for it;
//   - every fragment given to Add is counted exactly once (Stats.Balanced).
type Reassembler struct {
	cfg   Config
	keys  []key  // keys[i] is the key of sets[i] when used[i]
	used  []bool // slot i holds a set
	sets  []set
	order uint64
	mem   int // bytes buffered over all sets (<= cfg.MaxMemory)
	st    Stats
}

// New returns a Reassembler bounded by cfg, with all its memory
// allocated: about MaxSets × (SlotSize + 8 × MaxFragments) bytes. Fields
// out of range are clamped (negative or zero ones take the default).
func New(cfg Config) *Reassembler {
	if cfg.MaxSets <= 0 {
		cfg.MaxSets = DefaultMaxSets
	}
	cfg.MaxSets = min(cfg.MaxSets, MaxMaxSets)
	if cfg.MaxFragments <= 0 {
		cfg.MaxFragments = DefaultMaxFragments
	}
	cfg.MaxFragments = min(cfg.MaxFragments, MaxMaxFragments)
	if cfg.MaxMemory <= 0 {
		cfg.MaxMemory = DefaultMaxMemory
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	r := &Reassembler{
		cfg:  cfg,
		keys: make([]key, cfg.MaxSets),
		used: make([]bool, cfg.MaxSets),
		sets: make([]set, cfg.MaxSets),
	}
	spans := make([]span, cfg.MaxSets*cfg.MaxFragments)
	for i := range r.sets {
		r.sets[i].buf = make([]byte, SlotSize)
		r.sets[i].spans = spans[i*cfg.MaxFragments : (i+1)*cfg.MaxFragments : (i+1)*cfg.MaxFragments]
	}
	return r
}

// Config returns the configuration in force, defaults filled in.
func (r *Reassembler) Config() Config { return r.cfg }

// Stats returns the counters.
func (r *Reassembler) Stats() Stats {
	s := r.st
	s.Sets, s.Pending, s.Bytes = 0, 0, uint64(r.mem)
	for i, u := range r.used {
		if u {
			s.Sets++
			s.Pending += uint64(r.sets[i].n)
		}
	}
	return s
}

// frag is one parsed fragment.
type frag struct {
	k      key
	off    int    // fragment offset in bytes
	data   []byte // the fragmentable part it carries
	more   bool   // MF / M flag
	hdr    []byte // IPv4 header, or IPv6 unfragmentable part
	nhOff  int    // IPv6: offset in hdr of the next-header byte that said 44
	nh     uint8  // IPv6: the fragment header's next header; IPv4: protocol
	fragAt int    // IPv6: offset of the fragment header in the packet
}

// parse classifies pkt. It returns NotFragment, Malformed, or Buffered
// for a fragment filled into f (Complete is never returned).
func parse(pkt []byte, f *frag) Result {
	if len(pkt) < 1 {
		return NotFragment
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return NotFragment
		}
		fo := binary.BigEndian.Uint16(pkt[6:])
		if fo&0x3fff == 0 {
			return NotFragment
		}
		hl := int(pkt[0]&0x0f) * 4
		tl := int(binary.BigEndian.Uint16(pkt[2:]))
		if hl < 20 || tl < hl || tl > len(pkt) {
			return Malformed
		}
		f.k = key{id: uint32(binary.BigEndian.Uint16(pkt[4:])), proto: pkt[9]}
		copy(f.k.src[:], pkt[12:16])
		copy(f.k.dst[:], pkt[16:20])
		f.off = int(fo&0x1fff) * 8
		f.more = fo&0x2000 != 0
		f.hdr = pkt[:hl]
		f.data = pkt[hl:tl]
		f.nh = pkt[9]
		return Buffered
	case 6:
		if len(pkt) < 40 {
			return NotFragment
		}
		pl := int(binary.BigEndian.Uint16(pkt[4:]))
		if pl == 0 || 40+pl > len(pkt) {
			return NotFragment // jumbogram or broken: not ours to judge
		}
		tl := 40 + pl
		nhOff, off := 6, 40
		for i := 0; ; i++ {
			switch pkt[nhOff] {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if i == 8 || off+8 > tl {
					return NotFragment
				}
				n := 8 + int(pkt[off+1])*8
				if off+n > tl {
					return NotFragment
				}
				nhOff, off = off, off+n
				continue
			case 44:
			default:
				return NotFragment
			}
			break
		}
		if off+8 > tl || off > MaxHeaderLen {
			return Malformed
		}
		fh := pkt[off : off+8]
		fo := binary.BigEndian.Uint16(fh[2:])
		f.k = key{id: binary.BigEndian.Uint32(fh[4:]), v6: true}
		copy(f.k.src[:], pkt[8:24])
		copy(f.k.dst[:], pkt[24:40])
		f.off = int(fo>>3) * 8
		f.more = fo&1 != 0
		f.hdr = pkt[:off]
		f.nhOff = nhOff
		f.nh = fh[0]
		f.fragAt = off
		f.data = pkt[off+8 : tl]
		// Invariant: a completed packet never carries a fragment header.
		// A fragment header nested in the fragmentable part (right after
		// this one, or behind extension headers in a first fragment) is
		// not defined by RFC 8200 and would leave one in the output.
		if f.nh == 44 {
			return Malformed
		}
		if f.off == 0 {
			// The first fragment (or an atomic one) holds the header
			// chain of the fragmentable part (a chain cut short is
			// TinyFirst, see firstOK).
			if upper, _, ok := chain(f.data, f.nh); ok && upper == 44 {
				return Malformed
			}
		}
		return Buffered
	}
	return NotFragment
}

// minUpper is the least a first fragment must hold of the upper-layer
// protocol proto's header.
func minUpper(proto uint8) int {
	switch proto {
	case 17: // UDP: header and SPI + sequence number or non-ESP marker
		return 16
	case 6: // TCP
		return 20
	case 59: // no next header
		return 0
	}
	return 8 // ESP (SPI + sequence number), ICMP, ...
}

// chain walks the IPv6 extension headers that may follow a fragment
// header at the start of data, beginning with next header nh, and returns
// the first header that is not one of them (an upper-layer protocol, or 44
// for a nested fragment header) and its offset in data. ok is false when
// the chain runs past data or is longer than 8 headers.
func chain(data []byte, nh uint8) (upper uint8, off int, ok bool) {
	for i := 0; ; i++ {
		switch nh {
		case 60, 43, 0: // destination options, routing, (misplaced) hop-by-hop
		case 51: // AH: length in 4-byte units, minus 2
		default:
			return nh, off, true
		}
		if i == 8 || off+8 > len(data) {
			return nh, off, false
		}
		n := 8 + int(data[off+1])*8
		if nh == 51 {
			n = (int(data[off+1]) + 2) * 4
		}
		nh = data[off]
		off += n
		if off > len(data) {
			return nh, off, false
		}
	}
}

// firstOK reports whether the fragmentable part data of a first fragment
// whose header chain continues with next header nh holds the whole header
// chain and enough of the upper-layer header (RFC 7112). v6 walks IPv6
// extension headers that may follow the fragment header.
func firstOK(data []byte, nh uint8, v6 bool) bool {
	off := 0
	if v6 {
		var ok bool
		if nh, off, ok = chain(data, nh); !ok {
			return false
		}
	}
	return len(data)-off >= minUpper(nh)
}

// Add takes one IP packet pkt (starting at its IP header; bytes past the
// length its header gives are ignored) received at time now.
//
// For NotFragment out is nil and pkt is untouched. For Complete, out is
// the reassembled packet, in the Reassembler's memory: it is the caller's
// (to read or to modify in place, e.g. to decrypt) until the next call of
// Add or Expire. For an IPv6 atomic fragment, Add instead removes the
// fragment header in place and out is pkt[8:] cut to the new length. For
// the other results out is nil.
func (r *Reassembler) Add(pkt []byte, now int64) (out []byte, res Result) {
	var f frag
	switch parse(pkt, &f) {
	case NotFragment:
		return nil, NotFragment
	case Malformed:
		r.st.Fragments++
		r.st.Malformed++
		return nil, Malformed
	}
	if f.k.v6 && f.off == 0 && !f.more {
		// An atomic fragment is a first fragment too: its header
		// chain must be whole (RFC 7112).
		if _, _, ok := chain(f.data, f.nh); !ok {
			r.st.Fragments++
			r.st.TinyFirst++
			return nil, TinyFirst
		}
		return r.atomic(pkt, &f), Complete
	}
	r.st.Fragments++
	end := f.off + len(f.data)
	if len(f.data) == 0 || f.more && len(f.data)%8 != 0 {
		r.st.Malformed++
		return nil, Malformed
	}
	// The fragmentable part can never exceed 65535 bytes less the
	// smallest header: 20 for IPv4, 0 for IPv6.
	maxEnd := MaxIPv6Len - 40
	if !f.k.v6 {
		maxEnd = MaxIPv4Len - 20
	}
	i := r.find(&f.k, now)
	if end > maxEnd {
		return nil, r.refuse(i, TooBig, &r.st.TooBig)
	}
	// Duplicates and overlaps.
	if i >= 0 {
		s := &r.sets[i]
		for _, sp := range s.spans[:s.n] {
			if f.off < int(sp.end) && int(sp.off) < end {
				if f.off == int(sp.off) && end == int(sp.end) &&
					string(f.data) == string(s.buf[MaxHeaderLen+f.off:MaxHeaderLen+end]) &&
					f.more == (s.total != end) {
					r.st.Duplicates++
					return nil, Duplicate
				}
				return nil, r.refuse(i, Overlap, &r.st.Overlap)
			}
		}
	}
	if f.off == 0 && !firstOK(f.data, f.nh, f.k.v6) {
		return nil, r.refuse(i, TinyFirst, &r.st.TinyFirst)
	}
	if i < 0 {
		i = r.alloc(&f.k, now)
	}
	s := &r.sets[i]
	// The end of the packet.
	if !f.more {
		if s.total >= 0 && s.total != end {
			return nil, r.refuse(i, Inconsistent, &r.st.Inconsistent)
		}
		for _, sp := range s.spans[:s.n] {
			if int(sp.end) > end {
				return nil, r.refuse(i, Inconsistent, &r.st.Inconsistent)
			}
		}
	} else if s.total >= 0 && end >= s.total {
		return nil, r.refuse(i, Inconsistent, &r.st.Inconsistent)
	}
	if s.n == len(s.spans) {
		return nil, r.refuse(i, TooMany, &r.st.TooMany)
	}
	// The first fragment's header must fit with the data so far.
	hlen := s.hlen
	if f.off == 0 {
		hlen = len(f.hdr)
	}
	if hlen > 0 && tooBig(hlen, max(end, s.total), f.k.v6) {
		return nil, r.refuse(i, TooBig, &r.st.TooBig)
	}
	// Memory: evict the oldest other sets until the fragment fits.
	for r.mem+len(f.data) > r.cfg.MaxMemory {
		j := r.oldest(i)
		if j < 0 {
			return nil, r.refuse(i, NoMemory, &r.st.NoMemory)
		}
		r.st.Evicted++
		r.free(j)
	}
	// Keep it.
	copy(s.buf[MaxHeaderLen+f.off:], f.data)
	s.spans[s.n] = span{uint32(f.off), uint32(end)}
	s.n++
	s.have += len(f.data)
	r.mem += len(f.data)
	if !f.more {
		s.total = end
	}
	if f.off == 0 {
		s.hlen = len(f.hdr)
		copy(s.buf[MaxHeaderLen-s.hlen:], f.hdr)
		s.nhOff, s.nh = f.nhOff, f.nh
	}
	if s.hlen == 0 || s.total < 0 || s.have != s.total {
		return nil, Buffered
	}
	// Complete: [0, total) is covered (spans are disjoint and add up to
	// total). Fix the header and hand the packet out.
	out = s.buf[MaxHeaderLen-s.hlen : MaxHeaderLen+s.total]
	if f.k.v6 {
		out[s.nhOff] = s.nh
		binary.BigEndian.PutUint16(out[4:], uint16(len(out)-40))
	} else {
		binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
		fo := binary.BigEndian.Uint16(out[6:])
		binary.BigEndian.PutUint16(out[6:], fo&^0x3fff)
		putChecksum(out[:s.hlen])
	}
	r.st.Reassembled++
	r.st.InPackets += uint64(s.n)
	r.mem -= s.have
	s.n, s.have = 0, 0 // not discarded: release without counting
	r.used[i] = false
	return out, Complete
}

// tooBig reports whether a packet of header hlen and fragmentable part
// n exceeds the largest IP packet.
func tooBig(hlen, n int, v6 bool) bool {
	if v6 {
		return hlen+n > MaxIPv6Len
	}
	return hlen+n > MaxIPv4Len
}

// atomic removes the fragment header of an IPv6 atomic fragment in place
// and returns the packet that starts 8 bytes later.
func (r *Reassembler) atomic(pkt []byte, f *frag) []byte {
	r.st.Atomic++
	tl := f.fragAt + 8 + len(f.data)
	pkt[f.nhOff] = f.nh
	copy(pkt[8:f.fragAt+8], pkt[:f.fragAt])
	out := pkt[8:tl]
	binary.BigEndian.PutUint16(out[4:], uint16(len(out)-40))
	return out
}

// find returns the slot of the set with key k, or -1. A set found timed
// out is dropped (and -1 returned): its successor starts afresh.
func (r *Reassembler) find(k *key, now int64) int {
	for i := range r.keys {
		if r.used[i] && r.keys[i] == *k {
			if now-r.sets[i].born >= r.cfg.Timeout {
				r.st.Timeouts++
				r.free(i)
				return -1
			}
			return i
		}
	}
	return -1
}

// alloc starts a set for k in a free slot, making one if needed: timed-out
// sets first, then the oldest set.
func (r *Reassembler) alloc(k *key, now int64) int {
	i := r.freeSlot()
	if i < 0 {
		r.Expire(now)
		i = r.freeSlot()
	}
	if i < 0 {
		i = r.oldest(-1)
		r.st.Evicted++
		r.free(i)
	}
	r.order++
	r.used[i] = true
	r.keys[i] = *k
	s := &r.sets[i]
	s.born, s.order = now, r.order
	s.n, s.have, s.total, s.hlen, s.nhOff, s.nh = 0, 0, -1, 0, 0, 0
	return i
}

func (r *Reassembler) freeSlot() int {
	for i, u := range r.used {
		if !u {
			return i
		}
	}
	return -1
}

// oldest returns the used slot created first, other than skip, or -1.
func (r *Reassembler) oldest(skip int) int {
	j := -1
	for i, u := range r.used {
		if u && i != skip && (j < 0 || r.sets[i].order < r.sets[j].order) {
			j = i
		}
	}
	return j
}

// refuse counts a refused fragment under c and, if it belongs to a set
// (slot i >= 0), drops the set.
func (r *Reassembler) refuse(i int, res Result, c *uint64) Result {
	*c++
	if i >= 0 {
		r.free(i)
	}
	return res
}

// free drops the set in slot i, counting its fragments as discarded.
func (r *Reassembler) free(i int) {
	s := &r.sets[i]
	r.st.Discarded += uint64(s.n)
	r.mem -= s.have
	s.n, s.have = 0, 0
	r.used[i] = false
}

// Expire drops the sets older than Timeout at time now (counted as
// Timeouts). Add does it lazily; a worker calls Expire when idle so that
// an abandoned set does not hold memory until the next fragment.
func (r *Reassembler) Expire(now int64) {
	for i, u := range r.used {
		if u && now-r.sets[i].born >= r.cfg.Timeout {
			r.st.Timeouts++
			r.free(i)
		}
	}
}

// putChecksum sets the IPv4 header checksum of h.
func putChecksum(h []byte) {
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:], inet.Checksum(h))
}
