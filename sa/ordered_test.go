package sa

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/espxdp/espxdp/esp"
)

// TestReserveSeq checks the run reservation of sequence numbers against
// its invariant: numbers are handed out once, consecutively, never above
// the SeqLimit nor past the sequence space.
func TestReserveSeq(t *testing.T) {
	mk := func(mod func(*Config)) *SA {
		oc, _ := pairCfg("aes128gcm16", 0x4242, mod)
		return mustSA(t, oc)
	}
	var ev eventList
	s := mk(nil)
	if f, g, why := s.reserveSeq(5, 0, &ev); f != 1 || g != 5 || why != DropNone || s.Seq() != 5 {
		t.Fatalf("plain: %d %d %v seq %d", f, g, why, s.Seq())
	}
	// A SeqLimit cuts a run short and does not move the counter past it.
	s = mk(func(c *Config) { c.SeqLimit = 7 })
	if f, g, why := s.reserveSeq(5, 0, &ev); f != 1 || g != 5 || why != DropSeqLimit {
		t.Fatalf("limit 1: %d %d %v", f, g, why)
	}
	if f, g, why := s.reserveSeq(5, 0, &ev); f != 6 || g != 2 || why != DropSeqLimit || s.Seq() != 7 {
		t.Fatalf("limit 2: %d %d %v seq %d", f, g, why, s.Seq())
	}
	if _, g, why := s.reserveSeq(5, 0, &ev); g != 0 || why != DropSeqLimit || s.Seq() != 7 {
		t.Fatalf("limit 3: %d %v seq %d", g, why, s.Seq())
	}
	s.SetSeqLimit(100)
	if f, g, _ := s.reserveSeq(3, 0, &ev); f != 8 || g != 3 {
		t.Fatalf("after raising the limit: %d %d", f, g)
	}
	// Without ESN the last number is 2^32-1; the SA then expires.
	s = mk(func(c *Config) { c.InitialSeq = math.MaxUint32 - 2 })
	if f, g, why := s.reserveSeq(5, 0, &ev); f != math.MaxUint32-1 || g != 2 || why != DropSeqOverflow || s.State() != StateExpired {
		t.Fatalf("overflow: %d %d %v %v", f, g, why, s.State())
	}
	// The same with a limit (the compare-and-swap path): the end of the
	// space wins over a limit at the same place, as per packet.
	s = mk(func(c *Config) { c.InitialSeq, c.SeqLimit = math.MaxUint32-2, math.MaxUint32 })
	if f, g, why := s.reserveSeq(5, 0, &ev); f != math.MaxUint32-1 || g != 2 || why != DropSeqOverflow || s.State() != StateExpired {
		t.Fatalf("overflow at the limit: %d %d %v", f, g, why)
	}
	// With ESN the counter must not wrap past 2^64-1.
	s = mk(func(c *Config) { c.ESN, c.InitialSeq = true, math.MaxUint64-3 })
	if f, g, why := s.reserveSeq(5, 0, &ev); f != math.MaxUint64-2 || g != 3 || why != DropSeqOverflow || s.State() != StateExpired {
		t.Fatalf("ESN end: %d %d %v %v", f, g, why, s.State())
	}
	if _, g, _ := s.reserveSeq(5, 0, &ev); g != 0 || s.seq.Load() != math.MaxUint64 {
		t.Fatalf("ESN after the end: got %d, counter %d", g, s.seq.Load())
	}
	// Concurrent runs with a limit: every number once, none past it.
	s = mk(func(c *Config) { c.SeqLimit = 5000 })
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var ev eventList
			for i := 0; i < 200; i++ {
				f, g, _ := s.reserveSeq(uint64(1+(i+w)%40), 0, &ev)
				mu.Lock()
				for n := f; n < f+g; n++ {
					if seen[n] || n > 5000 || n == 0 {
						t.Errorf("number %d handed out twice or past the limit", n)
					}
					seen[n] = true
				}
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	if len(seen) != 5000 {
		t.Fatalf("%d numbers of 5000 handed out", len(seen))
	}
}

// TestRunCap checks that a run never parks more packets than could be
// counted against a hard packet or byte limit, so that the limits stay
// exact with one worker.
func TestRunCap(t *testing.T) {
	for _, c := range []struct {
		hard Lifetime
		want int
	}{
		{Lifetime{}, maxRun},
		{Lifetime{Packets: 10}, 10},
		{Lifetime{Packets: 1000}, maxRun},
		{Lifetime{Bytes: 3 * maxInner}, 3},
		{Lifetime{Bytes: 100}, 1},
	} {
		_, ic := pairCfg("aes128gcm16", 0x4343, func(c2 *Config) { c2.HardLifetime = c.hard })
		s := mustSA(t, ic)
		w := &Worker{run: run{sa: s, at: s.attrs.Load()}}
		if got := w.runCap(); got != c.want {
			t.Errorf("%+v: cap %d, want %d", c.hard, got, c.want)
		}
	}
	// Exactness end to end: a hard limit of 5 packets lets exactly 5
	// through one worker, in one batch of 20.
	r := newRig(t, "aes128gcm16", func(c *Config) { c.HardLifetime = Lifetime{Packets: 5} })
	b := make([]Packet, 20)
	for i := range b {
		b[i] = packetFor(udpPacket(hostA, hostB, 1, 2, 20, uint64(i)))
	}
	r.wSend.Outbound(b)
	ok := 0
	for _, p := range b {
		if p.Verdict == VerdictOK {
			ok++
		} else if p.Reason != DropExpired {
			t.Fatalf("reason %v", p.Reason)
		}
	}
	if ok != 5 {
		t.Fatalf("%d packets sent under a hard limit of 5", ok)
	}
}

// publishOrderedRun builds an Ordered processor of 2 workers with one
// outbound SA of spi and publishes by hand, on worker 0's board, a run
// of n encryption jobs (sequence numbers 1 to n) for the other worker
// to claim. It returns both workers and the jobs.
func publishOrderedRun(t *testing.T, spi uint32, n int) (w0, w1 *Worker, js []job) {
	t.Helper()
	out, _ := mustPair(t, "aes128gcm16", spi, nil)
	sad := NewSAD(SADOptions{})
	sad.Add(out)
	p, err := NewProcessor(ProcessorOptions{SAD: sad, Workers: 2, Concurrency: Ordered})
	if err != nil {
		t.Fatal(err)
	}
	w0, w1 = p.Worker(0), p.Worker(1)
	pk := make([]Packet, n)
	js = make([]job, n)
	for i := range js {
		pk[i] = packetFor(udpPacket(hostA, hostB, 1, 2, 20, uint64(i)))
		js[i] = job{p: &pk[i], seq: uint64(i + 1)}
	}
	b := w0.board
	b.jobs, b.sa, b.at = js, out, out.attrs.Load()
	b.epoch.Store(1)
	b.ctl.Store(1<<16 | uint64(len(js)))
	return w0, w1, js
}

// TestOrderedBoardHelp publishes a run on a worker's board by hand and
// lets another worker do all of its AEAD jobs through Drain: the results
// are those of the sequencer doing them itself.
func TestOrderedBoardHelp(t *testing.T) {
	w0, w1, js := publishOrderedRun(t, 0x4444, 6)
	b := w0.board
	if n := w1.Pending(); n != len(js) {
		t.Fatalf("Pending %d, want the %d unclaimed jobs", n, len(js))
	}
	if n := w0.Pending(); n != 0 {
		t.Fatalf("the sequencer sees %d jobs of its own as pending", n)
	}
	if n := w1.Drain(make([]Packet, 4)); n != 0 {
		t.Fatalf("Ordered Drain returned %d packets", n)
	}
	if b.done.Load() != uint32(len(js)) {
		t.Fatalf("helper did %d of %d jobs", b.done.Load(), len(js))
	}
	for i, j := range js {
		if j.drop != DropNone || len(j.res) == 0 || binary.BigEndian.Uint32(j.res[24:]) != uint32(i+1) {
			t.Fatalf("job %d: %v %x", i, j.drop, j.res[:28])
		}
	}
	if _, _, _, ok := b.claim(); ok || w1.Pending() != 0 {
		t.Fatal("a finished run can still be claimed")
	}
}

// sendInOrder sends total packets of one SA, in batches of random size
// (seeded), through worker 0 of s.tx then of s.rx, and fails t unless
// every packet is accepted both ways, sequence numbers go out in
// arrival order and the decrypted packets come back in arrival order.
// With yield it yields at random between batches. It returns the number
// of packets received.
func sendInOrder(t *testing.T, s *twoSides, total int, seed uint64, yield bool) uint64 {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	var lastSeq uint32
	next := uint64(0)
	for id := 0; id < total; {
		b := make([]Packet, 1+rng.IntN(2*maxRun))
		for i := range b {
			b[i] = packetFor(udpPacket(hostA, hostB, 1, 2, 200, uint64(id+i)))
			b[i].Tunnel = s.tuns[0]
		}
		id += len(b)
		s.tx.Worker(0).Outbound(b)
		for _, p := range b {
			if p.Verdict != VerdictOK {
				t.Fatalf("outbound %v %v", p.Verdict, p.Reason)
			}
			seq := binary.BigEndian.Uint32(p.Data()[24:])
			if seq != lastSeq+1 {
				t.Fatalf("sequence number %d after %d: out of arrival order", seq, lastSeq)
			}
			lastSeq = seq
		}
		s.rx.Worker(0).Inbound(b)
		for _, p := range b {
			if p.Verdict != VerdictOK {
				t.Fatalf("inbound %v %v", p.Verdict, p.Reason)
			}
			if got := binary.BigEndian.Uint64(p.Data()[28:]); got != next {
				t.Fatalf("packet %d left after %d: out of arrival order", got, next-1)
			}
			next++
		}
		if yield && rng.IntN(3) == 0 {
			runtime.Gosched()
		}
	}
	return next
}

// TestOrderedInOrder sends an in-order stream through one sequencer
// worker of an Ordered processor while the other workers help from
// Drain, yielding at random: sequence numbers go out in arrival order
// and decrypted packets come back in arrival order, none lost.
func TestOrderedInOrder(t *testing.T) {
	const nw, total = 3, 3000
	s := newTwoSides(t, Ordered, nw, 1, "aes128gcm16")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var helped atomic.Int64
	for _, p := range []*Processor{s.tx, s.rx} {
		for w := 1; w < nw; w++ {
			wg.Add(1)
			p.Worker(w).Pending() // idle (no batch of its own): the sequencers publish
			go func(w *Worker, seed uint64) {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, 1))
				for {
					select {
					case <-stop:
						return
					default:
					}
					helped.Add(int64(w.help()))
					if rng.IntN(4) == 0 {
						runtime.Gosched()
					}
				}
			}(p.Worker(w), uint64(w))
		}
	}
	sendInOrder(t, s, total, 7, true)
	close(stop)
	wg.Wait()
	t.Logf("helpers did %d of %d AEAD jobs", helped.Load(), 2*total)
}

// TestModesProperty runs every concurrency mode with several workers
// that yield and sleep at random (seeded), while the control plane adds
// and deletes other SAs, updates the SAs in use (SA.Update) and
// replaces them with same-key copies (SAD.Replace). It asserts on every
// packet: no sequence number is sent twice under a key, no packet is
// accepted twice (the receivers are fed every packet up to three times,
// at random workers and positions), and in the Ordered mode no worker's
// output leaves out of its arrival order (per worker, sequence numbers
// of a key grow strictly in output order). Meant for -race.
func TestModesProperty(t *testing.T) {
	for _, mode := range []Concurrency{Shared, Sharded, PerCPU, Ordered} {
		for seed := uint64(1); seed <= 2; seed++ {
			t.Run(fmt.Sprintf("%v/%d", mode, seed), func(t *testing.T) { modesProperty(t, mode, seed) })
		}
	}
}

func modesProperty(t *testing.T, mode Concurrency, seed uint64) {
	const nw, rounds = 3, 60
	tr := esp.MustParseTransform("aes128gcm16")
	nsa := 1
	if mode == PerCPU {
		nsa = nw
	}
	keys := make([][]byte, nsa)
	for i := range keys {
		keys[i], _ = keysFor(tr)
	}
	mk := func(dir Direction, i int) *SA {
		c := Config{SPI: 0x7000 + uint32(i), Direction: dir, Mode: esp.Tunnel, Local: gwA, Remote: gwB,
			Transform: tr, Key: keys[i], Worker: i, PinWorker: mode == PerCPU}
		if dir == In {
			c.Local, c.Remote = gwB, gwA
		}
		return mustSA(t, c)
	}
	sadA, sadB := NewSAD(SADOptions{}), NewSAD(SADOptions{})
	tun := NewTunnel("prop")
	var outs []*SA
	for i := 0; i < nsa; i++ {
		o, in := mk(Out, i), mk(In, i)
		sadA.Add(o)
		sadB.Add(in)
		outs = append(outs, o)
	}
	tun.SetOutbound(outs...)
	tx, _ := NewProcessor(ProcessorOptions{SAD: sadA, Tunnel: tun, Workers: nw, Concurrency: mode, QueueLen: 4096})
	rx, _ := NewProcessor(ProcessorOptions{SAD: sadB, Workers: nw, Concurrency: mode, QueueLen: 4096})

	type key struct{ spi, seq uint32 }
	var mu sync.Mutex
	sent := map[key]bool{}
	accepted := map[key]bool{}
	var wire [][]byte // every packet sent, for the receivers' random replays
	var sentN, okN atomic.Int64

	stop := make(chan struct{})
	var ctlDone atomic.Bool
	var wg sync.WaitGroup
	yield := func(rng *rand.Rand) {
		switch rng.IntN(8) {
		case 0:
			runtime.Gosched()
		case 1:
			time.Sleep(time.Duration(rng.IntN(50)) * time.Microsecond)
		}
	}
	loops := nw
	if mode == Ordered {
		loops = nw - 1 // the last worker only helps (a Worker is used by one goroutine)
	}
	for w := 0; w < loops; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			ws, wr := tx.Worker(w), rx.Worker(w)
			d := make([]Packet, 256)
			last := map[uint32]uint32{} // Ordered: last seq this worker sent per SPI
			// At least rounds rounds, and on while the control plane
			// works (bounded by 40*rounds).
			for r := 0; r < 40*rounds && (r < rounds || !ctlDone.Load()); r++ {
				b := make([]Packet, 1+rng.IntN(40))
				for i := range b {
					b[i] = packetFor(udpPacket(hostA, hostB, 1, 2, 30, uint64(w)<<32|uint64(r*64+i)))
				}
				ws.Outbound(b)
				yield(rng)
				n := ws.Drain(d)
				mu.Lock()
				for _, p := range append(b, d[:n]...) {
					if p.Verdict != VerdictOK {
						continue
					}
					dd := p.Data()
					k := key{binary.BigEndian.Uint32(dd[20:]), binary.BigEndian.Uint32(dd[24:])}
					if sent[k] {
						t.Errorf("%v: SPI %#x seq %d sent twice", mode, k.spi, k.seq)
					}
					sent[k] = true
					if mode == Ordered {
						if k.seq <= last[k.spi] {
							t.Errorf("Ordered: worker %d sent seq %d after %d", w, k.seq, last[k.spi])
						}
						last[k.spi] = k.seq
					}
					wire = append(wire, append([]byte(nil), dd...))
					sentN.Add(1)
				}
				// The receiver gets a random mix of the wire: new packets
				// and copies of old ones (replays).
				var in []Packet
				for k := 0; k < 1+rng.IntN(40) && len(wire) > 0; k++ {
					in = append(in, packetFor(wire[rng.IntN(len(wire))]))
				}
				mu.Unlock()
				for i := range in {
					dd := in[i].Data()
					in[i].Meta = uint64(binary.BigEndian.Uint32(dd[20:]))<<32 | uint64(binary.BigEndian.Uint32(dd[24:]))
				}
				wr.Inbound(in)
				yield(rng)
				n = wr.Drain(d)
				mu.Lock()
				check := func(p Packet) {
					if p.Verdict != VerdictOK {
						return
					}
					k := key{uint32(p.Meta >> 32), uint32(p.Meta)}
					if accepted[k] {
						t.Errorf("%v: SPI %#x seq %d accepted twice", mode, k.spi, k.seq)
					}
					accepted[k] = true
					okN.Add(1)
				}
				for _, p := range append(in, d[:n]...) {
					check(p) // handed-off packets come back from Drain
				}
				mu.Unlock()
			}
		}(w)
	}
	// Helpers: in the Ordered mode idle workers take AEAD jobs.
	var hwg sync.WaitGroup
	if mode == Ordered {
		hwg.Add(1)
		go func() {
			defer hwg.Done()
			d := make([]Packet, 4)
			for {
				select {
				case <-stop:
					return
				default:
				}
				rx.Worker(nw - 1).Drain(d)
				tx.Worker(nw - 1).Drain(d)
				runtime.Gosched()
			}
		}()
	}
	// Control plane.
	ctl := make(chan struct{})
	go func() {
		defer close(ctl)
		defer ctlDone.Store(true)
		rng := rand.New(rand.NewPCG(seed, 99))
		for i := 0; i < 25; i++ {
			k := rng.IntN(nsa)
			ttl := uint8(32 + i)
			if err := outs[k].Update(Changes{TTL: &ttl}); err != nil && !errors.Is(err, ErrClosed) {
				t.Error(err)
			}
			if i%4 == 1 {
				no := mk(Out, k)
				if _, err := sadA.Replace(no); err != nil {
					t.Error(err)
				}
				outs[k] = no
				tun.SetOutbound(outs...)
				if _, err := sadB.Replace(mk(In, k)); err != nil {
					t.Error(err)
				}
			}
			// Other SAs come and go (added, then deleted: closed and
			// wiped while workers run).
			_, extra := mustPair(t, "aes128gcm16", 0x880000+uint32(i), nil)
			if err := sadB.Add(extra); err != nil {
				t.Error(err)
			}
			if i > 0 {
				if err := sadB.Delete(In, 0x880000+uint32(i-1)); err != nil {
					t.Error(err)
				}
			}
			time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond)
		}
	}()
	<-ctl
	wg.Wait()
	close(stop)
	hwg.Wait()
	if sentN.Load() == 0 || okN.Load() == 0 {
		t.Fatalf("sent %d accepted %d", sentN.Load(), okN.Load())
	}
	t.Logf("sent %d, accepted %d", sentN.Load(), okN.Load())
}

// TestReplayWindowGrows deals an in-order stream of one SA to two
// workers, every other packet, and lets worker 0 process its whole
// share before worker 1 starts: the worst displacement two workers can
// cause, twice the default window. The default window grows in the
// first round - the packets it displaced past the old window are lost,
// as the grown window counts every number left of the old one as seen -
// and after it the stream loses nothing; explicitly sized windows, one worker and
// ReplayWindowMax = ReplayDisabled keep the window as it is. Replays
// stay rejected after the growth.
func TestReplayWindowGrows(t *testing.T) {
	const perWorker = DefaultReplayWindow // 2048 packets per round, displaced by up to 2045
	for _, c := range []struct {
		name     string
		mode     Concurrency
		nw       int
		window   int
		max      int
		wantSize int // after the rounds
	}{
		{"shared", Shared, 2, 0, 0, 8192},
		{"ordered", Ordered, 2, 0, 0, 8192},
		{"sharded", Sharded, 2, 0, 0, 8192},
		{"bounded", Shared, 2, 0, 1536, 1536},
		{"explicit", Shared, 2, DefaultReplayWindow, 0, DefaultReplayWindow},
		{"off", Shared, 2, 0, ReplayDisabled, DefaultReplayWindow},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, in := mustPair(t, "aes128gcm16", 0x5151, func(cf *Config) { cf.ReplayWindow = c.window; cf.PinWorker = true })
			sadA, sadB := NewSAD(SADOptions{}), NewSAD(SADOptions{})
			sadA.Add(out)
			sadB.Add(in)
			tun := NewTunnel("g")
			tun.SetOutbound(out)
			tx, _ := NewProcessor(ProcessorOptions{SAD: sadA, Tunnel: tun})
			rx, err := NewProcessor(ProcessorOptions{SAD: sadB, Workers: c.nw, Concurrency: c.mode, ReplayWindowMax: c.max})
			if err != nil {
				t.Fatal(err)
			}
			var old []Packet
			drops := make([]int, 4)
			for round := range drops {
				var share [2][]Packet
				for i := 0; i < 2*perWorker; i++ {
					b := []Packet{packetFor(udpPacket(hostA, hostB, 1, 2, 20, uint64(i)))}
					tx.Worker(0).Outbound(b)
					share[i%2] = append(share[i%2], b[0])
					if i%500 == 0 {
						old = append(old, clonePacket(b[0]))
					}
				}
				for w := 0; w < 2; w++ {
					for i := 0; i < len(share[w]); i += 32 {
						b := share[w][i:min(i+32, len(share[w]))]
						rx.Worker(w).Inbound(b)
						d := make([]Packet, 64)
						n := rx.Worker(1 - w).Drain(d) // Sharded: the owner takes hand-offs
						for _, p := range append(append([]Packet(nil), b...), d[:n]...) {
							if p.Verdict == VerdictDrop {
								if p.Reason != DropReplay {
									t.Fatalf("round %d: %v", round, p.Reason)
								}
								drops[round]++
							}
						}
					}
				}
			}
			size := in.Stats().ReplayWindow
			if size != c.wantSize {
				t.Fatalf("window %d, want %d (drops per round %v)", size, c.wantSize, drops)
			}
			if c.wantSize >= 4*perWorker {
				if drops[0] == 0 {
					t.Fatalf("no drop in the first round: the test does not displace enough (%v)", drops)
				}
				for r := 1; r < len(drops); r++ {
					if drops[r] != 0 {
						t.Fatalf("round %d lost %d packets after the window grew (%v)", r, drops[r], drops)
					}
				}
			} else if drops[len(drops)-1] == 0 {
				t.Fatalf("a small window lost nothing: the test does not displace enough (%v)", drops)
			}
			// Replays of packets accepted or refused earlier stay out.
			for _, p := range old {
				b := []Packet{clonePacket(p)}
				rx.Worker(0).Inbound(b)
				if b[0].Verdict == VerdictOK {
					t.Fatal("an old packet was accepted again after the window grew")
				}
			}
		})
	}
}

// TestOrderedStealsUnstartedJobs: a helper claims jobs and stalls before
// starting them; the sequencer takes them back and finishes the run on
// its own, and the stalled helper, when it resumes, can take none of
// them (each job is done exactly once) nor claim a job of a later run
// with its old claim.
func TestOrderedStealsUnstartedJobs(t *testing.T) {
	out, _ := mustPair(t, "aes128gcm16", 0x4545, nil)
	sad := NewSAD(SADOptions{})
	sad.Add(out)
	p, err := NewProcessor(ProcessorOptions{SAD: sad, Workers: 2, Concurrency: Ordered})
	if err != nil {
		t.Fatal(err)
	}
	w0, w1 := p.Worker(0), p.Worker(1)
	const n = 24
	pk := make([]Packet, n)
	js := make([]job, n)
	for i := range js {
		pk[i] = packetFor(udpPacket(hostA, hostB, 1, 2, 20, uint64(i)))
		js[i] = job{p: &pk[i], seq: uint64(i + 1)}
	}
	b := w0.board
	b.jobs, b.sa, b.at = js, out, out.attrs.Load()
	b.epoch.Store(1)
	b.ctl.Store(1<<16 | n)
	lo, hi, e, ok := b.claim() // the helper claims, then stalls
	if !ok || lo != 0 || hi <= lo || e != 1 {
		t.Fatalf("claim %d..%d epoch %d %v", lo, hi, e, ok)
	}
	b.run(w0, js, n) // the sequencer: published already
	if d := b.done.Load(); d != n {
		t.Fatalf("run returned with %d of %d jobs done", d, n)
	}
	for i, j := range js {
		if j.drop != DropNone || len(j.res) == 0 || binary.BigEndian.Uint32(j.res[24:]) != uint32(i+1) {
			t.Fatalf("job %d: %v", i, j.drop)
		}
	}
	if got := b.do(w1, lo, hi, e); got != 0 || b.done.Load() != n {
		t.Fatalf("the stalled helper did %d jobs the sequencer had taken back", got)
	}
	// A next run in the same slots: the old claim takes nothing of it.
	for i := range js {
		pk[i] = packetFor(udpPacket(hostA, hostB, 1, 2, 20, uint64(i)))
		js[i] = job{p: &pk[i], seq: uint64(n + i + 1)}
	}
	b.done.Store(0)
	b.epoch.Store(2)
	b.ctl.Store(2<<16 | n)
	if got := b.do(w1, lo, hi, e); got != 0 {
		t.Fatalf("a claim of run 1 did %d jobs of run 2", got)
	}
	b.run(w0, js, n)
	for i, j := range js {
		if j.drop != DropNone || binary.BigEndian.Uint32(j.res[24:]) != uint32(n+i+1) {
			t.Fatalf("run 2 job %d: %v", i, j.drop)
		}
	}
}

// TestOrderedStalledHelpersProperty drives one SA through Ordered
// processors whose helpers claim jobs and then stall at random (sleep
// up to 300 µs, or yield) before doing them, so that sequencers take
// claimed jobs back while helpers may resume at any moment. Invariants
// (seeded, meant for -race): every packet is encrypted with a fresh
// number and decrypted and accepted exactly once - a job done twice in
// place would fail its ICV - and both batches come back in arrival
// order.
func TestOrderedStalledHelpersProperty(t *testing.T) {
	const nw, total = 3, 2500
	s := newTwoSides(t, Ordered, nw, 1, "aes128gcm16")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var claimed, did atomic.Int64
	for _, p := range []*Processor{s.tx, s.rx} {
		for w := 1; w < nw; w++ {
			wg.Add(1)
			p.Worker(w).Pending() // idle (no batch of its own): the sequencer publishes
			go func(p *Processor, w *Worker, seed uint64) {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, 2))
				b := p.Worker(0).board
				for {
					select {
					case <-stop:
						return
					default:
					}
					lo, hi, e, ok := b.claim()
					if !ok {
						runtime.Gosched()
						continue
					}
					claimed.Add(int64(hi - lo))
					switch rng.IntN(4) {
					case 0:
						time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond)
					case 1:
						runtime.Gosched()
					}
					did.Add(int64(b.do(w, lo, hi, e)))
				}
			}(p, p.Worker(w), uint64(w)+uint64(len(p.workers))*7)
		}
	}
	next := sendInOrder(t, s, total, 11, false)
	close(stop)
	wg.Wait()
	if st := s.ins[0].Stats(); st.DecapsPkts != next {
		t.Fatalf("%d packets accepted, want %d", st.DecapsPkts, next)
	}
	t.Logf("helpers claimed %d jobs and did %d; the sequencers took back %d", claimed.Load(), did.Load(), claimed.Load()-did.Load())
}

// TestOrderedDrainHelpsWhenIdle: a worker's Drain takes no jobs right
// after a batch of its own (it has input, so it does its own jobs), and
// takes them at the next Drain with no batch in between.
func TestOrderedDrainHelpsWhenIdle(t *testing.T) {
	w0, w1, js := publishOrderedRun(t, 0x4646, 4)
	b := w0.board
	own := []Packet{{Buf: []byte{0x45}, Len: 1}} // a batch of its own (dropped: malformed)
	w1.Inbound(own)
	if w1.Drain(nil); b.done.Load() != 0 || w1.Pending() != len(js) {
		t.Fatalf("Drain after an own batch took jobs: %d done", b.done.Load())
	}
	if w1.Drain(nil); b.done.Load() != uint32(len(js)) {
		t.Fatalf("an idle Drain did %d of %d jobs", b.done.Load(), len(js))
	}
}

// TestOrderedIdleProperty drives the workers of an Ordered processor
// through random sequences of batches (empty or not, either direction),
// Drain and Pending, and checks the idle bookkeeping against a model
// after every step. Invariants (poll, feed): a worker is idle exactly
// when it had no batch of its own since its previous Drain or Pending;
// Processor.idle counts the idle workers; Pending is 0 for a worker that
// is not idle.
func TestOrderedIdleProperty(t *testing.T) {
	const nw = 3
	for seed := uint64(1); seed <= 20; seed++ {
		p, err := NewProcessor(ProcessorOptions{SAD: NewSAD(SADOptions{}), Workers: nw, Concurrency: Ordered})
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(seed, 3))
		var fed, idle [nw]bool
		for step := 0; step < 400; step++ {
			i := rng.IntN(nw)
			w := p.Worker(i)
			bad := []Packet{{Buf: []byte{0x45}, Len: 1}} // dropped (malformed): a batch all the same
			switch rng.IntN(6) {
			case 0:
				w.Inbound(nil)
			case 1:
				w.Inbound(bad)
				fed[i], idle[i] = true, false
			case 2:
				w.Outbound(bad)
				fed[i], idle[i] = true, false
			case 3:
				if n := w.Drain(make([]Packet, 4)); n != 0 {
					t.Fatalf("seed %d step %d: Ordered Drain returned %d", seed, step, n)
				}
				idle[i], fed[i] = !fed[i], false
			default:
				busy := fed[i]
				if n := w.Pending(); busy && n != 0 {
					t.Fatalf("seed %d step %d: Pending %d for a worker with input", seed, step, n)
				}
				idle[i], fed[i] = !busy, false
			}
			want := 0
			for k := range nw {
				if p.Worker(k).idle != idle[k] {
					t.Fatalf("seed %d step %d: worker %d idle %v, want %v", seed, step, k, p.Worker(k).idle, idle[k])
				}
				if idle[k] {
					want++
				}
			}
			if got := int(p.idle.Load()); got != want {
				t.Fatalf("seed %d step %d: Processor.idle %d, want %d", seed, step, got, want)
			}
		}
	}
}

// TestOrderedAloneWithoutIdleHelper: while no worker is idle a sequencer
// does its runs without the board, as the Shared mode does (no epoch is
// published); once another worker is idle (its Pending), runs go on the
// board; both ways every packet is accepted in arrival order.
func TestOrderedAloneWithoutIdleHelper(t *testing.T) {
	for _, idle := range []bool{false, true} {
		s := newTwoSides(t, Ordered, 2, 1, "aes128gcm16")
		if idle {
			s.rx.Worker(1).Pending()
			s.tx.Worker(1).Pending()
		}
		next := sendInOrder(t, s, 500, 5, false)
		ein, eout := s.rx.Worker(0).board.epoch.Load(), s.tx.Worker(0).board.epoch.Load()
		if !idle && (ein != 0 || eout != 0) {
			t.Fatalf("%d inbound and %d outbound runs published with no worker idle", ein, eout)
		}
		if idle && (ein == 0 || eout == 0) {
			t.Fatalf("%d inbound and %d outbound runs published with a worker idle", ein, eout)
		}
		if st := s.ins[0].Stats(); st.DecapsPkts != next {
			t.Fatalf("%d packets accepted, want %d", st.DecapsPkts, next)
		}
	}
}

// TestInnerDropAfterWindowUpdate: a tunnel-mode packet whose ICV holds
// but whose inner header is malformed is dropped (DropMalformed), and its
// number is recorded all the same - a replay of it is DropReplay - in
// every mode, whichever worker decrypted it (the inner checks run where
// the AEAD ran, in crypt; the verdict follows the window update).
func TestInnerDropAfterWindowUpdate(t *testing.T) {
	for _, mode := range []Concurrency{Shared, Ordered} {
		s := newTwoSides(t, mode, 2, 1, "aes128gcm16")
		s.rx.Worker(1).Pending() // Ordered: idle, so the runs go on the board
		b := make([]Packet, 12)
		for i := range b {
			b[i] = packetFor(udpPacket(hostA, hostB, 1, 2, 100, uint64(i)))
			b[i].Tunnel = s.tuns[0]
			if i%3 == 1 {
				binary.BigEndian.PutUint16(b[i].Data()[2:], 0xffff) // IPv4 total length past the end
			}
		}
		s.tx.Worker(0).Outbound(b)
		wire := make([]Packet, len(b))
		for i := range b {
			if b[i].Verdict != VerdictOK {
				t.Fatalf("%v: outbound %d: %v %v", mode, i, b[i].Verdict, b[i].Reason)
			}
			wire[i] = clonePacket(b[i])
		}
		s.rx.Worker(0).Inbound(b)
		for i, p := range b {
			want := VerdictOK
			if i%3 == 1 {
				want = VerdictDrop
				if p.Reason != DropMalformed {
					t.Fatalf("%v: packet %d dropped for %v, want %v", mode, i, p.Reason, DropMalformed)
				}
			}
			if p.Verdict != want {
				t.Fatalf("%v: packet %d: %v, want %v", mode, i, p.Verdict, want)
			}
		}
		s.rx.Worker(0).Inbound(wire)
		for i, p := range wire {
			if p.Verdict != VerdictDrop || p.Reason != DropReplay {
				t.Fatalf("%v: replay of packet %d: %v %v, want a replay drop", mode, i, p.Verdict, p.Reason)
			}
		}
	}
}
