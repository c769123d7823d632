package harness

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"
	"math/rand/v2"
	"strings"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/espxdp/espxdp/esp"
)

const (
	benchSPI = 0x01020304
	benchNH  = 4 // IPv4
)

// keys returns key material for t drawn from a PRNG seeded with seed and
// the transform's name, so every run uses the same keys.
func keys(t esp.Transform, seed uint64) (key, auth []byte) {
	var h uint64 = 14695981039346656037
	for _, c := range []byte(t.Name()) {
		h = (h ^ uint64(c)) * 1099511628211
	}
	r := rand.New(rand.NewPCG(seed, h))
	key = make([]byte, t.KeyLen())
	auth = make([]byte, t.AuthKeyLen())
	for i := range key {
		key[i] = byte(r.Uint32())
	}
	for i := range auth {
		auth[i] = byte(r.Uint32())
	}
	return key, auth
}

// payloadBuf returns a buffer with esp.MaxHeadroom of headroom, n bytes of
// seeded pseudo-random payload and esp.MaxTailroom of tailroom.
func payloadBuf(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	buf := make([]byte, esp.MaxHeadroom+n+esp.MaxTailroom)
	for i := range n {
		buf[esp.MaxHeadroom+i] = byte(r.Uint32())
	}
	return buf
}

// window is the number of packets per timed window for payload n: a few
// microseconds of work, few enough packets that Open's slots stay in cache.
func window(n int) int { return max(8, min(128, 24<<10/(n+64))) }

// raw is a baseline: the standard library (or x/crypto) called directly on
// the same bytes ESP processes, laid out the same way, writing SPI,
// sequence number and IV but leaving padding and trailer checks to ESP.
type raw interface {
	hdrLen() int
	icvLen() int
	seal(pkt []byte, seq uint64)
	open(pkt []byte, seq uint64) bool
}

type rawAEAD struct {
	aead  cipher.AEAD
	nonce []byte
	tag   []byte
	icv   int
	gmac  bool
}

func (r *rawAEAD) hdrLen() int { return esp.HeaderLen + 8 }
func (r *rawAEAD) icvLen() int { return r.icv }

func (r *rawAEAD) seal(pkt []byte, seq uint64) {
	binary.BigEndian.PutUint32(pkt[0:4], benchSPI)
	binary.BigEndian.PutUint32(pkt[4:8], uint32(seq))
	binary.BigEndian.PutUint64(r.nonce[4:12], seq)
	copy(pkt[esp.HeaderLen:r.hdrLen()], r.nonce[4:12])
	end := len(pkt) - r.icv
	if r.gmac {
		copy(pkt[end:], r.aead.Seal(r.tag[:0], r.nonce, nil, pkt[:end]))
		return
	}
	body := pkt[r.hdrLen():end]
	r.aead.Seal(body[:0], r.nonce, body, pkt[:esp.HeaderLen])
}

func (r *rawAEAD) open(pkt []byte, _ uint64) bool {
	copy(r.nonce[4:12], pkt[esp.HeaderLen:r.hdrLen()])
	end := len(pkt) - r.icv
	if r.gmac {
		tag := r.aead.Seal(r.tag[:0], r.nonce, nil, pkt[:end])
		return subtle.ConstantTimeCompare(tag, pkt[end:]) == 1
	}
	h := r.hdrLen()
	_, err := r.aead.Open(pkt[h:h], r.nonce, pkt[h:], pkt[:esp.HeaderLen])
	return err == nil
}

type cbcMode interface {
	cipher.BlockMode
	SetIV([]byte)
}

type rawCBC struct {
	enc, dec cbcMode
	mac      hash.Hash
	sum      []byte
	icv      int
}

func (r *rawCBC) hdrLen() int { return esp.HeaderLen + aes.BlockSize }
func (r *rawCBC) icvLen() int { return r.icv }

func (r *rawCBC) seal(pkt []byte, seq uint64) {
	binary.BigEndian.PutUint32(pkt[0:4], benchSPI)
	binary.BigEndian.PutUint32(pkt[4:8], uint32(seq))
	iv := pkt[esp.HeaderLen:r.hdrLen()]
	binary.BigEndian.PutUint64(iv[0:8], seq)
	binary.BigEndian.PutUint64(iv[8:16], 0)
	end := len(pkt) - r.icv
	body := pkt[r.hdrLen():end]
	r.enc.SetIV(iv)
	r.enc.CryptBlocks(body, body)
	r.mac.Reset()
	r.mac.Write(pkt[:end])
	copy(pkt[end:], r.mac.Sum(r.sum[:0]))
}

func (r *rawCBC) open(pkt []byte, _ uint64) bool {
	end := len(pkt) - r.icv
	r.mac.Reset()
	r.mac.Write(pkt[:end])
	if !hmac.Equal(r.mac.Sum(r.sum[:0])[:r.icv], pkt[end:]) {
		return false
	}
	body := pkt[r.hdrLen():end]
	r.dec.SetIV(pkt[esp.HeaderLen:r.hdrLen()])
	r.dec.CryptBlocks(body, body)
	return true
}

// newRaw builds the baseline for t, or nil when there is none (AES-CTR,
// 3DES, NULL). GCM with an 8-byte ICV is compared with full-tag GCM, as
// the standard library refuses shorter tags.
func newRaw(t esp.Transform, seed uint64) (raw, error) {
	key, auth := keys(t, seed)
	name := t.Name()
	aeadBase := func(a cipher.AEAD, icv int, gmac bool) raw {
		r := &rawAEAD{aead: a, nonce: make([]byte, 12), tag: make([]byte, 0, 16), icv: icv, gmac: gmac}
		copy(r.nonce, key[len(key)-4:])
		return r
	}
	switch {
	case strings.Contains(name, "gcm") || strings.Contains(name, "gmac"):
		blk, err := aes.NewCipher(key[:len(key)-4])
		if err != nil {
			return nil, err
		}
		icv := t.ICVLen()
		var a cipher.AEAD
		if icv >= 12 && !strings.Contains(name, "gmac") {
			a, err = cipher.NewGCMWithTagSize(blk, icv)
		} else {
			a, err = cipher.NewGCM(blk)
			icv = 16
		}
		if err != nil {
			return nil, err
		}
		return aeadBase(a, icv, strings.Contains(name, "gmac")), nil
	case strings.HasPrefix(name, "chacha20poly1305"):
		a, err := chacha20poly1305.New(key[:len(key)-4])
		if err != nil {
			return nil, err
		}
		return aeadBase(a, t.ICVLen(), false), nil
	case strings.HasPrefix(name, "aes") && !strings.Contains(name, "ctr") && strings.Contains(name, "-sha"):
		blk, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		iv := make([]byte, aes.BlockSize)
		enc, ok1 := cipher.NewCBCEncrypter(blk, iv).(cbcMode)
		dec, ok2 := cipher.NewCBCDecrypter(blk, iv).(cbcMode)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("harness: CBC mode without SetIV")
		}
		var nh func() hash.Hash
		switch name[strings.Index(name, "-sha")+1:] {
		case "sha1":
			nh = sha1.New
		case "sha256":
			nh = sha256.New
		case "sha384":
			nh = sha512.New384
		case "sha512":
			nh = sha512.New
		default:
			return nil, nil
		}
		return &rawCBC{enc: enc, dec: dec, mac: hmac.New(nh, auth), sum: make([]byte, 0, 64), icv: t.ICVLen()}, nil
	}
	return nil, nil
}

// cryptoSide is one side (ours or raw) of a Seal/Open measurement for a
// payload size: seal(w) and open(w) time w packets.
type cryptoSide struct {
	seal, open func(w int) time.Duration
	sealOne    func() // for counting allocations
	openOne    func()
	err        func() error // first error inside a timed loop
}

// oursSide sets up our Cipher for payload n.
func oursSide(c *esp.Cipher, n, w int, seed uint64) (*cryptoSide, error) {
	s := esp.NewScratch()
	buf := payloadBuf(n, seed)
	seq := uint64(1)
	if _, err := c.Seal(s, buf, esp.MaxHeadroom, n, benchSPI, seq, benchNH); err != nil {
		return nil, err
	}
	var failed error
	sealOne := func() {
		seq++
		if _, err := c.Seal(s, buf, esp.MaxHeadroom, n, benchSPI, seq, benchNH); err != nil {
			failed = err
		}
	}
	// Open: w packets sealed with distinct sequence numbers, copied
	// into per-slot buffers before each window (outside the timed span).
	ring := make([][]byte, w)
	slots := make([][]byte, w)
	at := esp.MaxHeadroom - c.HeaderLen()
	for i := range ring {
		b := payloadBuf(n, seed)
		pkt, err := c.Seal(s, b, esp.MaxHeadroom, n, benchSPI, uint64(i+1), benchNH)
		if err != nil {
			return nil, err
		}
		ring[i] = append([]byte(nil), pkt...)
		slots[i] = payloadBuf(n, seed)[at : at+len(pkt)]
		copy(slots[i], ring[i])
		if p, nh, err := c.Open(s, slots[i], uint64(i+1)); err != nil || nh != benchNH || len(p) != n {
			return nil, fmt.Errorf("harness: %s: warm-up Open: len %d nh %d: %v", c.Transform().Name(), len(p), nh, err)
		}
	}
	openAt := func(i int) {
		if _, _, err := c.Open(s, slots[i], uint64(i+1)); err != nil {
			failed = err
		}
	}
	cs := &cryptoSide{
		seal: func(k int) time.Duration {
			t0 := time.Now()
			for range k {
				sealOne()
			}
			return time.Since(t0)
		},
		open: func(k int) time.Duration {
			for i := range k {
				copy(slots[i], ring[i])
			}
			t0 := time.Now()
			for i := range k {
				openAt(i)
			}
			return time.Since(t0)
		},
		sealOne: sealOne,
		openOne: func() { copy(slots[0], ring[0]); openAt(0) },
		err:     func() error { return failed },
	}
	return cs, nil
}

// rawSide sets up the baseline r for payload n, with the packet length
// our Cipher c produces.
func rawSide(r raw, c *esp.Cipher, n, w int, seed uint64) (*cryptoSide, error) {
	body := n + c.Overhead(n) - c.HeaderLen() - c.Transform().ICVLen()
	pktOf := func(b []byte) []byte {
		return b[esp.MaxHeadroom-r.hdrLen() : esp.MaxHeadroom+body+r.icvLen()]
	}
	pkt := pktOf(payloadBuf(n, seed))
	seq := uint64(1)
	r.seal(pkt, seq)
	ring := make([][]byte, w)
	slots := make([][]byte, w)
	for i := range ring {
		p := pktOf(payloadBuf(n, seed))
		r.seal(p, uint64(i+1))
		ring[i] = append([]byte(nil), p...)
		slots[i] = pktOf(payloadBuf(n, seed))
		copy(slots[i], ring[i])
		if !r.open(slots[i], uint64(i+1)) {
			return nil, fmt.Errorf("harness: %s: baseline open failed", c.Transform().Name())
		}
	}
	return &cryptoSide{
		seal: func(k int) time.Duration {
			t0 := time.Now()
			for range k {
				seq++
				r.seal(pkt, seq)
			}
			return time.Since(t0)
		},
		open: func(k int) time.Duration {
			for i := range k {
				copy(slots[i], ring[i])
			}
			t0 := time.Now()
			for i := range k {
				r.open(slots[i], uint64(i+1))
			}
			return time.Since(t0)
		},
	}, nil
}

// solo times a alone in windows of w packets for budget and returns the
// median ns per packet and the number of packets.
func solo(w int, budget time.Duration, a func(w int) time.Duration) (float64, int) {
	clock := clockCost()
	var v []float64
	start := time.Now()
	for k := 0; k < 16 || time.Since(start) < budget; k++ {
		v = append(v, max(float64(a(w).Nanoseconds())-clock, 0)/float64(w))
	}
	return median(v), len(v) * w
}

// Crypto measures Seal and Open of transform name at payload size n,
// interleaved with the raw baseline when there is one.
func Crypto(name string, n int, budget time.Duration, seed uint64) ([]Result, error) {
	t, err := esp.ParseTransform(name)
	if err != nil {
		return nil, err
	}
	key, auth := keys(t, seed)
	c, err := esp.New(esp.Config{Transform: t, Key: key, AuthKey: auth})
	if err != nil {
		return nil, err
	}
	w := window(n)
	ours, err := oursSide(c, n, w, seed)
	if err != nil {
		return nil, err
	}
	r, err := newRaw(t, seed)
	if err != nil {
		return nil, err
	}
	var base *cryptoSide
	if r != nil {
		if base, err = rawSide(r, c, n, w, seed); err != nil {
			return nil, err
		}
	}
	var out []Result
	for _, op := range []string{"seal", "open"} {
		a, one := ours.seal, ours.sealOne
		if op == "open" {
			a, one = ours.open, ours.openOne
		}
		res := Result{Suite: "crypto", Kind: KindCrypto, Transform: name, Op: op, Size: n}
		var ns float64
		var pk int
		if base != nil {
			b := base.seal
			if op == "open" {
				b = base.open
			}
			p := interleave(w, budget, a, b)
			ns, pk = p.aNs, p.packets
			res.add("ns/pkt", ns, UnitNs)
			res.add("raw-ns/pkt", p.bNs, UnitNs)
			if p.bNs > 0 {
				res.add("raw-MB/s", float64(n)*1e3/p.bNs, UnitMBps)
			}
			res.add("x-raw", p.ratio, UnitRatio)
			res.add("ns-over-raw", p.delta, UnitNs)
		} else {
			ns, pk = solo(w, budget, a)
			res.add("ns/pkt", ns, UnitNs)
		}
		if ns > 0 {
			res.add("MB/s", float64(n)*1e3/ns, UnitMBps)
		}
		res.add("allocs/op", allocsPer(200, one), UnitAllocs)
		res.add("packets", float64(pk), UnitPackets)
		out = append(out, res)
	}
	if err := ours.err(); err != nil {
		return nil, fmt.Errorf("harness: %s/%d: %w", name, n, err)
	}
	return out, nil
}
