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

// greOverhead is what GRE adds to an inner packet: an outer IPv4 header
// and the 4-byte GRE header, plus 4 with a key.
func greOverhead(keyed bool) int {
	if keyed {
		return 20 + 8
	}
	return 20 + 4
}

// gatewayConfig is one end of the GRE-over-IPsec tunnel.
type gatewayConfig struct {
	ns *topo.NS
	// wan is the gateway's WAN port, where the engine runs; nextHop is
	// the MAC of the router behind it.
	wan     *topo.Link
	nextHop net.HardwareAddr
	// local and remote are the tunnel source and destination (the WAN
	// addresses): the GRE outer header and the transport-mode SAs both
	// use them.
	local, remote netip.Addr
	// out and in are the keys of the two SAs (sa.Config without mode,
	// addresses and selectors: startGateway fills those in).
	out, in sa.Config
	// tunAddr is the tunnel interface's address; farSite is routed
	// into it.
	tunAddr netip.Prefix
	farSite netip.Prefix
	keyed   bool
	key     uint32
}

// gateway is a running end: SAs, engine, tunnel interface and GRE.
type gateway struct {
	name     string
	out, in  *sa.SA
	eng      *xdp.Engine
	tun      *xdp.TUN
	gre      *greTunnel
	innerMTU int

	stop      chan struct{}
	served    chan error
	closeOnce sync.Once
	closeErr  error
}

// ---------------------------------------------------------------------
// The library-facing part: this is what a GRE-over-IPsec gateway built
// on espxdp does. Everything else in the example is scaffolding (the
// namespaces, the traffic, the printing).
// ---------------------------------------------------------------------

// startGateway sets up one gateway:
//
//  1. Two transport-mode SAs ("crypto ipsec transform-set ... mode
//     transport"), each restricted by its Selectors to GRE (IP protocol
//  47. between the two gateways, so nothing else can use them.
//  2. An SPD with one protect policy for that same traffic (the
//     "crypto map ... match address" access list): the engine finds the
//     outbound SA through it.
//  3. A TUN device as the tunnel interface ("interface Tunnel0"), with
//     the far site routed into it and an MTU that leaves room for GRE
//     and ESP.
//  4. An AF_XDP engine on the WAN port with no plaintext port: packets
//     come in through Engine.Send (the GRE loop) and the decrypted GRE
//     packets go out through the DeliverFunc (which strips GRE and
//     writes to the TUN).
func startGateway(name string, c gatewayConfig) (gw *gateway, err error) {
	gw = &gateway{name: name, stop: make(chan struct{}), served: make(chan error, 1)}
	defer func() {
		if err != nil {
			gw.close()
			gw = nil
		}
	}()
	greOnly := func(src, dst netip.Addr) []sa.Selector {
		return []sa.Selector{{Src: netip.PrefixFrom(src, 32), Dst: netip.PrefixFrom(dst, 32), Proto: 47}}
	}

	// 1. SAs. In transport mode the packet keeps its own IP header (the
	// GRE outer header, local → remote); ESP goes between it and GRE.
	outCfg := c.out
	outCfg.Direction, outCfg.Mode = sa.Out, esp.Transport
	outCfg.Local, outCfg.Remote = c.local, c.remote
	outCfg.Selectors = greOnly(c.local, c.remote)
	outCfg.PathMTU = wanMTU
	if gw.out, err = sa.New(outCfg); err != nil {
		return gw, err
	}
	inCfg := c.in
	inCfg.Direction, inCfg.Mode = sa.In, esp.Transport
	inCfg.Local, inCfg.Remote = c.local, c.remote
	inCfg.Selectors = greOnly(c.remote, c.local) // inbound: Src is the peer
	inCfg.PathMTU = wanMTU
	if gw.in, err = sa.New(inCfg); err != nil {
		return gw, err
	}
	sad := sa.NewSAD(sa.SADOptions{})
	if err = sad.Add(gw.out); err != nil {
		return gw, err
	}
	if err = sad.Add(gw.in); err != nil {
		return gw, err
	}

	// 2. SPD: protect GRE to the peer with the outbound SA. Anything
	// else handed to the engine matches no policy and is dropped
	// (DropNoPolicy): GRE never leaves in clear, and nothing but GRE is
	// encrypted.
	spd := sa.NewSPD(sa.SPDOptions{})
	if err = spd.Set([]*sa.Policy{{
		Name:     "gre-to-" + c.remote.String(),
		Selector: greOnly(c.local, c.remote)[0],
		Action:   sa.Protect,
		SA:       gw.out,
	}}); err != nil {
		return gw, err
	}
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, SPD: spd})
	if err != nil {
		return gw, err
	}

	// 3. The tunnel interface. OpenTUN creates the device in the
	// namespace of the calling thread, hence ns.Do.
	if err = c.ns.Do(func() (err error) { gw.tun, err = xdp.OpenTUN("tunnel0"); return err }); err != nil {
		return gw, err
	}
	// The SA's plaintext MTU covers the GRE packet (outer IP header
	// included, transport mode); the inner packet gets that minus GRE.
	gw.innerMTU = gw.out.PlaintextMTU() - greOverhead(c.keyed)
	// No IPv6 on the TUN: its link-local address would bring router
	// solicitations and MLD reports into the tunnel.
	if err = c.ns.Sysctl("net.ipv6.conf.tunnel0.disable_ipv6", "1"); err != nil {
		return gw, err
	}
	if _, err = c.ns.IP("link", "set", "tunnel0", "mtu", strconv.Itoa(gw.innerMTU), "up"); err != nil {
		return gw, err
	}
	if _, err = c.ns.IP("addr", "add", c.tunAddr.String(), "dev", "tunnel0"); err != nil {
		return gw, err
	}
	if err = c.ns.AddRoute(c.farSite, netip.Addr{}, "tunnel0", 0); err != nil {
		return gw, err
	}
	gw.gre = &greTunnel{local: c.local, remote: c.remote, keyed: c.keyed, key: c.key, tun: gw.tun}

	// 4. The engine. Its XDP program takes ESP to our WAN address
	// (LocalAddrs) into AF_XDP and leaves everything else (ARP, ICMP,
	// routing protocols) to the kernel. Start must run in the WAN
	// port's namespace.
	gw.eng, err = xdp.NewEngine(xdp.EngineConfig{
		Processor:  proc,
		Cipher:     xdp.Port{Name: c.wan.Name, NextHop: c.nextHop},
		LocalAddrs: []netip.Addr{c.local},
		Deliver:    gw.gre.deliver,
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
	gw.gre.eng = gw.eng
	go func() { gw.served <- gw.gre.serve(gw.stop, xdp.DefaultBatch) }()
	return gw, nil
}

// close stops the GRE loop, then the engine (its Deliver writes to the
// TUN), then closes the TUN. It is safe on a half-built gateway and may
// be called more than once.
func (gw *gateway) close() error {
	gw.closeOnce.Do(func() { gw.closeErr = gw.shutdown() })
	return gw.closeErr
}

func (gw *gateway) shutdown() error {
	var errs []error
	if gw.gre != nil && gw.gre.eng != nil {
		close(gw.stop)
		errs = append(errs, <-gw.served)
	}
	if gw.eng != nil {
		errs = append(errs, gw.eng.Stop())
	}
	if gw.tun != nil {
		errs = append(errs, gw.tun.Close())
	}
	for _, s := range []*sa.SA{gw.out, gw.in} {
		if s != nil {
			s.Close() // wipes the keys
		}
	}
	return errors.Join(errs...)
}
