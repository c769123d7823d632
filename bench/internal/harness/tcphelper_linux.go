//go:build linux

package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/internal/topo"
)

// The TCP endpoints of the wg suite run as child processes (this
// executable started again with helperEnv set, inside a namespace), so
// that the harness process holds nothing but the gateways while a
// transfer runs: its CPU time (getrusage RUSAGE_SELF) is then theirs.
const helperEnv = "ESPXDP_BENCH_HELPER"

// tcpHelperResult is what a helper prints as its last line (JSON).
type tcpHelperResult struct {
	Bytes int64  `json:"bytes"`
	Ns    int64  `json:"ns"`            // sink: first accept to last end of stream; source: connect to last write
	MSS   int    `json:"mss,omitempty"` // source: TCP_MAXSEG of its first connection
	Err   string `json:"err,omitempty"`
}

// RunHelper runs this process as a TCP endpoint of the wg suite and
// exits when it was started as one (helperEnv set); otherwise it returns
// false at once. Programs that run the wg suite (bench's main, the
// harness tests' TestMain) call it first thing.
func RunHelper() bool {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		return false
	}
	res := runHelper(strings.Fields(spec))
	json.NewEncoder(os.Stdout).Encode(res)
	if res.Err != "" {
		os.Exit(1)
	}
	os.Exit(0)
	return true
}

// runHelper: "sink ADDR STREAMS TIMEOUT" or "source ADDR STREAMS BYTES TIMEOUT".
func runHelper(args []string) tcpHelperResult {
	fail := func(err error) tcpHelperResult { return tcpHelperResult{Err: err.Error()} }
	if len(args) < 4 {
		return fail(fmt.Errorf("helper: bad arguments %q", args))
	}
	streams, err := strconv.Atoi(args[2])
	if err != nil || streams < 1 || streams > 64 {
		return fail(fmt.Errorf("helper: streams %q", args[2]))
	}
	timeout, err := time.ParseDuration(args[len(args)-1])
	if err != nil {
		return fail(err)
	}
	deadline := time.Now().Add(timeout)
	switch args[0] {
	case "sink":
		return tcpSink(args[1], streams, deadline)
	case "source":
		size, err := strconv.ParseInt(args[3], 10, 64)
		if err != nil || size < int64(streams) {
			return fail(fmt.Errorf("helper: bytes %q", args[3]))
		}
		return tcpSource(args[1], streams, size, deadline)
	}
	return fail(fmt.Errorf("helper: mode %q", args[0]))
}

// tcpSink accepts streams connections on addr, reads each to its end and
// discards the bytes. It prints "ready" once it listens.
func tcpSink(addr string, streams int, deadline time.Time) tcpHelperResult {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return tcpHelperResult{Err: err.Error()}
	}
	defer ln.Close()
	fmt.Println("ready")
	ln.(*net.TCPListener).SetDeadline(deadline)
	var (
		mu         sync.Mutex
		total      int64
		first, end time.Time
		errs       []error
		wg         sync.WaitGroup
	)
	for range streams {
		c, err := ln.Accept()
		if err != nil {
			errs = append(errs, err)
			break
		}
		mu.Lock()
		if first.IsZero() {
			first = time.Now()
		}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			c.SetDeadline(deadline)
			buf := make([]byte, 256<<10)
			var n int64
			var err error
			for {
				var k int
				k, err = c.Read(buf)
				n += int64(k)
				if err != nil {
					break
				}
			}
			mu.Lock()
			defer mu.Unlock()
			total += n
			end = time.Now()
			if !errors.Is(err, io.EOF) {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	res := tcpHelperResult{Bytes: total}
	if !first.IsZero() && !end.IsZero() {
		res.Ns = int64(end.Sub(first))
	}
	if err := errors.Join(errs...); err != nil {
		res.Err = err.Error()
	}
	return res
}

// tcpSource opens streams connections to addr and sends size bytes over
// them together (a 64 KiB buffer of pseudo-random bytes, written again
// and again), then closes them.
func tcpSource(addr string, streams int, size int64, deadline time.Time) tcpHelperResult {
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = byte(i*2654435761>>13) ^ byte(i)
	}
	d := net.Dialer{Deadline: deadline}
	conns := make([]net.Conn, 0, streams)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range streams {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return tcpHelperResult{Err: err.Error()}
		}
		c.SetDeadline(deadline)
		conns = append(conns, c)
	}
	start := time.Now()
	var (
		mu    sync.Mutex
		total int64
		errs  []error
		wg    sync.WaitGroup
	)
	for i, c := range conns {
		share := size / int64(streams)
		if i == 0 {
			share += size % int64(streams)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var sent int64
			var err error
			for sent < share && err == nil {
				var k int
				k, err = c.Write(buf[:min(int64(len(buf)), share-sent)])
				sent += int64(k)
			}
			if err == nil {
				err = c.(*net.TCPConn).CloseWrite()
			}
			mu.Lock()
			defer mu.Unlock()
			total += sent
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	res := tcpHelperResult{Bytes: total, Ns: int64(time.Since(start)), MSS: tcpMSS(conns[0])}
	if err := errors.Join(errs...); err != nil {
		res.Err = err.Error()
	}
	return res
}

func tcpMSS(c net.Conn) int {
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return 0
	}
	mss := 0
	raw.Control(func(fd uintptr) { mss, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG) })
	return mss
}

// childTransfer is one TCP transfer of size bytes over streams parallel
// connections from a helper process in cli to one in srv listening on
// addr. It returns the sink's result (bytes, first accept to last end
// of stream), the source's MSS and the CPU time of the two helpers.
func childTransfer(ctx context.Context, srv *topo.NS, addr netip.AddrPort, cli *topo.NS, size int64, streams int) (sink tcpHelperResult, mss int, hostCPU time.Duration, err error) {
	exe, err := os.Executable()
	if err != nil {
		return sink, 0, 0, err
	}
	timeout := "60s"
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl).Round(time.Millisecond).String()
	}
	sinkCmd := srv.Command(ctx, exe)
	sinkCmd.Env = append(os.Environ(), fmt.Sprintf("%s=sink %s %d %s", helperEnv, addr, streams, timeout))
	out, err := sinkCmd.StdoutPipe()
	if err != nil {
		return sink, 0, 0, err
	}
	sinkCmd.Stderr = os.Stderr
	if err := sinkCmd.Start(); err != nil {
		return sink, 0, 0, fmt.Errorf("harness: TCP sink in %s: %w", srv.Label, err)
	}
	defer sinkCmd.Wait()
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "ready" {
		sinkCmd.Process.Kill()
		return sink, 0, 0, fmt.Errorf("harness: TCP sink in %s did not start: %q", srv.Label, lines.Text())
	}
	srcCmd := cli.Command(ctx, exe)
	srcCmd.Env = append(os.Environ(), fmt.Sprintf("%s=source %s %d %d %s", helperEnv, addr, streams, size, timeout))
	srcOut, srcErr := srcCmd.Output()
	var src tcpHelperResult
	if err := json.Unmarshal(lastLine(srcOut), &src); err != nil || srcErr != nil || src.Err != "" {
		sinkCmd.Process.Kill()
		return sink, 0, 0, fmt.Errorf("harness: TCP source in %s: %v %s %s", cli.Label, srcErr, src.Err, srcOut)
	}
	var rest []byte
	for lines.Scan() {
		rest = lines.Bytes()
	}
	if err := sinkCmd.Wait(); err != nil {
		return sink, 0, 0, fmt.Errorf("harness: TCP sink in %s: %w: %s", srv.Label, err, rest)
	}
	if err := json.Unmarshal(rest, &sink); err != nil {
		return sink, 0, 0, fmt.Errorf("harness: TCP sink in %s: %w: %q", srv.Label, err, rest)
	}
	if sink.Bytes != src.Bytes || sink.Bytes != size {
		return sink, 0, 0, fmt.Errorf("harness: TCP transfer: sent %d bytes of %d, received %d", src.Bytes, size, sink.Bytes)
	}
	hostCPU = srcCmd.ProcessState.UserTime() + srcCmd.ProcessState.SystemTime() +
		sinkCmd.ProcessState.UserTime() + sinkCmd.ProcessState.SystemTime()
	return sink, src.MSS, hostCPU, nil
}

func lastLine(b []byte) []byte {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return []byte(s)
}
