package metrics

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/espxdp/espxdp/xdp"
)

// engineSnapshot is a snapshot of an engine with workers workers on
// queues queues: one socket per worker (steering queue, workers ==
// queues) or one per worker and queue (spi, spread), listed worker by
// worker as the engine does. Socket (w, q) received 1000*w + q + 1
// packets and the kernel dropped w + q + 1 of them.
func engineSnapshot(workers, queues int, steering string) Snapshot {
	s := fakeSnapshot(1)
	s.Steering, s.Queues = steering, queues
	e := &xdp.EngineStats{}
	for w := range workers {
		e.Workers = append(e.Workers, xdp.EngineWorkerStats{Worker: w, Queue: w % queues, CipherRX: uint64(10 * (w + 1))})
		for q := range queues {
			if steering == "queue" && q != w {
				continue
			}
			st := xdp.Stats{RXPackets: uint64(1000*w + q + 1)}
			st.Kernel.RxRingFull = uint64(w + q + 1)
			e.CipherSockets = append(e.CipherSockets, st)
			e.PlainSockets = append(e.PlainSockets, xdp.Stats{})
		}
	}
	s.Engine = e
	return s
}

// TestCollectorWorkersOverQueues: two workers on one queue (spread
// steering) give one worker series each, one socket series per queue
// and side summing both workers' sockets, the steering and the kernel's
// drops; the pedantic registry finds no duplicate series.
func TestCollectorWorkersOverQueues(t *testing.T) {
	s := engineSnapshot(2, 1, "spread")
	mfs := gather(t, NewCollector(func() Snapshot { return s }, Options{}))
	if v, ok := value(mfs, "espxdp_engine_info", "steering", "spread"); !ok || v != 1 {
		t.Errorf("engine_info{steering=spread} = %v, %v", v, ok)
	}
	if v, _ := value(mfs, "espxdp_engine_workers"); v != 2 {
		t.Errorf("engine_workers %v", v)
	}
	if v, _ := value(mfs, "espxdp_engine_queues"); v != 1 {
		t.Errorf("engine_queues %v", v)
	}
	for w, want := range []float64{10, 20} {
		if v, ok := value(mfs, "espxdp_worker_cipher_rx_total", "worker", fmt.Sprint(w), "queue", "0"); !ok || v != want {
			t.Errorf("worker %d cipher_rx %v, %v; want %v", w, v, ok, want)
		}
	}
	if n := len(mfs["espxdp_xsk_rx_packets_total"].GetMetric()); n != 2 { // cipher and plain, queue 0
		t.Errorf("%d xsk_rx_packets series, want 2", n)
	}
	if v, _ := value(mfs, "espxdp_xsk_rx_packets_total", "side", "cipher", "queue", "0"); v != 1+1001 {
		t.Errorf("cipher queue 0 rx %v, want both workers' sockets summed (1002)", v)
	}
	if v, _ := value(mfs, "espxdp_kernel_xsk_drops_total", "reason", "rx_ring_full"); v != 1+2 {
		t.Errorf("kernel rx_ring_full %v, want 3", v)
	}
}

// TestCollectorEngineCardinality checks over random layouts the
// invariant of the package doc: series per worker counter = workers,
// per socket counter = queues per side (not workers × queues), every
// socket counted exactly once, and the kernel totals the sum of the
// sockets'.
func TestCollectorEngineCardinality(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 14))
	for range 200 {
		queues := 1 + r.IntN(8)
		workers, steering := queues, "queue"
		if r.IntN(2) == 0 {
			workers, steering = 1+r.IntN(8), []string{"spi", "spread"}[r.IntN(2)]
		}
		s := engineSnapshot(workers, queues, steering)
		mfs := gather(t, NewCollector(func() Snapshot { return s }, Options{}))
		if n := len(mfs["espxdp_worker_cipher_rx_total"].GetMetric()); n != workers {
			t.Fatalf("%d workers %d queues %s: %d worker series", workers, queues, steering, n)
		}
		if n := len(mfs["espxdp_xsk_rx_packets_total"].GetMetric()); n != 2*queues {
			t.Fatalf("%d workers %d queues %s: %d socket series, want %d", workers, queues, steering, n, 2*queues)
		}
		var sum, want, ringFull float64
		for _, m := range mfs["espxdp_xsk_rx_packets_total"].GetMetric() {
			sum += m.GetCounter().GetValue()
		}
		for _, st := range s.Engine.CipherSockets {
			want += float64(st.RXPackets)
			ringFull += float64(st.Kernel.RxRingFull)
		}
		if sum != want {
			t.Fatalf("%d workers %d queues %s: sockets sum to %v, want %v", workers, queues, steering, sum, want)
		}
		if v, _ := value(mfs, "espxdp_kernel_xsk_drops_total", "reason", "rx_ring_full"); v != ringFull {
			t.Fatalf("kernel rx_ring_full %v, want %v", v, ringFull)
		}
	}
}
