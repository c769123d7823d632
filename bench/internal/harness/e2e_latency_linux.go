//go:build linux

package harness

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

// Latency at 90 % of the NDR (RFC 2544 §26.2 style): the generator
// writes a CLOCK_MONOTONIC timestamp into the inner UDP payload of the
// packets it sends, behind a magic number; a packet socket on the
// sink's interface reads a sample of what arrives and subtracts the
// timestamp from its own CLOCK_MONOTONIC reading. One machine, one
// clock: no synchronisation error; the figure includes the sink's
// wake-up (the same for every row).
const (
	// latMagic marks a stamped payload: magic (4 bytes), then the
	// timestamp (8 bytes, ns), at the start of the inner UDP payload.
	latMagic = 0x4c41545e
	// latPort is the UDP destination port of the decrypt rows' stamped
	// packets, for the sink's filter to pick them out.
	latPort = 10
	// latSampleMask: the encrypt rows' sink keeps one ESP packet in
	// latSampleMask+1 (a random choice in its socket filter), as every
	// packet there is stamped and decrypting each would load the CPUs.
	latSampleMask = 63
	// latMaxSamples bounds the samples of one trial.
	latMaxSamples = 1 << 16
	// latPayloadOff is where the stamp starts in an inner IPv4/UDP
	// packet without options.
	latPayloadOff = 28
	latStampLen   = 12
	// latTries bounds the latency trials of a row; a trial counts when
	// its generator achieved at least latShortfall of the load asked.
	latTries     = 3
	latShortfall = 0.9
)

func monoNow() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// putStamp writes the magic and ts at p[0:12].
func putStamp(p []byte, ts int64) {
	binary.BigEndian.PutUint32(p, latMagic)
	binary.BigEndian.PutUint64(p[4:], uint64(ts))
}

// readStamp returns the timestamp of an inner IPv4/UDP packet, if it
// carries one.
func readStamp(ip []byte) (int64, bool) {
	if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != 17 {
		return 0, false
	}
	ihl := int(ip[0]&0xf) * 4
	p := ip[min(len(ip), ihl+8):]
	if ihl < 20 || len(p) < latStampLen || binary.BigEndian.Uint32(p) != latMagic {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(p[4:])), true
}

// stamper writes timestamps into the generator's frames before they are
// put on a TX ring (generator.stamp).
type stamper struct {
	// encrypt: every frame is plaintext, stamped in place.
	plain bool
	// decrypt: the first frame of each batch is replaced by a fresh
	// ESP packet (proc, SA of the generator's peer) whose inner packet
	// goes to latPort and carries the stamp; dirty frames are restored
	// from orig (wire bytes by frame index) before they are sent
	// unstamped.
	proc  *sa.Processor
	pk    []sa.Packet
	inner map[int][]byte // inner packet template by size, to latPort
	orig  []frame
	dirty map[*genSocket][]bool
}

// stamp stamps descs (allocated frames of gs, Len set) at time now.
func (s *stamper) stamp(g *generator, gs *genSocket, descs []xdp.Desc) {
	if len(descs) == 0 {
		return
	}
	now := monoNow()
	if s.plain {
		for _, d := range descs {
			if p := gs.u.Packet(d); len(p) >= 14+latPayloadOff+latStampLen {
				putStamp(p[14+latPayloadOff:], now)
			}
		}
		return
	}
	// Invariant (TestStamperDecrypt): a frame goes on the TX ring either
	// as the batch's freshly stamped packet or holding exactly the bytes
	// fill wrote; dirty marks the frames that hold a stamped packet, and
	// each is restored before it is sent unstamped. A frame is only
	// written here while the application owns it (allocated, not yet
	// transmitted).
	dirty := s.dirty[gs]
	if dirty == nil {
		dirty = make([]bool, e2eGenFrames)
		s.dirty[gs] = dirty
	}
	for _, d := range descs[1:] {
		if idx := d.Addr >> g.shift; dirty[idx] {
			f := s.orig[int(idx)%len(s.orig)].wire
			copy(gs.u.Packet(d), f)
			dirty[idx] = false
		}
	}
	d := &descs[0]
	idx := d.Addr >> g.shift
	tmpl, ok := s.inner[int(gs.inner[idx])]
	if !ok {
		return
	}
	p := &s.pk[0]
	*p = sa.Packet{Buf: p.Buf, Off: esp.MaxHeadroom, Len: len(tmpl)}
	copy(p.Buf[p.Off:], tmpl)
	putStamp(p.Buf[p.Off+latPayloadOff:], now)
	s.proc.Worker(0).Outbound(s.pk[:1])
	frame := gs.u.Packet(*d)
	if p.Verdict != sa.VerdictOK || 14+p.Len != len(frame) {
		return // sent unstamped
	}
	copy(frame[14:], p.Data())
	dirty[idx] = true
}

// newStamper prepares the stamping of the frames of op (decrypt or
// encrypt) at size (0: IMIX): for decrypt, a fresh peer SA and an
// inner template per size.
func (r *e2eRun) newStamper(op string, frames []frame) (*stamper, error) {
	if op == "encrypt" {
		return &stamper{plain: true}, nil
	}
	out, err := r.peerSA()
	if err != nil {
		return nil, err
	}
	tun := sa.NewTunnel("lat")
	tun.SetOutbound(out)
	sad := sa.NewSAD(sa.SADOptions{})
	if err := sad.Add(out); err != nil {
		return nil, err
	}
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Tunnel: tun})
	if err != nil {
		return nil, err
	}
	s := &stamper{proc: proc, inner: map[int][]byte{}, orig: frames, dirty: map[*genSocket][]bool{}}
	big := 0
	for _, f := range frames {
		if _, ok := s.inner[f.inner]; !ok && f.inner >= latPayloadOff+latStampLen {
			s.inner[f.inner] = ipv4UDP(netip.AddrFrom4([4]byte{10, 7, 0, 1}), netip.AddrFrom4([4]byte{10, 8, 0, 1}), 5000, latPort, f.inner)
		}
		big = max(big, f.inner)
	}
	s.pk = []sa.Packet{{Buf: make([]byte, esp.MaxHeadroom+big+esp.MaxTailroom)}}
	return s, nil
}

// Classic BPF opcodes of the sink's socket filters.
const (
	bpfLdH     = 0x28 // ld half-word [k]
	bpfLdB     = 0x30 // ld byte [k]
	bpfLdW     = 0x20 // ld word [k]
	bpfLdxMSH  = 0xb1 // ldx 4*([k]&0xf)
	bpfLdHInd  = 0x48 // ld half-word [x+k]
	bpfJeq     = 0x15 // jeq #k, jt, jf
	bpfAnd     = 0x54 // and #k
	bpfRet     = 0x06 // ret #k
	skfAdRand  = 0xfffff000 + 56
	bpfAcceptN = 0xffff
)

// sinkFilter selects the packets the latency sink reads: for decrypt
// the IPv4/UDP packets to latPort, for encrypt a random one in
// latSampleMask+1 of the IPv4 ESP packets.
func sinkFilter(op string) []unix.SockFilter {
	if op == "encrypt" {
		return []unix.SockFilter{
			{Code: bpfLdH, K: 12},
			{Code: bpfJeq, K: 0x0800, Jt: 0, Jf: 6},
			{Code: bpfLdB, K: 23},
			{Code: bpfJeq, K: 50, Jt: 0, Jf: 4},
			{Code: bpfLdW, K: skfAdRand},
			{Code: bpfAnd, K: latSampleMask},
			{Code: bpfJeq, K: 0, Jt: 0, Jf: 1},
			{Code: bpfRet, K: bpfAcceptN},
			{Code: bpfRet, K: 0},
		}
	}
	return []unix.SockFilter{
		{Code: bpfLdH, K: 12},
		{Code: bpfJeq, K: 0x0800, Jt: 0, Jf: 6},
		{Code: bpfLdB, K: 23},
		{Code: bpfJeq, K: 17, Jt: 0, Jf: 4},
		{Code: bpfLdxMSH, K: 14},
		{Code: bpfLdHInd, K: 16},
		{Code: bpfJeq, K: latPort, Jt: 0, Jf: 1},
		{Code: bpfRet, K: bpfAcceptN},
		{Code: bpfRet, K: 0},
	}
}

// latencySink reads stamped packets on the sink's interface until
// stopped and keeps their latencies.
type latencySink struct {
	fd      int
	op      string
	proc    *sa.Processor // encrypt: decrypts the sampled ESP
	mu      sync.Mutex
	samples []time.Duration
	bad     int // sampled packets without a readable stamp
	done    chan struct{}
	stop    chan struct{}
}

// startLatencySink opens the sink's packet socket (in its namespace)
// with the filter of op and starts reading.
func (r *e2eRun) startLatencySink(op string) (*latencySink, error) {
	s := &latencySink{fd: -1, op: op, done: make(chan struct{}), stop: make(chan struct{})}
	if op == "encrypt" {
		in, err := r.newSA(e2eSPIOut, sa.In, e2eSinkIP, e2eGwBIP, sa.ReplayDisabled)
		if err != nil {
			return nil, err
		}
		sad := sa.NewSAD(sa.SADOptions{})
		if err := sad.Add(in); err != nil {
			return nil, err
		}
		if s.proc, err = sa.NewProcessor(sa.ProcessorOptions{SAD: sad}); err != nil {
			return nil, err
		}
	}
	l := r.net.sinkEth
	if err := l.NS.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("harness: latency sink socket: %w", err)
		}
		s.fd = fd
		f := sinkFilter(op)
		prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
			return fmt.Errorf("harness: latency sink filter: %w", err)
		}
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
		tv := unix.Timeval{Usec: 20000}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.Index})
	}); err != nil {
		if s.fd >= 0 {
			unix.Close(s.fd)
		}
		return nil, err
	}
	go s.read()
	return s, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (s *latencySink) countBad() {
	s.mu.Lock()
	s.bad++
	s.mu.Unlock()
}

func (s *latencySink) read() {
	defer close(s.done)
	buf := make([]byte, 2048)
	var pk [1]sa.Packet
	for {
		select {
		case <-s.stop:
			return
		default:
		}
		n, _, err := unix.Recvfrom(s.fd, buf, 0)
		now := monoNow()
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if n < 14 {
			continue
		}
		ip := buf[14:n]
		if s.proc != nil {
			pk[0] = sa.Packet{Buf: buf[:n], Off: 14, Len: n - 14}
			s.proc.Worker(0).Inbound(pk[:])
			if pk[0].Verdict != sa.VerdictOK {
				s.countBad()
				continue
			}
			ip = pk[0].Data()
		}
		ts, ok := readStamp(ip)
		if !ok {
			s.countBad()
			continue
		}
		s.mu.Lock()
		if len(s.samples) < latMaxSamples {
			s.samples = append(s.samples, time.Duration(now-ts))
		}
		s.mu.Unlock()
	}
}

// reset forgets the samples read so far.
func (s *latencySink) reset() {
	s.mu.Lock()
	s.samples, s.bad = s.samples[:0], 0
	s.mu.Unlock()
}

// close stops the reader and returns the samples and the count of
// unreadable packets.
func (s *latencySink) close() ([]time.Duration, int) {
	close(s.stop)
	<-s.done
	unix.Close(s.fd)
	return s.samples, s.bad
}

// latency runs one trial at LatencyLoad × ndr (the achieved rate of the
// NDR trial) with the generator stamping the frames of op and a sink
// reading them, and adds the latency percentiles to res.
func (r *e2eRun) latency(g *generator, res *Result, w int, frames []frame, ndr Trial) error {
	if ndr.Offered <= 0 {
		return nil // no loss-free rate: no latency at a fraction of it
	}
	st, err := r.newStamper(res.Op, frames)
	if err != nil {
		return err
	}
	sink, err := r.startLatencySink(res.Op)
	if err != nil {
		return err
	}
	// A trial whose generator fell well short of the load (a loaded
	// machine) is run again, up to latTries times; the last one counts.
	target := LatencyLoad * ndr.Offered
	g.stamp = st.stamp
	var t Trial
	for try := 0; try < latTries; try++ {
		if try > 0 {
			sink.reset()
		}
		if t, err = r.trial(g, w, target); err != nil || t.Offered >= latShortfall*target {
			break
		}
	}
	g.stamp = nil
	samples, bad := sink.close()
	if err != nil {
		return err
	}
	// The stamped frames go back to what they were, for later runs.
	if err := g.fill(frames, w); err != nil {
		return err
	}
	p50, p99, mx := Percentiles(samples)
	res.add("lat-load-Mpps", t.Offered/1e6, UnitMpps)
	res.add("lat-load-%ndr", 100*t.Offered/ndr.Offered, UnitPercent)
	res.add("lat-samples", float64(len(samples)), "")
	res.add("lat-unreadable", float64(bad), "")
	if len(samples) > 0 {
		res.add("lat-p50-us", float64(p50)/1e3, UnitMicros)
		res.add("lat-p99-us", float64(p99)/1e3, UnitMicros)
		res.add("lat-max-us", float64(mx)/1e3, UnitMicros)
	}
	return nil
}
