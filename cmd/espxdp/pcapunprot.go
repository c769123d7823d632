package main

import (
	"encoding/binary"
	"net/netip"

	"github.com/espxdp/espxdp/bpf"
	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/internal/gateway"
)

// unprotCheck is pcap decrypt's view of the gateway's clear-text discard
// (RFC 4301 §5.2, bpf.Unprotected): a packet in an ESP capture that is
// not ESP, NAT-T, IKE or a keepalive, and that the configuration
// protects, is what a running gateway would discard. pcap decrypt counts
// it as "unprotected, would be discarded" instead of handing it to the
// SA processor (which would count it as not-esp).
type unprotCheck struct {
	u    bpf.Unprotected
	natt uint16
}

// newUnprotCheck returns nil for a configuration without gateway
// sections (nothing is protected there beyond the SAs).
func newUnprotCheck(cfg *config.Config, natt uint16) (*unprotCheck, error) {
	u, err := gateway.Unprotected(cfg.Gateway)
	if err != nil || u.Empty() {
		return nil, err
	}
	if natt == 0 {
		natt = bpf.DefaultNATTPort
	}
	return &unprotCheck{u: u, natt: natt}, nil
}

// classify looks at the IP packet ip.
func (c *unprotCheck) classify(ip []byte) bpf.UnprotectedVerdict {
	var p bpf.Packet
	var l4 []byte
	switch {
	case len(ip) >= 20 && ip[0]>>4 == 4:
		hl := int(ip[0]&0xf) * 4
		if hl < 20 || len(ip) < hl {
			return bpf.NotProtected
		}
		p.Src, p.Dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		p.Proto = ip[9]
		if binary.BigEndian.Uint16(ip[6:])&0x1fff == 0 { // not a later fragment
			l4 = ip[hl:]
		}
	case len(ip) >= 40 && ip[0]>>4 == 6:
		p.Src, p.Dst = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		p.Proto = ip[6]
		l4 = ip[40:] // extension headers are not walked: their "ports" are not taken
		switch p.Proto {
		case 0, 43, 44, 60:
			l4 = nil
		}
	default:
		return bpf.NotProtected
	}
	if p.Proto == 50 {
		return bpf.NotProtected // ESP: the SA processor's business
	}
	switch p.Proto {
	case 6, 17, 33, 132, 136:
		if len(l4) >= 4 {
			p.Ports, p.SPort, p.DPort = true, binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
		}
	}
	if p.Proto == 17 && p.Ports && (p.DPort == c.natt || p.DPort == bpf.IKEPort) {
		return bpf.NotProtected // NAT-T, IKE, keepalives: the tunnel itself
	}
	v, _ := c.u.Classify(p)
	return v
}
