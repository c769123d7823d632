package gateway

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/espxdp/espxdp/esp/reasm"
	"github.com/espxdp/espxdp/internal/inet"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

// Outer path MTU discovery (RFC 1191, RFC 8201, RFC 4301 §6.1.2): the
// gateway sends every ESP packet with DF; a router whose next link is
// too small answers with ICMP "fragmentation needed" / ICMPv6 "packet
// too big". The XDP program passes ICMP to the kernel, and the gateway
// reads a copy from raw ICMP sockets in its namespace. A message lowers
// the path MTU of the outbound SA it quotes, and so that SA's plaintext
// MTU (the engine's ICMP errors to inner hosts report it), when:
//
//   - it quotes ESP (or ESP in UDP) with the SPI of one of our outbound
//     SAs, from that SA's local address to its remote address (and, with
//     NAT-T, between its ports): an off-path attacker must know an SPI
//     and both endpoints to lower an MTU;
//   - the MTU is sane: at least pmtuFloor4 (576) / pmtuFloor6 (1280), and
//     below the SA's current path MTU.
//
// Everything else is rejected and counted by reason. A learned MTU ages
// out after gateway.pmtu_age: the SA's configured path_mtu is restored
// (and learned again if the path is still small).

// Floors of a learned path MTU: the IPv4 datagram every host must accept
// (RFC 791) and the IPv6 minimum link MTU (RFC 8200 §5).
const (
	pmtuFloor4 = 576
	pmtuFloor6 = 1280
)

// Reasons an ICMP packet-too-big is rejected.
var (
	errPMTUMalformed = errors.New("malformed")
	errPMTUNotESP    = errors.New("not-esp")
	errPMTUNoSA      = errors.New("no-sa")
	errPMTUMismatch  = errors.New("mismatch")
	errPMTUBadMTU    = errors.New("bad-mtu")
	errPMTUNotLower  = errors.New("not-lower")
)

var pmtuReasons = [...]error{errPMTUMalformed, errPMTUNotESP, errPMTUNoSA, errPMTUMismatch, errPMTUBadMTU, errPMTUNotLower}

// WireStats are the gateway's counters of sizes and tags on the wire.
type WireStats struct {
	// PMTUAccepted: ICMP packet-too-big messages that lowered an SA's
	// path MTU. PMTURejected: those rejected, by reason (malformed,
	// not-esp, no-sa, mismatch, bad-mtu, not-lower).
	PMTUAccepted uint64            `json:"pmtu_accepted"`
	PMTURejected map[string]uint64 `json:"pmtu_rejected"`
	// PMTUExpired: learned path MTUs that aged out (pmtu_age).
	PMTUExpired uint64 `json:"pmtu_expired"`
	// VLANDrops: frames of another VLAN than their interface's (summed
	// over the engine's workers).
	VLANDrops uint64 `json:"vlan_drops"`
	// XSKRXDropped: frames the kernel dropped on their way into the
	// engine's AF_XDP sockets (both interfaces): longer than a UMEM frame
	// holds (an interface MTU raised after start: jumbo frames), or no
	// free frame to receive into. XSKRXRingFull: dropped because an RX
	// ring was full.
	XSKRXDropped  uint64 `json:"xsk_rx_dropped"`
	XSKRXRingFull uint64 `json:"xsk_rx_ring_full"`
	// Fragmented: IPv4 packets fragmented before encryption into
	// Fragments fragments (gateway.fragmentation); FragmentFailed: those
	// that could not be (options, too many fragments, no frame), dropped.
	Fragmented     uint64 `json:"fragmented"`
	Fragments      uint64 `json:"fragments"`
	FragmentFailed uint64 `json:"fragment_failed"`
	// JumboRX, JumboTX: frames received and sent as multi-buffer chains
	// (gateway.jumbo); JumboDrops: chains dropped (too long, no frame).
	JumboRX    uint64 `json:"jumbo_rx"`
	JumboTX    uint64 `json:"jumbo_tx"`
	JumboDrops uint64 `json:"jumbo_drops"`
	// Reassembly sums the workers' outer reassembly counters
	// (gateway.reassembly); ReasmNoFrame: reassembled packets too long
	// for the frame they were to be copied into, dropped.
	Reassembly   reasm.Stats `json:"reassembly"`
	ReasmNoFrame uint64      `json:"reasm_no_frame"`
}

// pmtuState is the learned path MTUs and the counters.
type pmtuState struct {
	mu      sync.Mutex
	learned map[*sa.SA]pmtuEntry // by outbound SA (two peers may share an SPI)

	accepted, expired atomic.Uint64
	rejected          [len(pmtuReasons)]atomic.Uint64 // by index in pmtuReasons
}

// pmtuEntry is when a path MTU was learned for an SA (its key in
// learned); orig is the SA's path MTU before the first one learned,
// restored when it ages.
type pmtuEntry struct {
	at   time.Time
	orig int
}

// learnPTB applies one ICMP message (msg starts at the ICMP header; v6
// for ICMPv6) to the outbound SAs of sad. It returns the SA it lowered,
// nil and nil for ICMP messages that are not packet-too-big, or the
// reason it rejected the message (counted).
func (st *pmtuState) learnPTB(sad *sa.SAD, msg []byte, v6 bool, now time.Time) (*sa.SA, int, error) {
	s, mtu, err := checkPTB(sad, msg, v6)
	if errors.Is(err, inet.ErrNotPTB) {
		return nil, 0, nil
	}
	var orig int
	if err == nil {
		orig = s.PathMTU()
		err = s.SetPathMTU(mtu)
		if err != nil {
			err = errPMTUBadMTU
		}
	}
	if err != nil {
		for i, r := range pmtuReasons {
			if err == r {
				st.rejected[i].Add(1)
			}
		}
		return nil, 0, err
	}
	st.accepted.Add(1)
	st.mu.Lock()
	if st.learned == nil {
		st.learned = map[*sa.SA]pmtuEntry{}
	}
	if e, ok := st.learned[s]; ok {
		orig = e.orig // lowered again: restore what was configured
	}
	st.learned[s] = pmtuEntry{at: now, orig: orig}
	st.mu.Unlock()
	return s, mtu, nil
}

// checkPTB parses msg and finds the outbound SA whose packet it quotes;
// it returns that SA and the new path MTU, or why not.
func checkPTB(sad *sa.SAD, msg []byte, v6 bool) (*sa.SA, int, error) {
	p, err := inet.ParsePTB(msg, v6)
	switch {
	case errors.Is(err, inet.ErrNotPTB):
		return nil, 0, err
	case errors.Is(err, inet.ErrPTBNotESP):
		return nil, 0, errPMTUNotESP
	case err != nil:
		return nil, 0, errPMTUMalformed
	}
	var s *sa.SA
	if p.UDP {
		s = sad.GetOutPort(p.SPI, netip.AddrPortFrom(p.Dst.Unmap(), p.DstPort))
	} else {
		s = sad.GetOut(p.SPI, p.Dst.Unmap())
	}
	if s == nil {
		return nil, 0, errPMTUNoSA
	}
	c := s.Config()
	if c.Remote.Unmap() != p.Dst.Unmap() || (c.Local.IsValid() && c.Local.Unmap() != p.Src.Unmap()) || c.UDPEncap != p.UDP ||
		(p.UDP && (c.LocalPort != p.SrcPort || c.RemotePort != p.DstPort)) {
		return nil, 0, errPMTUMismatch
	}
	floor := pmtuFloor4
	if v6 {
		floor = pmtuFloor6
	}
	if p.MTU < floor || p.MTU > 65535 {
		return nil, 0, errPMTUBadMTU
	}
	if cur := s.PathMTU(); cur != 0 && p.MTU >= cur {
		return nil, 0, errPMTUNotLower
	}
	return s, p.MTU, nil
}

// age restores the configured path MTU of the SAs whose learned MTU is
// older than maxAge; it returns how many it restored.
func (st *pmtuState) age(now time.Time, maxAge time.Duration) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	n := 0
	for s, e := range st.learned {
		if now.Sub(e.at) < maxAge {
			continue
		}
		delete(st.learned, s)
		if s.SetPathMTU(e.orig) == nil {
			n++
		}
	}
	st.expired.Add(uint64(n))
	return n
}

// stats fills the PMTU part of ws.
func (st *pmtuState) stats(ws *WireStats) {
	ws.PMTUAccepted = st.accepted.Load()
	ws.PMTUExpired = st.expired.Load()
	ws.PMTURejected = make(map[string]uint64, len(pmtuReasons))
	for i, r := range pmtuReasons {
		ws.PMTURejected[r.Error()] = st.rejected[i].Load()
	}
}

// wireStats returns the gateway's WireStats, with the engine's counters
// from es.
func (gw *Gateway) wireStats(es xdp.EngineStats) WireStats {
	var ws WireStats
	for _, w := range es.Workers {
		ws.VLANDrops += w.VLANDrops
		ws.Fragmented += w.Fragmented
		ws.Fragments += w.Fragments
		ws.FragmentFailed += w.FragmentFailed
		ws.JumboRX += w.JumboRX
		ws.JumboTX += w.JumboTX
		ws.JumboDrops += w.JumboDrops
		ws.Reassembly.Add(w.Reassembly)
		ws.ReasmNoFrame += w.ReasmNoFrame
	}
	for _, s := range append(append([]xdp.Stats(nil), es.CipherSockets...), es.PlainSockets...) {
		ws.XSKRXDropped += s.Kernel.RxDropped
		ws.XSKRXRingFull += s.Kernel.RxRingFull
	}
	gw.pmtu.stats(&ws)
	return ws
}

// startPMTU opens the raw ICMP and ICMPv6 sockets in the gateway's
// namespace and starts their readers and the ager (gw.mu held, in
// Start). A family whose socket cannot be opened is logged and skipped.
func (gw *Gateway) startPMTU() {
	maxAge := gw.g.PMTUAge
	for _, f := range []struct {
		network string
		v6      bool
	}{{"ip4:icmp", false}, {"ip6:ipv6-icmp", true}} {
		var c net.PacketConn
		err := gw.inNS(func() (err error) {
			c, err = net.ListenPacket(f.network, "")
			return err
		})
		if err != nil {
			gw.log.Warn("path MTU discovery: no ICMP socket", "network", f.network, "err", err)
			continue
		}
		gw.wg.Add(1)
		go gw.readPTB(c, f.v6)
	}
	if maxAge > 0 {
		gw.wg.Add(1)
		go func() {
			defer gw.wg.Done()
			tick := time.NewTicker(min(maxAge/4, time.Second))
			defer tick.Stop()
			for {
				select {
				case <-gw.stop:
					return
				case now := <-tick.C:
					if n := gw.pmtu.age(now, maxAge); n > 0 {
						gw.log.Info("learned path MTUs expired", "sas", n)
						gw.followTUNMTU()
					}
				}
			}
		}()
	}
}

// followTUNMTU sets a route-based gateway's TUN MTU to its tunMTU: with
// a path MTU learned (or expired), the smallest plaintext MTU of the
// outbound SAs changes, and the kernel, which routes into the TUN,
// answers the hosts' oversized DF packets with ICMP itself.
func (gw *Gateway) followTUNMTU() {
	gw.mu.Lock()
	if gw.tun == nil || gw.g.TUN == nil {
		gw.mu.Unlock()
		return
	}
	name, mtu := gw.g.TUN.Name, gw.tunMTU()
	gw.mu.Unlock()
	if err := gw.inNS(func() error { return setTUNMTU(name, mtu) }); err != nil {
		gw.log.Warn("path MTU discovery: tun MTU not changed", "tun", name, "mtu", mtu, "err", err)
		return
	}
	gw.log.Info("tun MTU follows the path MTU", "tun", name, "mtu", mtu)
}

// readPTB reads ICMP messages from c until the gateway stops.
func (gw *Gateway) readPTB(c net.PacketConn, v6 bool) {
	defer gw.wg.Done()
	defer c.Close()
	buf := make([]byte, 1500)
	for {
		select {
		case <-gw.stop:
			return
		default:
		}
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, _, err := c.ReadFrom(buf)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			continue
		}
		if err != nil {
			gw.log.Warn("path MTU discovery: ICMP socket failed", "err", err)
			return
		}
		s, mtu, err := gw.pmtu.learnPTB(gw.sad, buf[:n], v6, time.Now())
		switch {
		case s != nil:
			gw.log.Info("path MTU lowered by ICMP", "sa", s.Name(), "spi", s.SPI(), "path_mtu", mtu, "plaintext_mtu", s.PlaintextMTU())
			gw.followTUNMTU()
		case err != nil:
			gw.log.Debug("ICMP packet-too-big rejected", "reason", err)
		}
	}
}
