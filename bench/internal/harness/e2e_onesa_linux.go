//go:build linux

package harness

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

// The one-SA rows of the e2e suite (KindOneSA).
const (
	oneSASize    = 1420       // inner packet bytes
	oneSAStreamN = 8192       // packets of the in-order stream
	oneSAFlows   = 4          // inner flows of the stream
	oneSASPIChk  = 0x0e2e0101 // gen → gw with anti-replay on (the stream)
	oneSAPace    = 0.5        // the stream's rate: this fraction of the row's delivered rate
)

var debugOneSA = false

var oneSAModes = []sa.Concurrency{sa.Shared, sa.Sharded, sa.PerCPU, sa.Ordered}

// oneSARun holds the one-SA rows' state: the e2e run, and the wg
// topology of the TCP rows.
type oneSARun struct {
	r  *e2eRun
	wg *wgRun
}

// OneSASteps returns the steps of the e2e-one-sa suite (the one-SA
// rows of the e2e suite alone) and what removes what they built.
func OneSASteps(cfg Config) ([]suiteStep, func()) {
	r := &e2eRun{cfg: cfg, d: time.Duration(cfg.E2EDurationNs), base: map[string]float64{}, ceil: map[string]float64{}}
	steps, done := oneSASteps(r)
	return steps, func() { done(); r.close() }
}

// oneSASteps returns the one-SA steps of the e2e suite and what closes
// what they built.
func oneSASteps(r *e2eRun) ([]suiteStep, func()) {
	o := &oneSARun{r: r}
	var steps []suiteStep
	for _, mode := range oneSAModes {
		for _, w := range []int{1, 2} {
			for _, op := range []string{"decrypt", "encrypt"} {
				steps = append(steps, suiteStep{fmt.Sprintf("e2e one SA %s %s %d workers", mode, op, w), func() ([]Result, error) {
					if err := r.setup(); err != nil {
						return nil, err
					}
					return o.row(op, mode, w, xdp.SteerAuto)
				}})
			}
		}
	}
	// The alternative to steering in XDP: spread the SA over the workers
	// and let the sa package hand each packet to its owner (a software
	// hand-off after RX).
	steps = append(steps, suiteStep{"e2e one SA sharded decrypt 2 workers, hand-off", func() ([]Result, error) {
		if err := r.setup(); err != nil {
			return nil, err
		}
		return o.row("decrypt", sa.Sharded, 2, xdp.SteerSpread)
	}})
	for _, mode := range oneSAModes {
		steps = append(steps, suiteStep{fmt.Sprintf("e2e one SA %s TCP 2 workers", mode), func() ([]Result, error) {
			return o.tcp(mode, 2)
		}})
	}
	return steps, o.close
}

func (o *oneSARun) close() {
	if o.wg != nil {
		o.wg.close()
		o.wg = nil
	}
}

// oneSAKey is the key of the i-th SA of a one-SA row: every outbound SA
// of a SAD needs a key of its own (PerCPU has one per worker).
func (o *oneSARun) newSA(i int, spi uint32, dir sa.Direction, local, remote netip.Addr, replay int) (*sa.SA, error) {
	t := esp.MustParseTransform(e2eTransform)
	key, auth := keys(t, o.r.cfg.Seed+uint64(100+i))
	return sa.New(sa.Config{Name: fmt.Sprintf("one-sa-%x", spi), SPI: spi, Direction: dir, Mode: esp.Tunnel,
		Local: local, Remote: remote, Transform: t, Key: key, AuthKey: auth, ReplayWindow: replay})
}

// row measures one SA in mode with w workers on one queue: throughput
// under overload (the generator's frames repeat, so that SA has
// anti-replay off), then an in-order stream of distinct packets at half
// that rate (anti-replay on) whose reordering per inner flow and replay
// drops are counted at the receiving host.
func (o *oneSARun) row(op string, mode sa.Concurrency, w int, steer xdp.Steering) ([]Result, error) {
	r, n := o.r, o.r.net
	sad := sa.NewSAD(sa.SADOptions{})
	tun := sa.NewTunnel("sink")
	// The engine serves every queue of the veths (the encrypt rows' inner
	// flows hash over them, as a NIC's RSS would spread them); one ESP
	// flow arrives on one queue.
	cfg := xdp.EngineConfig{Queues: n.queues, Workers: w, Steering: steer, UMEM: xdp.UMEMConfig{NumFrames: 8192, FillSize: 2048, CompletionSize: 2048}}
	var chk *sa.SA     // decrypt: the stream's inbound SA
	var outs []*sa.SA  // encrypt: the outbound SA(s)
	var peers []*sa.SA // the other end of each SA of the stream
	if op == "decrypt" {
		// The generator's frames come from r.espFrames (the suite's key).
		in, err := r.inSA()
		if err != nil {
			return nil, err
		}
		if chk, err = o.newSA(1, oneSASPIChk, sa.In, e2eGwAIP, e2eGenIP, 0); err != nil {
			return nil, err
		}
		for _, s := range []*sa.SA{in, chk} {
			if err := sad.Add(s); err != nil {
				return nil, err
			}
		}
		cfg.Cipher = xdp.Port{Name: n.gwA.Name, NextHop: n.genEth.MAC}
		cfg.Plain = &xdp.Port{Name: n.gwB.Name, NextHop: e2eSinkMAC}
		cfg.ProtectedPrefixes = []netip.Prefix{e2eSrcNet}
	} else {
		k := 1
		if mode == sa.PerCPU {
			k = w
		}
		for i := range k {
			out, err := o.newSA(i, e2eSPIOut+uint32(i), sa.Out, e2eGwBIP, e2eSinkIP, 0)
			if err != nil {
				return nil, err
			}
			if err := sad.Add(out); err != nil {
				return nil, err
			}
			peer, err := o.newSA(i, e2eSPIOut+uint32(i), sa.In, e2eSinkIP, e2eGwBIP, sa.ReplayDisabled)
			if err != nil {
				return nil, err
			}
			outs, peers = append(outs, out), append(peers, peer)
		}
		tun.SetOutbound(outs...)
		cfg.Cipher = xdp.Port{Name: n.gwB.Name, NextHop: e2eSinkMAC}
		cfg.Plain = &xdp.Port{Name: n.gwA.Name, NextHop: n.genEth.MAC}
		cfg.ProtectedPrefixes = []netip.Prefix{e2eDstNet}
	}
	e, err := n.startEngine(cfg, sad, tun, w, mode)
	if err != nil {
		return nil, err
	}
	defer e.Stop()

	// Throughput under overload, from one generator queue.
	var frames []frame
	if op == "decrypt" {
		if frames, err = r.espFrames(oneSASize); err != nil {
			return nil, err
		}
	} else {
		frames = n.plainFrames(oneSASize)
	}
	g, err := r.generator()
	if err != nil {
		return nil, err
	}
	key := e2eKey(op, oneSASize, 1)
	saved, had := r.base[key]
	st0 := e.Stats()
	res, err := r.measureOn(g, op, oneSASize, 1, frames)
	if had {
		r.base[key] = saved
	} else {
		delete(r.base, key)
	}
	if err != nil {
		return nil, err
	}
	st := e.Stats()
	res.Kind, res.Mode, res.Workers, res.Traffic = KindOneSA, mode.String(), w, OneSAUDP
	res.Metrics = slices.DeleteFunc(res.Metrics, func(m Metric) bool { return m.Name == "Mpps/worker" })
	if v, ok := res.Get("Mpps"); ok {
		res.add("Mpps/worker", v/float64(w), UnitMpps)
	}
	var busy uint64
	for i, ws := range st.Workers {
		if ws.CipherRX+ws.PlainRX > st0.Workers[i].CipherRX+st0.Workers[i].PlainRX {
			busy++
		}
	}
	res.add("busy-workers", float64(busy), "")
	// Packets per CPU-second of the workers' threads, from the engine's
	// own counters over the same interval as their CPU time (warm-up and
	// settling included).
	var done uint64
	var cpu time.Duration
	for i, ws := range st.Workers {
		done += ws.Decrypted + ws.Encrypted - st0.Workers[i].Decrypted - st0.Workers[i].Encrypted
		cpu += ws.CPU - st0.Workers[i].CPU
	}
	if cpu > 0 {
		res.add("cpu-s", cpu.Seconds(), UnitSeconds)
		res.add("Mpps-per-CPU", float64(done)/cpu.Seconds()/1e6, UnitMpps)
	}
	res.Ingress = e.Steering().String()
	var handed uint64
	for i, ws := range st.Workers {
		handed += ws.HandedOff - st0.Workers[i].HandedOff
	}
	res.add("handed-off", float64(handed), UnitPackets)

	// The in-order stream.
	pps, _ := res.Get("Mpps")
	pps *= 1e6 * oneSAPace
	sres, err := o.stream(op, mode, w, pps, chk, peers)
	if err != nil {
		return nil, err
	}
	sres.Ingress = res.Ingress
	return []Result{res, sres}, nil
}

// streamFrame builds packet i of the stream: inner flow i%oneSAFlows,
// its index i in the first 4 bytes of the UDP payload.
func streamInner(i int, dst func(f int) netip.Addr) []byte {
	f := i % oneSAFlows
	src := netip.AddrFrom4([4]byte{10, 7, 0, byte(1 + f)})
	p := ipv4UDP(src, dst(f), uint16(5000+f), 9, oneSASize)
	binary.BigEndian.PutUint32(p[28:], uint32(i))
	return p
}

// stream sends oneSAStreamN distinct packets once, in order, paced at
// pps, and measures at the sink: delivered, out of order per inner flow
// (a packet arriving after one of its flow with a higher index), and the
// replay drops of the gateway's inbound SA (decrypt) or the sequence
// numbers sent twice (encrypt).
func (o *oneSARun) stream(op string, mode sa.Concurrency, w int, pps float64, chk *sa.SA, peers []*sa.SA) (Result, error) {
	n := o.r.net
	res := Result{Suite: "e2e", Kind: KindOneSA, Op: op, Size: oneSASize, Workers: w, Mode: mode.String(),
		Transform: e2eTransform, Traffic: OneSAStream}
	wire := make([][]byte, oneSAStreamN)
	var replay0 uint64
	if op == "decrypt" {
		peer, err := o.newSA(1, oneSASPIChk, sa.Out, e2eGenIP, e2eGwAIP, 0)
		if err != nil {
			return res, err
		}
		sealer, err := newSealer(peer)
		if err != nil {
			return res, err
		}
		for i := range wire {
			p, err := sealer(streamInner(i, func(f int) netip.Addr { return netip.AddrFrom4([4]byte{10, 8, 0, byte(1 + f)}) }))
			if err != nil {
				return res, err
			}
			wire[i] = ethernet(n.gwA.MAC, n.genEth.MAC, p)
		}
		replay0 = chk.Stats().Drops[sa.DropReplay]
	} else {
		for i := range wire {
			wire[i] = ethernet(n.gwA.MAC, n.genEth.MAC, streamInner(i, func(f int) netip.Addr { return netip.AddrFrom4([4]byte{10, 9, 0, byte(1 + f)}) }))
		}
	}
	capt, err := startSinkCapture(n.sinkEth, oneSAStreamN)
	if err != nil {
		return res, err
	}
	sent, el, err := sendPaced(n.genEth, wire, pps)
	got := capt.wait(500 * time.Millisecond)
	if err != nil {
		return res, err
	}
	// Inner indices in arrival order.
	var idx []int
	dup := 0
	if op == "decrypt" {
		for _, f := range got {
			if len(f) >= 14+32 && f[14+9] == 17 {
				idx = append(idx, int(binary.BigEndian.Uint32(f[14+28:])))
			}
		}
		res.add("replay-drops", float64(chk.Stats().Drops[sa.DropReplay]-replay0), UnitPackets)
	} else {
		openers := map[uint32]func([]byte) ([]byte, error){}
		for _, p := range peers {
			op, err := newOpener(p)
			if err != nil {
				return res, err
			}
			openers[p.SPI()] = op
		}
		seen := map[[2]uint32]bool{}
		for _, f := range got {
			if len(f) < 14+28 || f[14+9] != 50 {
				continue
			}
			spi, seq := binary.BigEndian.Uint32(f[34:]), binary.BigEndian.Uint32(f[38:])
			if seen[[2]uint32{spi, seq}] {
				dup++
			}
			seen[[2]uint32{spi, seq}] = true
			open := openers[spi]
			if open == nil {
				continue
			}
			inner, err := open(f[14:])
			if err != nil || len(inner) < 32 {
				continue
			}
			idx = append(idx, int(binary.BigEndian.Uint32(inner[28:])))
		}
		res.add("seq-sent-twice", float64(dup), UnitPackets)
		if debugOneSA {
			perFlow := make([]int, oneSAFlows)
			for _, i := range idx {
				perFlow[i%oneSAFlows]++
			}
			fmt.Printf("captured %d, opened %d, per flow %v\n", len(got), len(idx), perFlow)
		}
	}
	ooo := 0
	top := make([]int, oneSAFlows)
	for f := range top {
		top[f] = -1
	}
	for _, i := range idx {
		f := i % oneSAFlows
		if i < top[f] {
			ooo++
		}
		top[f] = max(top[f], i)
	}
	res.add("sent", float64(sent), UnitPackets)
	res.add("delivered", float64(len(idx)), UnitPackets)
	res.add("offered-Mpps", float64(sent)/el.Seconds()/1e6, UnitMpps)
	if len(idx) > 0 {
		res.add("reordered%", 100*float64(ooo)/float64(len(idx)), UnitPercent)
	}
	res.add("reordered", float64(ooo), UnitPackets)
	res.add("loss%", 100*float64(sent-min(sent, len(idx)))/float64(max(sent, 1)), UnitPercent)
	return res, nil
}

// newSealer returns a function that encrypts inner packets with the
// outbound SA out (one worker of a processor of its own).
func newSealer(out *sa.SA) (func([]byte) ([]byte, error), error) {
	sad := sa.NewSAD(sa.SADOptions{})
	if err := sad.Add(out); err != nil {
		return nil, err
	}
	tun := sa.NewTunnel("seal")
	tun.SetOutbound(out)
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Tunnel: tun})
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 4096)
	return func(p []byte) ([]byte, error) {
		pk := []sa.Packet{{Buf: buf, Off: esp.MaxHeadroom, Len: copy(buf[esp.MaxHeadroom:], p)}}
		proc.Worker(0).Outbound(pk)
		if pk[0].Verdict != sa.VerdictOK {
			return nil, fmt.Errorf("harness: seal: %v %v", pk[0].Verdict, pk[0].Reason)
		}
		return slices.Clone(pk[0].Data()), nil
	}, nil
}

// newOpener returns a function that decrypts outer IP packets with the
// inbound SA in and returns the inner packet.
func newOpener(in *sa.SA) (func([]byte) ([]byte, error), error) {
	sad := sa.NewSAD(sa.SADOptions{})
	if err := sad.Add(in); err != nil {
		return nil, err
	}
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad})
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 4096)
	return func(p []byte) ([]byte, error) {
		pk := []sa.Packet{{Buf: buf, Off: 0, Len: copy(buf, p)}}
		proc.Worker(0).Inbound(pk)
		if pk[0].Verdict != sa.VerdictOK {
			return nil, fmt.Errorf("harness: open: %v %v", pk[0].Verdict, pk[0].Reason)
		}
		return slices.Clone(pk[0].Data()), nil
	}, nil
}

// sinkCapture reads the frames arriving on the sink's interface on an
// AF_PACKET socket, concurrently with the sender.
type sinkCapture struct {
	fd   int
	want int
	mu   sync.Mutex
	got  [][]byte
	last time.Time
	stop chan struct{}
	done chan struct{}
}

func startSinkCapture(l *topo.Link, want int) (*sinkCapture, error) {
	c := &sinkCapture{want: want, stop: make(chan struct{}), done: make(chan struct{}), last: time.Now()}
	proto := int(uint16(unix.ETH_P_ALL)<<8 | uint16(unix.ETH_P_ALL)>>8)
	err := l.NS.Do(func() (err error) {
		if c.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto); err != nil {
			return err
		}
		unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 128<<20)
		tv := unix.NsecToTimeval(int64(20 * time.Millisecond))
		if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(c.fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: l.Index})
	})
	if err != nil {
		if c.fd > 0 {
			unix.Close(c.fd)
		}
		return nil, fmt.Errorf("harness: capture on %s: %w", l.Name, err)
	}
	go func() {
		defer close(c.done)
		buf := make([]byte, 9216)
		for {
			select {
			case <-c.stop:
				return
			default:
			}
			k, from, err := unix.Recvfrom(c.fd, buf, 0)
			if err != nil {
				continue
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			c.mu.Lock()
			c.got = append(c.got, slices.Clone(buf[:k]))
			c.last = time.Now()
			full := len(c.got) >= c.want
			c.mu.Unlock()
			if full {
				return
			}
		}
	}()
	return c, nil
}

// wait returns what was captured once want frames came or nothing came
// for quiet (bounded: at most 10 s).
func (c *sinkCapture) wait(quiet time.Duration) [][]byte {
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-c.done:
			unix.Close(c.fd)
			return c.got
		case <-time.After(10 * time.Millisecond):
		}
		c.mu.Lock()
		idle := time.Since(c.last) > quiet
		c.mu.Unlock()
		if idle || time.Now().After(deadline) {
			close(c.stop)
			<-c.done
			unix.Close(c.fd)
			return c.got
		}
	}
}

// sendPaced sends frames once each, in order, from an AF_PACKET socket
// on l at about pps (0: as fast as it can), and returns how many went
// out and how long it took.
func sendPaced(l *topo.Link, frames [][]byte, pps float64) (sent int, el time.Duration, err error) {
	err = l.NS.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Ifindex: l.Index, Halen: 6}
		start := time.Now()
		for i, f := range frames {
			if pps > 0 {
				due := start.Add(time.Duration(float64(i) / pps * 1e9))
				for time.Now().Before(due) {
				}
			}
			for try := 0; ; try++ {
				err := unix.Sendto(fd, f, 0, to)
				if err == nil {
					sent++
					break
				}
				if !errors.Is(err, unix.ENOBUFS) && !errors.Is(err, unix.EAGAIN) || try > 100 {
					return err
				}
				time.Sleep(50 * time.Microsecond)
			}
		}
		el = time.Since(start)
		return nil
	})
	return sent, el, err
}

// tcp measures TCP goodput through one SA with w workers on one queue
// in each gateway of the wg suite's topology (hostA — gwA — gwB —
// hostB): a checksummed transfer, its retransmits, and the reordering
// the hosts' TCP saw (their TCPOFOQueue / reordering counters are not
// read: the retransmit count is the cost that matters to TCP).
func (o *oneSARun) tcp(mode sa.Concurrency, w int) ([]Result, error) {
	if o.wg == nil {
		wr := &wgRun{cfg: o.r.cfg, gbps: map[string]float64{}, pps: map[string]float64{}, cpuGB: map[string]float64{}, sirqGB: map[string]float64{}, runs: 3, bytes: o.r.cfg.WGBytes}
		if o.r.cfg.Quick {
			wr.runs = 1
		}
		if err := wr.setup(); err != nil {
			return nil, err
		}
		o.wg = wr
	}
	stop, err := o.wg.net.startESPOneSA(e2eTransform, o.r.cfg.Seed, mode, w)
	if err != nil {
		return nil, err
	}
	defer stop()
	res, err := o.wg.tcp("espxdp", e2eTransform, wgNoOffload, 1)
	if err != nil {
		return nil, err
	}
	res.Suite, res.Kind, res.Mode, res.Workers, res.Traffic = "e2e", KindOneSA, mode.String(), w, OneSATCP
	res.Metrics = slices.DeleteFunc(res.Metrics, func(m Metric) bool { return strings.HasPrefix(m.Name, "x-wireguard") || m.Name == "x-kernel" })
	return []Result{res}, nil
}

// startESPOneSA starts an espxdp engine in each gateway of the wg
// topology with w workers on one queue in mode, one SA each way (PerCPU:
// one per worker each way), plaintext on the lan link.
func (n *wgNet) startESPOneSA(tr string, seed uint64, mode sa.Concurrency, w int) (stop func(), err error) {
	t, err := esp.ParseTransform(tr)
	if err != nil {
		return nil, err
	}
	var engines []*xdp.Engine
	stop = func() {
		for _, e := range engines {
			e.Stop()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	k := 1
	if mode == sa.PerCPU {
		k = w
	}
	const spiAB, spiBA = 0x0a0b0101, 0x0b0a0101
	mk := func(i int, spi uint32, dir sa.Direction, local, remote netip.Addr, ab bool) (*sa.SA, error) {
		s := seed + uint64(200+2*i)
		if !ab {
			s++
		}
		key, auth := keys(t, s)
		return sa.New(sa.Config{Name: fmt.Sprintf("one-sa-%x", spi), SPI: spi, Direction: dir, Mode: esp.Tunnel,
			Local: local, Remote: remote, Transform: t, Key: key, AuthKey: auth})
	}
	for _, g := range n.gateways {
		local, remote, prot := wgGwAWan, wgGwBWan, wgNetB
		outSPI, inSPI, ab := uint32(spiAB), uint32(spiBA), true
		if g == n.gwB {
			local, remote, prot = remote, local, wgNetA
			outSPI, inSPI, ab = inSPI, outSPI, false
		}
		sad := sa.NewSAD(sa.SADOptions{})
		var outs []*sa.SA
		for i := range k {
			out, err := mk(i, outSPI+uint32(i), sa.Out, local, remote, ab)
			if err != nil {
				return nil, err
			}
			in, err := mk(i, inSPI+uint32(i), sa.In, local, remote, !ab)
			if err != nil {
				return nil, err
			}
			for _, s := range []*sa.SA{out, in} {
				if err := sad.Add(s); err != nil {
					return nil, err
				}
			}
			outs = append(outs, out)
		}
		tunnel := sa.NewTunnel("peer")
		tunnel.SetOutbound(outs...)
		proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Tunnel: tunnel, Workers: w, Concurrency: mode})
		if err != nil {
			return nil, err
		}
		lanHost := n.aEth
		if g == n.gwB {
			lanHost = n.bEth
		}
		e, err := xdp.NewEngine(xdp.EngineConfig{
			Processor:         proc,
			Cipher:            xdp.Port{Name: n.wanOf[g].Name, NextHop: n.peer[g].MAC},
			Plain:             &xdp.Port{Name: n.lanOf[g].Name, NextHop: lanHost.MAC},
			ProtectedPrefixes: []netip.Prefix{prot},
			LocalAddrs:        []netip.Addr{local},
			Queues:            1,
			Workers:           w,
		})
		if err != nil {
			return nil, err
		}
		if err := g.Do(e.Start); err != nil {
			return nil, fmt.Errorf("harness: engine in %s: %w", g.Label, err)
		}
		engines = append(engines, e)
	}
	return stop, nil
}
