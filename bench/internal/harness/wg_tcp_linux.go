//go:build linux

package harness

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// wgStreams are the parallel TCP connections of the wg suite's TCP
// rows: one stream (the target), then several.
var wgStreams = []int{1, 4}

// cpuSample is a reading of the CPU time counters the wg suite reports:
// the harness process's own CPU time (user + system, all threads:
// getrusage RUSAGE_SELF) and the machine's softirq and busy time
// (/proc/stat, all CPUs).
type cpuSample struct {
	self    time.Duration
	softirq time.Duration
}

// clockTick is the unit of /proc/stat (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

func sampleCPU() (cpuSample, error) {
	var s cpuSample
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return s, fmt.Errorf("harness: getrusage: %w", err)
	}
	s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	// cpu user nice system idle iowait irq softirq ...
	if len(f) < 8 || f[0] != "cpu" {
		return s, fmt.Errorf("harness: /proc/stat: unexpected first line %q", line)
	}
	ticks, err := strconv.ParseUint(f[7], 10, 64)
	if err != nil {
		return s, fmt.Errorf("harness: /proc/stat softirq: %w", err)
	}
	s.softirq = time.Duration(ticks) * clockTick
	return s, nil
}

// wgKey names a TCP measurement for the ratios.
func wgKey(impl, tr, variant string, streams int) string {
	return fmt.Sprintf("%s/%s/%s/%d", impl, tr, variant, streams)
}

// tcp measures TCP goodput hostA → hostB over streams parallel
// connections with whatever the gateways run now: a ping first
// (handshakes, and proof of a path), then r.runs transfers of r.bytes
// between two helper processes (childTransfer); the median goodput is
// reported, and the CPU cost per GB of goodput over all runs:
//
//   - gw-cpu-s/GB: CPU time (user + system, every thread) of this
//     process, which holds both gateways and nothing else that works
//     while a transfer runs (the endpoints are child processes). It is
//     the scheduler's exact run time of the gateways' threads, so it
//     includes kernel work done on them: system calls (TUN reads and
//     writes, sendmmsg/recvmmsg, AF_XDP wakeups), and, on this kernel
//     without CONFIG_IRQ_TIME_ACCOUNTING, softirq work that ran on their
//     threads (e.g. a veth's NAPI raised by their transmits).
//   - softirq-s/GB: the machine's softirq time over the runs (/proc/stat,
//     all CPUs, tick-sampled). Not attributable per interface: it holds
//     the hosts' and the gateways' veth NAPI and stack work alike (and
//     other load on the machine), and can overlap with gw-cpu.
//   - hosts-cpu-s/GB: CPU time of the two endpoint processes.
func (r *wgRun) tcp(impl, tr, variant string, streams int) (Result, error) {
	res := Result{Suite: "wg", Kind: KindWG, Impl: impl, Transform: tr, Traffic: "tcp", Size: wgInnerMT, Op: variant, Streams: streams}
	n := r.net
	var x0 xskCounts
	var d0 ifDropCounts
	var u0 uint64
	start := func() error {
		x0 = n.xskSnapshot()
		var err error
		if u0, err = n.udpSockDrops(); err != nil {
			return err
		}
		d0, err = n.ifDrops()
		return err
	}
	var gwCPU, softirq, hostCPU time.Duration
	var bytes int64
	transfer := func(ctx context.Context, _ int) (float64, float64, int, error) {
		c0, err := sampleCPU()
		if err != nil {
			return 0, 0, 0, err
		}
		sink, mss, hc, err := childTransfer(ctx, n.hostB, netip.AddrPortFrom(wgHostB, wgTCPPort), n.hostA, r.bytes, streams)
		if err != nil {
			return 0, 0, 0, err
		}
		c1, err := sampleCPU()
		if err != nil {
			return 0, 0, 0, err
		}
		gwCPU += c1.self - c0.self
		softirq += c1.softirq - c0.softirq
		hostCPU += hc
		bytes += sink.Bytes
		d := time.Duration(sink.Ns)
		return float64(sink.Bytes) * 8 / d.Seconds() / 1e9, d.Seconds(), mss, nil
	}
	m, err := n.measureTCP(impl, r.runs, 3, r.bytes, start, transfer)
	if err != nil {
		return res, err
	}
	g := m.add(&res, r.bytes)
	res.add("streams", float64(streams), "")
	x1 := n.xskSnapshot()
	n.addXSK(&res, x0, x1)
	n.addRates(&res, x0, x1, float64(bytes)/1e9)
	d1, err := n.ifDrops()
	if err != nil {
		return res, err
	}
	addIfDrops(&res, d0, d1)
	u1, err := n.udpSockDrops()
	if err != nil {
		return res, err
	}
	res.add("udp-sock-drops", float64(u1-u0), UnitPackets)
	gb := float64(bytes) / 1e9
	cpuGB := gwCPU.Seconds() / gb
	sirqGB := softirq.Seconds() / gb
	res.add("gw-cpu-s/GB", cpuGB, UnitCPUPerGB)
	res.add("softirq-s/GB", sirqGB, UnitCPUPerGB)
	res.add("hosts-cpu-s/GB", hostCPU.Seconds()/gb, UnitCPUPerGB)
	key := wgKey(impl, tr, variant, streams)
	r.gbps[key], r.cpuGB[key], r.sirqGB[key] = g, cpuGB, sirqGB
	// Against wireguard-go's better configuration (by goodput) at the
	// same number of streams.
	if wgv, wg := r.bestWG(streams); strings.HasPrefix(impl, "espxdp") && wg > 0 {
		wk := wgKey("wireguard-go", "", wgv, streams)
		res.add("x-wireguard", g/wg, UnitRatio)
		if c := r.cpuGB[wk]; c > 0 {
			res.add("x-wireguard-cpu", cpuGB/c, UnitRatio)
			if cs := c + r.sirqGB[wk]; cs > 0 {
				res.add("x-wireguard-cpu+softirq", (cpuGB+sirqGB)/cs, UnitRatio)
			}
		}
	}
	if k := r.gbps[wgKey("kernel", "", wgNoOffload, streams)]; impl != "kernel" && k > 0 {
		res.add("x-kernel", g/k, UnitRatio)
	}
	return res, nil
}

// bestWG returns wireguard-go's better variant (offloads off or on) at
// streams TCP connections, by goodput, and that goodput (0: not
// measured).
func (r *wgRun) bestWG(streams int) (variant string, gbps float64) {
	variant = wgOffload
	for _, v := range []string{wgNoOffload, wgOffload} {
		if g := r.gbps[wgKey("wireguard-go", "", v, streams)]; g > gbps {
			variant, gbps = v, g
		}
	}
	return variant, gbps
}
