//go:build linux

package gateway

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/internal/inet"
)

// NAT-T keepalives (RFC 3948 §2.3) without a UDP socket on the NAT-T
// port: an IKE daemon on the same host owns UDP 4500 (IKE behind the
// non-ESP marker reaches its socket, which the XDP program passes to the
// kernel), so the gateway must neither bind the port nor share it
// (SO_REUSEPORT would split the IKE datagrams between the two sockets).
// Keepalives go out of a send-only raw socket (IPPROTO_RAW) with the IP
// and UDP headers built here; the peers' keepalives are counted from a
// raw IPPROTO_UDP socket, which gets a copy of each datagram (the bound
// socket still gets the original) through a kernel filter that passes
// only one-byte 0xFF datagrams to the port.

// kaSocket sends keepalives and counts the peers'.
type kaSocket struct {
	send4, send6 int // raw send sockets, -1 if not open
	recv4, recv6 *os.File
}

func openKeepalive(port uint16) (*kaSocket, error) {
	k := &kaSocket{send4: -1, send6: -1}
	var err error
	if k.send4, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err != nil {
		return nil, fmt.Errorf("raw IPv4 socket: %w", err)
	}
	// IPv6 may be disabled in the namespace: then only IPv4 peers.
	if fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err == nil {
		k.send6 = fd
	}
	k.recv4 = openKARecv(unix.AF_INET, port)
	k.recv6 = openKARecv(unix.AF_INET6, port)
	return k, nil
}

// kaFilter is a classic BPF program passing UDP datagrams to port whose
// payload is the single byte 0xFF; ipHeader says whether the data starts
// with an IPv4 header (raw IPv4 sockets) or with the UDP header (IPv6).
func kaFilter(port uint16, ipHeader bool) []unix.SockFilter {
	const (
		ldxMSH = unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH
		ldhInd = unix.BPF_LD | unix.BPF_H | unix.BPF_IND
		ldbInd = unix.BPF_LD | unix.BPF_B | unix.BPF_IND
		jeq    = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret    = unix.BPF_RET | unix.BPF_K
		ldxImm = unix.BPF_LDX | unix.BPF_W | unix.BPF_IMM
	)
	first := unix.SockFilter{Code: ldxImm, K: 0} // X = 0: UDP header at 0
	if ipHeader {
		first = unix.SockFilter{Code: ldxMSH, K: 0} // X = 4*IHL
	}
	return []unix.SockFilter{
		first,
		{Code: ldhInd, K: 2}, // destination port
		{Code: jeq, K: uint32(port), Jt: 0, Jf: 5}, // -> drop
		{Code: ldhInd, K: 4},                       // UDP length
		{Code: jeq, K: 9, Jt: 0, Jf: 3},            // -> drop
		{Code: ldbInd, K: 8},                       // payload
		{Code: jeq, K: 0xff, Jt: 0, Jf: 1},         // -> drop
		{Code: ret, K: 0xffff},
		{Code: ret, K: 0},
	}
}

// openKARecv opens the counting socket of a family, or nil.
func openKARecv(family int, port uint16) *os.File {
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_UDP)
	if err != nil {
		return nil
	}
	f := kaFilter(port, family == unix.AF_INET)
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		unix.Close(fd)
		return nil
	}
	return os.NewFile(uintptr(fd), "nat-t-keepalive-count")
}

// keepalivePacket builds the IP+UDP datagram of one keepalive.
func keepalivePacket(src, dst netip.AddrPort) []byte {
	const udpLen = 9
	var b []byte
	var pseudo uint32
	if src.Addr().Is4() {
		b = make([]byte, 20+udpLen)
		b[0], b[8], b[9] = 0x45, 64, unix.IPPROTO_UDP
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		s, d := src.Addr().As4(), dst.Addr().As4()
		copy(b[12:], s[:])
		copy(b[16:], d[:])
		binary.BigEndian.PutUint16(b[10:], inet.Checksum(b[:20]))
		pseudo = uint32(inet.Sum(b[12:20], 0))
	} else {
		b = make([]byte, 40+udpLen)
		b[0], b[6], b[7] = 0x60, unix.IPPROTO_UDP, 64
		binary.BigEndian.PutUint16(b[4:], udpLen)
		s, d := src.Addr().As16(), dst.Addr().As16()
		copy(b[8:], s[:])
		copy(b[24:], d[:])
		pseudo = uint32(inet.Sum(b[8:40], 0))
	}
	u := b[len(b)-udpLen:]
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], udpLen)
	u[8] = 0xFF
	ck := ^inet.Sum(u, pseudo+unix.IPPROTO_UDP+udpLen)
	if ck == 0 {
		ck = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], ck)
	return b
}

// send sends one keepalive from src to dst.
func (k *kaSocket) send(src, dst netip.AddrPort) error {
	pkt := keepalivePacket(src, dst)
	if dst.Addr().Is4() {
		return unix.Sendto(k.send4, pkt, 0, &unix.SockaddrInet4{Addr: dst.Addr().As4()})
	}
	if k.send6 < 0 {
		return fmt.Errorf("no IPv6 raw socket")
	}
	return unix.Sendto(k.send6, pkt, 0, &unix.SockaddrInet6{Addr: dst.Addr().As16()})
}

// count calls fn for every keepalive received until the sockets close.
func (k *kaSocket) count(fn func()) (wait func()) {
	done := make(chan struct{}, 2)
	n := 0
	for _, f := range []*os.File{k.recv4, k.recv6} {
		if f == nil {
			continue
		}
		n++
		go func() {
			defer func() { done <- struct{}{} }()
			buf := make([]byte, 128)
			for {
				if _, err := f.Read(buf); err != nil {
					return
				}
				fn()
			}
		}()
	}
	return func() {
		for range n {
			<-done
		}
	}
}

func (k *kaSocket) close() {
	for _, fd := range []int{k.send4, k.send6} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	for _, f := range []*os.File{k.recv4, k.recv6} {
		if f != nil {
			f.Close()
		}
	}
}
