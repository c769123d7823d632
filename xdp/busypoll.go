package xdp

import (
	"errors"
	"fmt"
)

// ErrBusyPoll is returned (wrapped) by NewSocket when the kernel refuses
// the socket's BusyPoll options (before Linux 5.11 for Prefer and
// Budget).
var ErrBusyPoll = errors.New("xdp: busy polling refused")

// BusyPoll configures preferred busy polling of an AF_XDP socket
// (Linux 5.11+): instead of waiting for the driver's interrupt or
// softirq to move packets onto the RX ring and frames off the TX ring,
// the application's own system calls on the socket (poll, recvfrom,
// sendto) run the queue's NAPI poll in its context, so receiving stops
// depending on a softirq that a loaded CPU may defer while the worker is
// descheduled. The zero value leaves busy polling off (the kernel's
// defaults apply).
//
// For the kernel to leave the queue to the application, the interface
// also needs its interrupts deferred (sysfs napi_defer_hard_irqs and
// gro_flush_timeout); without that, busy polling only adds polls from the
// worker's system calls to the interrupt-driven ones, which is still
// useful on veth, whose NAPI runs from the sender's softirq.
type BusyPoll struct {
	// Usecs is SO_BUSY_POLL: how long, in microseconds, a blocking
	// system call on the socket busy-polls before sleeping (0: off, the
	// other fields are then ignored). 1..MaxBusyPollUsecs.
	Usecs int
	// Budget is SO_BUSY_POLL_BUDGET: the most packets one busy poll
	// processes (0: the kernel's default, 8). Set it to the batch size.
	// 1..MaxBusyPollBudget.
	Budget int
	// Prefer is SO_PREFER_BUSY_POLL: the kernel leaves the queue to
	// the busy-polling application while it keeps polling.
	Prefer bool
}

// Limits of BusyPoll.
const (
	// MaxBusyPollUsecs is the largest BusyPoll.Usecs accepted: a worker
	// blocked longer than that in a system call would starve its other
	// sockets.
	MaxBusyPollUsecs = 1000
	// MaxBusyPollBudget is the largest BusyPoll.Budget accepted
	// (the kernel's NAPI_POLL_WEIGHT).
	MaxBusyPollBudget = 64
)

// Enabled reports whether b turns busy polling on.
func (b BusyPoll) Enabled() bool { return b.Usecs > 0 }

// validate checks b's ranges.
func (b BusyPoll) validate() error {
	if b.Usecs < 0 || b.Usecs > MaxBusyPollUsecs {
		return fmt.Errorf("%w: BusyPoll.Usecs %d out of range 0..%d", ErrInvalidConfig, b.Usecs, MaxBusyPollUsecs)
	}
	if b.Budget < 0 || b.Budget > MaxBusyPollBudget {
		return fmt.Errorf("%w: BusyPoll.Budget %d out of range 0..%d", ErrInvalidConfig, b.Budget, MaxBusyPollBudget)
	}
	return nil
}
