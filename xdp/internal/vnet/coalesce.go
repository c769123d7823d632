package vnet

import (
	"bytes"
	"encoding/binary"

	"github.com/espxdp/espxdp/internal/inet"
)

// MaxPackets is the most packets one Coalescer batch holds.
const MaxPackets = 256

// MaxGroupSegments is the most packets the Coalescer merges into one
// super-packet.
const MaxGroupSegments = 64

// maxIPLen is the largest IP packet (IPv4 total length; a coalesced
// IPv6 super-packet is held to the same total).
const maxIPLen = 65535

// flowTableSize is the size of the open-addressing flow table (a power
// of two, twice MaxPackets so probes stay short).
const flowTableSize = 2 * MaxPackets

// Packet kinds after parsing.
const (
	kindOther   = iota // not TCP: no effect on any group
	kindUnknown        // may be TCP but its flow cannot be read: closes every open group
	kindFlow           // TCP with a readable flow, not mergeable: closes its flow's group
	kindMerge          // TCP that may join a group
)

// pktInfo is what Add learnt about one packet.
type pktInfo struct {
	kind    uint8
	v6      bool
	flags   uint8
	ipLen   uint16 // IP header length
	hdrLen  uint16 // IP + TCP header length
	payload uint16 // TCP payload length
	id      uint16 // IPv4 ID
	seq     uint32
	hash    uint32 // flow hash (kindFlow, kindMerge)
	next    int16  // next packet of its group, -1: last
}

// group is one write: a packet alone, or a super-packet.
type group struct {
	first, last int  // packet indices
	n           int  // packets
	total       int  // IP length of the super-packet
	start       int  // Finish: position of its indices in order
	epoch       int  // open only while epoch == Coalescer.epoch
	closed      bool // takes no more packets
	hdr         Hdr  // Finish: the header of the write
}

// Coalescer groups the packets of one batch to be written to a TUN into
// super-packets (TCP over IPv4 and IPv6 without extension headers);
// everything else is a write of its own. The zero value is ready to use;
// it holds up to MaxPackets packets in fixed arrays and never allocates.
// It is not safe for concurrent use.
//
// Use: Reset, Add each packet of the batch, Finish, then for i in
// [0, Writes()) write Write(i) as one write(2)/writev(2).
//
// A packet joins the group of the previous packet of its flow (same IP
// version, addresses and ports) only if, like Linux GRO would merge it:
//   - IPv4: header length 20, total length == packet length, header
//     checksum valid (and not 0xffff where 0 is meant), no fragment
//     (MF, offset, reserved bit clear), the same TOS, TTL and DF bit as
//     the group's first, and ID == the previous ID + 1 (so the kernel's
//     split, which numbers segments from the first ID, rebuilds it);
//   - IPv6: next header TCP (no extension headers), payload length ==
//     packet length - 40, the same first 4 bytes (traffic class, flow
//     label) and hop limit as the group's first;
//   - TCP: checksum valid over pseudo-header and segment (and not 0xffff
//     where 0 is meant); the same header length, data-offset byte,
//     option bytes, ACK number, window and urgent pointer as the first;
//     flags exactly ACK, or ACK|PSH (the packet then closes the group),
//     or ACK|CWR only on a group's first packet; no SYN, FIN, RST, URG
//     or ECE; payload > 0 and seq == the previous seq + its payload;
//   - sizes: every payload equals the first's except the last, which may
//     be shorter and then closes the group; the super-packet's IP length
//     stays <= 65535 and the group <= MaxGroupSegments packets.
//
// Anything else is written alone with an all-zero Hdr, untouched; if it
// is TCP of a flow, that flow's open group is closed first (a later
// packet of the flow starts a new group), and a packet that may be TCP
// but whose flow cannot be read (an IPv4 fragment or truncated header,
// IPv6 extension headers) closes every open group. So groups merge only
// packets consecutive within their flow, and writes come in the order of
// their first packet: each flow's packets leave in Add order, while
// packets of different flows may leave in another order than added (a
// super-packet goes where its first packet was).
//
// Finish rewrites, in place, the headers of each group's first packet
// (see Finish); Write describes each write.
type Coalescer struct {
	pkts   [MaxPackets][]byte
	info   [MaxPackets]pktInfo
	groups [MaxPackets]group
	order  [MaxPackets]int
	table  [flowTableSize]int16 // group index + 1 of a flow's latest group; 0: empty
	np     int                  // packets added
	ng     int                  // groups
	epoch  int
	done   bool
}

// Reset empties c for a new batch.
func (c *Coalescer) Reset() {
	for i := range c.np {
		c.pkts[i] = nil
	}
	c.np, c.ng, c.epoch, c.done = 0, 0, 0, false
}

// Add adds pkt (an IP packet) as the next packet of the batch; its index
// is the number of Adds before it since Reset. It returns false, adding
// nothing, if the batch is full (MaxPackets) or already finished: the
// caller writes what it has first. pkt is not copied; Finish may rewrite
// its headers.
func (c *Coalescer) Add(pkt []byte) bool {
	if c.np >= MaxPackets || c.done {
		return false
	}
	c.pkts[c.np] = pkt
	c.info[c.np] = parse(pkt)
	c.np++
	return true
}

// parse classifies p.
func parse(p []byte) pktInfo {
	inf := pktInfo{kind: kindOther, next: -1}
	if len(p) < 1 {
		return inf
	}
	var ipLen int
	switch p[0] >> 4 {
	case 4:
		if len(p) < 20 || p[9] != protoTCP {
			return inf
		}
		ipLen = int(p[0]&0x0f) * 4
		if ipLen < 20 || ipLen+4 > len(p) || binary.BigEndian.Uint16(p[6:])&0x1fff != 0 {
			inf.kind = kindUnknown
			return inf
		}
		inf.id = binary.BigEndian.Uint16(p[4:])
	case 6:
		if len(p) < 40 {
			return inf
		}
		switch p[6] {
		case protoTCP:
		case 0, 43, 44, 51, 60, 135, 139, 140, 253, 254: // extension headers
			inf.kind = kindUnknown
			return inf
		default:
			return inf
		}
		ipLen = 40
		if len(p) < 44 {
			inf.kind = kindUnknown
			return inf
		}
		inf.v6 = true
	default:
		return inf
	}
	inf.kind = kindFlow
	inf.ipLen = uint16(ipLen)
	inf.hash = flowHash(p, inf.v6, ipLen)
	if !mergeable(p, inf.v6, ipLen) {
		return inf
	}
	tcp := p[ipLen:]
	doff := int(tcp[12]>>4) * 4
	inf.flags = tcp[13]
	inf.seq = binary.BigEndian.Uint32(tcp[4:])
	inf.hdrLen = uint16(ipLen + doff)
	inf.payload = uint16(len(p) - ipLen - doff)
	inf.kind = kindMerge
	return inf
}

// mergeable reports whether the TCP packet p (flow readable) meets the
// per-packet conditions to be part of a super-packet. Invariant: false
// for any packet whose IPv4 header or TCP checksum does not verify.
func mergeable(p []byte, v6 bool, ipLen int) bool {
	if v6 {
		if int(binary.BigEndian.Uint16(p[4:]))+40 != len(p) {
			return false
		}
	} else {
		if ipLen != 20 || int(binary.BigEndian.Uint16(p[2:])) != len(p) ||
			binary.BigEndian.Uint16(p[6:])&^0x4000 != 0 { // only DF may be set
			return false
		}
		if hc := binary.BigEndian.Uint16(p[10:]); hc == 0xffff || hc != ipv4HdrChecksum(p[:20]) {
			return false
		}
	}
	tcp := p[ipLen:]
	if len(tcp) < 20 {
		return false
	}
	doff := int(tcp[12]>>4) * 4
	if doff < 20 || doff >= len(tcp) { // payload > 0
		return false
	}
	switch tcp[13] {
	case tcpACK, tcpACK | tcpPSH, tcpACK | tcpCWR, tcpACK | tcpCWR | tcpPSH:
	default:
		return false
	}
	// The checksum verifies when the sum over pseudo-header and segment
	// is 0xffff; a field of 0xffff verifies where 0 is the checksum but
	// the split would write 0: not taken, so the round trip is exact.
	if binary.BigEndian.Uint16(tcp[16:]) == 0xffff {
		return false
	}
	acc := inet.AddWord(pseudoAddrs(p, v6, protoTCP), uint64(len(tcp)))
	return inet.Fold(inet.Add(acc, tcp)) == 0xffff
}

// flowHash hashes the addresses and ports of p.
func flowHash(p []byte, v6 bool, ipLen int) uint32 {
	var h uint32 = 2166136261
	mix := func(w uint32) {
		h ^= w
		h *= 16777619
		h ^= h >> 15
	}
	if v6 {
		for o := 8; o < 40; o += 4 {
			mix(binary.BigEndian.Uint32(p[o:]))
		}
	} else {
		mix(binary.BigEndian.Uint32(p[12:]))
		mix(binary.BigEndian.Uint32(p[16:]))
	}
	mix(binary.BigEndian.Uint32(p[ipLen:]))
	return h
}

// sameFlow reports whether packets a and b (both with a readable flow)
// have the same IP version, addresses and ports.
func (c *Coalescer) sameFlow(a, b int) bool {
	ia, ib := &c.info[a], &c.info[b]
	if ia.v6 != ib.v6 || ia.hash != ib.hash {
		return false
	}
	pa, pb := c.pkts[a], c.pkts[b]
	if ia.v6 {
		if !bytes.Equal(pa[8:40], pb[8:40]) {
			return false
		}
	} else if !bytes.Equal(pa[12:20], pb[12:20]) {
		return false
	}
	return bytes.Equal(pa[ia.ipLen:ia.ipLen+4], pb[ib.ipLen:ib.ipLen+4])
}

// slot returns the flow table slot of packet p's flow: the one holding
// its flow's latest group, or the empty one where it goes.
func (c *Coalescer) slot(p int) int {
	mask := flowTableSize - 1
	for j := int(c.info[p].hash) & mask; ; j = (j + 1) & mask {
		g := int(c.table[j]) - 1
		if g < 0 || c.sameFlow(c.groups[g].first, p) {
			return j
		}
	}
}

// fits reports whether packet p may join group g as its next packet.
func (c *Coalescer) fits(g *group, p int) bool {
	if g.closed || g.epoch != c.epoch || g.n >= MaxGroupSegments {
		return false
	}
	ip, fi, li := &c.info[p], &c.info[g.first], &c.info[g.last]
	if ip.kind != kindMerge || fi.kind != kindMerge {
		return false
	}
	if ip.flags&tcpCWR != 0 || ip.payload > fi.payload || ip.hdrLen != fi.hdrLen ||
		ip.seq != li.seq+uint32(li.payload) || g.total+int(ip.payload) > maxIPLen {
		return false
	}
	pp, fp := c.pkts[p], c.pkts[g.first]
	if ip.v6 {
		if !bytes.Equal(pp[:4], fp[:4]) || pp[7] != fp[7] {
			return false
		}
	} else {
		if ip.id != li.id+1 || pp[1] != fp[1] || pp[8] != fp[8] || pp[6] != fp[6] {
			return false
		}
	}
	// TCP: ack (4), data offset byte (12), window (14:16), urgent
	// pointer (18:20) and options (20:) as the first's.
	pt, ft := pp[ip.ipLen:ip.hdrLen], fp[fi.ipLen:fi.hdrLen]
	return bytes.Equal(pt[8:13], ft[8:13]) && bytes.Equal(pt[14:16], ft[14:16]) &&
		bytes.Equal(pt[18:], ft[18:])
}

// Finish plans the writes: it groups the packets (see Coalescer) and
// rewrites, IN PLACE, the headers of the first packet of each group of
// more than one: IPv4 total length and header checksum, or IPv6 payload
// length, for the whole super-packet; PSH if the group's last packet had
// it; the TCP checksum field set to the folded pseudo-header sum over the
// super-packet's TCP length, not complemented (CHECKSUM_PARTIAL). That
// write's Hdr is {Flags: FlagNeedsCsum, GSOType: GSOTCPv4 or GSOTCPv6
// (|GSOECN if the first has CWR), HdrLen: IP+TCP header length, GSOSize:
// the first's payload, CsumStart: IP header length, CsumOffset: 16}. A
// group of one is written with an all-zero Hdr, unchanged. Finish runs
// once per batch; later calls do nothing.
func (c *Coalescer) Finish() {
	if c.done {
		return
	}
	c.done = true
	clear(c.table[:])
	for p := range c.np {
		c.place(p)
	}
	pos := 0
	for gi := range c.ng {
		g := &c.groups[gi]
		g.start = pos
		for p := g.first; p >= 0; p = int(c.info[p].next) {
			c.order[pos] = p
			pos++
		}
		if g.n > 1 {
			c.rewrite(g)
		}
	}
}

// place puts packet p into a group. Invariants kept here: a packet joins
// only the latest group of its own flow, and only while that group is
// open; any packet of the flow that does not join closes it (the flow's
// table entry moves to the packet's own group), and a packet whose flow
// cannot be read closes all (epoch). So every group's packets are
// consecutive within their flow, and ordering writes by their first
// packet keeps each flow in Add order. Only kindMerge packets (checksums
// verified by mergeable) ever join or open a group that others join.
func (c *Coalescer) place(p int) {
	inf := &c.info[p]
	slot := -1
	switch inf.kind {
	case kindUnknown:
		c.epoch++ // closes every open group
	case kindFlow, kindMerge:
		slot = c.slot(p)
		if gi := int(c.table[slot]) - 1; gi >= 0 {
			g := &c.groups[gi]
			if c.fits(g, p) {
				c.info[g.last].next = int16(p)
				g.last = p
				g.n++
				g.total += int(inf.payload)
				if inf.flags&tcpPSH != 0 || inf.payload < c.info[g.first].payload || g.n >= MaxGroupSegments {
					g.closed = true
				}
				return
			}
		}
	}
	gi := c.ng
	c.ng++
	c.groups[gi] = group{
		first:  p,
		last:   p,
		n:      1,
		total:  len(c.pkts[p]),
		epoch:  c.epoch,
		closed: inf.kind != kindMerge || inf.flags&tcpPSH != 0,
	}
	if slot >= 0 {
		c.table[slot] = int16(gi + 1)
	}
}

// rewrite turns the first packet of g into the head of its super-packet
// and sets g.hdr.
func (c *Coalescer) rewrite(g *group) {
	p := c.pkts[g.first]
	fi, li := &c.info[g.first], &c.info[g.last]
	ipLen := int(fi.ipLen)
	gsoType := uint8(GSOTCPv4)
	if fi.v6 {
		gsoType = GSOTCPv6
		binary.BigEndian.PutUint16(p[4:], uint16(g.total-40))
	} else {
		binary.BigEndian.PutUint16(p[2:], uint16(g.total))
		binary.BigEndian.PutUint16(p[10:], ipv4HdrChecksum(p[:20]))
	}
	tcp := p[ipLen:]
	if li.flags&tcpPSH != 0 {
		tcp[13] |= tcpPSH
	}
	if tcp[13]&tcpCWR != 0 {
		gsoType |= GSOECN
	}
	sum := inet.Fold(inet.AddWord(pseudoAddrs(p, fi.v6, protoTCP), uint64(g.total-ipLen)))
	binary.BigEndian.PutUint16(tcp[16:], sum)
	g.hdr = Hdr{
		Flags:      FlagNeedsCsum,
		GSOType:    gsoType,
		HdrLen:     fi.hdrLen,
		GSOSize:    fi.payload,
		CsumStart:  uint16(ipLen),
		CsumOffset: 16,
	}
}

// Writes returns the number of writes Finish planned (0 before Finish).
func (c *Coalescer) Writes() int {
	if !c.done {
		return 0
	}
	return c.ng
}

// Write returns write i (0 <= i < Writes(); else zero values): h encoded
// (HdrLen bytes), then packet idx[0] whole, then packets idx[1:] each
// from byte skip (their IP+TCP header length) on. idx is in sequence
// order, aliases c and is valid until the next Reset. skip is 0 for a
// write of one packet. Writes come in the order of their first packet.
func (c *Coalescer) Write(i int) (h Hdr, idx []int, skip int) {
	if i < 0 || i >= c.Writes() {
		return Hdr{}, nil, 0
	}
	g := &c.groups[i]
	idx = c.order[g.start : g.start+g.n : g.start+g.n]
	if g.n > 1 {
		skip = int(c.info[g.first].hdrLen)
	}
	return g.hdr, idx, skip
}
