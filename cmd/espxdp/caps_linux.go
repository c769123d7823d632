//go:build linux

package main

import (
	"fmt"
	"os"
	"strings"
)

// daemonCapability is one capability `espxdp run` needs, and what for
// (docs/OPERATIONS.md has the same table).
type daemonCapability struct {
	name string
	bit  uint
	why  string
}

// daemonCapabilities are the capabilities of the daemon; with --netns it
// also needs CAP_SYS_ADMIN (setns).
var daemonCapabilities = []daemonCapability{
	{"CAP_NET_ADMIN", 12, "attach the XDP program, create and configure the TUN device"},
	{"CAP_NET_RAW", 13, "open AF_XDP sockets"},
	{"CAP_IPC_LOCK", 14, "lock the UMEM in memory (or raise RLIMIT_MEMLOCK: LimitMEMLOCK=)"},
	{"CAP_PERFMON", 38, "the verifier accepts the XDP program's pointer arithmetic"},
	{"CAP_BPF", 39, "load the XDP program and create its maps"},
}

// missingCapabilities returns the capabilities the daemon needs that the
// process's effective set lacks (none for a root process with a full
// set), each with what it is for.
func missingCapabilities(netns bool) []string {
	status, err := readProcStatus()
	if err != nil {
		return nil // cannot tell: let the kernel say
	}
	eff := capSet(status, "CapEff")
	need := daemonCapabilities
	if netns {
		need = append(need[:len(need):len(need)], daemonCapability{"CAP_SYS_ADMIN", 21, "enter the --netns namespace (setns)"})
	}
	var out []string
	for _, c := range need {
		if eff&(1<<c.bit) == 0 {
			out = append(out, fmt.Sprintf("%s (%s)", c.name, c.why))
		}
	}
	return out
}

// capabilityHint is appended to a start failure when capabilities are
// missing.
func capabilityHint(netns bool) string {
	m := missingCapabilities(netns)
	if len(m) == 0 {
		return ""
	}
	return fmt.Sprintf("\n  uid %d lacks %s\n  run as root, or grant them (docs/OPERATIONS.md; dist/espxdp@.service)", os.Getuid(), strings.Join(m, ", "))
}
