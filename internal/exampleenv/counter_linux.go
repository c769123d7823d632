package exampleenv

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/internal/topo"
)

// PacketCounter reads every frame crossing one interface, both
// directions, with an AF_PACKET socket (like a tcpdump on the router in
// the middle) and hands the first SnapLen bytes of each to a classify
// callback, which counts what it cares about. No XDP, no copy kept.
type PacketCounter struct {
	fd                int
	ifindex           int
	classify          func(frame []byte)
	stopping          atomic.Bool
	deadline          atomic.Int64 // unix nanos; set by Close
	wg                sync.WaitGroup
	readErr           atomic.Value
	drops             atomic.Uint64
	closeOnce         sync.Once
	closeErr          error
	ifname, namespace string
}

// SnapLen is how much of each frame classify sees: the Ethernet, IP and
// transport headers and the first bytes of the payload.
const SnapLen = 256

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// OpenPacketCounter starts counting on l (in its namespace). classify
// is called from one goroutine, frame after frame; frame is only valid
// during the call. Close stops it.
func OpenPacketCounter(l *topo.Link, classify func(frame []byte)) (*PacketCounter, error) {
	c := &PacketCounter{fd: -1, ifindex: l.Index, classify: classify, ifname: l.Name, namespace: l.NS.Label}
	err := l.NS.Do(func() error {
		// Protocol 0 until bound, so that no frame of another
		// interface is queued before the bind.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		c.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.Index}); err != nil {
			return err
		}
		// Room for a burst of several thousand frames while the reader
		// is descheduled: it must keep up with a TCP transfer.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20); err != nil {
			return err
		}
		// A receive timeout so the reader notices Close.
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 50_000})
	})
	if err != nil {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		return nil, fmt.Errorf("packet socket on %s/%s: %w", l.NS.Label, l.Name, err)
	}
	c.wg.Add(1)
	go c.read()
	return c, nil
}

func (c *PacketCounter) read() {
	defer c.wg.Done()
	buf := make([]byte, SnapLen) // headers are enough; the rest is truncated
	for {
		if d := c.deadline.Load(); d != 0 && time.Now().UnixNano() > d {
			return // bounded even if the link never goes quiet
		}
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				if c.stopping.Load() {
					return // the socket is empty and Close was asked for
				}
				continue
			}
			c.readErr.Store(err)
			return
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Ifindex != c.ifindex {
			continue
		}
		c.classify(buf[:min(n, len(buf))])
	}
}

// Drops is the socket's own drop count (PACKET_STATISTICS), read by
// Close: frames it could not queue, so never classified. When it is
// not 0 the counts are incomplete.
func (c *PacketCounter) Drops() uint64 { return c.drops.Load() }

// Close lets the reader empty the socket (at most 2 s), reads the
// socket's drop count and closes it. It reports a read error, if the
// reader hit one. It may be called more than once.
func (c *PacketCounter) Close() error {
	c.closeOnce.Do(func() {
		c.deadline.Store(time.Now().Add(2 * time.Second).UnixNano())
		c.stopping.Store(true)
		c.wg.Wait()
		if st, err := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			c.drops.Store(uint64(st.Drops))
		}
		c.closeErr = unix.Close(c.fd)
		if err, ok := c.readErr.Load().(error); ok {
			c.closeErr = fmt.Errorf("packet socket on %s/%s: %w", c.namespace, c.ifname, err)
		}
	})
	return c.closeErr
}
