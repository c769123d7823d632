//go:build !linux

package gateway

import (
	"errors"
	"net/netip"
)

type kaSocket struct{}

func openKeepalive(uint16) (*kaSocket, error) {
	return nil, errors.New("NAT-T keepalives need Linux raw sockets")
}

func (k *kaSocket) send(src, dst netip.AddrPort) error { return nil }
func (k *kaSocket) count(fn func()) (wait func())      { return func() {} }
func (k *kaSocket) close()                             {}
