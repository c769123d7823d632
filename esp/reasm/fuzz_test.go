package reasm

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// encodeRecords packs packets for FuzzReassemble: per packet one byte of
// time step, two bytes of length, the packet.
func encodeRecords(pkts ...[]byte) []byte {
	var b []byte
	for i, p := range pkts {
		b = append(b, byte(i%3))
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
	}
	return b
}

// seedSets are fragment sets for the seed corpus: good ones in order and
// reversed, duplicates, an overlap, a tiny first fragment, one beyond
// 65535.
func seedSets() [][]byte {
	rng := rand.New(rand.NewPCG(31, 32))
	var seeds [][]byte
	for _, c := range cases(rng) {
		seeds = append(seeds, encodeRecords(c.frags...))
		rev := [][]byte{c.frags[3], c.frags[2], c.frags[1], c.frags[1], c.frags[0]}
		seeds = append(seeds, encodeRecords(rev...))
		bad := bytes.Clone(c.frags[2])
		setOffset(bad, offsetOf(bad)-8)
		seeds = append(seeds, encodeRecords(c.frags[1], bad, c.frags[0]))
	}
	pn := v4(1, 2, 17, 1, 0, nattPayload(rng, 200))
	seeds = append(seeds, encodeRecords(fragV4(pn, 8)...))
	p := v4(1, 2, 50, 3, 0, espPayload(rng, 200))
	f := fragV4(p, 104)
	setOffset(f[1], 8191*8)
	seeds = append(seeds, encodeRecords(f...))
	p6 := v6(1, 2, 1, 0, 50, espPayload(rng, 100))
	seeds = append(seeds, encodeRecords(fragV6(p6, 1, 3, 1000)...)) // atomic
	return seeds
}

// FuzzReassemble feeds arbitrary packet sequences to a small Reassembler:
// it must not panic, its accounting must balance and its bounds hold
// after every call, and every packet it completes must be well formed
// (length fields, no fragment bits or header, valid IPv4 checksum).
func FuzzReassemble(f *testing.F) {
	for _, s := range seedSets() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := New(Config{MaxSets: 3, MaxFragments: 6, MaxMemory: 4096, Timeout: 4})
		var now int64
		for len(data) >= 3 {
			now += int64(data[0])
			n := int(binary.BigEndian.Uint16(data[1:]))
			data = data[3:]
			n = min(n, len(data))
			pkt := bytes.Clone(data[:n])
			data = data[n:]
			out, res := r.Add(pkt, now)
			switch res {
			case Complete:
				if !wellFormed(out) {
					t.Fatalf("completed a malformed packet %x", out)
				}
				if len(out) > MaxIPv6Len || out[0]>>4 == 4 && len(out) > MaxIPv4Len {
					t.Fatalf("%d bytes", len(out))
				}
			case NotFragment:
				if out != nil {
					t.Fatal("output for a non-fragment")
				}
			default:
				if out != nil {
					t.Fatalf("output with %v", res)
				}
			}
			if res >= numResults {
				t.Fatalf("result %d", res)
			}
			check(t, r)
			if len(data) > 0 && data[0]&0x80 != 0 {
				r.Expire(now)
			}
		}
	})
}

// FuzzReassembleRoundTrip fragments a packet as the input says (family,
// size, fragment sizes, order, duplicates) and checks that reassembly
// gives back exactly the packet.
func FuzzReassembleRoundTrip(f *testing.F) {
	f.Add(uint64(1), uint16(1400), []byte{50, 60, 10, 3, 1, 2})
	f.Add(uint64(2), uint16(3000), []byte{1, 1, 1, 1, 1, 1, 1, 9})
	f.Add(uint64(3), uint16(65000), []byte{255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, seed uint64, size uint16, shape []byte) {
		rng := rand.New(rand.NewPCG(seed, 7))
		var p []byte
		var frags [][]byte
		sizes := make([]int, 0, len(shape))
		for _, s := range shape {
			sizes = append(sizes, 8*(1+int(s)))
		}
		kind := seed % 4
		n := max(int(size), 24)
		switch kind {
		case 0, 1:
			n = min(n, MaxIPv4Len-20)
			proto, pl := uint8(50), espPayload(rng, n)
			if kind == 1 {
				proto, pl = 17, nattPayload(rng, n)
			}
			p = v4(1, 2, proto, uint16(seed), 0, pl)
			frags = fragV4(p, sizes...)
		default:
			hbh, dst := int(seed>>2)%3, int(seed>>4)%2
			n = min(n, 65535-8*(hbh+dst))
			p = v6(1, 2, hbh, dst, 50, espPayload(rng, n))
			frags = fragV6(p, hbh, uint32(seed), sizes...)
		}
		if len(frags) == 1 {
			return // not a fragment (IPv4) or atomic (IPv6): tested elsewhere
		}
		first := frags[0]
		tiny := !firstOK(first[headerLen(first):], nextHeader(first), first[0]>>4 == 6)
		rng.Shuffle(len(frags), func(i, j int) { frags[i], frags[j] = frags[j], frags[i] })
		// An exact duplicate of the first one sent, right after it.
		frags = append(frags[:1], append([][]byte{frags[0]}, frags[1:]...)...)
		r := New(Config{MaxFragments: MaxMaxFragments, MaxMemory: 1 << 20, MaxSets: 1})
		var out []byte
		var res Result
		for i, g := range frags {
			out, res = r.Add(g, 0)
			if tiny && res == TinyFirst {
				return // the shape made a tiny first fragment
			}
			if want := Buffered; i < len(frags)-1 && res != want && !(i == 1 && res == Duplicate) {
				t.Fatalf("fragment %d of %d: %v", i, len(frags), res)
			}
		}
		if tiny {
			t.Fatal("tiny first fragment accepted")
		}
		if res != Complete || !bytes.Equal(out, p) {
			t.Fatalf("%v", res)
		}
		check(t, r)
	})
}

// headerLen and nextHeader give the fragmentable part's offset and its
// first header's type for a fragment built by fragV4 or fragV6.
func headerLen(f []byte) int {
	if f[0]>>4 == 4 {
		return int(f[0]&0x0f) * 4
	}
	fh := fragHeader(f)
	return cap(f) - cap(fh) + 8
}

func nextHeader(f []byte) uint8 {
	if f[0]>>4 == 4 {
		return f[9]
	}
	return fragHeader(f)[0]
}
