//go:build linux

package main

// This file is the part of the example a VPN product copies: everything
// in it is espxdp API (packages sa and xdp). The namespaces it runs in
// are built in topology.go; that scaffolding stands in for real hosts.

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

// newSAPair makes the two ends of one direction of the tunnel, as an
// IKE daemon would after a CHILD_SA exchange: out is installed at src,
// in at dst. Tunnel mode, random keys, ESN and anti-replay on, and the
// path MTU set so that oversize packets are dropped (DropMTU) instead of
// leaving too big for the WAN.
func newSAPair(name string, spi uint32, tr esp.Transform, src, dst netip.Addr, pathMTU int) (out, in *sa.SA, err error) {
	key := make([]byte, tr.KeyLen())
	auth := make([]byte, tr.AuthKeyLen())
	rand.Read(key)
	rand.Read(auth)
	defer clear(key)
	defer clear(auth)
	cfg := sa.Config{Name: name, SPI: spi, Direction: sa.Out, Mode: esp.Tunnel,
		Local: src, Remote: dst, Transform: tr, Key: key, AuthKey: auth,
		ESN: true, PathMTU: pathMTU}
	if out, err = sa.New(cfg); err != nil {
		return nil, nil, err
	}
	// The receiver's view: the outer destination is its own address
	// (Local), the source the sender's (Remote); it drops ESP arriving
	// from or to other addresses (sa.DropOuter).
	cfg.Direction, cfg.Local, cfg.Remote = sa.In, dst, src
	if in, err = sa.New(cfg); err != nil {
		return nil, nil, err
	}
	return out, in, nil
}

// gatewayConfig is what one gateway needs to know.
type gatewayConfig struct {
	Name string
	// WAN is the ciphertext interface and WANNextHop the MAC of the
	// router behind it: the engine writes Ethernet headers itself.
	WAN        string
	WANNextHop net.HardwareAddr
	// Local is the gateway's WAN address (ESP is taken only to it).
	Local netip.Addr
	// Out and In are the SAs towards and from the peer.
	Out, In *sa.SA
	// TUN names the tunnel interface and TUNAddr its address.
	TUN     string
	TUNAddr netip.Prefix
}

// gateway is a running route-based VPN gateway: a TUN device whose
// packets the engine encrypts onto the WAN, and into which it writes the
// packets it decrypts.
type gateway struct {
	Name   string
	Out    *sa.SA
	In     *sa.SA
	TUN    *xdp.TUN
	Engine *xdp.Engine

	ns     *topo.NS
	stop   chan struct{}
	served chan error
}

// Up brings the tunnel interface up: call it once both ends run (as
// once IKE has installed the SAs at both). Routes into the TUN need it
// up.
func (g *gateway) Up() error {
	_, err := g.ns.IP("link", "set", "dev", g.TUN.Name(), "up")
	return err
}

// startGateway sets the gateway up inside ns, its TUN still down (Up).
func startGateway(ns *topo.NS, cfg gatewayConfig) (g *gateway, err error) {
	g = &gateway{Name: cfg.Name, Out: cfg.Out, In: cfg.In, ns: ns}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()

	// 1. The SAD holds both SAs (inbound ones are looked up by SPI); the
	// sa.Tunnel binds them to this tunnel interface: route-based, so no
	// selectors - whatever the kernel routes into the TUN is protected.
	sad := sa.NewSAD(sa.SADOptions{})
	if err := sad.Add(cfg.Out); err != nil {
		return g, err
	}
	if err := sad.Add(cfg.In); err != nil {
		return g, err
	}
	tunnel := sa.NewTunnel(cfg.Name + "-" + cfg.TUN)
	tunnel.SetOutbound(cfg.Out)
	tunnel.AddInbound(cfg.In)
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Tunnel: tunnel})
	if err != nil {
		return g, err
	}

	// 2. The TUN device, created in the gateway's namespace. Its MTU is
	// the SA's plaintext MTU: the kernel then sends "fragmentation
	// needed" for anything bigger, and TCP's path MTU discovery adapts.
	// It stays down until Up: once up, the kernel may send into it at
	// once (with IPv6, its MLD reports), and the peer's engine must be
	// there to take that ESP, or the peer's kernel answers it in clear
	// ("unrecognized next header").
	if err := ns.Do(func() (err error) { g.TUN, err = xdp.OpenTUN(cfg.TUN); return err }); err != nil {
		return g, err
	}
	mtu := cfg.Out.PlaintextMTU()
	for _, args := range [][]string{
		{"link", "set", "dev", g.TUN.Name(), "mtu", fmt.Sprint(mtu)},
		{"addr", "add", cfg.TUNAddr.String(), "dev", g.TUN.Name()},
	} {
		if _, err := ns.IP(args...); err != nil {
			return g, err
		}
	}

	// 3. The engine: AF_XDP on the WAN interface only (Plain nil).
	// Decrypted packets go to the TUN (Deliver); ServeTUN reads the TUN
	// and hands its packets to the engine for encryption.
	g.Engine, err = xdp.NewEngine(xdp.EngineConfig{
		Processor:  proc,
		Cipher:     xdp.Port{Name: cfg.WAN, NextHop: cfg.WANNextHop},
		LocalAddrs: []netip.Addr{cfg.Local},
		Deliver:    g.TUN.Deliver,
		// A small UMEM (8 MiB) is plenty for one queue.
		UMEM: xdp.UMEMConfig{NumFrames: 2048, FillSize: 512, CompletionSize: 512},
	})
	if err != nil {
		return g, err
	}
	// Start attaches XDP and opens the sockets: it must run on a thread
	// inside the namespace that holds the WAN interface.
	if err := ns.Do(g.Engine.Start); err != nil {
		g.Engine = nil
		return g, fmt.Errorf("%s: start engine: %w", cfg.Name, err)
	}
	g.stop, g.served = make(chan struct{}), make(chan error, 1)
	go func() { g.served <- xdp.ServeTUN(g.Engine, g.TUN, 0, g.stop) }()
	return g, nil
}

// Close stops ServeTUN and the engine and closes the TUN (which removes
// the device). It is safe on a partly started gateway.
func (g *gateway) Close() error {
	var errs []error
	if g.stop != nil {
		close(g.stop)
		select {
		case err := <-g.served:
			errs = append(errs, err)
		case <-time.After(2 * time.Second):
			errs = append(errs, fmt.Errorf("%s: ServeTUN did not stop", g.Name))
		}
		g.stop = nil
	}
	if g.Engine != nil {
		errs = append(errs, g.Engine.Stop())
	}
	if g.TUN != nil {
		errs = append(errs, g.TUN.Close())
		g.TUN = nil
	}
	return errors.Join(errs...)
}
