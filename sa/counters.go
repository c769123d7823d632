package sa

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Per-SA counters, in the order of ctrBlock.v.
const (
	cEncPkts = iota
	cEncBytes
	cDecPkts
	cDecBytes
	cDecrypt
	cVerify
	cDrop // cDrop + DropReason
	nCtr  = cDrop + int(NumDropReasons)
)

// ctrBlock is one worker's counters for one SA, alone on its cache
// lines: the worker that owns it is the only writer, readers sum all
// blocks.
type ctrBlock struct {
	v [nCtr]atomic.Uint64
	_ [(cacheLine - (nCtr*8)%cacheLine) % cacheLine]byte
}

var _ [0]struct{} = [unsafe.Sizeof(ctrBlock{}) % cacheLine]struct{}{}

// ctrTable holds an SA's per-worker counter blocks. Both the table and
// each block are allocated on first use, so that idle SAs (a SAD of a
// million) cost one pointer.
type ctrTable struct {
	blocks []atomic.Pointer[ctrBlock]
}

// stripes is the number of counter blocks per SA: one per CPU, as a
// power of two; workers beyond it share blocks (atomically).
var stripes = func() int {
	n := 1
	for n < runtime.GOMAXPROCS(0) && n < 256 {
		n <<= 1
	}
	return n
}()

// block returns worker w's counter block for s.
func (s *SA) block(w int) *ctrBlock {
	t := s.ctrs.Load()
	if t == nil {
		nt := &ctrTable{blocks: make([]atomic.Pointer[ctrBlock], stripes)}
		if !s.ctrs.CompareAndSwap(nil, nt) {
			t = s.ctrs.Load()
		} else {
			t = nt
		}
	}
	p := &t.blocks[w&(len(t.blocks)-1)]
	b := p.Load()
	if b == nil {
		nb := new(ctrBlock)
		if p.CompareAndSwap(nil, nb) {
			return nb
		}
		b = p.Load()
	}
	return b
}

// run accumulates, without atomics, what a worker does to one SA during
// a run of consecutive packets; flush adds it to the SA.
type run struct {
	sa    *SA
	at    *attrs // sa's mutable attributes, loaded once per run
	v     [nCtr]uint64
	pkts  uint64 // lifetime accounting
	bytes uint64
	top   uint64 // highest sequence number accepted (inbound)
	dirty bool
}

func (r *run) drop(reason DropReason) {
	r.v[cDrop+int(reason)]++
	r.dirty = true
}

// procCounters are a worker's processor-level counters.
const (
	pInPkts = iota
	pInOK
	pOutPkts
	pOutOK
	pControl
	pBypass
	pHandedOff
	pDrop
	nPCtr = pDrop + int(NumDropReasons)
)

type procBlock struct {
	v [nPCtr]atomic.Uint64
	_ [(cacheLine - (nPCtr*8)%cacheLine) % cacheLine]byte
}

// ownerHash mixes an SPI for the owner computation of the Sharded and
// PerCPU modes: owner = ownerHash(spi) % workers. It is the lowbias32
// finaliser that the XDP steering program (package bpf, SPIHash) hashes
// SPIs with, so that a packet steered to socket slot
// bpf.SPIHashSlot(spi, workers) lands on the worker that owns its SA.
// Invariant: OwnerOf(spi) == bpf.SPIHashSlot(spi, workers) for every
// unpinned SA (TestOwnerMatchesSteering in package xdp).
func ownerHash(spi uint32) uint32 {
	x := spi
	x ^= x >> 16
	x *= 0x7feb352d
	x ^= x >> 15
	x *= 0x846ca68b
	x ^= x >> 16
	return x
}
