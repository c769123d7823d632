//go:build linux

package topo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

var counter atomic.Uint32

// UniqueName returns prefix followed by the pid and a per-process counter
// in base 36, e.g. "gw1k3z2x1". Names longer than an interface name
// allows (15 characters) are an error.
func UniqueName(prefix string) (string, error) {
	n := counter.Add(1)
	name := prefix + strconv.FormatInt(int64(os.Getpid()), 36) + "x" + strconv.FormatUint(uint64(n), 36)
	if len(name) > unix.IFNAMSIZ-1 {
		return "", fmt.Errorf("topo: name %q longer than %d characters", name, unix.IFNAMSIZ-1)
	}
	return name, nil
}

// Topology owns the namespaces it creates; Close deletes them all (and
// with them their veth ends). Safe for concurrent use.
type Topology struct {
	prefix string
	mu     sync.Mutex
	nss    []*NS
	closed bool
}

// New returns an empty topology whose namespace names start with prefix
// (at most 6 characters, so that names stay short).
func New(prefix string) *Topology { return &Topology{prefix: prefix} }

// NS is a named network namespace (as "ip netns add" makes them, bound
// at /run/netns/NAME).
type NS struct {
	// Name is the namespace name, for "ip -n NAME" or "ip netns exec NAME".
	Name string
	// Label is the caller's name for it ("gwA").
	Label string
}

// AddNS creates a namespace with its loopback up. label is for messages.
func (t *Topology) AddNS(label string) (*NS, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errors.New("topo: topology closed")
	}
	name, err := UniqueName(t.prefix)
	if err != nil {
		return nil, err
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("topo: ip netns add %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	ns := &NS{Name: name, Label: label}
	t.nss = append(t.nss, ns)
	if _, err := ns.IP("link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return ns, nil
}

// Namespaces returns the namespaces created so far.
func (t *Topology) Namespaces() []*NS {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]*NS(nil), t.nss...)
}

// Close deletes every namespace of the topology; it may be called more
// than once and from a signal handler's goroutine. It returns the first
// error but tries them all.
func (t *Topology) Close() error {
	t.mu.Lock()
	nss := t.nss
	t.nss = nil
	t.closed = true
	t.mu.Unlock()
	var first error
	for i := len(nss) - 1; i >= 0; i-- {
		if out, err := exec.Command("ip", "netns", "delete", nss[i].Name).CombinedOutput(); err != nil && first == nil {
			first = fmt.Errorf("topo: ip netns delete %s: %v: %s", nss[i].Name, err, bytes.TrimSpace(out))
		}
	}
	return first
}

// Path is the namespace's bind mount, usable with setns(2).
func (ns *NS) Path() string { return "/run/netns/" + ns.Name }

// Exists reports whether the namespace's bind mount is still there.
func (ns *NS) Exists() bool {
	_, err := os.Stat(ns.Path())
	return err == nil
}

// IP runs "ip -n NAME args..." and returns its standard output.
func (ns *NS) IP(args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("ip", append([]string{"-n", ns.Name}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("topo: ip -n %s %s: %v: %s", ns.Name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String(), nil
}

// Command returns a command that runs name with args inside the
// namespace ("ip netns exec NAME name args...").
func (ns *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Exec runs name with args inside the namespace and returns its combined
// output.
func (ns *NS) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := ns.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("topo: netns %s: %s %s: %w: %s", ns.Name, name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Sysctl writes a sysctl inside the namespace, e.g.
// Sysctl("net.ipv4.ip_forward", "1").
func (ns *NS) Sysctl(key, value string) error {
	return ns.Do(func() error {
		return os.WriteFile("/proc/sys/"+strings.ReplaceAll(key, ".", "/"), []byte(value), 0o644)
	})
}

// Do runs fn on an OS thread that has entered the namespace, and waits
// for it. Sockets fn opens belong to the namespace and stay there after
// Do returns; goroutines fn starts do not inherit the namespace.
//
// The thread is returned to the Go scheduler only if switching it back
// to the original namespace worked; otherwise it is discarded.
func (ns *NS) Do(fn func() error) error { return Do(ns.Path(), fn) }

// Do runs fn on an OS thread inside the network namespace bound at path;
// see NS.Do.
func Do(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Deliberately no UnlockOSThread unless restoring works: a
		// goroutine that exits locked takes its thread with it.
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("topo: open current namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("topo: open %s: %w", path, err)
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("topo: setns %s: %w", path, err)
			return
		}
		fnErr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("topo: restore namespace after %s: %w (thread discarded)", path, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

// Link is one end of a veth pair (or any interface) in a namespace.
type Link struct {
	NS    *NS
	Name  string
	Index int
	MAC   net.HardwareAddr
}

// VethOptions tunes AddVeth. The zero value gives the defaults.
type VethOptions struct {
	// Queues is the number of RX and TX queues of each end (0: 1).
	Queues int
	// MTU of both ends (0: 1500).
	MTU int
	// MACA and MACB set the ends' addresses (nil: random).
	MACA, MACB net.HardwareAddr
}

// AddVeth creates a veth pair with end nameA in a and nameB in b, brings
// both up and returns them. Names must be unique per namespace (at most
// 15 characters). The pair goes away with its namespaces.
func (t *Topology) AddVeth(a *NS, nameA string, b *NS, nameB string, opts VethOptions) (*Link, *Link, error) {
	// Create both ends in a with temporary names, then move and rename
	// B: avoids clashes with interfaces of the caller's namespace.
	tmpB, err := UniqueName("tvb")
	if err != nil {
		return nil, nil, err
	}
	common := func(mac net.HardwareAddr) []string {
		var args []string
		if opts.Queues > 0 {
			q := strconv.Itoa(opts.Queues)
			args = append(args, "numtxqueues", q, "numrxqueues", q)
		}
		if opts.MTU > 0 {
			args = append(args, "mtu", strconv.Itoa(opts.MTU))
		}
		if mac != nil {
			args = append(args, "address", mac.String())
		}
		return args
	}
	args := append([]string{"link", "add", nameA}, common(opts.MACA)...)
	args = append(args, "type", "veth", "peer", "name", tmpB)
	args = append(args, common(opts.MACB)...)
	args = append(args, "netns", b.Name)
	if _, err := a.IP(args...); err != nil {
		return nil, nil, err
	}
	if tmpB != nameB {
		if _, err := b.IP("link", "set", "dev", tmpB, "name", nameB); err != nil {
			return nil, nil, err
		}
	}
	la, err := a.Link(nameA)
	if err != nil {
		return nil, nil, err
	}
	lb, err := b.Link(nameB)
	if err != nil {
		return nil, nil, err
	}
	if err := la.Up(); err != nil {
		return nil, nil, err
	}
	if err := lb.Up(); err != nil {
		return nil, nil, err
	}
	return la, lb, nil
}

// Link looks an interface of the namespace up by name.
func (ns *NS) Link(name string) (*Link, error) {
	var info []struct {
		Ifindex int    `json:"ifindex"`
		Address string `json:"address"`
	}
	out, err := ns.IP("-j", "link", "show", "dev", name)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil || len(info) != 1 {
		return nil, fmt.Errorf("topo: parse ip -j link show %s: %v: %q", name, err, out)
	}
	l := &Link{NS: ns, Name: name, Index: info[0].Ifindex}
	if info[0].Address != "" {
		if mac, err := net.ParseMAC(info[0].Address); err == nil {
			l.MAC = mac
		}
	}
	return l, nil
}

// Up sets the link up.
func (l *Link) Up() error {
	_, err := l.NS.IP("link", "set", "dev", l.Name, "up")
	return err
}

// AddAddr adds an address to the link. IPv6 addresses skip duplicate
// address detection so they are usable at once.
func (l *Link) AddAddr(p netip.Prefix) error {
	args := []string{"addr", "add", p.String(), "dev", l.Name}
	if p.Addr().Is6() {
		args = append(args, "nodad")
	}
	_, err := l.NS.IP(args...)
	return err
}

// SetNeighbour adds a permanent neighbour entry for ip with link-layer
// address mac on the link, so no ARP/ND is needed to reach it.
func (l *Link) SetNeighbour(ip netip.Addr, mac net.HardwareAddr) error {
	_, err := l.NS.IP("neigh", "replace", ip.String(), "lladdr", mac.String(), "nud", "permanent", "dev", l.Name)
	return err
}

// SetMTU sets the link's MTU.
func (l *Link) SetMTU(mtu int) error {
	_, err := l.NS.IP("link", "set", "dev", l.Name, "mtu", strconv.Itoa(mtu))
	return err
}

// AddRoute adds a route in the namespace: "ip route replace DST [via
// VIA] [dev DEV] [mtu MTU]". Zero via, empty dev and mtu 0 are left out.
func (ns *NS) AddRoute(dst netip.Prefix, via netip.Addr, dev string, mtu int) error {
	args := []string{"route", "replace", dst.String()}
	if dst.Addr().Is6() {
		args = append([]string{"-6"}, args...)
	}
	if via.IsValid() {
		args = append(args, "via", via.String())
	}
	if dev != "" {
		args = append(args, "dev", dev)
	}
	if mtu > 0 {
		args = append(args, "mtu", strconv.Itoa(mtu))
	}
	_, err := ns.IP(args...)
	return err
}

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct{ cmd, data uint32 }

// ifreqData is struct ifreq with the ifr_data member.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [16]byte // the union is 24 bytes on 64-bit
}

// Legacy ethtool ioctl commands: get and set TX checksum offload, set GRO.
const (
	ethtoolGTXCSUM = 0x16
	ethtoolSTXCSUM = 0x17
	ethtoolSGRO    = 0x2c
)

// DisableTXChecksum turns TX checksum offload off on the link, as
// `ethtool -K NAME tx off` does. A veth peer otherwise hands TCP and UDP
// packets over with the checksum still to be filled in (CHECKSUM_PARTIAL):
// the kernel would complete it on a real NIC, but a program that takes
// the frame with XDP and encrypts it seals the unfinished checksum, and
// the receiver drops the packet. Hosts whose traffic crosses an XDP
// gateway over veth need this; real NICs do not.
func (l *Link) DisableTXChecksum() error { return l.SetTXChecksum(false) }

// SetTXChecksum turns TX checksum offload on or off (TSO follows it).
func (l *Link) SetTXChecksum(on bool) error {
	_, err := l.ethtool(ethtoolSTXCSUM, b2u(on))
	return err
}

// SetGRO turns generic receive offload on or off ("ethtool -K NAME gro").
func (l *Link) SetGRO(on bool) error {
	_, err := l.ethtool(ethtoolSGRO, b2u(on))
	return err
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// TXChecksum reports whether TX checksum offload is on.
func (l *Link) TXChecksum() (bool, error) {
	v, err := l.ethtool(ethtoolGTXCSUM, 0)
	return v != 0, err
}

// ethtool runs a legacy ethtool_value command on the link.
func (l *Link) ethtool(cmd, data uint32) (uint32, error) {
	v := ethtoolValue{cmd: cmd, data: data}
	err := l.NS.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		var req ifreqData
		copy(req.name[:], l.Name)
		req.data = unsafe.Pointer(&v)
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&req))); errno != 0 {
			return fmt.Errorf("topo: ethtool command 0x%x on %s: %w", cmd, l.Name, errno)
		}
		return nil
	})
	return v.data, err
}
