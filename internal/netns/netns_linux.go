//go:build linux

package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/internal/topo"
)

var counter atomic.Uint32

// UniqueName returns prefix followed by the pid and a per-process counter,
// both in base 36, e.g. "ev1k3z2". Keep prefix short: interface names
// are limited to 15 characters, and UniqueName panics beyond that.
func UniqueName(prefix string) string {
	n := counter.Add(1)
	name := prefix + strconv.FormatInt(int64(os.Getpid()), 36) + "x" + strconv.FormatUint(uint64(n), 36)
	if len(name) > unix.IFNAMSIZ-1 {
		panic(fmt.Sprintf("netns: name %q longer than %d characters", name, unix.IFNAMSIZ-1))
	}
	return name
}

// NS is a named network namespace (as "ip netns add" makes them, bound at
// /run/netns/NAME).
type NS struct {
	// Name is the namespace name, for "ip -n NAME" or "ip netns exec NAME".
	Name string
}

// New creates a namespace with its loopback up and registers its removal
// with t.Cleanup.
func New(t testing.TB) *NS {
	t.Helper()
	ns := &NS{Name: UniqueName("espxdp")}
	if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		t.Fatalf("netns: ip netns add %s: %v: %s", ns.Name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", ns.Name).CombinedOutput(); err != nil {
			t.Errorf("netns: ip netns delete %s: %v: %s", ns.Name, err, out)
		}
	})
	ns.IP(t, "link", "set", "lo", "up")
	return ns
}

// Path is the namespace's bind mount, usable with setns(2).
func (ns *NS) Path() string { return "/run/netns/" + ns.Name }

// IP runs "ip -n NAME args..." and returns its standard output; it fails
// the test on error.
func (ns *NS) IP(t testing.TB, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("ip", append([]string{"-n", ns.Name}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("netns: ip -n %s %s: %v: %s", ns.Name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.String()
}

// Command returns a command that runs name with args inside the namespace
// ("ip netns exec NAME name args...").
func (ns *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Exec runs name with args inside the namespace and returns its combined
// output.
func (ns *NS) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := ns.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("netns %s: %s %s: %w: %s", ns.Name, name, strings.Join(args, " "), err, out)
	}
	return out, nil
}

// Do runs fn on an OS thread that has entered the namespace, and waits
// for it. Sockets fn opens belong to the namespace and stay there after
// Do returns; goroutines fn starts do not inherit the namespace.
//
// The thread is returned to the Go scheduler only if switching it back to
// the original namespace worked; otherwise it is discarded.
func (ns *NS) Do(fn func() error) error { return topo.Do(ns.Path(), fn) }

// Link is one end of a veth pair.
type Link struct {
	NS    *NS
	Name  string
	Index int
	MAC   net.HardwareAddr
}

// VethPair is a veth pair with end A in one namespace and B in another
// (or the same).
type VethPair struct {
	A, B *Link
}

// VethOptions tunes NewVethPairOpts. The zero value gives the defaults.
type VethOptions struct {
	// Queues is the number of RX and TX queues of each end (0: kernel
	// default, 1).
	Queues int
	// MTU of both ends (0: kernel default, 1500).
	MTU int
}

// NewVethPair creates a veth pair between a and b, brings both ends up
// and returns them. It is removed with the namespaces.
func NewVethPair(t testing.TB, a, b *NS) *VethPair {
	t.Helper()
	return NewVethPairOpts(t, a, b, VethOptions{})
}

// NewVethPairOpts is NewVethPair with options.
func NewVethPairOpts(t testing.TB, a, b *NS, opts VethOptions) *VethPair {
	t.Helper()
	nameA, nameB := UniqueName("eva"), UniqueName("evb")
	args := []string{"link", "add", nameA}
	if opts.Queues > 0 {
		q := strconv.Itoa(opts.Queues)
		args = append(args, "numtxqueues", q, "numrxqueues", q)
	}
	if opts.MTU > 0 {
		args = append(args, "mtu", strconv.Itoa(opts.MTU))
	}
	args = append(args, "type", "veth", "peer", "name", nameB)
	if opts.Queues > 0 {
		q := strconv.Itoa(opts.Queues)
		args = append(args, "numtxqueues", q, "numrxqueues", q)
	}
	if opts.MTU > 0 {
		args = append(args, "mtu", strconv.Itoa(opts.MTU))
	}
	args = append(args, "netns", b.Name)
	a.IP(t, args...)
	v := &VethPair{A: lookupLink(t, a, nameA), B: lookupLink(t, b, nameB)}
	v.A.Up(t)
	v.B.Up(t)
	return v
}

func lookupLink(t testing.TB, ns *NS, name string) *Link {
	t.Helper()
	var info []struct {
		Ifindex int    `json:"ifindex"`
		Address string `json:"address"`
	}
	out := ns.IP(t, "-j", "link", "show", "dev", name)
	if err := json.Unmarshal([]byte(out), &info); err != nil || len(info) != 1 {
		t.Fatalf("netns: parse ip -j link show %s: %v: %q", name, err, out)
	}
	mac, err := net.ParseMAC(info[0].Address)
	if err != nil {
		t.Fatalf("netns: MAC of %s: %v", name, err)
	}
	return &Link{NS: ns, Name: name, Index: info[0].Ifindex, MAC: mac}
}

// Up sets the link up.
func (l *Link) Up(t testing.TB) {
	t.Helper()
	l.NS.IP(t, "link", "set", "dev", l.Name, "up")
}

// AddAddr adds an address to the link. IPv6 addresses skip duplicate
// address detection so they are usable at once.
func (l *Link) AddAddr(t testing.TB, p netip.Prefix) {
	t.Helper()
	args := []string{"addr", "add", p.String(), "dev", l.Name}
	if p.Addr().Is6() {
		args = append(args, "nodad")
	}
	l.NS.IP(t, args...)
}

// SetNeighbour adds a permanent neighbour entry for ip with link-layer
// address mac on the link, so no ARP/ND is needed to reach it.
func (l *Link) SetNeighbour(t testing.TB, ip netip.Addr, mac net.HardwareAddr) {
	t.Helper()
	l.NS.IP(t, "neigh", "replace", ip.String(), "lladdr", mac.String(), "nud", "permanent", "dev", l.Name)
}

// XDPAttached reports whether the link has an XDP program attached in any
// mode, according to "ip -d link show".
func (l *Link) XDPAttached(t testing.TB) bool {
	t.Helper()
	var info []struct {
		XDP json.RawMessage `json:"xdp"`
	}
	out := l.NS.IP(t, "-j", "-d", "link", "show", "dev", l.Name)
	if err := json.Unmarshal([]byte(out), &info); err != nil || len(info) != 1 {
		t.Fatalf("netns: parse ip -j -d link show %s: %v: %q", l.Name, err, out)
	}
	return len(info[0].XDP) > 0
}

// WaitFor polls cond every 10ms until it returns true or timeout passes,
// and reports whether it became true.
func WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
