//go:build linux

package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

// gatewayConfig is one end of the tunnel.
type gatewayConfig struct {
	ns *topo.NS
	// wan is the gateway's WAN port, where the engine runs; nextHop is
	// the MAC of the NAT's port behind it.
	wan     *topo.Link
	nextHop net.HardwareAddr
	// local is the WAN address (gwA: its private address).
	local netip.Addr
	// out and in are the keys of the two SAs (sa.Config without mode,
	// addresses and ports: installSAs fills those in).
	out, in sa.Config
	// farSite is routed into the tunnel interface.
	farSite netip.Prefix
}

// gateway is a running end: tunnel, engine and TUN; the SAs come with
// installSAs, once the peer's address and port are known.
type gateway struct {
	name string
	cfg  gatewayConfig

	sad    *sa.SAD
	tunnel *sa.Tunnel
	eng    *xdp.Engine
	tun    *xdp.TUN

	mu      sync.Mutex
	out, in *sa.SA
	peer    netip.AddrPort

	stop      chan struct{}
	served    chan error
	closeOnce sync.Once
	closeErr  error
}

// ---------------------------------------------------------------------
// The library-facing part: a route-based ESP-in-UDP gateway on espxdp.
// Everything else in the example is scaffolding (namespaces, NAT,
// traffic, printing) or stands in for IKE (keepalive.go).
// ---------------------------------------------------------------------

// startGateway brings up the data plane of one gateway without SAs:
//
//  1. An SAD and a route-based sa.Tunnel; the processor sends
//     everything that reaches it through the tunnel's outbound SA
//     (none yet: such packets are dropped with DropAcquire and raise an
//     acquire event).
//  2. A TUN device as the tunnel interface, with the far site routed
//     into it.
//  3. An AF_XDP engine on the WAN port. Its XDP program takes ESP-in-UDP
//     to port 4500 (and plain ESP) into AF_XDP and passes NAT-keepalives
//     and IKE to the kernel, where a UDP socket on port 4500 gets them.
//     Decrypted packets go to the TUN (EngineConfig.Deliver =
//     TUN.Deliver) and xdp.ServeTUN feeds what the kernel routes into
//     the TUN to the engine.
func startGateway(name string, c gatewayConfig) (gw *gateway, err error) {
	gw = &gateway{name: name, cfg: c, stop: make(chan struct{}), served: make(chan error, 1)}
	defer func() {
		if err != nil {
			gw.close()
			gw = nil
		}
	}()
	// 1. SAD, tunnel, processor.
	gw.sad = sa.NewSAD(sa.SADOptions{})
	gw.tunnel = sa.NewTunnel(name + "-natt")
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: gw.sad, Tunnel: gw.tunnel, NATTPort: esp.NATTPort})
	if err != nil {
		return gw, err
	}

	// 2. The tunnel interface, created inside the gateway's namespace.
	if err = c.ns.Do(func() (err error) { gw.tun, err = xdp.OpenTUN("tun0"); return err }); err != nil {
		return gw, err
	}
	// No IPv6 on the TUN: its link-local address would bring router
	// solicitations and MLD reports into the tunnel.
	if err = c.ns.Sysctl("net.ipv6.conf.tun0.disable_ipv6", "1"); err != nil {
		return gw, err
	}
	if _, err = c.ns.IP("link", "set", "tun0", "up"); err != nil {
		return gw, err
	}
	if err = c.ns.AddRoute(c.farSite, netip.Addr{}, "tun0", 0); err != nil {
		return gw, err
	}

	// 3. The engine; Start must run in the WAN port's namespace.
	gw.eng, err = xdp.NewEngine(xdp.EngineConfig{
		Processor:  proc,
		Cipher:     xdp.Port{Name: c.wan.Name, NextHop: c.nextHop},
		LocalAddrs: []netip.Addr{c.local},
		NATTPort:   esp.NATTPort,
		Deliver:    gw.tun.Deliver,
		// A small UMEM: this example moves little traffic.
		UMEM: xdp.UMEMConfig{NumFrames: 2048, FillSize: 512, CompletionSize: 512},
	})
	if err != nil {
		return gw, err
	}
	if err = c.ns.Do(gw.eng.Start); err != nil {
		gw.eng = nil
		return gw, fmt.Errorf("%s: engine: %w", name, err)
	}
	go func() { gw.served <- xdp.ServeTUN(gw.eng, gw.tun, 0, gw.stop) }()
	return gw, nil
}

// installSAs creates the two ESP-in-UDP tunnel-mode SAs towards peer
// (address and UDP port) and binds them to the tunnel. On gwA, the peer
// is the configured public address of gwB and port 4500. On gwB, it is
// where gwA's packets come from as the NAT rewrote them: the NAT's
// public address and the port it mapped gwA's 4500 to (see
// keepalive.go: learned from the first packet that arrives, as IKEv2's
// responder does from IKE_SA_INIT).
//
// The outbound SA's Remote and RemotePort are the outer destination of
// every packet the engine sends; the inbound SA is found by SPI alone,
// so the NAT's rewriting of the source does not matter to it. Both get
// the WAN MTU as path MTU, and the TUN gets the SA's plaintext MTU.
func (gw *gateway) installSAs(peer netip.AddrPort) error {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	if gw.out != nil {
		return fmt.Errorf("%s: SAs already installed for %v", gw.name, gw.peer)
	}
	mk := func(c sa.Config, dir sa.Direction) (*sa.SA, error) {
		c.Direction, c.Mode = dir, esp.Tunnel
		c.Local, c.Remote = gw.cfg.local, peer.Addr()
		c.UDPEncap = true
		c.LocalPort, c.RemotePort = esp.NATTPort, peer.Port()
		c.PathMTU = wanMTU
		return sa.New(c)
	}
	in, err := mk(gw.cfg.in, sa.In)
	if err != nil {
		return err
	}
	out, err := mk(gw.cfg.out, sa.Out)
	if err != nil {
		in.Close()
		return err
	}
	// Make-before-break order: inbound first, so that the peer's
	// answers to our first packets can already be decrypted.
	if err := gw.sad.Add(in); err != nil {
		in.Close()
		out.Close()
		return err
	}
	gw.tunnel.AddInbound(in)
	if err := gw.sad.Add(out); err != nil {
		out.Close()
		return err
	}
	if _, err := gw.cfg.ns.IP("link", "set", "tun0", "mtu", strconv.Itoa(out.PlaintextMTU())); err != nil {
		return err
	}
	gw.tunnel.SetOutbound(out) // from now on the TUN's packets go to peer
	gw.in, gw.out, gw.peer = in, out, peer
	return nil
}

// sas returns the installed SAs (nil before installSAs).
func (gw *gateway) sas() (out, in *sa.SA) {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	return gw.out, gw.in
}

// close stops ServeTUN, then the engine (its Deliver writes to the TUN),
// then closes the TUN and wipes the keys. Safe on a half-built gateway,
// and more than once.
func (gw *gateway) close() error {
	gw.closeOnce.Do(func() {
		var errs []error
		if gw.eng != nil {
			close(gw.stop)
			errs = append(errs, <-gw.served)
			errs = append(errs, gw.eng.Stop())
		}
		if gw.tun != nil {
			errs = append(errs, gw.tun.Close())
		}
		if gw.sad != nil {
			for _, s := range gw.sad.All() {
				s.Close()
			}
		}
		gw.closeErr = errors.Join(errs...)
	})
	return gw.closeErr
}
