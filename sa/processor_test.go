package sa

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/espxdp/espxdp/esp"
)

func TestRoundTripModes(t *testing.T) {
	type tc struct {
		name      string
		transform string
		mod       func(*Config)
		src, dst  netip.Addr
	}
	cases := []tc{
		{"tunnel4-gcm", "aes128gcm16", nil, hostA, hostB},
		{"tunnel4-cbc-sha256-esn", "aes256-sha256", func(c *Config) { c.ESN = true }, hostA, hostB},
		{"tunnel6-over-4-chacha", "chacha20poly1305", nil, host6, hst6B},
		{"tunnel4-over-6", "aes256gcm16", func(c *Config) { c.Local, c.Remote = gwA6, gwB6 }, hostA, hostB},
		{"tunnel4-natt", "aes128gcm16", func(c *Config) { c.UDPEncap = true; c.LocalPort = 4500; c.RemotePort = 31000 }, hostA, hostB},
		{"tunnel6-natt-over-6", "aes128-sha1", func(c *Config) { c.UDPEncap = true; c.Local, c.Remote = gwA6, gwB6 }, host6, hst6B},
		{"transport4", "aes128gcm16", func(c *Config) { c.Mode = esp.Transport }, gwA, gwB},
		{"transport6-natt", "aes192ctr-sha512", func(c *Config) { c.Mode = esp.Transport; c.Local, c.Remote = gwA6, gwB6; c.UDPEncap = true }, gwA6, gwB6},
		{"transport-gmac", "aes256gmac", func(c *Config) { c.Mode = esp.Transport }, gwA, gwB},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, c.transform, c.mod)
			for i, n := range []int{0, 1, 100, 1400} {
				inner := udpPacket(c.src, c.dst, 1111, 2222, n, uint64(i))
				p := r.seal(t, inner)
				wire := p.Data()
				if bytes.Contains(wire, inner[20:]) && r.out.transform.Encrypts() && n >= 16 {
					t.Fatal("plaintext visible on the wire")
				}
				var pp esp.Parsed
				if err := esp.ParseOuter(wire, r.out.cfg.RemotePort, &pp); err != nil {
					t.Fatalf("outer packet does not parse: %v", err)
				}
				if pp.UDP != r.out.cfg.UDPEncap {
					t.Fatalf("UDP encap %v, want %v", pp.UDP, r.out.cfg.UDPEncap)
				}
				if c.mod != nil && r.out.cfg.UDPEncap && pp.DstPort != r.out.cfg.RemotePort {
					t.Fatalf("dst port %d, want %d", pp.DstPort, r.out.cfg.RemotePort)
				}
				if spi, seq, _ := esp.ParseHeader(wire[pp.ESPOffset:]); spi != 0x1001 || seq != uint32(i+1) {
					t.Fatalf("spi %#x seq %d", spi, seq)
				}
				if p.SA != r.out || p.Dir != Out {
					t.Fatalf("result SA %v dir %v", p.SA, p.Dir)
				}
				// The NAT-T port check of the receiver uses the SA's
				// remote port, as a NAT would have changed it.
				if r.out.cfg.UDPEncap && r.out.cfg.RemotePort != 4500 {
					r.recv.natt = r.out.cfg.RemotePort
				}
				q := r.open(p)
				if q.Verdict != VerdictOK {
					t.Fatalf("n=%d Inbound: %v %v", n, q.Verdict, q.Reason)
				}
				if got := q.Data(); !bytes.Equal(got, inner) {
					// Transport mode with NAT-T rewrites the UDP checksum.
					if !(r.in.mode == esp.Transport && len(got) == len(inner)) {
						t.Fatalf("n=%d inner packet differs:\n got %x\nwant %x", n, got, inner)
					}
				}
				if q.SA != r.in {
					t.Fatalf("inbound SA %v", q.SA)
				}
			}
			so, si := r.out.Stats(), r.in.Stats()
			if so.EncapsPkts != 4 || so.EncryptPkts != 4 || so.Seq != 4 {
				t.Fatalf("out stats %+v", so)
			}
			if si.DecapsPkts != 4 || si.VerifyPkts != 4 || si.DecryptPkts != 4 || si.Seq != 4 || si.Drops.Total() != 0 {
				t.Fatalf("in stats %+v", si)
			}
			if so.EncapsBytes != si.DecapsBytes || so.EncapsBytes == 0 {
				t.Fatalf("bytes out %d in %d", so.EncapsBytes, si.DecapsBytes)
			}
			ps := r.recv.Stats()
			if ps.InPkts != 4 || ps.InOK != 4 {
				t.Fatalf("processor stats %+v", ps)
			}
		})
	}
}

// nullSHA256 builds by hand a null-sha256 ESP packet inside an IPv4
// header, with whatever body (payload, padding, trailer) the test wants.
func nullSHA256(auth []byte, spi, seq uint32, body []byte) []byte {
	e := make([]byte, 8, 8+len(body)+16)
	binary.BigEndian.PutUint32(e[0:], spi)
	binary.BigEndian.PutUint32(e[4:], seq)
	e = append(e, body...)
	m := hmac.New(sha256.New, auth)
	m.Write(e)
	e = m.Sum(e)[:len(e)+16]
	return ipv4(gwA, gwB, 50, e)
}

func ipv4(src, dst netip.Addr, proto byte, payload []byte) []byte {
	h := make([]byte, 20, 20+len(payload))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	h[8], h[9] = 64, proto
	a, b := src.As4(), dst.As4()
	copy(h[12:], a[:])
	copy(h[16:], b[:])
	binary.BigEndian.PutUint16(h[10:], csum(h))
	return append(h, payload...)
}

func TestDropReasons(t *testing.T) {
	r := newRig(t, "null-sha256", nil)
	auth := make([]byte, 32)
	// Recreate the pair with a known auth key.
	oc, ic := pairCfg("null-sha256", 0x2002, nil)
	oc.AuthKey, ic.AuthKey = auth, auth
	in := mustSA(t, ic)
	if err := r.sadB.Add(in); err != nil {
		t.Fatal(err)
	}
	inner := udpPacket(hostA, hostB, 1, 2, 30, 9) // 58 bytes
	trailer := func(pad []byte, nh byte) []byte {
		b := append(append([]byte(nil), inner...), pad...)
		return append(b, byte(len(pad)), nh)
	}
	// 58 + 2 = 60: aligned to 4 without padding.
	good := nullSHA256(auth, 0x2002, 1, trailer(nil, 4))
	if q := r.open(packetFor(good)); q.Verdict != VerdictOK || !bytes.Equal(q.Data(), inner) {
		t.Fatalf("hand-made packet rejected: %v %v", q.Verdict, q.Reason)
	}

	type step struct {
		name   string
		pkt    []byte
		reason DropReason
		onSA   bool // counted on the SA, else on the processor
	}
	tampered := nullSHA256(auth, 0x2002, 2, trailer(nil, 4))
	tampered[40] ^= 1
	short := ipv4(gwA, gwB, 50, []byte{0, 0, 0x20, 0x02, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) // header + 10 bytes < ICV
	badLen := append([]byte(nil), good...)
	binary.BigEndian.PutUint16(badLen[2:], uint16(len(good)+10))
	dummy := nullSHA256(auth, 0x2002, 7, []byte{1, 2, 0, 59}) // 2 bytes + pad 0 + nh 59
	steps := []step{
		{"unknown SPI", nullSHA256(auth, 0x9999, 1, trailer(nil, 4)), DropNoSA, false},
		{"replay", good, DropReplay, true},
		{"tampered ICV", tampered, DropAuth, true},
		{"bad padding bytes", nullSHA256(auth, 0x2002, 3, trailer([]byte{1, 2, 9, 4}, 4)), DropPadding, true},
		{"pad length too long", nullSHA256(auth, 0x2002, 4, append(append([]byte(nil), inner[:58]...), 200, 4)), DropPadding, true},
		{"truncated ESP", short, DropTruncated, true},
		{"outer length beyond packet", badLen, DropMalformed, false},
		{"inner not IP", nullSHA256(auth, 0x2002, 5, trailer(nil, 99)), DropMalformed, true},
		{"truncated outer", good[:10], DropTruncated, false},
		{"zero SPI", nullSHA256(auth, 0, 1, trailer(nil, 4)), DropMalformed, false},
		{"not ESP (TCP)", ipv4(gwA, gwB, 6, make([]byte, 20)), DropNotESP, false},
		{"dummy", dummy, DropDummy, true},
		{"outer fragment", func() []byte {
			b := append([]byte(nil), good...)
			b[6] = 0x20 // MF
			return b
		}(), DropFragment, false},
	}
	for _, s := range steps {
		before, pbefore := in.Stats().Drops, r.recv.Stats().Drops
		q := r.open(packetFor(s.pkt))
		if q.Verdict != VerdictDrop || q.Reason != s.reason {
			t.Errorf("%s: verdict %v reason %v, want drop %v", s.name, q.Verdict, q.Reason, s.reason)
			continue
		}
		after, pafter := in.Stats().Drops, r.recv.Stats().Drops
		if s.onSA && after[s.reason] != before[s.reason]+1 {
			t.Errorf("%s: SA counter %d → %d", s.name, before[s.reason], after[s.reason])
		}
		if !s.onSA && pafter[s.reason] != pbefore[s.reason]+1 {
			t.Errorf("%s: processor counter %d → %d", s.name, pbefore[s.reason], pafter[s.reason])
		}
	}
	st := in.Stats()
	// verify: good, bad padding x2, inner not IP, dummy = 5; decrypt
	// excludes padding failures; decaps only good.
	if st.VerifyPkts != 5 || st.DecryptPkts != 3 || st.DecapsPkts != 1 {
		t.Errorf("verify %d decrypt %d decaps %d, want 5 3 1", st.VerifyPkts, st.DecryptPkts, st.DecapsPkts)
	}
	// A dummy packet, once authenticated, moved the replay window.
	if st.Seq != 7 {
		t.Errorf("replay edge %d, want 7", st.Seq)
	}
}

func TestControlPackets(t *testing.T) {
	r := newRig(t, "aes128gcm16", nil)
	udp := func(pl []byte) []byte {
		u := make([]byte, 8, 8+len(pl))
		binary.BigEndian.PutUint16(u[0:], 4500)
		binary.BigEndian.PutUint16(u[2:], 4500)
		binary.BigEndian.PutUint16(u[4:], uint16(8+len(pl)))
		return ipv4(gwA, gwB, 17, append(u, pl...))
	}
	ike := udp([]byte{0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8})
	ka := udp([]byte{0xff})
	for _, pkt := range [][]byte{ike, ka} {
		p := packetFor(pkt)
		q := r.open(p)
		if q.Verdict != VerdictControl || q.Reason != DropNone {
			t.Fatalf("verdict %v %v, want control", q.Verdict, q.Reason)
		}
		if !bytes.Equal(q.Data(), pkt) {
			t.Fatal("control packet modified")
		}
	}
	if st := r.recv.Stats(); st.Control != 2 || st.Drops.Total() != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestInboundPolicyCheck(t *testing.T) {
	oc, ic := pairCfg("aes128gcm16", 0x3003, nil)
	ic.Selectors = []Selector{{Src: netip.MustParsePrefix("10.1.0.0/16"), Dst: netip.MustParsePrefix("10.2.0.0/16")}}
	out, in := mustSA(t, oc), mustSA(t, ic)
	sadA, sadB := NewSAD(SADOptions{}), NewSAD(SADOptions{})
	sadA.Add(out)
	sadB.Add(in)
	tun := NewTunnel("x")
	tun.SetOutbound(out)
	tx, _ := NewProcessor(ProcessorOptions{SAD: sadA, Tunnel: tun})
	rx, _ := NewProcessor(ProcessorOptions{SAD: sadB})
	for _, c := range []struct {
		src, dst netip.Addr
		ok       bool
	}{
		{hostA, hostB, true},
		{netip.MustParseAddr("10.9.0.1"), hostB, false},
		{hostA, netip.MustParseAddr("10.1.0.1"), false},
		{host6, hst6B, false},
	} {
		b := []Packet{packetFor(udpPacket(c.src, c.dst, 5, 6, 20, 1))}
		tx.Worker(0).Outbound(b)
		if b[0].Verdict != VerdictOK {
			t.Fatalf("outbound %v", b[0].Reason)
		}
		rx.Worker(0).Inbound(b)
		if got := b[0].Verdict == VerdictOK; got != c.ok || (!got && b[0].Reason != DropPolicy) {
			t.Errorf("%v→%v: verdict %v %v, want ok=%v", c.src, c.dst, b[0].Verdict, b[0].Reason, c.ok)
		}
	}
	if n := in.Stats().Drops[DropPolicy]; n != 3 {
		t.Errorf("policy drops %d, want 3", n)
	}
}

func TestMTU(t *testing.T) {
	r := newRig(t, "aes256-sha256", func(c *Config) { c.PathMTU = 1500 })
	mtu := r.out.PlaintextMTU()
	if want := r.out.cipher.PlaintextMTU(1500, esp.Tunnel, false, false); mtu != want || mtu <= 0 {
		t.Fatalf("PlaintextMTU %d, esp says %d", mtu, want)
	}
	fits := udpPacket(hostA, hostB, 1, 2, mtu-28, 1)
	p := r.seal(t, fits)
	if p.Len > 1500 {
		t.Fatalf("a packet of the plaintext MTU became %d bytes on the wire (path MTU 1500)", p.Len)
	}
	big := []Packet{packetFor(udpPacket(hostA, hostB, 1, 2, mtu-28+1, 2))}
	r.wSend.Outbound(big)
	if big[0].Verdict != VerdictDrop || big[0].Reason != DropMTU || big[0].MTU != mtu {
		t.Fatalf("oversized: %v %v MTU %d, want drop mtu %d", big[0].Verdict, big[0].Reason, big[0].MTU, mtu)
	}
	if r.out.Stats().Drops[DropMTU] != 1 {
		t.Fatal("MTU drop not counted")
	}
	// A smaller path MTU (from an ICMP error) applies at once.
	if err := r.out.SetPathMTU(1280); err != nil {
		t.Fatal(err)
	}
	if r.out.PlaintextMTU() >= mtu || r.out.Stats().PathMTU != 1280 {
		t.Fatalf("after SetPathMTU: %d", r.out.PlaintextMTU())
	}
	if err := r.out.SetPathMTU(40); err == nil {
		t.Fatal("path MTU 40 accepted")
	}
}

// TestPlaintextMTUMatchesEsp checks the SA's own MTU arithmetic against
// esp for every transform, mode, family and encapsulation.
func TestPlaintextMTUMatchesEsp(t *testing.T) {
	for _, name := range esp.TransformNames() {
		tr := esp.MustParseTransform(name)
		key, auth := keysFor(tr)
		c, err := esp.New(esp.Config{Transform: tr, Key: key, AuthKey: auth})
		if err != nil {
			t.Fatal(err)
		}
		for _, mtu := range []int{576, 1280, 1500, 9000} {
			for _, mode := range []esp.Mode{esp.Tunnel, esp.Transport} {
				for _, v6 := range []bool{false, true} {
					for _, udp := range []bool{false, true} {
						if got, want := plaintextMTU(tr, mtu, mode, v6, udp), c.PlaintextMTU(mtu, mode, v6, udp); got != want {
							t.Fatalf("%s %d %v v6=%v udp=%v: %d, esp %d", name, mtu, mode, v6, udp, got, want)
						}
					}
				}
			}
		}
	}
}

func TestOutboundNoSA(t *testing.T) {
	sad := NewSAD(SADOptions{})
	p, _ := NewProcessor(ProcessorOptions{SAD: sad})
	b := []Packet{packetFor(udpPacket(hostA, hostB, 1, 2, 10, 1))}
	p.Worker(0).Outbound(b)
	if b[0].Reason != DropNoPolicy {
		t.Fatalf("no binding: %v", b[0].Reason)
	}
	tun := NewTunnel("empty")
	b[0] = packetFor(udpPacket(hostA, hostB, 1, 2, 10, 1))
	b[0].Tunnel = tun
	p.Worker(0).Outbound(b)
	if b[0].Reason != DropNoSA {
		t.Fatalf("empty tunnel: %v", b[0].Reason)
	}
	// Not enough headroom.
	out, _ := mustPair(t, "aes128gcm16", 0x105, nil)
	tun.SetOutbound(out)
	inner := udpPacket(hostA, hostB, 1, 2, 10, 1)
	b[0] = Packet{Buf: append([]byte(nil), inner...), Len: len(inner), Tunnel: tun}
	p.Worker(0).Outbound(b)
	if b[0].Reason != DropNoRoom {
		t.Fatalf("no headroom: %v", b[0].Reason)
	}
	// Bad descriptors.
	for _, d := range []Packet{{Buf: make([]byte, 10), Off: 5, Len: 6, Tunnel: tun}, {Buf: make([]byte, 10), Off: -1, Len: 1, Tunnel: tun}, {Tunnel: tun}} {
		b[0] = d
		p.Worker(0).Outbound(b)
		if b[0].Verdict != VerdictDrop {
			t.Fatalf("descriptor %+v: %v", d, b[0].Verdict)
		}
		b[0] = d
		p.Worker(0).Inbound(b)
		if b[0].Verdict != VerdictDrop {
			t.Fatalf("inbound descriptor %+v: %v", d, b[0].Verdict)
		}
	}
}
