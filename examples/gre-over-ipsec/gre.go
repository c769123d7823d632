//go:build linux

package main

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/espxdp/espxdp/xdp"
)

// GRE (RFC 2784, key from RFC 2890) built in Go, because the kernel this
// runs on may have no ip_gre module. This is the part of the example
// that a real router does in its GRE driver; it uses gopacket and
// allocates per packet, which is fine for an example and is not how
// the library's ESP path works (that one is allocation-free).

// GREStats are one gateway's GRE counters.
type GREStats struct {
	// Encapsulated: inner packets read from the tunnel interface,
	// wrapped in GRE and queued to the engine for ESP.
	Encapsulated uint64
	// Decapsulated: GRE packets the engine decrypted whose inner packet
	// was written to the tunnel interface.
	Decapsulated uint64
	// Bad: decrypted packets that were not GRE from the peer with the
	// right key and an IPv4/IPv6 payload, and packets that could not be
	// encapsulated.
	Bad uint64
	// SendDrops: GRE packets the engine could not queue (Engine.Send
	// found no free frame or a full queue).
	SendDrops uint64
}

// greTunnel is the "interface Tunnel0" of one gateway: tunnel source
// local, destination remote, optional key.
type greTunnel struct {
	local, remote netip.Addr
	keyed         bool
	key           uint32
	tun           *xdp.TUN
	eng           *xdp.Engine

	ipID                         uint16 // outer IPv4 ID, serve goroutine only
	encap, decap, bad, sendDrops atomic.Uint64
}

func (g *greTunnel) stats() GREStats {
	return GREStats{Encapsulated: g.encap.Load(), Decapsulated: g.decap.Load(), Bad: g.bad.Load(), SendDrops: g.sendDrops.Load()}
}

// encapsulate returns inner wrapped in GRE inside an outer IPv4 header
// local → remote (protocol 47): the packet the transport-mode SA then
// protects.
func (g *greTunnel) encapsulate(inner []byte) ([]byte, error) {
	var proto layers.EthernetType
	switch {
	case len(inner) >= 20 && inner[0]>>4 == 4:
		proto = layers.EthernetTypeIPv4
	case len(inner) >= 40 && inner[0]>>4 == 6:
		proto = layers.EthernetTypeIPv6
	default:
		return nil, errors.New("gre: inner packet is not IPv4 or IPv6")
	}
	g.ipID++
	outer := &layers.IPv4{
		Version: 4, IHL: 5, TTL: 64, Id: g.ipID,
		Flags:    layers.IPv4DontFragment,
		Protocol: layers.IPProtocolGRE,
		SrcIP:    g.local.AsSlice(), DstIP: g.remote.AsSlice(),
	}
	gre := &layers.GRE{Protocol: proto, KeyPresent: g.keyed, Key: g.key}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, outer, gre, gopacket.Payload(inner)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decapsulate checks that pkt is GRE from the peer with the tunnel's key
// and returns the inner packet. Without DecodeOptions.NoCopy gopacket
// copies pkt before decoding, so the result does not alias it: pkt
// points into a UMEM frame that the engine reuses as soon as Deliver
// returns.
func (g *greTunnel) decapsulate(pkt []byte) ([]byte, error) {
	p := gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.DecodeOptions{Lazy: true})
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip == nil {
		return nil, errors.New("gre: not IPv4")
	}
	if ip.Protocol != layers.IPProtocolGRE {
		return nil, fmt.Errorf("gre: IP protocol %d", ip.Protocol)
	}
	src, _ := netip.AddrFromSlice(ip.SrcIP)
	dst, _ := netip.AddrFromSlice(ip.DstIP)
	if src != g.remote || dst != g.local {
		return nil, fmt.Errorf("gre: %v → %v is not from the tunnel's peer", src, dst)
	}
	gre, _ := p.Layer(layers.LayerTypeGRE).(*layers.GRE)
	if gre == nil {
		return nil, errors.New("gre: truncated GRE header")
	}
	if gre.Version != 0 || gre.RoutingPresent || gre.KeyPresent != g.keyed || gre.Key != g.key {
		return nil, errors.New("gre: wrong version, routing or key")
	}
	inner := gre.LayerPayload()
	switch {
	case gre.Protocol == layers.EthernetTypeIPv4 && len(inner) >= 20 && inner[0]>>4 == 4,
		gre.Protocol == layers.EthernetTypeIPv6 && len(inner) >= 40 && inner[0]>>4 == 6:
		return inner, nil
	}
	return nil, fmt.Errorf("gre: payload type %v", gre.Protocol)
}

// deliver is the engine's DeliverFunc: pkts are the decrypted packets of
// the inbound transport-mode SA, i.e. outer IPv4 + GRE + inner packet.
// It runs on the engine's worker; the slices are only valid during the
// call, which is why decapsulate copies.
func (g *greTunnel) deliver(pkts [][]byte) {
	for _, pkt := range pkts {
		inner, err := g.decapsulate(pkt)
		if err != nil {
			g.bad.Add(1)
			continue
		}
		if _, err := g.tun.WriteBatch([][]byte{inner}); err != nil {
			g.bad.Add(1)
			continue
		}
		g.decap.Add(1)
	}
}

// serve reads what the kernel routes into the tunnel interface,
// encapsulates it and hands it to the engine (Engine.Send), which
// encrypts it with the SA the SPD selects and sends it on the WAN port.
// It returns nil when stop closes, or the first TUN or engine error.
func (g *greTunnel) serve(stop <-chan struct{}, batch int) error {
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, xdp.TUNBufSize)
	}
	sizes := make([]int, batch)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-stop:
			g.tun.SetReadDeadline(time.Unix(1, 0)) // wakes ReadBatch
		case <-done:
		}
	}()
	defer func() {
		close(done)
		wg.Wait()
	}()
	out := make([][]byte, 0, batch)
	for {
		n, err := g.tun.ReadBatch(bufs, sizes)
		if err != nil {
			select {
			case <-stop:
				return nil
			default:
				return err
			}
		}
		out = out[:0]
		for i := range n {
			pkt, err := g.encapsulate(bufs[i][:sizes[i]])
			if err != nil {
				g.bad.Add(1)
				continue
			}
			out = append(out, pkt)
		}
		if len(out) == 0 {
			continue
		}
		k, err := g.eng.Send(0, out)
		g.encap.Add(uint64(k))
		g.sendDrops.Add(uint64(len(out) - k))
		if err != nil {
			return err
		}
	}
}
