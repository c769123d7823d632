//go:build linux

package harness

import "github.com/espxdp/espxdp/xdp"

// wgBusyPoll is the busy-polling setting of the wg suite's
// espxdp-busypoll row: the AF_XDP engine of the espxdp row with
// preferred busy polling on every socket, so that its workers' poll and
// wakeup system calls run the veths' NAPI themselves.
var wgBusyPoll = xdp.BusyPoll{Usecs: 50, Budget: xdp.DefaultBatch, Prefer: true}

// busyPollStep measures the espxdp row again with wgBusyPoll (impl
// "espxdp-busypoll"): whether busy polling helps TCP through AF_XDP.
func (r *wgRun) busyPollStep(tr string) func() ([]Result, error) {
	return func() ([]Result, error) {
		if err := r.setup(); err != nil {
			return nil, err
		}
		r.net.tune = func(c *xdp.EngineConfig) { c.BusyPoll = wgBusyPoll }
		defer func() { r.net.tune = nil }()
		stop, err := r.net.startESP(tr, r.cfg.Seed)
		if err != nil {
			return nil, err
		}
		defer stop()
		return r.measure("espxdp-busypoll", tr, wgNoOffload)
	}
}

// xskCounts are the loss counters of the running espxdp engines, summed
// over both gateways and all their sockets: where a TCP segment that
// reached a gateway can be lost on its way through.
type xskCounts struct {
	k       xdp.KernelStats // XDP_STATISTICS: RxDropped, RxRingFull, RxFillRingEmptyDescs
	workers uint64          // packets the workers dropped (EngineStats.WorkerDrops)
}

// xskSnapshot reads the counters of the espxdp engines that run now
// (zero without any).
func (n *wgNet) xskSnapshot() xskCounts {
	var c xskCounts
	for _, e := range n.engines {
		st := e.Stats()
		k := st.KernelTotals()
		c.k.RxDropped += k.RxDropped
		c.k.RxRingFull += k.RxRingFull
		c.k.RxFillRingEmptyDescs += k.RxFillRingEmptyDescs
		c.k.RxInvalidDescs += k.RxInvalidDescs
		c.k.TxInvalidDescs += k.TxInvalidDescs
		c.workers += st.WorkerDrops()
	}
	return c
}

// addXSK adds the counters' growth from before to now to res, when
// espxdp engines run: xsk-rx-dropped (the kernel dropped a packet it
// could not place, e.g. no frame), xsk-rx-ring-full (the RX ring was
// full: the worker did not keep up or was descheduled),
// xsk-fill-empty (times the kernel found no frame on the fill ring),
// engine-drops (the workers' own drops, any reason).
func (n *wgNet) addXSK(res *Result, before, now xskCounts) {
	if len(n.engines) == 0 {
		return
	}
	res.add("xsk-rx-dropped", float64(now.k.RxDropped-before.k.RxDropped), UnitPackets)
	res.add("xsk-rx-ring-full", float64(now.k.RxRingFull-before.k.RxRingFull), UnitPackets)
	res.add("xsk-fill-empty", float64(now.k.RxFillRingEmptyDescs-before.k.RxFillRingEmptyDescs), "")
	res.add("engine-drops", float64(now.workers-before.workers), UnitPackets)
}
