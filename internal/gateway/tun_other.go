//go:build !linux

package gateway

import (
	"log/slog"

	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/xdp"
)

func setupTUN(t *config.TUNIface, mtu int) error { return xdp.ErrNotSupported }

func setTUNMTU(name string, mtu int) error { return xdp.ErrNotSupported }

func openTUN(name string, queues int, log *slog.Logger) ([]*xdp.TUN, error) {
	return nil, xdp.ErrNotSupported
}
