package sa

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/espxdp/espxdp/esp"
)

func TestStateConfigErrors(t *testing.T) {
	oc, ic := pairCfg("aes128gcm16", 0x3001, nil)
	cases := []struct {
		field string
		cfg   Config
		mod   func(*Config)
	}{
		{"InitialSeq", ic, func(c *Config) { c.InitialSeq = 5 }},
		{"Replay", oc, func(c *Config) { c.Replay = &ReplayState{Top: 5} }},
		{"InitialSeq", oc, func(c *Config) { c.InitialSeq = math.MaxUint32 + 1 }},
		{"Replay", ic, func(c *Config) { c.Replay = &ReplayState{Top: math.MaxUint32 + 1} }},
		{"Replay", ic, func(c *Config) { c.Replay = &ReplayState{Top: 9, Bitmap: make([]uint64, 2000)} }},
		{"SPI", oc, func(c *Config) { c.SPI = 200 }},
	}
	for _, c := range cases {
		cfg := c.cfg
		c.mod(&cfg)
		_, err := New(cfg)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != c.field {
			t.Errorf("%s: err = %v", c.field, err)
		}
	}
	oc.ESN, oc.InitialSeq = true, math.MaxUint32+1
	if _, err := New(oc); err != nil {
		t.Errorf("ESN with InitialSeq above 2^32: %v", err)
	}
}

func TestInitialSeq(t *testing.T) {
	r := newRig(t, "aes128gcm16", nil)
	oc, _ := pairCfg("aes128gcm16", 0x3002, func(c *Config) { c.InitialSeq = 1000 })
	s := mustSA(t, oc)
	if s.Seq() != 1000 {
		t.Fatalf("Seq %d", s.Seq())
	}
	r.tun.SetOutbound(s)
	if seq, _ := espSeq(t, r.seal(t, udpPacket(hostA, hostB, 1, 2, 20, 1))); seq != 1001 {
		t.Fatalf("first seq %d, want 1001", seq)
	}
}

// TestRestartReplayState: an inbound SA deleted at shutdown exports its
// window exactly; the SA created from it after the "restart" rejects
// every packet accepted before and accepts the ones never seen.
func TestRestartReplayState(t *testing.T) {
	r := newRig(t, "aes128gcm16", fixedKeys)
	var pkts []Packet
	for i := 0; i < 40; i++ {
		p := r.seal(t, udpPacket(hostA, hostB, 1, 2, 30, uint64(i)))
		pkts = append(pkts, clonePacket(p))
		if i%3 != 1 {
			if q := r.open(p); q.Verdict != VerdictOK {
				t.Fatal(q.Reason)
			}
		}
	}
	if st := r.in.ReplayState(); st.Top != 40 || st.Bitmap != nil {
		t.Fatalf("live ReplayState %+v, want top only", st)
	}
	if err := r.sadB.Delete(In, r.in.SPI()); err != nil {
		t.Fatal(err)
	}
	st := r.in.ReplayState()
	if st.Top != 40 || len(st.Bitmap) != DefaultReplayWindow/64 {
		t.Fatalf("exported %d words, top %d", len(st.Bitmap), st.Top)
	}
	js, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var back ReplayState
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	_, ic := pairCfg("aes128gcm16", 0x1001, fixedKeys)
	ic.Replay = &back
	in2 := mustSA(t, ic)
	back.Bitmap[0] = 0 // New copied it
	if err := r.sadB.Add(in2); err != nil {
		t.Fatal(err)
	}
	if in2.Seq() != 40 {
		t.Fatalf("Seq after import %d", in2.Seq())
	}
	for i, p := range pkts {
		q := r.open(clonePacket(p))
		if want := i%3 == 1; (q.Verdict == VerdictOK) != want {
			t.Fatalf("packet %d after restart: %v %v, want accepted=%v", i, q.Verdict, q.Reason, want)
		}
	}
}

func TestSeqLimit(t *testing.T) {
	r := newRig(t, "aes128gcm16", func(c *Config) { c.SeqLimit = 10 })
	if r.out.SeqLimit() != 10 {
		t.Fatal(r.out.SeqLimit())
	}
	ok, reasons := r.sendN(t, 4, 10)
	if ok != 4 || len(reasons) != 0 || r.evA.count(EventSeqLimit) != 0 {
		t.Fatalf("ok %d reasons %v events %v", ok, reasons, r.evA.kinds())
	}
	ok, reasons = r.sendN(t, 8, 10) // numbers 5..10 go, two are refused
	if ok != 6 || reasons[DropSeqLimit] != 2 || r.out.Seq() != 10 {
		t.Fatalf("ok %d reasons %v seq %d", ok, reasons, r.out.Seq())
	}
	if n := r.evA.count(EventSeqLimit); n != 1 {
		t.Fatalf("%d EventSeqLimit, want 1 (low water at 5)", n)
	}
	if st := r.out.Stats(); st.Drops[DropSeqLimit] != 2 || st.SeqLimit != 10 || st.Seq != 10 {
		t.Fatalf("stats %+v", st)
	}
	// Raising the limit: traffic continues right after the old one.
	r.out.SetSeqLimit(20)
	p := r.seal(t, udpPacket(hostA, hostB, 1, 2, 30, 1))
	if seq, _ := espSeq(t, p); seq != 11 {
		t.Fatalf("seq %d after raising the limit, want 11", seq)
	}
	r.sendN(t, 3, 10) // 12..14
	if n := r.evA.count(EventSeqLimit); n != 1 {
		t.Fatalf("%d EventSeqLimit before the new low water (15)", n)
	}
	r.sendN(t, 1, 10) // 15
	if n := r.evA.count(EventSeqLimit); n != 2 {
		t.Fatalf("%d EventSeqLimit, want 2", n)
	}
	for _, e := range r.evA.ev {
		if e.Kind == EventSeqLimit && (e.SA != r.out || e.Limit != LimitSequence) {
			t.Fatalf("event %+v", e)
		}
	}
	r.out.SetSeqLimit(0)
	if ok, _ := r.sendN(t, 30, 10); ok != 30 || r.out.Seq() != 45 {
		t.Fatalf("without a limit: ok %d seq %d", ok, r.out.Seq())
	}
	if r.out.State() != StateActive {
		t.Fatal(r.out.State())
	}
}

// TestSeqLimitShared: two workers share an SA with a limit; every
// number up to the limit is used exactly once and none above.
func TestSeqLimitShared(t *testing.T) {
	oc, _ := pairCfg("aes128gcm16", 0x3003, func(c *Config) { c.SeqLimit = 500 })
	s := mustSA(t, oc)
	sad := NewSAD(SADOptions{})
	sad.Add(s)
	tun := NewTunnel("x")
	tun.SetOutbound(s)
	p, err := NewProcessor(ProcessorOptions{SAD: sad, Tunnel: tun, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[uint32]int{}
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w *Worker) {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				b := make([]Packet, 16)
				for j := range b {
					b[j] = packetFor(udpPacket(hostA, hostB, 1, 2, 20, uint64(j)))
				}
				w.Outbound(b)
				mu.Lock()
				for _, q := range b {
					if q.Verdict == VerdictOK {
						seen[binary.BigEndian.Uint32(q.Data()[24:])]++
					} else if q.Reason != DropSeqLimit {
						t.Errorf("drop %v", q.Reason)
					}
				}
				mu.Unlock()
			}
		}(p.Worker(w))
	}
	wg.Wait()
	if len(seen) != 500 {
		t.Fatalf("%d numbers used, want 500", len(seen))
	}
	for n, c := range seen {
		if n < 1 || n > 500 || c != 1 {
			t.Fatalf("seq %d used %d times", n, c)
		}
	}
}

func TestLastUsed(t *testing.T) {
	r := newRig(t, "aes128gcm16", nil)
	if !r.out.LastUsed().IsZero() || !r.out.Stats().LastUsed.IsZero() {
		t.Fatal("LastUsed set before any packet")
	}
	t0 := r.clock.Now()
	r.sendN(t, 1, 10)
	if !r.out.LastUsed().Equal(t0) || !r.in.LastUsed().Equal(t0) {
		t.Fatalf("LastUsed %v %v, want %v", r.out.LastUsed(), r.in.LastUsed(), t0)
	}
	r.clock.Add(500 * time.Millisecond)
	r.sendN(t, 1, 10)
	if !r.out.LastUsed().Equal(t0) {
		t.Fatalf("LastUsed moved within the grain: %v", r.out.LastUsed())
	}
	r.clock.Add(time.Second)
	r.sendN(t, 1, 10)
	if want := t0.Add(1500 * time.Millisecond); !r.out.LastUsed().Equal(want) || !r.out.Stats().LastUsed.Equal(want) {
		t.Fatalf("LastUsed %v, want %v", r.out.LastUsed(), want)
	}
	// Drops do not count as use.
	r.clock.Add(time.Hour)
	r.out.Expire(true)
	r.sendN(t, 1, 10)
	if r.out.LastUsed().Equal(r.clock.Now()) {
		t.Fatal("a dropped packet moved LastUsed")
	}
}

// TestSoftBeforeHard: a batch or clock step that crosses both limits
// raises the soft event first.
func TestSoftBeforeHard(t *testing.T) {
	check := func(t *testing.T, r *rig, l Limit) {
		t.Helper()
		var got []EventKind
		for _, e := range r.evA.ev {
			if e.Kind == EventSoftExpire || e.Kind == EventHardExpire {
				got = append(got, e.Kind)
				if e.Limit != l {
					t.Fatalf("event %v limit %v, want %v", e.Kind, e.Limit, l)
				}
			}
		}
		if len(got) != 2 || got[0] != EventSoftExpire || got[1] != EventHardExpire {
			t.Fatalf("events %v, want soft then hard", got)
		}
	}
	t.Run("packets", func(t *testing.T) {
		r := newRig(t, "aes128gcm16", func(c *Config) { c.SoftLifetime.Packets, c.HardLifetime.Packets = 3, 5 })
		r.sendN(t, 10, 10) // one batch
		check(t, r, LimitPackets)
	})
	t.Run("bytes", func(t *testing.T) {
		r := newRig(t, "aes128gcm16", func(c *Config) { c.SoftLifetime.Bytes, c.HardLifetime.Bytes = 100, 120 })
		r.sendN(t, 1, 500)
		check(t, r, LimitBytes)
	})
	t.Run("time", func(t *testing.T) {
		r := newRig(t, "aes128gcm16", func(c *Config) {
			c.SoftLifetime.Time, c.HardLifetime.Time = 10*time.Second, 20*time.Second
		})
		r.clock.Add(time.Minute)
		r.sendN(t, 1, 10)
		check(t, r, LimitTime)
	})
	t.Run("sweep", func(t *testing.T) {
		r := newRig(t, "aes128gcm16", func(c *Config) {
			c.SoftLifetime.Time, c.HardLifetime.Time = 10*time.Second, 20*time.Second
		})
		r.sadA.Sweep(r.clock.Now().Add(time.Minute))
		check(t, r, LimitTime)
	})
}

// TestConfigESPOnly: an SA for a UDP socket needs no endpoints and
// accounts for the UDP header in its MTU.
func TestConfigESPOnly(t *testing.T) {
	tr := esp.MustParseTransform("aes128gcm16")
	key, _ := keysFor(tr)
	mk := func(dir Direction) *SA {
		return mustSA(t, Config{SPI: 0x4001, Direction: dir, Mode: esp.Tunnel, Transform: tr, Key: key,
			ESPOnly: true, PathMTU: 1500})
	}
	out, in := mk(Out), mk(In)
	c, err := esp.New(esp.Config{Transform: tr, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if want := c.PlaintextMTU(1500, esp.Tunnel, false, true); out.PlaintextMTU() != want {
		t.Fatalf("plaintext MTU %d, want %d (with the UDP header)", out.PlaintextMTU(), want)
	}
	sad := NewSAD(SADOptions{})
	sad.Add(out)
	sad.Add(in)
	tun := NewTunnel("udp")
	tun.SetOutbound(out)
	p, _ := NewProcessor(ProcessorOptions{SAD: sad, Tunnel: tun})
	w := p.Worker(0)
	inner := udpPacket(hostA, hostB, 1, 2, 100, 1)
	b := []Packet{packetFor(inner), packetFor(inner)}
	b[0].ESPOnly = true
	w.Outbound(b)
	if b[0].Verdict != VerdictOK || b[1].Reason != DropMalformed {
		t.Fatalf("ESPOnly %v %v, plain %v %v", b[0].Verdict, b[0].Reason, b[1].Verdict, b[1].Reason)
	}
	wire := append([]byte(nil), b[0].Data()...)
	q := []Packet{{}}
	q[0].ESPOnly = true
	q[0].Reset(wire, 0, len(wire)) // Reset keeps ESPOnly
	w.Inbound(q)
	if q[0].Verdict != VerdictOK || string(q[0].Data()) != string(inner) {
		t.Fatalf("Inbound %v %v", q[0].Verdict, q[0].Reason)
	}
	// Without ESPOnly, tunnel mode still needs both endpoints.
	if _, err := New(Config{SPI: 0x4001, Direction: Out, Mode: esp.Tunnel, Transform: tr, Key: key}); err == nil {
		t.Fatal("tunnel SA without endpoints accepted")
	}
}

// TestDeleteFromEventHandler: the package doc promises that an
// EventFunc may delete the SA whose event it handles; it must not
// deadlock the worker that delivers it.
func TestDeleteFromEventHandler(t *testing.T) {
	r := newRig(t, "aes128gcm16", func(c *Config) { c.SoftLifetime.Packets = 2 })
	r.out.SetEvents(func(e Event) {
		if e.Kind == EventSoftExpire {
			if err := r.sadA.Delete(Out, e.SPI); err != nil {
				t.Error(err)
			}
		}
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := make([]Packet, 4)
		for i := range b {
			b[i] = packetFor(udpPacket(hostA, hostB, 1, 2, 10, 1))
		}
		r.wSend.Outbound(b)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("deleting from the event handler deadlocked")
	}
	if r.out.State() != StateDeleted {
		t.Fatalf("state %v", r.out.State())
	}
}
