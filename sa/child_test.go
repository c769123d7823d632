package sa

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestAddChildAllOrNone(t *testing.T) {
	var ev eventLog
	d := NewSAD(SADOptions{Events: ev.fn})
	out, in := mustPair(t, "aes128gcm16", 0x7001, func(c *Config) { c.Child = 7 })
	taken, _ := mustPair(t, "aes128gcm16", 0x7002, nil)
	_, takenIn := mustPair(t, "aes128gcm16", 0x7002, nil)
	if err := d.Add(takenIn); err != nil {
		t.Fatal(err)
	}
	_ = taken
	_, clash := mustPair(t, "aes128gcm16", 0x7002, func(c *Config) { c.Child = 7 })
	if err := d.AddChild(out, in, clash); !errors.Is(err, ErrExists) {
		t.Fatalf("AddChild with a taken SPI: %v", err)
	}
	_, in2 := mustPair(t, "aes128gcm16", 0x7001, nil)
	if err := d.AddChild(out, in, in2); !errors.Is(err, ErrExists) {
		t.Fatalf("AddChild with two inbound SAs of one SPI: %v", err)
	}
	if err := d.AddChild(in, in); !errors.Is(err, ErrExists) {
		t.Fatalf("AddChild with one SA twice: %v", err)
	}
	if d.Len() != 1 || d.Lookup(0x7001) != nil || len(d.Child(7)) != 0 || out.owner.Load() != nil || in.owner.Load() != nil {
		t.Fatal("a failed AddChild left something behind")
	}
	if err := d.AddChild(out, in); err != nil {
		t.Fatal(err)
	}
	if c := d.Child(7); !slices.Equal(c, []*SA{out, in}) || d.Lookup(0x7001) != in || d.GetOut(0x7001, gwB) != out {
		t.Fatalf("Child(7) = %v", c)
	}
	if out.Stats().Child != 7 || d.Child(0) != nil {
		t.Fatal("Stats.Child / Child(0)")
	}
	tun := NewTunnel("c")
	tun.SetOutbound(out)
	tun.AddInbound(in)
	n, err := d.DeleteChild(7)
	if err != nil || n != 2 || d.Len() != 1 || out.State() != StateDeleted || in.State() != StateDeleted {
		t.Fatalf("DeleteChild: %d %v, len %d", n, err, d.Len())
	}
	if len(tun.Outbound()) != 0 || len(tun.Inbound()) != 0 {
		t.Fatal("DeleteChild left SAs in the tunnel")
	}
	del := ev.ofKind(EventDeleted)
	if len(del) != 2 || del[0].Child != 7 || del[1].Child != 7 || del[0].SA != out || del[1].SA != in {
		t.Fatalf("deleted events %+v", del)
	}
	if _, err := d.DeleteChild(7); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second DeleteChild: %v", err)
	}
	// Replace moves group membership to the successor.
	a, b := mustPair(t, "aes128gcm16", 0x7101, func(c *Config) { c.Child = 8 })
	if err := d.AddChild(a, b); err != nil {
		t.Fatal(err)
	}
	_, b2 := mustPair(t, "aes128gcm16", 0x7101, func(c *Config) { c.Child = 8 })
	if _, err := d.Replace(b2); err != nil {
		t.Fatal(err)
	}
	if c := d.Child(8); !slices.Equal(c, []*SA{a, b2}) {
		t.Fatalf("after Replace: %v", c)
	}
}

func TestAllocSPI(t *testing.T) {
	clock := newFakeClock()
	d := NewSAD(SADOptions{Clock: clock.Now})
	for i := 0; i < 50; i++ {
		spi, err := d.AllocSPI(1, 300, 0)
		if err != nil || spi < MinSPI || spi > 300 {
			t.Fatalf("AllocSPI(1, 300) = 0x%x %v", spi, err)
		}
		if err := d.ReleaseSPI(spi); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.AllocSPI(1, 255, 0); !errors.Is(err, ErrNoSPI) {
		t.Fatalf("reserved range 1-255: %v", err)
	}
	// A small range: 8 SPIs, one held by a live inbound SA.
	_, live := mustPair(t, "aes128gcm16", 260, nil)
	if err := d.Add(live); err != nil {
		t.Fatal(err)
	}
	got := map[uint32]bool{}
	for i := 0; i < 7; i++ {
		spi, err := d.AllocSPI(256, 263, 10*time.Second)
		if err != nil || got[spi] || spi == 260 || spi < 256 || spi > 263 || !d.Reserved(spi) {
			t.Fatalf("alloc %d: 0x%x %v (had %v)", i, spi, err, got)
		}
		got[spi] = true
	}
	if _, err := d.AllocSPI(256, 263, 0); !errors.Is(err, ErrNoSPI) {
		t.Fatalf("exhausted range: %v", err)
	}
	if err := d.ReleaseSPI(257); err != nil {
		t.Fatal(err)
	}
	if err := d.ReleaseSPI(257); !errors.Is(err, ErrNotFound) {
		t.Fatalf("double release: %v", err)
	}
	if spi, err := d.AllocSPI(256, 263, 0); spi != 257 || err != nil {
		t.Fatalf("after release: 0x%x %v", spi, err)
	}
	// Consuming: an inbound SA with a reserved SPI takes it; a second
	// one fails; an outbound SA with that SPI does not consume it.
	o, in := mustPair(t, "aes128gcm16", 258, nil)
	if err := d.Add(o); err != nil || !d.Reserved(258) {
		t.Fatalf("outbound add: %v, reserved %v", err, d.Reserved(258))
	}
	if err := d.Add(in); err != nil || d.Reserved(258) {
		t.Fatalf("consuming add: %v, still reserved %v", err, d.Reserved(258))
	}
	_, in2 := mustPair(t, "aes128gcm16", 258, nil)
	if err := d.Add(in2); !errors.Is(err, ErrExists) {
		t.Fatalf("second SA on a consumed SPI: %v", err)
	}
	if err := d.ReleaseSPI(258); !errors.Is(err, ErrNotFound) {
		t.Fatalf("release of a consumed SPI: %v", err)
	}
	// Expiry: the 10 s reservations (and 257's default 30 s one) lapse.
	clock.Add(11 * time.Second)
	if d.Reserved(256) {
		t.Fatal("reservation outlived its ttl")
	}
	n := 0
	for {
		if _, err := d.AllocSPI(256, 263, 0); err != nil {
			break
		}
		n++
	}
	if n != 5 { // 8 - live 258 and 260 - 257 (default ttl 30 s)
		t.Fatalf("%d SPIs free after expiry, want 5", n)
	}
	clock.Add(31 * time.Second)
	d.Sweep(time.Time{})
	d.mu.Lock()
	left := len(d.spis)
	d.mu.Unlock()
	if left != 0 {
		t.Fatalf("Sweep left %d expired reservations", left)
	}
}

// TestAllocSPIConcurrent: concurrent allocations never hand out one SPI
// twice, and Add of inbound SAs racing with them never collides.
func TestAllocSPIConcurrent(t *testing.T) {
	d := NewSAD(SADOptions{})
	const workers, each = 4, 150
	var mu sync.Mutex
	seen := map[uint32]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				spi, err := d.AllocSPI(256, 256+workers*each-1, 0)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				dup := seen[spi]
				seen[spi] = true
				mu.Unlock()
				if dup {
					errs <- fmt.Errorf("SPI 0x%x handed out twice", spi)
					return
				}
				if i%3 == 0 { // consume some
					_, in := mustPair(t, "aes128gcm16", spi, nil)
					if err := d.Add(in); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seen) != workers*each {
		t.Fatalf("%d distinct SPIs", len(seen))
	}
	if _, err := d.AllocSPI(256, 256+workers*each-1, 0); !errors.Is(err, ErrNoSPI) {
		t.Fatalf("range should be exhausted: %v", err)
	}
}

// TestDeleteUnbindsAndEvents: deleting from the SAD takes the SA out of
// its tunnel, and EventDeleted is delivered outside the SAD's and the
// tunnel's locks (the handler calls both).
func TestDeleteUnbindsAndEvents(t *testing.T) {
	var d *SAD
	tun := NewTunnel("t")
	var got []Event
	d = NewSAD(SADOptions{Events: func(e Event) {
		if e.Kind == EventDeleted {
			_ = d.Len()
			_ = tun.Outbound()
			tun.AddInbound(e.SA) // refused: the SA is closed
			got = append(got, e)
		}
	}})
	out, in := mustPair(t, "aes128gcm16", 0x8001, nil)
	out2, _ := mustPair(t, "aes128gcm16", 0x8002, nil)
	for _, s := range []*SA{out, in, out2} {
		if err := d.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	tun.SetOutbound(out, out2) // per-CPU pair
	tun.AddInbound(in)
	if err := d.Delete(Out, 0x8001); err != nil {
		t.Fatal(err)
	}
	if o := tun.Outbound(); !slices.Equal(o, []*SA{out2}) {
		t.Fatalf("outbound after delete: %v", o)
	}
	if err := d.Delete(In, 0x8001); err != nil {
		t.Fatal(err)
	}
	if len(tun.Inbound()) != 0 || in.Tunnel() != nil {
		t.Fatal("inbound SA still in its tunnel")
	}
	if len(got) != 2 || got[0].SA != out || got[1].SA != in || got[0].Direction != Out || got[1].SPI != 0x8001 {
		t.Fatalf("events %+v", got)
	}
	// Remove hands the SA over without deleting it: unbound, no event.
	s, err := d.Remove(Out, 0x8002)
	if err != nil || s != out2 || len(tun.Outbound()) != 0 || len(got) != 2 || out2.State() == StateDeleted {
		t.Fatalf("Remove: %v %v, events %d", s, err, len(got))
	}
	out2.Close()
	tun.SetOutbound(out2)
	tun.AddInbound(in)
	if len(tun.Outbound()) != 0 || len(tun.Inbound()) != 0 {
		t.Fatal("a tunnel accepted closed SAs")
	}
}

// TestTunnelAcquire: a tunnel without a usable outbound SA raises a
// rate-limited acquire per tunnel and drops with DropAcquire.
func TestTunnelAcquire(t *testing.T) {
	clock := newFakeClock()
	var sadEv, procEv eventLog
	d := NewSAD(SADOptions{Events: sadEv.fn, Clock: clock.Now})
	p, err := NewProcessor(ProcessorOptions{SAD: d, Clock: clock.Now, Events: procEv.fn, AcquireInterval: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t1, t2 := NewTunnel("one"), NewTunnel("two")
	batch := func(tun *Tunnel, n int) {
		b := make([]Packet, n)
		for i := range b {
			b[i] = packetFor(udpPacket(hostA, hostB, 7, 8, 20, uint64(i)))
			b[i].Tunnel = tun
		}
		p.Worker(0).Outbound(b)
		for i := range b {
			if b[i].Reason != DropAcquire {
				t.Fatalf("packet %d: %v %v", i, b[i].Verdict, b[i].Reason)
			}
		}
	}
	batch(t1, 5)
	batch(t2, 3)
	acq := procEv.ofKind(EventAcquire)
	if len(acq) != 2 || acq[0].Tunnel != t1 || acq[0].TunnelName != "one" || acq[1].Tunnel != t2 ||
		acq[0].Packet.Dst != netip.PrefixFrom(hostB, 32) || acq[0].Packet.DstPorts.Lo != 8 || acq[0].Direction != Out {
		t.Fatalf("acquire events %+v", acq)
	}
	if len(sadEv.ev) != 0 {
		t.Fatal("ProcessorOptions.Events set, yet the SAD's function got events")
	}
	clock.Add(time.Second)
	batch(t1, 2)
	if n := len(procEv.ofKind(EventAcquire)); n != 2 {
		t.Fatalf("rate limit: %d events", n)
	}
	clock.Add(time.Second)
	batch(t1, 2)
	if n := len(procEv.ofKind(EventAcquire)); n != 3 {
		t.Fatalf("after the interval: %d events", n)
	}
	if st := p.Stats(); st.Drops[DropAcquire] != 12 {
		t.Fatalf("acquire drops %d", st.Drops[DropAcquire])
	}
	// Default sink: the SAD's events; an expired SA also asks for a new one.
	p2, _ := NewProcessor(ProcessorOptions{SAD: d, Clock: clock.Now})
	out, _ := mustPair(t, "aes128gcm16", 0x9001, nil)
	if err := d.Add(out); err != nil {
		t.Fatal(err)
	}
	t3 := NewTunnel("three")
	t3.SetOutbound(out)
	out.Expire(true)
	b := []Packet{packetFor(udpPacket(hostA, hostB, 7, 8, 20, 1))}
	b[0].Tunnel = t3
	p2.Worker(0).Outbound(b)
	if b[0].Reason != DropExpired || sadEv.lastOf(EventAcquire).Tunnel != t3 {
		t.Fatalf("expired SA: %v, events %v", b[0].Reason, sadEv.kinds())
	}
}

// TestSADLifecycleProperty runs random sequences of AddChild,
// DeleteChild, AllocSPI, ReleaseSPI, Add, Delete, tunnel binding and
// clock steps against a model, checking after every step:
//   - an inbound SPI is never live twice, and Lookup agrees with the model;
//   - a deleted SA is never reachable through a tunnel;
//   - a reserved SPI is never live, and every reservation ends exactly
//     once: consumed by an inbound Add, released, or expired (the SAD's
//     Reserved agrees with the model at every step);
//   - AllocSPI hands out only free SPIs, and ErrNoSPI only when none is;
//   - Child(id) is exactly the live SAs added with that id.
func TestSADLifecycleProperty(t *testing.T) {
	const lo, hi = 256, 256 + 23 // small: collisions and exhaustion happen
	remotes := []netip.Addr{gwB, gwC, natIP}
	hits := map[string]int{} // the sequences must reach every case
	for seed := uint64(1); seed <= 6; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		clock := newFakeClock()
		d := NewSAD(SADOptions{Clock: clock.Now})
		tuns := []*Tunnel{NewTunnel("a"), NewTunnel("b")}
		liveIn := map[uint32]*SA{}
		var liveOut, deleted []*SA
		reserved := map[uint32]time.Time{} // model: SPI → expiry
		children := map[ChildID][]*SA{}
		newSA := func(dir Direction, spi uint32, child ChildID) *SA {
			oc, ic := pairCfg("aes128gcm16", spi, func(c *Config) {
				c.Remote, c.Child = remotes[rng.IntN(len(remotes))], child
			})
			if dir == Out {
				return mustSA(t, oc)
			}
			return mustSA(t, ic)
		}
		randSPI := func() uint32 { return lo + uint32(rng.IntN(hi-lo+1)) }
		expire := func() {
			for spi, exp := range reserved {
				if !clock.Now().Before(exp) {
					delete(reserved, spi) // ends: expired
					hits["expired"]++
				}
			}
		}
		// canAdd is the model's answer to Add.
		canAdd := func(s *SA, batch []*SA) bool {
			for _, o := range batch {
				if o.dir == s.dir && o.spi == s.spi && (s.dir == In || keyOfOut(o) == keyOfOut(s)) {
					return false
				}
			}
			if s.dir == In {
				return liveIn[s.spi] == nil
			}
			for _, o := range liveOut {
				if o.spi == s.spi && keyOfOut(o) == keyOfOut(s) {
					return false
				}
			}
			return true
		}
		added := func(s *SA) {
			if s.dir == In {
				liveIn[s.spi] = s
				if _, ok := reserved[s.spi]; ok {
					hits["consumed"]++
				}
				delete(reserved, s.spi) // ends: consumed
			} else {
				liveOut = append(liveOut, s)
			}
			if s.cfg.Child != 0 {
				children[s.cfg.Child] = append(children[s.cfg.Child], s)
			}
		}
		gone := func(s *SA) {
			if s.dir == In {
				delete(liveIn, s.spi)
			} else {
				liveOut = slices.DeleteFunc(liveOut, func(x *SA) bool { return x == s })
			}
			if id := s.cfg.Child; id != 0 {
				children[id] = slices.DeleteFunc(children[id], func(x *SA) bool { return x == s })
				if len(children[id]) == 0 {
					delete(children, id)
				}
			}
			deleted = append(deleted, s)
		}
		for step := 0; step < 400; step++ {
			op := rng.IntN(10)
			switch op {
			case 0, 1: // AllocSPI
				expire()
				ttl := time.Duration(1+rng.IntN(5)) * time.Second
				spi, err := d.AllocSPI(lo, hi, ttl)
				free := 0
				for s := uint32(lo); s <= hi; s++ {
					if liveIn[s] == nil && reserved[s].IsZero() {
						free++
					}
				}
				switch {
				case err != nil && (!errors.Is(err, ErrNoSPI) || free != 0):
					t.Fatalf("seed %d step %d: AllocSPI: %v with %d free", seed, step, err, free)
				case err == nil && (liveIn[spi] != nil || !reserved[spi].IsZero()):
					t.Fatalf("seed %d step %d: AllocSPI handed out taken SPI 0x%x", seed, step, spi)
				case err == nil:
					reserved[spi] = clock.Now().Add(ttl)
				default:
					hits["no-spi"]++
				}
			case 2: // ReleaseSPI
				expire()
				spi := randSPI()
				err := d.ReleaseSPI(spi)
				if _, ok := reserved[spi]; ok != (err == nil) {
					t.Fatalf("seed %d step %d: ReleaseSPI(0x%x) = %v, model reserved %v", seed, step, spi, err, ok)
				}
				if err == nil {
					hits["released"]++
				}
				delete(reserved, spi) // ends: released
			case 3, 4: // Add one SA
				expire()
				dir := Direction(1 + rng.IntN(2))
				s := newSA(dir, randSPI(), 0)
				want := canAdd(s, nil)
				if err := d.Add(s); (err == nil) != want {
					t.Fatalf("seed %d step %d: Add %v = %v, model %v", seed, step, s, err, want)
				} else if err == nil {
					added(s)
				}
			case 5: // AddChild
				expire()
				id := ChildID(1 + rng.IntN(4))
				var batch []*SA
				ok := true
				for n := 1 + rng.IntN(3); n > 0; n-- {
					s := newSA(Direction(1+rng.IntN(2)), randSPI(), id)
					ok = ok && canAdd(s, batch)
					batch = append(batch, s)
				}
				if err := d.AddChild(batch...); (err == nil) != ok {
					t.Fatalf("seed %d step %d: AddChild = %v, model %v", seed, step, err, ok)
				} else if err == nil {
					hits["add-child"]++
					for _, s := range batch {
						added(s)
					}
				} else {
					hits["add-child-refused"]++
					for _, s := range batch {
						if s.owner.Load() != nil {
							t.Fatalf("seed %d step %d: failed AddChild kept %v", seed, step, s)
						}
					}
				}
			case 6: // DeleteChild
				id := ChildID(1 + rng.IntN(4))
				want := slices.Clone(children[id])
				n, err := d.DeleteChild(id)
				if n != len(want) || (err == nil) != (len(want) > 0) {
					t.Fatalf("seed %d step %d: DeleteChild(%d) = %d %v, model %d", seed, step, id, n, err, len(want))
				}
				for _, s := range want {
					gone(s)
				}
				if n > 1 {
					hits["delete-child"]++
				}
			case 7: // Delete one
				if rng.IntN(2) == 0 {
					spi := randSPI()
					err := d.Delete(In, spi)
					if s := liveIn[spi]; (s != nil) != (err == nil) {
						t.Fatalf("seed %d step %d: Delete(In, 0x%x) = %v", seed, step, spi, err)
					} else if s != nil {
						gone(s)
					}
				} else if len(liveOut) > 0 {
					s := liveOut[rng.IntN(len(liveOut))]
					if err := d.DeleteSA(s); err != nil {
						t.Fatal(err)
					}
					gone(s)
				}
			case 8: // bind live (and sometimes deleted) SAs to a tunnel
				tun := tuns[rng.IntN(len(tuns))]
				var outs []*SA
				pool := append(slices.Clone(liveOut), deleted...)
				for n := rng.IntN(3); n > 0 && len(pool) > 0; n-- {
					if s := pool[rng.IntN(len(pool))]; s.dir == Out {
						outs = append(outs, s)
					}
				}
				tun.SetOutbound(outs...)
				for _, s := range liveIn {
					if rng.IntN(3) == 0 {
						tun.AddInbound(s)
					}
				}
				if len(deleted) > 0 {
					tun.AddInbound(deleted[rng.IntN(len(deleted))])
				}
			case 9: // time passes
				clock.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
				if rng.IntN(2) == 0 {
					d.Sweep(time.Time{})
				}
				expire()
			}
			// Invariants.
			expire()
			ins := map[uint32]int{}
			for _, s := range d.All() {
				if s.dir == In {
					ins[s.spi]++
				}
			}
			for spi, n := range ins {
				if n != 1 || liveIn[spi] == nil {
					t.Fatalf("seed %d step %d: inbound SPI 0x%x live %d times (model %v)", seed, step, spi, n, liveIn[spi])
				}
			}
			for s := uint32(lo); s <= hi; s++ {
				if d.Lookup(s) != liveIn[s] {
					t.Fatalf("seed %d step %d: Lookup(0x%x)", seed, step, s)
				}
				if r := d.Reserved(s); r != !reserved[s].IsZero() || r && liveIn[s] != nil {
					t.Fatalf("seed %d step %d: SPI 0x%x reserved %v, model %v, live %v", seed, step, s, r, reserved[s], liveIn[s])
				}
			}
			if d.Len() != len(liveIn)+len(liveOut) {
				t.Fatalf("seed %d step %d: Len %d, model %d", seed, step, d.Len(), len(liveIn)+len(liveOut))
			}
			for _, tun := range tuns {
				for _, s := range append(tun.Outbound(), tun.Inbound()...) {
					if s.State() == StateDeleted {
						t.Fatalf("seed %d step %d: deleted %v reachable through %v", seed, step, s, tun)
					}
				}
			}
			for id := ChildID(1); id <= 4; id++ {
				if got := d.Child(id); !slices.Equal(got, children[id]) {
					t.Fatalf("seed %d step %d: Child(%d) = %v, model %v", seed, step, id, got, children[id])
				}
			}
		}
		for _, s := range d.All() {
			d.DeleteSA(s)
		}
	}
	for _, k := range []string{"expired", "no-spi", "released", "consumed", "add-child", "add-child-refused", "delete-child"} {
		if hits[k] == 0 {
			t.Errorf("no %s in the random sequences (hits %v)", k, hits)
		}
	}
}

// TestDeleteRacesBinding: SetOutbound and AddInbound racing with the
// deletion of the SA never leave the deleted SA in a tunnel.
func TestDeleteRacesBinding(t *testing.T) {
	for i := 0; i < 200; i++ {
		d := NewSAD(SADOptions{})
		out, in := mustPair(t, "aes128gcm16", 0x8100, nil)
		if err := d.AddChild(out, in); err != nil {
			t.Fatal(err)
		}
		tun := NewTunnel("race")
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				tun.SetOutbound(out)
				tun.AddInbound(in)
			}
		}()
		go func() {
			defer wg.Done()
			if err := d.DeleteSA(out); err != nil {
				t.Error(err)
			}
			if err := d.Delete(In, 0x8100); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		if len(tun.Outbound()) != 0 || len(tun.Inbound()) != 0 {
			t.Fatalf("round %d: deleted SAs left in the tunnel: %v %v", i, tun.Outbound(), tun.Inbound())
		}
	}
}
