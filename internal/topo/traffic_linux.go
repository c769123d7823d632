//go:build linux

package topo

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/internal/inet"
)

// PingResult counts the echo replies of Ping.
type PingResult struct {
	Sent, Received int
	// RTTs of the replies received, in order.
	RTTs []time.Duration
}

// Ping sends count ICMP (or ICMPv6) echo requests of payload bytes from
// inside ns to dst, one every interval, and waits up to timeout after the
// last one for the replies. It uses a raw socket, so it needs
// CAP_NET_RAW in the namespace.
func Ping(ns *NS, dst netip.Addr, count, payload int, interval, timeout time.Duration) (PingResult, error) {
	var res PingResult
	network, proto := "ip4:icmp", 1
	reqType, repType := byte(8), byte(0)
	if dst.Is6() && !dst.Is4In6() {
		network, proto = "ip6:ipv6-icmp", 58
		reqType, repType = 128, 129
	}
	var c net.PacketConn
	if err := ns.Do(func() (err error) {
		c, err = net.ListenPacket(network, "")
		return err
	}); err != nil {
		return res, fmt.Errorf("topo: ping socket in %s: %w", ns.Label, err)
	}
	defer c.Close()
	id := uint16(os.Getpid()) ^ uint16(counter.Add(1))
	sent := make([]time.Time, count)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for res.Received < count {
			c.SetReadDeadline(time.Now().Add(interval*time.Duration(count) + timeout))
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			m := buf[:n]
			if len(m) < 8 || m[0] != repType || binary.BigEndian.Uint16(m[4:]) != id {
				continue
			}
			if ip, ok := from.(*net.IPAddr); !ok || !ip.IP.Equal(dst.AsSlice()) {
				continue
			}
			seq := int(binary.BigEndian.Uint16(m[6:]))
			if seq >= count || sent[seq].IsZero() {
				continue
			}
			res.RTTs = append(res.RTTs, time.Since(sent[seq]))
			res.Received++
		}
	}()
	msg := make([]byte, 8+payload)
	for i := range payload {
		msg[8+i] = byte(i)
	}
	for i := range count {
		msg[0], msg[1] = reqType, 0
		binary.BigEndian.PutUint16(msg[2:], 0)
		binary.BigEndian.PutUint16(msg[4:], id)
		binary.BigEndian.PutUint16(msg[6:], uint16(i))
		if proto == 1 { // the kernel computes the ICMPv6 checksum
			binary.BigEndian.PutUint16(msg[2:], inet.Checksum(msg))
		}
		sent[i] = time.Now()
		if _, err := c.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			c.Close()
			<-done
			return res, fmt.Errorf("topo: ping %s from %s: %w", dst, ns.Label, err)
		}
		res.Sent++
		if i < count-1 {
			time.Sleep(interval)
		}
	}
	<-done
	return res, nil
}

// TransferResult describes one Transfer.
type TransferResult struct {
	// Sent and Received are the byte counts at each end.
	Sent, Received int64
	// SentSum and ReceivedSum are the SHA-256 of the bytes at each end.
	SentSum, ReceivedSum [32]byte
	// Duration runs from the connection's establishment to the server
	// reading the last byte.
	Duration time.Duration
	// ClientMSS and ServerMSS are the sockets' TCP_MAXSEG after the
	// transfer: the segment size each side settled on (MSS option, path
	// MTU discovery).
	ClientMSS, ServerMSS int
}

// Intact reports whether every byte arrived unchanged.
func (r TransferResult) Intact() bool {
	return r.Sent == r.Received && r.SentSum == r.ReceivedSum
}

// Gbps is the goodput of the transfer in Gbit/s.
func (r TransferResult) Gbps() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Received) * 8 / r.Duration.Seconds() / 1e9
}

// ErrCorrupt is returned by Transfer when the bytes received differ from
// the bytes sent.
var ErrCorrupt = errors.New("topo: transfer corrupted")

// Transfer pushes size bytes of seeded pseudo-random data over TCP from
// a client in cli to a server it starts in srv listening on addr, and
// checks them with SHA-256 at both ends. progress, if set, is called
// from the sending goroutine with the bytes sent so far, at most every
// 64 KiB. ctx bounds the whole transfer.
func Transfer(ctx context.Context, srv *NS, addr netip.AddrPort, cli *NS, size int64, seed uint64, progress func(sent int64)) (TransferResult, error) {
	var res TransferResult
	var ln net.Listener
	if err := srv.Do(func() (err error) {
		ln, err = net.Listen("tcp", addr.String())
		return err
	}); err != nil {
		return res, fmt.Errorf("topo: listen in %s: %w", srv.Label, err)
	}
	defer ln.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}

	type srvResult struct {
		n   int64
		sum [32]byte
		mss int
		end time.Time
		err error
	}
	srvc := make(chan srvResult, 1)
	go func() {
		var r srvResult
		defer func() { srvc <- r }()
		ln.(*net.TCPListener).SetDeadline(deadline)
		c, err := ln.Accept()
		if err != nil {
			r.err = err
			return
		}
		defer c.Close()
		c.SetDeadline(deadline)
		h := sha256.New()
		r.n, r.err = io.CopyBuffer(h, c, make([]byte, 256<<10))
		r.end = time.Now()
		copy(r.sum[:], h.Sum(nil))
		r.mss = maxSeg(c)
	}()

	var conn net.Conn
	d := net.Dialer{Deadline: deadline}
	if err := cli.Do(func() (err error) {
		conn, err = d.DialContext(ctx, "tcp", addr.String())
		return err
	}); err != nil {
		ln.Close()
		<-srvc
		return res, fmt.Errorf("topo: connect from %s to %s: %w", cli.Label, addr, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	conn.SetDeadline(deadline)
	start := time.Now()
	rng := rand.NewChaCha8(seedBytes(seed))
	h := sha256.New()
	buf := make([]byte, 64<<10)
	var sendErr error
	for res.Sent < size {
		chunk := buf[:min(int64(len(buf)), size-res.Sent)]
		rng.Read(chunk)
		h.Write(chunk)
		n, err := conn.Write(chunk)
		res.Sent += int64(n)
		if err != nil {
			sendErr = err
			break
		}
		if progress != nil {
			progress(res.Sent)
		}
	}
	copy(res.SentSum[:], h.Sum(nil))
	res.ClientMSS = maxSeg(conn)
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	r := <-srvc
	conn.Close()
	res.Received, res.ReceivedSum, res.ServerMSS = r.n, r.sum, r.mss
	if !r.end.IsZero() {
		res.Duration = r.end.Sub(start)
	}
	if sendErr != nil {
		return res, fmt.Errorf("topo: send from %s after %d bytes: %w", cli.Label, res.Sent, sendErr)
	}
	if r.err != nil {
		return res, fmt.Errorf("topo: receive in %s after %d bytes: %w", srv.Label, r.n, r.err)
	}
	if !res.Intact() {
		return res, fmt.Errorf("%w: sent %d bytes, received %d, checksums equal: %v", ErrCorrupt, res.Sent, res.Received, res.SentSum == res.ReceivedSum)
	}
	return res, nil
}

func seedBytes(seed uint64) [32]byte {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	copy(s[8:], "espxdp topo transfer")
	return s
}

// maxSeg returns the TCP_MAXSEG of a TCP connection, or 0.
func maxSeg(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	mss := 0
	raw.Control(func(fd uintptr) {
		mss, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG)
	})
	return mss
}
