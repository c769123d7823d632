//go:build linux

package harness

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

// TestPercentiles: nearest-rank p50 and p99 are samples, ordered
// p50 ≤ p99 ≤ max, with at least half (99 %) of the samples at or below
// them and fewer than half (99 %) strictly below; checked over random
// sample sets, and on a known one.
func TestPercentiles(t *testing.T) {
	if a, b, c := Percentiles(nil); a != 0 || b != 0 || c != 0 {
		t.Errorf("no samples: %v %v %v", a, b, c)
	}
	known := []time.Duration{5, 1, 4, 2, 3}
	if p50, p99, mx := Percentiles(known); p50 != 3 || p99 != 5 || mx != 5 {
		t.Errorf("1..5: p50 %v p99 %v max %v", p50, p99, mx)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		n := 1 + rng.IntN(500)
		s := make([]time.Duration, n)
		for i := range s {
			s[i] = time.Duration(rng.IntN(1000))
		}
		ref := slices.Clone(s)
		p50, p99, mx := Percentiles(s)
		for _, c := range []struct {
			q float64
			v time.Duration
		}{{0.5, p50}, {0.99, p99}} {
			atOrBelow, below := 0, 0
			for _, x := range ref {
				if x <= c.v {
					atOrBelow++
				}
				if x < c.v {
					below++
				}
			}
			if !slices.Contains(ref, c.v) || float64(atOrBelow) < c.q*float64(n) || float64(below) >= c.q*float64(n) {
				t.Fatalf("n %d: q %v = %v: %d at or below, %d below", n, c.q, c.v, atOrBelow, below)
			}
		}
		if p50 > p99 || p99 > mx || mx != slices.Max(ref) {
			t.Fatalf("n %d: p50 %v p99 %v max %v (true max %v)", n, p50, p99, mx, slices.Max(ref))
		}
	}
}

// TestStamp: a stamp written into an inner IPv4/UDP packet reads back;
// packets without the magic, too short, not UDP or not IPv4 carry none.
func TestStamp(t *testing.T) {
	src, dst := netip.MustParseAddr("10.7.0.1"), netip.MustParseAddr("10.8.0.1")
	p := ipv4UDP(src, dst, 5000, latPort, 64)
	if _, ok := readStamp(p); ok {
		t.Error("an unstamped packet has a stamp")
	}
	putStamp(p[latPayloadOff:], 123456789)
	if ts, ok := readStamp(p); !ok || ts != 123456789 {
		t.Errorf("stamp read back as %d, %v", ts, ok)
	}
	for name, bad := range map[string][]byte{
		"short":    p[:latPayloadOff+latStampLen-1],
		"not UDP":  func() []byte { q := slices.Clone(p); q[9] = 6; return q }(),
		"not IPv4": func() []byte { q := slices.Clone(p); q[0] = 0x65; return q }(),
		"empty":    nil,
	} {
		if _, ok := readStamp(bad); ok {
			t.Errorf("%s: has a stamp", name)
		}
	}
	if a, b := monoNow(), monoNow(); b < a || a <= 0 {
		t.Errorf("CLOCK_MONOTONIC went from %d to %d", a, b)
	}
}

// TestStamperDecrypt checks the decrypt stamper's invariants over random
// batches on a real UMEM (no socket): the first frame of every batch is
// a fresh ESP packet that the gateway's inbound SA opens, whose inner
// packet goes to latPort and carries the batch's timestamp; every other
// frame of the batch holds exactly the bytes fill wrote (a frame
// stamped in an earlier batch is restored before it is sent unstamped),
// and no frame changes length.
func TestStamperDecrypt(t *testing.T) {
	testenv.RequirePrivileged(t) // the UMEM is locked memory
	tr, err := esp.ParseTransform(e2eTransform)
	if err != nil {
		t.Fatal(err)
	}
	key, auth := keys(tr, 9)
	r := &e2eRun{net: &e2eNet{
		gwA:    &topo.Link{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}},
		genEth: &topo.Link{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}},
	}}
	r.newSA = func(spi uint32, dir sa.Direction, local, remote netip.Addr, replay int) (*sa.SA, error) {
		return sa.New(sa.Config{Name: "t", SPI: spi, Direction: dir, Mode: esp.Tunnel, Local: local, Remote: remote,
			Transform: tr, Key: key, AuthKey: auth, ReplayWindow: replay})
	}
	frames, err := r.espFrames(0) // IMIX: three inner sizes
	if err != nil {
		t.Fatal(err)
	}
	u, err := xdp.NewUMEM(xdp.UMEMConfig{FrameSize: genFrameSize, NumFrames: e2eGenFrames, FillSize: 64, CompletionSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	g := &generator{shift: 11, descs: make([]xdp.Desc, xdp.MaxBatch)}
	gs := &genSocket{u: u, wire: make([]uint32, e2eGenFrames), inner: make([]uint32, e2eGenFrames)}
	g.socks = []*genSocket{gs}
	if err := g.fill(frames, 1); err != nil {
		t.Fatal(err)
	}
	st, err := r.newStamper("decrypt", frames)
	if err != nil {
		t.Fatal(err)
	}
	in, err := r.inSA()
	if err != nil {
		t.Fatal(err)
	}
	sad := sa.NewSAD(sa.SADOptions{})
	if err := sad.Add(in); err != nil {
		t.Fatal(err)
	}
	open, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	descs := make([]xdp.Desc, xdp.MaxBatch)
	for batch := range 2000 {
		k := u.Alloc(descs[:1+rng.IntN(len(descs))])
		// Frames come back in a shuffled order, as completions do.
		rng.Shuffle(k, func(i, j int) { descs[i], descs[j] = descs[j], descs[i] })
		for i := range k {
			descs[i].Len = gs.wire[descs[i].Addr>>g.shift]
		}
		before := monoNow()
		st.stamp(g, gs, descs[:k])
		for i, d := range descs[:k] {
			idx := d.Addr >> g.shift
			p := u.Packet(d)
			if uint32(len(p)) != gs.wire[idx] {
				t.Fatalf("batch %d: frame %d length %d, want %d", batch, idx, len(p), gs.wire[idx])
			}
			if i > 0 {
				if want := frames[int(idx)%len(frames)].wire; !slices.Equal(p, want) {
					t.Fatalf("batch %d: unstamped frame %d differs from what fill wrote", batch, idx)
				}
				continue
			}
			pk := []sa.Packet{{Buf: slices.Clone(p), Off: 14, Len: len(p) - 14}}
			open.Worker(0).Inbound(pk)
			if pk[0].Verdict != sa.VerdictOK {
				t.Fatalf("batch %d: stamped frame does not open: %v %v", batch, pk[0].Verdict, pk[0].Reason)
			}
			inner := pk[0].Data()
			ts, ok := readStamp(inner)
			if !ok || ts < before || ts > monoNow() || binary.BigEndian.Uint16(inner[22:]) != latPort || len(inner) != int(gs.inner[idx]) {
				t.Fatalf("batch %d: stamped inner packet: stamp %d %v (batch at %d), port %d, %d bytes (want %d)",
					batch, ts, ok, before, binary.BigEndian.Uint16(inner[22:]), len(inner), gs.inner[idx])
			}
		}
		u.Free(descs[:k])
	}
}
