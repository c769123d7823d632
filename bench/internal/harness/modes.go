package harness

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/espxdp/espxdp/sa"
)

// modeRig is a sender and a receiver Processor with nw workers in one
// concurrency mode, and the tunnels the workers send through.
type modeRig struct {
	tx, rx *sa.Processor
	tuns   []*sa.Tunnel // per flow
	owner  []int        // per flow: the worker that owns its SAs
}

// newModeRig builds a rig with nflows SA pairs (aes128gcm16). Shared:
// every worker may use every flow. Sharded: flow i's SAs are owned by
// OwnerOfSA (a hash of the SPI). PerCPU (nflows is ignored): one tunnel
// with one outbound SA per worker, inbound SAs pinned to that worker.
func newModeRig(mode sa.Concurrency, nw, nflows int, seed uint64) (*modeRig, error) {
	sadA, sadB := sa.NewSAD(sa.SADOptions{}), sa.NewSAD(sa.SADOptions{})
	tx, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sadA, Workers: nw, Concurrency: mode})
	if err != nil {
		return nil, err
	}
	rx, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sadB, Workers: nw, Concurrency: mode})
	if err != nil {
		return nil, err
	}
	r := &modeRig{tx: tx, rx: rx}
	if mode == sa.PerCPU {
		tun := sa.NewTunnel("per-cpu")
		var outs []*sa.SA
		for w := range nw {
			out, in, err := saPair("aes128gcm16", uint32(0x100+w), seed, func(c *sa.Config) { c.Worker, c.PinWorker = w, true })
			if err != nil {
				return nil, err
			}
			if err := sadA.Add(out); err != nil {
				return nil, err
			}
			if err := sadB.Add(in); err != nil {
				return nil, err
			}
			outs = append(outs, out)
		}
		tun.SetOutbound(outs...)
		r.tuns = []*sa.Tunnel{tun}
		r.owner = []int{-1}
		return r, nil
	}
	for f := range nflows {
		out, tun, err := installPair(sadA, sadB, uint32(0x100+f), seed, nil, fmt.Sprint("flow", f))
		if err != nil {
			return nil, err
		}
		r.tuns = append(r.tuns, tun)
		if mode == sa.Sharded {
			r.owner = append(r.owner, tx.OwnerOfSA(out))
		} else {
			r.owner = append(r.owner, -1)
		}
	}
	return r, nil
}

// flowsOf returns the flows worker w sends: in Shared and PerCPU any
// worker sends any flow (all of them, round robin); in Sharded only the
// flows it owns, as if the NIC steered by SPI.
func (r *modeRig) flowsOf(w int) []int {
	var fl []int
	for f, o := range r.owner {
		if o < 0 || o == w {
			fl = append(fl, f)
		}
	}
	return fl
}

// runOutcome sums the workers' work.
type runOutcome struct {
	ok, drops int64
	elapsed   time.Duration
}

// runWorkers runs one goroutine per worker; worker w processes quota[w]
// batches (round robin over its flows' tunnels), or, when quota is nil,
// batches until budget has passed, at least 8 however late it starts. Each batch goes Outbound on the
// sender's worker w and then Inbound on the receiver's worker w.
func (r *modeRig) runWorkers(workers []int, inner []byte, budget time.Duration, quota []int) runOutcome {
	var okN, dropN atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, w := range workers {
		fl := r.flowsOf(w)
		if len(fl) == 0 || (quota != nil && quota[w] == 0) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := newBatch(inner)
			var ok, drop int64
			<-start
			for i := 0; ; i++ {
				if quota != nil && i >= quota[w] {
					break
				}
				// The stop flag is read from the ninth batch on: every
				// worker started does some work, also when the
				// scheduler of a loaded machine runs it only after the
				// budget passed (it used to stop before its first batch,
				// and its row reported no packets).
				if quota == nil && i > 0 && i&7 == 0 && stop.Load() {
					break
				}
				b.refill(r.tuns[fl[i%len(fl)]])
				r.tx.Worker(w).Outbound(b.pkts)
				r.rx.Worker(w).Inbound(b.pkts)
				o, d := b.count()
				ok += int64(o)
				drop += int64(d)
			}
			okN.Add(ok)
			dropN.Add(drop)
		}()
	}
	t0 := time.Now()
	close(start)
	if quota == nil {
		time.Sleep(budget)
		stop.Store(true)
	}
	wg.Wait()
	return runOutcome{ok: okN.Load(), drops: dropN.Load(), elapsed: time.Since(t0)}
}

// withProcs raises GOMAXPROCS to at least n for the duration of f.
func withProcs(n int, f func() error) error {
	old := runtime.GOMAXPROCS(0)
	if n > old {
		runtime.GOMAXPROCS(n)
		defer runtime.GOMAXPROCS(old)
	}
	return f()
}

func (o runOutcome) metrics(res *Result) {
	total := o.ok + o.drops
	if total == 0 {
		return
	}
	ns := float64(o.elapsed.Nanoseconds()) / float64(total)
	res.add("ns/pkt", ns, UnitNs)
	res.add("Mpps", float64(total)/o.elapsed.Seconds()/1e6, UnitMpps)
	res.add("drops", float64(o.drops), UnitPackets)
	res.add("drop%", 100*float64(o.drops)/float64(total), UnitPercent)
	res.add("packets", float64(total), UnitPackets)
}

// Modes runs the round trip (1420-byte inner packets, aes128gcm16) in
// one concurrency mode with nw workers, one goroutine each, for budget.
// ns/pkt is wall-clock time over all packets of all workers (so it falls
// as workers are added); Mpps is its inverse.
func Modes(mode sa.Concurrency, nw, n int, budget time.Duration, seed uint64) (Result, error) {
	res := Result{Suite: "sa", Kind: KindModes, Mode: mode.String(), Workers: nw, Size: n, Transform: "aes128gcm16"}
	err := withProcs(nw, func() error {
		var r *modeRig
		var err error
		if mode == sa.Sharded {
			r, err = newPinnedRig(nw, seed) // one SA pair per worker, owned by it
		} else {
			r, err = newModeRig(mode, nw, 1, seed)
		}
		if err != nil {
			return err
		}
		o := r.runWorkers(allWorkers(nw), innerPacket(n, seed), budget, nil)
		o.metrics(&res)
		return nil
	})
	return res, err
}

// newPinnedRig is a Sharded rig with one SA pair per worker, pinned to it.
func newPinnedRig(nw int, seed uint64) (*modeRig, error) {
	sadA, sadB := sa.NewSAD(sa.SADOptions{}), sa.NewSAD(sa.SADOptions{})
	tx, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sadA, Workers: nw, Concurrency: sa.Sharded})
	if err != nil {
		return nil, err
	}
	rx, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sadB, Workers: nw, Concurrency: sa.Sharded})
	if err != nil {
		return nil, err
	}
	r := &modeRig{tx: tx, rx: rx}
	for w := range nw {
		_, tun, err := installPair(sadA, sadB, uint32(0x100+w), seed, func(c *sa.Config) { c.Worker, c.PinWorker = w, true }, fmt.Sprint("w", w))
		if err != nil {
			return nil, err
		}
		r.tuns = append(r.tuns, tun)
		r.owner = append(r.owner, w)
	}
	return r, nil
}

// Skew offers the same load (total batches) to nw workers in mode
// (Shared or Sharded), either all on one SA pair (dist "elephant") or
// spread evenly over nflows SA pairs ("uniform"). In Sharded mode each
// flow's batches go to the worker that owns its SAs (hash of the SPI),
// as an SPI-steering NIC would, so the elephant runs on one core; in
// Shared mode the batches are split evenly between workers whatever the
// flow. Reported: ns/pkt and Mpps over the time until the last worker
// finished.
func Skew(mode sa.Concurrency, dist string, nw, nflows, n int, budget time.Duration, seed uint64) (Result, error) {
	res := Result{Suite: "sa", Kind: KindSkew, Mode: mode.String(), Dist: dist, Workers: nw, Size: n, Transform: "aes128gcm16"}
	if dist == "elephant" {
		nflows = 1
	} else if dist != "uniform" {
		return res, fmt.Errorf("harness: unknown distribution %q", dist)
	}
	res.SAs = nflows
	err := withProcs(nw, func() error {
		r, err := newModeRig(mode, nw, nflows, seed)
		if err != nil {
			return err
		}
		inner := innerPacket(n, seed)
		// Calibrate the load: what one worker does in budget/nw.
		cal := r.runWorkers([]int{max(r.owner[0], 0)}, inner, budget/time.Duration(2*nw), nil)
		perWorker := max(int(cal.ok+cal.drops)/batchLen, 4)
		total := perWorker * nw
		quota := make([]int, nw)
		if mode == sa.Sharded {
			// At least one batch per flow: on a loaded machine the
			// calibration can measure less than one batch per flow, and
			// a zero quota everywhere would measure nothing.
			per := max(total/nflows, 1)
			for f := range nflows {
				quota[r.owner[f]] += per
			}
		} else {
			for w := range quota {
				quota[w] = total / nw
			}
		}
		o := r.runWorkers(allWorkers(nw), inner, 0, quota)
		o.metrics(&res)
		busy := 0
		for _, q := range quota {
			if q > 0 {
				busy++
			}
		}
		res.add("busy-workers", float64(busy), "workers")
		return nil
	})
	return res, err
}

func allWorkers(nw int) []int {
	ws := make([]int, nw)
	for i := range ws {
		ws[i] = i
	}
	return ws
}

// installPair makes an aes128gcm16 SA pair, adds the outbound SA to sadA
// and the inbound one to sadB, and binds the outbound SA to a new tunnel.
func installPair(sadA, sadB *sa.SAD, spi uint32, seed uint64, mod func(*sa.Config), name string) (*sa.SA, *sa.Tunnel, error) {
	out, in, err := saPair("aes128gcm16", spi, seed, mod)
	if err != nil {
		return nil, nil, err
	}
	if err := sadA.Add(out); err != nil {
		return nil, nil, err
	}
	if err := sadB.Add(in); err != nil {
		return nil, nil, err
	}
	tun := sa.NewTunnel(name)
	tun.SetOutbound(out)
	return out, tun, nil
}
