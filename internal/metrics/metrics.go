// Package metrics exports a gateway's counters to Prometheus.
//
// A Collector reads a Snapshot from its Source at scrape time and turns
// it into metrics: nothing is done per packet, and nothing is kept
// between scrapes. The data path keeps its own per-worker counters (see
// package sa and xdp); a scrape costs one read of each.
//
// Invariants the collector keeps:
//   - No key material: a Snapshot holds counters and SA identities
//     (name, SPI, direction) only; sa.Stats has no key field.
//   - Bounded label cardinality: at most MaxSAs SAs get series of their
//     own (the first in the Source's order); the others are summed into
//     series whose name label is OtherSA, and espxdp_sa_aggregated says
//     how many there are. Every other label takes values from fixed sets
//     (drop reasons, event kinds, steering modes, interfaces sides) or
//     ranges the configuration bounds: workers (gateway.workers, at most
//     64) and queues (gateway.queues, at most 64). Sockets are summed per
//     side and queue, not per worker and queue: with spi or spread
//     steering every worker has a socket on every queue, and series per
//     socket would grow as workers times queues.
package metrics

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/espxdp/espxdp/bpf"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

// Namespace prefixes every metric name.
const Namespace = "espxdp"

// OtherSA is the name label of the series that sum the SAs beyond
// Options.MaxSAs.
const OtherSA = "_other"

// DefaultMaxSAs is the default Options.MaxSAs.
const DefaultMaxSAs = 1000

// Snapshot is what a Collector reads at each scrape.
type Snapshot struct {
	// SAs in a stable order (the gateway's: configuration order).
	SAs       []sa.Stats
	Processor sa.ProcessorStats
	// Engine is nil when no engine runs (a gateway not started).
	Engine *xdp.EngineStats
	Uptime time.Duration

	KeepalivesSent, KeepalivesReceived, KeepaliveErrors uint64
	// Events counts the control-plane events handled, by kind;
	// EventsLost those dropped because the event queue was full.
	Events     map[sa.EventKind]uint64
	EventsLost uint64
	// TUN is the route-based TUN's offload counters (nil: no TUN).
	TUN *xdp.TUNStats
	// Steering is the engine's steering (xdp.Steering.String: queue,
	// spi or spread) and Queues the interface queues it serves; with
	// Engine nil they are not exported.
	Steering string
	Queues   int
}

// Source returns the current counters.
type Source func() Snapshot

// Options tune a Collector.
type Options struct {
	// MaxSAs caps the SAs with series of their own; 0 means
	// DefaultMaxSAs, a negative value none (all SAs are aggregated).
	MaxSAs int
}

// Collector is a prometheus.Collector over a Source.
type Collector struct {
	src    Source
	maxSAs int
}

// NewCollector returns a Collector reading src.
func NewCollector(src Source, o Options) *Collector {
	m := o.MaxSAs
	if m == 0 {
		m = DefaultMaxSAs
	}
	if m < 0 {
		m = 0
	}
	return &Collector{src: src, maxSAs: m}
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(Namespace+"_"+name, help, labels, nil)
}

var saLabels = []string{"name", "spi", "direction"}

var (
	descSAs        = desc("sas", "SAs installed.")
	descAggregated = desc("sa_aggregated", "SAs beyond metrics_max_sas, summed into the series with name=\""+OtherSA+"\".")
	descSAPkts     = desc("sa_packets_total", "Packets encapsulated (outbound SA) or decapsulated (inbound SA).", saLabels...)
	descSABytes    = desc("sa_bytes_total", "Bytes encapsulated (outbound SA) or decapsulated (inbound SA).", saLabels...)
	descSADrops    = desc("sa_drops_total", "Packets an SA dropped, by reason (reasons with drops only).", append(saLabels, "reason")...)
	descSASeq      = desc("sa_sequence", "Outbound: last sequence number used; inbound: highest authenticated sequence number (replay window top).", saLabels...)
	descSAState    = desc("sa_state", "SA state: 0 active, 1 soft-expired, 2 expired.", saLabels...)
	descSALife     = desc("sa_lifetime_remaining", "Lifetime left before the soft or hard limit, by unit (limited dimensions only).", append(saLabels, "limit", "unit")...)

	descProcPkts    = desc("processor_packets_total", "Packets the SA processor took, by direction.", "direction")
	descProcOK      = desc("processor_ok_total", "Packets the SA processor passed on after ESP processing, by direction.", "direction")
	descProcControl = desc("processor_control_total", "IKE and NAT-keepalive packets the processor handed to the control path.")
	descProcBypass  = desc("processor_bypass_total", "Packets an SPD bypass policy let through in clear.")
	descProcHanded  = desc("processor_handed_off_total", "Packets handed to another worker (sharded and per-cpu concurrency).")
	descProcDrops   = desc("processor_drops_total", "Drops no SA owns (unknown SPI, malformed outer headers, no policy...), by reason.", "reason")

	descUp        = desc("engine_running", "1 when the AF_XDP engine runs.")
	descUptime    = desc("uptime_seconds", "Seconds since the engine started.")
	descUMEM      = desc("umem_frames", "UMEM frames by where they are.", "place")
	descXDP       = desc("xdp_program_packets_total", "Packets the XDP steering program saw, by what it did.", "side", "verdict")
	descKASent    = desc("natt_keepalives_sent_total", "NAT-keepalives sent.")
	descTUN       = desc("tun_packets_total", "The route-based TUN's offloads: GSO super-packets split and the segments they held, GRO super-packets written and the packets they carried, drops and write errors.", "what")
	descKARecv    = desc("natt_keepalives_received_total", "NAT-keepalives received.")
	descKAErr     = desc("natt_keepalive_errors_total", "NAT-keepalives that could not be sent (or socket errors).")
	descEvents    = desc("events_total", "Control-plane events handled, by kind.", "kind")
	descEventLost = desc("events_lost_total", "Control-plane events dropped because the event queue was full.")

	descEngineInfo    = desc("engine_info", "1, labelled with how the XDP programs steer packets to workers (queue, spi, spread).", "steering")
	descEngineWorkers = desc("engine_workers", "Engine workers.")
	descEngineQueues  = desc("engine_queues", "Interface queues the engine serves.")
	descKernelDrops   = desc("kernel_xsk_drops_total", "The kernel's AF_XDP drops (XDP_STATISTICS) summed over every socket, by reason: rx_dropped (no frame to receive into, too large), rx_ring_full, rx_invalid_descs, tx_invalid_descs.", "reason")
)

// workerCounter is one counter of xdp.EngineWorkerStats.
type workerCounter struct {
	desc *prometheus.Desc
	get  func(*xdp.EngineWorkerStats) uint64
}

func wc(name, help string, get func(*xdp.EngineWorkerStats) uint64) workerCounter {
	return workerCounter{desc("worker_"+name+"_total", help, "worker", "queue"), get}
}

var workerCounters = []workerCounter{
	wc("cipher_rx", "Frames received on the ciphertext side.", func(w *xdp.EngineWorkerStats) uint64 { return w.CipherRX }),
	wc("plain_rx", "Frames received on the plaintext side.", func(w *xdp.EngineWorkerStats) uint64 { return w.PlainRX }),
	wc("encrypted", "ESP packets sent on the ciphertext side.", func(w *xdp.EngineWorkerStats) uint64 { return w.Encrypted }),
	wc("decrypted", "Inner packets sent on the plaintext side or delivered.", func(w *xdp.EngineWorkerStats) uint64 { return w.Decrypted }),
	wc("bypassed", "Packets sent unchanged after an SPD bypass.", func(w *xdp.EngineWorkerStats) uint64 { return w.Bypassed }),
	wc("control", "Control packets (IKE, keepalives) passed on.", func(w *xdp.EngineWorkerStats) uint64 { return w.Control }),
	wc("control_dropped", "Control packets dropped (no control handler).", func(w *xdp.EngineWorkerStats) uint64 { return w.ControlDropped }),
	wc("sa_drops", "Packets the SA processor dropped.", func(w *xdp.EngineWorkerStats) uint64 { return w.SADrops }),
	wc("mtu_drops", "Packets dropped for exceeding the plaintext MTU.", func(w *xdp.EngineWorkerStats) uint64 { return w.MTUDrops }),
	wc("mss_clamped", "TCP SYNs whose MSS was lowered.", func(w *xdp.EngineWorkerStats) uint64 { return w.MSSClamped }),
	wc("ttl_expired", "Packets dropped with an expiring TTL or hop limit.", func(w *xdp.EngineWorkerStats) uint64 { return w.TTLExpired }),
	wc("icmp_sent", "ICMP errors sent.", func(w *xdp.EngineWorkerStats) uint64 { return w.ICMPSent }),
	wc("icmp_rate_limited", "ICMP errors suppressed by the rate limit.", func(w *xdp.EngineWorkerStats) uint64 { return w.ICMPRateLimited }),
	wc("icmp_not_sent", "ICMP errors not allowed or impossible.", func(w *xdp.EngineWorkerStats) uint64 { return w.ICMPNotSent }),
	wc("not_ip", "Frames dropped without an IP packet.", func(w *xdp.EngineWorkerStats) uint64 { return w.NotIP }),
	wc("no_room", "Results without room for the Ethernet header.", func(w *xdp.EngineWorkerStats) uint64 { return w.NoRoom }),
	wc("tx_full", "Packets dropped because a TX ring stayed full.", func(w *xdp.EngineWorkerStats) uint64 { return w.TXFull }),
	wc("handed_off", "Packets given to another worker.", func(w *xdp.EngineWorkerStats) uint64 { return w.HandedOff }),
	wc("sleeps", "Times the worker blocked in poll(2).", func(w *xdp.EngineWorkerStats) uint64 { return w.Sleeps }),
	wc("sent", "Packets queued by Engine.Send (ICMP errors, TUN).", func(w *xdp.EngineWorkerStats) uint64 { return w.Sent }),
	wc("send_full", "Packets Engine.Send could not queue.", func(w *xdp.EngineWorkerStats) uint64 { return w.SendFull }),
}

// socketCounter is one counter of xdp.Stats.
type socketCounter struct {
	desc *prometheus.Desc
	get  func(*xdp.Stats) uint64
}

func sc(name, help string, get func(*xdp.Stats) uint64) socketCounter {
	return socketCounter{desc("xsk_"+name+"_total", help+" Summed over the queue's sockets (one per worker with spi or spread steering).", "side", "queue"), get}
}

var socketCounters = []socketCounter{
	sc("rx_packets", "Frames taken from the RX ring.", func(s *xdp.Stats) uint64 { return s.RXPackets }),
	sc("rx_bytes", "Bytes taken from the RX ring.", func(s *xdp.Stats) uint64 { return s.RXBytes }),
	sc("tx_packets", "Frames put on the TX ring.", func(s *xdp.Stats) uint64 { return s.TXPackets }),
	sc("tx_bytes", "Bytes put on the TX ring.", func(s *xdp.Stats) uint64 { return s.TXBytes }),
	sc("tx_completed", "Frames reaped from the completion ring.", func(s *xdp.Stats) uint64 { return s.TXCompleted }),
	sc("tx_invalid", "TX descriptors refused.", func(s *xdp.Stats) uint64 { return s.TXInvalid }),
	sc("filled", "Frames put on the fill ring.", func(s *xdp.Stats) uint64 { return s.Filled }),
	sc("fill_ring_empty", "Refills that found the fill ring empty.", func(s *xdp.Stats) uint64 { return s.FillRingEmpty }),
	sc("free_list_empty", "Refills short of free frames.", func(s *xdp.Stats) uint64 { return s.FreeListEmpty }),
	sc("wakeups", "Wakeup system calls.", func(s *xdp.Stats) uint64 { return s.Wakeups }),
	sc("wakeup_errors", "Wakeup system calls that failed.", func(s *xdp.Stats) uint64 { return s.WakeupErrors }),
	sc("rx_bad_desc", "RX descriptors for frames not given to this socket.", func(s *xdp.Stats) uint64 { return s.RXBadDesc }),
	sc("kernel_rx_dropped", "Kernel: packets dropped (no fill frame, too large...).", func(s *xdp.Stats) uint64 { return s.Kernel.RxDropped }),
	sc("kernel_rx_invalid_descs", "Kernel: invalid fill ring descriptors.", func(s *xdp.Stats) uint64 { return s.Kernel.RxInvalidDescs }),
	sc("kernel_tx_invalid_descs", "Kernel: invalid TX ring descriptors.", func(s *xdp.Stats) uint64 { return s.Kernel.TxInvalidDescs }),
	sc("kernel_rx_ring_full", "Kernel: packets dropped with the RX ring full.", func(s *xdp.Stats) uint64 { return s.Kernel.RxRingFull }),
	sc("kernel_rx_fill_ring_empty", "Kernel: times the fill ring was empty.", func(s *xdp.Stats) uint64 { return s.Kernel.RxFillRingEmptyDescs }),
	sc("kernel_tx_ring_empty", "Kernel: times the TX ring was empty.", func(s *xdp.Stats) uint64 { return s.Kernel.TxRingEmptyDescs }),
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSAs, descAggregated, descSAPkts, descSABytes, descSADrops, descSASeq, descSAState, descSALife,
		descProcPkts, descProcOK, descProcControl, descProcBypass, descProcHanded, descProcDrops,
		descUp, descUptime, descUMEM, descXDP, descKASent, descKARecv, descKAErr, descEvents, descEventLost, descTUN,
		descEngineInfo, descEngineWorkers, descEngineQueues, descKernelDrops} {
		ch <- d
	}
	for _, w := range workerCounters {
		ch <- w.desc
	}
	for _, s := range socketCounters {
		ch <- s.desc
	}
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// saTotals are the counters summed for the SAs beyond the cap.
type saTotals struct {
	pkts, bytes uint64
	drops       sa.DropCounts
	n           int
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src()
	gauge(ch, descSAs, float64(len(s.SAs)))
	var other [2]saTotals // inbound, outbound
	for i := range s.SAs {
		st := &s.SAs[i]
		pkts, bytes := st.EncapsPkts, st.EncapsBytes
		if st.Direction == sa.In {
			pkts, bytes = st.DecapsPkts, st.DecapsBytes
		}
		if i >= c.maxSAs {
			o := &other[0]
			if st.Direction != sa.In {
				o = &other[1]
			}
			o.n++
			o.pkts += pkts
			o.bytes += bytes
			for r, n := range st.Drops {
				o.drops[r] += n
			}
			continue
		}
		l := []string{st.Name, fmt.Sprintf("0x%x", st.SPI), st.Direction.String()}
		counter(ch, descSAPkts, pkts, l...)
		counter(ch, descSABytes, bytes, l...)
		for r := sa.DropReason(1); r < sa.NumDropReasons; r++ {
			if st.Drops[r] > 0 {
				counter(ch, descSADrops, st.Drops[r], append(l, r.String())...)
			}
		}
		gauge(ch, descSASeq, float64(st.Seq), l...)
		gauge(ch, descSAState, float64(st.State), l...)
		for _, lim := range []struct {
			name string
			r    sa.Remaining
		}{{"soft", st.SoftRemaining}, {"hard", st.HardRemaining}} {
			for _, u := range []struct {
				unit string
				v    int64
			}{{"seconds", lim.r.Seconds}, {"bytes", lim.r.Bytes}, {"packets", lim.r.Packets}} {
				if u.v >= 0 {
					gauge(ch, descSALife, float64(u.v), append(l, lim.name, u.unit)...)
				}
			}
		}
	}
	aggregated := 0
	for i, o := range other {
		if o.n == 0 {
			continue
		}
		aggregated += o.n
		l := []string{OtherSA, "", []string{sa.In.String(), sa.Out.String()}[i]}
		counter(ch, descSAPkts, o.pkts, l...)
		counter(ch, descSABytes, o.bytes, l...)
		for r := sa.DropReason(1); r < sa.NumDropReasons; r++ {
			if o.drops[r] > 0 {
				counter(ch, descSADrops, o.drops[r], append(l, r.String())...)
			}
		}
	}
	gauge(ch, descAggregated, float64(aggregated))

	p := &s.Processor
	counter(ch, descProcPkts, p.InPkts, "in")
	counter(ch, descProcPkts, p.OutPkts, "out")
	counter(ch, descProcOK, p.InOK, "in")
	counter(ch, descProcOK, p.OutOK, "out")
	counter(ch, descProcControl, p.Control)
	counter(ch, descProcBypass, p.Bypass)
	counter(ch, descProcHanded, p.HandedOff)
	for r := sa.DropReason(1); r < sa.NumDropReasons; r++ {
		counter(ch, descProcDrops, p.Drops[r], r.String())
	}

	if e := s.Engine; e != nil {
		gauge(ch, descUp, 1)
		gauge(ch, descUptime, s.Uptime.Seconds())
		if s.Steering != "" {
			gauge(ch, descEngineInfo, 1, s.Steering)
		}
		gauge(ch, descEngineWorkers, float64(len(e.Workers)))
		gauge(ch, descEngineQueues, float64(s.Queues))
		for i := range e.Workers {
			w := &e.Workers[i]
			wl, q := fmt.Sprint(w.Worker), fmt.Sprint(w.Queue)
			for _, m := range workerCounters {
				counter(ch, m.desc, m.get(w), wl, q)
			}
		}
		for _, side := range []struct {
			name  string
			socks []xdp.Stats
		}{{"cipher", e.CipherSockets}, {"plain", e.PlainSockets}} {
			byQueue := socketsByQueue(side.socks, s.Queues)
			for q := range byQueue {
				for _, m := range socketCounters {
					var v uint64
					for _, i := range byQueue[q] {
						v += m.get(&side.socks[i])
					}
					counter(ch, m.desc, v, side.name, fmt.Sprint(q))
				}
			}
		}
		k := e.KernelTotals()
		counter(ch, descKernelDrops, k.RxDropped, "rx_dropped")
		counter(ch, descKernelDrops, k.RxRingFull, "rx_ring_full")
		counter(ch, descKernelDrops, k.RxInvalidDescs, "rx_invalid_descs")
		counter(ch, descKernelDrops, k.TxInvalidDescs, "tx_invalid_descs")
		xdpProgram(ch, "cipher", &e.CipherProgram)
		if len(e.PlainSockets) > 0 {
			xdpProgram(ch, "plain", &e.PlainProgram)
		}
		f := e.Frames
		for _, pl := range []struct {
			name string
			n    int
		}{{"free", f.Free}, {"app", f.App}, {"fill", f.Fill}, {"rx", f.RX}, {"tx", f.TX}, {"completion", f.Completion}, {"in_kernel", f.InKernel}} {
			gauge(ch, descUMEM, float64(pl.n), pl.name)
		}
	} else {
		gauge(ch, descUp, 0)
	}

	counter(ch, descKASent, s.KeepalivesSent)
	counter(ch, descKARecv, s.KeepalivesReceived)
	counter(ch, descKAErr, s.KeepaliveErrors)
	for k := sa.EventSoftExpire; k <= sa.EventEndpointChanged; k++ {
		counter(ch, descEvents, s.Events[k], k.String())
	}
	counter(ch, descEventLost, s.EventsLost)
	if t := s.TUN; t != nil {
		for _, v := range []struct {
			what string
			n    uint64
		}{
			{"split_super_packets", t.SplitSuperPackets}, {"split_segments", t.SplitSegments},
			{"coalesced_super_packets", t.CoalescedSuperPackets}, {"coalesced_segments", t.CoalescedSegments},
			{"read_drops", t.ReadDrops}, {"oversize_drops", t.OversizeDrops}, {"write_errors", t.WriteErrors},
		} {
			counter(ch, descTUN, v.n, v.what)
		}
	}
}

// xdpProgram emits the XDP program's counters of one side.
func xdpProgram(ch chan<- prometheus.Metric, side string, b *bpf.Stats) {
	for _, v := range []struct {
		name string
		n    uint64
	}{
		{"esp_redirected", b.ESPRedirected}, {"natt_redirected", b.NATTRedirected},
		{"plaintext_redirected", b.PlaintextRedirected}, {"passed_non_ip", b.PassedNonIP},
		{"passed_other", b.PassedOther}, {"ike_passed", b.IKEPassed}, {"keepalive_passed", b.KeepalivePassed},
		{"fragment_passed", b.FragmentPassed}, {"fragment_redirected", b.FragmentRedirected},
		{"malformed", b.Malformed}, {"not_local", b.NotLocal}, {"redirect_no_socket", b.RedirectNoSocket},
		{"unprotected_dropped", b.UnprotectedDropped}, {"bypass_passed", b.BypassPassed},
		{"fail_closed_dropped", b.FailClosedDropped},
	} {
		counter(ch, descXDP, v.n, side, v.name)
	}
}

var _ prometheus.Collector = (*Collector)(nil)

// socketsByQueue groups the indexes of an engine side's sockets by
// queue. The engine lists them worker by worker, each worker's in queue
// order: one socket per worker on its own queue (queue steering:
// len(socks) == queues), or one on every queue (spi, spread: len(socks)
// == workers × queues); either way socket i is on queue i % queues.
// With queues unknown (0) every socket is its own queue, as before
// workers and queues were separate.
func socketsByQueue(socks []xdp.Stats, queues int) [][]int {
	if queues <= 0 || queues > len(socks) {
		queues = len(socks)
	}
	by := make([][]int, queues)
	for i := range socks {
		by[i%queues] = append(by[i%queues], i)
	}
	return by
}
