//go:build linux

package main

// This file is the part of the example a gateway product copies:
// everything in it is espxdp API (packages sa and xdp). The namespaces
// it runs in are built in topology.go, the wire tap in tap.go; that
// scaffolding stands in for real hosts and a packet capture.

import (
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

// newSAPair makes the two ends of one direction, as an IKE daemon would
// after negotiating a CHILD_SA for the traffic selector sel: out is
// installed at src, in at dst. Both carry the selector: outbound, the
// SA refuses to encrypt anything else; inbound, a decrypted packet
// outside it is dropped with DropPolicy (RFC 4301 §5.2: the peer may
// only send what was agreed). Tunnel mode, random keys, ESN, and the
// path MTU so that oversize packets are dropped (DropMTU).
func newSAPair(name string, spi uint32, tr esp.Transform, src, dst netip.Addr, pathMTU int, sel sa.Selector) (out, in *sa.SA, err error) {
	key := make([]byte, tr.KeyLen())
	auth := make([]byte, tr.AuthKeyLen())
	rand.Read(key)
	rand.Read(auth)
	defer clear(key)
	defer clear(auth)
	cfg := sa.Config{Name: name, SPI: spi, Direction: sa.Out, Mode: esp.Tunnel,
		Local: src, Remote: dst, Transform: tr, Key: key, AuthKey: auth,
		ESN: true, PathMTU: pathMTU, Selectors: []sa.Selector{sel}}
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

// gatewayConfig is what one policy-based gateway needs.
type gatewayConfig struct {
	Name string
	// LAN is the plaintext interface, LANNextHop the MAC of the host
	// behind it (a real gateway would use its LAN router's). WAN and
	// WANNextHop: the ciphertext side and the router behind it. The
	// engine writes Ethernet headers itself and does no ARP.
	LAN, WAN               string
	LANNextHop, WANNextHop net.HardwareAddr
	// Local is the gateway's WAN address (ESP is taken only to it).
	Local netip.Addr
	// Protected are the destinations the XDP program on the LAN takes
	// into the engine; everything else stays with the kernel.
	Protected []netip.Prefix
	// ClampMSS lowers the MSS option of TCP SYNs crossing the tunnel,
	// so that segments fit the SA's plaintext MTU.
	ClampMSS int
	// Policies is the crypto map: the SPD, first match wins.
	Policies []*sa.Policy
	// SAs are all SAs of the gateway, both directions.
	SAs []*sa.SA
	// Events receives EventAcquire (and SA lifetime events): the IKE
	// daemon's end of the data plane.
	Events sa.EventFunc
}

// gateway is a running policy-based gateway.
type gateway struct {
	Name   string
	SAs    []*sa.SA
	SPD    *sa.SPD
	Engine *xdp.Engine
}

// startGateway sets the gateway up inside ns.
func startGateway(ns *topo.NS, cfg gatewayConfig) (*gateway, error) {
	g := &gateway{Name: cfg.Name, SAs: cfg.SAs}
	// 1. SAD and SPD. No default Tunnel in the processor: a packet to a
	// protected prefix that matches no policy is dropped (DropNoPolicy),
	// as RFC 4301 wants.
	sad := sa.NewSAD(sa.SADOptions{Events: cfg.Events})
	for _, s := range cfg.SAs {
		if err := sad.Add(s); err != nil {
			return nil, err
		}
	}
	g.SPD = sa.NewSPD(sa.SPDOptions{Events: cfg.Events})
	if err := g.SPD.Set(cfg.Policies); err != nil {
		return nil, err
	}
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, SPD: g.SPD})
	if err != nil {
		return nil, err
	}
	// 2. The engine, with AF_XDP on both sides: the LAN's XDP program
	// redirects packets to the protected prefixes to the engine, which
	// applies the SPD (protect: encrypt onto the WAN; bypass: forward
	// onto the WAN unchanged; else drop); the WAN's program takes ESP to
	// Local, which the engine decrypts onto the LAN.
	g.Engine, err = xdp.NewEngine(xdp.EngineConfig{
		Processor:         proc,
		Cipher:            xdp.Port{Name: cfg.WAN, NextHop: cfg.WANNextHop},
		Plain:             &xdp.Port{Name: cfg.LAN, NextHop: cfg.LANNextHop},
		ProtectedPrefixes: cfg.Protected,
		LocalAddrs:        []netip.Addr{cfg.Local},
		ClampMSS:          cfg.ClampMSS,
		// A small UMEM (8 MiB) is plenty for one queue.
		UMEM: xdp.UMEMConfig{NumFrames: 2048, FillSize: 512, CompletionSize: 512},
	})
	if err != nil {
		return nil, err
	}
	// Start attaches XDP and opens the sockets: it must run on a thread
	// inside the namespace that holds the interfaces.
	if err := ns.Do(g.Engine.Start); err != nil {
		return nil, fmt.Errorf("%s: start engine: %w", cfg.Name, err)
	}
	return g, nil
}

// Close stops the engine (detaching XDP).
func (g *gateway) Close() error { return g.Engine.Stop() }

// printPolicies writes the SPD the way a router lists a crypto map.
func printPolicies(w io.Writer, name string, spd *sa.SPD) {
	fmt.Fprintf(w, "%s crypto map (SPD, first match wins):\n", name)
	for _, p := range spd.Policies() {
		proto := "any"
		switch p.Selector.Proto {
		case 0:
		case 1:
			proto = "icmp"
		case 6:
			proto = "tcp"
		case 17:
			proto = "udp"
		default:
			proto = fmt.Sprint(p.Selector.Proto)
		}
		what := ""
		if p.Action == sa.Protect {
			if p.SA != nil {
				st := p.SA.Stats()
				what = fmt.Sprintf("SA spi 0x%08x %s to %v", st.SPI, st.Transform, st.Remote)
			} else {
				what = "no SA yet: acquire"
			}
		}
		line := fmt.Sprintf("  %-24s %-8s %v → %v %-5s %s", p.Name, p.Action, p.Selector.Src, p.Selector.Dst, proto, what)
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
}

// describeAcquire renders an acquire event the way an IKE daemon logs
// the kernel's XFRM acquire.
func describeAcquire(e sa.Event) string {
	pol := "?"
	var want sa.Selector
	if e.Policy != nil {
		pol, want = e.Policy.Name, e.Policy.Selector
	}
	return fmt.Sprintf("ACQUIRE for policy %q: packet %v → %v proto %d; negotiate a CHILD_SA for %v === %v",
		pol, e.Packet.Src.Addr(), e.Packet.Dst.Addr(), e.Packet.Proto, want.Src, want.Dst)
}
