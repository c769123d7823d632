//go:build linux

package gateway

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerCred fills p from SO_PEERCRED.
func peerCred(c *net.UnixConn, p *Peer) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		if u, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			p.UID, p.GID, p.PID = int(u.Uid), int(u.Gid), int(u.Pid)
		}
	})
}
