package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Link types this tool reads and writes, besides those gopacket names.
const (
	// linkTypeDLTRaw and linkTypeDLTRawBSD are DLT_RAW as some writers
	// (scapy among them) put it in files instead of LINKTYPE_RAW (101).
	linkTypeDLTRaw    layers.LinkType = 12
	linkTypeDLTRawBSD layers.LinkType = 14
	// maxLinkHeader is the longest link-layer header handled: Ethernet
	// with two VLAN tags (22).
	maxLinkHeader = 24
	// snapLen of the files written; large enough for any IP packet.
	snapLen = 262144
)

// Sentinel errors for frames that carry no IP packet this tool handles.
var (
	errNotIP          = errors.New("not an IPv4 or IPv6 packet")
	errShortFrame     = errors.New("frame shorter than its link-layer header")
	errTruncatedCapt  = errors.New("packet truncated by the capture (snaplen)")
	errUnsupportedLnk = errors.New("unsupported link type")
)

// packetReader is what pcapgo's pcap and pcapng readers have in common.
type packetReader interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	LinkType() layers.LinkType
}

// pcapIn is an open capture file, classic pcap or pcapng.
type pcapIn struct {
	f     *os.File
	r     packetReader
	ng    *pcapgo.NgReader
	lt    layers.LinkType
	nanos bool // timestamps finer than microseconds
}

// openPcap opens a pcap or pcapng file; it tells them apart by the magic
// number.
func openPcap(path string) (*pcapIn, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(f, 1<<16)
	magic, err := br.Peek(4)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: not a pcap file (too short)", path)
	}
	in := &pcapIn{f: f}
	if binary.BigEndian.Uint32(magic) == 0x0a0d0d0a { // pcapng Section Header Block
		ng, err := pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		in.r, in.ng = ng, ng
		res := ng.Resolution()
		in.nanos = res.Base == 10 && res.Exponent < -6 || res.Base == 2 && res.Exponent < -20
	} else {
		r, err := pcapgo.NewReader(br)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		in.r = r
		// pcapgo v1.1.19's Reader.Resolution has micro and nano swapped;
		// the magic number says which it is.
		switch binary.BigEndian.Uint32(magic) {
		case 0xa1b23c4d, 0x4d3cb2a1:
			in.nanos = true
		}
	}
	in.lt = in.r.LinkType()
	if _, err := linkHeaderLen(in.lt, nil); errors.Is(err, errUnsupportedLnk) {
		f.Close()
		return nil, fmt.Errorf("%s: link type %d (%v) not supported (want Ethernet, raw IP, IPv4, IPv6 or Linux SLL)", path, in.lt, in.lt)
	}
	return in, nil
}

// next returns the next packet. Its data is only valid until the next
// call (the readers reuse one buffer); callers copy it.
func (in *pcapIn) next() ([]byte, gopacket.CaptureInfo, error) {
	data, ci, err := in.r.ZeroCopyReadPacketData()
	if err != nil {
		return nil, ci, err
	}
	if in.ng != nil && in.ng.NInterfaces() > 1 {
		if iface, err := in.ng.Interface(ci.InterfaceIndex); err == nil && iface.LinkType != in.lt {
			return nil, ci, fmt.Errorf("pcapng interface %d has link type %v, the first has %v: mixed link types are not supported", ci.InterfaceIndex, iface.LinkType, in.lt)
		}
	}
	if ci.CaptureLength < ci.Length {
		return data, ci, errTruncatedCapt
	}
	return data, ci, nil
}

func (in *pcapIn) Close() error { return in.f.Close() }

// pcapOut is a classic pcap file being written.
type pcapOut struct {
	f *os.File
	b *bufio.Writer
	w *pcapgo.Writer
}

func createPcap(path string, lt layers.LinkType, nanos bool) (*pcapOut, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	o := &pcapOut{f: f, b: bufio.NewWriterSize(f, 1<<16)}
	if nanos {
		o.w = pcapgo.NewWriterNanos(o.b)
	} else {
		o.w = pcapgo.NewWriter(o.b)
	}
	if err := o.w.WriteFileHeader(snapLen, lt); err != nil {
		f.Close()
		return nil, err
	}
	return o, nil
}

func (o *pcapOut) write(ci gopacket.CaptureInfo, data []byte) error {
	ci.CaptureLength, ci.Length = len(data), len(data)
	ci.InterfaceIndex = 0
	return o.w.WritePacket(ci, data)
}

// Close flushes and closes the file.
func (o *pcapOut) Close() error {
	err := o.b.Flush()
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// outputLinkType is the link type written for input link type lt:
// the same, except that the single-family raw types become LINKTYPE_RAW,
// since the output may mix families (an IPv6 packet out of an IPv4 tunnel).
func outputLinkType(lt layers.LinkType) layers.LinkType {
	switch lt {
	case layers.LinkTypeIPv4, layers.LinkTypeIPv6:
		return layers.LinkTypeRaw
	}
	return lt
}

// Link-layer protocol numbers.
const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	etherTypeVLAN = 0x8100
	etherTypeQinQ = 0x88a8
)

// linkHeaderLen returns the length of the link-layer header of frame for
// link type lt, checking that an IP packet follows. With a nil frame it
// only checks that lt is supported.
func linkHeaderLen(lt layers.LinkType, frame []byte) (int, error) {
	var n, etOff int
	switch lt {
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6, linkTypeDLTRaw, linkTypeDLTRawBSD:
		if frame == nil {
			return 0, nil
		}
		return 0, checkIPVersion(frame, 0)
	case layers.LinkTypeEthernet:
		if frame == nil {
			return 0, nil
		}
		n, etOff = 14, 12
		for {
			if len(frame) < n {
				return 0, errShortFrame
			}
			et := binary.BigEndian.Uint16(frame[etOff:])
			if (et != etherTypeVLAN && et != etherTypeQinQ) || n+4 > maxLinkHeader {
				break
			}
			n, etOff = n+4, etOff+4
		}
	case layers.LinkTypeLinuxSLL:
		n, etOff = 16, 14
	default:
		return 0, errUnsupportedLnk
	}
	if frame == nil {
		return 0, nil
	}
	if len(frame) < n {
		return 0, errShortFrame
	}
	switch binary.BigEndian.Uint16(frame[etOff:]) {
	case etherTypeIPv4:
		return n, checkIPVersion(frame, n, 4)
	case etherTypeIPv6:
		return n, checkIPVersion(frame, n, 6)
	}
	return n, errNotIP
}

// checkIPVersion checks that an IP packet (of one of the versions, any
// when none are given) starts at frame[off].
func checkIPVersion(frame []byte, off int, versions ...byte) error {
	if len(frame) <= off {
		return errNotIP
	}
	v := frame[off] >> 4
	if len(versions) == 0 {
		if v == 4 || v == 6 {
			return nil
		}
		return errNotIP
	}
	for _, w := range versions {
		if v == w {
			return nil
		}
	}
	return errNotIP
}

// ipLen returns the length of the IP packet at the start of b according
// to its header (so that Ethernet padding is left out).
func ipLen(b []byte) (int, error) {
	switch {
	case len(b) >= 20 && b[0]>>4 == 4:
		n := int(binary.BigEndian.Uint16(b[2:]))
		if n < 20 || n > len(b) {
			return 0, errMalformedIP
		}
		return n, nil
	case len(b) >= 40 && b[0]>>4 == 6:
		n := int(binary.BigEndian.Uint16(b[4:])) + 40
		if n > len(b) {
			return 0, errMalformedIP
		}
		return n, nil
	}
	return 0, errMalformedIP
}

var errMalformedIP = errors.New("malformed IP header")

// setLinkProto rewrites the protocol field of the link-layer header hdr
// (as linkHeaderLen measured it) for an IP packet of the given version.
func setLinkProto(lt layers.LinkType, hdr []byte, version byte) {
	et := uint16(etherTypeIPv4)
	if version == 6 {
		et = etherTypeIPv6
	}
	switch lt {
	case layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL:
		if len(hdr) >= 2 {
			binary.BigEndian.PutUint16(hdr[len(hdr)-2:], et)
		}
	}
}

// isEOF reports the normal end of a capture file.
func isEOF(err error) bool {
	return errors.Is(err, io.EOF)
}
