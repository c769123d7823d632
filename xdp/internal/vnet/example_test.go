package vnet_test

import (
	"encoding/binary"
	"fmt"

	"github.com/espxdp/espxdp/xdp/internal/vnet"
)

// tcp4 builds a minimal TCP/IPv4 ACK segment with valid checksums.
func tcp4(id uint16, seq uint32, payload int) []byte {
	p := make([]byte, 40+payload)
	p[0], p[8], p[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], id)
	copy(p[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	binary.BigEndian.PutUint16(p[20:], 1234)
	binary.BigEndian.PutUint16(p[22:], 80)
	binary.BigEndian.PutUint32(p[24:], seq)
	p[32], p[33] = 5<<4, 0x10 // data offset 5, ACK
	binary.BigEndian.PutUint16(p[34:], 1000)
	binary.BigEndian.PutUint16(p[10:], ^sum(p[:20], 0))
	ph := sum(p[12:20], 6+uint32(len(p)-20))
	binary.BigEndian.PutUint16(p[36:], ^sum(p[20:], uint32(ph)))
	return p
}

func sum(b []byte, s uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// A batch of three segments of one flow becomes one write (what
// writev(2) gathers: the header, the first packet, the others' payload);
// a TUN reader splits it back.
func Example() {
	var c vnet.Coalescer
	c.Reset()
	var batch [][]byte
	for i := range 3 {
		batch = append(batch, tcp4(uint16(7+i), uint32(100+1000*i), 1000))
		c.Add(batch[i])
	}
	c.Finish()
	fmt.Println("writes:", c.Writes())

	h, idx, skip := c.Write(0)
	fmt.Printf("%+v %v %d\n", h, idx, skip)
	w := make([]byte, vnet.HdrLen, 4096)
	h.Encode(w)
	w = append(w, batch[idx[0]]...)
	for _, i := range idx[1:] {
		w = append(w, batch[i][skip:]...)
	}

	var s vnet.Splitter
	hdr, _ := vnet.DecodeHdr(w)
	if err := s.Reset(hdr, w[vnet.HdrLen:]); err != nil {
		fmt.Println(err)
		return
	}
	buf := make([]byte, 2048)
	for s.Remaining() > 0 {
		n, _ := s.Next(buf)
		fmt.Println("packet", n, "bytes, id", binary.BigEndian.Uint16(buf[4:]), "seq", binary.BigEndian.Uint32(buf[24:]))
	}
	// Output:
	// writes: 1
	// {Flags:1 GSOType:1 HdrLen:40 GSOSize:1000 CsumStart:20 CsumOffset:16} [0 1 2] 40
	// packet 1040 bytes, id 7 seq 100
	// packet 1040 bytes, id 8 seq 1100
	// packet 1040 bytes, id 9 seq 2100
}
