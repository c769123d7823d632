package xdp

import (
	"fmt"

	"github.com/espxdp/espxdp/bpf"
	"github.com/espxdp/espxdp/sa"
)

// Steering is how an Engine's XDP programs choose the worker of a packet
// among those with a socket on its RX queue (EngineConfig.Steering).
type Steering int

const (
	// SteerAuto picks by the processor's concurrency mode: one worker on
	// one queue, or MultiBuffer, SteerQueue; else Shared SteerSpread;
	// Sharded, PerCPU and Ordered SteerSPI.
	SteerAuto Steering = iota
	// SteerQueue gives every worker one queue (Workers == Queues): a
	// packet goes to the worker of the queue it arrived on, as RSS chose.
	SteerQueue
	// SteerSPI gives every worker a socket on every queue (XDP_SHARED_UMEM
	// on one queue) and steers ESP by the SPI hash the sa package's owner
	// uses (bpf.SPIHashSlot == sa.Processor.OwnerOf for unpinned SAs), so
	// a Sharded or PerCPU SA's packets reach its owner on whatever queue
	// they arrive, and an Ordered SA has one sequencer; plaintext is
	// steered by a hash of its destination address (one inner
	// destination, one worker).
	SteerSPI
	// SteerSpread gives every worker a socket on every queue and deals
	// each queue's packets over the workers in chunks of SpreadChunk
	// (bpf.Options.Spread), so one SA on one RSS queue uses every worker
	// (Shared). Workers then reorder one SA's stream by up to what a
	// worker's RX ring holds, more than the default replay window: Start
	// sets the processor's window floor (sa.Processor.SetReplayWindowFloor)
	// to twice that, so default-sized windows grow to it at their first
	// packet and an in-order stream loses nothing to anti-replay.
	SteerSpread
)

func (s Steering) String() string {
	switch s {
	case SteerAuto:
		return "auto"
	case SteerQueue:
		return "queue"
	case SteerSPI:
		return "spi"
	case SteerSpread:
		return "spread"
	}
	return fmt.Sprintf("Steering(%d)", int(s))
}

// resolveSteering returns the steering an engine of cfg (normalized
// Workers, Queues) uses, or an error for a combination that cannot work.
func resolveSteering(c *EngineConfig) (Steering, error) {
	s := c.Steering
	if s == SteerAuto {
		switch {
		case c.Workers == 1 && c.Queues == 1 || c.MultiBuffer:
			s = SteerQueue
		case c.Processor.Concurrency() == sa.Shared:
			s = SteerSpread
		default:
			s = SteerSPI
		}
	}
	switch s {
	case SteerQueue:
		if c.Workers != c.Queues {
			return s, fmt.Errorf("%w: SteerQueue needs as many workers as queues, not %d for %d", ErrInvalidConfig, c.Workers, c.Queues)
		}
	case SteerSPI, SteerSpread:
		if c.MultiBuffer {
			return s, fmt.Errorf("%w: MultiBuffer needs SteerQueue", ErrInvalidConfig)
		}
		if c.Workers > bpf.MaxSocketsPerQueue {
			return s, fmt.Errorf("%w: %d workers, at most %d with %v steering", ErrInvalidConfig, c.Workers, bpf.MaxSocketsPerQueue, s)
		}
	default:
		return s, fmt.Errorf("%w: %v", ErrInvalidConfig, s)
	}
	return s, nil
}

// socketsPerQueue is how many sockets each queue of each side has.
func (c *EngineConfig) socketsPerQueue() int {
	if c.Steering == SteerQueue {
		return 1
	}
	return c.Workers
}
