//go:build linux

package gateway

import (
	"encoding/binary"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// The link monitor: a netlink route socket in the gateway's namespace
// subscribed to link changes; the gateway's interfaces going down, coming
// up or being deleted under the running daemon are logged and shown in
// Stats.Links (the engine's sockets on a deleted interface carry nothing
// any more: a restart is needed once it is back).

// openLinkMonitor opens the netlink socket (in the caller's namespace).
func openLinkMonitor() (*os.File, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_LINK}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "netlink-link-monitor"), nil
}

// linkIndex returns the index of the interface called name (in the
// caller's namespace), 0 if none.
func linkIndex(name string) int {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return 0
	}
	return ifc.Index
}

// readLinkEvents calls fn(index, deleted, up) for every link message
// until f is closed.
func readLinkEvents(f *os.File, fn func(index int, deleted, up bool)) {
	buf := make([]byte, 1<<16)
	for {
		n, err := f.Read(buf)
		if err != nil {
			return
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			continue
		}
		for _, m := range msgs {
			if (m.Header.Type != unix.RTM_NEWLINK && m.Header.Type != unix.RTM_DELLINK) || len(m.Data) < unix.SizeofIfInfomsg {
				continue
			}
			index := int(int32(binary.NativeEndian.Uint32(m.Data[4:8])))
			flags := binary.NativeEndian.Uint32(m.Data[8:12])
			fn(index, m.Header.Type == unix.RTM_DELLINK, flags&unix.IFF_UP != 0 && flags&unix.IFF_RUNNING != 0)
		}
	}
}
