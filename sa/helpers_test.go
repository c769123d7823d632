package sa

import (
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/espxdp/espxdp/esp"
)

var (
	gwA   = netip.MustParseAddr("192.0.2.1")
	gwB   = netip.MustParseAddr("198.51.100.2")
	gwA6  = netip.MustParseAddr("2001:db8::1")
	gwB6  = netip.MustParseAddr("2001:db8::2")
	hostA = netip.MustParseAddr("10.1.0.5")
	hostB = netip.MustParseAddr("10.2.0.7")
	host6 = netip.MustParseAddr("fd00:1::5")
	hst6B = netip.MustParseAddr("fd00:2::7")
)

// keysFor returns fresh random keys for a transform.
func keysFor(t esp.Transform) (key, auth []byte) {
	key = make([]byte, t.KeyLen())
	auth = make([]byte, t.AuthKeyLen())
	rand.Read(key)
	rand.Read(auth)
	return key, auth
}

// pairCfg returns matching outbound (A→B) and inbound (at B) configs
// with the same keys.
func pairCfg(transform string, spi uint32, mod func(*Config)) (out, in Config) {
	tr := esp.MustParseTransform(transform)
	key, auth := keysFor(tr)
	out = Config{Name: "t", SPI: spi, Direction: Out, Mode: esp.Tunnel, Local: gwA, Remote: gwB,
		Transform: tr, Key: key, AuthKey: auth}
	if mod != nil {
		mod(&out)
	}
	in = out
	in.Direction = In
	in.Local, in.Remote = out.Remote, out.Local
	in.LocalPort, in.RemotePort = out.RemotePort, out.LocalPort
	return out, in
}

func mustSA(tb testing.TB, cfg Config) *SA {
	tb.Helper()
	s, err := New(cfg)
	if err != nil {
		tb.Fatalf("New(%v): %v", cfg, err)
	}
	return s
}

func mustPair(tb testing.TB, transform string, spi uint32, mod func(*Config)) (out, in *SA) {
	tb.Helper()
	oc, ic := pairCfg(transform, spi, mod)
	return mustSA(tb, oc), mustSA(tb, ic)
}

func csum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// udpPacket builds an IPv4 or IPv6 UDP packet with payload n bytes
// (the first 8 carry id).
func udpPacket(src, dst netip.Addr, sport, dport uint16, n int, id uint64) []byte {
	pl := make([]byte, max(n, 8))
	binary.BigEndian.PutUint64(pl, id)
	for i := 8; i < len(pl); i++ {
		pl[i] = byte(i)
	}
	udp := make([]byte, 8+len(pl))
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[8:], pl)
	if src.Is4() {
		h := make([]byte, 20)
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(udp)))
		h[8], h[9] = 64, 17
		a, b := src.As4(), dst.As4()
		copy(h[12:], a[:])
		copy(h[16:], b[:])
		binary.BigEndian.PutUint16(h[10:], csum(h))
		return append(h, udp...)
	}
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(udp)))
	h[6], h[7] = 17, 64
	a, b := src.As16(), dst.As16()
	copy(h[8:], a[:])
	copy(h[24:], b[:])
	return append(h, udp...)
}

// packetFor returns a Packet holding data with full headroom and
// tailroom.
func packetFor(data []byte) Packet {
	buf := make([]byte, esp.MaxHeadroom+len(data)+esp.MaxTailroom)
	copy(buf[esp.MaxHeadroom:], data)
	return Packet{Buf: buf, Off: esp.MaxHeadroom, Len: len(data)}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// eventLog records events.
type eventLog struct {
	mu sync.Mutex
	ev []Event
}

func (l *eventLog) fn(e Event) {
	l.mu.Lock()
	l.ev = append(l.ev, e)
	l.mu.Unlock()
}

func (l *eventLog) kinds() []EventKind {
	l.mu.Lock()
	defer l.mu.Unlock()
	var k []EventKind
	for _, e := range l.ev {
		k = append(k, e.Kind)
	}
	return k
}

func (l *eventLog) count(k EventKind) int {
	n := 0
	for _, x := range l.kinds() {
		if x == k {
			n++
		}
	}
	return n
}

// rig is a sender and a receiver processor with one SA pair.
type rig struct {
	out, in      *SA
	sadA, sadB   *SAD
	tun          *Tunnel
	send, recv   *Processor
	clock        *fakeClock
	evA, evB     eventLog
	wSend, wRecv *Worker
}

func newRig(tb testing.TB, transform string, mod func(*Config)) *rig {
	tb.Helper()
	r := &rig{clock: newFakeClock()}
	oc, ic := pairCfg(transform, 0x1001, mod)
	oc.Created, ic.Created = r.clock.Now(), r.clock.Now()
	r.out, r.in = mustSA(tb, oc), mustSA(tb, ic)
	r.sadA = NewSAD(SADOptions{Events: r.evA.fn, Clock: r.clock.Now})
	r.sadB = NewSAD(SADOptions{Events: r.evB.fn, Clock: r.clock.Now})
	if err := r.sadA.Add(r.out); err != nil {
		tb.Fatal(err)
	}
	if err := r.sadB.Add(r.in); err != nil {
		tb.Fatal(err)
	}
	r.tun = NewTunnel("t0")
	r.tun.SetOutbound(r.out)
	var err error
	r.send, err = NewProcessor(ProcessorOptions{SAD: r.sadA, Tunnel: r.tun, Clock: r.clock.Now})
	if err != nil {
		tb.Fatal(err)
	}
	r.recv, err = NewProcessor(ProcessorOptions{SAD: r.sadB, Clock: r.clock.Now})
	if err != nil {
		tb.Fatal(err)
	}
	r.wSend, r.wRecv = r.send.Worker(0), r.recv.Worker(0)
	return r
}

// seal encrypts one inner packet and returns the outer packet.
func (r *rig) seal(tb testing.TB, inner []byte) Packet {
	tb.Helper()
	b := []Packet{packetFor(inner)}
	r.wSend.Outbound(b)
	if b[0].Verdict != VerdictOK {
		tb.Fatalf("Outbound: %v %v", b[0].Verdict, b[0].Reason)
	}
	return b[0]
}

// open runs one packet through Inbound and returns it.
func (r *rig) open(p Packet) Packet {
	b := []Packet{p}
	r.wRecv.Inbound(b)
	return b[0]
}

// clonePacket deep-copies the buffer so a packet can be replayed.
func clonePacket(p Packet) Packet {
	q := p
	q.Buf = append([]byte(nil), p.Buf[:cap(p.Buf)]...)
	return q
}
