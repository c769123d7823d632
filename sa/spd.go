package sa

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/espxdp/espxdp/esp"
)

// flow is what a selector looks at in a packet.
type flow struct {
	src, dst     netip.Addr
	proto        uint8
	sport, dport uint16
	ports        bool // the packet has port numbers (TCP/UDP/SCTP/..., first fragment)
}

// hasPorts lists the protocols whose first four bytes are two ports:
// TCP, UDP, DCCP, SCTP, UDP-Lite.
func hasPorts(proto uint8) bool {
	switch proto {
	case 6, 17, 33, 132, 136:
		return true
	}
	return false
}

// parseFlow reads the selector fields of the IP packet b. Non-initial
// fragments have no ports (RFC 4301 §4.4.1.1 calls them OPAQUE); they
// match only selectors without port ranges.
func parseFlow(b []byte, f *flow) error {
	*f = flow{}
	if len(b) < 1 {
		return esp.ErrTruncated
	}
	var l4 int
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return esp.ErrTruncated
		}
		hl := int(b[0]&0x0f) * 4
		if hl < 20 || hl > len(b) {
			return esp.ErrMalformed
		}
		f.src = netip.AddrFrom4([4]byte(b[12:16]))
		f.dst = netip.AddrFrom4([4]byte(b[16:20]))
		f.proto = b[9]
		if binary.BigEndian.Uint16(b[6:])&0x1fff != 0 {
			return nil
		}
		l4 = hl
	case 6:
		if len(b) < 40 {
			return esp.ErrTruncated
		}
		f.src = netip.AddrFrom16([16]byte(b[8:24]))
		f.dst = netip.AddrFrom16([16]byte(b[24:40]))
		nh, off := b[6], 40
	walk:
		for i := 0; ; i++ {
			switch nh {
			case 0, 43, 60, 44, 51:
				if i == 8 || off+8 > len(b) {
					return esp.ErrMalformed
				}
				n := 8 + int(b[off+1])*8
				switch nh {
				case 44:
					n = 8
					if binary.BigEndian.Uint16(b[off+2:])&0xfff8 != 0 {
						f.proto = b[off]
						return nil
					}
				case 51:
					n = (int(b[off+1]) + 2) * 4
				}
				nh, off = b[off], off+n
				if off > len(b) {
					return esp.ErrMalformed
				}
			default:
				break walk
			}
		}
		f.proto, l4 = nh, off
	default:
		return fmt.Errorf("%w: not IPv4 or IPv6", esp.ErrMalformed)
	}
	if hasPorts(f.proto) && l4+4 <= len(b) {
		f.sport = binary.BigEndian.Uint16(b[l4:])
		f.dport = binary.BigEndian.Uint16(b[l4+2:])
		f.ports = true
	}
	return nil
}

// IsZero reports whether r is the zero range (any port).
func (r PortRange) IsZero() bool { return r == PortRange{} }

// Contains reports whether port is in the range (always for the zero
// range).
func (r PortRange) Contains(port uint16) bool {
	return r.IsZero() || r.Lo <= port && port <= r.Hi
}

func (s *Selector) validate() error {
	if !s.SrcPorts.IsZero() && s.SrcPorts.Lo > s.SrcPorts.Hi {
		return fmt.Errorf("source port range %d-%d is empty", s.SrcPorts.Lo, s.SrcPorts.Hi)
	}
	if !s.DstPorts.IsZero() && s.DstPorts.Lo > s.DstPorts.Hi {
		return fmt.Errorf("destination port range %d-%d is empty", s.DstPorts.Lo, s.DstPorts.Hi)
	}
	if s.Src.IsValid() && s.Dst.IsValid() && s.Src.Addr().Is4() != s.Dst.Addr().Is4() {
		return fmt.Errorf("source %v and destination %v are of different families", s.Src, s.Dst)
	}
	if (!s.SrcPorts.IsZero() || !s.DstPorts.IsZero()) && s.Proto != 0 && !hasPorts(s.Proto) {
		return fmt.Errorf("port ranges with protocol %d, which has no ports", s.Proto)
	}
	return nil
}

func (s *Selector) match(f *flow) bool {
	if s.Src.IsValid() && !s.Src.Contains(f.src) {
		return false
	}
	if s.Dst.IsValid() && !s.Dst.Contains(f.dst) {
		return false
	}
	if s.Proto != 0 && s.Proto != f.proto {
		return false
	}
	if !s.SrcPorts.IsZero() && (!f.ports || !s.SrcPorts.Contains(f.sport)) {
		return false
	}
	if !s.DstPorts.IsZero() && (!f.ports || !s.DstPorts.Contains(f.dport)) {
		return false
	}
	return true
}

// Matches reports whether the IP packet pkt falls within the selector.
// A packet that cannot be parsed matches nothing.
func (s *Selector) Matches(pkt []byte) bool {
	var f flow
	return parseFlow(pkt, &f) == nil && s.match(&f)
}

func matchAny(sels []Selector, f *flow) bool {
	for i := range sels {
		if sels[i].match(f) {
			return true
		}
	}
	return false
}

// packetSelector describes a single packet as a Selector (for events).
func (f *flow) selector() Selector {
	s := Selector{Proto: f.proto}
	if f.src.IsValid() {
		s.Src = netip.PrefixFrom(f.src, f.src.BitLen())
		s.Dst = netip.PrefixFrom(f.dst, f.dst.BitLen())
	}
	if f.ports {
		s.SrcPorts = PortRange{f.sport, f.sport}
		s.DstPorts = PortRange{f.dport, f.dport}
	}
	return s
}

// SPD is the outbound Security Policy Database of a policy-based setup:
// an ordered list of policies, first match wins (RFC 4301 §4.4.1). A
// packet that matches none is dropped with DropNoPolicy unless the
// Processor has a default Tunnel.
//
// Lookups read an immutable snapshot through an atomic pointer and scan
// it linearly; updates copy the (short) list. It is meant for the tens
// to hundreds of policies of a policy-based gateway; route-based setups
// with many peers bind SAs to Tunnels instead.
type SPD struct {
	mu       sync.Mutex
	pols     atomic.Pointer[[]*Policy]
	events   EventFunc
	interval int64
}

// NewSPD returns an empty SPD.
func NewSPD(opts SPDOptions) *SPD {
	p := &SPD{events: opts.Events, interval: int64(opts.AcquireInterval)}
	if p.interval <= 0 {
		p.interval = int64(time.Second)
	}
	p.pols.Store(new([]*Policy))
	return p
}

// ErrPolicy reports an invalid Policy.
var ErrPolicy = errors.New("sa: invalid policy")

func (pol *Policy) validate() error {
	if pol == nil {
		return fmt.Errorf("%w: nil", ErrPolicy)
	}
	if pol.Action < Protect || pol.Action > Discard {
		return fmt.Errorf("%w: %q: action %v", ErrPolicy, pol.Name, pol.Action)
	}
	if err := pol.Selector.validate(); err != nil {
		return fmt.Errorf("%w: %q: %v", ErrPolicy, pol.Name, err)
	}
	if pol.SA != nil && pol.SA.dir != Out {
		return fmt.Errorf("%w: %q: SA %v is not outbound", ErrPolicy, pol.Name, pol.SA)
	}
	return nil
}

// Set replaces all policies, atomically, by pols (in order).
func (p *SPD) Set(pols []*Policy) error {
	for _, pol := range pols {
		if err := pol.validate(); err != nil {
			return err
		}
	}
	l := append([]*Policy(nil), pols...)
	p.mu.Lock()
	p.pols.Store(&l)
	p.mu.Unlock()
	return nil
}

// Append adds pol at the end (lowest priority).
func (p *SPD) Append(pol *Policy) error {
	if err := pol.validate(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := *p.pols.Load()
	l := append(append(make([]*Policy, 0, len(old)+1), old...), pol)
	p.pols.Store(&l)
	return nil
}

// Insert adds pol at position i (0: highest priority).
func (p *SPD) Insert(i int, pol *Policy) error {
	if err := pol.validate(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := *p.pols.Load()
	if i < 0 || i > len(old) {
		return fmt.Errorf("%w: position %d of %d", ErrPolicy, i, len(old))
	}
	l := make([]*Policy, 0, len(old)+1)
	l = append(append(append(l, old[:i]...), pol), old[i:]...)
	p.pols.Store(&l)
	return nil
}

// Remove deletes the first policy with the given name and reports
// whether there was one.
func (p *SPD) Remove(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := *p.pols.Load()
	for i, pol := range old {
		if pol.Name == name {
			l := append(append(make([]*Policy, 0, len(old)-1), old[:i]...), old[i+1:]...)
			p.pols.Store(&l)
			return true
		}
	}
	return false
}

// Policies returns the policies in order.
func (p *SPD) Policies() []*Policy { return append([]*Policy(nil), *p.pols.Load()...) }

func (p *SPD) match(f *flow) *Policy {
	for _, pol := range *p.pols.Load() {
		if pol.Selector.match(f) {
			return pol
		}
	}
	return nil
}

// Match returns the first policy that matches the IP packet pkt, or nil.
func (p *SPD) Match(pkt []byte) (*Policy, error) {
	var f flow
	if err := parseFlow(pkt, &f); err != nil {
		return nil, err
	}
	return p.match(&f), nil
}

// MatchSelector returns the first policy that matches a packet with
// these fields (ports 0 and proto without ports: no ports), or nil.
func (p *SPD) MatchSelector(src, dst netip.Addr, proto uint8, sport, dport uint16) *Policy {
	f := flow{src: src, dst: dst, proto: proto, sport: sport, dport: dport, ports: hasPorts(proto)}
	return p.match(&f)
}

// acquire raises EventAcquire for pol unless one was raised less than
// the acquire interval ago.
func (p *SPD) acquire(pol *Policy, f *flow, now int64, sink eventSink) {
	if p.events == nil {
		return
	}
	last := pol.lastAcquire.Load()
	if last != 0 && now-last < p.interval {
		return
	}
	if !pol.lastAcquire.CompareAndSwap(last, now) {
		return // another worker raised it
	}
	e := Event{Kind: EventAcquire, Time: time.Unix(0, now), Policy: pol, Direction: Out, Packet: f.selector()}
	if pol.Tunnel != nil {
		e.Tunnel, e.TunnelName = pol.Tunnel, pol.Tunnel.name
	}
	if sink != nil {
		sink.raise(p.events, e)
	} else {
		p.events(e)
	}
}
