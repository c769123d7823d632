//go:build linux

package main

import (
	"errors"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// probeKernel reports the kernel release and which of the features
// espxdp uses it has.
func probeKernel() kernelInfo {
	var k kernelInfo
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		k.Release = unix.ByteSliceToString(u.Release[:])
	}
	k.AFXDP = probeAFXDP()
	if kernelAtLeast(k.Release, 6, 6) {
		k.MultiBuffer = "yes (kernel 6.6 or later)"
	} else {
		k.MultiBuffer = "no (needs kernel 6.6; jumbo frames are dropped)"
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err == nil {
		k.BTF = "yes (/sys/kernel/btf/vmlinux)"
	} else {
		k.BTF = "no (/sys/kernel/btf/vmlinux missing)"
	}
	return k
}

// probeAFXDP opens and closes an AF_XDP socket.
func probeAFXDP() string {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	switch {
	case err == nil:
		unix.Close(fd)
		return "yes"
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		// The family exists; creating a socket needs CAP_NET_RAW.
		return "yes (this user may not open one: needs CAP_NET_RAW)"
	case errors.Is(err, unix.EAFNOSUPPORT):
		return "no (kernel built without CONFIG_XDP_SOCKETS)"
	}
	return "unknown (" + err.Error() + ")"
}

// kernelAtLeast reports whether release (e.g. "6.18.0-1-amd64") is at
// least major.minor.
func kernelAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	digits := parts[1]
	if i := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		digits = digits[:i]
	}
	mi, err2 := strconv.Atoi(digits)
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}
