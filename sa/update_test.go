package sa

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/esp"
)

// espSeq returns the ESP sequence number (low 32 bits) and the outer
// destination of an outbound IPv4 tunnel packet.
func espSeq(tb testing.TB, p Packet) (uint32, netip.Addr) {
	tb.Helper()
	d := p.Data()
	if len(d) < 28 || d[0]>>4 != 4 || d[9] != 50 {
		tb.Fatalf("not an IPv4 ESP packet: % x", d[:min(len(d), 28)])
	}
	return binary.BigEndian.Uint32(d[24:]), netip.AddrFrom4([4]byte(d[16:20]))
}

func ptr[T any](v T) *T { return &v }

// fixedKeys sets deterministic keys, so that a test can build a second
// SA with the same key material.
func fixedKeys(c *Config) {
	c.Key, c.AuthKey = make([]byte, c.Transform.KeyLen()), make([]byte, c.Transform.AuthKeyLen())
	for i := range c.Key {
		c.Key[i] = byte(i + 1)
	}
	for i := range c.AuthKey {
		c.AuthKey[i] = byte(i + 7)
	}
}

func TestUpdateKeepsState(t *testing.T) {
	r := newRig(t, "aes128gcm16", func(c *Config) { c.PathMTU = 1500 })
	inner := udpPacket(hostA, hostB, 1, 2, 100, 1)
	var captured []Packet
	for i := 0; i < 5; i++ {
		p := r.seal(t, inner)
		captured = append(captured, clonePacket(p))
		if q := r.open(p); q.Verdict != VerdictOK {
			t.Fatalf("open: %v %v", q.Verdict, q.Reason)
		}
	}
	newRemote := netip.MustParseAddr("198.51.100.77")
	soft := Lifetime{Packets: 1000}
	hard := Lifetime{Packets: 2000, Time: time.Hour}
	if err := r.out.Update(Changes{SoftLifetime: &soft, HardLifetime: &hard, PathMTU: ptr(1400),
		Remote: &newRemote, TTL: ptr(uint8(9)), DF: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	sender := r.in.Config().Remote
	if err := r.in.Update(Changes{SoftLifetime: &soft, HardLifetime: &hard, Remote: ptr(netip.MustParseAddr("192.0.2.99"))}); err != nil {
		t.Fatal(err)
	}
	// The inbound SA now expects its peer at 192.0.2.99: a packet from
	// the old address is dropped before decryption (and not counted as
	// accepted, so it can be opened again below).
	p := r.seal(t, inner)
	if q := r.open(clonePacket(p)); q.Verdict != VerdictDrop || q.Reason != DropOuter {
		t.Fatalf("open from the old peer address after Update: %v %v, want drop %v", q.Verdict, q.Reason, DropOuter)
	}
	if err := r.in.Update(Changes{Remote: &sender}); err != nil {
		t.Fatal(err)
	}
	seq, dst := espSeq(t, p)
	if seq != 6 || dst != newRemote {
		t.Fatalf("after Update: seq %d dst %v, want 6 %v", seq, dst, newRemote)
	}
	if d := p.Data(); d[8] != 9 || d[6]&0x40 == 0 {
		t.Fatalf("TTL %d flags %#x", d[8], d[6])
	}
	// The receiver's SA expects its own address as the destination
	// (DropOuter otherwise): deliver p as a 1:1 NAT in front of the
	// receiver would, with the destination rewritten.
	if q := r.open(clonePacket(p)); q.Verdict != VerdictDrop || q.Reason != DropOuter {
		t.Fatalf("open of a packet for another destination: %v %v, want drop %v", q.Verdict, q.Reason, DropOuter)
	}
	local := r.in.Config().Local.As4()
	copy(p.Data()[16:20], local[:])
	if q := r.open(p); q.Verdict != VerdictOK {
		t.Fatalf("open after update: %v %v", q.Verdict, q.Reason)
	}
	// The inbound SA still remembers what it accepted.
	for _, c := range captured {
		if q := r.open(clonePacket(c)); q.Verdict != VerdictDrop || q.Reason != DropReplay {
			t.Fatalf("replay after Update: %v %v", q.Verdict, q.Reason)
		}
	}
	cfg, st := r.out.Config(), r.out.StatsAt(r.clock.Now())
	if cfg.Remote != newRemote || cfg.PathMTU != 1400 || cfg.TTL != 9 || !cfg.DF || cfg.SoftLifetime != soft || cfg.HardLifetime != hard {
		t.Fatalf("Config after Update: %+v", cfg)
	}
	if st.Remote != newRemote || st.PathMTU != 1400 || st.Seq != 6 || st.EncapsPkts != 6 ||
		st.SoftRemaining.Packets != 994 || st.HardRemaining.Seconds != 3600 {
		t.Fatalf("Stats after Update: %+v", st)
	}
	if r.out.Seq() != 6 || r.in.Seq() != 6 {
		t.Fatalf("Seq out %d in %d", r.out.Seq(), r.in.Seq())
	}
}

func TestUpdateNATT(t *testing.T) {
	r := newRig(t, "aes128gcm16", func(c *Config) { c.UDPEncap = true })
	port := uint16(31000)
	if err := r.out.Update(Changes{RemotePort: &port}); err != nil {
		t.Fatal(err)
	}
	p := r.seal(t, udpPacket(hostA, hostB, 1, 2, 50, 1))
	d := p.Data()
	if got := binary.BigEndian.Uint16(d[22:]); got != port {
		t.Fatalf("UDP destination port %d, want %d", got, port)
	}
	if c := r.out.Config(); c.RemotePort != port || r.out.Stats().RemotePort != port {
		t.Fatalf("RemotePort %d / %d", c.RemotePort, r.out.Stats().RemotePort)
	}
	if err := r.out.Update(Changes{RemotePort: ptr(uint16(0))}); err != nil {
		t.Fatal(err)
	}
	if c := r.out.Config(); c.RemotePort != 4500 {
		t.Fatalf("RemotePort 0 gives %d, want 4500", c.RemotePort)
	}
}

func TestUpdateValidation(t *testing.T) {
	out, _ := mustPair(t, "aes128gcm16", 0x2001, func(c *Config) {
		c.PathMTU = 1500
		c.HardLifetime.Packets = 100
	})
	before := out.Config()
	bad := []struct {
		field string
		c     Changes
	}{
		{"SoftLifetime.Packets", Changes{PathMTU: ptr(1400), SoftLifetime: &Lifetime{Packets: 200}}},
		{"SoftLifetime.Time", Changes{SoftLifetime: &Lifetime{Time: 2 * time.Hour}, HardLifetime: &Lifetime{Time: time.Hour}}},
		{"HardLifetime.Time", Changes{HardLifetime: &Lifetime{Time: -1}}},
		{"PathMTU", Changes{Remote: ptr(netip.MustParseAddr("192.0.2.50")), PathMTU: ptr(20)}},
		{"Remote", Changes{Remote: ptr(netip.MustParseAddr("2001:db8::9")), TTL: ptr(uint8(1))}},
		{"Remote", Changes{Remote: &netip.Addr{}}},
		{"Remote", Changes{Remote: ptr(netip.MustParseAddr("::ffff:192.0.2.9"))}},
		{"RemotePort", Changes{RemotePort: ptr(uint16(1)), DF: ptr(true)}},
	}
	for _, b := range bad {
		err := out.Update(b.c)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != b.field || !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Update(%+v) = %v, want a ConfigError on %s", b.c, err, b.field)
		}
		if got := out.Config(); got.String() != before.String() {
			t.Fatalf("failed Update changed the SA:\n%v\n%v", got, before)
		}
	}
	if out.PathMTU() != 1500 {
		t.Fatalf("path MTU %d", out.PathMTU())
	}
	out.Close()
	if err := out.Update(Changes{PathMTU: ptr(1400)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Update after Close: %v", err)
	}
}

func TestUpdateLifetimeExpiry(t *testing.T) {
	r := newRig(t, "aes128gcm16", nil)
	r.sendN(t, 10, 10)
	// A hard limit below the usage expires the SA at once, soft first.
	if err := r.out.Update(Changes{HardLifetime: &Lifetime{Packets: 5}}); err != nil {
		t.Fatal(err)
	}
	if k := r.evA.kinds(); len(k) != 2 || k[0] != EventSoftExpire || k[1] != EventHardExpire || r.out.State() != StateExpired {
		t.Fatalf("events %v state %v", k, r.out.State())
	}
	// Expiry is final: a later limit does not revive it.
	if err := r.out.Update(Changes{HardLifetime: &Lifetime{}}); err != nil {
		t.Fatal(err)
	}
	if r.out.State() != StateExpired {
		t.Fatalf("state %v after lifting the limit", r.out.State())
	}
	if _, reasons := r.sendN(t, 1, 10); reasons[DropExpired] != 1 {
		t.Fatalf("reasons %v", reasons)
	}

	// Soft expiry stays when the soft limit moves past the usage.
	r2 := newRig(t, "aes128gcm16", func(c *Config) { c.SoftLifetime.Packets = 3 })
	r2.sendN(t, 3, 10)
	if r2.out.State() != StateSoftExpired {
		t.Fatalf("state %v", r2.out.State())
	}
	if err := r2.out.Update(Changes{SoftLifetime: &Lifetime{Packets: 100}}); err != nil {
		t.Fatal(err)
	}
	if r2.out.State() != StateSoftExpired || r2.evA.count(EventSoftExpire) != 1 {
		t.Fatalf("state %v events %v", r2.out.State(), r2.evA.kinds())
	}
	// A time limit already past expires at once (the SAD's clock).
	r2.clock.Add(time.Minute)
	if err := r2.out.Update(Changes{HardLifetime: &Lifetime{Time: 30 * time.Second}}); err != nil {
		t.Fatal(err)
	}
	if r2.out.State() != StateExpired || r2.evA.count(EventHardExpire) != 1 {
		t.Fatalf("state %v events %v", r2.out.State(), r2.evA.kinds())
	}
}

func TestUpdateDuringTraffic(t *testing.T) {
	// Race detector test: Update while a worker sends.
	r := newRig(t, "aes128gcm16", func(c *Config) { c.PathMTU = 1500 })
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			b := []Packet{packetFor(udpPacket(hostA, hostB, 1, 2, 100, uint64(i)))}
			r.wSend.Outbound(b)
			if b[0].Verdict != VerdictOK {
				t.Errorf("packet %d: %v %v", i, b[0].Verdict, b[0].Reason)
				return
			}
		}
	}()
	for i := 0; i < 200; i++ {
		a := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		if err := r.out.Update(Changes{Remote: &a, PathMTU: ptr(1400 + i%50), HardLifetime: &Lifetime{Packets: 1 << 40}}); err != nil {
			t.Fatal(err)
		}
		_ = r.out.Stats()
	}
	<-done
	if r.out.Seq() != 200 {
		t.Fatalf("seq %d", r.out.Seq())
	}
}

func TestReplaceSameKeyCarriesState(t *testing.T) {
	r := newRig(t, "aes128gcm16", fixedKeys)
	var captured []Packet
	for i := 0; i < 10; i++ {
		p := r.seal(t, udpPacket(hostA, hostB, 1, 2, 60, uint64(i)))
		captured = append(captured, clonePacket(p))
		if i%2 == 0 { // deliver only the even ones: the odd ones are in the window, unseen
			if q := r.open(p); q.Verdict != VerdictOK {
				t.Fatal(q.Reason)
			}
		}
	}
	// The same key: a reload that rebuilt the SA from its config.
	oc, ic := pairCfg("aes128gcm16", 0x1001, fixedKeys)
	out2, in2 := mustSA(t, oc), mustSA(t, ic)
	if !out2.SameKey(r.out) || !in2.SameKey(r.in) {
		t.Fatal("SameKey false for the same key")
	}
	if old, err := r.sadA.Replace(out2); err != nil || old != r.out {
		t.Fatal(old, err)
	}
	if old, err := r.sadB.Replace(in2); err != nil || old != r.in {
		t.Fatal(old, err)
	}
	r.tun.SetOutbound(out2)
	if out2.Seq() != 10 {
		t.Fatalf("carried seq %d, want 10", out2.Seq())
	}
	p := r.seal(t, udpPacket(hostA, hostB, 1, 2, 60, 99))
	if seq, _ := espSeq(t, p); seq != 11 {
		t.Fatalf("first packet after Replace has seq %d, want 11", seq)
	}
	if q := r.open(p); q.Verdict != VerdictOK {
		t.Fatalf("open: %v", q.Reason)
	}
	for i, c := range captured {
		q := r.open(clonePacket(c))
		if i%2 == 0 && q.Reason != DropReplay {
			t.Fatalf("replayed packet %d after Replace: %v %v", i, q.Verdict, q.Reason)
		}
		if i%2 == 1 && q.Verdict != VerdictOK {
			t.Fatalf("unseen packet %d after Replace: %v %v", i, q.Verdict, q.Reason)
		}
	}
	// InitialSeq beyond the old counter wins.
	oc.InitialSeq = 500
	out3 := mustSA(t, oc)
	if _, err := r.sadA.Replace(out3); err != nil {
		t.Fatal(err)
	}
	if out3.Seq() != 500 {
		t.Fatalf("seq %d, want 500", out3.Seq())
	}
}

func TestReplaceNewKeyFreshState(t *testing.T) {
	r := newRig(t, "aes128gcm16", fixedKeys)
	r.sendN(t, 10, 10)
	oc, ic := pairCfg("aes128gcm16", 0x1001, nil)
	out2, in2 := mustSA(t, oc), mustSA(t, ic)
	if out2.SameKey(r.out) {
		t.Fatal("SameKey true for different keys")
	}
	// The same key bytes under another ICV length or GMAC: the same
	// AES key and salt, so the same keystream and GHASH key for a
	// sequence number - the same key (it used to count as another).
	for _, tr := range []string{"aes128gcm12", "aes128gcm8", "aes128gmac"} {
		oc3, _ := pairCfg(tr, 0x1001, fixedKeys)
		if !r.out.SameKey(mustSA(t, oc3)) {
			t.Fatalf("SameKey false for the same AES-GCM key and salt under %s", tr)
		}
	}
	oc4, _ := pairCfg("aes128gcm16", 0x1001, fixedKeys)
	if !r.out.SameKey(mustSA(t, oc4)) {
		t.Fatal("SameKey false for the same key and transform")
	}
	if _, err := r.sadA.Replace(out2); err != nil {
		t.Fatal(err)
	}
	if _, err := r.sadB.Replace(in2); err != nil {
		t.Fatal(err)
	}
	r.tun.SetOutbound(out2)
	if out2.Seq() != 0 || in2.Seq() != 0 {
		t.Fatalf("new key carried state: %d %d", out2.Seq(), in2.Seq())
	}
	if seq, _ := espSeq(t, r.seal(t, udpPacket(hostA, hostB, 1, 2, 60, 1))); seq != 1 {
		t.Fatalf("seq %d, want 1", seq)
	}
}

func TestReplaceSameKeyUnderTraffic(t *testing.T) {
	// A worker sends continuously while the outbound SA is replaced by
	// SAs with the same key: no sequence number may appear twice.
	r := newRig(t, "aes128gcm16", fixedKeys)
	oc, _ := pairCfg("aes128gcm16", 0x1001, fixedKeys)
	seen := map[uint32]bool{}
	stop := make(chan struct{})
	done := make(chan error)
	go func() {
		var err error
		for i := 0; i < 5000 && err == nil; i++ {
			select {
			case <-stop:
				i = 5000
				continue
			default:
			}
			b := []Packet{packetFor(udpPacket(hostA, hostB, 1, 2, 40, uint64(i))),
				packetFor(udpPacket(hostA, hostB, 1, 2, 40, uint64(i)))}
			r.wSend.Outbound(b)
			for _, p := range b {
				if p.Verdict != VerdictOK {
					continue
				}
				d := p.Data()
				seq := binary.BigEndian.Uint32(d[24:])
				if seen[seq] {
					err = errors.New("sequence number sent twice")
				}
				seen[seq] = true
			}
		}
		done <- err
	}()
	for i := 0; i < 50; i++ {
		n := mustSA(t, oc)
		if _, err := r.sadA.Replace(n); err != nil {
			t.Fatal(err)
		}
		r.tun.SetOutbound(n)
		time.Sleep(100 * time.Microsecond)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(seen) == 0 {
		t.Fatal("nothing sent")
	}
}

// TestReplaceSameKeyInboundNoReplayGap: while an inbound SA is replaced
// by same-key SAs, a worker keeps replaying packets it already accepted;
// none may be accepted again - not even in the moment between the new
// SA entering the SAD and the window being carried into it.
func TestReplaceSameKeyInboundNoReplayGap(t *testing.T) {
	r := newRig(t, "aes128gcm16", fixedKeys)
	var old [][]byte
	for i := 0; i < 64; i++ {
		p := r.seal(t, udpPacket(hostA, hostB, 1, 2, 30, uint64(i)))
		old = append(old, append([]byte(nil), p.Data()...))
		if q := r.open(p); q.Verdict != VerdictOK {
			t.Fatal(q.Reason)
		}
	}
	_, ic := pairCfg("aes128gcm16", 0x1001, fixedKeys)
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		accepted := 0
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- accepted
				return
			default:
			}
			b := make([]Packet, 8)
			for j := range b {
				b[j] = packetFor(old[(i*8+j)%len(old)])
			}
			r.wRecv.Inbound(b)
			for _, p := range b {
				if p.Verdict == VerdictOK {
					accepted++
				}
			}
		}
	}()
	for i := 0; i < 300; i++ {
		if _, err := r.sadB.Replace(mustSA(t, ic)); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	if n := <-done; n != 0 {
		t.Fatalf("%d replayed packets accepted during same-key Replace", n)
	}
}

func TestReplaceSameKeyCarriesUsage(t *testing.T) {
	r := newRig(t, "aes128gcm16", func(c *Config) {
		fixedKeys(c)
		c.SoftLifetime.Packets, c.HardLifetime.Packets = 5, 10
	})
	r.sendN(t, 8, 10)
	if r.out.State() != StateSoftExpired {
		t.Fatal(r.out.State())
	}
	oc, _ := pairCfg("aes128gcm16", 0x1001, fixedKeys)
	oc.SoftLifetime.Packets, oc.HardLifetime.Packets = 5, 10
	out2 := mustSA(t, oc)
	if _, err := r.sadA.Replace(out2); err != nil {
		t.Fatal(err)
	}
	r.tun.SetOutbound(out2)
	// The usage (8 packets) came along: soft expiry at once, and two
	// more packets before the hard limit.
	if out2.State() != StateSoftExpired {
		t.Fatalf("state %v after Replace past the soft limit", out2.State())
	}
	ok, reasons := r.sendN(t, 4, 10)
	if ok != 2 || reasons[DropExpired] != 2 || out2.State() != StateExpired {
		t.Fatalf("ok %d reasons %v state %v", ok, reasons, out2.State())
	}
	// Past the hard limit already: expired at once.
	out3 := mustSA(t, oc)
	if _, err := r.sadA.Replace(out3); err != nil {
		t.Fatal(err)
	}
	if out3.State() != StateExpired {
		t.Fatalf("state %v", out3.State())
	}
}

// TestTFCPadding: TFC padding is refused in transport mode (it would
// come out of decryption as part of the packet), and in tunnel mode it
// never makes a packet larger than the path MTU: the padding is capped
// at the plaintext MTU, also after the path MTU shrinks (Update, as
// after an ICMP packet-too-big) and grows again.
func TestTFCPadding(t *testing.T) {
	oc, _ := pairCfg("aes128gcm16", 0x1001, func(c *Config) { c.Mode = esp.Transport; c.TFCPadTo = 200 })
	if _, err := New(oc); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "TFCPadTo") {
		t.Fatalf("transport mode with TFC padding: %v, want a TFCPadTo ConfigError", err)
	}
	r := newRig(t, "aes128gcm16", func(c *Config) { c.TFCPadTo = 1400; c.PathMTU = 1500 })
	inner := udpPacket(hostA, hostB, 1, 2, 60, 1)
	sealAt := func(mtu int) int {
		t.Helper()
		if err := r.out.Update(Changes{PathMTU: &mtu}); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, esp.MaxHeadroom+2048+esp.MaxTailroom)
		copy(buf[esp.MaxHeadroom:], inner)
		b := []Packet{{Buf: buf, Off: esp.MaxHeadroom, Len: len(inner)}}
		r.wSend.Outbound(b)
		if b[0].Verdict != VerdictOK {
			t.Fatalf("mtu %d: %v %v", mtu, b[0].Verdict, b[0].Reason)
		}
		if q := r.open(b[0]); q.Verdict != VerdictOK || q.Len != len(inner) {
			t.Fatalf("mtu %d: open %v %v, %d bytes (want the %d-byte inner packet back)", mtu, q.Verdict, q.Reason, q.Len, len(inner))
		}
		return b[0].Len
	}
	if n := sealAt(1500); n <= 1400 || n > 1500 {
		t.Errorf("path MTU 1500: outer %d bytes, want padded past 1400 and within 1500", n)
	}
	if n := sealAt(1000); n > 1000 {
		t.Errorf("path MTU 1000: outer %d bytes exceeds it", n)
	}
	if n := sealAt(1500); n <= 1400 {
		t.Errorf("path MTU 1500 again: outer %d bytes, want padded past 1400", n)
	}
}
