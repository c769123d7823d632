package sa

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/espxdp/espxdp/esp"
)

var (
	gwC   = netip.MustParseAddr("203.0.113.3")
	natIP = netip.MustParseAddr("203.0.113.77")
)

// sendVia encrypts one packet through tunnel t on w and returns it.
func sendVia(w *Worker, t *Tunnel, id uint64) Packet {
	b := []Packet{packetFor(udpPacket(hostA, hostB, 1, 2, 40, id))}
	b[0].Tunnel = t
	w.Outbound(b)
	return b[0]
}

// openOn decrypts pkt (an outer packet) on w.
func openOn(w *Worker, pkt []byte) Packet {
	b := []Packet{packetFor(pkt)}
	w.Inbound(b)
	return b[0]
}

// outerDst returns the outer IPv4 destination and, for UDP, the
// destination port of a sealed packet.
func outerDst(pkt []byte) (netip.Addr, uint16) {
	a := netip.AddrFrom4([4]byte(pkt[16:20]))
	if pkt[9] == 17 {
		return a, binary.BigEndian.Uint16(pkt[22:])
	}
	return a, 0
}

// TestOutboundSameSPIDifferentPeers: the SPI of an outbound SA is the
// peer's choice, so two peers (or two NAT-T ports of one address) may
// pick the same; both SAs live side by side and each carries its own
// traffic.
func TestOutboundSameSPIDifferentPeers(t *testing.T) {
	const spi = 0x4242
	sad := NewSAD(SADOptions{})
	type peer struct {
		remote   netip.Addr
		udp      bool
		port     uint16
		out, in  *SA
		tun      *Tunnel
		rx       *Processor
		wantPort uint16
	}
	peers := []*peer{
		{remote: gwB},
		{remote: gwC},
		{remote: gwC, udp: true, wantPort: 4500},
		{remote: gwC, udp: true, port: 4501, wantPort: 4501},
	}
	for i, p := range peers {
		p.out, p.in = mustPair(t, "aes128gcm16", spi, func(c *Config) {
			c.Remote, c.UDPEncap, c.RemotePort = p.remote, p.udp, p.port
		})
		if err := sad.Add(p.out); err != nil {
			t.Fatalf("peer %d: %v", i, err)
		}
		p.tun = NewTunnel("p")
		p.tun.SetOutbound(p.out)
		rxSAD := NewSAD(SADOptions{})
		if err := rxSAD.Add(p.in); err != nil {
			t.Fatal(err)
		}
		var err error
		if p.rx, err = NewProcessor(ProcessorOptions{SAD: rxSAD, NATTPort: p.wantPort}); err != nil {
			t.Fatal(err)
		}
	}
	dup, _ := mustPair(t, "aes128gcm16", spi, func(c *Config) { c.Remote = gwC })
	if err := sad.Add(dup); !errors.Is(err, ErrExists) {
		t.Fatalf("same SPI, same peer and port: %v, want ErrExists", err)
	}
	if sad.Len() != 4 || len(sad.All()) != 4 || len(sad.Outbound(spi)) != 4 {
		t.Fatalf("Len %d All %d Outbound %d", sad.Len(), len(sad.All()), len(sad.Outbound(spi)))
	}
	if sad.GetOut(spi, gwB) != peers[0].out || sad.GetOut(spi, gwC) != peers[1].out ||
		sad.GetOutPort(spi, netip.AddrPortFrom(gwC, 4501)) != peers[3].out ||
		sad.GetOutPort(spi, netip.AddrPortFrom(gwC, 4500)) != peers[2].out || sad.GetOut(spi, hostA) != nil {
		t.Fatal("GetOut / GetOutPort")
	}
	if sad.Lookup(spi) != nil {
		t.Fatal("an outbound SA is found by the inbound lookup")
	}
	tx, _ := NewProcessor(ProcessorOptions{SAD: sad})
	use := func(i int, id uint64) {
		t.Helper()
		p := peers[i]
		q := sendVia(tx.Worker(0), p.tun, id)
		if q.Verdict != VerdictOK || q.SA != p.out {
			t.Fatalf("peer %d: outbound %v %v via %v", i, q.Verdict, q.Reason, q.SA)
		}
		if a, port := outerDst(q.Data()); a != p.remote || port != p.wantPort {
			t.Fatalf("peer %d: sent to %v:%d", i, a, port)
		}
		if r := openOn(p.rx.Worker(0), q.Data()); r.Verdict != VerdictOK || r.SA != p.in {
			t.Fatalf("peer %d: inbound %v %v", i, r.Verdict, r.Reason)
		}
	}
	for i := range peers {
		use(i, uint64(i))
	}
	if err := sad.Delete(Out, spi); !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("Delete(Out, shared SPI): %v, want ErrAmbiguous", err)
	}
	if _, err := sad.Remove(Out, spi); !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("Remove(Out, shared SPI): %v, want ErrAmbiguous", err)
	}
	if err := sad.DeleteSA(peers[0].out); err != nil {
		t.Fatal(err)
	}
	if err := sad.DeleteSA(peers[0].out); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second DeleteSA: %v", err)
	}
	if len(peers[0].tun.Outbound()) != 0 || peers[0].out.Tunnel() != nil {
		t.Fatal("deleted SA still bound to its tunnel")
	}
	if q := sendVia(tx.Worker(0), peers[0].tun, 9); q.Reason != DropAcquire {
		t.Fatalf("tunnel of the deleted SA: %v", q.Reason)
	}
	for i := 1; i < len(peers); i++ {
		use(i, uint64(10+i))
	}
	// Replace finds the outbound SA by its whole key.
	rep, _ := mustPair(t, "aes128gcm16", spi, func(c *Config) { c.Remote, c.UDPEncap, c.RemotePort = gwC, true, 4501 })
	old, err := sad.Replace(rep)
	if err != nil || old != peers[3].out || sad.GetOutPort(spi, netip.AddrPortFrom(gwC, 4501)) != rep ||
		sad.GetOutPort(spi, netip.AddrPortFrom(gwC, 4500)) != peers[2].out {
		t.Fatalf("Replace: %v %v", old, err)
	}
	// With one outbound SA left on the SPI, Delete by SPI works again.
	for _, s := range []*SA{peers[1].out, peers[2].out} {
		if err := sad.DeleteSA(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := sad.Delete(Out, spi); err != nil || sad.Len() != 0 || rep.State() != StateDeleted {
		t.Fatalf("Delete of the last: %v, len %d", err, sad.Len())
	}
}

// rewriteSrc returns a copy of the IPv4 outer packet pkt with the
// source address (and, for UDP, source port) changed.
func rewriteSrc(pkt []byte, src netip.Addr, sport uint16) []byte {
	q := append([]byte(nil), pkt...)
	a := src.As4()
	copy(q[12:16], a[:])
	if q[9] == 17 && sport != 0 {
		binary.BigEndian.PutUint16(q[20:], sport)
	}
	return q
}

// rewriteDst is rewriteSrc for the destination address.
func rewriteDst(pkt []byte, dst netip.Addr) []byte {
	q := append([]byte(nil), pkt...)
	a := dst.As4()
	copy(q[16:20], a[:])
	return q
}

// toUDP wraps the ESP of a bare IPv4 ESP packet in UDP 4500; toESP
// unwraps an ESP-in-UDP packet.
func toUDP(pkt []byte) []byte {
	e := pkt[20:]
	u := make([]byte, 8, 8+len(e))
	binary.BigEndian.PutUint16(u[0:], 4500)
	binary.BigEndian.PutUint16(u[2:], 4500)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(e)))
	return ipv4(netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20])), 17, append(u, e...))
}

func toESP(pkt []byte) []byte {
	return ipv4(netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20])), 50, pkt[28:])
}

// TestOuterChecks: an inbound SA accepts only its encapsulation and its
// endpoints, checked before decryption (so the drop costs no crypto and
// leaves the window alone: the same packet with the right header is
// accepted afterwards).
func TestOuterChecks(t *testing.T) {
	for _, udp := range []bool{false, true} {
		r := newRig(t, "aes128gcm16", func(c *Config) { c.UDPEncap = udp })
		var id uint64
		seal := func() []byte {
			id++
			q := r.seal(t, udpPacket(hostA, hostB, 1, 2, 30, id))
			return append([]byte(nil), q.Data()...)
		}
		other := toUDP
		if udp {
			other = toESP
		}
		cases := []struct {
			name string
			mod  func([]byte) []byte
			want DropReason
		}{
			{"other encapsulation", other, DropEncap},
			{"other source", func(b []byte) []byte { return rewriteSrc(b, gwC, 0) }, DropOuter},
			{"other destination", func(b []byte) []byte { return rewriteDst(b, gwC) }, DropOuter},
		}
		if udp {
			cases = append(cases, struct {
				name string
				mod  func([]byte) []byte
				want DropReason
			}{"other source port", func(b []byte) []byte { return rewriteSrc(b, gwA, 4501) }, DropOuter})
		}
		for _, tc := range cases {
			good := seal()
			if q := r.open(packetFor(tc.mod(good))); q.Reason != tc.want || q.SA != r.in {
				t.Errorf("udp=%v %s: %v %v, want %v", udp, tc.name, q.Verdict, q.Reason, tc.want)
			}
			if q := r.open(packetFor(good)); q.Verdict != VerdictOK {
				t.Errorf("udp=%v %s: the genuine packet afterwards: %v", udp, tc.name, q.Reason)
			}
		}
		st := r.in.Stats()
		if st.Drops[DropEncap] != 1 || st.Drops[DropOuter] != uint64(len(cases)-1) || st.VerifyPkts != uint64(len(cases)) {
			t.Errorf("udp=%v: drops %v, verified %d (outer drops must not be decrypted)", udp, st.Drops, st.VerifyPkts)
		}
	}
}

// TestOuterChecksOptionalEndpoints: a transport-mode SA without Local
// and Remote checks only the encapsulation.
func TestOuterChecksOptionalEndpoints(t *testing.T) {
	r := newRig(t, "aes128gcm16", func(c *Config) { c.Mode = esp.Transport })
	oc, ic := pairCfg("aes128gcm16", 0x3003, func(c *Config) { c.Mode = r.out.mode })
	ic.Local, ic.Remote = netip.Addr{}, netip.Addr{}
	out, in := mustSA(t, oc), mustSA(t, ic)
	r.sadA.Add(out)
	r.sadB.Add(in)
	tun := NewTunnel("tr")
	tun.SetOutbound(out)
	q := sendVia(r.wSend, tun, 1)
	if q.Verdict != VerdictOK {
		t.Fatal(q.Reason)
	}
	pkt := rewriteDst(rewriteSrc(q.Data(), natIP, 0), gwC)
	if got := r.open(packetFor(pkt)); got.SA != in || got.Reason == DropOuter || got.Reason == DropEncap {
		t.Fatalf("unset endpoints were checked: %v %v", got.Verdict, got.Reason)
	}
	q = sendVia(r.wSend, tun, 2)
	if got := r.open(packetFor(toUDP(q.Data()))); got.Reason != DropEncap {
		t.Fatalf("ESP-in-UDP to a bare SA: %v", got.Reason)
	}
}

// TestFloatRemote: a NAT-T peer that moves is followed only on
// authenticated packets that advance the window, with one event per new
// endpoint.
func TestFloatRemote(t *testing.T) {
	r := newRig(t, "aes128gcm16", func(c *Config) { c.UDPEncap, c.FloatRemote = true, true })
	if r.in.Endpoint() != netip.AddrPortFrom(gwA, 4500) {
		t.Fatalf("initial endpoint %v", r.in.Endpoint())
	}
	var id uint64
	seal := func() []byte {
		id++
		q := r.seal(t, udpPacket(hostA, hostB, 1, 2, 30, id))
		return append([]byte(nil), q.Data()...)
	}
	moved := func(b []byte, a netip.Addr, port uint16) []byte { return rewriteSrc(b, a, port) }
	events := func() []Event { return r.evB.ofKind(EventEndpointChanged) }

	if q := r.open(packetFor(seal())); q.Verdict != VerdictOK || len(events()) != 0 {
		t.Fatalf("from the configured endpoint: %v, events %v", q.Reason, events())
	}
	delayed := seal() // sealed now, arrives late from the old address
	ep1 := netip.AddrPortFrom(natIP, 40001)
	for i := 0; i < 3; i++ {
		if q := r.open(packetFor(moved(seal(), ep1.Addr(), ep1.Port()))); q.Verdict != VerdictOK {
			t.Fatalf("from the new endpoint: %v", q.Reason)
		}
	}
	if ev := events(); len(ev) != 1 || ev[0].Endpoint != ep1 || ev[0].SA != r.in || r.in.Endpoint() != ep1 {
		t.Fatalf("after the move: events %+v, endpoint %v", ev, r.in.Endpoint())
	}
	// A late packet from the old endpoint is accepted (in the window) but
	// does not move the endpoint back: it did not advance the window.
	if q := r.open(packetFor(delayed)); q.Verdict != VerdictOK || len(events()) != 1 || r.in.Endpoint() != ep1 {
		t.Fatalf("delayed packet: %v, events %d, endpoint %v", q.Reason, len(events()), r.in.Endpoint())
	}
	// Forged (bad ICV) and replayed packets from elsewhere move nothing.
	ep2 := netip.AddrPortFrom(gwC, 40002)
	forged := moved(seal(), ep2.Addr(), ep2.Port())
	forged[len(forged)-1] ^= 1
	if q := r.open(packetFor(forged)); q.Reason != DropAuth {
		t.Fatalf("forged: %v", q.Reason)
	}
	replayed := moved(delayed, ep2.Addr(), ep2.Port())
	if q := r.open(packetFor(replayed)); q.Reason != DropReplay {
		t.Fatalf("replayed: %v", q.Reason)
	}
	if len(events()) != 1 || r.in.Endpoint() != ep1 {
		t.Fatalf("forged or replayed packets moved the endpoint: %v %v", events(), r.in.Endpoint())
	}
	// A genuine new packet from ep2 does.
	if q := r.open(packetFor(moved(seal(), ep2.Addr(), ep2.Port()))); q.Verdict != VerdictOK {
		t.Fatal(q.Reason)
	}
	if ev := events(); len(ev) != 2 || ev[1].Endpoint != ep2 {
		t.Fatalf("second move: %+v", ev)
	}
	// FloatRemote does not relax the encapsulation or the destination.
	if q := r.open(packetFor(toESP(seal()))); q.Reason != DropEncap {
		t.Fatalf("bare ESP: %v", q.Reason)
	}
	if q := r.open(packetFor(rewriteDst(seal(), gwC))); q.Reason != DropOuter {
		t.Fatalf("other destination: %v", q.Reason)
	}
}

// TestUpdateRemoteKeepsOutboundKeysUnique: an SA.Update that moves an
// outbound SA to another peer changes its SAD key (SPI, Remote,
// RemotePort); moving it onto a key another outbound SA holds is
// refused and changes nothing, a free key is taken, and the SA is then
// found under its new key only.
func TestUpdateRemoteKeepsOutboundKeysUnique(t *testing.T) {
	const spi = 0x4343
	sad := NewSAD(SADOptions{})
	toB, _ := mustPair(t, "aes128gcm16", spi, func(c *Config) { c.Remote = gwB })
	toC, _ := mustPair(t, "aes128gcm16", spi, func(c *Config) { c.Remote = gwC })
	for _, s := range []*SA{toB, toC} {
		if err := sad.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	c := gwC
	if err := toB.Update(Changes{Remote: &c}); !errors.Is(err, ErrExists) {
		t.Fatalf("moving onto another SA's key: %v, want ErrExists", err)
	}
	if got := toB.Config().Remote; got != gwB {
		t.Fatalf("refused Update changed Remote to %v", got)
	}
	d := netip.MustParseAddr("192.0.2.77")
	if err := toB.Update(Changes{Remote: &d}); err != nil {
		t.Fatal(err)
	}
	if sad.GetOut(spi, d) != toB || sad.GetOut(spi, gwB) != nil || sad.GetOut(spi, gwC) != toC {
		t.Fatalf("after the move: GetOut(new)=%v GetOut(old)=%v GetOut(C)=%v", sad.GetOut(spi, d), sad.GetOut(spi, gwB), sad.GetOut(spi, gwC))
	}
	// The key now free can be taken by a new SA.
	again, _ := mustPair(t, "aes128gcm16", spi, func(c *Config) { c.Remote = gwB })
	if err := sad.Add(again); err != nil {
		t.Fatalf("adding at the key left free: %v", err)
	}
}
