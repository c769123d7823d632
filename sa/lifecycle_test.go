package sa

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"

	"github.com/espxdp/espxdp/esp"
)

// The SA lifecycle invariant, tested here as a property over random
// operation sequences:
//
//	Under one key, no sequence number is ever sent twice, and no packet
//	accepted once is accepted again - whatever sequence of add, replace
//	(same key or new), update, delete, re-add (from a persisted
//	snapshot, as after a process restart), sequence reservation,
//	processor restart and crash (outbound restart from the persisted
//	SeqLimit) happens.
//
// The model keeps what a daemon would persist per key: the last
// sequence number (or the sequence reservation) and the replay window
// exported after the SA was closed; an SA re-created for a key starts
// from it (Config.InitialSeq, Config.Replay). Replace and Update carry
// state themselves. Two operations re-add a key WITHOUT the persisted
// snapshot, as a daemon without state does (sa del + sa add over a
// control socket): under another SPI, and under another ICV length (or
// GMAC: the same AES key and salt, the same keystream) - the SAD's
// memory of retired keys alone must keep the invariant then.

type lcPacket struct {
	wire []byte
	key  int
	seq  uint64
}

type lcKeyState struct {
	seq    uint64       // persisted outbound sequence number (exact, or a reservation)
	replay *ReplayState // persisted inbound window
}

type lcModel struct {
	t          *testing.T
	rng        *rand.Rand
	tr         esp.Transform
	esn        bool
	window     int
	keys       [][]byte
	persist    []lcKeyState
	sadA, sadB *SAD
	tun        *Tunnel
	send, recv *Processor
	out, in    *SA
	outKey     int
	inKey      int
	spi        uint32            // SPI of both SAs (changed by readdFresh)
	fresh      bool              // cfg: ignore the persisted snapshot
	emitted    []map[uint64]bool // per key: full sequence numbers sent
	accepted   map[string]bool   // ESP packets accepted (SPI to ICV)
	pool       []lcPacket
	lowWater   bool
	nSent      int
	nAccepted  int
	nReplayRej int
	nHigh      int // packets sent with ESN high bits set
}

const lcSPI = 0x5001

func newLCModel(t *testing.T, seed uint64) *lcModel {
	m := &lcModel{t: t, rng: rand.New(rand.NewPCG(seed, 0x5eed)), tr: esp.MustParseTransform("aes128gcm16"),
		accepted: map[string]bool{}}
	m.esn = m.rng.IntN(2) == 0
	m.window = []int{32, 64, 1024}[m.rng.IntN(3)]
	nk := 2 + m.rng.IntN(2)
	for i := 0; i < nk; i++ {
		k := make([]byte, m.tr.KeyLen())
		for j := range k {
			k[j] = byte(m.rng.Uint32())
		}
		m.keys = append(m.keys, k)
		m.persist = append(m.persist, lcKeyState{})
		m.emitted = append(m.emitted, map[uint64]bool{})
		if m.esn && m.rng.IntN(2) == 0 {
			// Start near the 32-bit boundary, so that ESN high bits matter.
			m.persist[i].seq = math.MaxUint32 - uint64(m.rng.IntN(100))
		}
	}
	m.sadA = NewSAD(SADOptions{Events: m.event})
	m.sadB = NewSAD(SADOptions{})
	m.tun = NewTunnel("lc")
	m.restartProcessors()
	m.outKey, m.inKey = -1, -1
	m.spi = lcSPI
	m.install(Out, 0, false)
	m.install(In, 0, false)
	return m
}

func (m *lcModel) event(e Event) {
	if e.Kind == EventSeqLimit {
		m.lowWater = true
	}
}

func (m *lcModel) restartProcessors() {
	var err error
	if m.send, err = NewProcessor(ProcessorOptions{SAD: m.sadA, Tunnel: m.tun}); err != nil {
		m.t.Fatal(err)
	}
	if m.recv, err = NewProcessor(ProcessorOptions{SAD: m.sadB}); err != nil {
		m.t.Fatal(err)
	}
}

func (m *lcModel) cfg(dir Direction, k int) Config {
	c := Config{Name: fmt.Sprintf("k%d", k), SPI: m.spi, Direction: dir, Mode: esp.Tunnel,
		Local: gwA, Remote: gwB, Transform: m.tr, Key: append([]byte(nil), m.keys[k]...),
		ESN: m.esn, ReplayWindow: m.window}
	if dir == In {
		c.Local, c.Remote = gwB, gwA
		c.Replay = m.persist[k].replay
		if m.fresh {
			c.Replay = nil
		}
		// Updates move the inbound SA's Remote at random (op update);
		// packets keep coming from gwA, so accept any source.
		c.FloatRemote = true
	} else {
		if m.out != nil {
			// Replace finds the outbound SA by SPI and peer: the
			// current one, which an Update may have moved.
			c.Remote = m.out.Config().Remote
		}
		c.InitialSeq = m.persist[k].seq
		if m.fresh {
			c.InitialSeq = 0
		}
		if !m.esn {
			c.InitialSeq = min(c.InitialSeq, math.MaxUint32)
		}
		if m.rng.IntN(3) == 0 {
			c.SeqLimit = c.InitialSeq + 1 + uint64(m.rng.IntN(40))
			m.persist[k].seq = max(m.persist[k].seq, c.SeqLimit) // persisted before use
		}
	}
	return c
}

// retire records what a daemon persists for the SA's key once it is
// closed.
func (m *lcModel) retire(s *SA, k int) {
	if s.State() != StateDeleted {
		m.t.Fatalf("retired SA %v not closed", s)
	}
	if s.Direction() == Out {
		m.persist[k].seq = max(m.persist[k].seq, s.Seq())
		return
	}
	st := s.ReplayState()
	m.persist[k].replay = &st
}

// install puts an SA for key k in direction dir, by Add (none there) or
// Replace (sameKeyCarry: leave the state to Replace).
func (m *lcModel) install(dir Direction, k int, sameKeyCarry bool) {
	c := m.cfg(dir, k)
	if sameKeyCarry && m.rng.IntN(2) == 0 {
		// Let Replace do the carrying: a fresh config (as a reload
		// builds it) that knows nothing of the state.
		c.InitialSeq, c.Replay = 0, nil
	}
	s, err := New(c)
	if err != nil {
		m.t.Fatal(err)
	}
	sad, cur, curKey := m.sadA, &m.out, &m.outKey
	if dir == In {
		sad, cur, curKey = m.sadB, &m.in, &m.inKey
	}
	if *cur == nil {
		if err := sad.Add(s); err != nil {
			m.t.Fatal(err)
		}
	} else {
		old, err := sad.Replace(s)
		if err != nil {
			m.t.Fatal(err)
		}
		m.retire(old, *curKey)
	}
	*cur, *curKey = s, k
	if dir == Out {
		m.tun.SetOutbound(s)
	}
}

func (m *lcModel) del(dir Direction) {
	sad, cur, k := m.sadA, &m.out, m.outKey
	if dir == In {
		sad, cur, k = m.sadB, &m.in, m.inKey
	}
	if *cur == nil {
		return
	}
	if err := sad.Delete(dir, m.spi); err != nil {
		m.t.Fatal(err)
	}
	m.retire(*cur, k)
	*cur = nil
	if dir == Out {
		m.tun.SetOutbound()
	}
}

// crash drops the outbound SA without looking at its counter and
// re-creates it from the persisted reservation, as after a crash.
func (m *lcModel) crash() {
	if m.out == nil || m.out.SeqLimit() == 0 {
		return
	}
	res := m.persist[m.outKey].seq
	old, err := m.sadA.Remove(Out, m.spi)
	if err != nil {
		m.t.Fatal(err)
	}
	old.Close()
	if old.Seq() > res {
		m.t.Fatalf("SA used sequence number %d past its persisted reservation %d", old.Seq(), res)
	}
	m.out = nil
	m.install(Out, m.outKey, false)
}

// reserve is the persister: it writes the next reservation, then
// raises the limit.
func (m *lcModel) reserve() {
	if m.out == nil {
		return
	}
	lim := max(m.out.SeqLimit(), m.out.Seq()) + 1 + uint64(m.rng.IntN(30))
	m.persist[m.outKey].seq = max(m.persist[m.outKey].seq, lim)
	m.out.SetSeqLimit(lim)
	m.lowWater = false
}

func (m *lcModel) sendBatch() {
	if m.out == nil {
		return
	}
	n := 1 + m.rng.IntN(8)
	b := make([]Packet, n)
	for i := range b {
		b[i] = packetFor(udpPacket(hostA, hostB, 1, 2, 20+m.rng.IntN(60), m.rng.Uint64()))
	}
	prev := m.out.Seq()
	m.send.Worker(0).Outbound(b)
	for _, p := range b {
		if p.Verdict != VerdictOK {
			continue
		}
		if p.SA != m.out {
			m.t.Fatalf("sent by %v, not the current SA", p.SA)
		}
		wire := append([]byte(nil), p.Data()...)
		lo := uint64(uint32(wire[24])<<24 | uint32(wire[25])<<16 | uint32(wire[26])<<8 | uint32(wire[27]))
		seq := prev&^0xffffffff | lo
		if seq <= prev {
			seq += 1 << 32
		}
		if lim := m.out.SeqLimit(); lim != 0 && seq > lim {
			m.t.Fatalf("sent seq %d past the limit %d", seq, lim)
		}
		// Invariant: under one key, no sequence number is sent twice.
		if m.emitted[m.outKey][seq] {
			m.t.Fatalf("key %d: sequence number %d sent twice", m.outKey, seq)
		}
		m.emitted[m.outKey][seq] = true
		m.nSent++
		if seq > math.MaxUint32 {
			m.nHigh++
		}
		m.pool = append(m.pool, lcPacket{wire: wire, key: m.outKey, seq: seq})
	}
	if len(m.pool) > 400 {
		m.pool = append(m.pool[:0:0], m.pool[len(m.pool)-300:]...)
	}
}

func TestLifecycleProperty(t *testing.T) {
	seqs, ops := 200, 100
	if testing.Short() {
		seqs = 40
	}
	var sent, acc, rej, high int
	for s := 0; s < seqs; s++ {
		m := newLCModel(t, uint64(s))
		for i := 0; i < ops; i++ {
			m.step(i)
		}
		sent, acc, rej, high = sent+m.nSent, acc+m.nAccepted, rej+m.nReplayRej, high+m.nHigh
	}
	// The property is only meaningful if traffic flowed and replays
	// were tried.
	if sent < seqs*50 || acc < seqs*20 || rej < seqs*5 || high < seqs {
		t.Fatalf("too little exercised: sent %d accepted %d replays rejected %d, %d past 2^32", sent, acc, rej, high)
	}
	t.Logf("sent %d, accepted %d, replays rejected %d, %d past 2^32", sent, acc, rej, high)
}

func (m *lcModel) step(i int) {
	defer func() {
		if m.t.Failed() {
			m.t.FailNow()
		}
	}()
	switch r := m.rng.IntN(100); {
	case r < 30:
		m.sendBatch()
	case r < 55:
		m.deliverChecked()
	case r < 60: // replace, same key
		if m.out != nil {
			m.install(Out, m.outKey, true)
		}
	case r < 64:
		if m.in != nil {
			m.install(In, m.inKey, true)
		}
	case r < 67: // rekey both directions to another (maybe earlier) key
		k := m.rng.IntN(len(m.keys))
		m.install(Out, k, false)
		m.install(In, k, false)
	case r < 73:
		m.update()
	case r < 76:
		m.del(Out)
	case r < 79:
		m.del(In)
	case r < 84: // re-add after delete, from the persisted snapshot
		if m.out == nil {
			m.install(Out, m.outKey, false)
		}
		if m.in == nil {
			m.install(In, m.inKey, false)
		}
	case r < 90:
		if m.lowWater || m.rng.IntN(3) == 0 {
			m.reserve()
		}
	case r < 92:
		m.crash()
	case r < 94:
		m.restartProcessors()
	case r < 95: // delete, re-add the same key under another SPI, no snapshot
		m.readdFresh(true, false)
	case r < 96: // delete, re-add the same key under another ICV length, no snapshot
		m.readdFresh(false, true)
	case r < 97: // graceful process restart: delete both, re-add from snapshots
		m.del(Out)
		m.del(In)
		m.install(Out, m.outKey, false)
		m.install(In, m.inKey, false)
	default:
		if m.out != nil && m.out.SeqLimit() == 0 && m.rng.IntN(2) == 0 {
			m.reserve()
		}
	}
}

// readdFresh deletes both SAs and re-adds their keys from fresh
// configurations that know nothing of the state (InitialSeq 0, no
// Replay), under a new SPI and/or another transform of the same key
// family (aes128gcm16/12/8, aes128gmac).
func (m *lcModel) readdFresh(newSPI, newICV bool) {
	if m.out == nil || m.in == nil || m.outKey != m.inKey {
		return
	}
	k := m.outKey
	m.del(Out)
	m.del(In)
	if newSPI {
		m.spi = lcSPI + 1 + uint32(m.rng.IntN(1000))
	}
	if newICV {
		m.tr = esp.MustParseTransform([]string{"aes128gcm16", "aes128gcm12", "aes128gcm8", "aes128gmac"}[m.rng.IntN(4)])
	}
	m.fresh = true
	m.install(Out, k, false)
	m.install(In, k, false)
	m.fresh = false
}

func (m *lcModel) update() {
	s := m.out
	if m.rng.IntN(2) == 0 {
		s = m.in
	}
	if s == nil {
		return
	}
	var c Changes
	if m.rng.IntN(2) == 0 {
		mtu := 1280 + m.rng.IntN(300)
		if m.rng.IntN(5) == 0 {
			mtu = 10 // invalid: nothing may change
		}
		c.PathMTU = &mtu
	}
	if m.rng.IntN(2) == 0 {
		// Half of the moves lead back to gwB, the receiver's Local;
		// packets sent elsewhere are dropped there (DropOuter).
		a := gwB
		if m.rng.IntN(2) == 0 {
			a = netip.AddrFrom4([4]byte{198, 51, 100, byte(m.rng.IntN(250) + 1)})
		}
		if s.Direction() == In {
			a = netip.AddrFrom4([4]byte{192, 0, 2, byte(m.rng.IntN(250) + 1)})
		}
		c.Remote = &a
	}
	if m.rng.IntN(3) == 0 {
		used := s.Stats().EncapsPkts + s.Stats().DecapsPkts
		h := Lifetime{Packets: used + uint64(m.rng.IntN(200)) + 1}
		soft := Lifetime{Packets: h.Packets / 2}
		c.SoftLifetime, c.HardLifetime = &soft, &h
	}
	before := s.Seq()
	err := s.Update(c)
	if c.PathMTU != nil && *c.PathMTU == 10 {
		if err == nil {
			m.t.Fatal("invalid path MTU accepted")
		}
	} else if err != nil {
		m.t.Fatal(err)
	}
	if s.Seq() != before {
		m.t.Fatalf("Update moved the sequence number %d → %d", before, s.Seq())
	}
}

// deliverChecked is deliver with the acceptance invariant checked on
// every packet.
func (m *lcModel) deliverChecked() {
	if len(m.pool) == 0 {
		return
	}
	n := 1 + m.rng.IntN(10)
	b := make([]Packet, n)
	ids := make([]string, n)
	for i := range b {
		var p lcPacket
		if m.rng.IntN(3) == 0 {
			p = m.pool[m.rng.IntN(len(m.pool))]
		} else {
			p = m.pool[len(m.pool)-1-m.rng.IntN(min(len(m.pool), 12))]
		}
		b[i] = packetFor(p.wire)
		ids[i] = string(p.wire[20:]) // SPI to ICV
	}
	m.recv.Worker(0).Inbound(b)
	for i, p := range b {
		if p.Verdict != VerdictOK {
			if p.Reason == DropReplay {
				m.nReplayRej++
			}
			continue
		}
		// Invariant: no packet accepted once is accepted again.
		if m.accepted[ids[i]] {
			m.t.Fatalf("packet accepted twice (SA %v)", p.SA)
		}
		m.accepted[ids[i]] = true
		m.nAccepted++
	}
}

// TestLifecycleSharedWorkers runs two Shared-mode workers on one SA
// pair while the control plane updates and replaces the SAs with the
// same key; no sequence number is sent twice and no packet accepted
// twice. Meant for -race.
func TestLifecycleSharedWorkers(t *testing.T) {
	tr := esp.MustParseTransform("aes128gcm16")
	key, _ := keysFor(tr)
	mk := func(dir Direction) *SA {
		c := Config{SPI: 0x6001, Direction: dir, Mode: esp.Tunnel, Local: gwA, Remote: gwB, Transform: tr,
			Key: key, ReplayWindow: 4096}
		if dir == In {
			c.Local, c.Remote = gwB, gwA
		}
		return mustSA(t, c)
	}
	sadA, sadB := NewSAD(SADOptions{}), NewSAD(SADOptions{})
	out, in := mk(Out), mk(In)
	sadA.Add(out)
	sadB.Add(in)
	tun := NewTunnel("s")
	tun.SetOutbound(out)
	send, _ := NewProcessor(ProcessorOptions{SAD: sadA, Tunnel: tun, Workers: 2})
	recv, _ := NewProcessor(ProcessorOptions{SAD: sadB, Workers: 2})
	var mu sync.Mutex
	sent := map[uint32]bool{}
	accepted := map[string]bool{}
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(ws, wr *Worker) {
			defer wg.Done()
			var replay [][]byte
			for i := 0; i < 150; i++ {
				b := make([]Packet, 8)
				for j := range b {
					b[j] = packetFor(udpPacket(hostA, hostB, 1, 2, 30, uint64(i*8+j)))
				}
				ws.Outbound(b)
				var rx []Packet
				var ids []string
				mu.Lock()
				for _, p := range b {
					if p.Verdict != VerdictOK {
						continue
					}
					d := p.Data()
					seq := uint32(d[24])<<24 | uint32(d[25])<<16 | uint32(d[26])<<8 | uint32(d[27])
					if sent[seq] {
						t.Errorf("seq %d sent twice", seq)
					}
					sent[seq] = true
					w := append([]byte(nil), d...)
					replay = append(replay, w)
					rx = append(rx, packetFor(w))
					ids = append(ids, string(w[20:]))
				}
				mu.Unlock()
				for k := 0; k < 3 && len(replay) > 0; k++ { // replays of own earlier packets
					w := replay[(i*7+k*13)%len(replay)]
					rx = append(rx, packetFor(w))
					ids = append(ids, string(w[20:]))
				}
				wr.Inbound(rx)
				mu.Lock()
				for j, p := range rx {
					if p.Verdict == VerdictOK {
						if accepted[ids[j]] {
							t.Errorf("packet accepted twice")
						}
						accepted[ids[j]] = true
					}
				}
				mu.Unlock()
			}
		}(send.Worker(w), recv.Worker(w))
	}
	for i := 0; i < 30; i++ {
		mtu := 1400 + i
		if err := out.Update(Changes{PathMTU: &mtu}); err != nil && !errors.Is(err, ErrClosed) {
			t.Fatal(err)
		}
		if i%3 == 0 {
			no, ni := mk(Out), mk(In)
			if _, err := sadA.Replace(no); err != nil {
				t.Fatal(err)
			}
			tun.SetOutbound(no)
			if _, err := sadB.Replace(ni); err != nil {
				t.Fatal(err)
			}
			out = no
		}
	}
	wg.Wait()
	if len(sent) == 0 || len(accepted) == 0 {
		t.Fatalf("sent %d accepted %d", len(sent), len(accepted))
	}
}
