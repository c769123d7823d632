package gateway

import (
	"net"
	"net/netip"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/xdp"
)

// This file is the gateway side of interfaces.cipher.mode udp: the
// engine's ciphertext side is an xdp.UDPPort on port 4500 of the one
// local address (ESP in UDP with UDP GSO and GRO, no XDP program), and
// IKE on port 4500 of that address shares its sockets: the port hands
// the datagrams behind the non-ESP marker to udpNonESP, which queues
// them for the IKE dispatcher (a worker never blocks on IKE), and the
// peers' Endpoints write through udpPortConn.

// udpIKEQueue is how many IKE datagrams from the UDP port wait for the
// dispatcher; more are dropped (and counted as unknown), as a full
// socket buffer would.
const udpIKEQueue = 256

// udpDatagram is an IKE datagram from the UDP port (marker included).
type udpDatagram struct {
	b    []byte
	from netip.AddrPort
}

// newUDPCipherPort returns the UDP cipher port of the configuration and
// makes the queue its IKE datagrams go to.
func (gw *Gateway) newUDPCipherPort() *xdp.UDPPort {
	gw.udpIKE = make(chan udpDatagram, udpIKEQueue)
	return xdp.NewUDPPort(xdp.UDPPortConfig{
		Local:  netip.AddrPortFrom(gw.g.Cipher.Local[0], esp.NATTPort),
		NonESP: gw.udpNonESP,
	})
}

// udpNonESP takes what the UDP port received that is not ESP, on a
// worker's thread: NAT keepalives are left to the counting raw sockets
// (keepalive_linux.go, which see them as before); IKE is copied and
// queued without waiting.
func (gw *Gateway) udpNonESP(b []byte, from netip.AddrPort) {
	if len(b) == 1 && b[0] == 0xff {
		return
	}
	select {
	case gw.udpIKE <- udpDatagram{append([]byte(nil), b...), from}:
	default:
		gw.ikeUnknown.Add(1)
	}
}

// dispatchUDPIKE hands the queued IKE datagrams to their peers'
// Endpoints (as readIKE does for a kernel socket on 4500) until stop.
func (gw *Gateway) dispatchUDPIKE(local netip.Addr, stop <-chan struct{}) {
	defer gw.wg.Done()
	for {
		select {
		case <-stop:
			return
		case d := <-gw.udpIKE:
			from := netip.AddrPortFrom(d.from.Addr().Unmap(), d.from.Port())
			if p := gw.peerFor(local, from.Addr()); p != nil {
				p.ep.HandlePacket(d.b, from, true)
			} else {
				gw.ikeUnknown.Add(1)
			}
		}
	}
}

// udpPortConn is the net.PacketConn an Endpoint writes its port-4500
// messages to when the UDP cipher port holds that port: writes go out
// of the port's sockets (UDPPort.WriteTo); reads never happen (the
// gateway dispatches, Endpoint.Serve is not used).
type udpPortConn struct{ p *xdp.UDPPort }

// ReadFrom is not used: it reports a closed connection.
func (udpPortConn) ReadFrom([]byte) (int, net.Addr, error) { return 0, nil, net.ErrClosed }

// WriteTo sends b to addr (a *net.UDPAddr) from the port's address.
func (c udpPortConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, net.InvalidAddrError("not a UDP address")
	}
	if err := c.p.WriteTo(b, ua.AddrPort()); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Close does nothing: the engine closes the port.
func (udpPortConn) Close() error { return nil }

// LocalAddr is the port's address.
func (c udpPortConn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.p.Addr()) }

func (udpPortConn) SetDeadline(time.Time) error      { return nil }
func (udpPortConn) SetReadDeadline(time.Time) error  { return nil }
func (udpPortConn) SetWriteDeadline(time.Time) error { return nil }
