//go:build !linux

package gateway

import "net"

// peerCred: SO_PEERCRED is Linux only.
func peerCred(c *net.UnixConn, p *Peer) {}
