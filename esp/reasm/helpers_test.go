package reasm

import (
	"encoding/binary"
	"math/rand/v2"
)

// Packet and fragment builders written by hand from RFC 791 / RFC 8200,
// independent of the code under test.

// v4 builds an IPv4 packet (no options unless opts) with payload.
func v4(src, dst byte, proto uint8, id uint16, opts int, payload []byte) []byte {
	hl := 20 + opts
	p := make([]byte, hl+len(payload))
	p[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], id)
	p[8] = 64
	p[9] = proto
	copy(p[12:], []byte{192, 0, 2, src})
	copy(p[16:], []byte{198, 51, 100, dst})
	for i := 20; i < hl; i++ {
		p[i] = 1 // NOP options
	}
	copy(p[hl:], payload)
	putChecksum(p[:hl])
	return p
}

// fragV4 splits an IPv4 packet into fragments of the given data sizes
// (the last takes the rest; all but it must be multiples of 8). Every
// fragment gets the whole header (options included) for simplicity.
func fragV4(p []byte, sizes ...int) [][]byte {
	hl := int(p[0]&0x0f) * 4
	data := p[hl:]
	var out [][]byte
	off := 0
	for i := 0; off < len(data); i++ {
		n := len(data) - off
		if i < len(sizes) && sizes[i] < n {
			n = sizes[i]
		}
		f := make([]byte, hl+n)
		copy(f, p[:hl])
		copy(f[hl:], data[off:off+n])
		binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
		fo := uint16(off / 8)
		if off+n < len(data) {
			fo |= 0x2000
		}
		binary.BigEndian.PutUint16(f[6:], fo)
		putChecksum(f[:hl])
		out = append(out, f)
		off += n
	}
	return out
}

// v6 builds an IPv6 packet: the fixed header, then hbh 8-byte hop-by-hop
// options headers (unfragmentable), then dstopts 8-byte destination
// options headers (fragmentable), then the upper layer proto with payload.
func v6(src, dst byte, hbh, dstopts int, proto uint8, payload []byte) []byte {
	n := 40 + 8*(hbh+dstopts) + len(payload)
	p := make([]byte, n)
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(n-40))
	p[7] = 64
	p[8], p[23] = 0x20, src
	p[24], p[39] = 0x20, dst
	nh := 6
	off := 40
	for i := 0; i < hbh+dstopts; i++ {
		if i < hbh {
			p[nh] = 0
		} else {
			p[nh] = 60
		}
		p[off+2], p[off+3] = 1, 4 // PadN of 4 bytes
		nh, off = off, off+8
	}
	p[nh] = proto
	copy(p[off:], payload)
	return p
}

// fragV6 splits an IPv6 packet built by v6 with hbh hop-by-hop headers
// into fragments of the given sizes with identification id.
func fragV6(p []byte, hbh int, id uint32, sizes ...int) [][]byte {
	unf := 40 + 8*hbh
	nhOff := 6
	if hbh > 0 {
		nhOff = 40 + 8*(hbh-1)
	}
	data := p[unf:]
	var out [][]byte
	off := 0
	for i := 0; off < len(data); i++ {
		n := len(data) - off
		if i < len(sizes) && sizes[i] < n {
			n = sizes[i]
		}
		f := make([]byte, unf+8+n)
		copy(f, p[:unf])
		f[nhOff] = 44
		fh := f[unf:]
		fh[0] = p[nhOff]
		fo := uint16(off/8) << 3
		if off+n < len(data) {
			fo |= 1
		}
		binary.BigEndian.PutUint16(fh[2:], fo)
		binary.BigEndian.PutUint32(fh[4:], id)
		copy(f[unf+8:], data[off:off+n])
		binary.BigEndian.PutUint16(f[4:], uint16(len(f)-40))
		out = append(out, f)
		off += n
	}
	return out
}

// espPayload is an ESP header (non-zero SPI) and random bytes, n in all.
func espPayload(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	binary.BigEndian.PutUint32(b, 0x1000+rng.Uint32N(1000))
	return b
}

// nattPayload is a UDP header to 4500 and an ESP payload, n bytes in all.
func nattPayload(rng *rand.Rand, n int) []byte {
	b := espPayload(rng, n)
	binary.BigEndian.PutUint16(b[0:], 4500)
	binary.BigEndian.PutUint16(b[2:], 4500)
	binary.BigEndian.PutUint16(b[4:], uint16(n))
	binary.BigEndian.PutUint16(b[6:], 0)
	binary.BigEndian.PutUint32(b[8:], 0x2000)
	return b
}

// permutations calls fn with every permutation of 0..n-1.
func permutations(n int, fn func([]int)) {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	var rec func(k int)
	rec = func(k int) {
		if k == n {
			fn(p)
			return
		}
		for i := k; i < n; i++ {
			p[k], p[i] = p[i], p[k]
			rec(k + 1)
			p[k], p[i] = p[i], p[k]
		}
	}
	rec(0)
}
