//go:build linux

package harness

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/xdp"
)

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
	// sendFull: packets read from a TUN that Engine.Send could not
	// queue; tun: the TUNs' own drops (ReadDrops, OversizeDrops,
	// WriteErrors batches).
	sendFull, tun uint64
	// The engines' and TUNs' work counts, for per-GB rates (addRates):
	// worker sleeps (poll(2)), batches and the packets in them, Send's
	// eventfd wakes, AF_XDP wakeups (sendto, recvfrom), TUN read(2) and
	// write(2) calls.
	sleeps, batches, pkts, sendWakes, xskWakeups, tunReads, tunWrites uint64
	// The UDP cipher ports' datagrams (espxdp-tun-udp): sent and
	// received, and the super-datagrams among them; udpDrops their
	// drops, any reason.
	udpTX, udpTXSuper, udpRX, udpRXSuper, udpDrops uint64
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
		for _, w := range st.Workers {
			c.sendFull += w.SendFull
			c.sleeps += w.Sleeps
			c.batches += w.Batches
			c.pkts += w.CipherRX + w.PlainRX + w.Sent
			c.sendWakes += w.SendWakes
		}
		if cp := st.CipherPort; cp != nil && cp.UDP != nil {
			c.udpTX += cp.UDP.TXDatagrams
			c.udpTXSuper += cp.UDP.TXSuper
			c.udpRX += cp.UDP.RXDatagrams
			c.udpRXSuper += cp.UDP.RXSuper
			c.udpDrops += cp.Drops
		}
		for _, ss := range [][]xdp.Stats{st.CipherSockets, st.PlainSockets} {
			for _, s := range ss {
				c.xskWakeups += s.Wakeups
			}
		}
	}
	for _, t := range n.tuns {
		ts := t.Stats()
		c.tun += ts.ReadDrops + ts.OversizeDrops + ts.WriteErrors
		c.tunReads += ts.Reads
		c.tunWrites += ts.Writes
	}
	return c
}

// addXSK adds the counters' growth from before to now to res, when
// espxdp engines run: xsk-rx-dropped (the kernel dropped a packet it
// could not place, e.g. no frame), xsk-rx-ring-full (the RX ring was
// full: the worker did not keep up or was descheduled),
// xsk-fill-empty (times the kernel found no frame on the fill ring),
// engine-drops (the workers' own drops, any reason), send-full (packets
// read from the TUN that the engine's Send could not queue),
// tun-port-drops (the espxdp TUNs' read drops, oversize drops and
// failed write batches).
func (n *wgNet) addXSK(res *Result, before, now xskCounts) {
	if len(n.engines) == 0 {
		return
	}
	res.add("xsk-rx-dropped", float64(now.k.RxDropped-before.k.RxDropped), UnitPackets)
	res.add("xsk-rx-ring-full", float64(now.k.RxRingFull-before.k.RxRingFull), UnitPackets)
	res.add("xsk-fill-empty", float64(now.k.RxFillRingEmptyDescs-before.k.RxFillRingEmptyDescs), "")
	res.add("engine-drops", float64(now.workers-before.workers), UnitPackets)
	res.add("send-full", float64(now.sendFull-before.sendFull), UnitPackets)
	res.add("tun-port-drops", float64(now.tun-before.tun), UnitPackets)
	if now.udpTX+now.udpRX > 0 {
		res.add("udp-port-drops", float64(now.udpDrops-before.udpDrops), UnitPackets)
	}
}

// ifDropCounts are the interfaces' drop counters (rx dropped + tx
// dropped, "ip -s link") of the wg topology, by where they are.
type ifDropCounts struct {
	gw   uint64 // the gateways' veths (lan, wan)
	tun  uint64 // the gateways' TUN devices (wg0, esp0)
	host uint64 // the hosts' veths
}

// wgTUNs are the names of the TUN devices the wg suite creates.
var wgTUNs = []string{"wg0", "esp0"}

// ifDrops reads the drop counters of every interface in the four
// namespaces.
func (n *wgNet) ifDrops() (ifDropCounts, error) {
	var c ifDropCounts
	for _, ns := range []*topo.NS{n.hostA, n.gwA, n.gwB, n.hostB} {
		out, err := ns.IP("-s", "-j", "link", "show")
		if err != nil {
			return c, err
		}
		var links []struct {
			Name  string `json:"ifname"`
			Stats struct {
				RX struct {
					Dropped uint64 `json:"dropped"`
				} `json:"rx"`
				TX struct {
					Dropped uint64 `json:"dropped"`
				} `json:"tx"`
			} `json:"stats64"`
		}
		if err := json.Unmarshal([]byte(out), &links); err != nil {
			return c, fmt.Errorf("harness: parse ip -s -j link show in %s: %w", ns.Label, err)
		}
		for _, l := range links {
			d := l.Stats.RX.Dropped + l.Stats.TX.Dropped
			switch {
			case l.Name == "lo":
			case ns == n.hostA || ns == n.hostB:
				c.host += d
			case slices.Contains(wgTUNs, l.Name):
				c.tun += d
			default:
				c.gw += d
			}
		}
	}
	return c, nil
}

// addIfDrops adds the interfaces' drops from before to now to res:
// where else than at the AF_XDP sockets a segment can be lost.
func addIfDrops(res *Result, before, now ifDropCounts) {
	res.add("gw-if-drops", float64(now.gw-before.gw), UnitPackets)
	res.add("tun-drops", float64(now.tun-before.tun), UnitPackets)
	res.add("host-if-drops", float64(now.host-before.host), UnitPackets)
}

// addRates adds the engines' work counts from before to now per GB of
// goodput (gb) to res, when espxdp engines run: sleeps/GB (workers'
// poll(2)), xsk-wakeups/GB (AF_XDP sendto and recvfrom), send-wakes/GB
// (Engine.Send's eventfd writes), tun-reads/GB and tun-writes/GB (TUN
// read(2) and write(2)), and pkts/batch (packets per worker batch).
func (n *wgNet) addRates(res *Result, before, now xskCounts, gb float64) {
	if len(n.engines) == 0 || gb <= 0 {
		return
	}
	per := func(name string, a, b uint64) { res.add(name, float64(b-a)/gb, "1/GB") }
	per("sleeps/GB", before.sleeps, now.sleeps)
	per("xsk-wakeups/GB", before.xskWakeups, now.xskWakeups)
	per("send-wakes/GB", before.sendWakes, now.sendWakes)
	per("tun-reads/GB", before.tunReads, now.tunReads)
	per("tun-writes/GB", before.tunWrites, now.tunWrites)
	if now.udpTX+now.udpRX > 0 {
		// The UDP cipher ports: sendmmsg/recvmmsg datagrams per GB, and
		// how many of them were GSO/GRO super-datagrams.
		per("udp-tx-datagrams/GB", before.udpTX, now.udpTX)
		per("udp-tx-super/GB", before.udpTXSuper, now.udpTXSuper)
		per("udp-rx-datagrams/GB", before.udpRX, now.udpRX)
		per("udp-rx-super/GB", before.udpRXSuper, now.udpRXSuper)
	}
	if b := now.batches - before.batches; b > 0 {
		res.add("pkts/batch", float64(now.pkts-before.pkts)/float64(b), "")
	}
}
