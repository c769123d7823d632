//go:build linux

package main

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/topo"
)

// NAT-T keepalives (RFC 3948 §2.3, §4): a UDP datagram from port 4500 to
// port 4500 whose payload is the single byte 0xFF. The peer behind a NAT
// sends one whenever it has sent nothing else for a while, so that the
// NAT keeps the mapping of its port 4500; the receiver ignores it. Here
// they travel through kernel UDP sockets bound to port 4500 in the
// gateways: the engine's XDP program passes keepalives (and IKE) to the
// kernel and takes only ESP-in-UDP.
//
// The listener also stands in for the part of IKEv2 that finds the NAT
// (RFC 7296 §2.23): a responder behind no NAT learns its peer's public
// address and port from the source of the peer's IKE messages, as the
// NAT rewrote them, and sends everything there, ESP-in-UDP included.
// This example has no IKE, so gwB takes that address from the first
// keepalive. A keepalive is not authenticated, though: a real
// implementation updates the peer's address only from authenticated
// IKE messages (or ESP packets that verified), never from a keepalive.

// keepaliveSender sends a keepalive every interval (the first at once).
type keepaliveSender struct {
	conn *net.UDPConn
	sent atomic.Uint64
	errs atomic.Uint64
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// startKeepalives opens a UDP socket on port 4500 in ns and sends
// keepalives to peer from it.
func startKeepalives(ns *topo.NS, peer netip.AddrPort, interval time.Duration) (*keepaliveSender, error) {
	k := &keepaliveSender{stop: make(chan struct{})}
	if err := ns.Do(func() (err error) {
		k.conn, err = net.ListenUDP("udp4", &net.UDPAddr{Port: esp.NATTPort})
		return err
	}); err != nil {
		return nil, err
	}
	dst := net.UDPAddrFromAddrPort(peer)
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if _, err := k.conn.WriteToUDP([]byte{0xff}, dst); err != nil {
				k.errs.Add(1)
			} else {
				k.sent.Add(1)
			}
			select {
			case <-k.stop:
				return
			case <-t.C:
			}
		}
	}()
	return k, nil
}

// close stops the keepalives; it may be called more than once.
func (k *keepaliveSender) close() {
	k.once.Do(func() {
		close(k.stop)
		k.wg.Wait()
		k.conn.Close()
	})
}

// keepaliveListener reads port 4500 in a gateway's kernel: keepalives,
// and what else the XDP program passes there (IKE, were there any).
type keepaliveListener struct {
	conn     *net.UDPConn
	received atomic.Uint64 // keepalives
	other    atomic.Uint64 // other datagrams on port 4500
	wg       sync.WaitGroup

	mu      sync.Mutex
	peer    netip.AddrPort // the first keepalive's source
	moved   uint64         // keepalives from another source since
	learned chan struct{}  // closed when peer is set
}

// listenKeepalives opens port 4500 in ns; onPeer runs once, with the
// source of the first keepalive.
func listenKeepalives(ns *topo.NS, onPeer func(netip.AddrPort)) (*keepaliveListener, error) {
	l := &keepaliveListener{learned: make(chan struct{})}
	if err := ns.Do(func() (err error) {
		l.conn, err = net.ListenUDP("udp4", &net.UDPAddr{Port: esp.NATTPort})
		return err
	}); err != nil {
		return nil, err
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := l.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(10 * time.Millisecond) // e.g. a queued ICMP error
				continue
			}
			if n != 1 || buf[0] != 0xff {
				l.other.Add(1)
				continue
			}
			l.received.Add(1)
			from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
			l.mu.Lock()
			first := !l.peer.IsValid()
			if first {
				l.peer = from
			} else if from != l.peer {
				l.moved++
			}
			l.mu.Unlock()
			if first {
				onPeer(from)
				close(l.learned)
			}
		}
	}()
	return l, nil
}

// learnedPeer returns the peer learned from the first keepalive, and how
// many keepalives came from another source afterwards (a NAT that
// changed its mapping: this example does not follow it).
func (l *keepaliveListener) learnedPeer() (netip.AddrPort, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peer, l.moved
}

// close closes the socket and waits for the reader; it may be called
// more than once.
func (l *keepaliveListener) close() {
	l.conn.Close()
	l.wg.Wait()
}
