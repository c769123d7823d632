package vnet

import (
	"encoding/binary"
	"io"

	"github.com/espxdp/espxdp/internal/inet"
)

// MaxSegments is the largest number of packets one super-packet may
// split into; Splitter.Reset refuses more with ErrUnsupported. It is the
// kernel's own bound (GSO_MAX_SEGS, a TUN's gso_max_segs): a TCP sender
// whose peer announced a small MSS hands over 64 KiB in segments of a
// few dozen bytes, which must be split like any other (refusing them
// would drop every such super-packet and stall the connection).
const MaxSegments = 1<<16 - 1

// IP protocol numbers and TCP flags used here.
const (
	protoTCP = 6
	protoUDP = 17

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
	tcpURG = 0x20
	tcpECE = 0x40
	tcpCWR = 0x80
)

// Splitter modes.
const (
	modeDone = iota // nothing (left) to split
	modeCopy        // GSONone: the packet as it is
	modeCsum        // GSONone with FlagNeedsCsum: the packet, checksum finished
	modeTCP         // TSO: TCP segments
	modeUDP         // USO: UDP datagrams
)

// Splitter splits one packet read from a TUN (the bytes after its
// virtio-net header) into the IP packets it stands for. The zero value
// is ready to use (with nothing to split); it never allocates. It is not
// safe for concurrent use.
//
// Reset validates the packet against its header:
//   - GSONone: one packet, the whole of pkt (not empty). With
//     FlagNeedsCsum, CsumStart+CsumOffset+2 must be <= len(pkt); Next
//     finishes the checksum in its copy (the ones' complement sum from
//     CsumStart to the end, the field holding the pseudo-header sum,
//     stored complemented). A result of 0 is stored as 0xffff when the
//     packet is UDP (an IPv4 header of IHL*4 == CsumStart or an IPv6
//     header whose next header, after the extension headers walkExt6
//     accepts, is UDP at CsumStart, CsumOffset 6); other 0 results stay
//     0.
//   - GSOTCPv4, GSOTCPv6 (optionally |GSOECN) and GSOUDPL4: h.HdrLen is
//     not trusted. The IP version must match the type (else
//     ErrMalformed); the L4 header starts at CsumStart, which must be
//     the IPv4 IHL*4, or for IPv6 40 plus the extension headers in
//     between (below 40: ErrMalformed): hop-by-hop and destination
//     options and a routing header with no segments left, each copied
//     into every segment (see walkExt6 for what else is refused); the IP
//     protocol (IPv4) or last next header (IPv6) must be the type's
//     (else ErrMalformed); CsumOffset
//     must be 16 (TCP) or 6 (UDP); the IPv4 total length or IPv6
//     payload length must match len(pkt); an IPv4 fragment is
//     ErrMalformed; the TCP header length comes from its data offset;
//     GSOSize 0 or an empty payload is ErrMalformed; more than
//     MaxSegments segments is ErrUnsupported; GSOECN with a UDP type is
//     ErrMalformed.
//   - GSOUDP (UFO) and unknown types: ErrUnsupported.
//
// Each segment i of n (payload GSOSize bytes, the last the rest) gets a
// copy of the headers with: IPv4 total length, ID = first ID + i
// (mod 2^16) and a recomputed header checksum; IPv6 payload length; TCP
// seq = first seq + i*GSOSize, FIN and PSH kept only on the last
// segment, CWR only on the first; UDP length; the L4 checksum computed
// over the pseudo-header and the segment (UDP: 0 is stored as 0xffff).
type Splitter struct {
	pkt    []byte
	mode   uint8
	v6     bool
	mangle bool // modeCsum: a computed 0 is stored as 0xffff (UDP)

	csumStart int // modeCsum: where the sum starts
	csumField int // modeCsum: offset of the checksum field

	ipLen  int    // L3 header length
	hdrLen int    // L3 + L4 header length
	gso    int    // payload bytes per segment
	n, i   int    // segments in all, next segment
	id     uint16 // IPv4 ID of the first segment
	seq    uint32 // TCP seq of the first segment
	pseudo uint64 // pseudo-header sum of addresses and protocol
}

// Reset makes pkt, with its virtio-net header h, the packet to split. It
// validates h against pkt (see Splitter) and returns ErrMalformed or
// ErrUnsupported if it cannot split it, leaving nothing to split
// (Remaining 0). pkt is not copied: the caller keeps it unchanged until
// it is done with Next.
func (s *Splitter) Reset(h Hdr, pkt []byte) error {
	*s = Splitter{}
	if err := s.reset(h, pkt); err != nil {
		*s = Splitter{}
		return err
	}
	return nil
}

func (s *Splitter) reset(h Hdr, pkt []byte) error {
	if len(pkt) == 0 {
		return ErrMalformed
	}
	s.pkt = pkt
	ecn := h.GSOType&GSOECN != 0
	var proto uint8
	switch h.GSOType &^ GSOECN {
	case GSONone:
		if ecn {
			return ErrMalformed
		}
		return s.resetNone(h, pkt)
	case GSOTCPv4, GSOTCPv6:
		proto = protoTCP
		s.mode = modeTCP
	case GSOUDPL4:
		if ecn {
			return ErrMalformed
		}
		proto = protoUDP
		s.mode = modeUDP
	default: // GSOUDP (UFO) and types this package does not know
		return ErrUnsupported
	}
	if h.GSOSize == 0 {
		return ErrMalformed
	}
	s.gso = int(h.GSOSize)
	version := pkt[0] >> 4
	s.v6 = version == 6
	switch h.GSOType &^ GSOECN {
	case GSOTCPv4:
		if version != 4 {
			return ErrMalformed
		}
	case GSOTCPv6:
		if version != 6 {
			return ErrMalformed
		}
	default: // GSOUDPL4: either version
		if version != 4 && version != 6 {
			return ErrMalformed
		}
	}
	cs := int(h.CsumStart)
	if s.v6 {
		switch {
		case len(pkt) < 40 || cs < 40:
			return ErrMalformed
		case int(binary.BigEndian.Uint16(pkt[4:]))+40 != len(pkt):
			return ErrMalformed
		}
		if err := walkExt6(pkt, cs, proto); err != nil {
			return err
		}
	} else {
		if len(pkt) < 20 {
			return ErrMalformed
		}
		ihl := int(pkt[0]&0x0f) * 4
		switch {
		case ihl < 20 || ihl > len(pkt) || cs != ihl:
			return ErrMalformed
		case pkt[9] != proto:
			return ErrMalformed
		case int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt):
			return ErrMalformed
		case binary.BigEndian.Uint16(pkt[6:])&0x3fff != 0: // MF or an offset
			return ErrMalformed
		}
		s.id = binary.BigEndian.Uint16(pkt[4:])
	}
	s.ipLen = cs
	l4 := pkt[cs:]
	if proto == protoTCP {
		if h.CsumOffset != 16 || len(l4) < 20 {
			return ErrMalformed
		}
		doff := int(l4[12]>>4) * 4
		if doff < 20 || doff > len(l4) {
			return ErrMalformed
		}
		s.hdrLen = cs + doff
		s.seq = binary.BigEndian.Uint32(l4[4:])
	} else {
		if h.CsumOffset != 6 || len(l4) < 8 {
			return ErrMalformed
		}
		s.hdrLen = cs + 8
	}
	payload := len(pkt) - s.hdrLen
	if payload <= 0 {
		return ErrMalformed
	}
	n := (payload + s.gso - 1) / s.gso
	if n > MaxSegments {
		return ErrUnsupported
	}
	s.n = n
	s.pseudo = pseudoAddrs(pkt, s.v6, proto)
	return nil
}

// IPv6 extension headers a super-packet may carry (RFC 8200 §4).
const (
	extHopByHop = 0
	extRouting  = 43
	extFragment = 44
	extDstOpts  = 60
)

// walkExt6 checks that the IPv6 packet p (at least 40 bytes) reaches its
// L4 header of protocol proto exactly at cs through extension headers
// the segments may each carry unchanged: hop-by-hop options (first
// only), destination options, and a routing header with no segments
// left (with segments left, the pseudo-header's destination would be
// the final one, not the header's: ErrUnsupported). A fragment header,
// a chain that overruns cs or p, or proto found elsewhere is
// ErrMalformed; any other header ErrUnsupported. The loop advances at
// least 8 bytes per header, so it ends.
func walkExt6(p []byte, cs int, proto uint8) error {
	nh, off := p[6], 40
	for off < cs {
		switch nh {
		case extHopByHop:
			if off != 40 {
				return ErrMalformed
			}
		case extDstOpts:
		case extRouting:
			if off+4 <= len(p) && p[off+3] != 0 {
				return ErrUnsupported
			}
		case extFragment, proto:
			return ErrMalformed
		default:
			return ErrUnsupported
		}
		if off+8 > len(p) {
			return ErrMalformed
		}
		nh = p[off]
		off += (int(p[off+1]) + 1) * 8
	}
	if off != cs || nh != proto {
		return ErrMalformed
	}
	return nil
}

// resetNone validates a GSONone packet.
func (s *Splitter) resetNone(h Hdr, pkt []byte) error {
	s.n = 1
	if h.Flags&FlagNeedsCsum == 0 {
		s.mode = modeCopy
		return nil
	}
	start, field := int(h.CsumStart), int(h.CsumStart)+int(h.CsumOffset)
	if field+2 > len(pkt) {
		return ErrMalformed
	}
	s.mode = modeCsum
	s.csumStart, s.csumField = start, field
	if h.CsumOffset == 6 {
		switch pkt[0] >> 4 {
		case 4:
			s.mangle = len(pkt) >= 20 && int(pkt[0]&0x0f)*4 == start && pkt[9] == protoUDP
		case 6:
			s.mangle = len(pkt) >= 40 && start >= 40 && walkExt6(pkt, start, protoUDP) == nil
		}
	}
	return nil
}

// Remaining returns how many packets Next has still to produce (0:
// done, or Reset failed).
func (s *Splitter) Remaining() int { return s.n - s.i }

// Next writes the next packet into dst[:n]. If dst is too small it
// returns ErrShortBuffer, writes nothing and stays at that packet (a
// larger dst may be offered; to drop the rest, Reset with the next
// packet). With nothing left it returns io.EOF.
func (s *Splitter) Next(dst []byte) (int, error) {
	if s.i >= s.n {
		return 0, io.EOF
	}
	switch s.mode {
	case modeCopy, modeCsum:
		n := len(s.pkt)
		if len(dst) < n {
			return 0, ErrShortBuffer
		}
		copy(dst, s.pkt)
		if s.mode == modeCsum {
			out := dst[:n]
			c := ^inet.Fold(inet.Add(0, out[s.csumStart:]))
			if c == 0 && s.mangle {
				c = 0xffff
			}
			binary.BigEndian.PutUint16(out[s.csumField:], c)
		}
		s.i++
		return n, nil
	}
	return s.nextSegment(dst)
}

// nextSegment builds segment s.i of a TCP or UDP super-packet in dst.
// Invariants: it reads only s.pkt[:s.hdrLen] and s.pkt[off:end] (end <=
// len(s.pkt), checked by Reset: s.hdrLen < len(s.pkt)), writes only
// dst[:n] after checking n <= len(dst), never writes s.pkt, and
// computes every length and checksum from the segment itself.
func (s *Splitter) nextSegment(dst []byte) (int, error) {
	i := s.i
	off := s.hdrLen + i*s.gso
	end := min(off+s.gso, len(s.pkt))
	n := s.hdrLen + end - off
	if len(dst) < n {
		return 0, ErrShortBuffer
	}
	out := dst[:n]
	copy(out, s.pkt[:s.hdrLen])
	copy(out[s.hdrLen:], s.pkt[off:end])
	if s.v6 {
		binary.BigEndian.PutUint16(out[4:], uint16(n-40))
	} else {
		binary.BigEndian.PutUint16(out[2:], uint16(n))
		binary.BigEndian.PutUint16(out[4:], s.id+uint16(i))
		binary.BigEndian.PutUint16(out[10:], ipv4HdrChecksum(out[:s.ipLen]))
	}
	l4 := out[s.ipLen:]
	acc := inet.AddWord(s.pseudo, uint64(len(l4)))
	if s.mode == modeTCP {
		binary.BigEndian.PutUint32(l4[4:], s.seq+uint32(i*s.gso))
		f := l4[13]
		if i != s.n-1 {
			f &^= tcpFIN | tcpPSH
		}
		if i != 0 {
			f &^= tcpCWR
		}
		l4[13] = f
		l4[16], l4[17] = 0, 0
		binary.BigEndian.PutUint16(l4[16:], ^inet.Fold(inet.Add(acc, l4)))
	} else {
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		l4[6], l4[7] = 0, 0
		c := ^inet.Fold(inet.Add(acc, l4))
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(l4[6:], c)
	}
	s.i++
	return n, nil
}
