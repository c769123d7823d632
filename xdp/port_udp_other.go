//go:build !linux

package xdp

import (
	"net/netip"

	"github.com/espxdp/espxdp/sa"
)

// UDPPort is the UDP cipher port (Linux only): Bind returns
// ErrNotSupported elsewhere.
type UDPPort struct{ local netip.AddrPort }

// NewUDPPort returns a port whose Bind fails outside Linux.
func NewUDPPort(cfg UDPPortConfig) *UDPPort { return &UDPPort{local: cfg.Local} }

func (u *UDPPort) Addr() netip.AddrPort                      { return u.local }
func (u *UDPPort) Bind(PortEnv) error                        { return ErrNotSupported }
func (u *UDPPort) Receive(int, []sa.Packet) int              { return 0 }
func (u *UDPPort) Transmit(int, []sa.Packet)                 {}
func (u *UDPPort) Maintain(int, bool)                        {}
func (u *UDPPort) InFlight(int) int                          { return 0 }
func (u *UDPPort) PollFDs(int) []int                         { return nil }
func (u *UDPPort) Unbind() error                             { return nil }
func (u *UDPPort) Stats() PortStats                          { return PortStats{} }
func (u *UDPPort) WriteTo(b []byte, to netip.AddrPort) error { return ErrNotSupported }
