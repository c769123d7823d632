//go:build linux

package netns

import (
	"context"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/internal/testenv"
)

func requireRoot(t *testing.T) {
	t.Helper()
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "ip")
}

func TestUniqueName(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		n := UniqueName("evb")
		if len(n) > 15 || !strings.HasPrefix(n, "evb") {
			t.Fatalf("bad name %q", n)
		}
		if seen[n] {
			t.Fatalf("duplicate name %q", n)
		}
		seen[n] = true
	}
	defer func() {
		if recover() == nil {
			t.Error("no panic for a name longer than 15 characters")
		}
	}()
	UniqueName("a-much-too-long-prefix")
}

func netnsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestCleanup: a namespace made in a subtest is gone when the subtest
// ends. (Removal is a t.Cleanup, which also runs when a test fails.)
func TestCleanup(t *testing.T) {
	requireRoot(t)
	var ns *NS
	t.Run("inner", func(t *testing.T) {
		ns = New(t)
		if _, err := os.Stat(ns.Path()); err != nil {
			t.Fatalf("namespace not created: %v", err)
		}
	})
	if _, err := os.Stat(ns.Path()); !os.IsNotExist(err) {
		t.Errorf("namespace %s still exists after its test ended: %v", ns.Name, err)
	}
}

func TestDo(t *testing.T) {
	requireRoot(t)
	ns := New(t)
	self := netnsInode(t, "/proc/thread-self/ns/net")
	want := netnsInode(t, ns.Path())
	var inside uint64
	if err := ns.Do(func() error {
		var st unix.Stat_t
		err := unix.Stat("/proc/thread-self/ns/net", &st)
		inside = st.Ino
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside != want || inside == self {
		t.Errorf("fn ran in netns inode %d, want %d (test's own %d)", inside, want, self)
	}
	// Threads handed back to the scheduler must be in the original
	// namespace again.
	for range 20 {
		done := make(chan uint64)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var st unix.Stat_t
			_ = unix.Stat("/proc/thread-self/ns/net", &st)
			done <- st.Ino
		}()
		if got := <-done; got != self {
			t.Fatalf("a thread is left in netns inode %d", got)
		}
	}
	if err := (&NS{Name: "espxdp-does-not-exist"}).Do(func() error { return nil }); err == nil {
		t.Error("Do in a missing namespace succeeded")
	}
}

func TestVethPairTraffic(t *testing.T) {
	requireRoot(t)
	a, b := New(t), New(t)
	v := NewVethPairOpts(t, a, b, VethOptions{Queues: 2, MTU: 1400})
	if v.A.NS != a || v.B.NS != b || v.A.Index <= 0 || v.B.Index <= 0 || len(v.A.MAC) != 6 {
		t.Fatalf("bad pair %+v %+v", v.A, v.B)
	}
	if out := a.IP(t, "-d", "link", "show", "dev", v.A.Name); !strings.Contains(out, "mtu 1400") || !strings.Contains(out, "numrxqueues 2") {
		t.Errorf("options not applied: %s", out)
	}
	if v.A.XDPAttached(t) {
		t.Error("fresh veth reports an XDP program")
	}
	addrA, addrB := netip.MustParseAddr("2001:db8:1::1"), netip.MustParseAddr("2001:db8:1::2")
	v.A.AddAddr(t, netip.PrefixFrom(addrA, 64))
	v.B.AddAddr(t, netip.PrefixFrom(addrB, 64))
	v.B.SetNeighbour(t, addrA, v.A.MAC)
	if out := b.IP(t, "neigh", "show", "dev", v.B.Name); !strings.Contains(out, "PERMANENT") || !strings.Contains(out, v.A.MAC.String()) {
		t.Errorf("neighbour not set: %s", out)
	}

	var rx, tx *net.UDPConn
	if err := a.Do(func() (err error) {
		rx, err = net.ListenUDP("udp6", &net.UDPAddr{IP: addrA.AsSlice(), Port: 4789})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	if err := b.Do(func() (err error) {
		tx, err = net.DialUDP("udp6", nil, &net.UDPAddr{IP: addrA.AsSlice(), Port: 4789})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if _, err := tx.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	rx.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 16)
	n, from, err := rx.ReadFromUDP(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("received %q, %v", buf[:n], err)
	}
	if got, _ := netip.AddrFromSlice(from.IP); got != addrB {
		t.Errorf("from %v, want %v", from.IP, addrB)
	}
}

func TestExec(t *testing.T) {
	requireRoot(t)
	ns := New(t)
	out, err := ns.Exec(context.Background(), "ip", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	// A fresh namespace has only its loopback.
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "lo:") {
		t.Errorf("links in a fresh namespace: %q", out)
	}
	if _, err := ns.Exec(context.Background(), "false"); err == nil {
		t.Error("Exec of a failing command returned no error")
	}
}

func TestWaitFor(t *testing.T) {
	n := 0
	if !WaitFor(time.Second, func() bool { n++; return n == 3 }) {
		t.Error("WaitFor gave up on a condition that became true")
	}
	start := time.Now()
	if WaitFor(30*time.Millisecond, func() bool { return false }) {
		t.Error("WaitFor reported a false condition as true")
	}
	if time.Since(start) < 30*time.Millisecond {
		t.Error("WaitFor returned before the timeout")
	}
}
