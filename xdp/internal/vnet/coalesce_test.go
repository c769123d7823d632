package vnet

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// coalesceResult is what checkCoalesce saw.
type coalesceResult struct {
	writes int
	groups []int // sizes of the writes
	order  []int // packet indices in the order they leave
}

// flowKey returns a key of p's TCP flow (version, addresses, ports) and
// whether p is a TCP packet whose flow can be read.
func flowKey(p []byte) (string, bool) {
	if len(p) < 20 {
		return "", false
	}
	switch p[0] >> 4 {
	case 4:
		ihl := int(p[0]&0xf) * 4
		if p[9] != protoTCP || ihl < 20 || ihl+4 > len(p) || binary.BigEndian.Uint16(p[6:])&0x1fff != 0 {
			return "", false
		}
		return string(p[12:20]) + string(p[ihl:ihl+4]), true
	case 6:
		if len(p) < 44 || p[6] != protoTCP {
			return "", false
		}
		return string(p[8:40]) + string(p[40:44]), true
	}
	return "", false
}

// checkCoalesce runs the Coalescer on copies of in and checks its
// invariants:
//   - every packet is in exactly one write; writes come in the order of
//     their first packet; each flow's packets leave in Add order;
//   - a write of one packet has an all-zero Hdr and the packet unchanged;
//   - a write of several: every packet in it had valid IPv4 header and
//     TCP checksums; the materialized write (Hdr, packet idx[0], the
//     others from skip on), split by Splitter, gives back exactly the
//     packets of the write; its checksum finished as the kernel would
//     (NEEDS_CSUM) verifies.
func checkCoalesce(t testing.TB, in [][]byte) coalesceResult {
	t.Helper()
	var c Coalescer
	var res coalesceResult
	c.Reset()
	cp := make([][]byte, len(in))
	for i, p := range in {
		cp[i] = append([]byte(nil), p...)
		if !c.Add(cp[i]) {
			t.Fatalf("Add %d refused", i)
		}
	}
	if c.Writes() != 0 {
		t.Fatal("Writes before Finish")
	}
	c.Finish()
	seen := make([]bool, len(in))
	prevFirst := -1
	var s Splitter
	dst := make([]byte, 70000)
	for w := range c.Writes() {
		h, idx, skip := c.Write(w)
		if len(idx) == 0 || idx[0] <= prevFirst {
			t.Fatalf("write %d: indices %v after first %d", w, idx, prevFirst)
		}
		prevFirst = idx[0]
		for _, i := range idx {
			if seen[i] {
				t.Fatalf("packet %d written twice", i)
			}
			seen[i] = true
		}
		res.order = append(res.order, idx...)
		res.groups = append(res.groups, len(idx))
		if len(idx) == 1 {
			if h != (Hdr{}) || !bytes.Equal(cp[idx[0]], in[idx[0]]) {
				t.Fatalf("write %d of one packet: hdr %+v, packet changed %v", w, h, !bytes.Equal(cp[idx[0]], in[idx[0]]))
			}
			continue
		}
		buf := make([]byte, HdrLen)
		h.Encode(buf)
		buf = append(buf, cp[idx[0]]...)
		for _, i := range idx[1:] {
			if skip <= 0 || skip > len(cp[i]) {
				t.Fatalf("write %d: skip %d", w, skip)
			}
			buf = append(buf, cp[i][skip:]...)
		}
		for _, i := range idx {
			if _, proto, valid, ok := refL4(in[i]); !ok || !valid || proto != protoTCP {
				t.Fatalf("write %d: packet %d (bad checksum or not TCP) coalesced", w, i)
			}
		}
		hh, err := DecodeHdr(buf)
		if err != nil || hh.Flags != FlagNeedsCsum || hh.CsumOffset != 16 || int(hh.HdrLen) != skip {
			t.Fatalf("write %d: header %+v, %v", w, hh, err)
		}
		if err := s.Reset(hh, buf[HdrLen:]); err != nil {
			t.Fatalf("write %d: Splitter refuses the super-packet: %v", w, err)
		}
		if s.Remaining() != len(idx) {
			t.Fatalf("write %d: splits into %d packets, holds %d", w, s.Remaining(), len(idx))
		}
		for k, i := range idx {
			n, err := s.Next(dst)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dst[:n], in[i]) {
				t.Fatalf("write %d: segment %d differs from packet %d:\n got % x\nwant % x", w, k, i, dst[:n], in[i])
			}
		}
		// The kernel finishing the partial checksum of the super-packet.
		if err := s.Reset(Hdr{Flags: FlagNeedsCsum, CsumStart: hh.CsumStart, CsumOffset: 16}, buf[HdrLen:]); err != nil {
			t.Fatal(err)
		}
		n, _ := s.Next(dst)
		if _, _, valid, ok := refL4(dst[:n]); !ok || !valid {
			t.Fatalf("write %d: the finished super-packet's checksums do not verify", w)
		}
	}
	for i, ok := range seen {
		if !ok {
			t.Fatalf("packet %d never written", i)
		}
	}
	last := map[string]int{}
	for _, i := range res.order {
		if k, ok := flowKey(in[i]); ok {
			if j, ok := last[k]; ok && j > i {
				t.Fatalf("packet %d of a flow leaves after its packet %d", j, i)
			}
			last[k] = i
		}
	}
	res.writes = c.Writes()
	return res
}

// stream returns n consecutive full-size ACK segments of one flow.
func stream(t testing.TB, v6 bool, n, mss int, opts bool) [][]byte {
	var out [][]byte
	seq, id := uint32(1000), uint16(7)
	for range n {
		out = append(out, build(t, pkt{v6: v6, sport: 1000, dport: 2000, id: id, seq: seq, ack: 55, flags: tcpACK, win: 300, opts: opts, tsval: 1, payload: payloadOf(mss, int(seq))}))
		seq += uint32(mss)
		id++
	}
	return out
}

func TestCoalesceStream(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		in := stream(t, v6, 44, 1448, true)
		in[43] = build(t, pkt{v6: v6, sport: 1000, dport: 2000, id: 7 + 43, seq: 1000 + 43*1448, ack: 55, flags: tcpACK | tcpPSH, win: 300, opts: true, tsval: 1, payload: payloadOf(100, 1000+43*1448)})
		var c Coalescer
		c.Reset()
		for _, p := range in {
			c.Add(append([]byte(nil), p...))
		}
		c.Finish()
		if c.Writes() != 1 {
			t.Fatalf("v6 %v: %d writes, want 1", v6, c.Writes())
		}
		h, idx, skip := c.Write(0)
		ipLen := 20
		typ := uint8(GSOTCPv4)
		if v6 {
			ipLen, typ = 40, GSOTCPv6
		}
		want := Hdr{Flags: FlagNeedsCsum, GSOType: typ, HdrLen: uint16(ipLen + 32), GSOSize: 1448, CsumStart: uint16(ipLen), CsumOffset: 16}
		if h != want || len(idx) != 44 || skip != ipLen+32 {
			t.Fatalf("write: %+v %d packets skip %d; want %+v", h, len(idx), skip, want)
		}
		head := c.pkts[idx[0]]
		total := ipLen + 32 + 43*1448 + 100
		if v6 && int(binary.BigEndian.Uint16(head[4:])) != total-40 ||
			!v6 && (int(binary.BigEndian.Uint16(head[2:])) != total || refSum(head[:20], 0) != 0xffff) {
			t.Fatal("super-packet IP header not rewritten")
		}
		if head[ipLen+13] != tcpACK|tcpPSH {
			t.Fatalf("super-packet flags %#x, want ACK|PSH", head[ipLen+13])
		}
		if got := uint32(binary.BigEndian.Uint16(head[ipLen+16:])); got != refPseudo(head, protoTCP, total-ipLen) {
			t.Fatalf("super-packet checksum field %#x, want the pseudo-header sum %#x", got, refPseudo(head, protoTCP, total-ipLen))
		}
		checkCoalesce(t, in)
	}
}

func TestCoalesceLimits(t *testing.T) {
	// 65535 bytes: 44 segments of 1460 (+40 bytes of headers) fit, 45 not.
	r := checkCoalesce(t, stream(t, false, 50, 1460, false))
	if len(r.groups) != 2 || r.groups[0] != 44 || r.groups[1] != 6 {
		t.Fatalf("groups %v, want [44 6]", r.groups)
	}
	r = checkCoalesce(t, stream(t, true, 100, 100, false))
	if len(r.groups) != 2 || r.groups[0] != MaxGroupSegments || r.groups[1] != 100-MaxGroupSegments {
		t.Fatalf("groups %v, want [64 36]", r.groups)
	}
}

func TestCoalesceBadChecksumAlone(t *testing.T) {
	in := stream(t, false, 10, 1000, false)
	bad := append([]byte(nil), in[4]...)
	bad[len(bad)-1] ^= 1 // payload corrupted: checksum no longer verifies
	in[4] = bad
	r := checkCoalesce(t, in)
	if len(r.groups) != 3 || r.groups[0] != 4 || r.groups[1] != 1 || r.groups[2] != 5 {
		t.Fatalf("groups %v, want [4 1 5]", r.groups)
	}
	// A bad IPv4 header checksum likewise.
	in = stream(t, false, 3, 1000, false)
	in[1] = append([]byte(nil), in[1]...)
	in[1][10] ^= 0x10
	r = checkCoalesce(t, in)
	if len(r.groups) != 3 {
		t.Fatalf("groups %v, want [1 1 1]", r.groups)
	}
}

func TestCoalesceInterleavedFlows(t *testing.T) {
	a := stream(t, false, 3, 500, false)
	b := stream(t, true, 3, 500, false)
	udp := build(t, pkt{udp: true, sport: 1000, dport: 2000, payload: payloadOf(10, 0)})
	in := [][]byte{a[0], b[0], udp, a[1], b[1], a[2], b[2]}
	r := checkCoalesce(t, in)
	if len(r.groups) != 3 || r.groups[0] != 3 || r.groups[1] != 3 || r.groups[2] != 1 {
		t.Fatalf("groups %v, want [3 3 1]", r.groups)
	}
	// An IPv4 fragment may be TCP of any flow: it closes every group.
	frag := append([]byte(nil), udp...)
	frag[9] = protoTCP
	binary.BigEndian.PutUint16(frag[6:], 100)
	in = [][]byte{a[0], b[0], a[1], frag, b[1], a[2], b[2]}
	r = checkCoalesce(t, in)
	if len(r.groups) != 5 || r.groups[0] != 2 || r.groups[1] != 1 || r.groups[2] != 1 || r.groups[3] != 2 || r.groups[4] != 1 {
		t.Fatalf("groups %v, want [2 1 1 2 1]", r.groups)
	}
}

func TestCoalesceAddLimits(t *testing.T) {
	var c Coalescer
	p := stream(t, false, 1, 10, false)[0]
	for i := range MaxPackets {
		if !c.Add(p) {
			t.Fatalf("Add %d refused", i)
		}
	}
	if c.Add(p) {
		t.Fatal("Add past MaxPackets accepted")
	}
	c.Finish()
	if c.Writes() != MaxPackets { // the same segment again and again: no seq continuity
		t.Fatalf("%d writes", c.Writes())
	}
	c.Reset()
	c.Add(p)
	c.Finish()
	if c.Add(p) {
		t.Fatal("Add after Finish accepted")
	}
	if h, idx, skip := c.Write(1); h != (Hdr{}) || idx != nil || skip != 0 {
		t.Fatal("Write out of range returned something")
	}
}

// genFlows makes a random batch of up to max packets of 1-4 TCP flows,
// randomly interleaved, with occasional bad checksums, PSH, CWR, FIN,
// ACK and window changes, ID jumps, seq gaps, short segments, UDP
// packets and fragments.
func genFlows(t testing.TB, rng *rand.Rand, max int) [][]byte {
	type flow struct {
		p   pkt
		mss int
	}
	flows := make([]flow, 1+rng.IntN(4))
	for i := range flows {
		f := &flows[i]
		f.p = pkt{v6: rng.IntN(2) == 0, sport: uint16(1000 + i), dport: 443, id: uint16(rng.Uint32()),
			seq: rng.Uint32(), ack: rng.Uint32(), flags: tcpACK, win: uint16(rng.Uint32()), opts: rng.IntN(2) == 0,
			tsval: rng.Uint32(), tos: uint8(rng.IntN(2)) * 4, flow: rng.Uint32() & 0xfffff}
		f.mss = 1 + rng.IntN(1460)
		if rng.IntN(3) == 0 {
			f.mss = 1 + rng.IntN(64)
		}
	}
	n := 1 + rng.IntN(max)
	out := make([][]byte, 0, n)
	cur := 0
	for len(out) < n {
		if rng.IntN(4) == 0 {
			cur = rng.IntN(len(flows))
		}
		f := &flows[cur]
		p := f.p
		size := f.mss
		switch r := rng.IntN(100); {
		case r < 8:
			size = 1 + rng.IntN(f.mss)
		case r < 10:
			size = 0
		}
		switch r := rng.IntN(100); {
		case r < 5:
			p.flags |= tcpPSH
		case r < 8:
			p.flags |= tcpCWR
		case r < 9:
			p.flags |= tcpFIN
		case r < 10:
			p.flags |= tcpECE
		}
		switch r := rng.IntN(100); {
		case r < 4:
			f.p.ack += uint32(rng.IntN(5000))
			p.ack = f.p.ack
		case r < 6:
			f.p.win++
			p.win = f.p.win
		case r < 8:
			f.p.id += uint16(rng.IntN(3))
			p.id = f.p.id
		case r < 10:
			f.p.seq += uint32(rng.IntN(3000))
			p.seq = f.p.seq
		case r < 11:
			f.p.tsval++
			p.tsval = f.p.tsval
		case r < 12:
			p.ttl = 3
		case r < 16:
			p.badL4Csum = true
		}
		p.payload = make([]byte, size)
		for i := range p.payload {
			p.payload[i] = byte(rng.Uint32())
		}
		b := build(t, p)
		switch r := rng.IntN(100); {
		case r < 2 && !p.v6: // a fragment (header checksum left wrong)
			binary.BigEndian.PutUint16(b[6:], uint16(1+rng.IntN(100)))
		case r < 3 && p.v6: // an extension header
			b[6] = 0
		case r < 5: // a UDP packet of the flow's addresses
			u := p
			u.udp = true
			b = build(t, u)
		case r < 6 && !p.v6: // IPv4 bad header checksum
			b[10] ^= 0x40
		}
		out = append(out, b)
		if b[0]>>4 == 4 || len(b) < 44 || b[6] == protoTCP {
			f.p.seq += uint32(size)
			f.p.id++
		}
	}
	return out
}

func TestCoalesceRoundTripProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	iters := 400
	if testing.Short() {
		iters = 50
	}
	merged, singles := 0, 0
	for range iters {
		in := genFlows(t, rng, MaxPackets)
		r := checkCoalesce(t, in)
		for _, g := range r.groups {
			if g > 1 {
				merged += g
			} else {
				singles++
			}
		}
	}
	// Not a correctness property, but a coalescer that never merges
	// would pass the rest: most segments of these flows are mergeable.
	if merged < singles {
		t.Fatalf("only %d packets merged, %d written alone", merged, singles)
	}
	t.Logf("%d packets merged, %d alone", merged, singles)
}

// TestCoalesceManyFlows: the flow table under load. A batch of
// MaxPackets packets of MaxPackets/2 flows (IPv4 and IPv6, source ports
// chosen so that many share a table slot, and two flows whose hashes
// are equal in the slot bits placed first), each flow's two consecutive
// segments half a batch apart: every pair merges into one write, none
// with another flow's packet, and checkCoalesce's invariants hold.
func TestCoalesceManyFlows(t *testing.T) {
	const flows = MaxPackets / 2
	mk := func(i int, sport uint16, k int) []byte {
		return build(t, pkt{v6: i%2 == 1, sport: sport, dport: 443, id: uint16(100*i + k), seq: uint32(1000*i + 500*k),
			ack: 1, flags: tcpACK, win: 100, payload: payloadOf(500, i)})
	}
	slot := func(p []byte) int {
		ipLen := 20
		if p[0]>>4 == 6 {
			ipLen = 40
		}
		return int(flowHash(p, p[0]>>4 == 6, ipLen)) & (flowTableSize - 1)
	}
	// Flows 0 and 2 (both IPv4) share a slot.
	ports := make([]uint16, flows)
	ports[0] = 1
	want := slot(mk(0, 1, 0))
	for sp := uint16(2); ; sp++ {
		if slot(mk(2, sp, 0)) == want {
			ports[2] = sp
			break
		}
		if sp == 0xffff {
			t.Fatal("no colliding port")
		}
	}
	for i := range ports {
		if ports[i] == 0 {
			ports[i] = uint16(30000 + i)
		}
	}
	in := make([][]byte, 0, MaxPackets)
	for k := range 2 {
		for i := range flows {
			in = append(in, mk(i, ports[i], k))
		}
	}
	r := checkCoalesce(t, in)
	if r.writes != flows {
		t.Fatalf("%d writes, want %d", r.writes, flows)
	}
	for w, g := range r.groups {
		if g != 2 {
			t.Fatalf("write %d holds %d packets, want 2", w, g)
		}
	}
	for w := range flows {
		if r.order[2*w] != w || r.order[2*w+1] != flows+w {
			t.Fatalf("write %d: packets %d, %d; want %d, %d", w, r.order[2*w], r.order[2*w+1], w, flows+w)
		}
	}
}
