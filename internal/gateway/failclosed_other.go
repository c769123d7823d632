//go:build !linux

package gateway

import (
	"errors"

	"github.com/espxdp/espxdp/internal/config"
)

// ErrFailClosed: the fail-closed nftables table could not be installed,
// removed or read (always outside Linux).
var ErrFailClosed = errors.New("gateway: fail-closed table needs Linux nftables")

// InstallFailClosed returns ErrFailClosed outside Linux.
func InstallFailClosed(g *config.Gateway, netns string) error { return ErrFailClosed }

// RemoveFailClosed returns ErrFailClosed outside Linux.
func RemoveFailClosed(g *config.Gateway, netns string) error { return ErrFailClosed }

// FailClosedCounters returns ErrFailClosed outside Linux.
func FailClosedCounters(g *config.Gateway, netns string) (in, out uint64, err error) {
	return 0, 0, ErrFailClosed
}

func (gw *Gateway) applyFailClosed() error { return ErrFailClosed }
