//go:build !linux

package xdp

import "time"

// TUNBufSize is the size of each read buffer ServeTUN uses.
const TUNBufSize = 4096

// TUN is a Linux TUN device (Linux only).
type TUN struct{}

// OpenTUN returns ErrNotSupported outside Linux.
func OpenTUN(name string) (*TUN, error) { return nil, ErrNotSupported }

func (t *TUN) Name() string                                      { return "" }
func (t *TUN) Read(buf []byte) (int, error)                      { return 0, ErrNotSupported }
func (t *TUN) SetReadDeadline(d time.Time) error                 { return ErrNotSupported }
func (t *TUN) ReadBatch(bufs [][]byte, sizes []int) (int, error) { return 0, ErrNotSupported }
func (t *TUN) WriteBatch(pkts [][]byte) (int, error)             { return 0, ErrNotSupported }
func (t *TUN) Deliver(pkts [][]byte)                             {}
func (t *TUN) Close() error                                      { return nil }
func (t *TUN) OversizeDrops() uint64                             { return 0 }

// OpenTUNOffload returns ErrNotSupported outside Linux.
func OpenTUNOffload(name string) (*TUN, error) { return nil, ErrNotSupported }

// OpenTUNQueues returns ErrNotSupported outside Linux.
func OpenTUNQueues(name string, queues int) ([]*TUN, error) { return nil, ErrNotSupported }

// DeliverTUNs returns a DeliverFunc that does nothing outside Linux.
func DeliverTUNs(tuns []*TUN) DeliverFunc { return func([][]byte) {} }

func (t *TUN) Stats() TUNStats { return TUNStats{} }
func (t *TUN) Offload() bool   { return false }

// ServeTUN returns ErrNotSupported outside Linux.
func ServeTUN(e *Engine, t *TUN, queue int, stop <-chan struct{}) error { return ErrNotSupported }
