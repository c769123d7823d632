package xdp

import (
	"errors"
	"net/netip"
)

// UDPMaxSegments is the most ESP packets a UDPPort puts into one
// super-datagram: the kernel's UDP_MAX_SEGMENTS before Linux 6.9 (128
// since), so every kernel with UDP GSO takes it.
const UDPMaxSegments = 64

// Defaults of UDPPortConfig.
const (
	// DefaultUDPRecvBuffers is UDPPortConfig.RecvBuffers' default: 16
	// receive buffers of 64 KiB per worker (1 MiB).
	DefaultUDPRecvBuffers = 16
	// DefaultUDPSocketBuffer is UDPPortConfig.SocketBuffer's default.
	DefaultUDPSocketBuffer = 4 << 20
)

// ErrUDPPort is returned (wrapped) by UDPPort.Bind for a configuration
// or an address it cannot serve.
var ErrUDPPort = errors.New("xdp: udp port")

// UDPPortConfig configures a UDPPort.
type UDPPortConfig struct {
	// Local is the address the sockets are bound to: a specific IPv4
	// or IPv6 address (it becomes the destination of the outer header
	// the port writes, which the SAs check; an unspecified address is
	// refused). Port 0 means esp.NATTPort (4500), unless EphemeralPort.
	Local netip.AddrPort
	// EphemeralPort lets the kernel pick a free port when Local's port
	// is 0 (tests; see UDPPort.Addr).
	EphemeralPort bool
	// NoGSO and NoGRO turn off UDP segmentation offload on transmit
	// (UDP_SEGMENT) and UDP receive coalescing (UDP_GRO).
	NoGSO, NoGRO bool
	// RecvBuffers is how many 64 KiB receive buffers each worker has
	// (one recvmmsg reads at most that many datagrams or
	// super-datagrams); 0 means DefaultUDPRecvBuffers.
	RecvBuffers int
	// SocketBuffer is each socket's SO_RCVBUF and SO_SNDBUF in bytes
	// (forced past the sysctl limits where the process may, else as
	// far as they allow); 0 means DefaultUDPSocketBuffer, -1 leaves
	// the kernel's defaults.
	SocketBuffer int
	// NonESP, if set, receives what arrives on the port and is not ESP:
	// datagrams behind the non-ESP marker (IKE on port 4500, marker
	// included: the first four bytes are zero) and NAT keepalives (one
	// byte 0xff), with their source, so that an IKE daemon can share
	// the port. It runs on a worker's thread: it must not block, and
	// b is valid only during the call (copy what it keeps). Without
	// it those datagrams are counted drops (DropNonESP, DropKeepalive).
	NonESP func(b []byte, from netip.AddrPort)
}
