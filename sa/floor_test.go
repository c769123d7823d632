package sa

import "testing"

// TestReplayWindowFloor: with a floor, a default-sized window of a
// multi-worker processor grows to the floor at its first authenticated
// packet, so a stream displaced by less than the floor (more than the
// default window) loses nothing from the start; replays stay rejected;
// windows sized in the Config, one worker and growth turned off ignore
// the floor.
func TestReplayWindowFloor(t *testing.T) {
	for _, c := range []struct {
		name          string
		workers, max  int
		window, floor int
		wantSize      int
	}{
		{"floor", 2, 0, 0, 3000, 4096},
		{"power of two", 2, 0, 0, 4096, 4096},
		{"bounded", 2, 2048, 0, 8000, 2048},
		{"explicit window", 2, 0, DefaultReplayWindow, 8000, DefaultReplayWindow},
		{"one worker", 1, 0, 0, 8000, DefaultReplayWindow},
		{"growth off", 2, ReplayDisabled, 0, 8000, DefaultReplayWindow},
		{"no floor", 2, 0, 0, 0, DefaultReplayWindow},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, in := mustPair(t, "aes128gcm16", 0x6161, func(cf *Config) { cf.ReplayWindow = c.window })
			sadA, sadB := NewSAD(SADOptions{}), NewSAD(SADOptions{})
			sadA.Add(out)
			sadB.Add(in)
			tun := NewTunnel("g")
			tun.SetOutbound(out)
			tx, _ := NewProcessor(ProcessorOptions{SAD: sadA, Tunnel: tun})
			rx, err := NewProcessor(ProcessorOptions{SAD: sadB, Workers: c.workers, Concurrency: Shared, ReplayWindowMax: c.max})
			if err != nil {
				t.Fatal(err)
			}
			rx.SetReplayWindowFloor(c.floor)
			const n = 3500 // displacement: beyond 1024, within 4096
			var pk []Packet
			for i := range n {
				b := []Packet{packetFor(udpPacket(hostA, hostB, 1, 2, 20, uint64(i)))}
				tx.Worker(0).Outbound(b)
				pk = append(pk, b[0])
			}
			w := rx.Worker(0)
			open := func(p Packet) Verdict {
				b := []Packet{clonePacket(p)}
				w.Inbound(b)
				return b[0].Verdict
			}
			// The stream's first packet grows the window (nothing is left
			// of it yet), then the newest overtakes the rest.
			if v := open(pk[0]); v != VerdictOK {
				t.Fatalf("first packet: %v", v)
			}
			if got := in.Stats().ReplayWindow; got != c.wantSize {
				t.Errorf("window %d after the first packet, want %d", got, c.wantSize)
			}
			if v := open(pk[n-1]); v != VerdictOK {
				t.Fatalf("newest packet: %v", v)
			}
			// Packet 1 is n-2 behind: inside the window iff the window
			// holds it.
			want := VerdictOK
			if c.wantSize < n-1 {
				want = VerdictDrop
			}
			if v := open(pk[1]); v != want {
				t.Errorf("packet %d behind the edge: %v, want %v", n-2, v, want)
			}
			for _, i := range []int{0, 1, n - 1} {
				if v := open(pk[i]); v != VerdictDrop {
					t.Errorf("replay of packet %d: %v, want a drop", i, v)
				}
			}
		})
	}
}
