//go:build !linux

package xdp

import "time"

// AF_XDP exists only on Linux. Elsewhere the types are here so that code
// using them compiles, and every constructor returns ErrNotSupported.

// UMEM is a region of packet frames shared with the kernel (Linux only).
type UMEM struct{ cfg UMEMConfig }

// NewUMEM returns ErrNotSupported outside Linux.
func NewUMEM(cfg UMEMConfig) (*UMEM, error) {
	if _, err := cfg.normalize(); err != nil {
		return nil, err
	}
	return nil, ErrNotSupported
}

func (u *UMEM) Config() UMEMConfig                   { return u.cfg }
func (u *UMEM) FrameSize() int                       { return u.cfg.FrameSize }
func (u *UMEM) DataOffset() int                      { return u.cfg.Headroom + KernelHeadroom }
func (u *UMEM) Frame(d Desc) (frame []byte, off int) { return nil, 0 }
func (u *UMEM) Packet(d Desc) []byte                 { return nil }
func (u *UMEM) SetPacket(d *Desc, off, n int) error  { return ErrNotSupported }
func (u *UMEM) Alloc(descs []Desc) int               { return 0 }
func (u *UMEM) Free(descs []Desc) int                { return 0 }
func (u *UMEM) BadFrees() uint64                     { return 0 }
func (u *UMEM) Counts() FrameCounts                  { return FrameCounts{} }
func (u *UMEM) CheckFrames() error                   { return ErrNotSupported }
func (u *UMEM) NumSockets() int                      { return 0 }
func (u *UMEM) Close() error                         { return nil }
func (u *UMEM) NewSocket(cfg SocketConfig) (*Socket, error) {
	if _, err := cfg.normalize(); err != nil {
		return nil, err
	}
	return nil, ErrNotSupported
}

// Socket is an AF_XDP socket (Linux only).
type Socket struct{}

func (s *Socket) FD() int                                  { return -1 }
func (s *Socket) Config() SocketConfig                     { return SocketConfig{} }
func (s *Socket) UMEM() *UMEM                              { return nil }
func (s *Socket) Mode() Mode                               { return ModeCopy }
func (s *Socket) OwnsFillRing() bool                       { return false }
func (s *Socket) Receive(descs []Desc) int                 { return 0 }
func (s *Socket) Transmit(descs []Desc) int                { return 0 }
func (s *Socket) Kick()                                    {}
func (s *Socket) Refill() int                              { return 0 }
func (s *Socket) Complete() int                            { return 0 }
func (s *Socket) TXOutstanding() int                       { return 0 }
func (s *Socket) Wait(timeout time.Duration) (bool, error) { return false, ErrNotSupported }
func (s *Socket) Stats() (Stats, error)                    { return Stats{}, ErrNotSupported }
func (s *Socket) Close() error                             { return nil }

// Forwarder forwards between AF_XDP sockets (Linux only).
type Forwarder struct{}

// NewForwarder returns ErrNotSupported outside Linux.
func NewForwarder(cfg ForwarderConfig) (*Forwarder, error) {
	if _, err := cfg.normalize(); err != nil {
		return nil, err
	}
	return nil, ErrNotSupported
}

func (f *Forwarder) ZeroCopyHandover() bool { return false }
func (f *Forwarder) Start() error           { return ErrNotSupported }
func (f *Forwarder) Stop() error            { return nil }
func (f *Forwarder) Stats() ForwarderStats  { return ForwarderStats{} }
