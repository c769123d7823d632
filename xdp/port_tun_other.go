//go:build !linux

package xdp

import "github.com/espxdp/espxdp/sa"

// TUNPort is the TUN plaintext port (Linux only).
type TUNPort struct{}

// NewTUNPort returns ErrNotSupported outside Linux.
func NewTUNPort([]*TUN) (*TUNPort, error) { return nil, ErrNotSupported }

func (p *TUNPort) Bind(PortEnv) error           { return ErrNotSupported }
func (p *TUNPort) Receive(int, []sa.Packet) int { return 0 }
func (p *TUNPort) Transmit(int, []sa.Packet)    {}
func (p *TUNPort) Maintain(int, bool)           {}
func (p *TUNPort) InFlight(int) int             { return 0 }
func (p *TUNPort) PollFDs(int) []int            { return nil }
func (p *TUNPort) Unbind() error                { return nil }
func (p *TUNPort) Stats() PortStats             { return PortStats{} }
