package xdp

import "fmt"

// Default ring sizes of an engine's sockets. The receiving rings are
// twice DefaultRingSize: a TCP stream through two gateways on a loaded
// host lost about 0.1 % of its segments, every one of them counted as
// RxRingFull (the kernel found the RX ring full while the worker was
// descheduled), with 2048-entry rings; with 4096 RX and fill entries it
// lost none (bench wg suite, xsk counters). It costs frames: the
// default UMEM of a queue pair grows from 48 to 80 MiB (EngineFrames).
const (
	// EngineRXSize is the default RX ring size (EngineConfig.RXSize).
	EngineRXSize = 2 * DefaultRingSize
	// EngineFillSize is the default fill ring size (UMEM.FillSize).
	EngineFillSize = 2 * DefaultRingSize
	// EngineTXSize is the default TX and completion ring size
	// (EngineConfig.TXSize, UMEM.CompletionSize): a worker transmits what
	// it received in the same step, so its TX ring drains as fast as it
	// fills.
	EngineTXSize = DefaultRingSize
)

// normalizeTuning fills in and checks the socket tuning of c: ring sizes
// and busy polling.
func (c *EngineConfig) normalizeTuning() error {
	if c.RXSize == 0 {
		c.RXSize = EngineRXSize
	}
	if c.TXSize == 0 {
		c.TXSize = EngineTXSize
	}
	if c.UMEM.FillSize == 0 {
		c.UMEM.FillSize = EngineFillSize
		if c.UMEM.NumFrames > 0 && c.UMEM.NumFrames < EngineFillSize {
			// A UMEM sized explicitly below the engine's fill ring keeps
			// the socket default it was sized for.
			c.UMEM.FillSize = DefaultRingSize
		}
	}
	if c.UMEM.CompletionSize == 0 {
		c.UMEM.CompletionSize = EngineTXSize
	}
	for _, r := range []struct {
		name string
		n    int
	}{{"RXSize", c.RXSize}, {"TXSize", c.TXSize}} {
		if !isPow2(r.n) || r.n > MaxRingSize {
			return fmt.Errorf("%w: %s %d is not a power of two up to %d", ErrInvalidConfig, r.name, r.n, MaxRingSize)
		}
	}
	return c.BusyPoll.validate()
}

// socketConfig is the configuration of the engine's socket on queue q
// of interface ifindex.
func (c *EngineConfig) socketConfig(ifindex, q int) SocketConfig {
	return SocketConfig{Ifindex: ifindex, Queue: q, Mode: c.Mode, MultiBuffer: c.MultiBuffer,
		RXSize: c.RXSize, TXSize: c.TXSize, BusyPoll: c.BusyPoll}
}

// KernelTotals sums the kernel's counters (XDP_STATISTICS) over all the
// engine's sockets, both sides: where the kernel dropped what it could
// not hand to a worker (RxDropped, RxRingFull) and how often it found no
// frame to receive into (RxFillRingEmptyDescs).
func (s EngineStats) KernelTotals() KernelStats {
	var t KernelStats
	for _, ss := range [][]Stats{s.CipherSockets, s.PlainSockets} {
		for _, st := range ss {
			k := st.Kernel
			t.RxDropped += k.RxDropped
			t.RxInvalidDescs += k.RxInvalidDescs
			t.TxInvalidDescs += k.TxInvalidDescs
			t.RxRingFull += k.RxRingFull
			t.RxFillRingEmptyDescs += k.RxFillRingEmptyDescs
			t.TxRingEmptyDescs += k.TxRingEmptyDescs
		}
	}
	return t
}

// WorkerDrops sums the packets the engine's workers dropped after
// receiving them, for whatever reason (SA processor, TX ring full, no
// room, not IP, VLAN, TTL, fragmentation, jumbo, reassembly frame).
func (s EngineStats) WorkerDrops() uint64 {
	var n uint64
	for _, w := range s.Workers {
		n += w.SADrops + w.TXFull + w.NoRoom + w.NotIP + w.VLANDrops + w.TTLExpired +
			w.FragmentFailed + w.JumboDrops + w.ReasmNoFrame + w.ControlDropped
	}
	return n
}
