package exampleenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/espxdp/espxdp/internal/topo"
)

// Session is the scaffolding of one run: its deadline and its
// namespaces, which End removes however the run ends (success, failure,
// deadline, Ctrl-C).
type Session struct {
	// Ctx is the run's context: the caller's, bounded by the timeout.
	Ctx context.Context
	// Topo owns the run's namespaces (see Build).
	Topo   *topo.Topology
	cancel context.CancelFunc
}

// Begin starts a session whose namespace names start with prefix (at
// most 6 characters) and whose context ends after timeout.
func Begin(ctx context.Context, prefix string, timeout time.Duration) *Session {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	return &Session{Ctx: ctx, Topo: topo.New(prefix), cancel: cancel}
}

// End removes the session's namespaces (Teardown) and ends its context.
// It returns the namespaces the run made, the names of those still
// present afterwards, and err joined with what went wrong in the
// cleanup (a failed delete, "namespaces left behind").
func (s *Session) End(err error) (made []*topo.NS, leftBehind []string, _ error) {
	defer s.cancel()
	made, leftBehind, cerr := Teardown(s.Topo)
	if len(leftBehind) > 0 {
		cerr = errors.Join(cerr, fmt.Errorf("namespaces left behind: %v", leftBehind))
	}
	return made, leftBehind, errors.Join(err, cerr)
}

// Traffic is what PingAndTransfer measured.
type Traffic struct {
	// Ping is hostA → hostB with 56 bytes; FullPing with packets of
	// exactly the tunnel's MTU.
	Ping, FullPing topo.PingResult
	Transfer       topo.TransferResult
}

// PingAndTransfer is the traffic that proves a tunnel between hostA and
// hostB works: pings echo requests of 56 bytes from hostA to dst, then
// three of exactly mtu bytes (mtuName says which MTU that is), then a
// checksummed TCP transfer of size bytes from hostA to dst port 5001 on
// hostB. It prints a line for each to w and stops at the first error,
// returning what it measured so far.
func PingAndTransfer(ctx context.Context, w io.Writer, n *Line, dst netip.Addr, pings, mtu int, mtuName string, size int64) (t Traffic, err error) {
	if t.Ping, err = topo.Ping(n.HostA, dst, pings, 56, 100*time.Millisecond, 2*time.Second); err != nil {
		return t, err
	}
	fmt.Fprintf(w, "ping hostA → hostB: %d/%d answered\n", t.Ping.Received, t.Ping.Sent)
	if t.FullPing, err = topo.Ping(n.HostA, dst, 3, mtu-28, 50*time.Millisecond, 2*time.Second); err != nil {
		return t, err
	}
	fmt.Fprintf(w, "ping hostA → hostB with %d-byte packets (%s): %d/%d answered\n", mtu, mtuName, t.FullPing.Received, t.FullPing.Sent)
	if err := ctx.Err(); err != nil {
		return t, err
	}
	t.Transfer, err = topo.Transfer(ctx, n.HostB, netip.AddrPortFrom(dst, 5001), n.HostA, size, uint64(time.Now().UnixNano()), nil)
	if err != nil {
		return t, err
	}
	fmt.Fprintf(w, "TCP hostA → hostB: %d bytes in %v, intact %v, MSS %d\n",
		t.Transfer.Received, t.Transfer.Duration.Round(time.Millisecond), t.Transfer.Intact(), t.Transfer.ClientMSS)
	return t, nil
}

// Lost returns an error if a ping went unanswered.
func (t Traffic) Lost() error {
	if t.Ping.Received != t.Ping.Sent || t.FullPing.Received != t.FullPing.Sent {
		return fmt.Errorf("pings lost: %d/%d and %d/%d answered", t.Ping.Received, t.Ping.Sent, t.FullPing.Received, t.FullPing.Sent)
	}
	return nil
}
