package xdp

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// setBusyPoll applies b to the socket fd: SO_PREFER_BUSY_POLL and
// SO_BUSY_POLL_BUDGET first (the kernel reads them when SO_BUSY_POLL
// starts a busy loop), then SO_BUSY_POLL. Nothing when b is off.
func setBusyPoll(fd int, b BusyPoll) error {
	if !b.Enabled() {
		return nil
	}
	if b.Prefer {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PREFER_BUSY_POLL, 1); err != nil {
			return fmt.Errorf("%w: SO_PREFER_BUSY_POLL: %w", ErrBusyPoll, err)
		}
	}
	if b.Budget > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BUSY_POLL_BUDGET, b.Budget); err != nil {
			return fmt.Errorf("%w: SO_BUSY_POLL_BUDGET %d: %w", ErrBusyPoll, b.Budget, err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BUSY_POLL, b.Usecs); err != nil {
		return fmt.Errorf("%w: SO_BUSY_POLL %d: %w", ErrBusyPoll, b.Usecs, err)
	}
	return nil
}

// busyPollOf reads back the socket's busy-poll options (for tests).
// The kernel has no getsockopt for SO_BUSY_POLL_BUDGET: Budget stays 0.
func busyPollOf(fd int) (BusyPoll, error) {
	var b BusyPoll
	var err error
	if b.Usecs, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BUSY_POLL); err != nil {
		return b, err
	}
	p, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PREFER_BUSY_POLL)
	b.Prefer = p != 0
	return b, err
}
