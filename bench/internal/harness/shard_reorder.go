package harness

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/sa"
)

// Reordering patterns of the replay study.
const (
	// PatternReverse delivers blocks of D+1 consecutive sequence numbers
	// in descending order: the worst case for a bound D (in every block
	// the oldest packet arrives D positions after the newest).
	PatternReverse = "reverse"
	// PatternJitter delays each packet by a uniform random 0..D positions
	// (packet i is delivered in order of i+U[0,D]).
	PatternJitter = "jitter"
	// PatternWorkers is the Shared mode with several workers on one SA,
	// the stream dealt to them in chunks (Result.Displace is the chunk
	// length): whatever displacement the workers' relative progress
	// causes, as the OS schedules them.
	PatternWorkers = "workers"
)

// reorderSize is the inner packet size of the replay study (the replay
// check does not depend on it).
const reorderSize = 64

// replaySA builds an inbound SA with the given window, its Processor and
// the sender's cipher.
func replaySA(mode sa.Concurrency, nw, window int, seed uint64) (*sa.Processor, *sa.SA, *esp.Cipher, error) {
	t := esp.MustParseTransform("aes128gcm16")
	const spi = 0x2000
	key, auth := keys(t, seed+spi)
	s, err := sa.New(sa.Config{Name: "reorder", SPI: spi, Direction: sa.In, Mode: esp.Tunnel, Local: gwB, Remote: gwA,
		Transform: t, Key: key, AuthKey: auth, ReplayWindow: window})
	if err != nil {
		return nil, nil, nil, err
	}
	sad := sa.NewSAD(sa.SADOptions{})
	if err := sad.Add(s); err != nil {
		return nil, nil, nil, err
	}
	p, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Workers: nw, Concurrency: mode})
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := esp.New(esp.Config{Transform: t, Key: key, AuthKey: auth})
	if err != nil {
		return nil, nil, nil, err
	}
	return p, s, c, nil
}

// reorderOrder returns the delivery order (sequence numbers) of n packets
// under pattern with bound d.
func reorderOrder(pattern string, d, n int, seed uint64) ([]uint64, error) {
	seqs := make([]uint64, n)
	switch pattern {
	case PatternReverse:
		for b := 0; b < n; b += d + 1 {
			e := min(b+d+1, n)
			for i := b; i < e; i++ {
				seqs[i] = uint64(e - (i - b)) // e, e-1, ..., b+1
			}
		}
	case PatternJitter:
		rng := rand.New(rand.NewPCG(seed, uint64(d)))
		keys := make([]int, n)
		idx := make([]int, n)
		for i := range keys {
			keys[i] = i + rng.IntN(d+1)
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(a, b int) int { return keys[a] - keys[b] })
		for i, j := range idx {
			seqs[i] = uint64(j + 1)
		}
	default:
		return nil, fmt.Errorf("harness: unknown reordering pattern %q", pattern)
	}
	return seqs, nil
}

// reorderPackets is the number of packets of one replay run with bound
// d: at least three reversed blocks, at least 8192.
func reorderPackets(d int) int {
	blocks := max(3, (8192+d)/(d+1))
	return blocks * (d + 1)
}

// ReverseExpected is the fraction of packets a replay window of w drops
// under PatternReverse with bound d: in each block of d+1 the packets
// older than the newest by w or more, d+1-w of them when d ≥ w.
func ReverseExpected(d, w int) float64 {
	if d < w {
		return 0
	}
	return float64(d+1-w) / float64(d+1)
}

// Reorder delivers the packets of one SA to one worker in the order of
// pattern with displacement bound d, against a replay window of window
// packets, and reports the fraction dropped as DropReplay. Any other drop
// is an error.
func Reorder(window, d int, pattern string, seed uint64) (Result, error) {
	res := Result{Suite: "shard", Kind: KindShardReorder, Transform: "aes128gcm16", Op: "decrypt", Size: reorderSize,
		SAs: 1, Workers: 1, Mode: sa.Shared.String(), Window: window, Displace: d, Pattern: pattern}
	if d < 0 {
		return res, fmt.Errorf("harness: displacement %d", d)
	}
	p, s, c, err := replaySA(sa.Shared, 1, window, seed)
	if err != nil {
		return res, err
	}
	defer s.Close()
	n := reorderPackets(d)
	order, err := reorderOrder(pattern, d, n, seed)
	if err != nil {
		return res, err
	}
	inner := innerPacket(reorderSize, seed)
	sc := esp.NewScratch()
	outer := esp.Outer{Src: gwA, Dst: gwB}
	bl := esp.MaxHeadroom + reorderSize + esp.MaxTailroom
	bufs := make([][]byte, batchLen)
	for i := range bufs {
		bufs[i] = make([]byte, bl)
	}
	pkts := make([]sa.Packet, batchLen)
	var replayDrops, ok int
	for i := 0; i < n; i += batchLen {
		b := pkts[:min(batchLen, n-i)]
		for j := range b {
			copy(bufs[j][esp.MaxHeadroom:], inner)
			r, err := c.EncapTunnel(sc, bufs[j], esp.MaxHeadroom, reorderSize, s.SPI(), order[i+j], &outer)
			if err != nil {
				return res, err
			}
			b[j].Reset(bufs[j], cap(bufs[j])-cap(r), len(r))
		}
		p.Worker(0).Inbound(b)
		for j := range b {
			switch {
			case b[j].Verdict == sa.VerdictOK:
				ok++
			case b[j].Verdict == sa.VerdictDrop && b[j].Reason == sa.DropReplay:
				replayDrops++
			default:
				return res, fmt.Errorf("harness: reorder: packet %d: %v %v", order[i+j], b[j].Verdict, b[j].Reason)
			}
		}
	}
	res.add("drop-replay%", 100*float64(replayDrops)/float64(n), UnitPercent)
	res.add("drop-replay", float64(replayDrops), UnitPackets)
	if pattern == PatternReverse {
		res.add("expected%", 100*ReverseExpected(d, effectiveWindow(window)), UnitPercent)
	}
	res.add("packets", float64(n), UnitPackets)
	return res, nil
}

func effectiveWindow(w int) int {
	if w == 0 {
		return sa.DefaultReplayWindow
	}
	return w
}

// SharedReorder runs nw workers in Shared mode on one SA with a replay
// window of window packets: the SA's stream (sequence numbers in order)
// is dealt to the workers in chunks of chunk packets (chunk 1: packet k
// to worker k mod nw, as in the shard matrix's spray), perWorker packets
// per worker per round, and the workers process their inputs
// concurrently, each on its own OS thread. Reported: the fraction
// dropped as DropReplay, which only the workers' relative progress
// causes, Mpps, and cpu-busy%: the CPU time the workers' threads got
// over wall time × workers (well below 100%: they did not run side by
// side, which widens the displacement). Rounds repeat until budget has passed (at least 2);
// with nw·perWorker < window no drop is possible.
func SharedReorder(nw, window, chunk, perWorker int, budget time.Duration, seed uint64) (Result, error) {
	res := Result{Suite: "shard", Kind: KindShardReorder, Transform: "aes128gcm16", Op: "decrypt", Size: reorderSize,
		SAs: 1, Workers: nw, Mode: sa.Shared.String(), Window: window, Displace: chunk, Pattern: PatternWorkers}
	if nw < 1 || chunk < 1 || perWorker < 1 {
		return res, fmt.Errorf("harness: shared reorder with %d workers, chunk %d, %d packets", nw, chunk, perWorker)
	}
	var replayDrops, ok, total int
	var elapsed time.Duration
	var cpu int64 // the workers' thread CPU time, ns (-1: unknown)
	err := withProcs(nw, func() error {
		p, s, c, err := replaySA(sa.Shared, nw, window, seed)
		if err != nil {
			return err
		}
		defer s.Close()
		inner := innerPacket(reorderSize, seed)
		outer := esp.Outer{Src: gwA, Dst: gwB}
		bl := esp.MaxHeadroom + reorderSize + esp.MaxTailroom
		in := make([][]sa.Packet, nw)
		bufs := make([][][]byte, nw)
		for w := range nw {
			in[w] = make([]sa.Packet, perWorker)
			bufs[w] = make([][]byte, perWorker)
			for j := range bufs[w] {
				bufs[w][j] = make([]byte, bl)
			}
		}
		sc := esp.NewScratch()
		var seq uint64
		start := time.Now()
		for round := 0; round < 2 || time.Since(start) < budget; round++ {
			if round > 1000 {
				break
			}
			// Deal the next nw·perWorker sequence numbers.
			fill := make([]int, nw)
			for k := range nw * perWorker {
				w := (k / chunk) % nw
				for fill[w] == perWorker { // uneven chunks at the end
					w = (w + 1) % nw
				}
				seq++
				j := fill[w]
				fill[w]++
				buf := bufs[w][j]
				copy(buf[esp.MaxHeadroom:], inner)
				r, err := c.EncapTunnel(sc, buf, esp.MaxHeadroom, reorderSize, s.SPI(), seq, &outer)
				if err != nil {
					return err
				}
				in[w][j].Reset(buf, cap(buf)-cap(r), len(r))
			}
			var wg sync.WaitGroup
			bar := &barrier{n: int32(nw)}
			var t0 time.Time
			fin := make([]time.Time, nw)
			cpus := make([]int64, nw)
			for w := range nw {
				wg.Add(1)
				go func() {
					defer wg.Done()
					runtime.LockOSThread()
					defer runtime.UnlockOSThread()
					bar.wait(func() { t0 = time.Now() })
					c0, ok0 := threadCPU()
					for i := 0; i < perWorker; i += batchLen {
						p.Worker(w).Inbound(in[w][i:min(i+batchLen, perWorker)])
					}
					cpus[w] = -1
					if c1, ok1 := threadCPU(); ok0 && ok1 {
						cpus[w] = c1 - c0
					}
					fin[w] = time.Now()
				}()
			}
			wg.Wait()
			last := t0
			for _, f := range fin {
				if f.After(last) {
					last = f
				}
			}
			elapsed += last.Sub(t0)
			for _, c := range cpus {
				if c < 0 || cpu < 0 {
					cpu = -1
				} else {
					cpu += c
				}
			}
			for w := range nw {
				for j := range in[w] {
					q := &in[w][j]
					switch {
					case q.Verdict == sa.VerdictOK:
						ok++
					case q.Verdict == sa.VerdictDrop && q.Reason == sa.DropReplay:
						replayDrops++
					default:
						return fmt.Errorf("harness: shared reorder: %v %v", q.Verdict, q.Reason)
					}
				}
			}
			total += nw * perWorker
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	res.add("drop-replay%", 100*float64(replayDrops)/float64(total), UnitPercent)
	res.add("drop-replay", float64(replayDrops), UnitPackets)
	res.add("Mpps", float64(total)/elapsed.Seconds()/1e6, UnitMpps)
	if cpu > 0 {
		res.add("cpu-busy%", 100*float64(cpu)/(float64(elapsed.Nanoseconds())*float64(nw)), UnitPercent)
	}
	res.add("packets", float64(total), UnitPackets)
	return res, nil
}
