//go:build linux

package xdp

import (
	"bytes"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/netns"
	"github.com/espxdp/espxdp/sa"
)

// memPort is an in-memory EnginePort: Inject queues a packet for a
// worker to encrypt, decrypted packets are copied out and kept. It has
// no descriptor to poll: Inject wakes the worker (PortEnv.Wake).
type memPort struct {
	env           PortEnv
	in            []chan []byte
	mu            sync.Mutex
	got           [][]byte
	binds         atomic.Int32
	rx, tx, drops atomic.Uint64
}

func (m *memPort) Bind(env PortEnv) error {
	m.binds.Add(1)
	m.env = env
	m.in = make([]chan []byte, env.Workers)
	for i := range m.in {
		m.in[i] = make(chan []byte, 256)
	}
	return nil
}

func (m *memPort) Unbind() error { m.binds.Add(-1); return nil }

// Inject queues pkt for worker w (blocking while its queue is full).
func (m *memPort) Inject(w int, pkt []byte) {
	m.in[w] <- pkt
	m.env.Wake(w)
}

func (m *memPort) Receive(w int, pkts []sa.Packet) int {
	ch := m.in[w]
	n := min(len(pkts), len(ch))
	if n == 0 {
		return 0
	}
	k := m.env.Alloc(pkts[:n])
	got := 0
	for i := range k {
		b := <-ch // only worker w reads ch, which holds at least n
		if len(b) > m.env.MaxPacket() {
			m.drops.Add(1)
			m.env.Free(pkts[i : i+1])
			continue
		}
		p := pkts[i]
		p.Len = copy(p.Buf[p.Off:], b)
		pkts[got] = p
		got++
	}
	m.rx.Add(uint64(got))
	return got
}

func (m *memPort) Transmit(w int, pkts []sa.Packet) {
	m.mu.Lock()
	for i := range pkts {
		if pkts[i].Off < LinkHeadroom {
			m.drops.Add(1) // the engine promised the headroom
			continue
		}
		m.got = append(m.got, bytes.Clone(pkts[i].Data()))
	}
	m.mu.Unlock()
	m.tx.Add(uint64(len(pkts)))
	m.env.Free(pkts)
}

func (m *memPort) Maintain(int, bool) {}
func (m *memPort) InFlight(int) int   { return 0 }
func (m *memPort) PollFDs(int) []int  { return nil }
func (m *memPort) Stats() PortStats {
	return PortStats{RX: m.rx.Load(), TX: m.tx.Load(), Drops: m.drops.Load()}
}

func (m *memPort) received() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][]byte(nil), m.got...)
}

// TestEnginePortTraffic runs an engine whose plaintext side is a port of
// the test's own (memPort) and whose ciphertext side is AF_XDP, with two
// workers on one queue, both ways at once: ESP a Go peer encrypted goes
// in on the ciphertext interface and must come out of the port, and
// plaintext injected into the port on both workers must leave the
// ciphertext interface as ESP that the peer decrypts. Invariants: every
// packet arrives exactly once and unchanged, the counters agree, the
// port is bound while the engine runs, and every frame is back in the
// UMEM afterwards (checkFrames).
func TestEnginePortTraffic(t *testing.T) {
	requireNet(t)
	n := newEngNet(t)
	tr := esp.MustParseTransform("aes128gcm16")
	mk := func(spi uint32, dir sa.Direction, local, remote netip.Addr) *sa.SA {
		s, err := sa.New(sa.Config{SPI: spi, Direction: dir, Mode: esp.Tunnel, Local: local, Remote: remote,
			Transform: tr, Key: engKey, ReplayWindow: 4096})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	sad, peerSAD := sa.NewSAD(sa.SADOptions{}), sa.NewSAD(sa.SADOptions{})
	out := mk(spiOut, sa.Out, n.eC, n.pC)
	for _, s := range []*sa.SA{mk(spiIn, sa.In, n.eC, n.pC), out} {
		if err := sad.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	peerOut := mk(spiIn, sa.Out, n.pC, n.eC)
	for _, s := range []*sa.SA{peerOut, mk(spiOut, sa.In, n.pC, n.eC)} {
		if err := peerSAD.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	tun, peerTun := sa.NewTunnel("peer"), sa.NewTunnel("engine")
	tun.SetOutbound(out)
	peerTun.SetOutbound(peerOut)
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Tunnel: tun, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	peer, err := sa.NewProcessor(sa.ProcessorOptions{SAD: peerSAD, Tunnel: peerTun})
	if err != nil {
		t.Fatal(err)
	}
	port := &memPort{}
	cfg := n.config(&engSAs{proc: proc})
	cfg.Plain, cfg.ProtectedPrefixes, cfg.PlainPort, cfg.Workers = nil, nil, port, 2
	cfg.UMEM = UMEMConfig{NumFrames: 4096, FillSize: 512, CompletionSize: 512}
	e := startEngine(t, n, cfg)
	if port.binds.Load() != 1 {
		t.Fatalf("port bound %d times", port.binds.Load())
	}
	capC := newCapture(t, n.c.B)

	const count = 200
	// Decrypt direction: ESP from the peer.
	var innerIn, espIn [][]byte
	for i := range count {
		p := innerUDP(n.remote, n.pP, uint16(i), 40+i*5)
		innerIn = append(innerIn, p)
		pk := []sa.Packet{{Buf: make([]byte, esp.MaxHeadroom+len(p)+esp.MaxTailroom), Off: esp.MaxHeadroom, Len: len(p)}}
		copy(pk[0].Buf[esp.MaxHeadroom:], p)
		peer.Worker(0).Outbound(pk)
		if pk[0].Verdict != sa.VerdictOK {
			t.Fatalf("peer encrypt: %v %v", pk[0].Verdict, pk[0].Reason)
		}
		espIn = append(espIn, bytes.Clone(pk[0].Data()))
	}
	// Encrypt direction: plaintext into the port, on both workers.
	var innerOut [][]byte
	for i := range count {
		innerOut = append(innerOut, innerUDP(n.pP, n.remote, uint16(1000+i), 30+i*5))
	}
	// The capture reads while the engine sends, and the sources wait for
	// the engine to catch up every 20 packets (flow control: a loaded
	// machine's socket-buffer drops are not what this tests).
	espCh := make(chan [][]byte, 1)
	go func() { espCh <- capC.collect(count, 10*time.Second, fromTo(50, n.eC, n.pC)) }()
	encryptedSoFar := func() (n uint64) {
		for _, w := range e.Stats().Workers {
			n += w.Encrypted
		}
		return n
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, p := range innerOut {
			port.Inject(i%2, p)
			if i%20 == 19 {
				netns.WaitFor(2*time.Second, func() bool { return encryptedSoFar() >= uint64(i+1) })
			}
		}
	}()
	for i := 0; i < count; i += 20 {
		n.send(t, espIn[i:i+20]...)
		netns.WaitFor(2*time.Second, func() bool { return len(port.received()) >= i+20 })
	}
	wg.Wait()
	gotESP := <-espCh
	netns.WaitFor(3*time.Second, func() bool { return len(port.received()) >= count })

	// Every decrypted packet exactly once, unchanged.
	want := map[string]int{}
	for _, p := range innerIn {
		want[string(p)]++
	}
	for i, p := range port.received() {
		if want[string(p)] == 0 {
			t.Errorf("port received packet %d (%d bytes) that was not sent, or twice", i, len(p))
		}
		want[string(p)]--
	}
	missing := 0
	for _, c := range want {
		missing += max(c, 0)
	}
	if missing > 0 {
		t.Errorf("%d decrypted packets missing from the port (got %d of %d); stats %+v", missing, len(port.received()), count, e.Stats().Workers)
	}
	// Every injected packet encrypted exactly once.
	if len(gotESP) != count {
		t.Errorf("captured %d ESP packets, want %d; stats %+v", len(gotESP), count, e.Stats().Workers)
	}
	wantOut := map[string]int{}
	for _, p := range innerOut {
		wantOut[string(p)]++
	}
	for i, f := range gotESP {
		pk := []sa.Packet{{Buf: bytes.Clone(f), Off: 14, Len: len(f) - 14}}
		peer.Worker(0).Inbound(pk)
		if pk[0].Verdict != sa.VerdictOK {
			t.Errorf("ESP packet %d: peer says %v %v", i, pk[0].Verdict, pk[0].Reason)
			continue
		}
		if wantOut[string(pk[0].Data())] == 0 {
			t.Errorf("ESP packet %d carries a packet not injected, or twice", i)
		}
		wantOut[string(pk[0].Data())]--
	}
	st := e.Stats()
	var plainRX, decrypted, encrypted uint64
	for _, w := range st.Workers {
		plainRX += w.PlainRX
		decrypted += w.Decrypted
		encrypted += w.Encrypted
	}
	if len(st.PlainSockets) != 0 || st.PlainPort == nil {
		t.Fatalf("%d plaintext sockets, port stats %v with a PlainPort", len(st.PlainSockets), st.PlainPort)
	}
	if plainRX != count || encrypted != count || decrypted != count || *st.PlainPort != (PortStats{RX: count, TX: count}) {
		t.Errorf("PlainRX %d, Encrypted %d, Decrypted %d, port %+v; want %d each", plainRX, encrypted, decrypted, *st.PlainPort, count)
	}
	checkFrames(t, e)
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	if port.binds.Load() != 0 {
		t.Errorf("port still bound after Stop")
	}
}

// TestEnginePortConfig: a PlainPort excludes Plain and Deliver.
func TestEnginePortConfig(t *testing.T) {
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sa.NewSAD(sa.SADOptions{})})
	if err != nil {
		t.Fatal(err)
	}
	mac := []byte{2, 0, 0, 0, 0, 1}
	good := EngineConfig{Processor: proc, Cipher: Port{Name: "x", NextHop: mac}, PlainPort: &memPort{}}
	if _, err := NewEngine(good); err != nil {
		t.Fatalf("PlainPort alone: %v", err)
	}
	both := good
	both.Plain, both.ProtectedPrefixes = &Port{Name: "y", NextHop: mac}, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	dlv := good
	dlv.Deliver = func([][]byte) {}
	for name, cfg := range map[string]EngineConfig{"Plain": both, "Deliver": dlv} {
		if _, err := NewEngine(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("PlainPort with %s: %v, want ErrInvalidConfig", name, err)
		}
	}
}
