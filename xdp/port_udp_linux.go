//go:build linux

package xdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/sa"
)

// Limits of UDP generic segmentation offload (UDP_SEGMENT) the port
// keeps on transmit.
const (
	// udpMaxGSO4 and udpMaxGSO6 are the most payload bytes of one
	// super-datagram: what fits in one IPv4 datagram (65535 - 20 - 8),
	// and the same for IPv6 without jumbograms, less 20 for a margin
	// that any extension header the stack adds cannot cross.
	udpMaxGSO4 = 65535 - 20 - 8
	udpMaxGSO6 = 65535 - 40 - 8
	// udpSlot is the size of one receive buffer: a whole GRO
	// super-datagram (at most 64 KiB of payload).
	udpSlot = 1 << 16
	// udpCtrl is the control buffer of one message: one cmsg with an
	// int (UDP_GRO on receive) or a uint16 (UDP_SEGMENT on transmit),
	// and room for one more the stack may add.
	udpCtrl = 64
)

// UDPPort is a ciphertext-side EnginePort (EngineConfig.CipherPort)
// over UDP sockets: ESP in UDP (RFC 3948) without any XDP program, with
// UDP segmentation offload on transmit and UDP GRO on receive, so that
// the kernel moves one socket buffer per up to 64 KiB of ESP packets
// instead of one per packet.
//
// Every worker has a non-blocking socket of its own, all bound to
// Local with SO_REUSEPORT: the kernel's reuseport hash of the 4-tuple
// picks the worker, so every packet from one peer address and port
// (every packet of its SAs) reaches one worker, in order, and different
// peers spread over the workers. Worker w polls its socket (PollFDs)
// and sends on it, so every packet leaves from Local.
//
// Receive reads datagrams with recvmmsg into the worker's own 64 KiB
// buffers, splits a coalesced one by its gso_size into its ESP packets,
// and copies each into a frame behind an outer IPv4 or IPv6 header and
// a UDP header (the datagram's source to Local), so that the SAs check
// outer addresses and NAT-T ports as on AF_XDP. Transmit takes packets
// with outer IPv4/UDP or IPv6/UDP headers (what the SAs with UDPEncap
// build), points one iovec at each payload where it lies in its frame,
// and sends consecutive packets to one destination and of one length
// (the last may be shorter) as one super-datagram with a UDP_SEGMENT
// control message, at most UDPMaxSegments packets and 64 KiB; when the
// kernel refuses a super-datagram (EIO: no checksum offload on the
// route; EINVAL: a segment over the path MTU, SO_NO_CHECK), it counts a
// GSOFallback and sends the rest of that batch one datagram per packet;
// after an EIO, or udpGSORefusals EINVALs in a row (a success resets
// them), GSO stays off for every worker.
// Neither direction allocates.
//
// The processor's NATTPort must be the bound port (it takes UDP to that
// port as ESP in UDP), and the SAs' LocalPort too.
type UDPPort struct {
	cfg    UDPPortConfig
	local  netip.AddrPort
	v6     bool
	env    PortEnv
	q      []*udpQueue
	gsoOff atomic.Bool // set once the kernel refused GSO for good (or it is off)
	// gsoRefused counts the kernel's EINVAL refusals of a super-datagram
	// since GSO last worked (a segment over a lowered path MTU refuses
	// until the route changes back; SO_NO_CHECK refuses always): at
	// udpGSORefusals in a row GSO is turned off.
	gsoRefused atomic.Int32
	refusals   int32 // udpGSORefusals; the tests lower it
	// fdMu orders WriteTo (any goroutine) against Unbind closing the
	// sockets, so that WriteTo never uses a closed descriptor (nor one
	// the process reused). The workers' path does not take it: the
	// engine stops them before Unbind.
	fdMu sync.RWMutex
	gro  bool // UDP_GRO is on for the sockets
	// noCheckTX sets SO_NO_CHECK / UDP_NO_CHECK6_TX on the sockets,
	// with which the kernel refuses GSO (EINVAL): the tests' way to
	// reach the fallback.
	noCheckTX bool
}

// udpPeer is an outer destination or source: address (IPv4 in the
// first 4 bytes) and port.
type udpPeer struct {
	addr [16]byte
	port uint16
}

// udpQueue is worker w's socket, its batch arrays and its counters
// (only worker w writes them; Stats reads the atomics).
type udpQueue struct {
	fd int

	// Receive: recvmmsg messages, one 64 KiB slot each; got messages
	// read by the last recvmmsg, cur the one being split, off how far.
	rmsgs  []unix.Mmsghdr
	riov   []unix.Iovec
	rnames []unix.RawSockaddrInet6
	rctrl  []byte
	rbuf   []byte
	rlen   []int // payload length of message i (0: dropped)
	rseg   []int // segment size of message i
	rsrc   []udpPeer
	got    int
	cur    int
	off    int

	// Transmit: per valid packet its iovec, destination and length;
	// per message its name, control buffer, first packet and count.
	tiov   [MaxBatch]unix.Iovec
	tdst   [MaxBatch]udpPeer
	tlen   [MaxBatch]int
	tmsgs  [MaxBatch]unix.Mmsghdr
	tnames [MaxBatch]unix.RawSockaddrInet6
	tctrl  [MaxBatch][udpCtrl]byte
	tfirst [MaxBatch]int
	tcnt   [MaxBatch]int

	c udpCounters
	_ [64]byte // keep the next worker's queue off these cache lines
}

// udpCounters are one worker's counters (see UDPPortStats).
type udpCounters struct {
	rx, tx                                 atomic.Uint64
	rxDatagrams, rxSuper, rxSegments       atomic.Uint64
	txDatagrams, txSuper, txSegments       atomic.Uint64
	gsoFallbacks, nonESP                   atomic.Uint64
	dropNonESP, dropKeepalive, dropEmpty   atomic.Uint64
	dropTooLong, dropTruncated, dropFamily atomic.Uint64
	dropNotUDP, dropFull, dropSendError    atomic.Uint64
}

// NewUDPPort returns a UDP cipher port for cfg; the sockets are opened
// by Bind (Engine.Start).
func NewUDPPort(cfg UDPPortConfig) *UDPPort {
	local := cfg.Local
	if local.Port() == 0 && !cfg.EphemeralPort {
		local = netip.AddrPortFrom(local.Addr(), esp.NATTPort)
	}
	return &UDPPort{cfg: cfg, local: local, refusals: udpGSORefusals}
}

// Addr returns the port's address: after Bind, with the port the
// kernel picked for EphemeralPort.
func (u *UDPPort) Addr() netip.AddrPort { return u.local }

// Bind opens one non-blocking socket per worker, all on the port's
// address (SO_REUSEPORT), with UDP_GRO unless NoGRO.
func (u *UDPPort) Bind(env PortEnv) (err error) {
	a := u.local.Addr()
	if !a.IsValid() || a.IsUnspecified() || a.Zone() != "" {
		return fmt.Errorf("%w: a specific IPv4 or IPv6 address is needed, not %v", ErrUDPPort, u.local)
	}
	a = a.Unmap()
	u.local = netip.AddrPortFrom(a, u.local.Port())
	u.v6 = a.Is6()
	nbuf := u.cfg.RecvBuffers
	if nbuf == 0 {
		nbuf = DefaultUDPRecvBuffers
	}
	if nbuf < 1 || nbuf > 1024 {
		return fmt.Errorf("%w: RecvBuffers %d out of range 1..1024", ErrUDPPort, nbuf)
	}
	u.fdMu.Lock()
	defer u.fdMu.Unlock()
	u.env = env
	u.q = make([]*udpQueue, 0, env.Workers)
	u.gsoOff.Store(u.cfg.NoGSO)
	u.gro = !u.cfg.NoGRO
	defer func() {
		if err != nil {
			u.closeLocked()
		}
	}()
	for range env.Workers {
		q, err := u.open(nbuf)
		if q != nil {
			u.q = append(u.q, q)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// open opens and binds one worker's socket and sets up its arrays.
func (u *UDPPort) open(nbuf int) (*udpQueue, error) {
	family := unix.AF_INET
	if u.v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: socket: %v", ErrUDPPort, err)
	}
	q := &udpQueue{fd: fd}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return q, fmt.Errorf("%w: SO_REUSEPORT: %v", ErrUDPPort, err)
	}
	if u.v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return q, fmt.Errorf("%w: IPV6_V6ONLY: %v", ErrUDPPort, err)
		}
	}
	if sz := u.cfg.SocketBuffer; sz >= 0 {
		if sz == 0 {
			sz = DefaultUDPSocketBuffer
		}
		// Forced where the process may (CAP_NET_ADMIN), else up to the
		// sysctl limits: a smaller buffer only means earlier drops.
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, sz) != nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, sz)
		}
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sz) != nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sz)
		}
	}
	if u.gro && unix.SetsockoptInt(fd, unix.SOL_UDP, unix.UDP_GRO, 1) != nil {
		u.gro = false // before Linux 5.0: one datagram per packet
	}
	if !u.gsoOff.Load() {
		if _, err := unix.GetsockoptInt(fd, unix.SOL_UDP, unix.UDP_SEGMENT); err != nil {
			u.gsoOff.Store(true) // before Linux 4.18
		}
	}
	if u.noCheckTX {
		if u.v6 {
			unix.SetsockoptInt(fd, unix.SOL_UDP, unix.UDP_NO_CHECK6_TX, 1)
		} else {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_NO_CHECK, 1)
		}
	}
	var sa unix.Sockaddr
	if u.v6 {
		sa = &unix.SockaddrInet6{Addr: u.local.Addr().As16(), Port: int(u.local.Port())}
	} else {
		sa = &unix.SockaddrInet4{Addr: u.local.Addr().As4(), Port: int(u.local.Port())}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return q, fmt.Errorf("%w: bind %v: %v", ErrUDPPort, u.local, err)
	}
	if u.local.Port() == 0 { // the first socket picked the port: the others share it
		sn, err := unix.Getsockname(fd)
		if err != nil {
			return q, fmt.Errorf("%w: getsockname: %v", ErrUDPPort, err)
		}
		port := 0
		switch s := sn.(type) {
		case *unix.SockaddrInet4:
			port = s.Port
		case *unix.SockaddrInet6:
			port = s.Port
		}
		u.local = netip.AddrPortFrom(u.local.Addr(), uint16(port))
	}
	q.rmsgs = make([]unix.Mmsghdr, nbuf)
	q.riov = make([]unix.Iovec, nbuf)
	q.rnames = make([]unix.RawSockaddrInet6, nbuf)
	q.rctrl = make([]byte, nbuf*udpCtrl)
	q.rbuf = make([]byte, nbuf*udpSlot)
	q.rlen = make([]int, nbuf)
	q.rseg = make([]int, nbuf)
	q.rsrc = make([]udpPeer, nbuf)
	for i := range q.rmsgs {
		q.riov[i].Base = &q.rbuf[i*udpSlot]
		q.riov[i].SetLen(udpSlot)
		h := &q.rmsgs[i].Hdr
		h.Iov = &q.riov[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&q.rnames[i]))
	}
	for i := range q.tmsgs {
		h := &q.tmsgs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&q.tnames[i]))
		// The UDP_SEGMENT control message, written once; Transmit sets
		// its gso_size.
		c := (*unix.Cmsghdr)(unsafe.Pointer(&q.tctrl[i][0]))
		c.Level, c.Type = unix.SOL_UDP, unix.UDP_SEGMENT
		c.SetLen(unix.CmsgLen(2))
	}
	return q, nil
}

// Unbind closes the sockets.
func (u *UDPPort) Unbind() error {
	u.fdMu.Lock()
	defer u.fdMu.Unlock()
	return u.closeLocked()
}

// closeLocked closes the sockets; fdMu is held.
func (u *UDPPort) closeLocked() error {
	var errs []error
	for _, q := range u.q {
		if q.fd >= 0 {
			errs = append(errs, unix.Close(q.fd))
			q.fd = -1
		}
	}
	return errors.Join(errs...)
}

// udpGSORefusals is how many EINVAL refusals of a super-datagram in a
// row turn a port's GSO off (UDPPort.refusals).
const udpGSORefusals = 8

// hdrLen is the outer IP and UDP header length of the port's family.
func (u *UDPPort) hdrLen() int {
	if u.v6 {
		return 40 + 8
	}
	return 20 + 8
}

// recv reads up to len(q.rmsgs) datagrams without waiting and checks
// each: its payload length and segment size go to rlen and rseg (rlen
// 0 for a dropped one), its source to rsrc. It returns how many it read.
func (u *UDPPort) recv(q *udpQueue) int {
	for i := range q.rmsgs {
		h := &q.rmsgs[i].Hdr
		h.Namelen = unix.SizeofSockaddrInet6
		h.Flags = 0
		if u.gro {
			h.Control = &q.rctrl[i*udpCtrl]
			h.SetControllen(udpCtrl)
		}
	}
	r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(q.fd), uintptr(unsafe.Pointer(&q.rmsgs[0])), uintptr(len(q.rmsgs)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0
	}
	got := int(r)
	var super, trunc, family, empty uint64
	for i := range got {
		m := &q.rmsgs[i]
		q.rlen[i] = 0
		switch {
		case m.Hdr.Flags&unix.MSG_TRUNC != 0:
			trunc++ // never half a datagram
			continue
		case m.Len == 0:
			empty++
			continue
		}
		nm := &q.rnames[i]
		p := &q.rsrc[i]
		switch {
		case u.v6 && nm.Family == unix.AF_INET6:
			p.addr = nm.Addr
		case !u.v6 && nm.Family == unix.AF_INET:
			copy(p.addr[:4], (*unix.RawSockaddrInet4)(unsafe.Pointer(nm)).Addr[:])
		default:
			family++
			continue
		}
		p.port = binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&nm.Port))[:])
		q.rlen[i] = int(m.Len)
		q.rseg[i] = int(m.Len)
		if u.gro {
			if g := groSize(q.rctrl[i*udpCtrl:][:min(int(m.Hdr.Controllen), udpCtrl)]); g > 0 && g < int(m.Len) {
				q.rseg[i] = g
				super++
			}
		}
	}
	c := &q.c
	c.rxDatagrams.Add(uint64(got))
	if super > 0 {
		c.rxSuper.Add(super)
	}
	if trunc+family+empty > 0 {
		c.dropTruncated.Add(trunc)
		c.dropFamily.Add(family)
		c.dropEmpty.Add(empty)
	}
	return got
}

// groSize returns the gso_size of a UDP_GRO control message in ctrl,
// or 0 when there is none. It walks the messages by hand (no
// allocation) and never reads past ctrl.
func groSize(ctrl []byte) int {
	for len(ctrl) >= unix.SizeofCmsghdr {
		c := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
		l := int(c.Len)
		if l < unix.SizeofCmsghdr || l > len(ctrl) {
			return 0
		}
		if c.Level == unix.SOL_UDP && c.Type == unix.UDP_GRO && l >= unix.SizeofCmsghdr+4 {
			return int(*(*int32)(unsafe.Pointer(&ctrl[unix.SizeofCmsghdr])))
		}
		next := unix.CmsgSpace(l - unix.SizeofCmsghdr)
		if next > len(ctrl) {
			return 0
		}
		ctrl = ctrl[next:]
	}
	return 0
}

// Receive fills up to len(pkts) packets (at most MaxBatch) from the
// datagrams read so far and, when those run out, from one recvmmsg;
// what does not fit stays in the worker's buffers for its next call.
func (u *UDPPort) Receive(w int, pkts []sa.Packet) int {
	q := u.q[w]
	n := u.env.Alloc(pkts[:min(len(pkts), MaxBatch)])
	if n == 0 {
		return 0
	}
	hl := u.hdrLen()
	maxPayload := u.env.MaxPacket() - hl
	laddr := u.local.Addr().As16()
	if !u.v6 {
		copy(laddr[:4], u.local.Addr().AsSlice())
	}
	lport := u.local.Port()
	k, polled := 0, false
	var segs, nonESP, dropNE, dropKA, long uint64
	for k < n {
		if q.cur >= q.got {
			if polled {
				break
			}
			polled = true
			q.got, q.cur, q.off = u.recv(q), 0, 0
			if q.got == 0 {
				break
			}
			continue
		}
		i := q.cur
		if q.off >= q.rlen[i] {
			q.cur++
			q.off = 0
			continue
		}
		seg := min(q.rseg[i], q.rlen[i]-q.off)
		b := q.rbuf[i*udpSlot+q.off : i*udpSlot+q.off+seg]
		q.off += seg
		if q.rseg[i] < q.rlen[i] {
			segs++
		}
		// Not ESP (RFC 3948 §2.2, §2.3): NAT keepalives and the non-ESP
		// marker (IKE sharing port 4500).
		ka := len(b) == 1 && b[0] == 0xff
		if ka || (len(b) >= 4 && binary.BigEndian.Uint32(b) == 0) {
			switch {
			case u.cfg.NonESP != nil:
				src := &q.rsrc[i]
				u.cfg.NonESP(b, netip.AddrPortFrom(u.peerAddr(src), src.port))
				nonESP++
			case ka:
				dropKA++
			default:
				dropNE++
			}
			continue
		}
		if len(b) > maxPayload {
			long++
			continue
		}
		p := &pkts[k]
		copy(p.Buf[p.Off+hl:], b)
		p.Len = hl + len(b)
		src := &q.rsrc[i]
		if u.v6 {
			putIPv6UDP(p.Buf[p.Off:p.Off+p.Len], &src.addr, &laddr, src.port, lport)
		} else {
			putIPv4UDP(p.Buf[p.Off:p.Off+p.Len], [4]byte(src.addr[:4]), [4]byte(laddr[:4]), src.port, lport)
		}
		k++
	}
	u.env.Free(pkts[k:n])
	c := &q.c
	if k > 0 {
		c.rx.Add(uint64(k))
	}
	if segs > 0 {
		c.rxSegments.Add(segs)
	}
	if nonESP+dropNE+dropKA+long > 0 {
		c.nonESP.Add(nonESP)
		c.dropNonESP.Add(dropNE)
		c.dropKeepalive.Add(dropKA)
		c.dropTooLong.Add(long)
	}
	return k
}

// peerAddr returns p's address in the port's family.
func (u *UDPPort) peerAddr(p *udpPeer) netip.Addr {
	if u.v6 {
		return netip.AddrFrom16(p.addr)
	}
	return netip.AddrFrom4([4]byte(p.addr[:4]))
}

// putIPv4UDP writes an IPv4 header (TTL 64, checksum set) and a UDP
// header (checksum 0, which RFC 3948 §3.1.2 lets ESP in UDP use) for
// the payload after them in b.
func putIPv4UDP(b []byte, src, dst [4]byte, sport, dport uint16) {
	b[0], b[1] = 0x45, 0
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	clear(b[4:8]) // ID, flags, fragment offset
	b[8], b[9] = 64, unix.IPPROTO_UDP
	clear(b[10:12])
	copy(b[12:16], src[:])
	copy(b[16:20], dst[:])
	var s uint32
	for i := 0; i < 20; i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	s = s>>16 + s&0xffff
	s += s >> 16
	binary.BigEndian.PutUint16(b[10:], ^uint16(s))
	binary.BigEndian.PutUint16(b[20:], sport)
	binary.BigEndian.PutUint16(b[22:], dport)
	binary.BigEndian.PutUint16(b[24:], uint16(len(b)-20))
	clear(b[26:28])
}

// putIPv6UDP writes an IPv6 header (hop limit 64) and a UDP header for
// the payload after them in b. The UDP checksum is left 0: the kernel
// verified the datagram's checksum when it received it, and the header
// only carries the addresses and ports to the SAs (it never leaves the
// process).
func putIPv6UDP(b []byte, src, dst *[16]byte, sport, dport uint16) {
	b[0], b[1], b[2], b[3] = 0x60, 0, 0, 0
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
	b[6], b[7] = unix.IPPROTO_UDP, 64
	copy(b[8:24], src[:])
	copy(b[24:40], dst[:])
	binary.BigEndian.PutUint16(b[40:], sport)
	binary.BigEndian.PutUint16(b[42:], dport)
	binary.BigEndian.PutUint16(b[44:], uint16(len(b)-40))
	clear(b[46:48])
}

// udpPayload checks that b is an outer IPv4/UDP (unfragmented) or
// IPv6/UDP (no extension headers) packet of the port's family and
// returns the offset of its UDP payload and its destination.
func (u *UDPPort) udpPayload(b []byte, dst *udpPeer) (int, bool) {
	if u.v6 {
		if len(b) < 48 || b[0]>>4 != 6 || b[6] != unix.IPPROTO_UDP ||
			int(binary.BigEndian.Uint16(b[4:]))+40 != len(b) {
			return 0, false
		}
		dst.addr = [16]byte(b[24:40])
		dst.port = binary.BigEndian.Uint16(b[42:])
		return 48, true
	}
	if len(b) < 28 || b[0]>>4 != 4 {
		return 0, false
	}
	hl := int(b[0]&0x0f) * 4
	if hl < 20 || len(b) < hl+8 || b[9] != unix.IPPROTO_UDP || int(binary.BigEndian.Uint16(b[2:])) != len(b) ||
		binary.BigEndian.Uint16(b[6:])&0x3fff != 0 {
		return 0, false
	}
	dst.addr = [16]byte{}
	copy(dst.addr[:4], b[16:20])
	dst.port = binary.BigEndian.Uint16(b[hl+2:])
	return hl + 8, true
}

// Transmit sends each packet's UDP payload to its outer destination,
// consecutive ones as super-datagrams where it can, and frees every
// frame.
func (u *UDPPort) Transmit(w int, pkts []sa.Packet) {
	q := u.q[w]
	for len(pkts) > 0 {
		batch := pkts[:min(len(pkts), MaxBatch)]
		pkts = pkts[len(batch):]
		nv := 0
		for i := range batch {
			b := batch[i].Data()
			off, ok := u.udpPayload(b, &q.tdst[nv])
			if !ok {
				continue
			}
			q.tiov[nv].Base = nil // an empty payload has no first byte to point at
			if len(b) > off {
				q.tiov[nv].Base = &b[off]
			}
			q.tiov[nv].SetLen(len(b) - off)
			q.tlen[nv] = len(b) - off
			nv++
		}
		if bad := len(batch) - nv; bad > 0 {
			q.c.dropNotUDP.Add(uint64(bad))
		}
		u.send(q, nv)
		u.env.Free(batch)
	}
}

// send sends q's first nv packets (tiov, tdst, tlen) with sendmmsg,
// grouped into super-datagrams unless GSO is off; when the kernel
// refuses one it turns GSO off and sends the rest singly.
func (u *UDPPort) send(q *udpQueue, nv int) {
	maxGSO := udpMaxGSO4
	nameLen := uint32(unix.SizeofSockaddrInet4)
	if u.v6 {
		maxGSO, nameLen = udpMaxGSO6, unix.SizeofSockaddrInet6
	}
	c := &q.c
	var sent, dgrams, super, superSegs, full, sendErr uint64
	single := false // after a refusal: the rest of this batch singly
	for start := 0; start < nv; {
		gso := !single && !u.gsoOff.Load()
		nm := 0
		for j := start; j < nv; {
			g, l := 1, q.tlen[j]
			if gso && l > 0 {
				// Invariant: every segment but the last of a
				// super-datagram has the length l, the last at most l;
				// all go to one destination; at most UDPMaxSegments and
				// maxGSO bytes.
				total := l
				for j+g < nv && g < UDPMaxSegments && q.tdst[j+g] == q.tdst[j] &&
					q.tlen[j+g] > 0 && q.tlen[j+g] <= l && total+q.tlen[j+g] <= maxGSO {
					total += q.tlen[j+g]
					g++
					if q.tlen[j+g-1] < l {
						break // a shorter one ends the super-datagram
					}
				}
			}
			h := &q.tmsgs[nm].Hdr
			d := &q.tdst[j]
			nmp := &q.tnames[nm]
			if u.v6 {
				*nmp = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: d.addr}
			} else {
				n4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(nmp))
				*n4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: [4]byte(d.addr[:4])}
			}
			binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&nmp.Port))[:], d.port)
			h.Namelen = nameLen
			h.Iov = &q.tiov[j]
			h.SetIovlen(g)
			h.Control = nil
			h.SetControllen(0)
			if g > 1 {
				binary.NativeEndian.PutUint16(q.tctrl[nm][unix.SizeofCmsghdr:], uint16(l))
				h.Control = &q.tctrl[nm][0]
				h.SetControllen(unix.CmsgSpace(2))
			}
			q.tfirst[nm], q.tcnt[nm] = j, g
			nm++
			j += g
		}
		done, fallback := 0, -1
		for done < nm {
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(q.fd), uintptr(unsafe.Pointer(&q.tmsgs[done])),
				uintptr(nm-done), unix.MSG_DONTWAIT, 0, 0)
			if e == unix.EAGAIN || e == unix.ENOBUFS || (e == 0 && r == 0) {
				for i := done; i < nm; i++ { // the socket buffer is full: drop the rest, never wait
					full += uint64(q.tcnt[i])
				}
				break
			}
			if e != 0 {
				if (e == unix.EIO || e == unix.EINVAL) && q.tcnt[done] > 1 {
					// The kernel refuses GSO here: send this and the
					// rest of the batch singly. EIO (no checksum
					// offload on the route) is for good: remember it
					// for every worker; EINVAL only after
					// udpGSORefusals in a row.
					if e == unix.EIO || u.gsoRefused.Add(1) >= u.refusals {
						u.gsoOff.Store(true)
					}
					c.gsoFallbacks.Add(1)
					single, fallback = true, done
					break
				}
				sendErr += uint64(q.tcnt[done]) // unreachable, too long: drop this one, go on
				done++
				continue
			}
			for i := done; i < done+int(r); i++ {
				sent += uint64(q.tcnt[i])
				if q.tcnt[i] > 1 {
					super++
					superSegs += uint64(q.tcnt[i])
				}
			}
			if super > 0 && u.gsoRefused.Load() != 0 {
				u.gsoRefused.Store(0) // GSO works again
			}
			dgrams += uint64(r)
			done += int(r)
		}
		if fallback < 0 {
			break
		}
		start = q.tfirst[fallback]
	}
	if sent > 0 {
		c.tx.Add(sent)
		c.txDatagrams.Add(dgrams)
	}
	if super > 0 {
		c.txSuper.Add(super)
		c.txSegments.Add(superSegs)
	}
	if full+sendErr > 0 {
		c.dropFull.Add(full)
		c.dropSendError.Add(sendErr)
	}
}

// Maintain has nothing to do: Transmit sends at once.
func (u *UDPPort) Maintain(int, bool) {}

// InFlight is 0 for transmissions (Transmit finishes every packet);
// it is 1 while worker w holds received datagrams it has not split into
// packets yet (a Receive that found no free frame leaves them): the
// worker then sleeps briefly instead of waiting for its socket, which
// may stay quiet while those wait.
func (u *UDPPort) InFlight(w int) int {
	if q := u.q[w]; q.cur < q.got && (q.cur < q.got-1 || q.off < q.rlen[q.cur]) {
		return 1
	}
	return 0
}

// PollFDs returns worker w's socket.
func (u *UDPPort) PollFDs(w int) []int { return []int{u.q[w].fd} }

// WriteTo sends b as one datagram from the port's address to to (an
// IKE daemon's answer through the port it shares: b includes the
// non-ESP marker). Safe from any goroutine; it allocates (it is not for
// the data path).
func (u *UDPPort) WriteTo(b []byte, to netip.AddrPort) error {
	u.fdMu.RLock()
	defer u.fdMu.RUnlock()
	if len(u.q) == 0 || u.q[0].fd < 0 {
		return fmt.Errorf("%w: not bound", ErrUDPPort)
	}
	a := to.Addr().Unmap()
	var sa unix.Sockaddr
	switch {
	case u.v6 && a.Is6():
		sa = &unix.SockaddrInet6{Addr: a.As16(), Port: int(to.Port())}
	case !u.v6 && a.Is4():
		sa = &unix.SockaddrInet4{Addr: a.As4(), Port: int(to.Port())}
	default:
		return fmt.Errorf("%w: %v is not of the port's address family", ErrUDPPort, to)
	}
	return unix.Sendto(u.q[0].fd, b, unix.MSG_DONTWAIT, sa)
}

// Stats sums the workers' counters; PortStats.UDP has the port's own.
func (u *UDPPort) Stats() PortStats {
	us := &UDPPortStats{GSO: !u.gsoOff.Load(), GRO: u.gro}
	var st PortStats
	for _, q := range u.q {
		c := &q.c
		st.RX += c.rx.Load()
		st.TX += c.tx.Load()
		us.RXDatagrams += c.rxDatagrams.Load()
		us.RXSuper += c.rxSuper.Load()
		us.RXSegments += c.rxSegments.Load()
		us.TXDatagrams += c.txDatagrams.Load()
		us.TXSuper += c.txSuper.Load()
		us.TXSegments += c.txSegments.Load()
		us.GSOFallbacks += c.gsoFallbacks.Load()
		us.NonESP += c.nonESP.Load()
		us.DropNonESP += c.dropNonESP.Load()
		us.DropKeepalive += c.dropKeepalive.Load()
		us.DropEmpty += c.dropEmpty.Load()
		us.DropTooLong += c.dropTooLong.Load()
		us.DropTruncated += c.dropTruncated.Load()
		us.DropFamily += c.dropFamily.Load()
		us.DropNotUDP += c.dropNotUDP.Load()
		us.DropFull += c.dropFull.Load()
		us.DropSendError += c.dropSendError.Load()
	}
	st.Drops = us.DropNonESP + us.DropKeepalive + us.DropEmpty + us.DropTooLong + us.DropTruncated + us.DropFamily +
		us.DropNotUDP + us.DropFull + us.DropSendError
	st.UDP = us
	return st
}
